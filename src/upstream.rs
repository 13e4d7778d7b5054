//! UpstreamClient: the gateway's calls to Tencent IM over HTTP(S).
//!
//! Owns the connection pool (hyper-util's pooled client with rustls and webpki roots for
//! `https://` bases, plain TCP for `http://`), signs every call with the gateway's own admin
//! UserSig (renewed at half its lifetime, never the caller's), adds a fresh `random` per call and
//! `contenttype=json`, and bounds each call by `upstream.timeout_ms`. Transport outcomes become
//! [`Error`] variants here; decoding Tencent's JSON is the caller's job (wire.rs), so this module
//! moves bytes only. Callers reach it through the [`UpstreamApi`] trait, which benches and tests
//! can implement in memory.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use parking_lot::Mutex;

use crate::config::UpstreamConfig;
use crate::error::Error;
use crate::metrics::Api;
use crate::usersig;

/// Sends one Tencent API call and returns the answer body (HTTP 200 only).
pub trait UpstreamApi: Send + Sync + 'static {
    /// POSTs `body` to `api` and resolves to the answer's body.
    fn call(&self, api: Api, body: Bytes) -> BoxFuture<'static, Result<Bytes, Error>>;
}

/// The real upstream: Tencent IM (or anything speaking its REST API, such as the sim).
#[derive(Clone)]
pub struct UpstreamClient(Arc<Inner>);

struct Inner {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    /// `base_url` without a trailing slash.
    base: String,
    /// The query string minus `usersig` and `random`: `sdkappid=..&identifier=..`.
    fixed_query: String,
    sdkappid: u64,
    identifier: String,
    secret_key: crate::config::SecretKey,
    usersig_ttl: Duration,
    timeout: Duration,
    admin_sig: Mutex<Option<AdminSig>>,
}

/// The gateway's own UserSig and when to renew it.
struct AdminSig {
    usersig: Arc<str>,
    renew_at_unix: u64,
}

impl UpstreamClient {
    /// Builds the client and its connection pool. Makes no connection yet.
    pub fn new(config: &UpstreamConfig) -> UpstreamClient {
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .build();
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(512)
            .build(connector);
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

    fn url(&self, api: Api) -> String {
        let now_unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let path = match api {
            Api::PortraitGet => "/v4/profile/portrait_get",
            Api::PortraitSet => "/v4/profile/portrait_set",
        };
        format!(
            "{}{path}?{}&usersig={}&random={}&contenttype=json",
            self.0.base,
            self.0.fixed_query,
            self.admin_usersig(now_unix),
            rand::random::<u32>()
        )
    }

    async fn send(self, api: Api, body: Bytes) -> Result<Bytes, Error> {
        let request = http::Request::post(self.url(api))
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
            let status = response.status();
            let body = response.into_body().collect().await.map_err(|_| {
                Error::UpstreamConnect(Arc::from("connection dropped while reading the answer"))
            })?;
            if status != http::StatusCode::OK {
                return Err(Error::UpstreamStatus(status.as_u16()));
            }
            Ok(body.to_bytes())
        };
        match tokio::time::timeout(self.0.timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(Error::UpstreamTimeout(self.0.timeout)),
        }
    }
}

impl UpstreamApi for UpstreamClient {
    fn call(&self, api: Api, body: Bytes) -> BoxFuture<'static, Result<Bytes, Error>> {
        Box::pin(self.clone().send(api, body))
    }
}

/// Describes a client error without the URL (which carries the gateway's UserSig).
fn transport_error(e: hyper_util::client::legacy::Error) -> Error {
    let what = if e.is_connect() {
        "connection failed"
    } else {
        "connection closed before the answer"
    };
    Error::UpstreamConnect(Arc::from(what))
}
