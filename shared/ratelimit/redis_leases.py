"""Leases in Redis, shared by every replica. A pool is a sorted set of lease ids scored by expiry (Redis's
own clock, so replicas' clocks do not matter) beside a hash of their weights; each script first drops the
expired leases, so a crashed holder's leases vanish within their TTL without anyone releasing them.
Both keys of a pool expire with its last lease, so idle orgs leave nothing behind."""
from __future__ import annotations

from collections.abc import Sequence

from shared.ratelimit.leases import LeaseDecision, Pool
from shared.ratelimit.redis_scripts import TIMEOUT_SECONDS, RedisScripts

PRUNE = """
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function prune(key, now)
  local expired = redis.call('ZRANGEBYSCORE', key, '-inf', now)
  for _, id in ipairs(expired) do redis.call('HDEL', key .. ':w', id) end
  if #expired > 0 then redis.call('ZREMRANGEBYSCORE', key, '-inf', now) end
end
local function hold(key, id, weight, expires, ttl)
  redis.call('ZADD', key, expires, id)
  redis.call('HSET', key .. ':w', id, weight)
  redis.call('PEXPIRE', key, ttl)
  redis.call('PEXPIRE', key .. ':w', ttl)
end
"""
# ARGV: ttl ms, lease id, then limit and weight per key. Returns granted, then the others' use per key.
ACQUIRE = PRUNE + """
local ttl, id = tonumber(ARGV[1]), ARGV[2]
local now = now_ms()
local used, granted = {}, 1
for i = 1, #KEYS do
  prune(KEYS[i], now)
  local total = 0
  local weights = redis.call('HGETALL', KEYS[i] .. ':w')
  for j = 1, #weights, 2 do
    if weights[j] ~= id then total = total + tonumber(weights[j + 1]) end
  end
  used[i] = total
  if total + tonumber(ARGV[2 + 2 * i]) > tonumber(ARGV[1 + 2 * i]) then granted = 0 end
end
if granted == 1 then
  for i = 1, #KEYS do hold(KEYS[i], id, ARGV[2 + 2 * i], now + ttl, ttl) end
end
local out = {granted}
for i = 1, #KEYS do table.insert(out, used[i]) end
return out
"""
# ARGV: ttl ms, lease id. Returns how many pools still held it.
RENEW = PRUNE + """
local ttl, id = tonumber(ARGV[1]), ARGV[2]
local now, renewed = now_ms(), 0
for i = 1, #KEYS do
  prune(KEYS[i], now)
  local weight = redis.call('HGET', KEYS[i] .. ':w', id)
  if weight then
    hold(KEYS[i], id, weight, now + ttl, ttl)
    renewed = renewed + 1
  end
end
return renewed
"""
RELEASE = """
for i = 1, #KEYS do
  redis.call('ZREM', KEYS[i], ARGV[1])
  redis.call('HDEL', KEYS[i] .. ':w', ARGV[1])
end
return 0
"""


class RedisLeases:
    def __init__(self, url: str, prefix: str = "loraserve:lease:", timeout: float = TIMEOUT_SECONDS,
                 password: str | None = None):
        self._scripts = RedisScripts(url, prefix, timeout, password)
        self._acquire = self._scripts.register(ACQUIRE)
        self._renew = self._scripts.register(RENEW)
        self._release = self._scripts.register(RELEASE)

    async def acquire(self, pools: Sequence[Pool], lease_id: str, ttl: float) -> LeaseDecision:
        args: list = [max(1, int(ttl * 1000)), lease_id]
        for pool in pools:
            args += [pool.limit, pool.weight]
        reply = await self._scripts.run(self._acquire, [p.key for p in pools], args)
        return LeaseDecision(granted=bool(int(reply[0])), used=tuple(int(u) for u in reply[1:]), pools=tuple(pools))

    async def renew(self, keys: Sequence[str], lease_id: str, ttl: float) -> int:
        return int(await self._scripts.run(self._renew, keys, [max(1, int(ttl * 1000)), lease_id]))

    async def release(self, keys: Sequence[str], lease_id: str) -> None:
        await self._scripts.run(self._release, keys, [lease_id])

    async def close(self) -> None:
        await self._scripts.close()
