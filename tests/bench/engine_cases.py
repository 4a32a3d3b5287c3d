"""What tests/bench/bench_engine.py runs: the models, PEFT's adapters for them, and batches that decode
without end so that each measured round is only decode steps."""
from __future__ import annotations

import dataclasses
import tempfile
import time
import warnings
from pathlib import Path

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import DeepseekV3Config, DeepseekV3ForCausalLM

from services.gpu_worker.adapters.adapter_files import load_adapter
from services.gpu_worker.adapters.adapter_weights import AdapterWeights
from services.gpu_worker.engines.torch_engine.model_host import EngineOptions, host_engine
from services.gpu_worker.engines.torch_engine.sampling import SamplingSpec
from services.gpu_worker.engines.torch_engine.sequence import GenerationRequest
from services.gpu_worker.engines.torch_engine.targets import discover_targets
from services.gpu_worker.models.tokenizer import build_tokenizer

LINEARS = ["q_a_proj", "q_b_proj", "kv_a_proj_with_mqa", "kv_b_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
PREFIX = "base_model.model.model."
MAX_LEN = 512


def bench_config(hidden: int, layers: int, moe: bool = False) -> DeepseekV3Config:
    """Dense: every layer's MLP a Linear. MoE: the first layer dense (as DeepSeek-V3/Kimi), the others
    8 routed experts (2 a token) and a shared one."""
    heads = hidden // 128
    return DeepseekV3Config(
        vocab_size=4096, hidden_size=hidden, intermediate_size=hidden * 11 // 4, moe_intermediate_size=hidden // 4,
        num_hidden_layers=layers, first_k_dense_replace=1 if moe else layers, n_shared_experts=1,
        num_attention_heads=heads, num_key_value_heads=heads, n_routed_experts=8, num_experts_per_tok=2, n_group=2,
        topk_group=1, q_lora_rank=hidden // 2, kv_lora_rank=hidden // 4, qk_rope_head_dim=32, qk_nope_head_dim=64,
        v_head_dim=64, max_position_embeddings=MAX_LEN, initializer_range=0.02, bos_token_id=256, eos_token_id=257,
        pad_token_id=258)


def build(config: DeepseekV3Config, seed: int = 0) -> DeepseekV3ForCausalLM:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return DeepseekV3ForCausalLM(config).eval()


class Twins:
    """Model objects over one model's weight tensors (each engine wraps its own modules)."""

    def __init__(self, model: DeepseekV3ForCausalLM):
        self.config, self.weights = model.config, dict(model.state_dict())  # before any wrapper renames them

    def __call__(self) -> DeepseekV3ForCausalLM:
        twin = build(self.config)
        twin.load_state_dict(self.weights, assign=True)
        return twin


def make_adapters(config: DeepseekV3Config, count: int, rank: int, root: Path) -> PeftModel:
    """`count` random adapters saved as PEFT saves them, and a PEFT model holding them all. Dense: on every
    Linear. MoE: `target_modules="all-linear"`, i.e. attention, the fused routed experts (gate_up at twice
    the rank) and the router."""
    model = build(config)
    if config.first_k_dense_replace >= config.num_hidden_layers:
        # PEFT 0.21 remaps gate/up/down_proj of a deepseek_v3 model to its fused experts, which leaves the dense
        # MLP without LoRA; under another model_type it adapts the dense Linears as asked
        model.config.model_type = "deepseek_v3_dense_bench"
        lora = LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=LINEARS, init_lora_weights=False)
    else:
        lora = LoraConfig(r=rank, lora_alpha=2 * rank, target_modules="all-linear", init_lora_weights=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        peft = get_peft_model(model, lora, adapter_name="a0")
        for index in range(1, count):
            peft.add_adapter(f"a{index}", lora)
        for index in range(count):
            peft.save_pretrained(root, selected_adapters=[f"a{index}"])
    return peft.eval()


def adapters_for(model: DeepseekV3ForCausalLM, count: int, rank: int) -> tuple[list[AdapterWeights], PeftModel]:
    """`count` adapters as the worker loads them (PEFT's files read by its loader), and PEFT's model of them."""
    targets = discover_targets(model)
    with tempfile.TemporaryDirectory() as tmp:
        peft = make_adapters(model.config, count, rank, Path(tmp))
        # PEFT saves each named adapter in its own folder
        weights = [load_adapter(Path(tmp) / f"a{i}" / "adapter_config.json",
                                Path(tmp) / f"a{i}" / "adapter_model.safetensors", targets, [PREFIX], 2 * rank, 1 << 34)
                   for i in range(count)]
    return weights, peft


def prompts(count: int, length: int) -> list[list[int]]:
    generator = torch.Generator().manual_seed(1)
    return [torch.randint(0, 256, (length,), generator=generator).tolist() for _ in range(count)]


class RunningBatch:
    """One engine decoding one batch without end: row i uses adapter i (None: the base model).

    `entry_order` is the order the adapters are first placed in slots, which decides each one's bank entry:
    rows admitted in order then sit in entry order ("forward") or not ("reverse", as after a worker has run a
    while and rows and adapters have come and gone)."""

    def __init__(self, model, adapters: list[tuple[str, AdapterWeights] | None], entry_order: str = "reverse",
                 strategy: str | None = None):
        options = EngineOptions(num_slots=len(adapters), max_batch=len(adapters), max_len=MAX_LEN)
        if strategy is not None:
            options = dataclasses.replace(options, strategy=strategy)
        self.engine = host_engine(model, build_tokenizer(), options)
        self.engine.stop_token_ids = set()  # random weights: decode the full length every time
        self.adapters, self.rows = adapters, prompts(len(adapters), 16)
        self.left = 0
        placed = [a for a in adapters if a is not None]
        for key, weights in reversed(placed) if entry_order == "reverse" else placed:
            self.engine.submit(GenerationRequest(f"warm-{key}", [1, 2], 1, SamplingSpec(0.0), adapter_key=key,
                                                 adapter=weights))
            self._drain()

    @property
    def strategy(self):
        return self.engine.runner.context.strategy

    def ready(self, steps: int) -> None:
        """Room for `steps` more decode steps of every row (else the batch starts afresh, untimed)."""
        if self.left < steps:
            self._restart()

    def timed_step(self) -> tuple[float, float]:
        """Seconds (wall, this thread's CPU) of one decode step of the whole batch."""
        started, cpu = time.perf_counter(), time.thread_time()
        self.engine.step()
        self.left -= 1
        return time.perf_counter() - started, time.thread_time() - cpu

    def _restart(self) -> None:
        for index in range(len(self.rows)):
            self.engine.cancel(f"r{index}")
        self._drain()
        room = MAX_LEN - len(self.rows[0]) - 1
        for index, (prompt, adapter) in enumerate(zip(self.rows, self.adapters)):
            key, weights = adapter if adapter is not None else (None, None)
            self.engine.submit(GenerationRequest(f"r{index}", prompt, room, SamplingSpec(0.0), adapter_key=key,
                                                 adapter=weights))
        while len(self.engine.by_row) < len(self.rows):
            self.engine.step()
        self.engine.step()  # warm-up
        self.left = room - 3

    def _drain(self) -> None:
        while self.engine.has_work():
            self.engine.step()
