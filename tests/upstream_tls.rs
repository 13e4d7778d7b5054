//! TLS to the upstream: with a test CA given by `upstream.ca_file`, the gateway's calls reach a
//! local TLS server (HTTP/2 when the server offers it by ALPN, HTTP/1.1 otherwise); with the
//! wrong CA they fail with the TLS code (91005) and nothing is cached.

mod support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::{json, Value};
use support::*;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_rustls::TlsAcceptor;

/// A throwaway CA and a certificate for 127.0.0.1 it signed.
struct TestPki {
    ca_pem: String,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

fn pki() -> TestPki {
    let made = support::pki::test_pki();
    TestPki {
        ca_pem: made.ca_pem,
        chain: vec![made.leaf.der().clone()],
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(made.leaf_key.serialize_der())),
    }
}

/// A TLS upstream answering every `portrait_get` with `Tag_Profile_IM_Nick = "tls-<account>"`,
/// recording the HTTP version of each call.
struct TlsUpstream {
    addr: SocketAddr,
    calls: Arc<AtomicUsize>,
    http2_calls: Arc<AtomicUsize>,
}

impl TlsUpstream {
    async fn start(pki: &TestPki, alpn: &[&[u8]]) -> TlsUpstream {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(pki.chain.clone(), pki.key.clone_key())
            .expect("server cert");
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (calls, http2_calls) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (counted, counted_h2) = (calls.clone(), http2_calls.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (acceptor, calls, h2) = (acceptor.clone(), counted.clone(), counted_h2.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(stream).await else {
                        return; // the gateway refused our certificate
                    };
                    let service =
                        service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                            let (calls, h2) = (calls.clone(), h2.clone());
                            async move {
                                calls.fetch_add(1, Ordering::SeqCst);
                                if request.version() == hyper::Version::HTTP_2 {
                                    h2.fetch_add(1, Ordering::SeqCst);
                                }
                                let body = request.into_body().collect().await?.to_bytes();
                                Ok::<_, hyper::Error>(hyper::Response::new(Full::new(answer(
                                    &body,
                                ))))
                            }
                        });
                    let builder = auto::Builder::new(TokioExecutor::new());
                    let _ = builder.serve_connection(TokioIo::new(tls), service).await;
                });
            }
        });
        TlsUpstream {
            addr,
            calls,
            http2_calls,
        }
    }
}

fn answer(request: &[u8]) -> Bytes {
    let request: Value = serde_json::from_slice(request).unwrap_or_default();
    let accounts = request["To_Account"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let items: Vec<Value> = accounts
        .iter()
        .map(|a| {
            let nick = format!("tls-{}", a.as_str().unwrap_or_default());
            json!({"To_Account": a, "ProfileItem": [{"Tag": NICK, "Value": nick}],
                   "ResultCode": 0, "ResultInfo": ""})
        })
        .collect();
    let body = json!({"ActionStatus": "OK", "ErrorCode": 0, "ErrorInfo": "", "ErrorDisplay": "",
                      "UserProfileItem": items, "Fail_Account": []});
    Bytes::from(body.to_string())
}

fn write_ca(pem: &str, name: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("tim-gateway-{name}-{}.pem", std::process::id()));
    std::fs::write(&path, pem).expect("write CA file");
    path
}

async fn gateway_trusting(upstream: &TlsUpstream, ca_file: PathBuf) -> TestGateway {
    let base = format!("https://{}", upstream.addr);
    TestGateway::builder()
        .config(move |c| {
            c.upstream.ca_file = Some(ca_file);
            c.upstream.max_retries = 0;
            c.cache.stale_if_error = std::time::Duration::ZERO;
        })
        .upstream(base)
        .start()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_reach_a_tls_upstream_trusted_through_ca_file_over_http2_and_http1() {
    let pki = pki();
    let ca_file = write_ca(&pki.ca_pem, "good-ca");
    for (alpn, http2) in [
        (&[b"h2".as_slice(), b"http/1.1"][..], true),
        (&[b"http/1.1".as_slice()][..], false),
    ] {
        let upstream = TlsUpstream::start(&pki, alpn).await;
        let gw = gateway_trusting(&upstream, ca_file.clone()).await;
        let answer = gw
            .portrait_get(&get_body(&["user1", "user2"], &[NICK]))
            .await;
        assert_eq!(answer["ActionStatus"], "OK", "{answer}");
        assert_eq!(
            answer["UserProfileItem"][1]["ProfileItem"][0]["Value"],
            "tls-user2"
        );
        assert_eq!(upstream.calls.load(Ordering::SeqCst), 1);
        let h2 = upstream.http2_calls.load(Ordering::SeqCst);
        assert_eq!(
            h2 == 1,
            http2,
            "HTTP/2 exactly when the server offers it (ALPN {alpn:?})"
        );
        gw.shutdown().await;
    }
    let _ = std::fs::remove_file(ca_file);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_ca_fails_with_the_tls_code_and_caches_nothing() {
    let (pki, other) = (pki(), pki());
    let upstream = TlsUpstream::start(&pki, &[b"h2", b"http/1.1"]).await;
    let wrong = write_ca(&other.ca_pem, "wrong-ca");
    let gw = gateway_trusting(&upstream, wrong.clone()).await;
    for _ in 0..2 {
        let answer = gw.portrait_get(&get_body(&["user1"], &[NICK])).await;
        assert_eq!(answer["ErrorCode"], 91005, "{answer}");
        let info = answer["ErrorInfo"].as_str().unwrap_or_default();
        assert!(info.contains("TLS"), "{answer}");
    }
    assert_eq!(
        upstream.calls.load(Ordering::SeqCst),
        0,
        "no request got through"
    );
    gw.shutdown().await;
    let _ = std::fs::remove_file(wrong);
}
