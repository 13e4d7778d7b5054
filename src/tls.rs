//! TLS for the gateway's outbound connections: the one place that builds a rustls client
//! config (the webpki roots plus an operator's PEM CA file), loads and checks a CA file, builds
//! the pooled HTTPS client, and digs a rustls error out of a transport error's causes.
//!
//! A leaf: it names no other module of the crate. Its users are `upstream` (calls to Tencent,
//! `upstream.ca_file`), `callback` (the relay to the app's handler) and `config` (a CA file is
//! checked when the config is loaded, so a typo fails at start-up rather than at first use).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use tracing::{error, warn};

/// A pooled HTTP(S) client sending bodies held in memory.
pub(crate) type HttpsClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// How a pooled client keeps its connections.
pub(crate) struct Pool {
    /// Idle connections are closed after this long.
    pub(crate) idle_timeout: Duration,
    /// Idle connections kept per host at most.
    pub(crate) max_idle_per_host: usize,
    /// Offer HTTP/2 by ALPN (and use it when the server picks it).
    pub(crate) http2: bool,
}

/// A pooled client for `http://` and `https://` URLs, verifying servers with `tls`.
pub(crate) fn https_client(tls: rustls::ClientConfig, pool: &Pool) -> HttpsClient {
    let builder = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1();
    let connector = if pool.http2 {
        builder.enable_http2().build()
    } else {
        builder.build()
    };
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(pool.idle_timeout)
        .pool_max_idle_per_host(pool.max_idle_per_host)
        .build(connector)
}

/// rustls with the webpki roots and the certificates of `ca_file` (named `setting` in logs);
/// ALPN is left to the connector.
pub(crate) fn client_config(ca_file: Option<&Path>, setting: &str) -> rustls::ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports rustls's default protocol versions")
        .with_root_certificates(root_store(ca_file, setting))
        .with_no_client_auth()
}

/// The webpki roots plus the certificates of `ca_file`. A file that became unreadable since the
/// config was checked leaves the webpki roots alone, logged once here.
pub(crate) fn root_store(ca_file: Option<&Path>, setting: &str) -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let Some(path) = ca_file else {
        return roots;
    };
    match load_ca_file(path) {
        Ok(certs) => {
            let (_added, ignored) = roots.add_parsable_certificates(certs);
            if ignored > 0 {
                warn!(setting, ignored, "some CA certificates could not be used");
            }
        }
        Err(e) => error!(setting, error = %e, "CA file unreadable: webpki roots only"),
    }
    roots
}

/// The PEM certificates in `path` (at least one).
pub(crate) fn load_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| e.to_string())?
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    if certs.is_empty() {
        return Err("no PEM certificate in it".to_owned());
    }
    Ok(certs)
}

/// The rustls error somewhere in `e`'s causes, as text (names what failed, never a secret).
pub(crate) fn rustls_cause(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    find_rustls(e).map(ToString::to_string)
}

/// Looks through `e`, the `io::Error`s that wrap it (an `io::Error`'s `source()` skips its
/// inner error, so each is opened by hand), and its causes.
fn find_rustls<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    if let Some(tls) = e.downcast_ref::<rustls::Error>() {
        return Some(tls);
    }
    let inner: Option<&'a (dyn std::error::Error + 'static)> = e
        .downcast_ref::<std::io::Error>()
        .and_then(|io| io.get_ref())
        .map(|inner| inner as &(dyn std::error::Error + 'static));
    inner
        .and_then(find_rustls)
        .or_else(|| e.source().and_then(find_rustls))
}
