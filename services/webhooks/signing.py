"""Standard Webhooks signatures, as OpenAI sends them and `client.webhooks.unwrap` verifies them.

The signed content is `<webhook-id>.<webhook-timestamp>.<body>`; each secret is `whsec_<base64 key>` and gives one
`v1,<base64 HMAC-SHA256>`; several (a rotated secret in its grace period) are sent space-separated and a receiver
accepts the delivery when any one matches the secret it holds.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import secrets as random

PREFIX = "whsec_"
SECRET_BYTES = 32


def new_secret() -> str:
    return PREFIX + base64.b64encode(random.token_bytes(SECRET_BYTES)).decode()


def secret_hint(secret: str) -> str:
    """What the object shows of a secret: enough to tell two apart, too little to sign with."""
    return f"{PREFIX}...{secret[-4:]}"


def _key(secret: str) -> bytes:
    return base64.b64decode(secret[len(PREFIX):]) if secret.startswith(PREFIX) else secret.encode()


def signature(secrets: list[str], msg_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return " ".join("v1," + base64.b64encode(hmac.new(_key(s), signed, hashlib.sha256).digest()).decode()
                    for s in secrets)


def headers(secrets: list[str], msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(secrets, msg_id, timestamp, body),
        "content-type": "application/json",
    }
