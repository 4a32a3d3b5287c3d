"""What the Redis limiter and the Redis leases share: a client that connects on first use, and Lua scripts run
with a deadline whose failure is the limiter's outage (LimiterUnavailable), for the caller to fail open or closed."""
from __future__ import annotations

import asyncio
from collections.abc import Sequence

from shared.ratelimit.limits import LimiterUnavailable

TIMEOUT_SECONDS = 0.5


class RedisScripts:
    def __init__(self, url: str, prefix: str, timeout: float = TIMEOUT_SECONDS, password: str | None = None):
        import redis.asyncio as aioredis  # imported here: processes without a Redis URL never need it

        # the client connects on first use, never at construction. The password is apart from the URL so it can
        # come from its own Secret unescaped; a password written in the URL wins over it
        self.redis = aioredis.Redis.from_url(url, password=password or None, socket_connect_timeout=timeout,
                                             socket_timeout=timeout)
        self.prefix, self.timeout = prefix, timeout

    def register(self, source: str):
        return self.redis.register_script(source)

    async def run(self, script, keys: Sequence[str], args: list):
        from redis.exceptions import RedisError
        try:
            return await asyncio.wait_for(script(keys=[self.prefix + k for k in keys], args=args), self.timeout * 2)
        except (RedisError, OSError, TimeoutError) as exc:
            raise LimiterUnavailable(f"Redis did not answer: {exc}") from exc

    async def close(self) -> None:
        await self.redis.aclose()
