"""A mixed batch gives every row the logits of its own adapter alone (or of the base model)."""
import pytest
import torch
from peft import PeftModel

from services.gpu_worker.adapters.adapter_files import load_adapter
from services.gpu_worker.engines.torch_engine.lora_ops import STRATEGIES
from services.gpu_worker.engines.torch_engine.model_host import EngineOptions, host_engine
from services.gpu_worker.models.tiny_model import build_model
from services.gpu_worker.models.tokenizer import build_tokenizer
from tests.unit.gpu_worker.support import PREFIX, merged_reference

PROMPTS = [
    [256, 260, *b"Tell me about centrifuges.", 262, 261],
    [256, 260, *b"hi", 262, 261],
    [256, 259, *b"You are terse.", 262, 260, *b"Why is the sky blue?", 262, 261],
    [256, 260, *b"abc", 262, 261],
    [256, 260, *b"Tell me a story about a cat", 262, 261],
]
# row -> adapter layout (None: the base model); one adapter serves two rows
ROW_ADAPTERS = ["peft_all_linear", "explicit_linears", None, "per_expert", "peft_all_linear"]
TOLERANCE = {"atol": 2e-4, "rtol": 1e-4}


@pytest.fixture(scope="module")
def references(adapter_dirs):
    with torch.no_grad():
        refs = {None: merged_reference(None), "explicit_linears": merged_reference(adapter_dirs["explicit_linears"]),
                "per_expert": merged_reference(adapter_dirs["per_expert"])}
        # PEFT applies every tensor of its own all-linear layout: it is the reference there
        refs["peft_all_linear"] = PeftModel.from_pretrained(build_model(), adapter_dirs["peft_all_linear"]).eval()
    return refs


def reference_logits(model, tokens: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return model(torch.tensor([tokens])).logits[0].double()


def make_engine(strategy: str, num_slots: int = 4):
    return host_engine(build_model(), build_tokenizer(), EngineOptions(num_slots=num_slots, max_batch=8, max_len=128,
                                                                       strategy=strategy))


def load_into_slots(engine, adapter_dirs) -> dict[str | None, int]:
    slots = {None: -1}
    targets = {name: bank.spec for name, bank in engine.bank.targets.items()}
    for slot, layout in enumerate(["peft_all_linear", "explicit_linears", "per_expert"]):
        directory = adapter_dirs[layout]
        weights = load_adapter(directory / "adapter_config.json", directory / "adapter_model.safetensors",
                               targets, [PREFIX], max_rank=64, max_weights_bytes=1 << 30)
        engine.bank.load(slot, weights)
        slots[layout] = slot
    return slots


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_mixed_batch_rows_match_each_adapter_alone(strategy, adapter_dirs, references):
    engine = make_engine(strategy)
    slot_of = load_into_slots(engine, adapter_dirs)
    row_slots = [slot_of[layout] for layout in ROW_ADAPTERS]
    rows, logits = engine.runner.prefill(PROMPTS, row_slots, all_logits=True)

    sequences = [list(p) for p in PROMPTS]
    for row, layout in enumerate(ROW_ADAPTERS):
        expected = reference_logits(references[layout], sequences[row])
        torch.testing.assert_close(logits[row, : len(sequences[row])].double(), expected, **TOLERANCE)
    next_tokens = [int(logits[r, len(sequences[r]) - 1].argmax()) for r in range(len(rows))]

    for _ in range(4):  # decode steps: every row's new logits match its reference on the whole sequence
        for sequence, token in zip(sequences, next_tokens):
            sequence.append(token)
        step_logits = engine.runner.decode(next_tokens, row_slots)
        for row, layout in enumerate(ROW_ADAPTERS):
            expected = reference_logits(references[layout], sequences[row])[-1]
            torch.testing.assert_close(step_logits[row].double(), expected, **TOLERANCE)
        next_tokens = step_logits.argmax(dim=-1).tolist()


def test_every_adapter_changes_the_logits(references):
    base = reference_logits(references[None], PROMPTS[0])
    for layout in ("peft_all_linear", "explicit_linears", "per_expert"):
        assert (reference_logits(references[layout], PROMPTS[0]) - base).abs().max() > 0.1, layout
