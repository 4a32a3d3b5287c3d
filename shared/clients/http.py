"""What every internal client shares: answers are read with a size cap, never trusted to be small."""
from __future__ import annotations

import aiohttp


async def read_capped(response: aiohttp.ClientResponse, max_bytes: int, too_large: Exception,
                      chunk_size: int = 64 * 1024) -> bytes:
    """The whole body, or `too_large` raised as soon as it passes `max_bytes`."""
    body = bytearray()
    async for chunk in response.content.iter_chunked(chunk_size):
        body += chunk
        if len(body) > max_bytes:
            raise too_large
    return bytes(body)
