"""Fixed windows in Redis, shared by every replica. One Lua script reads and counts all of a request's
limits, so two replicas cannot both take the last unit of a window (Redis runs a script atomically).
The window is the counter key's TTL, set by the first count: replicas' clocks do not matter."""
from __future__ import annotations

from collections.abc import Sequence

from shared.ratelimit.limits import Decision, Limit, LimitState
from shared.ratelimit.redis_scripts import TIMEOUT_SECONDS, RedisScripts

# KEYS: counters. ARGV[1]: window in ms; then limit and cost per key. Returns allowed, then used and
# milliseconds left per key.
ACQUIRE = """
local window = tonumber(ARGV[1])
local used, ttl, allowed = {}, {}, 1
for i = 1, #KEYS do
  local limit, cost = tonumber(ARGV[2 * i]), tonumber(ARGV[2 * i + 1])
  used[i] = tonumber(redis.call('GET', KEYS[i]) or '0')
  ttl[i] = redis.call('PTTL', KEYS[i])
  if ttl[i] < 0 then used[i] = 0; ttl[i] = window end
  if cost > 0 and used[i] + cost > limit then allowed = 0 end
end
local out = {allowed}
for i = 1, #KEYS do
  local cost = tonumber(ARGV[2 * i + 1])
  if allowed == 1 and cost > 0 then
    used[i] = redis.call('INCRBY', KEYS[i], cost)
    if redis.call('PTTL', KEYS[i]) < 0 then redis.call('PEXPIRE', KEYS[i], window) end
  end
  table.insert(out, used[i])
  table.insert(out, ttl[i])
end
return out
"""
# only a window still open is corrected; never below zero
SETTLE = """
if redis.call('PTTL', KEYS[1]) > 0 then
  local v = redis.call('INCRBY', KEYS[1], ARGV[1])
  if v < 0 then redis.call('SET', KEYS[1], 0, 'KEEPTTL') end
end
return 0
"""


class RedisLimiter:
    def __init__(self, url: str, prefix: str = "loraserve:rl:", timeout: float = TIMEOUT_SECONDS,
                 password: str | None = None):
        self._scripts = RedisScripts(url, prefix, timeout, password)
        self._acquire = self._scripts.register(ACQUIRE)
        self._settle = self._scripts.register(SETTLE)

    async def acquire(self, limits: Sequence[Limit], window_seconds: float) -> Decision:
        window_ms = max(1, int(window_seconds * 1000))
        args: list = [window_ms]
        for limit in limits:
            args += [limit.limit, limit.cost]
        reply = await self._scripts.run(self._acquire, [limit.key for limit in limits], args)
        allowed = bool(int(reply[0]))
        states = tuple(LimitState(limit=limit, used=int(reply[1 + 2 * i]), reset_seconds=int(reply[2 + 2 * i]) / 1000,
                                  counted=allowed) for i, limit in enumerate(limits))
        return Decision(allowed=allowed, states=states)

    async def settle(self, key: str, delta: int) -> None:
        if delta:
            await self._scripts.run(self._settle, [key], [delta])

    async def close(self) -> None:
        await self._scripts.close()
