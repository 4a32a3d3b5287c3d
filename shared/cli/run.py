"""`loraserve dev`, `serve SERVICE` and `worker --model ID`."""
from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from aiohttp import web

from shared.catalogue.catalogue import load_catalogue
from shared.cli.vllm_env import ensure_vllm_process
from shared.composition import HTTP_SERVICES, embedded_app, service_app
from shared.http.unparsed import install as install_envelope_for_unparsed_requests
from shared.identity.store import FileIdentityStore
from shared.logging import configure
from shared.settings import Settings

DEV_KEY_FILE = "dev-api-key"


def register(sub) -> None:
    dev = sub.add_parser("dev", help="run every service and a tiny-model worker in one process (embedded default)")
    dev.add_argument("--host")
    dev.add_argument("--port", type=int)
    dev.add_argument("--data-dir", type=Path)
    dev.add_argument("--api-key", action="append", default=[], metavar="ORG=KEY",
                     help="seed an API key for an org (repeatable)")
    dev.set_defaults(handler=cmd_dev)

    serve = sub.add_parser("serve", help="run one service against RabbitMQ, MongoDB and MinIO")
    serve.add_argument("service", choices=HTTP_SERVICES)
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.set_defaults(handler=cmd_serve)

    worker = sub.add_parser("worker", help="run a worker for one base model")
    worker.add_argument("--model", required=True)
    worker.add_argument("--engine", choices=["torch", "vllm"],
                        help="the serving engine (default: the one the catalogue entry names)")
    worker.add_argument("--host")
    worker.add_argument("--port", type=int)
    worker.set_defaults(handler=cmd_worker)


def _settings(args, **overrides) -> Settings:
    values = {k: v for k, v in {"host": args.host, "port": args.port, **overrides}.items() if v is not None}
    if getattr(args, "data_dir", None):
        values["data_dir"] = args.data_dir
    return Settings(**values)


async def seed_dev_keys(settings: Settings, pairs: list[str]) -> list[tuple[str, str]]:
    """Keys to print: the ones given, else the dev key kept in the data dir (made on first start)."""
    store = FileIdentityStore(settings.keys_path, pepper=settings.key_pepper)
    shown = []
    for pair in pairs:
        org, sep, key = pair.partition("=")
        if not sep or not org or not key:
            raise SystemExit(f"--api-key expects ORG=KEY, got {pair!r}")
        await store.create(org, key)
        shown.append((org, key))
    if shown:
        return shown
    dev_key_path = settings.data_dir / DEV_KEY_FILE
    if dev_key_path.exists():
        key = dev_key_path.read_text().strip()
        org = await store.org_for_key(key)
        if org:
            return [(org, key)]
    _, key = await store.create("default")
    dev_key_path.parent.mkdir(parents=True, exist_ok=True)
    dev_key_path.write_text(key + "\n")
    dev_key_path.chmod(0o600)
    return [("default", key)]


def serve_app(app: web.Application, settings: Settings) -> None:
    install_envelope_for_unparsed_requests()
    web.run_app(app, host=settings.host, port=settings.port, print=None)


def cmd_dev(args) -> int:
    settings = _settings(args)
    configure(production=settings.production)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    keys = asyncio.run(seed_dev_keys(settings, args.api_key))
    base_url = (settings.public_base_url or f"http://{settings.host}:{settings.port}").rstrip("/") + "/v1"
    print(f"LoRAServe (embedded) on {base_url}   data: {settings.data_dir.resolve()}", flush=True)
    for org, key in keys:
        print(f"  org {org}: export OPENAI_BASE_URL={base_url} OPENAI_API_KEY={key}", flush=True)
    serve_app(embedded_app(settings), settings)
    return 0


def cmd_serve(args) -> int:
    settings = _settings(args)
    configure(production=settings.production)
    serve_app(service_app(settings, args.service), settings)
    return 0


def cmd_worker(args) -> int:
    settings = _settings(args, worker_model=args.model, worker_engine=args.engine)
    catalogue = load_catalogue(settings.catalogue_file)
    if args.model not in catalogue:
        raise SystemExit(f"unknown model {args.model!r}; the catalogue serves: {', '.join(catalogue.ids())}")
    engine = settings.worker_engine or catalogue.get(args.model).engine.name
    if engine == "vllm":
        ensure_vllm_process(settings, sys.argv[1:])
    configure(production=settings.production)
    serve_app(service_app(settings, "gpu-worker"), settings)
    return 0
