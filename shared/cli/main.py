"""`loraserve`: run the platform, manage keys, export models. Sub-commands live in small modules."""
from __future__ import annotations

import argparse
import sys

from shared.cli import admin, client, demo, events, run, usage


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="loraserve", description="LoRAServe: upload, validate and serve LoRA adapters")
    sub = root.add_subparsers(dest="command", required=True)
    run.register(sub)
    admin.register(sub)
    client.register(sub)
    demo.register(sub)
    usage.register(sub)
    events.register(sub)
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return int(args.handler(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
