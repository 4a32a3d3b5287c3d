"""One base model made ready to serve: weights, tokenizer, multi-LoRA wrappers, cache and engine."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from services.gpu_worker.engines.torch_engine.engine import Engine, EngineObserver
from services.gpu_worker.engines.torch_engine.lora_bank import LoraBank
from services.gpu_worker.engines.torch_engine.lora_modules import LoraContext, install_multi_lora
from services.gpu_worker.engines.torch_engine.lora_ops import DEFAULT_STRATEGY
from services.gpu_worker.engines.torch_engine.runner import ModelRunner
from services.gpu_worker.engines.torch_engine.slots import SlotTable
from services.gpu_worker.engines.torch_engine.targets import TargetSpec, discover_targets
from services.gpu_worker.engines.torch_engine.torch_threads import threads_for
from services.gpu_worker.models.tiny_model import build_model, build_model_tokenizer
from services.gpu_worker.models.tokenizer import END_OF_TURN
from shared.catalogue.catalogue import ModelEntry


@dataclass(frozen=True)
class EngineOptions:
    num_slots: int = 8
    max_batch: int = 16
    max_len: int = 1024
    strategy: str = DEFAULT_STRATEGY  # lora_ops: fastest on CPU in tests/bench/bench_engine.py; all are exact
    prefill_token_budget: int = 4096
    cpu_threads: int | None = None  # None: one for small models, else torch's default


@dataclass
class ModelHost:
    entry: ModelEntry
    tokenizer: object
    targets: dict[str, TargetSpec]
    engine: Engine

    @property
    def key_prefixes(self) -> list[str]:
        return list(self.entry.key_prefixes)

    def chat_prompt(self, messages: list[dict[str, str]]) -> list[int]:
        return list(self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                                       return_dict=False))


def host_engine(model, tokenizer, options: EngineOptions, observer: EngineObserver | None = None) -> Engine:
    """Install the multi-LoRA wrappers on `model` and wrap it in an engine."""
    param = next(model.parameters())
    targets = discover_targets(model)
    bank = LoraBank(targets, options.num_slots, param.dtype, param.device)
    context = LoraContext(bank, options.strategy)
    install_multi_lora(model, bank, context)
    runner = ModelRunner(model, context, options.num_slots, options.max_batch, options.max_len)
    stop_ids = {tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids(END_OF_TURN)} - {None}
    return Engine(runner, bank, SlotTable(options.num_slots),
                  lambda ids: tokenizer.decode(ids, skip_special_tokens=True),
                  stop_token_ids=stop_ids, vocab_limit=len(tokenizer),
                  prefill_token_budget=options.prefill_token_budget, observer=observer)


def load_host(entry: ModelEntry, options: EngineOptions, observer: EngineObserver | None = None) -> ModelHost:
    """Build the catalogue entry's model (locally built models only) on the best device here."""
    model = build_model(entry.id)
    if torch.cuda.is_available():
        model = model.to("cuda")
    elif options.cpu_threads or threads_for(model.config.hidden_size):
        # the worker owns its process: the setting holds for the engine's thread too
        torch.set_num_threads(options.cpu_threads or threads_for(model.config.hidden_size))
    tokenizer = build_model_tokenizer(entry.id)
    targets = discover_targets(model)
    return ModelHost(entry, tokenizer, targets, host_engine(model, tokenizer, options, observer))
