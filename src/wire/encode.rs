//! Response encoding: writes Tencent-shaped JSON straight into a byte buffer.
//!
//! The cache-hit path builds every `portrait_get` answer here, so nothing is re-serialised:
//! cached values are raw JSON copied as bytes, and strings are escaped once by serde_json.
//! Field order follows Tencent's own examples.

use std::io::Write as _;
use std::sync::OnceLock;

use super::{Tag, STANDARD_TAGS};
use crate::error::Error;

/// Builds a `portrait_get` answer entry by entry: accounts in request order, tags in `TagList`
/// order. `Fail_Account` is added only when some account failed.
pub(crate) struct ResponseWriter {
    buf: Vec<u8>,
    /// Accounts that failed, already JSON-escaped, for `Fail_Account`.
    failed: Vec<u8>,
    first_account: bool,
    first_tag: bool,
}

impl ResponseWriter {
    /// Starts an answer; `capacity` is a hint for the buffer size in bytes.
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        let mut buf = Vec::with_capacity(capacity);
        buf.extend_from_slice(br#"{"UserProfileItem":["#);
        ResponseWriter {
            buf,
            failed: Vec::new(),
            first_account: true,
            first_tag: true,
        }
    }

    /// Opens a successful account entry; follow with [`tag_value`](Self::tag_value) calls and
    /// [`end_account`](Self::end_account).
    /// Returns where the entry starts (see [`repeat_account`](Self::repeat_account)).
    pub(crate) fn begin_account(&mut self, account: &str) -> usize {
        self.account_separator();
        let start = self.buf.len();
        self.buf.extend_from_slice(br#"{"To_Account":"#);
        write_str(&mut self.buf, account);
        self.buf.extend_from_slice(br#","ProfileItem":["#);
        self.first_tag = true;
        start
    }

    /// Adds one `{Tag, Value}` pair to the open account entry; `value` is raw JSON text.
    pub(crate) fn tag_value(&mut self, tag: &Tag, value: &str) {
        let buf = &mut self.buf;
        buf.reserve(value.len() + 64);
        if !self.first_tag {
            buf.push(b',');
        }
        self.first_tag = false;
        match tag.standard_index() {
            Some(i) => buf.extend_from_slice(standard_tag_prefix(i)),
            None => {
                // Tag names are validated to [A-Za-z0-9_] (wire::Tag::parse): nothing to escape.
                buf.extend_from_slice(br#"{"Tag":""#);
                buf.extend_from_slice(tag.as_str().as_bytes());
                buf.extend_from_slice(br#"","Value":"#);
            }
        }
        buf.extend_from_slice(value.as_bytes());
        buf.push(b'}');
    }

    /// Closes a successful account entry; returns where it ends.
    pub(crate) fn end_account(&mut self) -> usize {
        self.buf
            .extend_from_slice(br#"],"ResultCode":0,"ResultInfo":""}"#);
        self.buf.len()
    }

    /// Writes the entry at `entry` (from [`begin_account`](Self::begin_account) to
    /// [`end_account`](Self::end_account)) again: an account asked for twice is answered alike.
    pub(crate) fn repeat_account(&mut self, entry: std::ops::Range<usize>) {
        self.account_separator();
        self.buf.extend_from_within(entry);
    }

    /// Writes an account entry rendered before (as written from [`begin_account`](Self::begin_account)
    /// to [`end_account`](Self::end_account)); returns where it is.
    pub(crate) fn rendered_account(&mut self, entry: &[u8]) -> std::ops::Range<usize> {
        self.account_separator();
        let start = self.buf.len();
        self.buf.extend_from_slice(entry);
        start..self.buf.len()
    }

    /// The bytes written at `range`, e.g. an account entry to keep rendered.
    pub(crate) fn written(&self, range: std::ops::Range<usize>) -> &[u8] {
        self.buf.get(range).unwrap_or(&[])
    }

    /// Writes a failed account entry (no `ProfileItem`, as Tencent does) and lists the account
    /// in `Fail_Account`.
    pub(crate) fn failed_account(&mut self, account: &str, code: i64, info: &str) {
        self.account_separator();
        self.buf.extend_from_slice(br#"{"To_Account":"#);
        write_str(&mut self.buf, account);
        self.buf.extend_from_slice(br#","ResultCode":"#);
        let _ = write!(self.buf, "{code}");
        self.buf.extend_from_slice(br#","ResultInfo":"#);
        write_str(&mut self.buf, info);
        self.buf.push(b'}');
        if !self.failed.is_empty() {
            self.failed.push(b',');
        }
        write_str(&mut self.failed, account);
    }

    /// Closes the answer with the success envelope.
    pub(crate) fn finish(mut self) -> Vec<u8> {
        self.buf.push(b']');
        if !self.failed.is_empty() {
            self.buf.extend_from_slice(br#","Fail_Account":["#);
            self.buf.extend_from_slice(&self.failed);
            self.buf.push(b']');
        }
        self.buf.extend_from_slice(
            br#","ActionStatus":"OK","ErrorCode":0,"ErrorInfo":"","ErrorDisplay":""}"#,
        );
        self.buf
    }

    fn account_separator(&mut self) {
        if !self.first_account {
            self.buf.push(b',');
        }
        self.first_account = false;
    }
}

/// `{"Tag":"<name>","Value":` of each standard tag, built once: one copy per pair.
fn standard_tag_prefix(index: u8) -> &'static [u8] {
    static PREFIXES: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    let prefixes = PREFIXES.get_or_init(|| {
        STANDARD_TAGS
            .iter()
            .map(|name| format!(r#"{{"Tag":"{name}","Value":"#).into_bytes())
            .collect()
    });
    prefixes.get(usize::from(index)).map_or(&[], Vec::as_slice)
}

/// A whole-request failure body: `{"ActionStatus":"FAIL","ErrorCode":..,"ErrorInfo":..,"ErrorDisplay":..}`.
pub(crate) fn encode_error(code: i64, info: &str, display: &str) -> Vec<u8> {
    let mut buf = Vec::with_capacity(80 + info.len() + display.len());
    buf.extend_from_slice(br#"{"ActionStatus":"FAIL","ErrorCode":"#);
    let _ = write!(buf, "{code}");
    buf.extend_from_slice(br#","ErrorInfo":"#);
    write_str(&mut buf, info);
    buf.extend_from_slice(br#","ErrorDisplay":"#);
    write_str(&mut buf, display);
    buf.push(b'}');
    buf
}

/// The Tencent body an [`Error`] is answered with (HTTP 200 on API paths): an upstream's
/// whole-call failure passes its code and texts through; any other error gets its own code
/// and its message as `ErrorInfo`.
pub(crate) fn error_body(error: &Error) -> Vec<u8> {
    match error {
        Error::UpstreamFailed {
            code,
            info,
            display,
        } => encode_error(*code, info, display),
        other => encode_error(other.code(), &other.to_string(), ""),
    }
}

/// Appends `s` as a quoted JSON string, escaped exactly as serde_json escapes it. Most
/// account ids need no escaping and are copied as they are.
fn write_str(buf: &mut Vec<u8>, s: &str) {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        buf.reserve(s.len() + 2);
        buf.push(b'"');
        buf.extend_from_slice(s.as_bytes());
        buf.push(b'"');
    } else {
        serde_json::to_writer(&mut *buf, s).expect("writing a str to a Vec cannot fail");
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::{error_body, write_str};
    use crate::error::Error;

    fn body_of(error: &Error) -> serde_json::Value {
        serde_json::from_slice(&error_body(error)).expect("valid JSON")
    }

    #[test]
    fn every_error_body_is_a_tencent_failure_with_its_code_and_a_message() {
        let errors = [
            Error::InvalidJson(Arc::from("x")),
            Error::MissingAccounts,
            Error::TooManyAccounts(101),
            Error::UnknownTag(Arc::from("Tag_Profile_IM_Bogus")),
            Error::BodyTooLarge(1024),
            Error::UpstreamConnect(Arc::from("refused")),
            Error::UpstreamTimeout(Duration::from_secs(3)),
            Error::UpstreamStatus(502),
            Error::UpstreamDecode(Arc::from("eof")),
            Error::QueueWaitExceeded(Duration::from_secs(2)),
            Error::ShuttingDown,
            Error::Internal(Arc::from("bug")),
        ];
        for error in errors {
            let body = body_of(&error);
            assert_eq!(body["ActionStatus"], "FAIL", "{error:?}");
            assert_eq!(body["ErrorCode"], error.code(), "{error:?}");
            assert!(
                !body["ErrorInfo"].as_str().unwrap_or_default().is_empty(),
                "{error:?}"
            );
            assert_eq!(body["ErrorDisplay"], "", "{error:?}");
        }
    }

    #[test]
    fn upstream_failures_pass_tencent_texts_through() {
        let body = body_of(&Error::UpstreamFailed {
            code: 40009,
            info: Arc::from("Err_Profile_Tag_Not_Found"),
            display: Arc::from("shown"),
        });
        assert_eq!(body["ErrorCode"], 40009);
        assert_eq!(body["ErrorInfo"], "Err_Profile_Tag_Not_Found");
        assert_eq!(body["ErrorDisplay"], "shown");
    }

    #[test]
    fn queue_deadline_says_so_in_error_info() {
        let body = body_of(&Error::QueueWaitExceeded(Duration::from_millis(2000)));
        let info = body["ErrorInfo"].as_str().unwrap_or_default();
        assert!(info.contains("queue deadline of 2000 ms"), "{body}");
    }

    #[test]
    fn write_str_matches_serde_json_for_plain_and_awkward_strings() {
        for s in [
            "user1",
            "用户😀",
            "a\"b",
            "back\\slash",
            "tab\tnew\nline",
            "\u{1}",
            "",
            "é",
        ] {
            let mut ours = Vec::new();
            write_str(&mut ours, s);
            assert_eq!(ours, serde_json::to_vec(s).expect("serialises"), "{s:?}");
        }
    }
}
