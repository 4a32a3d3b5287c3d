"""Standard Webhooks signatures as the official openai SDK verifies them (`webhooks.unwrap`), and the sealing of
signing secrets at rest."""
from __future__ import annotations

import base64
import json
import os
import time

import openai
import pytest

from services.webhooks import signing
from services.webhooks.secrets import SecretBox, SecretUnreadable
from shared.settings import Settings

SDK = openai.OpenAI(api_key="unused")
BODY = json.dumps({"id": "evt_1", "object": "event", "type": "response.completed", "created_at": 1,
                   "data": {"id": "resp_1", "status": "completed", "note": "caf\u00e9"}}, ensure_ascii=False).encode()


def test_a_secret_is_whsec_and_32_random_bytes():
    secret = signing.new_secret()
    assert secret.startswith("whsec_") and len(base64.b64decode(secret[len("whsec_"):])) == 32
    assert signing.new_secret() != secret
    assert signing.secret_hint(secret).endswith(secret[-4:]) and len(signing.secret_hint(secret)) < 16


def test_the_sdk_verifies_what_we_sign():
    secret = signing.new_secret()
    headers = signing.headers([secret], "evt_1", int(time.time()), BODY)
    assert headers["content-type"] == "application/json" and headers["webhook-id"] == "evt_1"
    event = SDK.webhooks.unwrap(BODY, headers, secret=secret)
    assert (event.type, event.data.id) == ("response.completed", "resp_1")


def test_with_two_secrets_either_one_verifies_and_a_third_does_not():
    current, previous, stranger = signing.new_secret(), signing.new_secret(), signing.new_secret()
    headers = signing.headers([current, previous], "evt_1", int(time.time()), BODY)
    assert len(headers["webhook-signature"].split(" ")) == 2
    SDK.webhooks.verify_signature(BODY, headers, secret=current)
    SDK.webhooks.verify_signature(BODY, headers, secret=previous)
    with pytest.raises(openai.InvalidWebhookSignatureError):
        SDK.webhooks.verify_signature(BODY, headers, secret=stranger)


def test_a_changed_body_id_or_an_old_timestamp_fails_verification():
    secret = signing.new_secret()
    headers = signing.headers([secret], "evt_1", int(time.time()), BODY)
    with pytest.raises(openai.InvalidWebhookSignatureError):
        SDK.webhooks.verify_signature(BODY.replace(b"completed", b"failed"), headers, secret=secret)
    with pytest.raises(openai.InvalidWebhookSignatureError):
        SDK.webhooks.verify_signature(BODY, {**headers, "webhook-id": "evt_2"}, secret=secret)
    stale = signing.headers([secret], "evt_1", int(time.time()) - 600, BODY)
    with pytest.raises(openai.InvalidWebhookSignatureError):
        SDK.webhooks.verify_signature(BODY, stale, secret=secret)


def test_a_sealed_secret_opens_only_under_its_key_and_for_its_endpoint():
    box = SecretBox(os.urandom(32))
    secret = signing.new_secret()
    sealed = box.seal(secret, "whep_1")
    assert secret not in sealed and secret[len("whsec_"):] not in sealed
    assert box.seal(secret, "whep_1") != sealed  # a fresh nonce every time
    assert box.open(sealed, "whep_1") == secret
    with pytest.raises(SecretUnreadable):
        box.open(sealed, "whep_2")
    with pytest.raises(SecretUnreadable):
        SecretBox(os.urandom(32)).open(sealed, "whep_1")
    with pytest.raises(SecretUnreadable):
        box.open(sealed[:-4] + "AAAA", "whep_1")


def test_the_box_takes_its_key_from_the_settings():
    key = base64.b64encode(os.urandom(32)).decode()
    sealed = SecretBox.from_settings(Settings(webhook_secrets_key=key)).seal("whsec_x", "whep_1")
    assert SecretBox.from_settings(Settings(webhook_secrets_key=key)).open(sealed, "whep_1") == "whsec_x"
    with pytest.raises(SecretUnreadable):
        SecretBox.from_settings(Settings()).open(sealed, "whep_1")
