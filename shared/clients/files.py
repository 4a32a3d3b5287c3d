"""file-ingest's internal lookup, for the registry: a file's owner, purpose and blob key."""
from __future__ import annotations

import json
from urllib.parse import quote

import aiohttp
from pydantic import ValidationError

from shared.clients.http import read_capped
from shared.contracts.files import InternalFile
from shared.logging import correlation_id

DEFAULT_TIMEOUT = aiohttp.ClientTimeout(total=10)
MAX_RESPONSE_BYTES = 64 * 1024


class FileIngestUnavailable(Exception):
    """file-ingest did not answer the lookup (down, timed out, or answered something unexpected)."""


def _not_found(body: bytes) -> None:
    """A missing file is None; a missing route (wrong token or URL) is a misconfiguration, not a missing file."""
    try:
        code = json.loads(body).get("error", {}).get("code")
    except (ValueError, AttributeError):
        code = None
    if code == "file_not_found":
        return
    raise FileIngestUnavailable(f"file lookup route not found (code {code!r}): check the service token and URL")


class FileIngestClient:
    def __init__(self, session: aiohttp.ClientSession, base_url: str, service_token: str,
                 timeout: aiohttp.ClientTimeout = DEFAULT_TIMEOUT):
        self._session = session
        self._base_url = base_url.rstrip("/")
        self._token = service_token
        self._timeout = timeout

    def _headers(self) -> dict[str, str]:
        headers = {"x-service-token": self._token}
        if cid := correlation_id.get():
            headers["x-request-id"] = cid
        return headers

    async def lookup(self, org_id: str, file_id: str) -> InternalFile | None:
        """The file if it exists in `org_id`, else None (another org's file is None too)."""
        if not file_id.strip("."):  # "." and ".." are dot-segments a URL drops, and never a file's id
            return None
        url = f"{self._base_url}/internal/v1/files/{quote(file_id, safe='')}"
        try:
            async with self._session.get(url, params={"org_id": org_id}, headers=self._headers(),
                                         timeout=self._timeout) as response:
                too_large = FileIngestUnavailable("file lookup answer is too large")
                body = await read_capped(response, MAX_RESPONSE_BYTES, too_large, 16 * 1024)
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise FileIngestUnavailable(f"file lookup failed: {exc!r}") from exc
        if status == 404:
            return _not_found(body)
        if status != 200:
            raise FileIngestUnavailable(f"file lookup answered {status}")
        try:
            return InternalFile.model_validate_json(body)
        except ValidationError as exc:
            raise FileIngestUnavailable(f"file lookup answer is malformed: {exc}") from exc
