"""vLLM against itself and against our torch engine, on one model and the same prompts.

    python -m tests.bench.bench_vllm        (from the main venv: re-executes in the vLLM environment)

One run: vLLM with no adapter, vLLM with 4 and with 16 distinct rank-8 adapters in the batch, and
the torch engine with the same 16 adapters. Figures are decode tokens/s over the whole batch
(tokens generated / wall time, prefill included); the anchor is vLLM's own 0.66 of base for
rank-8 LoRA (A100, its PR #11267), the goal on a GPU 0.8. The last line is one JSON object with
`vllm_mixed_over_base` (16 adapters / base) and `torch_over_vllm` (same adapters).
"""
from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

MODEL = "loraserve-test/dsv3-dense"
CATALOGUE = Path(__file__).resolve().parents[1] / "vllm" / "models.json"
BATCH, MAX_TOKENS, ADAPTERS = 16, 96, 16
PROMPTS = [f"Question {i}: tell me about the number {i * 7}." for i in range(BATCH)]


def _reexec_in_vllm_env() -> None:
    from shared.cli.vllm_env import child_environment, default_python, vllm_here

    if vllm_here():
        return
    python = Path(os.environ.get("LORASERVE_VLLM_PYTHON") or default_python())
    if not python.exists():
        raise SystemExit(f"no vLLM environment at {python}: run `make vllm` first")
    env = {**child_environment(dict(os.environ)), "LORASERVE_CATALOGUE_FILE": str(CATALOGUE)}
    os.execve(str(python), [str(python), "-m", "tests.bench.bench_vllm", *sys.argv[1:]], env)


def _requests(engine, adapters: list) -> list:
    from services.gpu_worker.engines.torch_engine.sampling import SamplingSpec
    from services.gpu_worker.engines.torch_engine.sequence import GenerationRequest

    out = []
    for i, prompt in enumerate(PROMPTS):
        adapter = adapters[i % len(adapters)] if adapters else None
        out.append(GenerationRequest(
            request_id=uuid.uuid4().hex, prompt=engine.chat_prompt([{"role": "user", "content": prompt}]),
            max_tokens=MAX_TOKENS, sampling=SamplingSpec(temperature=0.0),
            adapter_key=getattr(adapter, "key", None) if adapter is not None else None, adapter=adapter))
    return out


async def _tokens_per_second(engine, adapters: list, keys: list[str] | None = None) -> float:
    requests = _requests(engine, adapters)
    if keys is not None:  # the torch engine's requests name their adapter by key
        for i, request in enumerate(requests):
            request.adapter_key = keys[i % len(keys)] if adapters else None

    async def run(request):
        return [u async for u in engine.generate(request)][-1].completion_tokens

    await asyncio.gather(*(run(r) for r in _requests(engine, adapters[:1])[:2]))  # warm-up
    started = time.perf_counter()
    tokens = sum(await asyncio.gather(*(run(r) for r in requests)))
    return tokens / (time.perf_counter() - started)


def _adapter_dirs(model_dir: Path, root: Path) -> list[Path]:
    from tests.vllm.peft_adapters import make_adapter

    return [make_adapter(model_dir, "attention-r8", root / f"a{i}", seed=100 + i) for i in range(ADAPTERS)]


def _read_all(engine, dirs: list[Path]) -> list:
    return [engine.read_adapter(f"bench-{i}", d / "adapter_config.json", d / "adapter_model.safetensors", 1 << 30)
            for i, d in enumerate(dirs)]


async def measure(root: Path) -> dict:
    from services.gpu_worker.engines.torch_engine.model_host import EngineOptions
    from services.gpu_worker.engines.torch_engine.serving import TorchEngine
    from services.gpu_worker.engines.vllm_engine.engine import VllmEngine
    from services.gpu_worker.engines.vllm_engine.model_dir import VllmOptions, model_directory
    from shared.catalogue.catalogue import load_catalogue

    entry = load_catalogue().get(MODEL)
    options = VllmOptions(slots=ADAPTERS, cpu_adapters=ADAPTERS + 2, max_batch=BATCH, data_dir=root)
    dirs = _adapter_dirs(model_directory(entry, options), root / "adapters")
    vllm = VllmEngine(entry, options)
    await vllm.start()
    try:
        adapters = _read_all(vllm, dirs)
        result = {"vllm_base_tok_s": await _tokens_per_second(vllm, []),
                  "vllm_4_loras_tok_s": await _tokens_per_second(vllm, adapters[:4]),
                  "vllm_16_loras_tok_s": await _tokens_per_second(vllm, adapters)}
    finally:
        await vllm.stop()
    torch_engine = TorchEngine(entry, EngineOptions(num_slots=ADAPTERS, max_batch=BATCH, max_len=512))
    await torch_engine.start()
    try:
        weights = _read_all(torch_engine, dirs)
        keys = [f"bench-{i}" for i in range(ADAPTERS)]
        result["torch_base_tok_s"] = await _tokens_per_second(torch_engine, [])
        result["torch_16_loras_tok_s"] = await _tokens_per_second(torch_engine, weights, keys)
    finally:
        await torch_engine.stop()
    result["vllm_4_over_base"] = result["vllm_4_loras_tok_s"] / result["vllm_base_tok_s"]
    result["vllm_mixed_over_base"] = result["vllm_16_loras_tok_s"] / result["vllm_base_tok_s"]
    result["torch_over_vllm"] = result["torch_16_loras_tok_s"] / result["vllm_16_loras_tok_s"]
    return result


def main() -> None:
    _reexec_in_vllm_env()
    os.environ["LORASERVE_CATALOGUE_FILE"] = str(CATALOGUE)
    print(f"bench_vllm: {MODEL}, batch {BATCH} x {MAX_TOKENS} tokens, greedy, {ADAPTERS} rank-8 adapters; "
          f"{os.cpu_count()} CPUs (rough figures: compare the ratios)", flush=True)
    with tempfile.TemporaryDirectory() as root:
        result = asyncio.run(measure(Path(root)))
    for name, value in result.items():
        print(f"  {name:24s} {value:10.2f}")
    print(json.dumps({"benchmark": "bench_vllm", **{k: round(v, 3) for k, v in result.items()}}), flush=True)


if __name__ == "__main__":
    main()
