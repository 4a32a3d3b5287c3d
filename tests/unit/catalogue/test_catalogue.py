"""The catalogue loads typed entries and derives every targetable module's shape without torch."""
import json
import subprocess
import sys

import pytest
from pydantic import ValidationError

from shared.catalogue.catalogue import MAX_CATALOGUE_BYTES, load_catalogue
from shared.catalogue.shapes import Group, ModuleKind

KIMI = "moonshotai/Kimi-K2.6"
TINY = "loraserve/kimi-k2-tiny"


@pytest.fixture(scope="module")
def catalogue():
    return load_catalogue()


def test_both_models_are_served_with_their_limits(catalogue):
    assert catalogue.slugs() == ["kimi-k2-6", "kimi-k2-tiny"]
    kimi, tiny = catalogue.get(KIMI), catalogue.get(TINY)
    assert (kimi.max_rank, kimi.engine.name, kimi.engine.tensor_parallel_size, kimi.slug) == (32, "vllm", 8, "kimi-k2-6")
    assert (tiny.max_rank, tiny.engine.name, tiny.seed) == (64, "torch", 1234)
    # no environment in this repository runs Kimi's 8-GPU pool unless its settings say so
    assert (kimi.deployed, tiny.deployed) == (False, True)
    assert catalogue.is_deployed(KIMI, {KIMI: True}) and not catalogue.is_deployed(TINY, {TINY: False})
    assert kimi.module_prefixes == ["language_model.model.", "model."]
    assert catalogue.by_slug("kimi-k2-tiny") is tiny
    assert TINY in catalogue and "meta/llama" not in catalogue


def test_unknown_model_is_a_key_error(catalogue):
    with pytest.raises(KeyError):
        catalogue.get("meta-llama/Llama-3-8B")


def test_tiny_architecture_builds_a_transformers_config_dict(catalogue):
    config = catalogue.get(TINY).architecture.hf_config()
    assert config["initializer_range"] == 0.2 and config["n_routed_experts"] == 8
    assert config["model_type"] == "deepseek_v3"


@pytest.mark.parametrize("path, shape", [
    ("layers.0.self_attn.q_a_proj", (1536, 7168)),
    ("layers.7.self_attn.q_b_proj", (12288, 1536)),
    ("layers.60.self_attn.kv_a_proj_with_mqa", (576, 7168)),
    ("layers.3.self_attn.kv_b_proj", (16384, 512)),
    ("layers.0.self_attn.o_proj", (7168, 8192)),
    ("layers.0.mlp.gate_proj", (18432, 7168)),
    ("layers.0.mlp.up_proj", (18432, 7168)),
    ("layers.0.mlp.down_proj", (7168, 18432)),
    ("layers.1.mlp.shared_experts.gate_proj", (2048, 7168)),
    ("layers.1.mlp.shared_experts.down_proj", (7168, 2048)),
    ("layers.9.mlp.experts.0.up_proj", (2048, 7168)),
    ("layers.60.mlp.experts.383.down_proj", (7168, 2048)),
    ("layers.5.mlp.experts.gate_up_proj", (384, 4096, 7168)),
    ("layers.5.mlp.experts.down_proj", (384, 7168, 2048)),
    ("layers.5.mlp.gate.weight", (384, 7168)),
])
def test_kimi_module_shapes(catalogue, path, shape):
    module = catalogue.get(KIMI).shapes.resolve(path)
    assert module is not None and module.shape == shape


def test_fused_and_router_targets_say_what_they_are(catalogue):
    shapes = catalogue.get(KIMI).shapes
    gate_up = shapes.resolve("layers.5.mlp.experts.gate_up_proj")
    assert (gate_up.kind, gate_up.group, gate_up.num_experts) == (ModuleKind.EXPERTS, Group.FUSED_EXPERTS, 384)
    assert (gate_up.out_features, gate_up.in_features) == (4096, 7168)
    router = shapes.resolve("layers.5.mlp.gate.weight")
    assert (router.kind, router.projection, router.out_features, router.num_experts) == (
        ModuleKind.ROUTER, "gate", 384, 1)
    expert = shapes.resolve("layers.60.mlp.experts.383.down_proj")
    assert (expert.layer, expert.expert, expert.group) == (60, 383, Group.EXPERT)


@pytest.mark.parametrize("path", [
    "layers.0.mlp.experts.0.gate_proj",  # layer 0 is dense
    "layers.1.mlp.gate_proj",  # layer 1 is MoE
    "layers.0.mlp.gate.weight",
    "layers.61.self_attn.q_a_proj",  # only 61 layers
    "layers.1.mlp.experts.384.up_proj",  # only 384 experts
    "layers.01.self_attn.q_a_proj",
    "layers.-1.self_attn.q_a_proj",
    "layers.1.self_attn.q_proj",
    "embed_tokens",
    "",
])
def test_names_that_are_not_targetable(catalogue, path):
    assert catalogue.get(KIMI).shapes.resolve(path) is None


def test_kimi_has_seventy_thousand_targets_counted_without_building_them(catalogue):
    shapes = catalogue.get(KIMI).shapes
    # 61x5 attention + 3 dense + 60 MoE layers x (3 shared + 384x3 experts + 2 fused + router)
    assert shapes.count() == 61 * 5 + 3 + 60 * (3 + 384 * 3 + 2 + 1)


def test_tiny_iteration_lists_every_module_once(catalogue):
    shapes = catalogue.get(TINY).shapes
    modules = list(shapes.iter_modules())
    assert len(modules) == shapes.count() == len({m.path for m in modules})
    assert all(shapes.resolve(m.path) == m for m in modules)
    q_b = shapes.resolve("layers.2.self_attn.q_b_proj")
    assert q_b.shape == (4 * (8 + 8), 32)
    assert shapes.resolve("layers.1.mlp.experts.gate_up_proj").shape == (8, 64, 64)


def test_suffix_matching_follows_peft_endswith(catalogue):
    shapes = catalogue.get(KIMI).shapes
    experts = next(f for f in shapes.families if f.template.tokens[-1] == "up_proj" and f.group == Group.EXPERT)
    assert experts.template.matches_suffix(["up_proj"])
    assert experts.template.matches_suffix(["experts", "12", "up_proj"])
    assert experts.template.matches_suffix(["model", "layers", "3", "mlp", "experts", "12", "up_proj"], ("model",))
    assert not experts.template.matches_suffix(["layers", "0", "mlp", "experts", "12", "up_proj"])
    assert not experts.template.matches_suffix(["p_proj"])


def test_custom_catalogue_file(tmp_path, catalogue):
    data = {"models": [catalogue.get(TINY).model_dump()]}
    path = tmp_path / "models.json"
    path.write_text(json.dumps(data))
    assert load_catalogue(path).ids() == [TINY]


@pytest.mark.parametrize("mutate", [
    lambda m: {"models": [m, m]},  # duplicate id
    lambda m: {"models": [{**m, "key_prefixes": ["model."]}]},
    lambda m: {"models": [{**m, "max_rank": 0}]},
    lambda m: {"models": [{**m, "slug": "Not A Slug"}]},
])
def test_invalid_catalogue_is_refused(tmp_path, catalogue, mutate):
    path = tmp_path / "models.json"
    path.write_text(json.dumps(mutate(catalogue.get(TINY).model_dump())))
    with pytest.raises(ValidationError):
        load_catalogue(path)


def test_oversized_catalogue_is_refused(tmp_path):
    path = tmp_path / "models.json"
    path.write_bytes(b" " * (MAX_CATALOGUE_BYTES + 1))
    with pytest.raises(ValueError, match="exceeds"):
        load_catalogue(path)


def test_catalogue_and_header_parser_do_not_import_torch():
    code = ("import sys, shared.catalogue.catalogue, shared.safetensors_header; "
            f"from shared.catalogue.catalogue import load_catalogue; load_catalogue().get('{KIMI}').shapes.count(); "
            "sys.exit(1 if 'torch' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_an_environment_overrides_engine_arguments_and_merges_extra_args(catalogue):
    import pydantic

    from shared.catalogue.engines import with_overrides

    kimi = catalogue.get(KIMI).engine
    spec = with_overrides(kimi, {"pipeline_parallel_size": 2, "extra_args": {"distributed_executor_backend": "ray"}})
    assert (spec.pipeline_parallel_size, spec.tensor_parallel_size) == (2, kimi.tensor_parallel_size)
    assert spec.extra_args == {**kimi.extra_args, "distributed_executor_backend": "ray"}
    assert with_overrides(kimi, {}) is kimi
    with pytest.raises(pydantic.ValidationError):
        with_overrides(kimi, {"tensor_paralel_size": 4})  # a typo is refused, not ignored
