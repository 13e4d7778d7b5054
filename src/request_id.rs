//! Request ids: the caller's `X-Request-Id` when it is sane (1 to 128 visible ASCII characters),
//! else a new random one. An id is kept as the header value it is returned in (the caller's is
//! shared with the request's head, not copied), and carried in [`CURRENT`] while its request is
//! served, so that the batch worker can list the ids each upstream call serves.

use std::fmt;

use http::header::{HeaderMap, HeaderValue};

/// The request id header, read from callers and returned to them.
pub(crate) const HEADER: &str = "x-request-id";
/// The longest caller-chosen request id kept; longer ones are replaced.
const MAX_LEN: usize = 128;

tokio::task_local! {
    /// The id of the API request this task serves, set by `routes`.
    pub static CURRENT: RequestId;
}

/// A request id: 1 to 128 visible ASCII characters.
#[derive(Clone, Debug)]
pub(crate) struct RequestId(HeaderValue);

impl RequestId {
    /// The caller's id in `headers` when it is sane, else a new one (16 hex digits).
    pub(crate) fn of(headers: &HeaderMap) -> RequestId {
        match headers.get(HEADER).filter(|v| is_sane(v.as_bytes())) {
            Some(given) => RequestId(given.clone()),
            None => RequestId::random(),
        }
    }

    fn random() -> RequestId {
        let mut hex = [b'0'; 16];
        // Eight bytes always fill the sixteen digits.
        let _ = hex::encode_to_slice(rand::random::<u64>().to_be_bytes(), &mut hex);
        let value = HeaderValue::from_bytes(&hex);
        RequestId(value.unwrap_or_else(|_| HeaderValue::from_static("0000000000000000")))
    }

    pub(crate) fn as_str(&self) -> &str {
        // Only visible ASCII gets in (`is_sane`, hex digits).
        self.0.to_str().unwrap_or_default()
    }

    /// The id as the response's header value.
    pub(crate) fn header_value(&self) -> HeaderValue {
        self.0.clone()
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn is_sane(id: &[u8]) -> bool {
    !id.is_empty() && id.len() <= MAX_LEN && id.iter().all(|b| b.is_ascii_graphic())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(given: &[u8]) -> RequestId {
        let mut headers = HeaderMap::new();
        headers.insert(
            HEADER,
            HeaderValue::from_bytes(given).expect("header value"),
        );
        RequestId::of(&headers)
    }

    #[test]
    fn a_sane_caller_id_is_kept_as_sent() {
        assert_eq!(of(b"abc-123").as_str(), "abc-123");
        let longest = "x".repeat(MAX_LEN);
        assert_eq!(of(longest.as_bytes()).as_str(), longest);
    }

    #[test]
    fn any_other_is_replaced_by_sixteen_hex_digits() {
        let too_long = "x".repeat(MAX_LEN + 1);
        for given in [b"".as_slice(), b"a b", b"caf\xc3\xa9", too_long.as_bytes()] {
            let id = of(given);
            assert_eq!(id.as_str().len(), 16, "{given:?}");
            assert!(id.as_str().bytes().all(|b| b.is_ascii_hexdigit()));
        }
        assert_ne!(
            RequestId::of(&HeaderMap::new()).as_str(),
            RequestId::of(&HeaderMap::new()).as_str()
        );
    }
}
