"""The user's CLI: `loraserve lora push|list|show|patch|delete`, `chat` (`events tail`: shared/cli/events.py)."""
from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from shared.cli.api_client import ApiClient, ApiFailure, api_key_from, base_url_from

TERMINAL = {"succeeded", "failed", "unverified"}
POLL_SECONDS = 1.0


def register(sub) -> None:
    lora = sub.add_parser("lora", help="manage your LoRAs")
    lora_sub = lora.add_subparsers(dest="lora_command", required=True)
    push = _with_conn(lora_sub.add_parser("push", help="upload an adapter directory and register it"))
    push.add_argument("directory", type=Path)
    push.add_argument("--name", required=True)
    push.add_argument("--model", action="append", required=True, help="a supported model (repeatable)")
    push.add_argument("--display-name")
    push.add_argument("--description")
    push.add_argument("--no-wait", action="store_true", help="don't wait for validation")
    push.set_defaults(handler=_run(cmd_push))
    _with_conn(lora_sub.add_parser("list")).set_defaults(handler=_run(cmd_list))
    for name, func in (("show", cmd_show), ("delete", cmd_delete)):
        parser = _with_conn(lora_sub.add_parser(name))
        parser.add_argument("name")
        parser.set_defaults(handler=_run(func))
    patch = _with_conn(lora_sub.add_parser("patch"))
    patch.add_argument("name")
    patch.add_argument("--add-model", action="append", default=[])
    patch.add_argument("--display-name")
    patch.add_argument("--description")
    patch.set_defaults(handler=_run(cmd_patch))

    chat = _with_conn(sub.add_parser("chat", help="one chat completion, optionally with a LoRA"))
    chat.add_argument("--model", required=True)
    chat.add_argument("--lora")
    chat.add_argument("--max-tokens", type=int, default=64)
    chat.add_argument("--temperature", type=float, help="0 for greedy decoding (default: the server's 1.0)")
    chat.add_argument("prompt")
    chat.set_defaults(handler=_run(cmd_chat))


def _with_conn(parser):
    parser.add_argument("--base-url", help="default: $LORASERVE_BASE_URL or http://127.0.0.1:8000/v1")
    parser.add_argument("--api-key", help="default: $LORASERVE_API_KEY or $OPENAI_API_KEY")
    return parser


def _run(command):
    def handler(args) -> int:
        async def main() -> int:
            client = ApiClient(base_url_from(args.base_url), api_key_from(args.api_key))
            try:
                return await command(client, args) or 0
            except ApiFailure as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 1
            finally:
                await client.close()
        try:
            return asyncio.run(main())
        except KeyboardInterrupt:
            return 130
    return handler


def _print(obj) -> None:
    print(json.dumps(obj, indent=2))


async def cmd_push(client: ApiClient, args) -> int:
    config, weights = args.directory / "adapter_config.json", args.directory / "adapter_model.safetensors"
    missing = [str(p) for p in (config, weights) if not p.is_file()]
    if missing:
        print(f"error: missing {', '.join(missing)}", file=sys.stderr)
        return 2
    cfg = await client.upload_file(config)
    wts = await client.upload_file(weights)
    body = {"name": args.name, "supported_models": args.model, "config_file_id": cfg["id"],
            "weights_file_id": wts["id"]}
    body |= {k: v for k, v in (("display_name", args.display_name), ("description", args.description)) if v}
    lora = await client.call("POST", "/loras", json=body)
    print(f"created {lora['name']} ({lora['id']}): {lora['status']}")
    if args.no_wait:
        return 0
    lora = await wait_for_validation(client, lora)
    return 0 if lora["status"] == "ready" else 1


async def wait_for_validation(client: ApiClient, lora: dict) -> dict:
    """Poll until every model's latest record is terminal, printing each change as it happens."""
    seen: dict[str, str] = {}
    while True:
        for record in lora["validations"]:
            state = record["status"]
            if seen.get(record["id"]) != state:
                seen[record["id"]] = state
                detail = f" {record.get('result_code')}: {record.get('result_message')}" if state == "failed" else ""
                print(f"  {record['model']:<32} {state}{detail}", flush=True)
        if lora["status"] != "pending_validation":
            print(f"{lora['name']}: {lora['status']}")
            return lora
        await asyncio.sleep(POLL_SECONDS)
        lora = await client.call("GET", f"/loras/{lora['id']}")


async def cmd_list(client: ApiClient, args) -> int:
    after = None
    while True:
        page = await client.call("GET", "/loras", params={"limit": 100, **({"after": after} if after else {})})
        for lora in page["data"]:
            models = ",".join(lora["supported_models"])
            print(f"{lora['name']:<32} {lora['status']:<20} {models}")
        if not page.get("has_more"):
            return 0
        after = page["last_id"]


async def cmd_show(client: ApiClient, args) -> int:
    _print(await client.call("GET", f"/loras/{args.name}"))


async def cmd_delete(client: ApiClient, args) -> int:
    _print(await client.call("DELETE", f"/loras/{args.name}"))


async def cmd_patch(client: ApiClient, args) -> int:
    body: dict = {}
    if args.add_model:
        current = await client.call("GET", f"/loras/{args.name}")
        body["supported_models"] = list(dict.fromkeys([*current["supported_models"], *args.add_model]))
    body |= {k: v for k, v in (("display_name", args.display_name), ("description", args.description)) if v}
    _print(await client.call("PATCH", f"/loras/{args.name}", json=body))


async def cmd_chat(client: ApiClient, args) -> int:
    body = {"model": args.model, "messages": [{"role": "user", "content": args.prompt}],
            "max_tokens": args.max_tokens}
    if args.temperature is not None:
        body["temperature"] = args.temperature
    if args.lora:
        body["metadata"] = {"lora": args.lora, "completion_window": "priority"}
    completion = await client.call("POST", "/chat/completions", json=body)
    print(completion["choices"][0]["message"]["content"])
