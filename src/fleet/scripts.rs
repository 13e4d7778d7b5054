//! The Lua scripts the fleet runs inside Redis, so that each decision is atomic and read
//! against Redis's own clock (`TIME`): gateways' clocks never meet.
//!
//! Times inside the scripts are microseconds since the Unix epoch on Redis's clock. Every key
//! a script touches is passed in `KEYS`.

use std::sync::LazyLock;

use redis::Script;

/// Lua shared by the budget scripts: `paced(key, limit, now)` is the fleet's limit lowered by
/// the shared pace (a 60007 anywhere halves it; it recovers by a tenth of the limit a second).
/// The pace key holds `rate in milli-calls/s|since µs`.
const PACED: &str = r"
local function paced(key, limit, now)
  local pace = redis.call('GET', key)
  if not pace then return limit end
  local bar = string.find(pace, '|', 1, true)
  local rate = tonumber(string.sub(pace, 1, bar - 1)) / 1000
  local since = tonumber(string.sub(pace, bar + 1))
  rate = rate + math.max(0, now - since) / 1000000 * limit / 10
  return math.max(1, math.min(limit, math.floor(rate)))
end
";

/// Renews one gateway's membership and its share of every budget, on Redis's clock.
///
/// Each live gateway has, per API, a *usable* share (calls per window it may grant itself with
/// no Redis round trip, and spends alone while cut off from Redis) and a *booked* share (its
/// usable share plus the growth it is waiting for). The pool that gateways take holds from one
/// call at a time is what is not booked: `paced limit - Σ booked`. The invariant, kept by
/// every script: `Σ usable + live pool holds <= limit`, so a gateway cut off from Redis keeps
/// spending a share nobody else can take, until its lease ends (its shares are dropped one window later).
///
/// A share grows only into room that is free now (not used by another share nor by a pool
/// hold), up to the fair share `paced limit / max(live gateways, fallback_instances)`; the
/// growth it waits for is booked, which closes the pool to it. It shrinks at once to what the
/// gateway asks (which has already stopped using the rest). For one lease after Redis lost its
/// state (a new epoch), each gateway's claim of the share it was spending is taken as it is and
/// nothing grows: shares granted before cannot be seen, so none is handed out twice.
///
/// KEYS: members (sorted set: gateway -> lease end), epoch; then per API: usable (hash),
/// booked (hash), pool holds, Σ booked, pace.
/// ARGV: gateway, lease µs, fallback_instances, heartbeat µs, leaving (1/0), the primary's
/// address when it can move (Sentinel; else empty), window µs; then per API: limit, wanted
/// share, claimed share. A gateway whose lease ended keeps its shares booked for one more
/// window: the calls it granted itself just before its lease ended count in every sliding
/// second up to a window later (a graceful leave has waited that window already). The epoch is `start µs@primary`: a heartbeat naming another primary (a
/// failover, whose new primary may hold an old copy of the state) starts a new epoch.
///
/// Returns `{epoch, {live gateways, learning (1/0), silent gateways, gateways this call dropped
/// because their lease ran out (each expiry is seen by exactly one heartbeat), then per API:
/// usable, fair, paced limit, Σ booked, booked for silent gateways}}`.
pub static HEARTBEAT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{PACED}{}",
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local me = ARGV[1]
local lease = tonumber(ARGV[2])
local floor_n = tonumber(ARGV[3])
local heartbeat = tonumber(ARGV[4])
local leaving = ARGV[5] == '1'
local primary = ARGV[6]
local window = tonumber(ARGV[7])
local keep_ms = math.ceil(lease / 1000) * 3
local epoch = redis.call('GET', KEYS[2])
if not epoch or (primary ~= '' and string.match(epoch, '@(.*)$') ~= primary) then
  epoch = string.format('%d', now) .. '@' .. primary
  redis.call('SET', KEYS[2], epoch)
end
local learning = now < tonumber(string.match(epoch, '^(%d+)')) + lease
local gone = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - window)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local expired = #gone
if leaving then
  redis.call('ZREM', KEYS[1], me)
  table.insert(gone, me)
else
  redis.call('ZADD', KEYS[1], now + lease, me)
  redis.call('PEXPIRE', KEYS[1], keep_ms)
end
local n = redis.call('ZCARD', KEYS[1])
local silent = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now + lease - 3 * heartbeat)
local out = {n, learning and 1 or 0, #silent, expired}
local apis = (#KEYS - 2) / 5
for i = 0, apis - 1 do
  local usable_k, booked_k, holds_k = KEYS[3 + 5 * i], KEYS[4 + 5 * i], KEYS[5 + 5 * i]
  local reserved_k, pace_k = KEYS[6 + 5 * i], KEYS[7 + 5 * i]
  local limit = tonumber(ARGV[8 + 3 * i])
  local want = tonumber(ARGV[9 + 3 * i])
  local claim = tonumber(ARGV[10 + 3 * i])
  for _, g in ipairs(gone) do
    redis.call('HDEL', usable_k, g)
    redis.call('HDEL', booked_k, g)
  end
  local eff = paced(pace_k, limit, now)
  local fair = math.floor(eff / math.max(n, floor_n))
  local others, others_used = 0, 0
  local all = redis.call('HGETALL', booked_k)
  for j = 1, #all, 2 do
    if all[j] ~= me then others = others + tonumber(all[j + 1]) end
  end
  all = redis.call('HGETALL', usable_k)
  for j = 1, #all, 2 do
    if all[j] ~= me then others_used = others_used + tonumber(all[j + 1]) end
  end
  redis.call('ZREMRANGEBYSCORE', holds_k, '-inf', now)
  local pool = redis.call('ZCARD', holds_k)
  local used, booked = 0, 0
  if not leaving then
    local had = redis.call('HGET', usable_k, me)
    if had then
      used = tonumber(had)
    elseif learning then
      used = claim
    end
    if want <= used then
      used = want
      booked = want
    elseif learning then
      booked = used
    else
      local target = math.min(want, fair)
      local free = eff - others_used - pool - used
      used = used + math.max(0, math.min(target - used, free))
      booked = math.max(used, target)
    end
    redis.call('HSET', usable_k, me, used)
    redis.call('HSET', booked_k, me, booked)
    redis.call('PEXPIRE', usable_k, keep_ms)
    redis.call('PEXPIRE', booked_k, keep_ms)
  end
  redis.call('SET', reserved_k, others + booked, 'PX', keep_ms)
  local for_silent = 0
  if #silent > 0 then
    local shares = redis.call('HMGET', booked_k, unpack(silent))
    for _, v in ipairs(shares) do for_silent = for_silent + (tonumber(v) or 0) end
  end
  table.insert(out, used)
  table.insert(out, fair)
  table.insert(out, eff)
  table.insert(out, others + booked)
  table.insert(out, for_silent)
end
return {epoch, out}
",
    ))
});

/// Takes a hold from the fleet's pool (what no gateway has booked as its share) for one call.
///
/// Each hold is kept in a sorted set until one window after its call's answer (first expiry:
/// grant + hold lease, longer than any call), so no sliding second of arrivals can see more
/// calls than holds. Grants are spaced `1 s / limit` apart on Redis's clock (no burst) and
/// handed out as reservations in arrival order. None while Redis's state is younger than one
/// lease (shares granted before it was lost may still be spent).
///
/// KEYS: holds, next-permit instant, epoch, Σ booked, pace.
/// ARGV: limit, interval µs, hold lease µs, member, the epoch the gateway knows, lease µs.
///
/// Returns `{status, µs}`: 1 = granted, send after µs; 0 = no room, ask again after µs;
/// 2 = the epoch differs (Redis lost its state): renew the membership first.
pub static ACQUIRE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{PACED}{}",
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local epoch = redis.call('GET', KEYS[3])
if not epoch or epoch ~= ARGV[5] then
  return {2, 0}
end
local learned = tonumber(string.match(epoch, '^(%d+)')) + tonumber(ARGV[6])
if now < learned then
  return {0, learned - now}
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local cap = paced(KEYS[5], tonumber(ARGV[1]), now) - tonumber(redis.call('GET', KEYS[4]) or '0')
if redis.call('ZCARD', KEYS[1]) >= cap then
  local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  local wait = 100000
  if first[2] then wait = tonumber(first[2]) - now end
  return {0, math.max(wait, 500)}
end
local at = math.max(now, tonumber(redis.call('GET', KEYS[2]) or '0'))
local interval = tonumber(ARGV[2])
local lease = tonumber(ARGV[3])
redis.call('SET', KEYS[2], string.format('%d', at + interval), 'PX', math.ceil((at - now + interval) / 1000) + 1000)
redis.call('ZADD', KEYS[1], at + lease, ARGV[4])
redis.call('PEXPIRE', KEYS[1], math.ceil((at - now + lease) / 1000) + 1000)
return {1, at - now}
",
    ))
});

/// Halves the fleet's pace of one API (a 60007 or an over-limit alert seen by any gateway),
/// once per window: the 60007s of one window (from one gateway or several) are one signal
/// that the app was over its limit in that window, not one each.
///
/// KEYS: pace. ARGV: limit, window µs. Returns the new pace in milli-calls per second.
pub static PACE_DOWN: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{PACED}{}",
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local limit = tonumber(ARGV[1])
local last = redis.call('GET', KEYS[1])
if last then
  local bar = string.find(last, '|', 1, true)
  if now - tonumber(string.sub(last, bar + 1)) < tonumber(ARGV[2]) then
    return tonumber(string.sub(last, 1, bar - 1))
  end
end
local rate = math.max(1000, math.floor(paced(KEYS[1], limit, now) * 1000 / 2))
redis.call('SET', KEYS[1], string.format('%d|%d', rate, now), 'PX', 60000)
return rate
",
    ))
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

/// Reads what the shared tier holds for some accounts, with each account's version, and
/// claims the accounts it lacks tags of for the caller (fleet-wide single flight).
///
/// KEYS: per account, its values hash, its version key and its claim key. ARGV: claimer
/// token (empty: claim nothing), claim lifetime ms, then per account its tag count and tags.
/// Returns per account `{version, claim, field, remaining ms, value, ...}` for the fresh
/// fields it has; a value is `=` + raw JSON, or `-` for a tag cached as unset; `claim` is `-`
/// (nothing claimed), `m` (the caller's: made now or already its own) or the ms a peer's claim
/// has left. Stored fields are `expiry ms` + `|` + value.
pub static CACHE_GET: LazyLock<Script> = LazyLock::new(|| {
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
pub static CACHE_PUT: LazyLock<Script> = LazyLock::new(|| {
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
pub static RELEASE_CLAIMS: LazyLock<Script> = LazyLock::new(|| {
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
