"""/v1/loras: create, retrieve (by name or UUID), list, patch, delete; every query is scoped by org."""
from __future__ import annotations

from aiohttp import web

from services.registry.context import Registry
from services.registry.domain.checks import file_check, model_check, name_check, same_files_check
from services.registry.domain.lora import NewLora, new_lora_id
from services.registry.handlers.files import lookup_files
from services.registry.handlers.problems import raise_problems, read_query
from services.registry.operations import create_lora, delete_lora, find, patch_lora
from shared.contracts.common import ListEnvelope, ListParams
from shared.contracts.errors import BadRequest
from shared.contracts.loras import Lora, LoraCreate, LoraDeletedResponse, LoraPatch
from shared.contracts.messages import AdapterRef
from shared.http.requests import json_response, org_id, read_model


async def create(registry: Registry, request: web.Request) -> web.Response:
    org = org_id(request)
    body = await read_model(request, LoraCreate)
    files = await lookup_files(registry, org, [body.config_file_id, body.weights_file_id])
    config, weights = files[body.config_file_id], files[body.weights_file_id]
    raise_problems([
        *name_check(body.name),
        *model_check(body.supported_models, registry.catalogue),
        *file_check("config_file_id", body.config_file_id, config),
        *file_check("weights_file_id", body.weights_file_id, weights),
        *same_files_check(body.config_file_id, body.weights_file_id),
    ])
    adapter = AdapterRef(lora_id=new_lora_id(), name=body.name, config_file_id=config.id,
                         weights_file_id=weights.id, config_object_key=config.object_key,
                         weights_object_key=weights.object_key, config_bytes=config.bytes,
                         weights_bytes=weights.bytes)
    document = await create_lora(registry, NewLora(
        org_id=org, name=body.name, display_name=body.display_name, description=body.description,
        supported_models=body.supported_models, adapter=adapter))
    return json_response(document.public())


async def retrieve(registry: Registry, request: web.Request) -> web.Response:
    document = await find(registry, org_id(request), request.match_info["ref"])
    return json_response(document.public())


async def list_loras(registry: Registry, request: web.Request) -> web.Response:
    org = org_id(request)
    params: ListParams = read_query(request, ListParams)
    cursor = None
    if params.after is not None:
        cursor = await registry.repository.get(org, lora_id=params.after)
        if cursor is None:
            raise BadRequest(f"after: no LoRA with id {params.after!r} in your organization", param="after",
                             code="invalid_cursor")
    after = (cursor.created_ns, cursor.id) if cursor is not None else None
    documents = await registry.repository.page(org, after=after, limit=params.limit + 1,
                                               descending=params.order == "desc")
    data = [d.public() for d in documents[: params.limit]]
    envelope = ListEnvelope[Lora](data=data, first_id=data[0].id if data else None,
                                  last_id=data[-1].id if data else None,
                                  has_more=len(documents) > params.limit)
    return json_response(envelope)


async def update(registry: Registry, request: web.Request) -> web.Response:
    patch = await read_model(request, LoraPatch)
    if patch.supported_models is not None:
        raise_problems(model_check(patch.supported_models, registry.catalogue))
    document = await patch_lora(registry, org_id(request), request.match_info["ref"], patch)
    return json_response(document.public())


async def delete(registry: Registry, request: web.Request) -> web.Response:
    document = await delete_lora(registry, org_id(request), request.match_info["ref"])
    return json_response(LoraDeletedResponse(id=document.id))
