//! The budget's scripts: membership and shares (HEARTBEAT), the pool (ACQUIRE, RELEASE), the
//! shared pace (PACE_DOWN), and the probe of the node holding the fleet's keys.

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
/// ARGV: gateway, lease µs, fallback_instances, heartbeat µs, leaving (1/0), window µs; then
/// per API: limit, wanted share, claimed share. A gateway whose lease ended keeps its shares booked for one more
/// window: the calls it granted itself just before its lease ended count in every sliding
/// second up to a window later (a graceful leave has waited that window already).
///
/// The epoch is `start µs@run_id` of the server holding the state: state found under another
/// server's run id (a replica promoted by Sentinel or Cluster, whose copy may be behind; a
/// restart that reloaded a snapshot) or none at all starts a new epoch, whatever the shape.
///
/// Returns `{epoch, {live gateways, learning (1/0), silent gateways, gateways this call dropped
/// because their lease ran out (each expiry is seen by exactly one heartbeat), then per API:
/// usable, fair, paced limit, Σ booked, booked for silent gateways}}`.
pub(crate) static HEARTBEAT: LazyLock<Script> = LazyLock::new(|| {
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
local window = tonumber(ARGV[6])
local server = string.match(redis.call('INFO', 'server'), 'run_id:(%w+)') or ''
local keep_ms = math.ceil(lease / 1000) * 3
local epoch = redis.call('GET', KEYS[2])
if not epoch or string.match(epoch, '@(.*)$') ~= server then
  epoch = string.format('%d', now) .. '@' .. server
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
  local limit = tonumber(ARGV[7 + 3 * i])
  local want = tonumber(ARGV[8 + 3 * i])
  local claim = tonumber(ARGV[9 + 3 * i])
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
pub(crate) static ACQUIRE: LazyLock<Script> = LazyLock::new(|| {
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

/// Answers from the primary holding the fleet's keys (in a Cluster, the node serving the
/// fleet's one slot, which a plain PING on another node would not show). KEYS: any fleet key.
pub(crate) static PROBE: LazyLock<Script> =
    LazyLock::new(|| Script::new("return redis.call('EXISTS', KEYS[1])"));

/// Halves the fleet's pace of one API (a 60007 or an over-limit alert seen by any gateway),
/// once per window: the 60007s of one window (from one gateway or several) are one signal
/// that the app was over its limit in that window, not one each.
///
/// KEYS: pace. ARGV: limit, window µs. Returns the new pace in milli-calls per second.
pub(crate) static PACE_DOWN: LazyLock<Script> = LazyLock::new(|| {
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
pub(crate) static RELEASE: LazyLock<Script> = LazyLock::new(|| {
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
