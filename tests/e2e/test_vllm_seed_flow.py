"""The seed flow on a vLLM pool: every service and `loraserve worker --engine vllm` its own process over
RabbitMQ (a private vhost), the model a tiny dense DeepSeek-V3 from tests/vllm/models.json.

Upload, create, validate on the vLLM pool, then serve the LoRA on Chat Completions, Responses and
Messages; an adapter on kv_b_proj (which vLLM does not apply) is refused with its code; no
engine-core process outlives a SIGKILLed worker.
"""
import json
import os
import signal
from pathlib import Path

import psutil
import pytest
import requests
import torch
from anthropic import Anthropic
from openai import OpenAI
from peft import LoraConfig, get_peft_model

from tests.e2e.test_seed_flow import auth, wait_validated
from tests.e2e.topology import start_topology
from tests.fixtures.rabbit import private_vhost

CATALOGUE = Path(__file__).resolve().parents[1] / "vllm" / "models.json"
MODEL = "loraserve-test/dsv3-dense"
PROMPT = "Hello there"
ATTENTION = ["q_a_proj", "q_b_proj", "kv_a_proj_with_mqa", "o_proj"]


@pytest.fixture(scope="module")
def vllm_topology(tmp_path_factory, s3_server, keys):
    os.environ["LORASERVE_CATALOGUE_FILE"] = str(CATALOGUE)  # this process builds the model for PEFT too
    with private_vhost("loraserve-vllm") as amqp_url:
        topo = start_topology(
            tmp_path_factory.mktemp("vllm-topology"), amqp_url, s3_server, keys[0],
            worker_args=("--model", MODEL, "--engine", "vllm"), worker_ready_seconds=400,
            extra_env={"LORASERVE_CATALOGUE_FILE": str(CATALOGUE), "LORASERVE_S3_BUCKET": "loraserve-vllm",
                       "LORASERVE_WORKER_CPU_ADAPTERS": "4", "LORASERVE_WORKER_SLOTS": "2"})
        yield topo
        topo.stop_all()
    os.environ.pop("LORASERVE_CATALOGUE_FILE", None)


def _adapter(root: Path, name: str, target_modules: list[str], seed: int) -> Path:
    from services.gpu_worker.models.tiny_model import build_model

    model = build_model(MODEL)
    torch.manual_seed(seed)
    peft_model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=target_modules, task_type="CAUSAL_LM",
                                                  init_lora_weights=False))
    with torch.no_grad():
        for param_name, param in peft_model.named_parameters():
            if "lora_B" in param_name:
                param.mul_(4.0)
    peft_model.save_pretrained(root / name)
    config_path = root / name / "adapter_config.json"
    config = json.loads(config_path.read_text())
    config_path.write_text(json.dumps({**config, "base_model_name_or_path": MODEL}))  # the model it was made for
    return root / name


def _register(topo, key: str, adapter_dir: Path, name: str) -> dict:
    files = OpenAI(base_url=topo.url("file-ingest") + "/v1", api_key=key)
    with open(adapter_dir / "adapter_config.json", "rb") as f:
        cfg = files.files.create(file=f, purpose="lora")
    with open(adapter_dir / "adapter_model.safetensors", "rb") as f:
        wts = files.files.create(file=f, purpose="lora")
    resp = requests.post(f"{topo.url('registry')}/v1/loras", headers=auth(key), timeout=30, json={
        "name": name, "supported_models": [MODEL], "config_file_id": cfg.id, "weights_file_id": wts.id})
    assert resp.status_code == 200, resp.text
    return wait_validated(topo, key, name, seconds=240)


@pytest.fixture(scope="module")
def served(vllm_topology, keys, tmp_path_factory):
    root = tmp_path_factory.mktemp("vllm-adapters")
    key = keys[1]["org-a"]
    return key, _register(vllm_topology, key, _adapter(root, "attn", ATTENTION, seed=1), "vllm-attn")


def _chat(topo, key, lora=None):
    client = OpenAI(base_url=topo.url("inference-router") + "/v1", api_key=key)
    metadata = {"metadata": {"lora": lora}} if lora else {}
    return client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": PROMPT}],
                                          temperature=0, max_tokens=16, extra_body=metadata)


def test_a_lora_validates_on_the_vllm_pool_and_serves_on_all_three_apis(vllm_topology, served):
    key, lora = served
    assert lora["status"] == "ready", lora
    assert [r["status"] for r in lora["validations"]] == ["succeeded"]
    with_lora, base = _chat(vllm_topology, key, "vllm-attn"), _chat(vllm_topology, key)
    text = with_lora.choices[0].message.content
    assert text and text != base.choices[0].message.content
    assert with_lora.usage.completion_tokens > 0
    client = OpenAI(base_url=vllm_topology.url("inference-router") + "/v1", api_key=key)
    response = client.responses.create(model=MODEL, input=PROMPT, temperature=0, max_output_tokens=16,
                                       metadata={"lora": "vllm-attn"})
    assert response.output_text == text
    anthropic = Anthropic(base_url=vllm_topology.url("inference-router"), api_key=key)
    message = anthropic.messages.create(model=MODEL, max_tokens=16, metadata={"lora": "vllm-attn"},
                                        extra_body={"temperature": 0},  # the SDK dropped the parameter
                                        messages=[{"role": "user", "content": PROMPT}])
    assert message.content[0].text == text


def test_a_streamed_chat_with_the_lora_gives_the_same_text(vllm_topology, served):
    key, _ = served
    client = OpenAI(base_url=vllm_topology.url("inference-router") + "/v1", api_key=key)
    stream = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": PROMPT}],
                                            temperature=0, max_tokens=16, stream=True,
                                            extra_body={"metadata": {"lora": "vllm-attn"}})
    chunks = [c.choices[0].delta.content or "" for c in stream if c.choices]
    assert len([c for c in chunks if c]) > 1
    assert "".join(chunks) == _chat(vllm_topology, key, "vllm-attn").choices[0].message.content


def test_an_adapter_on_kv_b_proj_is_refused_for_the_vllm_model(vllm_topology, keys, tmp_path):
    key = keys[1]["org-a"]
    lora = _register(vllm_topology, key, _adapter(tmp_path, "kvb", ["kv_b_proj", "o_proj"], seed=2), "vllm-kvb")
    [record] = lora["validations"]
    assert (lora["status"], record["status"]) == ("failed", "failed")
    assert record["result_code"] == "module_unsupported_by_engine" and "kv_b_proj" in record["result_message"]


def test_no_engine_process_outlives_a_killed_worker(vllm_topology):
    worker = psutil.Process(vllm_topology.processes["gpu-worker"].pid)
    children = worker.children(recursive=True)
    assert children, "vLLM runs its engine core in child processes"
    vllm_topology.processes.pop("gpu-worker")
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait(timeout=30)
    _, alive = psutil.wait_procs(children, timeout=30)
    assert alive == [], f"orphaned: {[(p.pid, p.name()) for p in alive]}"
