//! The system under load: the simulated Tencent and the gateway (`tim_gateway::run`, real HTTP
//! upstream client) in this process on 127.0.0.1 port 0, on a multi-threaded runtime of their
//! own. Also scrapes the gateway's `/metrics`, reads the sim's call log and this process's RSS.
//! Owns no load and no scenario logic.

use std::collections::HashMap;
use std::io::{Read as _, Write as _};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tim_gateway::config::{AuthMode, Config, SecretKey};
use tim_gateway::sim::{Api, Sim, SimCall, SimConfig, DEMO_SECRET_KEY};
use tokio::sync::oneshot;

/// A running sim + gateway pair and the runtime they live on.
pub struct Stack {
    /// The gateway's address.
    pub addr: SocketAddr,
    pub sim: Sim,
    shutdown: oneshot::Sender<()>,
    gateway: tokio::task::JoinHandle<()>,
    /// Dropped last: owns every server-side task.
    rt: tokio::runtime::Runtime,
}

/// The gateway config the scenarios start from: sim key, no caller auth (parity with nginx),
/// a TTL longer than any run, room for 10M (account, tag) pairs, a short drain.
pub fn base_config() -> Config {
    let mut config = Config::default();
    config.upstream.secret_key = SecretKey::new(DEMO_SECRET_KEY.to_owned());
    config.auth.mode = AuthMode::None;
    config.cache.ttl = Duration::from_secs(3600);
    config.cache.max_entries = 10_000_000;
    config.server.shutdown_grace = Duration::from_secs(2);
    config.server.drain_announce = Duration::ZERO;
    config
}

// === impl Stack ===

impl Stack {
    /// Starts the sim with `sim` and the gateway with `config` pointed at it.
    pub fn start(sim: SimConfig, mut config: Config) -> Stack {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("server runtime");
        let (sim, listener) = rt.block_on(async {
            let sim = Sim::start(sim).await.expect("sim starts");
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind the gateway");
            (sim, listener)
        });
        config.upstream.base_url = sim.base_url().parse().expect("sim url");
        let addr = listener.local_addr().expect("gateway address");
        let (shutdown, stop) = oneshot::channel::<()>();
        let gateway = rt.spawn(tim_gateway::run(config, listener, async {
            let _ = stop.await;
        }));
        Stack {
            addr,
            sim,
            shutdown,
            gateway,
            rt,
        }
    }

    /// Scrapes the gateway's `/metrics` (see [`metrics`]).
    pub fn metrics(&self) -> HashMap<String, f64> {
        metrics(self.addr)
    }

    /// The sim's `portrait_get` calls, in arrival order.
    pub fn upstream_gets(&self) -> Vec<SimCall> {
        upstream_gets(&self.sim)
    }

    /// Stops the gateway (draining), then the sim, then the runtime.
    pub fn stop(self) {
        let Stack {
            sim,
            shutdown,
            gateway,
            rt,
            ..
        } = self;
        let _ = shutdown.send(());
        rt.block_on(async {
            let _ = gateway.await;
            sim.shutdown().await;
        });
    }
}

/// Scrapes `/metrics` of the gateway at `addr`: sample (name with labels) -> value.
pub fn metrics(addr: SocketAddr) -> HashMap<String, f64> {
    let text = http_get(addr, "/metrics");
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            Some((name.to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// `sim`'s `portrait_get` calls, in arrival order.
pub fn upstream_gets(sim: &Sim) -> Vec<SimCall> {
    let mut calls = sim.calls();
    calls.retain(|c| c.api == Api::PortraitGet);
    calls
}

/// The calls of `calls` that arrived in `[from, until)`.
pub fn within(calls: &[SimCall], from: Instant, until: Instant) -> Vec<&SimCall> {
    calls
        .iter()
        .filter(|c| c.at >= from && c.at < until)
        .collect()
}

/// The most calls that arrived within any sliding one-second window `(t - 1s, t]`.
pub fn max_in_any_second(calls: &[SimCall]) -> usize {
    let mut times: Vec<Instant> = calls.iter().map(|c| c.at).collect();
    times.sort_unstable();
    let (mut first, mut max) = (0, 0);
    for (last, t) in times.iter().enumerate() {
        while t.duration_since(times[first]) >= Duration::from_secs(1) {
            first += 1;
        }
        max = max.max(last - first + 1);
    }
    max
}

/// This process's resident set size in bytes (`VmRSS` in /proc/self/status).
pub fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// A blocking `GET path` on a fresh connection; the body as text.
fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut stream = std::net::TcpStream::connect(addr).expect("connect for GET");
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).expect("send GET");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read GET answer");
    answer
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default()
}
