"""Adapters of different ranks share the bank, each paying for its own rank's bucket only, and a batch
mixing them gives every row the logits of its own adapter alone."""
import pytest
import torch

from services.gpu_worker.adapters.adapter_files import load_adapter
from services.gpu_worker.adapters.adapter_weights import AdapterWeights, LoraFactors
from services.gpu_worker.engines.torch_engine.lora_bank import LoraBank, bucket_rank
from services.gpu_worker.engines.torch_engine.lora_ops import NO_ADAPTER, STRATEGIES
from services.gpu_worker.engines.torch_engine.model_host import EngineOptions, host_engine
from services.gpu_worker.engines.torch_engine.targets import TargetKind, TargetSpec
from services.gpu_worker.models.tiny_model import build_model
from services.gpu_worker.models.tokenizer import build_tokenizer
from tests.unit.gpu_worker import support

SPECS = {"q": TargetSpec("q", TargetKind.LINEAR, 6, 5), "o": TargetSpec("o", TargetKind.LINEAR, 5, 6)}
PROMPTS = [[256, 260, *b"Tell me about centrifuges.", 262, 261], [256, 260, *b"hi", 262, 261],
           [256, 260, *b"abc", 262, 261], [256, 260, *b"Why is the sky blue?", 262, 261],
           [256, 260, *b"a story about a cat", 262, 261], [256, 260, *b"ok", 262, 261]]
ROWS = ["rank4", "rank12_o_proj40", None, "rank64_experts", "peft_all_linear", "rank4"]


def factors(rank: int, spec: TargetSpec, value: float) -> LoraFactors:
    return LoraFactors(torch.full((rank, spec.in_features), value), torch.full((spec.out_features, rank), 1.0))


def adapter(rank_q: int, rank_o: int | None = None, value: float = 1.0) -> AdapterWeights:
    weights = {"q": factors(rank_q, SPECS["q"], value)}
    if rank_o is not None:
        weights["o"] = factors(rank_o, SPECS["o"], value)
    return AdapterWeights(weights)


def test_ranks_fall_in_power_of_two_buckets_of_at_least_eight():
    assert [bucket_rank(r) for r in (1, 4, 8, 9, 16, 17, 33, 64, 65)] == [8, 8, 8, 16, 16, 32, 64, 64, 128]


def test_each_adapter_takes_an_entry_of_its_own_ranks_bucket_only():
    bank = LoraBank(SPECS, num_slots=8, dtype=torch.float32, device=torch.device("cpu"))
    for slot in range(3):
        bank.load(slot, adapter(8, 4, value=slot + 1.0))
    bank.commit(3, bank.stage(adapter(64, 12, value=9.0)))
    q, o = bank.targets["q"].buckets, bank.targets["o"].buckets
    # three rank-8 adapters in a rank-8 bucket (capacity doubling: 4), the rank-64 one alone at 64
    assert {rank: tuple(b.a_t.shape) for rank, b in q.items()} == {8: (4, 5, 8), 64: (1, 5, 64)}
    assert {rank: tuple(b.bt.shape) for rank, b in o.items()} == {8: (4, 8, 5), 16: (1, 16, 5)}
    assert bank.entries.entries == {8: {0: 0, 1: 1, 2: 2}, 16: {3: 0}, 64: {3: 0}}
    assert torch.equal(q[8].a_t[1, :, :8], torch.full((5, 8), 2.0))
    assert torch.equal(o[8].a_t[1, :, 4:], torch.zeros(6, 4))  # rank 4 zero-padded to its bucket's 8


def test_a_cleared_slot_leaves_zeros_and_its_entry_to_the_next_adapter():
    bank = LoraBank(SPECS, num_slots=4, dtype=torch.float32, device=torch.device("cpu"))
    bank.load(0, adapter(8, 8))
    bank.load(1, adapter(8, 8, value=2.0))
    bank.load(0, adapter(16))  # a new tenant: the old one's factors are gone from every target
    o = bank.targets["o"].buckets[8]
    assert torch.equal(o.a_t[0], torch.zeros_like(o.a_t[0])) and o.loaded == {1}
    bank.clear(1)
    assert bank.entries.entries == {8: {}, 16: {0: 0}}
    assert all(not b.a_t.any() for b in bank.targets["o"].buckets.values())
    bank.load(2, adapter(4, 4))
    assert bank.entries.entries[8] == {2: 0}


# -- every strategy, a batch of mixed ranks, against a float64 reference per adapter ----------
def ranked_linears(out_dir, rank: int, o_proj_rank: int, scale: float):
    """explicit_linears' modules at `rank`, o_proj at another rank by rank_pattern (two buckets in one adapter)."""
    model, generator, tensors = build_model(), torch.Generator().manual_seed(7), {}
    for index, layer in enumerate(model.model.layers):
        mlp, prefix = (layer.mlp.shared_experts, "mlp.shared_experts") if hasattr(layer.mlp, "shared_experts") \
            else (layer.mlp, "mlp")
        modules = {f"self_attn.{n}": getattr(layer.self_attn, n) for n in support.ATTENTION}
        modules |= {f"{prefix}.{n}": getattr(mlp, n) for n in ("gate_proj", "up_proj", "down_proj")}
        for path, linear in modules.items():
            r = o_proj_rank if path.endswith("o_proj") else rank
            key = f"{support.PREFIX}layers.{index}.{path}"
            tensors[f"{key}.lora_A.weight"] = torch.randn(r, linear.in_features, generator=generator) * scale
            tensors[f"{key}.lora_B.weight"] = torch.randn(linear.out_features, r, generator=generator) * scale
    return support.write_adapter(out_dir, tensors, {
        "r": rank, "lora_alpha": 2 * rank, "rank_pattern": {"o_proj": o_proj_rank},
        "target_modules": [*support.ATTENTION, "gate_proj", "up_proj", "down_proj"]})


@pytest.fixture(scope="module")
def ranked(tmp_path_factory, adapter_dirs):
    root = tmp_path_factory.mktemp("ranked")
    return {"rank4": support.explicit_linears(root / "rank4", rank=4),
            "rank12_o_proj40": ranked_linears(root / "rank12", 12, 40, scale=0.15),
            "rank64_experts": support.per_expert(root / "rank64", rank=64, scale=0.075),
            "peft_all_linear": adapter_dirs["peft_all_linear"]}


@pytest.fixture(scope="module")
def references(ranked):
    with torch.no_grad():
        return {None: support.merged_reference(None)} | {
            name: support.merged_reference(directory) for name, directory in ranked.items() if name != "peft_all_linear"
        } | {"peft_all_linear": _peft_reference(ranked["peft_all_linear"])}


def _peft_reference(directory):
    from peft import PeftModel

    return PeftModel.from_pretrained(build_model(), directory).eval()


def logits_of(model, tokens: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return model(torch.tensor([tokens])).logits[0, -1].double()


def engine_holding(ranked, strategy: str):
    engine = host_engine(build_model(), build_tokenizer(), EngineOptions(num_slots=4, max_batch=8, max_len=128,
                                                                         strategy=strategy))
    targets = {name: bank.spec for name, bank in engine.bank.targets.items()}
    slot_of = {None: NO_ADAPTER}
    for slot, name in enumerate(["peft_all_linear", "rank64_experts", "rank4", "rank12_o_proj40"]):
        directory = ranked[name]
        engine.bank.load(slot, load_adapter(directory / "adapter_config.json", directory / "adapter_model.safetensors",
                                            targets, [support.PREFIX], max_rank=64, max_weights_bytes=1 << 30))
        slot_of[name] = slot
    return engine, slot_of


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_a_batch_of_mixed_ranks_gives_each_row_its_own_adapters_logits(strategy, ranked, references):
    engine, slot_of = engine_holding(ranked, strategy)
    assert set(engine.bank.entries.entries) == {8, 16, 64, 128}  # per-expert gate+up fuse at twice the rank
    assert_rows_match(engine, [slot_of[name] for name in ROWS], ROWS, references)


@pytest.mark.parametrize("rows", [["rank12_o_proj40", "peft_all_linear", None, "rank4", "rank64_experts"],
                                  ["rank4", "peft_all_linear"]])  # the second: every row in one bucket
def test_rows_out_of_entry_order_run_in_it_and_keep_their_own_logits(rows, ranked, references):
    engine, slot_of = engine_holding(ranked, "stacked")
    row_slots = [slot_of[name] for name in rows]
    order, _ = engine.runner.context.decode_plan(row_slots, torch.device("cpu"))
    assert order is not None  # the decode steps below run the rows in another order than the cache's
    assert_rows_match(engine, row_slots, rows, references)


def assert_rows_match(engine, row_slots: list[int], names: list[str | None], references) -> None:
    prompts = PROMPTS[: len(names)]
    sequences = [list(p) for p in prompts]
    _, logits = engine.runner.prefill(prompts, row_slots)
    for _ in range(3):
        for row, name in enumerate(names):
            torch.testing.assert_close(logits[row].double(), logits_of(references[name], sequences[row]),
                                       atol=2e-4, rtol=1e-4)
        tokens = logits.argmax(dim=-1).tolist()
        for sequence, token in zip(sequences, tokens):
            sequence.append(token)
        logits = engine.runner.decode(tokens, row_slots)


def test_every_ranked_adapter_changes_the_logits(references):
    base = logits_of(references[None], PROMPTS[0])
    for name in ("rank4", "rank12_o_proj40", "rank64_experts", "peft_all_linear"):
        assert (logits_of(references[name], PROMPTS[0]) - base).abs().max() > 0.1, name
