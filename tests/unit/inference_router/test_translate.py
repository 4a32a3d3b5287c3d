"""Each API's request → messages and sampling; unsupported parameters named, neutral ones accepted."""
from __future__ import annotations

import pytest

from services.inference_router.translate import chat_request, messages_request, responses_request
from shared.contracts.errors import BadRequest
from shared.contracts.inference import ChatCompletionRequest, MessagesRequest, ResponseCreateRequest

TINY = "loraserve/kimi-k2-tiny"


def chat(**fields):
    return ChatCompletionRequest.model_validate({"model": TINY, "messages": [{"role": "user", "content": "hi"}],
                                                 **fields})


def test_chat_roles_parts_and_sampling():
    req = chat(messages=[{"role": "developer", "content": "rules"},
                         {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}],
               max_completion_tokens=9, temperature=0.2, stop="END", seed=7)
    messages, sampling = chat_request(req)
    assert [(m.role, m.content) for m in messages] == [("system", "rules"), ("user", "ab")]
    assert (sampling.max_tokens, sampling.temperature, sampling.top_p, sampling.stop, sampling.seed) == \
        (9, 0.2, 1.0, ["END"], 7)


def test_chat_unsupported_parameters_are_all_named():
    with pytest.raises(BadRequest) as caught:
        chat_request(chat(tools=[{"type": "function"}], n=3, presence_penalty=0.5))
    assert caught.value.message.startswith("Unsupported parameter(s): presence_penalty, tools, n.")
    assert caught.value.param == "presence_penalty"


def test_chat_neutral_values_and_ignored_fields_pass():
    chat_request(chat(tools=[], n=1, logprobs=False, response_format={"type": "text"}, user="u", store=False))


def test_chat_non_text_parts_and_tool_messages_are_refused():
    with pytest.raises(BadRequest, match=r"messages\[0\].content\[0\]"):
        chat_request(chat(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]))
    with pytest.raises(BadRequest, match=r"messages\[1\].role"):
        chat_request(chat(messages=[{"role": "user", "content": "x"}, {"role": "tool", "content": "y"}]))


def test_responses_instructions_and_items():
    req = ResponseCreateRequest.model_validate({
        "model": TINY, "instructions": "be terse", "max_output_tokens": 5,
        "input": [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "q"}]},
                  {"role": "assistant", "content": "a"}]})
    messages, sampling = responses_request(req)
    assert [(m.role, m.content) for m in messages] == [("system", "be terse"), ("user", "q"), ("assistant", "a")]
    assert sampling.max_tokens == 5


def test_responses_refuses_function_items_and_background_streams():
    req = ResponseCreateRequest.model_validate({"model": TINY, "input": [{"type": "function_call_output"}]})
    with pytest.raises(BadRequest, match=r"input\[0\].type"):
        responses_request(req)
    req = ResponseCreateRequest.model_validate({"model": TINY, "input": "x", "background": True, "stream": True})
    with pytest.raises(BadRequest, match="background"):
        responses_request(req)


def test_messages_system_blocks_and_stop_sequences():
    req = MessagesRequest.model_validate({
        "model": TINY, "max_tokens": 3, "system": [{"type": "text", "text": "sys"}],
        "messages": [{"role": "user", "content": "u"}], "stop_sequences": ["\n\n"]})
    messages, sampling = messages_request(req)
    assert [(m.role, m.content) for m in messages] == [("system", "sys"), ("user", "u")]
    assert sampling.max_tokens == 3 and sampling.stop == ["\n\n"]


def test_messages_unsupported_parameters():
    req = MessagesRequest.model_validate({"model": TINY, "max_tokens": 3, "messages": [{"role": "user", "content": "u"}],
                                          "thinking": {"type": "enabled"}, "top_k": 4})
    with pytest.raises(BadRequest, match="thinking, top_k"):
        messages_request(req)
