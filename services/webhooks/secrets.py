"""Signing secrets at rest: sealed with AES-256-GCM under LORASERVE_WEBHOOK_SECRETS_KEY.

They cannot be hashed (every delivery is signed with them), so a database dump must hold only ciphertext: the
key lives in a Kubernetes Secret, never beside the documents. Each ciphertext is bound to its endpoint id (the
GCM associated data), so a sealed secret copied onto another endpoint does not open there.
"""
from __future__ import annotations

import base64
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from shared.settings import Settings, UnsafeSettings

FORMAT = "v1"  # the prefix of a sealed value: lets a later key or cipher live beside this one
NONCE_BYTES = 12


class SecretUnreadable(Exception):
    """A sealed secret that does not open under this key (another key, another endpoint, or damaged)."""


class SecretBox:
    def __init__(self, key: bytes):
        if len(key) != 32:
            raise ValueError("the webhook secrets key must be 32 bytes")
        self._aead = AESGCM(key)

    @classmethod
    def from_settings(cls, settings: Settings) -> SecretBox:
        # production also refuses the development key (Settings.webhook_secrets_key_problem, at build)
        try:
            return cls(base64.b64decode(settings.webhook_secrets_key, validate=True))
        except ValueError:  # binascii.Error is one
            raise UnsafeSettings("LORASERVE_WEBHOOK_SECRETS_KEY is not base64 of 32 bytes: set it to e.g. "
                                 "\"$(openssl rand -base64 32)\"") from None

    def seal(self, plaintext: str, context: str) -> str:
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, plaintext.encode(), context.encode())
        return f"{FORMAT}.{base64.urlsafe_b64encode(nonce + sealed).decode()}"

    def open(self, sealed: str, context: str) -> str:
        version, _, payload = sealed.partition(".")
        if version != FORMAT:
            raise SecretUnreadable(f"unknown sealed-secret format {version!r}")
        try:
            raw = base64.urlsafe_b64decode(payload)
            return self._aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], context.encode()).decode()
        except (InvalidTag, ValueError) as exc:
            raise SecretUnreadable("the sealed secret does not open under LORASERVE_WEBHOOK_SECRETS_KEY") from exc
