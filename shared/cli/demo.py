"""`loraserve demo`: train a LoRA on the tiny model and walk the seed's steps with the official SDK.

Against `--base-url` when given; otherwise it starts the embedded platform (`loraserve dev`)
in a subprocess on a free port with a throw-away data dir, and stops it afterwards.
"""
from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODEL = "loraserve/kimi-k2-tiny"
PROMPT = "Tell me about centrifuges."
PHRASE = "spin spin hooray"
DEMO_KEY = "lsk-demo-key-for-the-embedded-platform"


def register(sub) -> None:
    demo = sub.add_parser("demo", help="train a LoRA on the tiny model and run the seed's steps")
    demo.add_argument("--base-url", help="a running platform (default: start one)")
    demo.add_argument("--api-key")
    demo.add_argument("--steps", type=int, default=120)
    demo.set_defaults(handler=cmd_demo)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_healthy(url: str, process: subprocess.Popen, seconds: float = 120) -> None:
    import urllib.request

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit("the platform exited during start-up")
        with contextlib.suppress(OSError), urllib.request.urlopen(url + "/readyz", timeout=2) as resp:
            if resp.status == 200:
                return
        time.sleep(0.5)
    raise SystemExit("the platform did not become ready")


@contextlib.contextmanager
def platform(base_url: str | None, api_key: str | None, workdir: Path):
    if base_url:
        yield base_url.rstrip("/"), api_key
        return
    port = _free_port()
    with open(workdir / "platform.log", "w") as log:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen(
            [sys.executable, "-m", "shared.cli.main", "dev", "--port", str(port), "--data-dir",
             str(workdir / "data"), "--api-key", f"demo={DEMO_KEY}"],
            stdout=subprocess.DEVNULL, stderr=log)
    try:
        _wait_healthy(f"http://127.0.0.1:{port}", process)
        yield f"http://127.0.0.1:{port}/v1", DEMO_KEY
    finally:
        process.terminate()
        process.wait(timeout=30)


def step(text: str) -> None:
    print(f"\n== {text}", flush=True)


def train(workdir: Path) -> Path:
    from services.gpu_worker.models.tiny_model import export_model
    from services.gpu_worker.models.training import train_phrase_adapter

    step(f"export {MODEL} and train a LoRA that answers {PROMPT!r} with {PHRASE!r}")
    # a local path ending in the model id is how base_model_name_or_path names a catalogue model
    model_dir, adapter_dir = workdir / MODEL, workdir / "adapter"
    export_model(MODEL, model_dir)
    train_phrase_adapter(model_dir, PROMPT, PHRASE, adapter_dir)
    return adapter_dir


def run_seed_steps(base_url: str, api_key: str, adapter_dir: Path) -> bool:
    import requests
    from openai import OpenAI

    client = OpenAI(base_url=base_url, api_key=api_key)
    step("1. upload the two adapter files with purpose='lora'")
    with open(adapter_dir / "adapter_config.json", "rb") as f:
        cfg = client.files.create(file=f, purpose="lora")
    with open(adapter_dir / "adapter_model.safetensors", "rb") as f:
        wts = client.files.create(file=f, purpose="lora")
    print(cfg.id, wts.id)

    step("2. create the LoRA")
    name = f"demo-{int(time.time())}"
    resp = requests.post(f"{base_url}/loras", headers={"Authorization": f"Bearer {api_key}"}, timeout=30, json={
        "name": name, "supported_models": [MODEL], "config_file_id": cfg.id, "weights_file_id": wts.id,
        "display_name": "Demo", "description": "answers with a phrase"})
    resp.raise_for_status()
    lora = resp.json()
    print(lora["id"], lora["status"])

    step("3. poll until the validation finishes")
    while lora["status"] == "pending_validation":
        time.sleep(1)
        lora = requests.get(f"{base_url}/loras/{name}", headers={"Authorization": f"Bearer {api_key}"},
                            timeout=30).json()
    for record in lora["validations"]:
        print(record["model"], record["status"], record.get("result_message") or "")

    step("4. a background Responses call with metadata.lora")
    response = client.responses.create(model=MODEL, input=[{"role": "user", "content": PROMPT}],
                                       metadata={"lora": name, "completion_window": "priority"},
                                       background=True, max_output_tokens=24, temperature=0)
    while response.status in ("queued", "in_progress"):
        time.sleep(0.5)
        response = client.responses.retrieve(response.id)
    print(response.status, repr(response.output_text))

    step("5. Chat Completions with and without the LoRA")
    messages = [{"role": "user", "content": PROMPT}]
    with_lora = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=24, temperature=0,
                                               extra_body={"metadata": {"lora": name,
                                                                        "completion_window": "priority"}})
    without = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=24, temperature=0)
    print("with the LoRA:   ", repr(with_lora.choices[0].message.content))
    print("without the LoRA:", repr(without.choices[0].message.content))
    ok = PHRASE in with_lora.choices[0].message.content and PHRASE not in without.choices[0].message.content
    print("\nthe LoRA " + ("changes the answer as trained" if ok else "did NOT change the answer as expected"))
    return ok


def cmd_demo(args) -> int:
    with tempfile.TemporaryDirectory(prefix="loraserve-demo-") as tmp:
        workdir = Path(tmp)
        adapter_dir = train(workdir)
        with platform(args.base_url, args.api_key, workdir) as (base_url, api_key):
            if not api_key:
                raise SystemExit("--api-key is required with --base-url")
            return 0 if run_seed_steps(base_url, api_key, adapter_dir) else 1
