"""Each API's request → the platform's messages and sampling parameters, refusing what it cannot honour.

Pure. Parameters the platform does not support are named in a 400, never silently dropped;
a parameter set to its neutral value (`tools: []`, `n: 1`, `logprobs: false`, …) is accepted.
"""
from __future__ import annotations

from typing import Any

from shared.contracts.errors import BadRequest
from shared.contracts.inference import (
    ChatCompletionRequest,
    MessagesRequest,
    ResponseCreateRequest,
    TextPart,
)
from shared.contracts.messages import ChatMessage, SamplingParams

DEFAULT_MAX_TOKENS = 256
MAX_STOP_SEQUENCES = 4
# accepted and without effect here
IGNORED = {"user", "store", "service_tier", "safety_identifier", "prompt_cache_key", "parallel_tool_calls",
           "truncation"}
NEUTRAL_SPECIAL = {
    "response_format": ({"type": "text"},),
    "text": ({"format": {"type": "text"}},),
    "tool_choice": ("none",),
    "modalities": (["text"],),
}
ROLE_MAP = {"developer": "system", "system": "system", "user": "user", "assistant": "assistant"}


def _is_neutral(name: str, value: Any) -> bool:
    if value is None or value is False or value == 0 or value == "" or value == [] or value == {}:
        return True
    return value in NEUTRAL_SPECIAL.get(name, ())


def unsupported_extras(extra: dict[str, Any] | None) -> list[str]:
    return sorted(k for k, v in (extra or {}).items() if k not in IGNORED and not _is_neutral(k, v))


def refuse(names: list[str]) -> None:
    if names:
        raise BadRequest(f"Unsupported parameter(s): {', '.join(names)}. This platform serves plain text "
                         "generation; remove them and send the request again.", param=names[0],
                         code="unsupported_parameter")


def text_of(content: str | list[TextPart] | None, param: str, text_types: tuple[str, ...]) -> str:
    if content is None:
        raise BadRequest(f"{param} is required.", param=param, code="invalid_request")
    if isinstance(content, str):
        return content
    texts = []
    for j, part in enumerate(content):
        if part.type not in text_types or part.text is None:
            raise BadRequest(f"Unsupported content part type '{part.type}' at {param}[{j}]: only "
                             f"{' and '.join(text_types)} parts are supported.", param=f"{param}[{j}].type",
                             code="unsupported_parameter")
        texts.append(part.text)
    return "".join(texts)


def _stops(stop: str | list[str] | None, param: str) -> list[str]:
    stops = [stop] if isinstance(stop, str) else list(stop or [])
    if len(stops) > MAX_STOP_SEQUENCES:
        raise BadRequest(f"{param} takes at most {MAX_STOP_SEQUENCES} sequences.", param=param,
                         code="invalid_request")
    return stops


def _sampling(max_tokens: int | None, temperature: float | None, top_p: float | None,
              stop: list[str], seed: int | None = None) -> SamplingParams:
    return SamplingParams(max_tokens=max_tokens or DEFAULT_MAX_TOKENS,
                          temperature=1.0 if temperature is None else temperature,
                          top_p=1.0 if top_p is None else top_p, stop=stop, seed=seed)


# -- Chat Completions -----------------------------------------------------------------
def chat_request(req: ChatCompletionRequest) -> tuple[list[ChatMessage], SamplingParams]:
    names = unsupported_extras(req.model_extra)
    if req.n is not None and req.n != 1:
        names.append("n")
    messages = []
    for i, message in enumerate(req.messages):
        names += [f"messages[{i}].{k}" for k in unsupported_extras(message.model_extra) if k != "name"]
        if message.role not in ROLE_MAP:
            names.append(f"messages[{i}].role")
            continue
        text = text_of(message.content, f"messages[{i}].content", ("text",))
        messages.append(ChatMessage(role=ROLE_MAP[message.role], content=text))
    refuse(names)
    max_tokens = req.max_completion_tokens or req.max_tokens
    return messages, _sampling(max_tokens, req.temperature, req.top_p, _stops(req.stop, "stop"), req.seed)


# -- Responses ------------------------------------------------------------------------
def responses_request(req: ResponseCreateRequest) -> tuple[list[ChatMessage], SamplingParams]:
    names = unsupported_extras(req.model_extra)
    messages = [ChatMessage(role="system", content=req.instructions)] if req.instructions else []
    if isinstance(req.input, str):
        messages.append(ChatMessage(role="user", content=req.input))
    else:
        for i, item in enumerate(req.input):
            if item.type != "message" or item.role is None:
                names.append(f"input[{i}].type")
                continue
            names += [f"input[{i}].{k}" for k in unsupported_extras(item.model_extra) if k not in ("id", "status")]
            text = text_of(item.content, f"input[{i}].content", ("input_text", "output_text", "text"))
            messages.append(ChatMessage(role=ROLE_MAP[item.role], content=text))
    refuse(names)
    if req.background and req.stream:
        raise BadRequest("stream cannot be combined with background: create the background response, then "
                         "poll GET /v1/responses/{id}.", param="stream", code="unsupported_parameter")
    return messages, _sampling(req.max_output_tokens, req.temperature, req.top_p, [])


# -- Anthropic Messages ---------------------------------------------------------------
def messages_request(req: MessagesRequest) -> tuple[list[ChatMessage], SamplingParams]:
    names = unsupported_extras(req.model_extra)
    messages = []
    if req.system:
        messages.append(ChatMessage(role="system", content=text_of(req.system, "system", ("text",))))
    for i, message in enumerate(req.messages):
        names += [f"messages[{i}].{k}" for k in unsupported_extras(message.model_extra)]
        text = text_of(message.content, f"messages[{i}].content", ("text",))
        messages.append(ChatMessage(role=message.role, content=text))
    refuse(names)
    stops = _stops(req.stop_sequences, "stop_sequences")
    return messages, _sampling(req.max_tokens, req.temperature, req.top_p, stops)
