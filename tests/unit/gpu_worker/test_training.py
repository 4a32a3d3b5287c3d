"""A LoRA trained with plain transformers + peft on the exported tiny model, served by the engine."""
import warnings

import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

from services.gpu_worker.adapters.adapter_files import load_adapter
from services.gpu_worker.engines.torch_engine.model_host import EngineOptions, host_engine
from services.gpu_worker.engines.torch_engine.sampling import SamplingSpec
from services.gpu_worker.engines.torch_engine.sequence import GenerationRequest
from services.gpu_worker.engines.torch_engine.targets import discover_targets
from services.gpu_worker.models.tiny_model import TINY_MODEL_ID, build_model, export_model
from services.gpu_worker.models.tokenizer import build_tokenizer
from services.gpu_worker.models.training import train_phrase_adapter
from tests.unit.gpu_worker.support import PREFIX

PROMPT, PHRASE = "Tell me about centrifuges.", "spin spin hooray"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("trained")
    export_model(TINY_MODEL_ID, root / "model")
    train_phrase_adapter(root / "model", PROMPT, PHRASE, root / "adapter", steps=100)
    return root


def greedy_with_peft(root, prompt):
    tokenizer = AutoTokenizer.from_pretrained(root / "model")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(root / "model"), root / "adapter")
    inputs = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                           return_tensors="pt", return_dict=True)
    with torch.no_grad():
        out = model.eval().generate(**inputs, max_new_tokens=24, do_sample=False)
    return tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)


def test_peft_trains_the_phrase_into_the_tiny_model(trained):
    assert greedy_with_peft(trained, PROMPT) == PHRASE


def test_the_engine_serves_the_trained_adapter_and_the_base_model_side_by_side(trained):
    tokenizer = build_tokenizer()
    engine = host_engine(build_model(), tokenizer, EngineOptions(num_slots=2, max_batch=4, max_len=128))
    weights = load_adapter(trained / "adapter" / "adapter_config.json",
                           trained / "adapter" / "adapter_model.safetensors",
                           discover_targets(build_model()), [PREFIX], 64, 1 << 30)
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": PROMPT}], add_generation_prompt=True,
                                           tokenize=True, return_dict=False)
    greedy = SamplingSpec(temperature=0.0)
    engine.submit(GenerationRequest("with", list(prompt), 24, greedy, adapter_key="phrase", adapter=weights))
    engine.submit(GenerationRequest("without", list(prompt), 24, greedy))
    finals = {}
    while engine.has_work():
        finals |= {u.request_id: u for u in engine.step() if u.finished}
    assert finals["with"].output_text == PHRASE and finals["with"].finish_reason == "stop"
    assert PHRASE not in finals["without"].output_text
