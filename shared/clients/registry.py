"""The registry's internal LoRA listing, for the inference router's read model at start-up.

    async for entry in RegistryClient(session, base_url, service_token).list_all():
        read_model.apply(entry.org_id, entry.lora, entry.adapter, entry.version)
"""
from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
from pydantic import ValidationError

from shared.clients.http import read_capped
from shared.contracts.loras import InternalLoraEntry, InternalLoraPage
from shared.logging import correlation_id

DEFAULT_TIMEOUT = aiohttp.ClientTimeout(total=30)
PAGE_SIZE = 500
MAX_PAGE_BYTES = 64 * 1024 * 1024


class RegistryUnavailable(Exception):
    """The registry did not answer the listing (down, timed out, or answered something unexpected)."""


class RegistryClient:
    def __init__(self, session: aiohttp.ClientSession, base_url: str, service_token: str,
                 timeout: aiohttp.ClientTimeout = DEFAULT_TIMEOUT, page_size: int = PAGE_SIZE):
        self._session = session
        self._base_url = base_url.rstrip("/")
        self._token = service_token
        self._timeout = timeout
        self._page_size = page_size

    def _headers(self) -> dict[str, str]:
        headers = {"x-service-token": self._token}
        if cid := correlation_id.get():
            headers["x-request-id"] = cid
        return headers

    async def page(self, after: str | None = None) -> InternalLoraPage:
        params = {"limit": str(self._page_size), **({"after": after} if after else {})}
        try:
            async with self._session.get(f"{self._base_url}/internal/v1/loras", params=params,
                                         headers=self._headers(), timeout=self._timeout) as response:
                if response.status != 200:
                    raise RegistryUnavailable(f"LoRA listing answered {response.status}")
                too_large = RegistryUnavailable("LoRA listing page is too large")
                body = await read_capped(response, MAX_PAGE_BYTES, too_large, 256 * 1024)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise RegistryUnavailable(f"LoRA listing failed: {exc!r}") from exc
        try:
            return InternalLoraPage.model_validate_json(body)
        except ValidationError as exc:
            raise RegistryUnavailable(f"LoRA listing answer is malformed: {exc}") from exc

    async def list_all(self) -> AsyncIterator[InternalLoraEntry]:
        """Every org's LoRAs, page after page, oldest first."""
        after = None
        while True:
            page = await self.page(after)
            for entry in page.data:
                yield entry
            if not page.has_more or not page.last_id:
                return
            after = page.last_id
