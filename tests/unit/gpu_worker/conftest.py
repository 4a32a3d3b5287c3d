import pytest

from tests.unit.gpu_worker import support


@pytest.fixture(scope="session")
def adapter_dirs(tmp_path_factory):
    """One adapter of each layout a user brings (module-independent, built once)."""
    root = tmp_path_factory.mktemp("adapters")
    return {
        "peft_all_linear": support.peft_all_linear(root / "peft_all_linear"),
        "explicit_linears": support.explicit_linears(root / "explicit_linears"),
        "per_expert": support.per_expert(root / "per_expert"),
    }
