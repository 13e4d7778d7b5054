//! The soak's load and judge; `benches/soak.sh` starts the processes and runs this against them.
//!
//! ```sh
//! cargo bench --bench soak -- --gateway 127.0.0.1:PORT --pid GATEWAY_PID [--seconds 600] [--warmup 300]
//! ```
//!
//! Sends the S4 mix (Zipf s = 1.0 accounts, 1-20 accounts x 1-4 tags per request, 64
//! closed-loop keep-alive connections; see `load/mix.rs`) to a gateway *process* for
//! `--seconds`, and judges every answer against the sim's own answer to the same body, computed
//! in this process by an identical (deterministic) sim: each request must get exactly one HTTP
//! 200 answer that is either that answer or a Tencent-shaped failure. Every 10 s it samples the
//! gateway's RSS and open file descriptors (`/proc/PID`). Exits 1 if any request went
//! unanswered or was answered wrongly, or if RSS or fds grew after `--warmup`. Run only by
//! `cargo bench` (which passes `--bench`); under `cargo test` it does nothing.

#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use parking_lot::Mutex;
use rand::seq::SliceRandom as _;
use rand::Rng as _;
use serde_json::Value;
use tim_gateway::sim::{Sim, SimConfig};

#[path = "common/inmem.rs"]
mod inmem;
#[allow(dead_code)] // accounts_for: S4 sizes its sim with it; the soak's sim has a fixed size
#[path = "load/zipf.rs"]
mod zipf;

const CONNS: usize = 64;
/// Small enough that every readable account exists in the default sim (1,000,000 accounts).
const POPULATION: usize = 980_000;
const ZIPF_S: f64 = 1.0;
const MAX_ACCOUNTS: usize = 20;
const SAMPLE_EVERY: Duration = Duration::from_secs(10);
/// Longer than any answer the gateway gives (its upstream timeout and queue deadline).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Allowed RSS growth after warm-up (allocator noise), in percent of the warm RSS.
const RSS_SLACK_PERCENT: u64 = 10;

struct Args {
    gateway: SocketAddr,
    pid: u32,
    seconds: u64,
    warmup: u64,
}

/// What happened to the requests so far.
#[derive(Default)]
struct Tally {
    sent: u64,
    correct: u64,
    /// Failures by `ErrorCode` ("per-account CODE" when only some entries failed).
    errors: BTreeMap<String, u64>,
    wrong: u64,
    unanswered: u64,
    first_wrong: Option<String>,
}

/// One `/proc` sample of the gateway.
struct Sample {
    at_seconds: u64,
    rss_kb: u64,
    fds: u64,
    sent: u64,
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let args = parse_args();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let passed = runtime.block_on(soak(args));
    std::process::exit(if passed { 0 } else { 1 });
}

fn parse_args() -> Args {
    let argv: Vec<String> = std::env::args().collect();
    let value = |name: &str| {
        argv.iter()
            .position(|a| a == name)
            .and_then(|i| argv.get(i + 1))
            .cloned()
    };
    let usage = "usage: soak --gateway ADDR --pid PID [--seconds N] [--warmup N]";
    Args {
        gateway: value("--gateway")
            .and_then(|v| v.parse().ok())
            .expect(usage),
        pid: value("--pid").and_then(|v| v.parse().ok()).expect(usage),
        seconds: value("--seconds").map_or(600, |v| v.parse().expect(usage)),
        warmup: value("--warmup").map_or(300, |v| v.parse().expect(usage)),
    }
}

async fn soak(args: Args) -> bool {
    // Only `answer_portrait_get` is used: no HTTP reaches this sim.
    let oracle = Arc::new(Sim::start(SimConfig::default()).await.expect("oracle sim"));
    let zipf = Arc::new(zipf::Zipf::new(POPULATION, ZIPF_S));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let client = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(CONNS)
        .build_http::<Full<Bytes>>();
    let url = format!("http://{}/v4/profile/portrait_get", args.gateway);
    let start = Instant::now();
    let until = start + Duration::from_secs(args.seconds);
    eprintln!(
        "soak: S4 mix on {CONNS} connections to {} for {} s (warm-up {} s)",
        args.gateway, args.seconds, args.warmup
    );
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..CONNS {
        let (client, url, oracle) = (client.clone(), url.clone(), Arc::clone(&oracle));
        let (zipf, tally) = (Arc::clone(&zipf), Arc::clone(&tally));
        tasks.spawn(async move {
            while Instant::now() < until {
                let body = mix_body(&zipf);
                let verdict = ask(&client, &url, &body, &oracle).await;
                record(&tally, verdict);
            }
        });
    }
    let samples = sample_until(args.pid, start, until, &tally).await;
    while tasks.join_next().await.is_some() {}
    let tally = std::mem::take(&mut *tally.lock());
    report(&args, &tally, &samples)
}

/// An S4 request body: 1-20 distinct Zipf-drawn readable accounts, 1-4 of the bench tags.
fn mix_body(zipf: &zipf::Zipf) -> String {
    let mut rng = rand::rng();
    let want = rng.random_range(1..=MAX_ACCOUNTS);
    let mut numbers: Vec<u64> = Vec::with_capacity(want);
    for _ in 0..want * 50 {
        let n = inmem::readable_account(zipf.sample(&mut rng) as u64);
        if !numbers.contains(&n) {
            numbers.push(n);
        }
        if numbers.len() == want {
            break;
        }
    }
    let mut tags = inmem::BENCH_TAGS;
    tags.shuffle(&mut rng);
    inmem::body_with(&numbers, &tags[..rng.random_range(1..=4)])
}

enum Verdict {
    Correct,
    Error(String),
    Wrong(String),
    Unanswered(String),
}

async fn ask(
    client: &Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    url: &str,
    body: &str,
    oracle: &Sim,
) -> Verdict {
    let request = http::Request::post(url)
        .body(Full::new(Bytes::from(body.to_owned())))
        .expect("request");
    let answer = tokio::time::timeout(REQUEST_TIMEOUT, async {
        let response = client.request(request).await.map_err(|e| e.to_string())?;
        let status = response.status();
        let bytes = response.into_body().collect().await;
        Ok::<_, String>((status, bytes.map_err(|e| e.to_string())?.to_bytes()))
    })
    .await;
    let (status, bytes) = match answer {
        Err(_) => return Verdict::Unanswered(format!("no answer in {REQUEST_TIMEOUT:?}")),
        Ok(Err(e)) => return Verdict::Unanswered(e),
        Ok(Ok(answered)) => answered,
    };
    let Ok(got) = serde_json::from_slice::<Value>(&bytes) else {
        return Verdict::Wrong(format!("HTTP {status}, not JSON"));
    };
    if status != 200 {
        return Verdict::Wrong(format!("HTTP {status}: {got}"));
    }
    if got["ActionStatus"] == "FAIL" && got["ErrorCode"].as_i64().is_some_and(|c| c != 0) {
        return Verdict::Error(got["ErrorCode"].to_string());
    }
    let expected: Value =
        serde_json::from_slice(&oracle.answer_portrait_get(body.as_bytes())).expect("oracle");
    judge_ok(&got, &expected)
}

/// An OK answer is correct if it is Tencent's; entries may differ only by failing on their own.
fn judge_ok(got: &Value, expected: &Value) -> Verdict {
    if got == expected {
        return Verdict::Correct;
    }
    let entries = |v: &Value| v["UserProfileItem"].as_array().cloned().unwrap_or_default();
    let (got_entries, expected_entries) = (entries(got), entries(expected));
    let per_account_failure = got_entries.len() == expected_entries.len()
        && got_entries
            .iter()
            .zip(&expected_entries)
            .all(|(g, e)| g == e || g["ResultCode"].as_i64().is_some_and(|c| c != 0));
    match got_entries.iter().find(|g| g["ResultCode"] != 0) {
        Some(failed) if per_account_failure => {
            Verdict::Error(format!("per-account {}", failed["ResultCode"]))
        }
        _ => Verdict::Wrong(format!("got {got}\nexpected {expected}")),
    }
}

fn record(tally: &Mutex<Tally>, verdict: Verdict) {
    let mut tally = tally.lock();
    tally.sent += 1;
    match verdict {
        Verdict::Correct => tally.correct += 1,
        Verdict::Error(code) => *tally.errors.entry(code).or_default() += 1,
        Verdict::Wrong(what) => {
            tally.wrong += 1;
            tally.first_wrong.get_or_insert(what);
        }
        Verdict::Unanswered(what) => {
            tally.unanswered += 1;
            tally.first_wrong.get_or_insert(what);
        }
    }
}

async fn sample_until(
    pid: u32,
    start: Instant,
    until: Instant,
    tally: &Mutex<Tally>,
) -> Vec<Sample> {
    let mut samples = Vec::new();
    let mut next = start;
    while next <= until {
        tokio::time::sleep_until(next.into()).await;
        let (rss_kb, fds) = proc_figures(pid);
        samples.push(Sample {
            at_seconds: next.duration_since(start).as_secs(),
            rss_kb,
            fds,
            sent: tally.lock().sent,
        });
        next += SAMPLE_EVERY;
    }
    samples
}

/// The process's resident set (kB) and open file descriptors; zeros if it is gone.
fn proc_figures(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count() as u64);
    (rss, fds)
}

fn report(args: &Args, tally: &Tally, samples: &[Sample]) -> bool {
    println!("t (s)   RSS (MB)   fds   requests sent");
    let last = samples.last().map(|s| s.at_seconds);
    for s in samples
        .iter()
        .filter(|s| s.at_seconds % 60 == 0 || Some(s.at_seconds) == last)
    {
        let mb = s.rss_kb as f64 / 1024.0;
        println!(
            "{:>5}   {mb:>8.1}   {:>3}   {:>13}",
            s.at_seconds, s.fds, s.sent
        );
    }
    let warm: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.at_seconds >= args.warmup)
        .collect();
    let first = warm.first().map_or(0, |s| s.rss_kb);
    let max_rss = warm.iter().map(|s| s.rss_kb).max().unwrap_or(0);
    let last_rss = warm.last().map_or(0, |s| s.rss_kb);
    let (min_fds, max_fds) = (
        warm.iter().map(|s| s.fds).min().unwrap_or(0),
        warm.iter().map(|s| s.fds).max().unwrap_or(0),
    );
    let errors: u64 = tally.errors.values().sum();
    println!(
        "requests: {} sent, {} correct, {errors} errors {:?}, {} wrong, {} unanswered",
        tally.sent, tally.correct, tally.errors, tally.wrong, tally.unanswered
    );
    println!(
        "after warm-up: RSS {:.1} MB at {} s, max {:.1} MB, last {:.1} MB; fds {min_fds}..={max_fds}",
        first as f64 / 1024.0,
        args.warmup,
        max_rss as f64 / 1024.0,
        last_rss as f64 / 1024.0
    );
    if let Some(what) = &tally.first_wrong {
        println!("first wrong or unanswered: {what}");
    }
    let answered_once = tally.wrong == 0 && tally.unanswered == 0;
    let rss_flat = last_rss <= first + first * RSS_SLACK_PERCENT / 100;
    // A few fds come and go with upstream connections being re-dialled after faults.
    let fds_flat = max_fds <= min_fds + 8;
    println!("verdict: answered exactly once, correct or an error: {answered_once}; RSS flat: {rss_flat}; fds flat: {fds_flat}");
    answered_once && rss_flat && fds_flat
}
