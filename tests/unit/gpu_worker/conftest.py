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


@pytest.fixture(scope="module")
def weights(adapter_dirs):
    """Each layout's adapter loaded as the engine takes it."""
    from services.gpu_worker.adapters.adapter_files import load_adapter
    from services.gpu_worker.engines.torch_engine.targets import discover_targets
    from services.gpu_worker.models.tiny_model import build_model

    targets = discover_targets(build_model())
    return {layout: load_adapter(d / "adapter_config.json", d / "adapter_model.safetensors", targets,
                                 [support.PREFIX], 64, 1 << 30) for layout, d in adapter_dirs.items()}


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """The tiny model is all overhead: one thread is fastest, and much faster on a busy machine."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
