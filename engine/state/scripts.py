"""Lua scripts: every read-modify-write of shared state is one atomic call.

Times come from the Redis server (TIME), in milliseconds, so replicas whose clocks disagree
still agree on when a cooldown ends. Keys of one provider share a hash tag, so a Redis
Cluster keeps them in one slot.
"""

from __future__ import annotations

import redis.asyncio as aioredis

from ..dsl.spec import ProviderPolicy
from .base import Grant

BASE_COOLDOWN_MS = 1000  # a rate limit without Retry-After: 1 s, doubling per strike
KEEP_ROWS_MS = 7 * 24 * 3600 * 1000  # health rows (counters) outlive their last change by this

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# KEYS: breaker hash, probe lease, cursor, then (health hash, lease zset) per candidate key,
#       then lease zsets to release first (this replica's, sent along to save a round trip).
# ARGV: token, replica, lease ttl ms, probe ttl ms, concurrency limit (0: none), lru (1/0),
#       number of candidate keys, then the token of each lease to release.
# Returns {verdict, number, probe}: {'ok', key index (0: no key), probe 1/0},
# {'open', ms until half-open, 0}, {'nokey', ms until the soonest key returns, 0}, {'busy', 0, 0}.
ACQUIRE = (
    _NOW
    + """
local token, replica = ARGV[1], ARGV[2]
local lease_ttl, probe_ttl = tonumber(ARGV[3]), tonumber(ARGV[4])
local limit, lru, n = tonumber(ARGV[5]), ARGV[6] == '1', tonumber(ARGV[7])
for j = 1, #KEYS - 3 - 2 * n do redis.call('ZREM', KEYS[3 + 2 * n + j], ARGV[7 + j]) end
local probe = 0
local open_until = tonumber(redis.call('HGET', KEYS[1], 'open_until') or '0')
if open_until > 0 then
  if now < open_until then return {'open', open_until - now, 0} end
  if not redis.call('SET', KEYS[2], token, 'NX', 'PX', probe_ttl) then return {'open', 0, 0} end
  probe = 1
end
if n == 0 then return {'ok', 0, probe} end
local healthy, soonest = {}, nil
for i = 1, n do
  local untl = tonumber(redis.call('HGET', KEYS[2 + 2 * i], 'until') or '0')
  if untl <= now then
    healthy[#healthy + 1] = i
  elseif soonest == nil or untl < soonest then
    soonest = untl
  end
end
if #healthy == 0 then
  if probe == 1 then redis.call('DEL', KEYS[2]) end
  return {'nokey', soonest - now, 0}
end
local order = {}
if lru then
  local used = {}
  for _, i in ipairs(healthy) do
    used[i] = tonumber(redis.call('HGET', KEYS[2 + 2 * i], 'last_used') or '0')
  end
  table.sort(healthy, function(a, b)
    if used[a] == used[b] then return a < b end
    return used[a] < used[b]
  end)
  order = healthy
else
  local start = (redis.call('INCR', KEYS[3]) - 1) % #healthy
  for j = 0, #healthy - 1 do order[j + 1] = healthy[((start + j) % #healthy) + 1] end
end
for _, i in ipairs(order) do
  local leases = KEYS[3 + 2 * i]
  local free = true
  if limit > 0 then
    redis.call('ZREMRANGEBYSCORE', leases, '-inf', now)
    free = redis.call('ZCARD', leases) < limit
  end
  if free then
    redis.call('ZADD', leases, now + lease_ttl, token)
    redis.call('PEXPIRE', leases, lease_ttl)
    redis.call('HSET', KEYS[2 + 2 * i], 'last_used', now)
    return {'ok', i, probe}
  end
end
if probe == 1 then redis.call('DEL', KEYS[2]) end
return {'busy', 0, 0}
"""
)

# KEYS: breaker hash, probe lease, health hash, lease zset (the last two unused without a key).
# ARGV: token, replica, kind ('' success, 'released' no verdict, else a failure kind),
#       retry_after ms ('' none), max cooldown ms, bad_key reprobe ms, quota reset ms,
#       breaker failures, breaker cooldown ms, has key 1/0, probe 1/0, base cooldown ms,
#       how long health rows are kept ms, change channel, provider id.
# Returns 1 when state that replicas cache changed (a cooldown began or ended, a breaker
# counted or moved); it is then published on the change channel, so their caches drop it.
SETTLE = (
    _NOW
    + """
local token, replica, kind = ARGV[1], ARGV[2], ARGV[3]
local has_key, probe = ARGV[10] == '1', false
if has_key then redis.call('ZREM', KEYS[4], token) end
if ARGV[11] == '1' and redis.call('GET', KEYS[2]) == token then
  redis.call('DEL', KEYS[2])
  probe = true
end
if kind == 'released' then return 0 end
local changed = 0
if has_key then
  local h = KEYS[3]
  if kind == '' then
    redis.call('HINCRBY', h, 'successes', 1)
    local resting = tonumber(redis.call('HGET', h, 'until') or '0') > 0
    if resting or redis.call('HEXISTS', h, 'strikes') == 1 then
      redis.call('HDEL', h, 'until', 'reason', 'strikes')
      redis.call('HSET', h, 'changed_by', replica, 'changed_at', now)
      changed = 1
    end
  else
    redis.call('HINCRBY', h, 'failures', 1)
    redis.call('HSET', h, 'last_error', kind, 'last_error_at', now)
    local wait = nil
    if kind == 'rate_limited' then
      local strikes = redis.call('HINCRBY', h, 'strikes', 1)
      if ARGV[4] ~= '' then
        wait = tonumber(ARGV[4])
      else
        wait = math.min(tonumber(ARGV[5]), tonumber(ARGV[12]) * 2 ^ (strikes - 1))
      end
    elseif kind == 'bad_key' then
      wait = tonumber(ARGV[6])
    elseif kind == 'quota' then
      wait = tonumber(ARGV[7])
    end
    if wait ~= nil then
      redis.call('HSET', h, 'until', now + math.floor(wait), 'reason', kind,
        'changed_by', replica, 'changed_at', now)
      changed = 1
    end
  end
  redis.call('PEXPIRE', h, tonumber(ARGV[13]))
end
if kind == '' then
  if redis.call('DEL', KEYS[1]) == 1 then changed = 1 end
elseif kind == 'upstream' or kind == 'timeout' then
  local count = redis.call('HINCRBY', KEYS[1], 'consecutive', 1)
  if probe or count >= tonumber(ARGV[8]) then
    redis.call('HSET', KEYS[1], 'open_until', now + tonumber(ARGV[9]),
      'changed_by', replica, 'changed_at', now)
  end
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[13]))
  changed = 1
end
if changed == 1 then redis.call('PUBLISH', ARGV[14], ARGV[15]) end
return changed
"""
)

# KEYS: lease zsets (then string leases compared by token; unused today: a probe's slot lasts
# one cooldown, unrenewed); ARGV: token per key (same order), number of zsets, ttl ms.
# Renews only what is still held: a lease that already expired is not brought back.
RENEW = (
    _NOW
    + """
local zsets, ttl = tonumber(ARGV[#ARGV - 1]), tonumber(ARGV[#ARGV])
for i = 1, #KEYS do
  if i <= zsets then
    if redis.call('ZSCORE', KEYS[i], ARGV[i]) then
      redis.call('ZADD', KEYS[i], now + ttl, ARGV[i])
      redis.call('PEXPIRE', KEYS[i], ttl)
    end
  elseif redis.call('GET', KEYS[i]) == ARGV[i] then
    redis.call('PEXPIRE', KEYS[i], ttl)
  end
end
return 0
"""
)

# KEYS: a counter; ARGV: amount, window ms. A fixed window that expires on its own.
HIT = """
local count = redis.call('INCRBY', KEYS[1], tonumber(ARGV[1]))
if count == tonumber(ARGV[1]) then redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2])) end
return count
"""


# Budgets: add ARGV[2] to field ARGV[1] of every hash in KEYS, only if none would pass its
# limit (ARGV[4..]); ARGV[3] is the TTL in ms. Returns {1 or 0, the totals before} (as strings:
# Redis would truncate Lua numbers to integers).
RESERVE = """
local amount = tonumber(ARGV[2])
local out = {1}
for i, key in ipairs(KEYS) do
  local now = tonumber(redis.call('HGET', key, ARGV[1]) or '0')
  out[i + 1] = tostring(now)
  if now + amount > tonumber(ARGV[3 + i]) then out[1] = 0 end
end
if out[1] == 1 then
  for _, key in ipairs(KEYS) do
    redis.call('HINCRBYFLOAT', key, ARGV[1], ARGV[2])
    redis.call('PEXPIRE', key, tonumber(ARGV[3]))
  end
end
return out
"""


def settle_args(
    grant: Grant,
    replica: str,
    kind: str | None,
    retry_after: float | None,
    policy: ProviderPolicy,
    channel: str,
) -> list[str | int]:
    """SETTLE's ARGV, in its order."""
    return [
        grant.token,
        replica,
        "" if kind is None else kind,
        "" if retry_after is None else int(retry_after * 1000),
        int(policy.max_cooldown * 1000),
        int(policy.bad_key_reprobe * 1000),
        int(policy.quota_reset * 1000),
        policy.breaker.failures,
        int(policy.breaker.cooldown * 1000),
        "1" if grant.key else "0",
        "1" if grant.probe else "0",
        BASE_COOLDOWN_MS,
        KEEP_ROWS_MS,
        channel,
        grant.provider,
    ]


# KEYS: a job's lease; ARGV: holder, ttl ms. Takes a free lease or renews the holder's own:
# 1, else 0 (another replica holds it). Compare-and-set, so two sweepers never both win.
JOB_LEASE = """
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', tonumber(ARGV[2]))
return 1
"""

# KEYS: a job's lease; ARGV: holder. Gives it back only if still the holder's.
JOB_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class Lua:
    """Every script, registered with a client: called by EVALSHA (loaded again on NOSCRIPT)."""

    def __init__(self, client: aioredis.Redis) -> None:
        self.acquire = client.register_script(ACQUIRE)
        self.settle = client.register_script(SETTLE)
        self.renew = client.register_script(RENEW)
        self.hit = client.register_script(HIT)
        self.reserve = client.register_script(RESERVE)
        self.job_lease = client.register_script(JOB_LEASE)
        self.job_release = client.register_script(JOB_RELEASE)
