//! UpstreamClient: the gateway's calls to Tencent IM over HTTP(S).
//!
//! Owns the connection pool (hyper-util's pooled client: keep-alive with idle expiry, rustls
//! with the webpki roots plus `upstream.ca_file` for `https://` bases, HTTP/2 when the server
//! offers it by ALPN, plain TCP for `http://`), signs every call with the gateway's own admin
//! UserSig (renewed at half its lifetime, never the caller's), adds a fresh `random` per call and
//! `contenttype=json`, and bounds each call by `upstream.timeout_ms` and its answer by
//! `upstream.max_response_bytes` (an oversized or endless answer is cut off and becomes
//! [`Error::UpstreamDecode`], 91003, so nothing of it is cached). Transport outcomes become
//! [`Error`] variants here; decoding Tencent's JSON is the caller's job (wire.rs), so this module
//! moves bytes only. Callers reach it through the [`UpstreamApi`] trait, which benches and tests
//! can implement in memory.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use parking_lot::Mutex;
use tracing::warn;

use crate::apis::Api;
use crate::config::UpstreamConfig;
use crate::error::Error;
use crate::tls::{self, HttpsClient};
use crate::usersig;

mod path;

pub(crate) use path::{Attempts, RetryTurn};
pub(crate) use path::{Forwarded, PathFactory};
pub use path::{PathMetrics, UpstreamPath};

/// Sends one Tencent API call.
pub trait UpstreamApi: Send + Sync + 'static {
    /// POSTs `body` to `api` and resolves to the answer's body (HTTP 200 only; another status
    /// is [`Error::UpstreamStatus`]).
    fn call(&self, api: &Api, body: Bytes) -> BoxFuture<'static, Result<Bytes, Error>>;

    /// POSTs `body` to `api` and resolves to the answer's HTTP status and body, whatever the
    /// status (what a pass-through returns to its caller as is).
    fn forward(&self, api: &Api, body: Bytes) -> BoxFuture<'static, Result<(u16, Bytes), Error>> {
        let call = self.call(api, body);
        Box::pin(async move { call.await.map(|body| (200, body)) })
    }
}

/// The real upstream: Tencent IM (or anything speaking its REST API, such as the sim).
#[derive(Clone)]
pub(crate) struct UpstreamClient(Arc<Inner>);

struct Inner {
    client: HttpsClient,
    /// `base_url` without a trailing slash.
    base: String,
    /// The query string minus `usersig` and `random`: `sdkappid=..&identifier=..`.
    fixed_query: String,
    sdkappid: u64,
    identifier: String,
    secret_key: crate::config::SecretKey,
    usersig_ttl: Duration,
    timeout: Duration,
    /// Answers larger than this are cut off: memory per call stays bounded.
    max_response_bytes: usize,
    admin_sig: Mutex<Option<AdminSig>>,
}

/// The gateway's own UserSig and when to renew it.
struct AdminSig {
    usersig: Arc<str>,
    renew_at_unix: u64,
}

impl UpstreamClient {
    /// Builds the client and its connection pool. Makes no connection yet.
    pub(crate) fn new(config: &UpstreamConfig) -> UpstreamClient {
        let tls = tls::client_config(config.ca_file.as_deref(), "upstream.ca_file");
        let pool = tls::Pool {
            idle_timeout: Duration::from_secs(60),
            max_idle_per_host: 512,
            http2: true,
        };
        let client = tls::https_client(tls, &pool);
        let identifier_param: String =
            url::form_urlencoded::byte_serialize(config.identifier.as_bytes()).collect();
        UpstreamClient(Arc::new(Inner {
            client,
            base: config.base_url.as_str().trim_end_matches('/').to_string(),
            fixed_query: format!("sdkappid={}&identifier={identifier_param}", config.sdkappid),
            sdkappid: config.sdkappid,
            identifier: config.identifier.clone(),
            secret_key: config.secret_key.clone(),
            usersig_ttl: config.usersig_ttl,
            timeout: config.timeout,
            max_response_bytes: config.max_response_bytes,
            admin_sig: Mutex::new(None),
        }))
    }

    /// The admin UserSig for upstream calls, generated when missing or past half its life.
    fn admin_usersig(&self, now_unix: u64) -> Arc<str> {
        let mut slot = self.0.admin_sig.lock();
        match &*slot {
            Some(sig) if now_unix < sig.renew_at_unix => sig.usersig.clone(),
            _ => {
                let ttl = self.0.usersig_ttl.as_secs();
                let usersig: Arc<str> = Arc::from(usersig::sign(
                    self.0.sdkappid,
                    self.0.secret_key.expose(),
                    &self.0.identifier,
                    now_unix,
                    ttl,
                ));
                *slot = Some(AdminSig {
                    usersig: usersig.clone(),
                    renew_at_unix: now_unix + ttl / 2,
                });
                usersig
            }
        }
    }

    fn url(&self, api: &Api) -> String {
        let now_unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        format!(
            "{}{}?{}&usersig={}&random={}&contenttype=json",
            self.0.base,
            api.path(),
            self.0.fixed_query,
            self.admin_usersig(now_unix),
            rand::random::<u32>()
        )
    }

    /// Sends `body` to `api`: the answer's status and body.
    async fn send(self, api: Api, body: Bytes) -> Result<(u16, Bytes), Error> {
        let request = http::Request::post(self.url(&api))
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(body))
            .map_err(|_| Error::Internal(Arc::from("could not build the upstream request")))?;
        let exchange = async {
            let response = self
                .0
                .client
                .request(request)
                .await
                .map_err(transport_error)?;
            let status = response.status().as_u16();
            let body = read_limited(response, self.0.max_response_bytes).await?;
            Ok((status, body))
        };
        match tokio::time::timeout(self.0.timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(Error::UpstreamTimeout(self.0.timeout)),
        }
    }
}

impl UpstreamApi for UpstreamClient {
    fn call(&self, api: &Api, body: Bytes) -> BoxFuture<'static, Result<Bytes, Error>> {
        let send = self.clone().send(api.clone(), body);
        Box::pin(async move {
            match send.await? {
                (200, body) => Ok(body),
                (status, _) => Err(Error::UpstreamStatus(status)),
            }
        })
    }

    fn forward(&self, api: &Api, body: Bytes) -> BoxFuture<'static, Result<(u16, Bytes), Error>> {
        Box::pin(self.clone().send(api.clone(), body))
    }
}

/// Reads an answer's body, refusing more than `limit` bytes (early, from Content-Length, when
/// the upstream sends one).
async fn read_limited(
    response: http::Response<hyper::body::Incoming>,
    limit: usize,
) -> Result<Bytes, Error> {
    let too_large = || {
        Error::UpstreamDecode(Arc::from(
            "the upstream answer exceeded upstream.max_response_bytes",
        ))
    };
    let declared = response
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    match Limited::new(response.into_body(), limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Err(too_large()),
        Err(_) => Err(Error::UpstreamConnect(Arc::from(
            "connection dropped while reading the answer",
        ))),
    }
}

/// Describes a client error without the URL (which carries the gateway's UserSig).
fn transport_error(e: hyper_util::client::legacy::Error) -> Error {
    if let Some(tls) = tls::rustls_cause(&e) {
        warn!(error = %tls, "upstream TLS handshake failed: is upstream.ca_file right?");
        return Error::UpstreamTls(Arc::from(tls));
    }
    if e.is_connect() {
        Error::UpstreamRefused(Arc::from("connection failed"))
    } else {
        Error::UpstreamConnect(Arc::from("connection closed before the answer"))
    }
}
