//! A closed-loop HTTP/1.1 load generator over raw tokio TCP: `conns` keep-alive connections,
//! each sending its next request as soon as the previous answer is complete, or a think time
//! after it ([`Plan::paced`]: a load below saturation). With several gateway addresses,
//! connection `i` talks to address `i % n` (a fleet shares the load evenly).
//!
//! Runs on its own thread with a current-thread runtime, so it shares the machine's cores with
//! the gateway and the sim but not their runtime. A [`Workload`] writes each request and sees
//! each answer; the client times every request (from write to last body byte) and keeps the
//! latencies of those started inside the measured window. Owns no scenario logic.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The query string every request carries (Tencent's shape; the load tool runs `auth = none`).
pub const QUERY: &str =
    "sdkappid=1400000000&identifier=administrator&usersig=none&random=12345678&contenttype=json";

/// What a scenario sends and how it classifies answers.
pub trait Workload: Send + Sync + 'static {
    /// What the workload remembers about one request until its answer.
    type Sent: Send;

    /// Writes connection `conn`'s next whole HTTP request into `out` (see [`write_request`]).
    fn request(&self, conn: usize, out: &mut Vec<u8>) -> Self::Sent;

    /// Sees one answer: Tencent's `ErrorCode` (negative: HTTP status or I/O failure) and the
    /// body. Returns whether the request counts as an all-hit request.
    fn answered(&self, sent: Self::Sent, code: i64, body: &[u8]) -> bool;
}

/// When to send and when to measure.
#[derive(Clone, Copy)]
pub struct Plan {
    /// Concurrent keep-alive connections.
    pub conns: usize,
    /// Requests started before this are warm-up: sent, not recorded.
    pub measure_from: Instant,
    /// No request starts at or after this.
    pub until: Instant,
    /// What each connection waits after an answer before its next request (zero: closed
    /// loop); the first requests are spread over one think time.
    pub think: Duration,
}

impl Plan {
    /// `conns` connections warming up from now for `timing.warmup`, then measured for
    /// `timing.measure`.
    pub fn starting_now(conns: usize, timing: crate::Timing) -> Plan {
        let measure_from = Instant::now() + timing.warmup;
        Plan {
            conns,
            measure_from,
            until: measure_from + timing.measure,
            think: Duration::ZERO,
        }
    }

    /// The same plan with each connection waiting `think` after every answer: `conns / think`
    /// requests per second at most, whatever the latency.
    pub fn paced(self, think: Duration) -> Plan {
        Plan { think, ..self }
    }
}

/// What the measured requests did.
#[derive(Default)]
pub struct LoadResult {
    /// Latencies of measured requests with `ErrorCode` 0, microseconds, ascending.
    pub ok: Vec<u32>,
    /// The subset of `ok` the workload called all-hit, ascending.
    pub hits: Vec<u32>,
    /// Measured requests per non-zero code.
    pub errors: BTreeMap<i64, u64>,
}

impl LoadResult {
    /// One measured request: its code, whether the workload called it all-hit, its latency.
    fn record(&mut self, code: i64, hit: bool, elapsed: u32) {
        if code != 0 {
            *self.errors.entry(code).or_default() += 1;
            return;
        }
        self.ok.push(elapsed);
        if hit {
            self.hits.push(elapsed);
        }
    }
}

/// A failed read or write, recorded as this code.
pub const CODE_IO: i64 = -1;

/// Runs `workload` per `plan` against `addrs` (connection `i` to `addrs[i % addrs.len()]`) on
/// a new thread; join the handle for the result.
pub fn start<W: Workload>(
    addrs: &[SocketAddr],
    workload: Arc<W>,
    plan: Plan,
) -> std::thread::JoinHandle<LoadResult> {
    assert!(!addrs.is_empty(), "the load needs an address");
    let addrs = addrs.to_vec();
    std::thread::spawn(move || {
        let rt = crate::inmem::current_thread_runtime();
        rt.block_on(async move {
            let tasks: Vec<_> = (0..plan.conns)
                .map(|conn| {
                    let addr = addrs[conn % addrs.len()];
                    tokio::spawn(connection(addr, workload.clone(), conn, plan))
                })
                .collect();
            let mut total = LoadResult::default();
            for task in tasks {
                let part = task.await.expect("connection task");
                total.ok.extend(part.ok);
                total.hits.extend(part.hits);
                for (code, n) in part.errors {
                    *total.errors.entry(code).or_default() += n;
                }
            }
            total.ok.sort_unstable();
            total.hits.sort_unstable();
            total
        })
    })
}

/// Appends a `POST /v4/profile/portrait_get` carrying `body` to `out`.
pub fn write_request(out: &mut Vec<u8>, body: &[u8]) {
    out.extend_from_slice(b"POST /v4/profile/portrait_get?");
    out.extend_from_slice(QUERY.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n");
    out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
    out.extend_from_slice(body);
}

async fn connection<W: Workload>(
    addr: SocketAddr,
    workload: Arc<W>,
    conn: usize,
    plan: Plan,
) -> LoadResult {
    let mut result = LoadResult::default();
    let Ok(mut stream) = TcpStream::connect(addr).await else {
        *result.errors.entry(CODE_IO).or_default() += 1;
        return result;
    };
    let _ = stream.set_nodelay(true);
    let (mut request, mut buf) = (Vec::with_capacity(4096), Vec::with_capacity(64 * 1024));
    // Spread the paced connections' first requests over one think time.
    let offset = plan.think.mul_f64(conn as f64 / plan.conns.max(1) as f64);
    tokio::time::sleep(offset).await;
    loop {
        let started = Instant::now();
        if started >= plan.until {
            break;
        }
        request.clear();
        let sent = workload.request(conn, &mut request);
        let (code, body, consumed) = exchange(&mut stream, &request, &mut buf).await;
        let elapsed = u32::try_from(started.elapsed().as_micros()).unwrap_or(u32::MAX);
        let hit = workload.answered(sent, code, &buf[body]);
        if started >= plan.measure_from {
            result.record(code, hit, elapsed);
        }
        if code == CODE_IO {
            break;
        }
        buf.drain(..consumed);
        if !plan.think.is_zero() {
            tokio::time::sleep(plan.think).await;
        }
    }
    result
}

/// Sends `request` and reads its answer into `buf`: Tencent's `ErrorCode` (negative: the HTTP
/// status, or [`CODE_IO`]), the body's range in `buf`, and how much of `buf` the answer used.
async fn exchange(
    stream: &mut TcpStream,
    request: &[u8],
    buf: &mut Vec<u8>,
) -> (i64, std::ops::Range<usize>, usize) {
    let answer = match stream.write_all(request).await {
        Ok(()) => read_response(stream, buf).await,
        Err(e) => Err(e),
    };
    match answer {
        Ok((200, body)) => (error_code(&buf[body.clone()]), body.clone(), body.end),
        Ok((status, body)) => (-i64::from(status), body.clone(), body.end),
        Err(_) => (CODE_IO, 0..0, buf.len()),
    }
}

/// Reads one response into `buf`; returns its status and the body's range in `buf`.
async fn read_response(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
) -> std::io::Result<(u16, std::ops::Range<usize>)> {
    let head_end = loop {
        if let Some(i) = find(buf, b"\r\n\r\n") {
            break i + 4;
        }
        read_more(stream, buf).await?;
    };
    let head = std::str::from_utf8(&buf[..head_end]).map_err(std::io::Error::other)?;
    let status: u16 = head
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other("bad status line"))?;
    let length: usize = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .ok_or_else(|| std::io::Error::other("no content-length"))?;
    while buf.len() < head_end + length {
        read_more(stream, buf).await?;
    }
    Ok((status, head_end..head_end + length))
}

async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<()> {
    buf.reserve(16 * 1024);
    match stream.read_buf(buf).await? {
        0 => Err(std::io::ErrorKind::UnexpectedEof.into()),
        _ => Ok(()),
    }
}

/// Tencent's whole-request `ErrorCode` in an answer body, searched from the end, where the
/// envelope is (per-account entries carry `ResultCode`); [`CODE_IO`] if absent.
pub fn error_code(body: &[u8]) -> i64 {
    const KEY: &[u8] = b"\"ErrorCode\":";
    let Some(at) = body.windows(KEY.len()).rposition(|w| w == KEY) else {
        return CODE_IO;
    };
    let digits: String = body[at + KEY.len()..]
        .iter()
        .take_while(|b| b.is_ascii_digit() || **b == b'-')
        .map(|b| char::from(*b))
        .collect();
    digits.parse().unwrap_or(CODE_IO)
}

/// The position of `needle` in `haystack`.
pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
