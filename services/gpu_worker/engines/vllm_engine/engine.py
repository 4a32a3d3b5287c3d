"""vLLM's AsyncLLM behind the worker's engine interface.

Requests arrive tokenized with the model's chat template (the worker renders prompts itself, the
same for both engines); vLLM streams deltas (`RequestOutputKind.DELTA`), which become our
`RequestUpdate`s with usage and finish reason. Adapters reach vLLM only as the rewritten checkpoints
of `adapter_export`, checked against this engine's capabilities first.
"""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, GenerationConfig
from vllm import SamplingParams
from vllm.engine.arg_utils import AsyncEngineArgs
from vllm.inputs import TokensPrompt
from vllm.sampling_params import RequestOutputKind
from vllm.v1.engine.async_llm import AsyncLLM

from services.gpu_worker.adapters.adapter_files import load_adapter
from services.gpu_worker.adapters.engine_check import check_applied
from services.gpu_worker.engines.base import WorkerStopping
from services.gpu_worker.engines.torch_engine.sequence import GenerationRequest, RequestUpdate
from services.gpu_worker.engines.torch_engine.targets import TargetSpec, discover_targets
from services.gpu_worker.engines.vllm_engine.adapter_export import export_for_vllm
from services.gpu_worker.engines.vllm_engine.adapters import RegisteredAdapters, VllmAdapter
from services.gpu_worker.engines.vllm_engine.model_dir import (
    VllmOptions,
    engine_arguments,
    model_directory,
    registered_capacity,
)
from services.gpu_worker.errors import CONTEXT_TOO_LONG, INVALID_REQUEST
from shared.catalogue.catalogue import ModelEntry
from shared.catalogue.engines import capabilities
from shared.logging import get_logger

log = get_logger("gpu_worker.vllm")
FINISH_REASONS = {"stop": "stop", "length": "length", "abort": "cancelled"}
DRAIN_SECONDS = 30.0
DRAIN_POLL_SECONDS = 0.05


def meta_targets(model_dir: Path) -> dict[str, TargetSpec]:
    """The adaptable weights' shapes, from a model built on the meta device (no memory, no weights)."""
    config = AutoConfig.from_pretrained(model_dir)
    config = getattr(config, "text_config", config)  # Kimi's vision-language wrapper: the text stack
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return discover_targets(model)


def stop_token_ids(model_dir: Path, tokenizer) -> list[int]:
    """The tokenizer's EOS and the generation config's (the chat template's end of turn among them)."""
    try:
        configured = GenerationConfig.from_pretrained(model_dir).eos_token_id
    except OSError:  # no generation_config.json
        configured = None
    configured = configured if isinstance(configured, list) else [configured]
    return sorted({tokenizer.eos_token_id, *configured} - {None})


class VllmEngine:
    name = "vllm"

    def __init__(self, entry: ModelEntry, options: VllmOptions):
        self.entry, self.options = entry, options
        self.capabilities = capabilities("vllm")
        self.llm: AsyncLLM | None = None
        self.adapters: RegisteredAdapters | None = None
        # adapter key -> whether an operator pinned its LoRA (the worker sets its residency's)
        self.pinned: Callable[[str], bool] = lambda key: False
        self.targets: dict[str, TargetSpec] = {}
        self.lora_enabled = False
        self._running: set[str] = set()
        self._stopping = False

    # -- lifecycle ------------------------------------------------------------------
    async def start(self) -> None:
        on_cpu = not torch.cuda.is_available()
        model_dir = await asyncio.to_thread(model_directory, self.entry, self.options)
        arguments = engine_arguments(self.entry, model_dir, self.options, on_cpu)
        self.lora_enabled = arguments["enable_lora"]
        self.max_model_len = arguments["max_model_len"]
        self.tokenizer = await asyncio.to_thread(AutoTokenizer.from_pretrained, model_dir)
        self.targets = await asyncio.to_thread(meta_targets, model_dir)
        self.stop_token_ids = await asyncio.to_thread(stop_token_ids, model_dir, self.tokenizer)
        self.llm = AsyncLLM.from_engine_args(AsyncEngineArgs(**arguments))
        self.adapters = RegisteredAdapters(self.llm, registered_capacity(arguments, on_cpu),
                                           pinned=lambda key: self.pinned(key))
        log.info("vllm_engine_started", model=self.entry.id, lora=self.lora_enabled, on_cpu=on_cpu)

    async def stop(self, drain_seconds: float = DRAIN_SECONDS) -> None:
        """Let running requests finish for up to `drain_seconds`; the rest raise `WorkerStopping`."""
        if self.llm is None:
            return
        self._stopping = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + drain_seconds
        while self._running and loop.time() < deadline:
            await asyncio.sleep(DRAIN_POLL_SECONDS)
        for request_id in list(self._running):
            await self.llm.abort(request_id)
        await asyncio.sleep(0)  # let the aborted streams see their end before the engine goes
        self.llm.shutdown()
        self.llm = None

    @property
    def running(self) -> bool:
        return self.llm is not None and not self.llm.errored

    @property
    def slots_in_use(self) -> int:
        return self.adapters.in_use if self.adapters else 0

    # -- prompts and adapters ---------------------------------------------------------
    def chat_prompt(self, messages: list[dict[str, str]]) -> list[int]:
        return list(self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                                       return_dict=False))

    def read_adapter(self, key: str, config_path: Path, weights_path: Path, max_bytes: int) -> VllmAdapter:
        """Check the adapter (our loader, then this engine's capabilities) and write it in vLLM's form."""
        weights = load_adapter(config_path, weights_path, self.targets, list(self.entry.key_prefixes),
                               self.entry.max_rank, max_bytes)
        check_applied(weights, self.capabilities, self.lora_enabled)
        out = self.options.data_dir / "vllm-adapters" / self.entry.slug / key.replace(":", "_")
        export_for_vllm(weights, out, self.entry.key_prefixes[0])
        return VllmAdapter(key, out, weights.nbytes)

    # -- requests -------------------------------------------------------------------
    def _sampling(self, request: GenerationRequest) -> SamplingParams:
        spec = request.sampling
        return SamplingParams(
            n=1, max_tokens=request.max_tokens, temperature=spec.temperature, top_p=spec.top_p, seed=spec.seed,
            stop=list(request.stop) or None, stop_token_ids=self.stop_token_ids, skip_special_tokens=True,
            output_kind=RequestOutputKind.DELTA)

    async def generate(self, request: GenerationRequest) -> AsyncIterator[RequestUpdate]:
        if len(request.prompt) >= self.max_model_len:
            yield RequestUpdate(request.request_id, finished=True, error_code=CONTEXT_TOO_LONG,
                                error_message=f"the prompt is {len(request.prompt)} tokens; the model's context "
                                              f"holds {self.max_model_len}", prompt_tokens=len(request.prompt))
            return
        adapter: VllmAdapter | None = request.adapter
        lora_request = await self.adapters.acquire(adapter) if adapter is not None else None
        prompt_tokens, completion_tokens, text = len(request.prompt), 0, []
        self._running.add(request.request_id)
        try:
            stream = self.llm.generate(TokensPrompt(prompt_token_ids=list(request.prompt)), self._sampling(request),
                                       request.request_id, lora_request=lora_request)
            async for output in stream:
                completion = output.outputs[0]
                completion_tokens += len(completion.token_ids)
                text.append(completion.text)
                if not output.finished:
                    yield RequestUpdate(request.request_id, text=completion.text, prompt_tokens=prompt_tokens,
                                        completion_tokens=completion_tokens)
                    continue
                if completion.finish_reason == "abort" and self._stopping:
                    raise WorkerStopping(request.request_id)
                reason = FINISH_REASONS.get(completion.finish_reason or "", completion.finish_reason)
                yield RequestUpdate(request.request_id, text=completion.text, finished=True, finish_reason=reason,
                                    output_text="".join(text), prompt_tokens=prompt_tokens,
                                    completion_tokens=completion_tokens)
                return
            if self._stopping:
                raise WorkerStopping(request.request_id)
            yield RequestUpdate(request.request_id, finished=True, finish_reason="cancelled",
                                output_text="".join(text), prompt_tokens=prompt_tokens,
                                completion_tokens=completion_tokens)
        except (ValueError, TypeError) as exc:  # vLLM refused the request itself: this request alone fails
            yield RequestUpdate(request.request_id, finished=True, error_code=INVALID_REQUEST,
                                error_message=str(exc), prompt_tokens=prompt_tokens)
        finally:
            self._running.discard(request.request_id)
            if adapter is not None:
                self.adapters.release(adapter.key)

    def cancel(self, request_id: str) -> None:
        if self.llm is not None and request_id in self._running:
            asyncio.get_running_loop().create_task(self.llm.abort(request_id))
