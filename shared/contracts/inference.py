"""Wire shapes of the three inference APIs: OpenAI Chat Completions, OpenAI Responses, Anthropic Messages.

Requests keep unknown fields (`extra="allow"`) so the router can refuse parameters it does
not support by name instead of ignoring them. Responses are what the official SDKs parse.
"""
from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

# -- shared ---------------------------------------------------------------------------
METADATA_MAX_PAIRS = 16
METADATA_MAX_KEY_CHARS = 64
METADATA_MAX_VALUE_CHARS = 512
CompletionWindow = Literal["asap", "priority", "standard", "flex"]
# Integers that reach the engine are bounded here, so an out-of-range value is the API's own 400.
# OpenAI's `seed` is a 64-bit signed integer; a token limit above 2**20 exceeds every served context.
SEED_MIN, SEED_MAX = -(2**63), 2**63 - 1
MAX_OUTPUT_TOKENS = 2**20
OutputTokens = Annotated[int, Field(ge=1, le=MAX_OUTPUT_TOKENS)]
Seed = Annotated[int, Field(ge=SEED_MIN, le=SEED_MAX)]


class _Request(BaseModel):
    model_config = ConfigDict(extra="allow")


class TextPart(BaseModel):
    """A text content part; `type` is `text` (chat, messages) or `input_text`/`output_text` (responses)."""

    model_config = ConfigDict(extra="allow")
    type: str
    text: str | None = None


# -- Chat Completions -----------------------------------------------------------------
class ChatCompletionMessageIn(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[TextPart] | None = None


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")
    include_usage: bool = False


class ChatCompletionRequest(_Request):
    model: str
    messages: list[ChatCompletionMessageIn] = Field(min_length=1)
    max_tokens: OutputTokens | None = None
    max_completion_tokens: OutputTokens | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    stop: str | list[str] | None = None
    seed: Seed | None = None
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    metadata: dict[str, Any] | None = None
    n: int | None = None


class ChatMessageOut(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str
    refusal: str | None = None


class ChatChoice(BaseModel):
    index: int = 0
    message: ChatMessageOut
    logprobs: None = None
    finish_reason: Literal["stop", "length"]


class CompletionUsage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: CompletionUsage
    system_fingerprint: str | None = None


class ChunkDelta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChunkChoice(BaseModel):
    index: int = 0
    delta: ChunkDelta
    logprobs: None = None
    finish_reason: Literal["stop", "length"] | None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: CompletionUsage | None = None
    system_fingerprint: str | None = None


# -- Responses ------------------------------------------------------------------------
class ResponseInputItem(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str = "message"
    role: Literal["system", "developer", "user", "assistant"] | None = None
    content: str | list[TextPart] | None = None


class ResponseCreateRequest(_Request):
    model: str
    input: str | Annotated[list[ResponseInputItem], Field(min_length=1)]  # the worker needs a message
    instructions: str | None = None
    max_output_tokens: OutputTokens | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    metadata: dict[str, Any] | None = None
    background: bool | None = False
    stream: bool | None = False
    store: bool | None = True


class OutputText(BaseModel):
    type: Literal["output_text"] = "output_text"
    text: str
    annotations: list[Any] = Field(default_factory=list)
    logprobs: list[Any] = Field(default_factory=list)


class OutputMessage(BaseModel):
    id: str
    type: Literal["message"] = "message"
    role: Literal["assistant"] = "assistant"
    status: Literal["in_progress", "completed", "incomplete"]
    content: list[OutputText] = Field(default_factory=list)


class ResponseUsage(BaseModel):
    input_tokens: int
    output_tokens: int
    total_tokens: int
    input_tokens_details: dict[str, int] = Field(default_factory=lambda: {"cached_tokens": 0})
    output_tokens_details: dict[str, int] = Field(default_factory=lambda: {"reasoning_tokens": 0})


class ResponseErrorBody(BaseModel):
    code: str
    message: str


ResponseStatus = Literal["queued", "in_progress", "completed", "failed", "cancelled", "incomplete"]


class ResponseObject(BaseModel):
    """The OpenAI Response object (GET /v1/responses/{id}, create, and inside stream events)."""

    id: str
    object: Literal["response"] = "response"
    created_at: int
    status: ResponseStatus
    background: bool = False
    completed_at: int | None = None
    error: ResponseErrorBody | None = None
    incomplete_details: dict[str, str] | None = None
    instructions: str | None = None
    max_output_tokens: int | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    model: str
    output: list[OutputMessage] = Field(default_factory=list)
    parallel_tool_calls: bool = False
    temperature: float | None = None
    top_p: float | None = None
    tool_choice: str = "none"
    tools: list[Any] = Field(default_factory=list)
    text: dict[str, Any] = Field(default_factory=lambda: {"format": {"type": "text"}})
    truncation: str = "disabled"
    usage: ResponseUsage | None = None
    user: str | None = None
    store: bool = True


# -- Anthropic Messages ---------------------------------------------------------------
class AnthropicMessageIn(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["user", "assistant"]
    content: str | list[TextPart]


class MessagesRequest(_Request):
    model: str
    max_tokens: OutputTokens
    messages: list[AnthropicMessageIn] = Field(min_length=1)
    system: str | list[TextPart] | None = None
    metadata: dict[str, Any] | None = None
    stop_sequences: list[str] | None = None
    stream: bool | None = False
    temperature: float | None = Field(None, ge=0, le=1)
    top_p: float | None = Field(None, ge=0, le=1)


class AnthropicTextBlock(BaseModel):
    type: Literal["text"] = "text"
    text: str


class AnthropicUsage(BaseModel):
    input_tokens: int
    output_tokens: int


StopReason = Literal["end_turn", "max_tokens", "stop_sequence"]


class AnthropicMessage(BaseModel):
    id: str
    type: Literal["message"] = "message"
    role: Literal["assistant"] = "assistant"
    content: list[AnthropicTextBlock]
    model: str
    stop_reason: StopReason | None = None
    stop_sequence: str | None = None
    usage: AnthropicUsage


# -- Models ---------------------------------------------------------------------------
class ModelObject(BaseModel):
    """An OpenAI Model object plus what a LoRA author needs: the rank limit and target-module policy."""

    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str
    display_name: str | None = None
    max_rank: int
    target_policy: str
