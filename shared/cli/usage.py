"""`loraserve usage`: your org's token usage per time bucket, by model, API key and LoRA."""
from __future__ import annotations

import argparse
import json
import re
import time
from datetime import UTC, datetime

from shared.cli.api_client import ApiClient
from shared.cli.client import _run, _with_conn

DURATION = re.compile(r"^(\d{1,6})([smhd])$")
UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
GROUPS = ("model", "api_key_id", "lora_id")
MAX_PAGES = 1000


def duration_seconds(text: str) -> int:
    match = DURATION.match(text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"'{text}' is not a duration like 90m, 24h or 7d")
    return int(match[1]) * UNIT_SECONDS[match[2]]


def unix_time(text: str) -> int:
    """Unix seconds, or an ISO-8601 date/time (UTC unless it names its offset)."""
    if text.isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is neither unix seconds nor an ISO-8601 time") from None
    return int((moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp())


def group_list(text: str) -> list[str]:
    fields = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [f for f in fields if f not in GROUPS]
    if unknown:
        raise argparse.ArgumentTypeError(f"cannot group by {', '.join(unknown)}; choose from {', '.join(GROUPS)}")
    return fields


def register(sub) -> None:
    usage = _with_conn(sub.add_parser("usage", help="your org's token usage (GET /v1/organization/usage/completions)"))
    when = usage.add_mutually_exclusive_group()
    when.add_argument("--since", type=duration_seconds, default=None, help="this far back, e.g. 24h or 7d (default 7d)")
    when.add_argument("--start", type=unix_time, help="start: unix seconds or ISO-8601 (UTC)")
    usage.add_argument("--end", type=unix_time, help="end (exclusive), with --start; default now")
    usage.add_argument("--bucket", choices=("1m", "1h", "1d"), default="1d", help="bucket width (default 1d)")
    usage.add_argument("--group-by", type=group_list, default=[], help="comma list of model,api_key_id,lora_id")
    usage.add_argument("--json", action="store_true", help="print the API's pages as JSON")
    usage.set_defaults(handler=_run(cmd_usage))


def query_of(args, now: int) -> dict[str, str]:
    start = args.start if args.start is not None else now - (args.since or 7 * 86400)
    params = {"start_time": str(start), "bucket_width": args.bucket}
    if args.end is not None:
        params["end_time"] = str(args.end)
    if args.group_by:
        params["group_by"] = ",".join(args.group_by)
    return params


def rows_of(page: dict, groups: list[str]) -> list[list[str]]:
    rows = []
    for bucket in page["data"]:
        when = datetime.fromtimestamp(bucket["start_time"], UTC).strftime("%Y-%m-%d %H:%M")
        for result in bucket["results"]:
            rows.append([when, *(str(result.get(g) or "-") for g in groups), str(result["num_model_requests"]),
                         str(result["input_tokens"]), str(result["output_tokens"])])
    return rows


def table(rows: list[list[str]], groups: list[str]) -> str:
    header = ["bucket (UTC)", *groups, "requests", "input_tokens", "output_tokens"]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
                     for row in [header, *rows])


async def cmd_usage(client: ApiClient, args) -> int:
    params = query_of(args, int(time.time()))
    pages, rows = [], []
    for _ in range(MAX_PAGES):
        page = await client.call("GET", "/organization/usage/completions", params=params)
        pages.append(page)
        rows += rows_of(page, args.group_by)
        if not page.get("has_more"):
            break
        params = {**params, "page": page["next_page"]}
    if args.json:
        print(json.dumps(pages, indent=2))
    elif rows:
        print(table(rows, args.group_by))
    else:
        print("no usage in this period")
    return 0
