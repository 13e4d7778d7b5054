//! Hostile clients over raw TCP cannot hurt the gateway or its good callers: slowloris heads,
//! slow bodies, silent connections, bare HTTP/2 prefaces and idle keep-alive connections are
//! closed within their bounds; thousands of silent connections are shed at the cap while good
//! callers (and /healthz) are served; huge bodies and deep nesting get 40001; pipelined
//! requests are answered in order; a flood of bogus UserSigs leaves memory bounded.

mod support;

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use futures_util::stream::{self, StreamExt};
use serde_json::Value;
use support::hostile::{
    closed_within, json_answer, open_files_limit, portrait_get_request, post_head, read_responses,
    rss_bytes,
};
use support::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const HEADER_TIMEOUT: Duration = Duration::from_millis(300);
const BODY_TIMEOUT: Duration = Duration::from_millis(500);
const IDLE_TIMEOUT: Duration = Duration::from_millis(1500);
/// Scheduling slack on top of a bound (2 shared cores, debug build).
const SLACK: Duration = Duration::from_millis(1500);

/// Tests that allocate a lot or measure RSS run one at a time.
static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn start() -> TestGateway {
    TestGateway::builder()
        .config(|c| {
            c.server.header_read_timeout = HEADER_TIMEOUT;
            c.server.body_read_timeout = BODY_TIMEOUT;
            c.server.idle_timeout = IDLE_TIMEOUT;
        })
        .start()
        .await
}

/// A good caller's request: the sim's own answer, within a few seconds.
async fn good_caller_is_served(gw: &TestGateway, account: &str) {
    let body = get_body(&[account], &[NICK]);
    let answer = tokio::time::timeout(Duration::from_secs(5), gw.portrait_get(&body))
        .await
        .unwrap_or_else(|_| panic!("good caller for {account} not served within 5 s"));
    assert_eq!(answer, gw.alone(&body));
}

/// `GET /healthz` on a fresh raw connection; its status.
async fn healthz_fresh(gw: &TestGateway) -> u16 {
    let mut s = TcpStream::connect(gw.addr).await.expect("connect");
    let request = format!("GET /healthz HTTP/1.1\r\nHost: {}\r\n\r\n", gw.addr);
    s.write_all(request.as_bytes()).await.expect("write");
    let responses = read_responses(&mut s, 1, Duration::from_secs(5)).await;
    responses.expect("healthz answers")[0].0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_heads_are_closed_within_the_header_timeout() {
    let gw = start().await;
    let head = post_head(gw.addr, &format!("{GET}?{}", auth_query()), 2);
    let closes = join_all((0..50).map(|_| async {
        let stream = TcpStream::connect(gw.addr).await.expect("connect");
        let (mut read, mut write) = stream.into_split();
        let head = head.clone();
        let dribble = tokio::spawn(async move {
            for byte in head.bytes() {
                if write.write_all(&[byte]).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        let closed = closed_within(&mut read, HEADER_TIMEOUT + SLACK, &mut Vec::new()).await;
        dribble.abort();
        closed
    }));
    let (closes, ()) = tokio::join!(closes, good_caller_is_served(&gw, "user1"));
    let slowest = closes
        .iter()
        .map(|c| c.expect("every slowloris connection is closed"))
        .max();
    eprintln!("50 slowloris connections closed, the last after {slowest:?}");
    good_caller_is_served(&gw, "user2").await;
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_bodies_get_40001_and_a_closed_connection() {
    let gw = start().await;
    let closes = join_all((0..20).map(|_| async {
        let stream = TcpStream::connect(gw.addr).await.expect("connect");
        let (mut read, mut write) = stream.into_split();
        let head = post_head(gw.addr, &format!("{GET}?{}", auth_query()), 500);
        write.write_all(head.as_bytes()).await.expect("head");
        let dribble = tokio::spawn(async move {
            for _ in 0..500 {
                if write.write_all(b" ").await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        let mut seen = Vec::new();
        let limit = BODY_TIMEOUT + HEADER_TIMEOUT + SLACK;
        let closed = closed_within(&mut read, limit, &mut seen).await;
        dribble.abort();
        (closed, String::from_utf8_lossy(&seen).into_owned())
    }));
    let (closes, ()) = tokio::join!(closes, good_caller_is_served(&gw, "user3"));
    for (closed, seen) in &closes {
        assert!(closed.is_some(), "slow body connection still open: {seen}");
        assert!(
            seen.contains("40001"),
            "a slow body is answered 40001: {seen}"
        );
    }
    eprintln!(
        "20 slow bodies: 40001 and closed, the last after {:?}",
        closes.iter().filter_map(|c| c.0).max()
    );
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_and_bare_http2_prefaces_are_closed() {
    let gw = start().await;
    let preface: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    // An empty SETTINGS frame: a real HTTP/2 client's first words, then nothing.
    let settings: &[u8] = &[0, 0, 0, 4, 0, 0, 0, 0, 0];
    let openings: [&[u8]; 4] = [b"", preface, &[preface, settings].concat(), b"P"];
    for opening in openings {
        let mut s = TcpStream::connect(gw.addr).await.expect("connect");
        s.write_all(opening).await.expect("write");
        let closed = closed_within(&mut s, HEADER_TIMEOUT + SLACK, &mut Vec::new()).await;
        let shown = String::from_utf8_lossy(&opening[..opening.len().min(16)]).into_owned();
        let took = closed.unwrap_or_else(|| panic!("connection opened with {shown:?} still open"));
        eprintln!(
            "opening {shown:?} ({} bytes): closed after {took:?}",
            opening.len()
        );
    }
    good_caller_is_served(&gw, "user4").await;
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let gw = start().await;
    let mut s = TcpStream::connect(gw.addr).await.expect("connect");
    let request = format!("GET /healthz HTTP/1.1\r\nHost: {}\r\n\r\n", gw.addr);
    s.write_all(request.as_bytes()).await.expect("write");
    let answered = read_responses(&mut s, 1, Duration::from_secs(5)).await;
    assert_eq!(answered.expect("answered")[0].0, 200);
    let idle_since = Instant::now();
    let closed = closed_within(&mut s, IDLE_TIMEOUT + SLACK, &mut Vec::new()).await;
    let took = closed.expect("the idle connection is closed");
    assert!(
        idle_since.elapsed() >= IDLE_TIMEOUT / 2,
        "a served keep-alive connection lives by the idle timeout, not the header timeout ({took:?})"
    );
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_silent_connections_do_not_lock_out_good_callers() {
    let _heavy = HEAVY.lock().await;
    const CAP: usize = 500;
    // Each silent connection costs this process two descriptors (both ends); keep 1000 spare.
    let wanted = 3000;
    let allowed = open_files_limit().map_or(wanted, |l| (l.saturating_sub(1000) / 2) as usize);
    let silent = wanted.min(allowed);
    if silent < wanted {
        eprintln!("open-file limit allows {silent} silent connections, not {wanted}");
    }
    let gw = TestGateway::builder()
        .config(|c| {
            // Long enough that the silent ones do not time out: shedding must make room.
            c.server.header_read_timeout = Duration::from_secs(60);
            c.server.max_connections = CAP;
        })
        .start()
        .await;
    let before = rss_bytes();
    let started = Instant::now();
    let mut sockets = Vec::with_capacity(silent);
    for _ in 0..silent {
        sockets.push(TcpStream::connect(gw.addr).await.expect("connect"));
    }
    let opened = started.elapsed();
    for i in 0..20 {
        assert_eq!(
            healthz_fresh(&gw).await,
            200,
            "/healthz with {silent} silent connections"
        );
        good_caller_is_served(&gw, &format!("user{}", 100 + i)).await;
    }
    let served = started.elapsed();
    let still_open = stream::iter(sockets.iter_mut())
        .map(|s| async move {
            closed_within(s, Duration::from_millis(1), &mut Vec::new())
                .await
                .is_none()
        })
        .buffer_unordered(64)
        .filter(|open| std::future::ready(*open))
        .count()
        .await;
    let grown = rss_bytes().saturating_sub(before);
    eprintln!(
        "{silent} silent connections opened in {opened:?}, 20 good callers and 20 /healthz served \
         by {served:?}; {still_open} silent ones still open (cap {CAP}); RSS grew {} KiB",
        grown / 1024
    );
    assert!(
        still_open <= CAP,
        "{still_open} silent connections kept over the cap of {CAP}"
    );
    drop(sockets);
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_bodies_get_40001_without_being_read() {
    let gw = start().await;
    let path = format!("{GET}?{}", auth_query());
    // Declared: refused from the head alone.
    let mut s = TcpStream::connect(gw.addr).await.expect("connect");
    let head = post_head(gw.addr, &path, 100 * 1024 * 1024);
    s.write_all(head.as_bytes()).await.expect("head");
    let answered = read_responses(&mut s, 1, Duration::from_secs(5)).await;
    let (status, body) = answered.expect("answered").remove(0);
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_slice::<Value>(&body).expect("json")["ErrorCode"],
        40001
    );
    // Chunked, no length up front: cut off at server.max_body_bytes.
    let mut s = TcpStream::connect(gw.addr).await.expect("connect");
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {}\r\nTransfer-Encoding: chunked\r\n\r\n",
        gw.addr
    );
    s.write_all(head.as_bytes()).await.expect("head");
    let chunk = format!("10000\r\n{}\r\n", "[".repeat(0x10000));
    for _ in 0..64 {
        if s.write_all(chunk.as_bytes()).await.is_err() {
            break;
        }
    }
    let answered = read_responses(&mut s, 1, Duration::from_secs(5)).await;
    let (_, body) = answered.expect("answered").remove(0);
    assert_eq!(
        serde_json::from_slice::<Value>(&body).expect("json")["ErrorCode"],
        40001
    );
    good_caller_is_served(&gw, "user5").await;
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deeply_nested_json_gets_40001() {
    let gw = start().await;
    let deep = 100_000;
    let nested = format!("{}{}", "[".repeat(deep), "]".repeat(deep));
    let objects = format!("{}1{}", "{\"a\":".repeat(deep), "}".repeat(deep));
    let bodies = [
        format!("{{\"To_Account\":{nested},\"TagList\":[\"{NICK}\"]}}"),
        format!("{{\"To_Account\":[\"user6\"],\"TagList\":{nested}}}"),
        nested.clone(),
    ];
    for body in bodies {
        let answer = gw.post_raw(GET, body.clone()).await;
        assert_eq!(answer["ErrorCode"], 40001, "{}...", &body[..40]);
    }
    // Deep nesting in a field the gateway ignores is skipped without recursion and served.
    let extra =
        format!("{{\"Extra\":{objects},\"To_Account\":[\"user6\"],\"TagList\":[\"{NICK}\"]}}");
    let answer = gw.post_raw(GET, extra).await;
    assert_eq!(answer, gw.alone(&get_body(&["user6"], &[NICK])));
    good_caller_is_served(&gw, "user6").await;
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_answered_in_order() {
    let gw = start().await;
    let accounts = ["user7", "user8", "user9", "user10"];
    let mut pipeline = Vec::new();
    for account in accounts {
        let body = get_body(&[account], &[NICK]).to_string();
        pipeline.extend_from_slice(
            post_head(gw.addr, &format!("{GET}?{}", auth_query()), body.len()).as_bytes(),
        );
        pipeline.extend_from_slice(body.as_bytes());
    }
    let mut s = TcpStream::connect(gw.addr).await.expect("connect");
    s.write_all(&pipeline).await.expect("one write");
    let responses = read_responses(&mut s, accounts.len(), Duration::from_secs(5)).await;
    let responses = responses.expect("every pipelined request is answered");
    for (account, (status, body)) in accounts.iter().zip(responses) {
        assert_eq!(status, 200);
        let answer: Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(
            answer,
            gw.alone(&get_body(&[account], &[NICK])),
            "in request order"
        );
    }
    gw.shutdown().await;
}

/// Sends `flood` requests with a distinct 60 KB non-UserSig and `flood` with a distinct forged
/// one, 16 at a time, starting at `first`; every answer's pair of codes.
async fn usersig_flood(gw: &TestGateway, first: u64, flood: u64) -> Vec<(i64, i64)> {
    let body = get_body(&["user11"], &[NICK]).to_string();
    stream::iter(first..first + flood)
        .map(|i| {
            let body = body.clone();
            async move {
                // 60 KB of base64-looking text, distinct per request: not a UserSig at all.
                let long = format!("{i:08}{}", "eJw".repeat(20_000));
                // Well-formed, signed with a key that is not the app's.
                let forged = usersig_for(ADMIN, "attacker-key", 86_400 + i);
                let mut codes = [0i64; 2];
                for (slot, sig) in codes.iter_mut().zip([long, forged]) {
                    let query =
                        format!("sdkappid={SDKAPPID}&identifier={ADMIN}&usersig={sig}&random=1");
                    let (_, answer) = gw
                        .send("POST", &format!("{GET}?{query}"), body.clone())
                        .await;
                    let answer: Value = serde_json::from_slice(&answer).expect("json");
                    *slot = answer["ErrorCode"].as_i64().unwrap_or_default();
                }
                (codes[0], codes[1])
            }
        })
        .buffer_unordered(16)
        .collect()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_bogus_usersigs_keeps_memory_bounded() {
    let _heavy = HEAVY.lock().await;
    // Memory is the point here, not slow heads: the shipped header timeout, so that a 60 KB
    // request head on a loaded 2-core runner is never cut off mid-flood.
    let gw = TestGateway::start().await;
    let flood = 1000;
    // The first round warms the allocator up (freed request buffers stay in its arenas); every
    // round after it must fit in what the first one left resident.
    let mut rss = vec![rss_bytes()];
    let started = Instant::now();
    for round in 0..3 {
        let codes = usersig_flood(&gw, round * flood, flood).await;
        assert!(
            codes.iter().all(|c| *c == (70003, 70009)),
            "{:?}",
            &codes[..3]
        );
        rss.push(rss_bytes());
    }
    let took = started.elapsed();
    good_caller_is_served(&gw, "user11").await;
    let kib: Vec<u64> = rss.iter().map(|b| b / 1024).collect();
    eprintln!(
        "3 x ({flood} 60 KB bogus + {flood} forged) UserSigs refused in {took:?}; RSS KiB before and after each round: {kib:?}"
    );
    let after_warm_up = rss[3].saturating_sub(rss[1]);
    assert!(
        after_warm_up < 32 * 1024 * 1024,
        "RSS grew {after_warm_up} bytes over two more rounds of bogus UserSigs: {kib:?}"
    );
    gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_callers_are_served_and_their_idle_connections_closed() {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let gw = start().await;
    let stream = TcpStream::connect(gw.addr).await.expect("connect");
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("HTTP/2 handshake");
    let connection = tokio::spawn(connection);
    // Requests spread over more than the header timeout: a busy HTTP/2 connection stays.
    for i in 0..4 {
        let body = get_body(&[&format!("user{}", 20 + i)], &[NICK]);
        let response = sender
            .send_request(portrait_get_request(gw.addr, &body))
            .await
            .expect("answered over HTTP/2");
        let answer = json_answer(response).await;
        assert_eq!(answer, gw.alone(&body));
        tokio::time::sleep(HEADER_TIMEOUT / 2).await;
    }
    let idle_since = Instant::now();
    // Closed by the gateway: cleanly (GOAWAY) or not, the connection task ends.
    let _ended = tokio::time::timeout(IDLE_TIMEOUT + SLACK, connection)
        .await
        .expect("the idle HTTP/2 connection is closed")
        .expect("connection task");
    eprintln!(
        "idle HTTP/2 connection closed {:?} after its last request",
        idle_since.elapsed()
    );
    gw.shutdown().await;
}

/// One portrait_get over a raw h2 stream; the parsed answer.
async fn h2_portrait_get(
    client: &mut h2::client::SendRequest<bytes::Bytes>,
    addr: std::net::SocketAddr,
    body: &serde_json::Value,
) -> serde_json::Value {
    let uri = format!("http://{addr}{GET}?{}", auth_query());
    let request = http::Request::post(uri).body(()).expect("request");
    let mut ready = client.clone().ready().await.expect("a stream is free");
    let (response, mut send) = ready.send_request(request, false).expect("sent");
    send.send_data(bytes::Bytes::from(body.to_string()), true)
        .expect("body sent");
    let mut received = response.await.expect("answered").into_body();
    let mut answer = Vec::new();
    while let Some(chunk) = received.data().await {
        let chunk = chunk.expect("body chunk");
        let _ = received.flow_control().release_capacity(chunk.len());
        answer.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&answer).expect("JSON answer")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_advertises_its_stream_limit_and_serves_more_callers_than_it_in_turn() {
    const STREAMS: u32 = 4;
    let gw = TestGateway::builder()
        .config(|c| c.server.http2_max_concurrent_streams = STREAMS)
        .sim(|s| s.latency = Duration::from_millis(100))
        .start()
        .await;
    let stream = TcpStream::connect(gw.addr).await.expect("connect");
    let (mut client, mut connection) = h2::client::handshake(stream).await.expect("h2 handshake");
    let (ask, asked) = tokio::sync::oneshot::channel::<()>();
    let driver = tokio::spawn(async move {
        tokio::select! {
            _ = &mut connection => None,
            _ = asked => Some(connection.max_concurrent_send_streams()),
        }
    });
    let first = get_body(&["user60"], &[NICK]);
    assert_eq!(
        h2_portrait_get(&mut client, gw.addr, &first).await,
        gw.alone(&first)
    );
    // Three times as many callers at once as streams on one connection: the client waits for
    // the streams the gateway advertised, and every caller is answered.
    let callers = (0..STREAMS * 3).map(|i| {
        let mut client = client.clone();
        let body = get_body(&[&format!("user{}", 61 + i)], &[NICK]);
        let addr = gw.addr;
        async move { (h2_portrait_get(&mut client, addr, &body).await, body) }
    });
    for (answer, body) in futures_util::future::join_all(callers).await {
        assert_eq!(answer, gw.alone(&body));
    }
    let _ = ask.send(());
    let advertised = driver
        .await
        .expect("driver")
        .expect("connection still open");
    assert_eq!(
        advertised, STREAMS as usize,
        "SETTINGS_MAX_CONCURRENT_STREAMS"
    );
    gw.shutdown().await;
}

/// An HTTP/2 connection that served a request, then stopped reading (its client frozen: it
/// answers no PING): open after `wait`, or closed by the gateway?
async fn h2_connection_open_after(wait: Duration, answer_pings: bool) -> bool {
    let gw = TestGateway::builder()
        .config(|c| {
            c.server.idle_timeout = Duration::from_secs(30);
            c.server.http2_keep_alive_interval = Duration::from_millis(300);
            c.server.http2_keep_alive_timeout = Duration::from_millis(300);
        })
        .start()
        .await;
    let stream = TcpStream::connect(gw.addr).await.expect("connect");
    let (mut client, connection) = h2::client::handshake(stream).await.expect("h2 handshake");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let driver = tokio::spawn(async move {
        let mut connection = connection;
        tokio::select! {
            _ = &mut connection => None,
            _ = stopped => Some(connection),
        }
    });
    let body = get_body(&["user70"], &[NICK]);
    assert_eq!(
        h2_portrait_get(&mut client, gw.addr, &body).await,
        gw.alone(&body)
    );
    let connection = if answer_pings {
        tokio::time::sleep(wait).await;
        let _ = stop.send(());
        driver.await.expect("driver")
    } else {
        let _ = stop.send(());
        let frozen = driver.await.expect("driver");
        tokio::time::sleep(wait).await;
        frozen
    };
    // Reading again: a connection the gateway closed ends at once (EOF after its GOAWAY).
    let open = match connection {
        Some(connection) => tokio::time::timeout(Duration::from_millis(500), connection)
            .await
            .is_err(),
        None => false,
    };
    gw.shutdown().await;
    open
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_client_that_answers_no_ping_is_closed_and_one_that_does_is_kept() {
    // Interval 300 ms + timeout 300 ms, well under the 30 s idle timeout.
    let wait = Duration::from_secs(2);
    assert!(
        !h2_connection_open_after(wait, false).await,
        "a client that answered no PING for {wait:?} is still connected"
    );
    assert!(
        h2_connection_open_after(wait, true).await,
        "a client answering its PINGs was dropped"
    );
}

/// One HTTP/2 frame: length, type, flags, stream id, payload.
fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let length = (payload.len() as u32).to_be_bytes();
    let mut frame = vec![length[1], length[2], length[3], kind, flags];
    frame.extend_from_slice(&stream.to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// Reads frames until one of `kind` on `stream` arrives (its flags), or the connection ends
/// (`None`); the gateway's SETTINGS are acknowledged on the way.
async fn h2_read_until(conn: &mut TcpStream, kind: u8, stream: u32) -> Option<u8> {
    use tokio::io::AsyncReadExt;
    loop {
        let mut head = [0u8; 9];
        conn.read_exact(&mut head).await.ok()?;
        let length = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let (frame_kind, flags) = (head[3], head[4]);
        let frame_stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        let mut payload = vec![0u8; length];
        conn.read_exact(&mut payload).await.ok()?;
        if frame_kind == 4 && flags & 1 == 0 {
            conn.write_all(&h2_frame(4, 1, 0, &[])).await.ok()?;
        }
        if frame_kind == kind && frame_stream == stream {
            return Some(flags);
        }
    }
}

/// A later stream's header block left unfinished (HEADERS without END_HEADERS, then no
/// CONTINUATION): HTTP/2 lets no other frame in until it ends (a PING answer would be a
/// protocol error), so the whole connection is stalled; with no request in flight the gateway
/// closes it at `server.idle_timeout` after its last request (looked at least every
/// `server.header_read_timeout`), long before the keep-alive ping (30 s here) would notice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_header_block_left_unfinished_on_a_later_stream_is_closed_at_the_idle_timeout() {
    let gw = TestGateway::builder()
        .config(|c| {
            c.server.idle_timeout = Duration::from_secs(1);
            c.server.header_read_timeout = Duration::from_secs(1);
            c.server.http2_keep_alive_interval = Duration::from_secs(30);
            c.server.http2_keep_alive_timeout = Duration::from_secs(30);
        })
        .start()
        .await;
    let mut conn = TcpStream::connect(gw.addr).await.expect("connect");
    conn.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .expect("preface");
    conn.write_all(&h2_frame(4, 0, 0, &[]))
        .await
        .expect("settings");
    // Stream 1, whole: GET /healthz (HPACK: :method GET, :scheme http, :path, :authority).
    let mut block = vec![0x82, 0x86, 0x04, 8];
    block.extend_from_slice(b"/healthz");
    block.extend_from_slice(&[0x01, 9]);
    block.extend_from_slice(b"127.0.0.1");
    let end_headers_and_stream = 0x4 | 0x1;
    let first = h2_frame(1, end_headers_and_stream, 1, &block);
    conn.write_all(&first).await.expect("stream 1");
    let answered = h2_read_until(&mut conn, 1, 1).await;
    assert!(answered.is_some(), "stream 1 was answered");
    // Stream 3: the first half of a header block, then nothing.
    conn.write_all(&h2_frame(1, 0, 3, &[0x82, 0x86]))
        .await
        .expect("stream 3");
    let stalled_at = Instant::now();
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        // GOAWAY (type 7) on stream 0, or the connection's end.
        h2_read_until(&mut conn, 7, 0).await;
    })
    .await;
    let took = stalled_at.elapsed();
    assert!(
        closed.is_ok(),
        "the stalled connection was still open after 10 s"
    );
    eprintln!("stalled connection closed after {took:?}");
    let bound = Duration::from_secs(3);
    assert!(
        took < bound,
        "closed after {took:?}, not at the idle timeout"
    );
    // Not at once either: a half header block is not itself refused, the idle rule ends it.
    assert!(took >= Duration::from_millis(500), "closed after {took:?}");
    gw.shutdown().await;
}
