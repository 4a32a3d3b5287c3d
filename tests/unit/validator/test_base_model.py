"""Which base_model_name_or_path values name the model being validated."""
import pytest

from services.validator.base_model import identifies

KIMI = "moonshotai/Kimi-K2.6"


@pytest.mark.parametrize("name", [
    "moonshotai/Kimi-K2.6",
    "moonshotai/kimi-k2.6",  # the Hub compares ids case-insensitively
    "moonshotai/Kimi-K2.6@main",
    "moonshotai/Kimi-K2.6@3f2a9c1e0b7d",
    "/models/moonshotai/Kimi-K2.6",
    "./moonshotai/Kimi-K2.6/",
    r"C:\models\moonshotai\Kimi-K2.6",
    "/root/.cache/huggingface/hub/models--moonshotai--Kimi-K2.6/snapshots/3f2a9c1e0b7d",
])
def test_names_of_the_model(name):
    assert identifies(name, KIMI)


@pytest.mark.parametrize("name", [
    "",
    "Kimi-K2.6",
    "moonshotai/Kimi-K2.5",
    "moonshotai/Kimi-K2.6-Instruct",
    "moonshotai/Kimi-K2.6@",
    "moonshotai/Kimi-K2.6@main branch",
    "/models/Kimi-K2.6",
    "/models/moonshotai/Kimi-K2.6/checkpoint-100",
    "models--moonshotai--Kimi-K2.6/refs/main",
    "someone/moonshotai/Kimi-K2.6x",
    "a" * 5000,
])
def test_other_names(name):
    assert not identifies(name, KIMI)
