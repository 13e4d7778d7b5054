//! The relay: every accepted callback is POSTed unchanged (same query string, same body) to
//! `callback.forward_url`, so the app's own handler keeps working behind the gateway (Tencent
//! allows one callback URL per app), and its answer goes back to Tencent as it came.
//!
//! Bounded by [`RELAY_TIMEOUT`], inside Tencent's 2 s callback timeout, and by
//! [`MAX_ANSWER_BYTES`]. A failure (unreachable, timeout, oversized answer) is logged and
//! counted (`callback_relays_total{result="failed"}`); the caller then answers OK itself.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use prometheus::{IntCounter, IntCounterVec, Opts};
use tracing::warn;
use url::Url;

use super::CallbackAnswer;
use crate::metrics::Metrics;
use crate::tls::{self, HttpsClient};

/// How long the app's handler may take: Tencent gives the whole callback 2 s.
pub(super) const RELAY_TIMEOUT: Duration = Duration::from_millis(1500);

/// The largest handler answer passed back to Tencent.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// A client for the app's callback handler.
#[derive(Clone)]
pub(super) struct Relay {
    client: HttpsClient,
    url: Url,
    relayed: IntCounter,
    failed: IntCounter,
}

impl Relay {
    /// A relay to `url` (http or https, verified with the webpki roots).
    pub(super) fn new(url: Url, metrics: &Metrics) -> Relay {
        let pool = tls::Pool {
            idle_timeout: Duration::from_secs(30),
            max_idle_per_host: usize::MAX,
            http2: false,
        };
        let client = tls::https_client(tls::client_config(None, "callback.forward_url"), &pool);
        let results = metrics.register(IntCounterVec::new(
            Opts::new(
                "callback_relays_total",
                "Callbacks relayed to callback.forward_url, by result (ok, failed)",
            ),
            &["result"],
        ));
        Relay {
            client,
            url,
            relayed: results.with_label_values(&["ok"]),
            failed: results.with_label_values(&["failed"]),
        }
    }

    /// Relays one callback; the handler's answer, or `None` when the relay failed.
    pub(super) async fn relay(&self, query: &str, body: Bytes) -> Option<CallbackAnswer> {
        let result = tokio::time::timeout(RELAY_TIMEOUT, self.send(query, body)).await;
        match result {
            Ok(Ok(answer)) => {
                self.relayed.inc();
                Some(answer)
            }
            Ok(Err(reason)) => self.fail(reason),
            Err(_) => self.fail("no answer within 1.5 s"),
        }
    }

    fn fail(&self, reason: &str) -> Option<CallbackAnswer> {
        self.failed.inc();
        warn!(reason, "callback relay failed; answered OK locally");
        None
    }

    async fn send(&self, query: &str, body: Bytes) -> Result<CallbackAnswer, &'static str> {
        let mut url = self.url.clone();
        let merged = match (self.url.query(), query) {
            (Some(own), "") => own.to_owned(),
            (Some(own), query) => format!("{own}&{query}"),
            (None, query) => query.to_owned(),
        };
        url.set_query((!merged.is_empty()).then_some(merged.as_str()));
        let request = http::Request::post(url.as_str())
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(body))
            .map_err(|_| "could not build the request")?;
        let response = self
            .client
            .request(request)
            .await
            .map_err(|_| "the handler could not be reached")?;
        let status = response.status().as_u16();
        let body = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
            .collect()
            .await
            .map_err(|_| "the handler's answer was cut off or too large")?
            .to_bytes();
        Ok(CallbackAnswer { status, body })
    }
}
