"""A user's tools against `loraserve dev`: the CLI end to end, data kept across a restart, and `loraserve demo`."""
import json
import os
import subprocess
import sys
import time

import pytest

from tests.e2e.conftest import PHRASE, PROMPT
from tests.integration.fuzz.server import KEYS, start_dev_server

MODEL = "loraserve/kimi-k2-tiny"


def cli(server, *args, timeout=180):
    env = {**os.environ, "LORASERVE_BASE_URL": server.url + "/v1", "LORASERVE_API_KEY": KEYS["fuzz"]}
    return subprocess.run([sys.executable, "-m", "shared.cli.main", *args], env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)


@pytest.fixture
def dev(tmp_path):
    servers = [start_dev_server(tmp_path / "data")]
    yield servers
    for server in servers:
        if server.alive():
            server.stop()


def test_the_cli_pushes_lists_chats_follows_events_and_deletes(dev, trained_adapter, tmp_path):
    server = dev[0]
    env = {**os.environ, "LORASERVE_BASE_URL": server.url + "/v1", "LORASERVE_API_KEY": KEYS["fuzz"]}
    with open(tmp_path / "events.txt", "w") as out:  # the child keeps its own copy of the descriptor
        tail = subprocess.Popen([sys.executable, "-m", "shared.cli.main", "events", "tail", "--type", "lora.*"],
                                env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        time.sleep(3)  # let the stream subscribe before anything happens
        pushed = cli(server, "lora", "push", str(trained_adapter), "--name", "cli-lora", "--model", MODEL)
        assert pushed.returncode == 0, pushed.stdout + pushed.stderr
        assert "succeeded" in pushed.stdout and "cli-lora: ready" in pushed.stdout
        assert "adapter_model.safetensors" in pushed.stderr  # the progress bars

        listed = cli(server, "lora", "list")
        assert "cli-lora" in listed.stdout and "ready" in listed.stdout

        chat = cli(server, "chat", "--model", MODEL, "--lora", "cli-lora", "--temperature", "0", PROMPT)
        assert chat.returncode == 0 and PHRASE in chat.stdout

        patched = cli(server, "lora", "patch", "cli-lora", "--display-name", "From the CLI")
        assert json.loads(patched.stdout)["display_name"] == "From the CLI"
        time.sleep(1)
    finally:
        tail.terminate()
        tail.wait(timeout=10)
    seen = (tmp_path / "events.txt").read_text()
    assert "lora.created" in seen and "lora.updated" in seen and "file.created" not in seen

    deleted = cli(server, "lora", "delete", "cli-lora")
    assert json.loads(deleted.stdout)["deleted"] is True
    missing = cli(server, "lora", "show", "cli-lora")
    assert missing.returncode == 1 and "404" in missing.stderr


def test_the_embedded_default_keeps_its_data_across_a_restart(dev, trained_adapter, tmp_path):
    server = dev[0]
    assert cli(server, "lora", "push", str(trained_adapter), "--name", "kept", "--model", MODEL).returncode == 0
    server.stop()
    dev.append(start_dev_server(tmp_path / "data"))
    shown = cli(dev[-1], "lora", "show", "kept")
    assert shown.returncode == 0, shown.stderr
    lora = json.loads(shown.stdout)
    assert lora["status"] == "ready" and lora["validations"][0]["status"] == "succeeded"
    chat = cli(dev[-1], "chat", "--model", MODEL, "--lora", "kept", "--temperature", "0", PROMPT)
    assert PHRASE in chat.stdout


def test_loraserve_demo_shows_the_phrase_with_the_lora_and_not_without():
    demo = subprocess.run([sys.executable, "-m", "shared.cli.main", "demo"], capture_output=True, text=True,
                          check=False, timeout=600, env={k: v for k, v in os.environ.items() if not k.startswith("LORASERVE_")})
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    assert "the LoRA changes the answer as trained" in demo.stdout
