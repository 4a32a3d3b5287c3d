"""`loraserve admin keys create|list|revoke|migrate`, `loraserve admin orgs set-limits|show` and
`loraserve model export`.

Keys are hashed with LORASERVE_KEY_PEPPER: run these with the pepper the services run with (in production
they refuse to run without a real one), against the file you then install as the read-only Secret.
"""
from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from shared.quotas import LIMIT_LABELS, OrgLimits, Quotas
from shared.settings import DEV_KEY_PEPPER, Settings


def register(sub) -> None:
    admin = sub.add_parser("admin", help="administer orgs and API keys")
    admin_sub = admin.add_subparsers(dest="admin_command", required=True)
    keys = admin_sub.add_parser("keys", help="API keys (stored hashed; a new key is shown once)")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    create = keys_sub.add_parser("create")
    create.add_argument("--org", required=True)
    create.set_defaults(handler=cmd_keys_create)
    keys_sub.add_parser("list").set_defaults(handler=cmd_keys_list)
    revoke = keys_sub.add_parser("revoke")
    revoke.add_argument("key_id")
    revoke.set_defaults(handler=cmd_keys_revoke)
    keys_sub.add_parser("migrate", help="re-hash plain sha256 records of earlier releases under the pepper "
                                        "(no key needed) and drop their prefix hints").set_defaults(
        handler=cmd_keys_migrate)

    _register_orgs(admin_sub)

    model = sub.add_parser("model", help="base models")
    model_sub = model.add_subparsers(dest="model_command", required=True)
    export = model_sub.add_parser("export", help="write a catalogue model as an HF checkpoint")
    export.add_argument("model_id")
    export.add_argument("out_dir", type=Path)
    export.set_defaults(handler=cmd_model_export)


DEFAULT = "default"


def _limit(value: str) -> int | str:
    """A quota: a count of 0 or more, or `default` to drop the override."""
    if value == DEFAULT:
        return DEFAULT
    try:
        number = int(value)
    except ValueError:
        number = -1
    if number < 0:
        raise ValueError(value)
    return number


def _register_orgs(admin_sub) -> None:
    orgs = admin_sub.add_parser("orgs", help="per-org quotas and rate limits (over the LORASERVE_QUOTA_*, _RATELIMIT_* and _FAIR_* defaults)")
    orgs_sub = orgs.add_subparsers(dest="orgs_command", required=True)
    set_limits = orgs_sub.add_parser("set-limits", help="override an org's quotas and rate limits; the flags not given are kept")
    set_limits.add_argument("org")
    for name in LIMIT_LABELS:
        set_limits.add_argument(f"--{name.replace('_', '-')}", dest=name, type=_limit, metavar="N",
                                help=f"{LIMIT_LABELS[name]} (a number, or `default`)")
    set_limits.add_argument("--reset", action="store_true", help="drop every override first")
    set_limits.set_defaults(handler=cmd_orgs_set_limits)
    show = orgs_sub.add_parser("show", help="an org's quota limits: the overrides and the limits in force")
    show.add_argument("org")
    show.set_defaults(handler=cmd_orgs_show)


def _identity(writes: bool = False):
    from shared.composition import make_identity
    from shared.stores import make_document_store

    settings = Settings()
    settings.require_safe(service_token=False)
    if writes and settings.key_pepper == DEV_KEY_PEPPER:
        print("warning: LORASERVE_KEY_PEPPER is not set: hashing with the development pepper, which services "
              "running with a real pepper will not accept", file=sys.stderr)
    return make_identity(settings, make_document_store(settings) if settings.identity_backend == "mongo" else None)


def cmd_keys_create(args) -> int:
    try:
        record, key = asyncio.run(_identity(writes=True).create(args.org))
    except ValueError as exc:
        raise SystemExit(str(exc)) from None
    print(f"created {record.id} for org {record.org_id}")
    print(f"API key (shown once): {key}")
    return 0


def cmd_keys_list(args) -> int:
    for record in asyncio.run(_identity().list()):
        state = "revoked" if record.revoked_at else "active"
        print(f"{record.id}\t{record.org_id}\t{record.shown_hint}\t{state}\t{record.created_at.isoformat()}")
    return 0


def cmd_keys_revoke(args) -> int:
    if not asyncio.run(_identity().revoke(args.key_id)):
        raise SystemExit(f"no active key {args.key_id}")
    print(f"revoked {args.key_id}")
    return 0


def cmd_keys_migrate(args) -> int:
    try:
        changed = asyncio.run(_identity(writes=True).migrate())
    except ValueError as exc:
        raise SystemExit(str(exc)) from None
    print(f"migrated {changed} plain sha256 record(s) to HMAC-SHA256 with the pepper (their hints are removed)")
    return 0


def _print_limits(quotas: Quotas, org: str) -> None:
    view = asyncio.run(quotas.view(org))
    overrides = view.overrides.overrides()
    print(f"org {view.org_id}")
    for name in LIMIT_LABELS:
        origin = "override" if name in overrides else "default"
        value = getattr(view.effective, name)
        print(f"  {name}\t{'none' if value is None else value}\t({origin})")


def cmd_orgs_set_limits(args) -> int:
    identity = _identity()
    given = {name: getattr(args, name) for name in LIMIT_LABELS if getattr(args, name) is not None}

    async def update() -> None:
        current = OrgLimits() if args.reset else await identity.get_limits(args.org)
        kept = {k: v for k, v in current.overrides().items() if k not in given}
        await identity.set_limits(args.org, OrgLimits(**kept, **{k: v for k, v in given.items() if v != DEFAULT}))

    try:
        asyncio.run(update())
    except ValueError as exc:
        raise SystemExit(str(exc)) from None
    _print_limits(Quotas(Settings(), identity), args.org)
    return 0


def cmd_orgs_show(args) -> int:
    _print_limits(Quotas(Settings(), _identity()), args.org)
    return 0


def cmd_model_export(args) -> int:
    from services.gpu_worker.models.tiny_model import export_model

    export_model(args.model_id, args.out_dir)
    print(f"exported {args.model_id} to {args.out_dir}")
    return 0
