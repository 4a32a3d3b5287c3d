"""Sampling: greedy at temperature 0, seeded requests repeat, top_p narrows, unknown ids never chosen."""
import torch

from services.gpu_worker.engines.torch_engine.sampling import RowSampler, SamplingSpec, sample_rows


def draws(spec, logits, count=40):
    sampler = RowSampler(spec, torch.device("cpu"))
    return [sample_rows(logits, [sampler], vocab_limit=logits.shape[-1])[0] for _ in range(count)]


def test_temperature_zero_is_greedy():
    logits = torch.tensor([[0.1, 2.0, 1.9, -1.0]])
    assert set(draws(SamplingSpec(temperature=0.0), logits)) == {1}


def test_the_same_seed_gives_the_same_tokens_and_sampling_varies():
    logits = torch.zeros(1, 50)
    first = draws(SamplingSpec(temperature=1.0, seed=7), logits)
    assert first == draws(SamplingSpec(temperature=1.0, seed=7), logits)
    assert len(set(first)) > 5


def test_a_small_top_p_keeps_only_the_most_likely_token():
    logits = torch.tensor([[1.0, 3.0, 2.5, 0.0]])
    assert set(draws(SamplingSpec(temperature=1.0, top_p=0.05, seed=1), logits)) == {1}


def test_ids_above_the_tokenizer_vocabulary_are_never_chosen():
    logits = torch.tensor([[0.0, 1.0, 9.0, 9.0]])
    samplers = [RowSampler(SamplingSpec(temperature=0.0), torch.device("cpu"))]
    assert sample_rows(logits, samplers, vocab_limit=2) == [1]


def test_extreme_settings_still_choose_the_top_token():
    logits = torch.tensor([[1.0, 3.0, 2.5, 0.0]])
    assert set(draws(SamplingSpec(temperature=1e-30, seed=2), logits, count=5)) == {1}
    assert set(draws(SamplingSpec(temperature=1.0, top_p=0.0, seed=2), logits, count=5)) == {1}
