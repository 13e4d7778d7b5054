//! The list reads' shared-tier scripts: reads that claim what they lack (LIST_GET), writes
//! that end the claims and wake the waiters (LIST_PUT), and invalidation (LIST_INVALIDATE).
//!
//! Layout: per (API, id) one hash `…:l:<api>:<id>`; per set of options (a hash of their
//! canonical JSON) and generation of the API, a value field `v:<gen>:<options>` (`expiry ms|`
//! then `<answer array>|<entry JSON>`, or `-` for an id the upstream left out) and a claim
//! field `c:<gen>:<options>` (`expiry ms|token`). The API's generation (`…:lgen:<api>`) names
//! every id at once: bumping it leaves every older field unread (a destroyed group's members).
//! Expiries are on Redis's clock.

use std::sync::LazyLock;

use redis::Script;

/// What both scripts start with: Redis's clock in ms, the API's generation, the caller's token
/// (ARGV[1]) and the value and claim fields of the options (ARGV[2]) in that generation.
macro_rules! prelude {
    () => {
        "
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local gen = redis.call('GET', KEYS[1]) or '0'
local me = ARGV[1]
local vf = 'v:' .. gen .. ':' .. ARGV[2]
local cf = 'c:' .. gen .. ':' .. ARGV[2]
"
    };
}

/// Reads a list read's ids, claiming for the caller each it has no entry for unless a peer's
/// live claim holds it.
///
/// KEYS: the API's generation key, then per id its hash. ARGV: claimer token, options hash,
/// claim lifetime ms, read (`1`: return entries; `0`: claims only). Returns per id `=` + the
/// stored value, `m` (the caller's claim) or the ms a peer's claim has left.
pub(crate) static LIST_GET: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        prelude!(),
        r"local claim_ms = tonumber(ARGV[3])
local function live(stored)
  if not stored then return nil end
  local bar = string.find(stored, '|', 1, true)
  local expiry = bar and tonumber(string.sub(stored, 1, bar - 1))
  if expiry and expiry > now then return expiry - now, string.sub(stored, bar + 1) end
  return nil
end
local out = {}
for k = 2, #KEYS do
  local got = redis.call('HMGET', KEYS[k], vf, cf)
  local row = nil
  if ARGV[4] == '1' then
    local left, value = live(got[1])
    if left then row = '=' .. value end
  end
  if not row then
    local left, holder = live(got[2])
    if left and holder ~= me then
      row = tostring(left)
    else
      redis.call('HSET', KEYS[k], cf, string.format('%d', now + claim_ms) .. '|' .. me)
      if redis.call('PTTL', KEYS[k]) < claim_ms then redis.call('PEXPIRE', KEYS[k], claim_ms) end
      row = 'm'
    end
  end
  out[k - 1] = row
end
return out
"
    ))
});

/// Writes what the caller's fetch brought for the ids it claims, ends those claims, and
/// publishes every id's fill name on the filled channel (a JSON array), so peers waiting on
/// them look again: a fetch whose claim an invalidation dropped writes nothing but still
/// wakes them.
///
/// KEYS: the API's generation key, then per id its hash. ARGV: claimer token, options hash,
/// filled channel, entry lifetime ms, absence lifetime ms, then per id its fill name and its
/// value (as stored, without the expiry; `-` absent; empty: nothing, only the claim ends).
/// Returns how many values were written.
pub(crate) static LIST_PUT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        prelude!(),
        r"local names = {}
local written = 0
for k = 2, #KEYS do
  local name = ARGV[6 + 2 * (k - 2)]
  local value = ARGV[7 + 2 * (k - 2)]
  local claim = redis.call('HGET', KEYS[k], cf)
  local bar = claim and string.find(claim, '|', 1, true)
  if bar and string.sub(claim, bar + 1) == me then
    redis.call('HDEL', KEYS[k], cf)
    if value ~= '' then
      local keep = tonumber(value == '-' and ARGV[5] or ARGV[4])
      -- Bounded: fields of older generations and other options never pile up past this.
      if redis.call('HLEN', KEYS[k]) >= 64 then redis.call('DEL', KEYS[k]) end
      redis.call('HSET', KEYS[k], vf, string.format('%d', now + keep) .. '|' .. value)
      if redis.call('PTTL', KEYS[k]) < keep then redis.call('PEXPIRE', KEYS[k], keep) end
      written = written + 1
    end
  end
  table.insert(names, name)
end
if #names > 0 then
  redis.call('PUBLISH', ARGV[3], cjson.encode(names))
end
return written
"
    ))
});

/// Invalidates one id of a list read (drops its hash: every options' entry and claim) or,
/// given the API's generation key, every id of it (bumps the generation); then tells every
/// gateway to drop its L1 entries.
///
/// KEYS: the id's hash, or the generation key. ARGV: `id` or `api`, channel, message.
pub(crate) static LIST_INVALIDATE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if ARGV[1] == 'api' then
  redis.call('INCR', KEYS[1])
else
  redis.call('DEL', KEYS[1])
end
return redis.call('PUBLISH', ARGV[2], ARGV[3])
",
    )
});
