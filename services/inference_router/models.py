"""GET /v1/models and /v1/models/{id}: the catalogue as OpenAI Model objects, plus rank limit and target policy."""
from __future__ import annotations

from aiohttp import web

from services.inference_router.constraints import model_not_found
from shared.catalogue.catalogue import ModelEntry
from shared.contracts.inference import ModelObject
from shared.http.keys import PLATFORM
from shared.http.requests import json_response


def model_object(entry: ModelEntry) -> ModelObject:
    return ModelObject(id=entry.id, owned_by=entry.owned_by, display_name=entry.display_name,
                       max_rank=entry.max_rank, target_policy=entry.target_policy)


async def list_models(request: web.Request) -> web.Response:
    catalogue = request.app[PLATFORM].catalogue
    data = [model_object(entry).model_dump(mode="json") for entry in catalogue.models]
    return json_response({"object": "list", "data": data})


async def get_model(request: web.Request) -> web.Response:
    model_id = request.match_info["model_id"]
    try:
        entry = request.app[PLATFORM].catalogue.get(model_id)
    except KeyError:
        raise model_not_found(model_id) from None
    return json_response(model_object(entry))

