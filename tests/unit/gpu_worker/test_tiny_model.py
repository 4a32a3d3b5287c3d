"""The tiny model: deterministic, exported as an HF checkpoint, its modules as the catalogue derives them."""
import json

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from services.gpu_worker.engines.torch_engine.targets import TargetKind, discover_targets
from services.gpu_worker.models.tiny_model import TINY_MODEL_ID, build_model, export_model
from shared.catalogue.catalogue import load_catalogue
from shared.catalogue.shapes import ModuleKind


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    return export_model(TINY_MODEL_ID, tmp_path_factory.mktemp("tiny"))


def test_the_export_loads_with_the_auto_classes_and_holds_the_seeded_weights(exported):
    model = AutoModelForCausalLM.from_pretrained(exported)
    built = build_model().state_dict()
    assert model.state_dict().keys() == built.keys()
    assert all(torch.equal(tensor, built[name]) for name, tensor in model.state_dict().items())
    assert json.loads((exported / "tokenizer_config.json").read_text())["chat_template"]


def test_the_tokenizer_is_byte_level_with_a_chat_template(exported):
    tokenizer = AutoTokenizer.from_pretrained(exported)
    text = "héllo, wörld"
    assert tokenizer(text, add_special_tokens=False)["input_ids"] == list(text.encode())
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True,
                                           tokenize=False)
    assert prompt == "<bos><|user|>hi<|end|><|assistant|>"
    assert (tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id) == (256, 257, 258)
    assert len(tokenizer) <= 300


def test_building_twice_gives_identical_weights_and_leaves_the_callers_rng_alone():
    torch.manual_seed(5)
    expected_next = torch.rand(1)
    torch.manual_seed(5)
    first, second = build_model().state_dict(), build_model().state_dict()
    assert torch.equal(torch.rand(1), expected_next)
    assert all(torch.equal(first[name], second[name]) for name in first)


def test_catalogue_shapes_match_the_modules_transformers_builds():
    shapes = load_catalogue().get(TINY_MODEL_ID).shapes
    layers = build_model().model.layers
    seen = 0
    for target in shapes.iter_modules():
        layer = layers[target.layer]
        if target.kind is ModuleKind.LINEAR and target.expert is None:
            actual = layer.get_submodule(target.path.split(".", 2)[2]).weight.shape
        elif target.kind is ModuleKind.LINEAR:  # one routed expert's Linear, inside the fused weights
            experts, inter = layer.mlp.experts, layer.mlp.experts.down_proj.shape[-1]
            actual = {"gate_proj": experts.gate_up_proj[target.expert, :inter].shape,
                      "up_proj": experts.gate_up_proj[target.expert, inter:].shape,
                      "down_proj": experts.down_proj[target.expert].shape}[target.projection]
        elif target.kind is ModuleKind.EXPERTS:
            actual = getattr(layer.mlp.experts, target.projection).shape
        else:
            actual = layer.mlp.gate.weight.shape
        assert tuple(actual) == target.shape, target.path
        seen += 1
    assert seen == shapes.count()
    # and every weight the engine can adapt is one the catalogue knows
    for name, spec in discover_targets(build_model()).items():
        path = name + ".weight" if spec.kind is TargetKind.ROUTER else name
        assert shapes.resolve(path) is not None, name
