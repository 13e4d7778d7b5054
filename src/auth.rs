//! Authenticator: checks a caller's query string the way Tencent checks it.
//!
//! With `auth.mode = "usersig"` a caller must send Tencent's query parameters: `sdkappid` equal
//! to the configured one, `identifier` one of the app admins, and a `usersig` that verifies
//! (UserSig v2, see usersig.rs). Failures carry Tencent's codes, so callers' existing handling
//! applies. Decoding a UserSig (base64, inflate, HMAC) is the expensive part and depends only on
//! the string and the key, so its verdict is cached per UserSig string; the cheap claim checks
//! (sdkappid, identifier, expiry against the clock) run on every request. The cache is weighed
//! in bytes (`auth.verdict_cache_bytes`) so that no stream of strings can grow it: a UserSig
//! longer than any real one is refused before decoding, a malformed one is never cached (it
//! costs one decode), and a well-formed one with a bad signature is remembered for seconds only.
//! Each worker thread also remembers the last valid verdict it used for a second: a sidecar's
//! callers send the same admin UserSig on every request, and comparing the text with the last
//! one costs less than a cache lookup (a hash of the text, a clock read, read bookkeeping).
//! `mode = "none"` trusts the network and checks nothing.

use std::borrow::Cow;
use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use moka::sync::Cache;
use moka::Expiry;
use percent_encoding::percent_decode_str;

use crate::config::{AuthConfig, AuthMode, SecretKey};
use crate::error::{codes, Error};
use crate::usersig::{self, UserSigError, VerifiedSig};

/// How long a valid verdict stays cached. Expiry is re-checked on every request, so this only
/// bounds memory and how long a rotated key keeps accepting old sigs.
const VERDICT_TTL: Duration = Duration::from_secs(600);

/// How long a well-formed UserSig that failed its signature check stays cached: long enough
/// to spare a retrying client's CPU, short enough that failures cannot pile up.
const FAILED_VERDICT_TTL: Duration = Duration::from_secs(5);

/// Longest UserSig text (as sent, escapes included) that is decoded at all. Real ones are a
/// few hundred bytes (an admin sig with no userbuf is ~200); anything longer answers 70003.
pub(crate) const MAX_USERSIG_BYTES: usize = 2048;

/// What one cached verdict costs besides its key text: moka's entry, the `Arc`s, the claims.
const VERDICT_OVERHEAD_BYTES: usize = 192;

/// A decoded UserSig's claims, or why it failed to decode or verify.
type Verdict = Result<Arc<VerifiedSig>, UserSigError>;

/// A worker thread's last valid verdict, used again within the same second of the clock.
struct LastVerdict {
    /// [`Inner::id`] of the authenticator it came from (tests run several, with other keys).
    authenticator: u64,
    usersig_raw: Arc<str>,
    sig: Arc<VerifiedSig>,
    /// The Unix second it was looked up in.
    second: u64,
}

thread_local! {
    static LAST_VERDICT: RefCell<Option<LastVerdict>> = const { RefCell::new(None) };
}

/// Numbers authenticators, for [`LastVerdict::authenticator`].
static AUTHENTICATORS: AtomicU64 = AtomicU64::new(0);

/// Checks callers' credentials; cheap to clone.
#[derive(Clone)]
pub struct Authenticator(Arc<Inner>);

struct Inner {
    /// Unique in the process.
    id: u64,
    mode: AuthMode,
    sdkappid: u64,
    admins: Vec<String>,
    key: SecretKey,
    /// Shared verdicts: a hit clones an `Arc`, not the identifier string inside.
    verdicts: Cache<Arc<str>, Verdict, foldhash::fast::RandomState>,
}

/// Tencent's query parameters, borrowed from the query string when no escapes were used.
#[derive(Default)]
struct Credentials<'a> {
    sdkappid: Option<Cow<'a, str>>,
    identifier: Option<Cow<'a, str>>,
    /// Still form-urlencoded: verdicts are cached by the text as sent, so a cached one costs no
    /// decoding (the same raw text always decodes to the same UserSig).
    usersig_raw: Option<&'a str>,
}

impl Authenticator {
    /// Builds the checker for `sdkappid` with the app's secret key.
    pub fn new(config: &AuthConfig, sdkappid: u64, key: SecretKey) -> Authenticator {
        let verdicts = Cache::builder()
            .max_capacity(config.verdict_cache_bytes)
            .weigher(verdict_weight)
            .expire_after(VerdictExpiry)
            .build_with_hasher(Default::default());
        Authenticator(Arc::new(Inner {
            id: AUTHENTICATORS.fetch_add(1, Ordering::Relaxed),
            mode: config.mode,
            sdkappid,
            admins: config.admins.clone(),
            key,
            verdicts,
        }))
    }

    /// Checks the request's query string; `Ok` when the caller may proceed.
    pub fn check(&self, query: Option<&str>) -> Result<(), Error> {
        if self.0.mode == AuthMode::None {
            return Ok(());
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.check_at(query.unwrap_or(""), now)
    }

    fn check_at(&self, query: &str, now_unix: u64) -> Result<(), Error> {
        let creds = parse_query(query);
        let sdkappid = creds.sdkappid.ok_or(auth(
            codes::SDKAPPID_MISSING,
            "sdkappid is missing from the URL",
        ))?;
        let sdkappid: u64 = sdkappid
            .parse()
            .map_err(|_| auth(codes::BAD_URL_PARAMETER, "sdkappid is not a number"))?;
        if sdkappid != self.0.sdkappid {
            return Err(auth(70014, "sdkappid is not the one this gateway serves"));
        }
        let identifier = creds.identifier.filter(|id| !id.is_empty()).ok_or(auth(
            codes::BAD_URL_PARAMETER,
            "identifier is missing from the URL",
        ))?;
        if !self.0.admins.iter().any(|a| *a == identifier) {
            return Err(auth(
                codes::ADMIN_REQUIRED,
                "identifier is not an App admin",
            ));
        }
        let usersig_raw = creds
            .usersig_raw
            .filter(|s| !s.is_empty())
            .ok_or(auth(70002, "usersig is missing or empty"))?;
        let checked = match self.check_last_verdict(usersig_raw, sdkappid, &identifier, now_unix) {
            Some(checked) => checked,
            None => self
                .verdict(usersig_raw, now_unix)
                .and_then(|sig| sig.check_claims(sdkappid, &identifier, now_unix)),
        };
        checked.map_err(|e| auth(e.tencent_code(), usersig_reason(e)))
    }

    /// The claims checked against this thread's last valid verdict, if it is for `usersig_raw`
    /// and was looked up in this second.
    fn check_last_verdict(
        &self,
        usersig_raw: &str,
        sdkappid: u64,
        identifier: &str,
        now_unix: u64,
    ) -> Option<Result<(), UserSigError>> {
        LAST_VERDICT.with(|last| {
            let last = last.borrow();
            let last = last.as_ref().filter(|last| {
                last.authenticator == self.0.id
                    && last.second == now_unix
                    && *last.usersig_raw == *usersig_raw
            })?;
            Some(last.sig.check_claims(sdkappid, identifier, now_unix))
        })
    }

    /// The cached decode-and-signature verdict for a UserSig, by its text as sent in the URL.
    /// Only verdicts on well-formed UserSigs are cached (see [`worth_caching`]).
    fn verdict(&self, usersig_raw: &str, now_unix: u64) -> Verdict {
        if usersig_raw.len() > MAX_USERSIG_BYTES {
            return Err(UserSigError::Decode);
        }
        let verdict = match self.0.verdicts.get(usersig_raw) {
            Some(verdict) => verdict,
            None => {
                let usersig = form_component(usersig_raw);
                let verdict =
                    usersig::decode_and_check(&usersig, self.0.key.expose()).map(Arc::new);
                if worth_caching(&verdict) {
                    self.0
                        .verdicts
                        .insert(Arc::from(usersig_raw), verdict.clone());
                }
                verdict
            }
        };
        if let Ok(sig) = &verdict {
            // Once a second per thread: the text is copied rather than shared with the cache.
            let remembered = LastVerdict {
                authenticator: self.0.id,
                usersig_raw: Arc::from(usersig_raw),
                sig: sig.clone(),
                second: now_unix,
            };
            LAST_VERDICT.with(|last| *last.borrow_mut() = Some(remembered));
        }
        verdict
    }

    /// Cached verdicts and their weight in bytes (after pending evictions are applied).
    #[cfg(test)]
    fn cached(&self) -> (u64, u64) {
        self.0.verdicts.run_pending_tasks();
        (
            self.0.verdicts.entry_count(),
            self.0.verdicts.weighted_size(),
        )
    }
}

/// A valid verdict, or a signature that did not match a well-formed document; a UserSig that
/// does not even decode is answered without remembering it.
fn worth_caching(verdict: &Verdict) -> bool {
    !matches!(verdict, Err(UserSigError::Decode | UserSigError::Empty))
}

/// A verdict's cost in bytes: its key text, the identifier it carries, and fixed overhead.
fn verdict_weight(usersig_raw: &Arc<str>, verdict: &Verdict) -> u32 {
    let claims = verdict.as_ref().map_or(0, |sig| sig.identifier.len());
    u32::try_from(usersig_raw.len() + claims + VERDICT_OVERHEAD_BYTES).unwrap_or(u32::MAX)
}

/// Valid verdicts live [`VERDICT_TTL`], failed ones [`FAILED_VERDICT_TTL`].
struct VerdictExpiry;

impl Expiry<Arc<str>, Verdict> for VerdictExpiry {
    fn expire_after_create(
        &self,
        _usersig_raw: &Arc<str>,
        verdict: &Verdict,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        Some(match verdict {
            Ok(_) => VERDICT_TTL,
            Err(_) => FAILED_VERDICT_TTL,
        })
    }
}

fn parse_query(query: &str) -> Credentials<'_> {
    let mut creds = Credentials::default();
    for pair in query_pairs(query) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        // The first occurrence of a parameter wins, as in the sim.
        match form_component(name).as_ref() {
            "sdkappid" if creds.sdkappid.is_none() => creds.sdkappid = Some(form_component(value)),
            "identifier" if creds.identifier.is_none() => {
                creds.identifier = Some(form_component(value));
            }
            "usersig" if creds.usersig_raw.is_none() => creds.usersig_raw = Some(value),
            _ => {}
        }
    }
    creds
}

/// The `&`-separated pairs of a query, found with memchr's SIMD search: this walks the whole
/// ~330-byte query of every request, and `str::split` showed at 1.4 % of CPU in perf.
fn query_pairs(query: &str) -> impl Iterator<Item = &str> {
    let mut start = 0;
    memchr::memchr_iter(b'&', query.as_bytes())
        .chain(std::iter::once(query.len()))
        .map(move |end| {
            // `&` is ASCII, so both ends are character boundaries.
            let pair = &query[start..end];
            start = end + 1;
            pair
        })
}

/// One name or value of an `application/x-www-form-urlencoded` query: `+` is a space and
/// `%XX` a byte (invalid UTF-8 replaced), as `form_urlencoded::parse` decodes it. Borrowed, with
/// no scan beyond finding neither, in the usual case: Tencent's UserSig alphabet needs no
/// escapes, and this runs on every request.
fn form_component(raw: &str) -> Cow<'_, str> {
    if !raw.bytes().any(|b| b == b'%' || b == b'+') {
        return Cow::Borrowed(raw);
    }
    let spaced = raw.replace('+', " ");
    Cow::Owned(percent_decode_str(&spaced).decode_utf8_lossy().into_owned())
}

fn auth(code: i64, reason: &'static str) -> Error {
    Error::Auth { code, reason }
}

fn usersig_reason(e: UserSigError) -> &'static str {
    match e {
        UserSigError::Empty => "usersig is missing or empty",
        UserSigError::Decode => "usersig cannot be decoded",
        UserSigError::BadSignature => "usersig signature check failed",
        UserSigError::Expired => "usersig has expired",
        UserSigError::IdentifierMismatch => "identifier differs from the one inside the usersig",
        UserSigError::SdkAppIdMismatch => "sdkappid differs from the one inside the usersig",
    }
}

#[cfg(test)]
mod tests;
