//! UserSig v2 (TLSSigAPIv2): signing and verification, as pure functions.
//!
//! Owns the wire format of a UserSig (Tencent base64 variant over a zlib stream over a JSON document),
//! the string to sign, and the HMAC-SHA256 check. Does not own the clock, the SecretKey, caching of
//! verified sigs, or turning a [`UserSigError`] into a response: callers pass `now` in, and map errors
//! through [`UserSigError::tencent_code`]. The upstream client calls [`sign`] to authenticate to
//! Tencent; the admin-auth path calls [`decode_and_check`] (cacheable per usersig string) and then
//! [`VerifiedSig::check_claims`] per request, or [`verify`] for both at once.
//!
//! Format (Tencent's UserSig v2; vectors in tests/data/usersig-vectors.json): the string to sign is the lines
//! `TLS.identifier:{id}`, `TLS.sdkappid:{n}`, `TLS.time:{n}`, `TLS.expire:{n}` and, with a userbuf,
//! `TLS.userbuf:{base64}`, each ending in `\n`. `TLS.sig` is the standard base64 of its HMAC-SHA256
//! under the key's UTF-8 bytes. Different generators emit different bytes for the same inputs, so
//! verification rebuilds the string to sign from the decoded values and never compares usersig strings.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use flate2::write::ZlibEncoder;
use flate2::{Compression, Decompress, FlushDecompress, Status};
use hmac::{Hmac, Mac};
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::fmt::{self, Write as _};

#[cfg(test)]
mod tests;

/// Largest inflated JSON document accepted. Real ones are ~200 bytes; this bounds zip bombs.
const MAX_INFLATED_BYTES: usize = 64 * 1024;

/// First output allocation when inflating; enough for any usersig a real generator emits.
const INITIAL_INFLATE_BYTES: usize = 512;

type HmacSha256 = Hmac<Sha256>;

/// Signs a UserSig for `identifier`, valid from `now_unix` for `expire_seconds`.
pub fn sign(
    sdkappid: u64,
    key: &str,
    identifier: &str,
    now_unix: u64,
    expire_seconds: u64,
) -> String {
    sign_with_userbuf(sdkappid, key, identifier, now_unix, expire_seconds, None)
}

/// Like [`sign`], with an optional userbuf (TRTC PrivateMapKey; REST never needs one).
///
/// `Some(&[])` is kept as an empty `TLS.userbuf`, as the reference libraries do.
pub fn sign_with_userbuf(
    sdkappid: u64,
    key: &str,
    identifier: &str,
    now_unix: u64,
    expire_seconds: u64,
    userbuf: Option<&[u8]>,
) -> String {
    let userbuf_b64 = userbuf.map(|buf| STANDARD.encode(buf));
    let userbuf_b64 = userbuf_b64.as_deref();
    let text = string_to_sign(identifier, sdkappid, now_unix, expire_seconds, userbuf_b64);
    let sig = STANDARD.encode(hmac_for(key, &text).finalize().into_bytes());
    let doc = SigDocOut {
        ver: "2.0",
        identifier,
        sdkappid,
        expire: expire_seconds,
        time: now_unix,
        userbuf: userbuf_b64,
        sig: &sig,
    };
    let mut zlib = ZlibEncoder::new(Vec::with_capacity(256), Compression::default());
    serde_json::to_writer(&mut zlib, &doc)
        .expect("plain strings and integers serialize into a Vec");
    let compressed = zlib.finish().expect("compressing into a Vec cannot fail");
    encode_outer(&compressed)
}

/// Decodes `usersig` and checks its HMAC under `key`; see [`VerifiedSig::check_claims`] for the rest.
///
/// Depends only on the string and the key, so the result may be cached per usersig string.
pub fn decode_and_check(usersig: &str, key: &str) -> Result<VerifiedSig, UserSigError> {
    if usersig.is_empty() {
        return Err(UserSigError::Empty);
    }
    let json = decode_outer(usersig).ok_or(UserSigError::Decode)?;
    // A derived Deserialize also takes a JSON array in field order; only an object is a usersig.
    if json.trim_ascii_start().first() != Some(&b'{') {
        return Err(UserSigError::Decode);
    }
    let doc: SigDocIn = serde_json::from_slice(&json).map_err(|_| UserSigError::Decode)?;
    // A userbuf that is not base64 could hold a `\n` and make the string to sign ambiguous.
    if let Some(userbuf) = &doc.userbuf {
        STANDARD.decode(userbuf).map_err(|_| UserSigError::Decode)?;
    }
    let (sdkappid, time, expire) = (doc.sdkappid.0, doc.time.0, doc.expire.0);
    let text = string_to_sign(
        &doc.identifier,
        sdkappid,
        time,
        expire,
        doc.userbuf.as_deref(),
    );
    // The reference verifiers compare base64 strings, so a TLS.sig that is not even base64 is a
    // mismatch (70009) there too.
    let claimed = STANDARD
        .decode(&doc.sig)
        .map_err(|_| UserSigError::BadSignature)?;
    hmac_for(key, &text)
        .verify_slice(&claimed)
        .map_err(|_| UserSigError::BadSignature)?;
    Ok(VerifiedSig {
        identifier: doc.identifier,
        sdkappid,
        time,
        expire,
        has_userbuf: doc.userbuf.is_some(),
    })
}

/// [`decode_and_check`], then [`VerifiedSig::check_claims`].
///
/// A usersig failing both steps reports the signature error, unlike the reference verifiers,
/// which check claims first.
pub fn verify(
    usersig: &str,
    key: &str,
    sdkappid: u64,
    identifier: &str,
    now_unix: u64,
) -> Result<VerifiedSig, UserSigError> {
    let verified = decode_and_check(usersig, key)?;
    verified.check_claims(sdkappid, identifier, now_unix)?;
    Ok(verified)
}

/// The string the HMAC covers. `userbuf_b64` is already standard base64, as in `TLS.userbuf`.
pub(crate) fn string_to_sign(
    identifier: &str,
    sdkappid: u64,
    time: u64,
    expire: u64,
    userbuf_b64: Option<&str>,
) -> String {
    let mut text = String::with_capacity(96 + identifier.len() + userbuf_b64.map_or(0, str::len));
    // Writing into a String cannot fail.
    let _ = write!(
        text,
        "TLS.identifier:{identifier}\nTLS.sdkappid:{sdkappid}\nTLS.time:{time}\nTLS.expire:{expire}\n"
    );
    if let Some(userbuf) = userbuf_b64 {
        let _ = writeln!(text, "TLS.userbuf:{userbuf}");
    }
    text
}

fn hmac_for(key: &str, text: &str) -> HmacSha256 {
    let mut mac =
        HmacSha256::new_from_slice(key.as_bytes()).expect("HMAC accepts keys of any length");
    mac.update(text.as_bytes());
    mac
}

/// Standard base64, then `+` -> `*`, `/` -> `-`, `=` -> `_`.
fn encode_outer(bytes: &[u8]) -> String {
    STANDARD
        .encode(bytes)
        .chars()
        .map(|c| match c {
            '+' => '*',
            '/' => '-',
            '=' => '_',
            other => other,
        })
        .collect()
}

/// Undoes [`encode_outer`] and inflates; `None` for anything that is not a complete, bounded stream.
///
/// Standard `+ / =` pass through unchanged, as in the reference verifiers' string replace.
fn decode_outer(usersig: &str) -> Option<Vec<u8>> {
    let standard: Vec<u8> = usersig
        .bytes()
        .map(|b| match b {
            b'*' => b'+',
            b'-' => b'/',
            b'_' => b'=',
            other => other,
        })
        .collect();
    // Padding is required (canonical), as in the reference verifiers: a usersig missing its `_`s
    // is a truncated one.
    let compressed = STANDARD.decode(standard).ok()?;
    inflate_bounded(&compressed)
}

/// Inflates one zlib stream into at most [`MAX_INFLATED_BYTES`].
///
/// Requires the stream's end (and so its Adler-32 trailer): a truncated stream is `None`, not a
/// silently shorter document. Bytes after the stream are ignored, as zlib readers do.
fn inflate_bounded(input: &[u8]) -> Option<Vec<u8>> {
    let mut inflater = Decompress::new(true);
    let mut out = Vec::with_capacity(INITIAL_INFLATE_BYTES);
    loop {
        if out.len() == out.capacity() {
            if out.len() > MAX_INFLATED_BYTES {
                return None;
            }
            // One byte past the limit is enough to tell "too big" from "exactly the limit".
            let target = (out.capacity() * 4).min(MAX_INFLATED_BYTES + 1);
            out.reserve_exact(target - out.len());
        }
        let (in_before, out_before) = (inflater.total_in(), inflater.total_out());
        let rest = input.get(usize::try_from(in_before).ok()?..)?;
        let status = inflater
            .decompress_vec(rest, &mut out, FlushDecompress::None)
            .ok()?;
        if status == Status::StreamEnd {
            return (out.len() <= MAX_INFLATED_BYTES).then_some(out);
        }
        // With room left in `out`, no progress means the input ran out before the stream ended.
        if inflater.total_in() == in_before && inflater.total_out() == out_before {
            return None;
        }
    }
}

// === impl VerifiedSig ===

/// What a decoded, signature-checked UserSig says. Independent of any particular request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedSig {
    /// `TLS.identifier`: the UserID the sig was issued to.
    pub identifier: String,
    /// `TLS.sdkappid`.
    pub sdkappid: u64,
    /// `TLS.time`: issue time, Unix seconds.
    pub time: u64,
    /// `TLS.expire`: lifetime in seconds from `time`.
    pub expire: u64,
    /// Whether `TLS.userbuf` was present. REST sigs carry none; callers may refuse ones that do.
    pub has_userbuf: bool,
}

impl VerifiedSig {
    /// Last Unix second at which the sig is still valid (`time + expire`, saturating).
    pub fn expires_at(&self) -> u64 {
        self.time.saturating_add(self.expire)
    }

    /// Checks the claims against one request, in the reference verifiers' order:
    /// sdkappid (70014), identifier (70013), expiry (70001; valid up to and including [`Self::expires_at`]).
    pub fn check_claims(
        &self,
        sdkappid: u64,
        identifier: &str,
        now_unix: u64,
    ) -> Result<(), UserSigError> {
        if self.sdkappid != sdkappid {
            return Err(UserSigError::SdkAppIdMismatch);
        }
        if self.identifier != identifier {
            return Err(UserSigError::IdentifierMismatch);
        }
        if now_unix > self.expires_at() {
            return Err(UserSigError::Expired);
        }
        Ok(())
    }
}

// === impl UserSigError ===

/// Why a UserSig was refused; each maps to the code Tencent returns for the same fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UserSigError {
    /// No usersig at all (70002).
    #[error("usersig is empty")]
    Empty,
    /// Not base64, not a complete zlib stream within the size bound, or not the expected JSON (70003).
    #[error("usersig cannot be decoded")]
    Decode,
    /// `TLS.sig` is not the HMAC of the decoded values under our key (70009).
    #[error("usersig signature does not match")]
    BadSignature,
    /// `now > TLS.time + TLS.expire` (70001).
    #[error("usersig has expired")]
    Expired,
    /// `TLS.identifier` is not the request's identifier (70013).
    #[error("identifier differs from the one inside the usersig")]
    IdentifierMismatch,
    /// `TLS.sdkappid` is not ours (70014).
    #[error("sdkappid differs from the one inside the usersig")]
    SdkAppIdMismatch,
}

impl UserSigError {
    /// The Tencent `ErrorCode` for this fault.
    pub fn tencent_code(self) -> i64 {
        match self {
            Self::Empty => 70002,
            Self::Decode => 70003,
            Self::BadSignature => 70009,
            Self::Expired => 70001,
            Self::IdentifierMismatch => 70013,
            Self::SdkAppIdMismatch => 70014,
        }
    }
}

// === JSON documents ===

/// The document [`sign_with_userbuf`] writes; field order is the Python library's.
#[derive(Serialize)]
struct SigDocOut<'a> {
    #[serde(rename = "TLS.ver")]
    ver: &'a str,
    #[serde(rename = "TLS.identifier")]
    identifier: &'a str,
    #[serde(rename = "TLS.sdkappid")]
    sdkappid: u64,
    #[serde(rename = "TLS.expire")]
    expire: u64,
    #[serde(rename = "TLS.time")]
    time: u64,
    #[serde(rename = "TLS.userbuf", skip_serializing_if = "Option::is_none")]
    userbuf: Option<&'a str>,
    #[serde(rename = "TLS.sig")]
    sig: &'a str,
}

/// The document [`decode_and_check`] reads. `TLS.ver` and unknown keys are ignored, as the reference
/// verifiers do; duplicate keys are refused by serde.
#[derive(Deserialize)]
struct SigDocIn {
    #[serde(rename = "TLS.identifier")]
    identifier: String,
    #[serde(rename = "TLS.sdkappid")]
    sdkappid: LenientU64,
    #[serde(rename = "TLS.time")]
    time: LenientU64,
    #[serde(rename = "TLS.expire")]
    expire: LenientU64,
    #[serde(rename = "TLS.userbuf", default)]
    userbuf: Option<String>,
    #[serde(rename = "TLS.sig")]
    sig: String,
}

/// A non-negative integer given as a JSON number or as a string of ASCII digits (some generators
/// quote them). Floats, signs and blanks are refused so the value has one decimal spelling.
struct LenientU64(u64);

impl<'de> Deserialize<'de> for LenientU64 {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(LenientU64Visitor)
    }
}

struct LenientU64Visitor;

impl Visitor<'_> for LenientU64Visitor {
    type Value = LenientU64;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a non-negative integer or a string of decimal digits")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<LenientU64, E> {
        Ok(LenientU64(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<LenientU64, E> {
        u64::try_from(v)
            .map(LenientU64)
            .map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &self))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<LenientU64, E> {
        let digits_only = !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit());
        digits_only
            .then(|| v.parse().ok())
            .flatten()
            .map(LenientU64)
            .ok_or_else(|| E::invalid_value(de::Unexpected::Str(v), &self))
    }
}
