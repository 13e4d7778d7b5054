//! Reading a request body within its size limit, draining what is refused so the caller still
//! gets the answer that explains the refusal.

use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderMap};
use http_body_util::BodyExt;

use crate::error::Error;

/// Reads the whole body, refusing more than `limit` bytes. A refused body is still read (and
/// discarded) up to [`DRAIN_LIMIT_BYTES`]: closing a connection with unread bytes in it makes
/// the kernel reset it, and the caller would lose the answer that explains the refusal.
pub(super) async fn read_body<B>(headers: &HeaderMap, body: B, limit: usize) -> Result<Bytes, Error>
where
    B: hyper::body::Body<Data = Bytes> + Send,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > DRAIN_LIMIT_BYTES as u64) {
        return Err(Error::BodyTooLarge(limit));
    }
    let unreadable = || Error::InvalidField(Arc::from("request body could not be read"));
    let mut body = std::pin::pin!(body);
    let mut kept = Kept::Nothing;
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(|_| unreadable())?.into_data() else {
            continue; // trailers
        };
        seen = seen.saturating_add(data.len());
        if seen > DRAIN_LIMIT_BYTES {
            break;
        }
        if seen <= limit {
            kept.push(data);
        }
    }
    if seen > limit {
        return Err(Error::BodyTooLarge(limit));
    }
    Ok(kept.into_bytes())
}

/// The body read so far: one frame is kept as it came (no copy, no allocation: the usual case,
/// a body that arrived with its head), more are joined.
enum Kept {
    Nothing,
    One(Bytes),
    Joined(Vec<u8>),
}

impl Kept {
    fn push(&mut self, data: Bytes) {
        *self = match std::mem::replace(self, Kept::Nothing) {
            Kept::Nothing => Kept::One(data),
            Kept::One(first) => Kept::Joined([&first[..], &data[..]].concat()),
            Kept::Joined(mut joined) => {
                joined.extend_from_slice(&data);
                Kept::Joined(joined)
            }
        };
    }

    fn into_bytes(self) -> Bytes {
        match self {
            Kept::Nothing => Bytes::new(),
            Kept::One(data) => data,
            Kept::Joined(joined) => Bytes::from(joined),
        }
    }
}

/// How much of a refused body is read and discarded before the connection is simply closed.
const DRAIN_LIMIT_BYTES: usize = 16 * 1024 * 1024;
