//! The shared tier's scripts: reads that claim what they lack (CACHE_GET), writes that end
//! the claims and wake the waiters (CACHE_PUT, RELEASE_CLAIMS), and invalidation (INVALIDATE,
//! PUBLISH).

use std::sync::LazyLock;

use redis::Script;

/// Reads what the shared tier holds for some accounts, with each account's version, and
/// claims the accounts it lacks tags of for the caller (fleet-wide single flight).
///
/// KEYS: per account, its values hash, its version key and its claim key. ARGV: claimer
/// token (empty: claim nothing), claim lifetime ms, then per account its tag count and tags.
/// Returns per account `{version, claim, field, remaining ms, value, ...}` for the fresh
/// fields it has; a value is `=` + raw JSON, or `-` for a tag cached as unset; `claim` is `-`
/// (nothing claimed), `m` (the caller's: made now or already its own) or the ms a peer's claim
/// has left. Stored fields are `expiry ms` + `|` + value.
pub(crate) static CACHE_GET: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local me = ARGV[1]
local claim_ms = tonumber(ARGV[2])
local out = {}
local a = 1
local i = 3
while i <= #ARGV do
  local n = tonumber(ARGV[i])
  local row = {redis.call('GET', KEYS[3 * a - 1]) or '0', '-'}
  local fresh = 0
  if n > 0 then
    local fields = {}
    for j = 1, n do fields[j] = ARGV[i + j] end
    local values = redis.call('HMGET', KEYS[3 * a - 2], unpack(fields))
    for j = 1, n do
      local v = values[j]
      if v then
        local bar = string.find(v, '|', 1, true)
        local expiry = bar and tonumber(string.sub(v, 1, bar - 1))
        if expiry and expiry > now then
          table.insert(row, fields[j])
          table.insert(row, tostring(expiry - now))
          table.insert(row, string.sub(v, bar + 1))
          fresh = fresh + 1
        end
      end
    end
  end
  if me ~= '' and fresh < n then
    if redis.call('SET', KEYS[3 * a], me, 'NX', 'PX', claim_ms) then
      row[2] = 'm'
    elseif redis.call('GET', KEYS[3 * a]) == me then
      row[2] = 'm'
    else
      row[2] = tostring(math.max(redis.call('PTTL', KEYS[3 * a]), 0))
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
/// before the fetch was sent: a fetch older than an invalidation never writes back. Ends the
/// writer's claims on the accounts and publishes them (a JSON array) on the filled channel,
/// so peers waiting on those claims look again.
///
/// KEYS: per account, its values hash, its version key and its claim key. ARGV: TTL ms,
/// claimer token, filled channel, then per account: the account, its expected version, field
/// count, then (field, value) pairs with values as in [`CACHE_GET`] but without the expiry.
/// Returns per account 1 (written) or 0 (stale).
pub(crate) static CACHE_PUT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[1])
local me = ARGV[2]
local prefix = string.format('%d', now + ttl) .. '|'
local out = {}
local filled = {}
local a = 1
local i = 4
while i <= #ARGV do
  local n = tonumber(ARGV[i + 2])
  if (redis.call('GET', KEYS[3 * a - 1]) or '0') == ARGV[i + 1] then
    for j = 0, n - 1 do
      redis.call('HSET', KEYS[3 * a - 2], ARGV[i + 3 + 2 * j], prefix .. ARGV[i + 4 + 2 * j])
    end
    redis.call('PEXPIRE', KEYS[3 * a - 2], ttl)
    out[a] = 1
  else
    out[a] = 0
  end
  if redis.call('GET', KEYS[3 * a]) == me then
    redis.call('DEL', KEYS[3 * a])
    table.insert(filled, ARGV[i])
  end
  a = a + 1
  i = i + 3 + 2 * n
end
if #filled > 0 then
  redis.call('PUBLISH', ARGV[3], cjson.encode(filled))
end
return out
",
    )
});

/// Ends the caller's claims on some accounts without values (its fetch failed) and publishes
/// them on the filled channel: the peers waiting on them fetch for themselves.
///
/// KEYS: the accounts' claim keys. ARGV: claimer token, filled channel, then the accounts.
/// Returns how many claims were the caller's.
pub(crate) static RELEASE_CLAIMS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local released = {}
for k = 1, #KEYS do
  if redis.call('GET', KEYS[k]) == ARGV[1] then
    redis.call('DEL', KEYS[k])
    table.insert(released, ARGV[k + 2])
  end
end
if #released > 0 then
  redis.call('PUBLISH', ARGV[2], cjson.encode(released))
end
return #released
",
    )
});

/// Invalidates one account fleet-wide: bumps its version (fencing every fetch sent before),
/// drops its values, and tells every gateway to drop its L1 entry.
///
/// KEYS: values hash, version key. ARGV: channel, account, version lifetime ms.
pub(crate) static INVALIDATE: LazyLock<Script> = LazyLock::new(|| {
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
pub(crate) static PUBLISH: LazyLock<Script> =
    LazyLock::new(|| Script::new("return redis.call('PUBLISH', ARGV[1], ARGV[2])"));
