//! Hostile-test support: a broken upstream written from scratch on raw TCP (endless or
//! oversized answers, duplicated or foreign accounts), a gateway started against any upstream
//! URL, raw-socket client helpers, and the process's resident memory.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::{json, Value};
use tim_gateway::config::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How the broken upstream answers `portrait_get`.
#[derive(Clone)]
pub enum Behaviour {
    /// 200 with a chunked body that never ends.
    Endless,
    /// 200 with a valid answer padded to this many bytes, with a Content-Length.
    OversizedDeclared(usize),
    /// 200 with a valid answer padded to this many bytes, chunked (no length up front).
    OversizedChunked(usize),
    /// 200 with whatever JSON this builds from the request body.
    Answer(Arc<dyn Fn(&Value) -> Value + Send + Sync>),
}

/// A raw-TCP upstream whose behaviour the test switches at will.
pub struct BrokenUpstream {
    pub addr: SocketAddr,
    behaviour: Arc<Mutex<Behaviour>>,
    calls: Arc<AtomicUsize>,
    accept: JoinHandle<()>,
}

impl BrokenUpstream {
    /// Starts on 127.0.0.1, port chosen by the OS.
    pub async fn start(behaviour: Behaviour) -> BrokenUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let behaviour = Arc::new(Mutex::new(behaviour));
        let calls = Arc::new(AtomicUsize::new(0));
        let (b, c) = (behaviour.clone(), calls.clone());
        let accept = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (b, c) = (b.clone(), c.clone());
                tokio::spawn(async move {
                    let _ = serve(stream, b, c).await;
                });
            }
        });
        BrokenUpstream {
            addr,
            behaviour,
            calls,
            accept,
        }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set(&self, behaviour: Behaviour) {
        *self.behaviour.lock() = behaviour;
    }

    /// Requests received so far.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl Drop for BrokenUpstream {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// A well-formed answer for every account and tag asked for: `Value` is `"<account>:<tag>"`.
pub fn honest_answer(request: &Value) -> Value {
    let tags: Vec<Value> = request["TagList"].as_array().cloned().unwrap_or_default();
    let items: Vec<Value> = request["To_Account"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|account| {
            let account = account.as_str().unwrap_or_default();
            let profile: Vec<Value> = tags
                .iter()
                .map(|t| {
                    let tag = t.as_str().unwrap_or_default();
                    json!({"Tag": tag, "Value": format!("{account}:{tag}")})
                })
                .collect();
            json!({"To_Account": account, "ProfileItem": profile, "ResultCode": 0, "ResultInfo": ""})
        })
        .collect();
    json!({"ActionStatus": "OK", "ErrorCode": 0, "ErrorInfo": "", "ErrorDisplay": "",
           "UserProfileItem": items})
}

/// Serves requests on one connection until it closes.
async fn serve(
    mut stream: TcpStream,
    behaviour: Arc<Mutex<Behaviour>>,
    calls: Arc<AtomicUsize>,
) -> std::io::Result<()> {
    loop {
        let Some(body) = read_request(&mut stream).await? else {
            return Ok(());
        };
        calls.fetch_add(1, Ordering::SeqCst);
        let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let behaviour = behaviour.lock().clone();
        match behaviour {
            Behaviour::Endless => {
                stream
                    .write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                    .await?;
                let chunk = format!("10000\r\n{}\r\n", " ".repeat(0x10000));
                loop {
                    stream.write_all(chunk.as_bytes()).await?;
                }
            }
            Behaviour::OversizedDeclared(size) => {
                let body = padded(&request, size);
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                );
                stream.write_all(head.as_bytes()).await?;
                stream.write_all(&body).await?;
            }
            Behaviour::OversizedChunked(size) => {
                let body = padded(&request, size);
                stream
                    .write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
                    .await?;
                for chunk in body.chunks(0x10000) {
                    stream
                        .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                        .await?;
                    stream.write_all(chunk).await?;
                    stream.write_all(b"\r\n").await?;
                }
                stream.write_all(b"0\r\n\r\n").await?;
            }
            Behaviour::Answer(build) => {
                let body = build(&request).to_string();
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                );
                stream.write_all(head.as_bytes()).await?;
                stream.write_all(body.as_bytes()).await?;
            }
        }
    }
}

/// An honest answer with whitespace padding up to `size` bytes: valid JSON, just too big.
fn padded(request: &Value, size: usize) -> Vec<u8> {
    let mut body = honest_answer(request).to_string().into_bytes();
    body.resize(size.max(body.len()), b' ');
    body
}

/// Reads one request (head + Content-Length body); `None` at a clean end of the connection.
async fn read_request(stream: &mut TcpStream) -> std::io::Result<Option<Vec<u8>>> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut byte).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&byte[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut byte).await?;
        if n == 0 {
            return Ok(None);
        }
        body.extend_from_slice(&byte[..n]);
    }
    Ok(Some(body))
}

/// A gateway in process against any upstream (`config.upstream.base_url` as given).
pub struct BareGateway {
    pub addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    join: JoinHandle<()>,
}

impl BareGateway {
    pub async fn start(config: Config) -> BareGateway {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = oneshot::channel::<()>();
        let join = tokio::spawn(tim_gateway::run(config, listener, async {
            let _ = rx.await;
        }));
        BareGateway {
            addr,
            shutdown: Some(tx),
            join,
        }
    }

    /// Stops the gateway; re-raises a panic of its task.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        super::join_gateway(&mut self.join).await;
    }
}

/// Reads until the peer closes (or errors); `Some(elapsed)` if that happened within `limit`.
/// What was read is appended to `seen`.
pub async fn closed_within(
    stream: &mut (impl tokio::io::AsyncRead + Unpin),
    limit: Duration,
    seen: &mut Vec<u8>,
) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at((started + limit).into(), stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
        }
    }
}

/// An HTTP/1.1 POST head (no body) for `path_and_query`.
pub fn post_head(addr: SocketAddr, path_and_query: &str, content_length: usize) -> String {
    format!(
        "POST {path_and_query} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {content_length}\r\n\r\n"
    )
}

/// This process's resident set size in bytes (Linux `/proc/self/status` `VmRSS`).
pub fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .expect("VmRSS in /proc/self/status")
}

/// The soft limit on open files (`/proc/self/limits`), or `None` when unlimited/unknown.
pub fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// An HTTP client for a [`BareGateway`] (pooled, like a real caller's).
pub struct TestClient {
    addr: SocketAddr,
    client: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        http_body_util::Full<bytes::Bytes>,
    >,
}

impl TestClient {
    pub fn new(addr: SocketAddr) -> TestClient {
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http();
        TestClient { addr, client }
    }

    /// POSTs `body` to portrait_get with a valid admin query; expects 200 and JSON.
    pub async fn portrait_get(&self, body: &Value) -> Value {
        let request = portrait_get_request(self.addr, body);
        let response = self.client.request(request).await.expect("gateway answers");
        json_answer(response).await
    }
}

/// Reads `count` HTTP/1.1 responses with Content-Length bodies off `stream`, in order; the
/// bodies, or what was read before the stream ended or `limit` passed.
pub async fn read_responses(
    stream: &mut TcpStream,
    count: usize,
    limit: Duration,
) -> Result<Vec<(u16, Vec<u8>)>, String> {
    let deadline = Instant::now() + limit;
    let mut buf = Vec::new();
    let mut responses = Vec::new();
    let mut chunk = [0u8; 8192];
    while responses.len() < count {
        if let Some((status, body, used)) = parse_response(&buf) {
            responses.push((status, body));
            buf.drain(..used);
            continue;
        }
        match tokio::time::timeout_at(deadline.into(), stream.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => {
                return Err(format!(
                    "{} responses, then: {}",
                    responses.len(),
                    String::from_utf8_lossy(&buf)
                ))
            }
        }
    }
    Ok(responses)
}

/// One complete response at the start of `buf`: status, body, bytes used.
fn parse_response(buf: &[u8]) -> Option<(u16, Vec<u8>, usize)> {
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())?;
    let body = buf.get(head_end..head_end + length)?.to_vec();
    Some((status, body, head_end + length))
}

/// A `portrait_get` request to `addr` with a valid admin query.
pub fn portrait_get_request(
    addr: SocketAddr,
    body: &Value,
) -> http::Request<http_body_util::Full<bytes::Bytes>> {
    let uri = format!("http://{addr}{}?{}", super::GET, super::auth_query());
    http::Request::post(uri)
        .body(http_body_util::Full::new(bytes::Bytes::from(
            body.to_string(),
        )))
        .expect("request")
}

/// A response's JSON body; the status must be 200.
pub async fn json_answer<B>(response: http::Response<B>) -> Value
where
    B: hyper::body::Body,
    B::Error: std::fmt::Debug,
{
    use http_body_util::BodyExt;
    assert_eq!(response.status(), 200);
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&bytes)))
}
