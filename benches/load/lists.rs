//! S8 (issue 24): `openim/query_online_status` coalesced. Open loop: 1,000 callers' requests
//! per second, each of 20 distinct accounts drawn Zipf (s = 1.0) from 10,000, the sim answering
//! after 20 ms. Measured twice in one run: through the gateway (`[list_apis]` on, `ttl_ms = 0`:
//! coalescing only, every answer fresh from the upstream) and straight at the sim (its limit
//! lifted, as calling Tencent without the gateway would need 1,000 calls/s against its 200).
//! Reports upstream calls/s, ids per call and the answer latency p50/p99 of both.
//!
//! Then the same load spread over four gateway processes (S7's fleet: the release binary,
//! `TIM_GATEWAY_BIN`), twice: sharing one `redis-server` (one budget of 200/s, the shared tier
//! and the fleet-wide single flight of each id) and each alone with a quarter of the budget:
//! what the fleet sends upstream for the same callers. Skipped without a binary or Redis.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use tim_gateway::apis::QUERY_ONLINE_STATUS;
use tim_gateway::config::ListApiConfig;
use tim_gateway::sim::{SimCall, SimConfig, DEMO_SECRET_KEY};

use crate::fleet::{fleet_bin, Fleet};
use crate::report::Table;
use crate::stack::{self, Stack};
use crate::zipf::{readable_account, Zipf};
use crate::Timing;

const NAME: &str = "S8";
const POPULATION: usize = 10_000;
const ZIPF_S: f64 = 1.0;
const IDS_PER_REQUEST: usize = 20;
const REQUESTS_PER_SECOND: u64 = 1_000;
const UPSTREAM_LATENCY: Duration = Duration::from_millis(20);

/// What one open-loop run saw.
struct Seen {
    /// Answer latencies of the measured window, µs, sorted.
    latencies: Vec<u32>,
    /// Answers that were not `ActionStatus: OK` (or no answer).
    failed: usize,
    sent: usize,
}

pub fn run(table: &mut Table, timing: Timing) {
    let zipf = Arc::new(Zipf::new(POPULATION, ZIPF_S));
    let sim = SimConfig {
        latency: UPSTREAM_LATENCY,
        // Lifted for the direct run; the gateway keeps its own 200/s.
        requests_per_second: 0,
        ..SimConfig::default()
    };
    let mut config = stack::base_config();
    let on = ListApiConfig {
        enabled: true,
        ttl: Duration::ZERO,
    };
    config
        .list_apis
        .by_label
        .insert(QUERY_ONLINE_STATUS.label, on);
    let query = signed_query(&config);
    let stack = Stack::start(sim.clone(), config);
    for (what, target, query) in [
        ("gateway", stack.addr, String::new()),
        ("direct", stack.sim.addr(), query),
    ] {
        let _warmup = drive(&[target], &query, &zipf, timing.warmup);
        let from = Instant::now();
        let seen_measured = drive(&[target], &query, &zipf, timing.measure);
        let until = Instant::now();
        let calls = calls_between(&stack.sim, from, until);
        report(table, what, &seen_measured, &calls, until - from);
    }
    stack.stop();
    if let Some(bin) = fleet_bin(NAME) {
        across_a_fleet(table, timing, &bin, &zipf, sim);
    }
}

/// The load over four gateway processes, with one Redis and without.
fn across_a_fleet(
    table: &mut Table,
    timing: Timing,
    bin: &std::path::Path,
    zipf: &Arc<Zipf>,
    sim: SimConfig,
) {
    const GATEWAYS: usize = 4;
    let dir = std::env::temp_dir().join(format!("tim-gateway-s8-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("config dir");
    for (what, shared) in [
        ("4 gateways, one Redis", true),
        ("4 gateways, no Redis", false),
    ] {
        // The app's 200/s: the fleet's one budget, or a quarter for each gateway alone.
        let rate = if shared { 200 } else { 200 / GATEWAYS };
        let file = dir.join(format!("lists-{shared}.toml"));
        let config = format!(
            "[list_apis.\"{label}\"]\nttl_ms = 0\n[passthrough.limits]\n\"{label}\" = {rate}\n",
            label = QUERY_ONLINE_STATUS.label
        );
        std::fs::write(&file, config).expect("config file");
        let fleet = Fleet::start_with(bin, sim.clone(), GATEWAYS, shared, &file);
        let _warmup = drive(fleet.addrs(), "", zipf, timing.warmup);
        let from = Instant::now();
        let seen = drive(fleet.addrs(), "", zipf, timing.measure);
        let until = Instant::now();
        let calls = calls_between(fleet.sim(), from, until);
        report(table, what, &seen, &calls, until - from);
        fleet.stop();
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn report(table: &mut Table, what: &str, seen: &Seen, calls: &[SimCall], took: Duration) {
    let secs = took.as_secs_f64();
    let ids: usize = calls.iter().map(|c| c.accounts.len()).sum();
    table.info(
        NAME,
        &format!("{what}: requests/s sent"),
        format!("{:.0}", seen.sent as f64 / secs),
    );
    table.info(NAME, &format!("{what}: answers not OK"), seen.failed);
    table.latencies(NAME, what, &seen.latencies);
    table.info(
        NAME,
        &format!("{what}: upstream calls/s"),
        format!("{:.1}", calls.len() as f64 / secs),
    );
    let per_call = ids as f64 / calls.len().max(1) as f64;
    table.info(
        NAME,
        &format!("{what}: ids per upstream call"),
        format!("{per_call:.1}"),
    );
    let asked = seen.sent * IDS_PER_REQUEST;
    let ratio = asked as f64 / ids.max(1) as f64;
    table.info(
        NAME,
        &format!("{what}: ids asked / ids sent upstream"),
        format!("{ratio:.2}"),
    );
}

fn calls_between(sim: &tim_gateway::sim::Sim, from: Instant, until: Instant) -> Vec<SimCall> {
    let calls = sim.calls();
    stack::within(&calls, from, until)
        .into_iter()
        .filter(|c| c.path == QUERY_ONLINE_STATUS.path)
        .cloned()
        .collect()
}

/// An admin query the sim accepts (the gateway's callers need none: `auth.mode = none`).
fn signed_query(config: &tim_gateway::config::Config) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (sdkappid, identifier) = (config.upstream.sdkappid, &config.upstream.identifier);
    let sig = tim_gateway::usersig::sign(sdkappid, DEMO_SECRET_KEY, identifier, now, 86_400);
    format!("?sdkappid={sdkappid}&identifier={identifier}&usersig={sig}&random=1&contenttype=json")
}

/// Sends [`REQUESTS_PER_SECOND`] requests per second for `duration`, each on its own task (an
/// open loop: a slow answer does not slow the senders), and waits for every answer.
fn drive(targets: &[SocketAddr], query: &str, zipf: &Arc<Zipf>, duration: Duration) -> Seen {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("client runtime");
    rt.block_on(async {
        let client: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(4096)
            .build_http();
        let uris: Vec<String> = targets
            .iter()
            .map(|target| format!("http://{target}{}{query}", QUERY_ONLINE_STATUS.path))
            .collect();
        let mut sent = 0usize;
        let mut ticks =
            tokio::time::interval(Duration::from_micros(1_000_000 / REQUESTS_PER_SECOND));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let end = Instant::now() + duration;
        let mut tasks = tokio::task::JoinSet::new();
        let mut rng = rand::rng();
        while Instant::now() < end {
            ticks.tick().await;
            let body = request_body(zipf, &mut rng);
            // Round robin over the targets.
            let uri = uris[sent % uris.len()].clone();
            sent += 1;
            let client = client.clone();
            tasks.spawn(async move {
                let started = Instant::now();
                let ok = answer_ok(&client, &uri, body).await;
                (started.elapsed().as_micros() as u32, ok)
            });
        }
        let mut seen = Seen {
            latencies: Vec::new(),
            failed: 0,
            sent: 0,
        };
        while let Some(done) = tasks.join_next().await {
            let (micros, ok) = done.unwrap_or((u32::MAX, false));
            seen.sent += 1;
            seen.failed += usize::from(!ok);
            seen.latencies.push(micros);
        }
        seen.latencies.sort_unstable();
        seen
    })
}

async fn answer_ok(client: &Client<HttpConnector, Full<Bytes>>, uri: &str, body: String) -> bool {
    let request = http::Request::post(uri)
        .body(Full::new(Bytes::from(body)))
        .expect("request");
    let Ok(response) = client.request(request).await else {
        return false;
    };
    let Ok(body) = response.into_body().collect().await else {
        return false;
    };
    crate::client::find(&body.to_bytes(), br#""ActionStatus":"OK""#).is_some()
}

/// 20 distinct accounts, Zipf-popular.
fn request_body(zipf: &Zipf, rng: &mut impl rand::Rng) -> String {
    let mut ranks: Vec<usize> = Vec::with_capacity(IDS_PER_REQUEST);
    while ranks.len() < IDS_PER_REQUEST {
        let rank = zipf.sample(rng);
        if !ranks.contains(&rank) {
            ranks.push(rank);
        }
    }
    let ids: Vec<String> = ranks
        .iter()
        .map(|r| format!("\"user{}\"", readable_account(*r as u64)))
        .collect();
    format!("{{\"To_Account\":[{}]}}", ids.join(","))
}
