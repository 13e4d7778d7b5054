//! The Lua scripts the fleet runs inside Redis, so that each decision is atomic and read
//! against Redis's own clock (`TIME`): gateways' clocks never meet.
//!
//! Times inside the scripts are microseconds since the Unix epoch on Redis's clock. Every key
//! a script touches is passed in `KEYS`.

use std::sync::LazyLock;

use redis::Script;

/// Takes a hold in the fleet's sliding window for one upstream call.
///
/// KEYS: holds (sorted set member -> expiry), next-permit instant, epoch.
/// ARGV: limit, interval µs, lease µs, member, the epoch the gateway knows, then pairs of
/// (member, remaining µs) of holds to register first (calls the fleet may not know of).
///
/// Returns `{status, µs, epoch[, holds]}`: status 1 = granted, send after µs, with the fleet's
/// live holds counted after the grant; 0 = every slot is held, ask again after µs; 2 = the
/// epoch differs (Redis lost its state, or this gateway is new):
/// register your live holds, then ask again.
pub static ACQUIRE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local epoch = redis.call('GET', KEYS[3])
if not epoch then
  epoch = tostring(now)
  redis.call('SET', KEYS[3], epoch)
end
if epoch ~= ARGV[5] then
  return {2, 0, epoch, 0}
end
local lease = tonumber(ARGV[3])
for i = 6, #ARGV, 2 do
  redis.call('ZADD', KEYS[1], 'GT', now + tonumber(ARGV[i + 1]), ARGV[i])
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return {0, math.max(tonumber(first[2]) - now, 500), epoch, 0}
end
local at = math.max(now, tonumber(redis.call('GET', KEYS[2]) or '0'))
local interval = tonumber(ARGV[2])
redis.call('SET', KEYS[2], string.format('%d', at + interval), 'PX', math.ceil((at - now + interval) / 1000) + 1000)
redis.call('ZADD', KEYS[1], at + lease, ARGV[4])
redis.call('PEXPIRE', KEYS[1], math.ceil((at - now + lease) / 1000) + 1000)
return {1, at - now, epoch, redis.call('ZCARD', KEYS[1])}
",
    )
});

/// Ends a hold one window after its call's answer (or drops an unused one at once).
///
/// KEYS: holds. ARGV: member, window µs (0 = the call was never sent).
pub static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local window = tonumber(ARGV[2])
if window == 0 then
  return redis.call('ZREM', KEYS[1], ARGV[1])
end
redis.call('ZADD', KEYS[1], now + window, ARGV[1])
redis.call('PEXPIRE', KEYS[1], math.ceil(window / 1000) + 60000)
return 1
",
    )
});

/// Reads what the shared tier holds for some accounts, with each account's version.
///
/// KEYS: per account, its values hash then its version key. ARGV: per account, its tag count
/// then its tags. Returns per account `{version, field, remaining ms, value, ...}` for the
/// fresh fields it has; a value is `=` + raw JSON, or `-` for a tag cached as unset.
/// Stored fields are `expiry ms` + `|` + value.
pub static CACHE_GET: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {}
local a = 1
local i = 1
while i <= #ARGV do
  local n = tonumber(ARGV[i])
  local row = {redis.call('GET', KEYS[2 * a]) or '0'}
  if n > 0 then
    local fields = {}
    for j = 1, n do fields[j] = ARGV[i + j] end
    local values = redis.call('HMGET', KEYS[2 * a - 1], unpack(fields))
    for j = 1, n do
      local v = values[j]
      if v then
        local bar = string.find(v, '|', 1, true)
        local expiry = bar and tonumber(string.sub(v, 1, bar - 1))
        if expiry and expiry > now then
          table.insert(row, fields[j])
          table.insert(row, tostring(expiry - now))
          table.insert(row, string.sub(v, bar + 1))
        end
      end
    end
  end
  out[a] = row
  a = a + 1
  i = i + n + 1
end
return out
",
    )
});

/// Writes fetched values, for each account only while its version is still the one read
/// before the fetch was sent: a fetch older than an invalidation never writes back.
///
/// KEYS: per account, its values hash then its version key. ARGV: TTL ms, then per account:
/// expected version, field count, then (field, value) pairs with values as in
/// [`CACHE_GET`] but without the expiry. Returns per account 1 (written) or 0 (stale).
pub static CACHE_PUT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[1])
local prefix = string.format('%d', now + ttl) .. '|'
local out = {}
local a = 1
local i = 2
while i <= #ARGV do
  local n = tonumber(ARGV[i + 1])
  if (redis.call('GET', KEYS[2 * a]) or '0') == ARGV[i] then
    for j = 0, n - 1 do
      redis.call('HSET', KEYS[2 * a - 1], ARGV[i + 2 + 2 * j], prefix .. ARGV[i + 3 + 2 * j])
    end
    redis.call('PEXPIRE', KEYS[2 * a - 1], ttl)
    out[a] = 1
  else
    out[a] = 0
  end
  a = a + 1
  i = i + 2 + 2 * n
end
return out
",
    )
});

/// Invalidates one account fleet-wide: bumps its version (fencing every fetch sent before),
/// drops its values, and tells every gateway to drop its L1 entry.
///
/// KEYS: values hash, version key. ARGV: channel, account, version lifetime ms.
pub static INVALIDATE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local v = redis.call('INCR', KEYS[2])
redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[3]))
redis.call('DEL', KEYS[1])
redis.call('PUBLISH', ARGV[1], ARGV[2])
return v
",
    )
});

/// Publishes one message (the "flush every L1" order). ARGV: channel, message.
pub static PUBLISH: LazyLock<Script> =
    LazyLock::new(|| Script::new("return redis.call('PUBLISH', ARGV[1], ARGV[2])"));
