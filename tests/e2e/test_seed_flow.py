"""The seed's steps through the official SDKs, each service and a worker its own process."""
import time

import pytest
import requests
from openai import OpenAI

from tests.e2e.conftest import PHRASE, PROMPT

MODEL = "loraserve/kimi-k2-tiny"


def auth(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def wait_validated(topology, key: str, name: str, seconds: float = 180) -> dict:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        lora = requests.get(f"{topology.url('registry')}/v1/loras/{name}", headers=auth(key), timeout=10).json()
        if lora["status"] != "pending_validation":
            return lora
        time.sleep(0.5)
    pytest.fail(f"validation did not finish: {lora}\n{topology.log_tail('gpu-worker')}")


@pytest.fixture(scope="module")
def registered(topology, keys, trained_adapter):
    key = keys[1]["org-a"]
    files = OpenAI(base_url=topology.url("file-ingest") + "/v1", api_key=key)
    with open(trained_adapter / "adapter_config.json", "rb") as f:
        cfg = files.files.create(file=f, purpose="lora")
    with open(trained_adapter / "adapter_model.safetensors", "rb") as f:
        wts = files.files.create(file=f, purpose="lora")
    resp = requests.post(f"{topology.url('registry')}/v1/loras", headers=auth(key), timeout=30, json={
        "name": "funnier-v1", "supported_models": [MODEL], "config_file_id": cfg.id,
        "weights_file_id": wts.id, "display_name": "Funnier v1", "description": "says a phrase"})
    assert resp.status_code == 200, resp.text
    created = resp.json()
    return created, cfg, wts


def test_create_answers_as_the_seed_shows(registered):
    created, _, _ = registered
    assert created["name"] == "funnier-v1" and created["status"] == "pending_validation"
    assert created["supported_models"] == [MODEL]
    [record] = created["validations"]
    assert record["model"] == MODEL and record["status"] == "pending" and record["response_id"].startswith("resp_")


def test_validation_succeeds_and_its_response_is_retrievable(topology, keys, registered):
    key = keys[1]["org-a"]
    lora = wait_validated(topology, key, "funnier-v1")
    assert lora["status"] == "ready", lora
    [record] = lora["validations"]
    assert record["status"] == "succeeded"
    client = OpenAI(base_url=topology.url("inference-router") + "/v1", api_key=key)
    response = client.responses.retrieve(record["response_id"])
    # the validation request is short: it may stop at its token budget (Responses' "incomplete")
    assert response.id == record["response_id"] and response.status in ("completed", "incomplete")
    assert response.model == MODEL and response.output_text


def test_the_lora_changes_the_answer(topology, keys, registered):
    key = keys[1]["org-a"]
    wait_validated(topology, key, "funnier-v1")
    client = OpenAI(base_url=topology.url("inference-router") + "/v1", api_key=key)
    messages = [{"role": "user", "content": PROMPT}]
    with_lora = client.chat.completions.create(
        model=MODEL, messages=messages, max_tokens=24, temperature=0,
        extra_body={"metadata": {"lora": "funnier-v1", "completion_window": "priority"}})
    without = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=24, temperature=0)
    assert PHRASE in with_lora.choices[0].message.content
    assert PHRASE not in without.choices[0].message.content

    background = client.responses.create(model=MODEL, input=[{"role": "user", "content": PROMPT}],
                                         metadata={"lora": registered[0]["id"], "completion_window": "priority"},
                                         background=True, max_output_tokens=24, temperature=0)
    assert background.status == "queued"
    deadline = time.monotonic() + 120
    while background.status in ("queued", "in_progress") and time.monotonic() < deadline:
        time.sleep(0.3)
        background = client.responses.retrieve(background.id)
    assert background.status == "completed" and PHRASE in background.output_text


def test_another_org_sees_nothing_of_the_first(topology, keys, registered):
    created, cfg, wts = registered
    key_b = keys[1]["org-b"]
    registry = topology.url("registry") + "/v1"
    for ref in ("funnier-v1", created["id"]):
        assert requests.get(f"{registry}/loras/{ref}", headers=auth(key_b), timeout=10).status_code == 404
    assert requests.get(f"{registry}/loras", headers=auth(key_b), timeout=10).json()["data"] == []
    files = OpenAI(base_url=topology.url("file-ingest") + "/v1", api_key=key_b)
    assert files.files.list().data == []
    for file_id in (cfg.id, wts.id):
        assert requests.get(f"{topology.url('file-ingest')}/v1/files/{file_id}", headers=auth(key_b),
                            timeout=10).status_code == 404
    router = OpenAI(base_url=topology.url("inference-router") + "/v1", api_key=key_b, max_retries=0)
    with pytest.raises(Exception) as caught:
        router.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}],
                                       extra_body={"metadata": {"lora": "funnier-v1"}})
    assert getattr(caught.value, "status_code", None) in (400, 404)
    retrieve = requests.get(f"{topology.url('inference-router')}/v1/responses/"
                            f"{created['validations'][0]['response_id']}", headers=auth(key_b), timeout=10)
    assert retrieve.status_code == 404
