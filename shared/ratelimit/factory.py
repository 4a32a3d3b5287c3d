"""Which limiter a process uses: Redis when a URL is set (limits shared by replicas), else in process."""
from __future__ import annotations

from shared.ratelimit.leases import InProcessLeases, Leases
from shared.ratelimit.limits import Limiter
from shared.ratelimit.memory import InProcessLimiter


def limiter_for(redis_url: str | None, password: str | None = None) -> Limiter:
    """`password`: settings.redis_password (LORASERVE_REDIS_PASSWORD), which production requires with a URL."""
    if redis_url:
        from shared.ratelimit.redis_limiter import RedisLimiter
        return RedisLimiter(redis_url, password=password)
    return InProcessLimiter()


def leases_for(redis_url: str | None, password: str | None = None) -> Leases:
    """Concurrency leases beside the limiter: in Redis when a URL is set, else in this process."""
    if redis_url:
        from shared.ratelimit.redis_leases import RedisLeases
        return RedisLeases(redis_url, password=password)
    return InProcessLeases()
