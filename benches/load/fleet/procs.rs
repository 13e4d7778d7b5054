//! S7's system under load: a `redis-server` and any number of gateway processes on free
//! loopback ports, configured by env vars, plus the sim on a runtime of this process. Starts
//! them, waits until every gateway reports its mode (and in a fleet, that Redis's first lease
//! is over), drives the load over all of them, scrapes their `/metrics` and Redis's `INFO` at
//! both ends of the measured window, reads the sim's call log and the gateways' logs, and
//! stops everything (SIGTERM, then wait). Owns no figures: `fleet.rs` and `sizes.rs` read them.

use std::fs::File;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tim_gateway::sim::{Sim, SimConfig, DEMO_SECRET_KEY};

use super::cpu::CpuSample;
use super::redis_info::RedisInfo;
use super::{Run, Scrape, FALLBACK_LOG, FLEET_RPS, READY_WITHIN, STOP_WITHIN};
use crate::client::{self, Plan, Workload};
use crate::stack;
use crate::Timing;

/// 1 while a gateway's Redis budget state is younger than one lease.
const LEARNING: &str = "tim_gateway_fleet_learning";
/// Gateway 0's `fleet.redis_timeout_ms` alone, when set: one gateway that keeps dropping to
/// fallback while the others stay in fleet mode.
const GATEWAY0_REDIS_TIMEOUT_VAR: &str = "S7_GATEWAY0_REDIS_TIMEOUT_MS";

/// The sim, an optional Redis and the gateway processes.
pub struct Fleet {
    sim: Sim,
    gateways: Vec<Process>,
    addrs: Vec<SocketAddr>,
    redis: Option<(Process, SocketAddr)>,
    /// Every process's output; removed after a clean stop, kept (and named) otherwise.
    dir: PathBuf,
    /// Runs the sim; dropped last.
    rt: tokio::runtime::Runtime,
}

/// A child process and the name its log and messages use.
struct Process {
    name: String,
    child: Child,
}

// === impl Fleet ===

impl Fleet {
    /// Starts the sim with `sim` and `count` gateways `bin`; `shared`: with one Redis and the
    /// fleet's budget, otherwise standalone with an equal part of it each.
    pub fn start(bin: &Path, sim: SimConfig, count: usize, shared: bool) -> Fleet {
        Fleet::start_with(bin, sim, count, shared, Path::new("/dev/null"))
    }

    /// As [`Fleet::start`], the gateways reading `config` (a file) under their env vars.
    pub fn start_with(
        bin: &Path,
        sim: SimConfig,
        count: usize,
        shared: bool,
        config: &Path,
    ) -> Fleet {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("sim runtime");
        let sim = rt.block_on(Sim::start(sim)).expect("sim starts");
        let dir = std::env::temp_dir().join(format!("tim-gateway-s7-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("log dir");
        let redis = shared.then(|| start_redis(&dir));
        let rps = if shared { FLEET_RPS } else { FLEET_RPS / count };
        let redis_url = redis.as_ref().map(|(_, addr)| format!("redis://{addr}/0"));
        let addrs: Vec<SocketAddr> = (0..count).map(|_| free_addr()).collect();
        let mut gateways: Vec<Process> = addrs
            .iter()
            .enumerate()
            .map(|(i, addr)| {
                let redis_url = redis_url.as_deref();
                let command = gateway_command(bin, config, i, *addr, &sim, rps, redis_url);
                Process::spawn(format!("gateway-{i}"), command, &dir)
            })
            .collect();
        let mode = if shared { "fleet" } else { "standalone" };
        for (gateway, addr) in gateways.iter_mut().zip(&addrs) {
            gateway.wait_for_mode(*addr, mode, &dir);
        }
        // A fresh Redis's first lease grows no share and opens no pool (README, "Running a
        // fleet"): the load starts on a fleet past it, as a fleet runs after its first seconds.
        for (gateway, addr) in gateways.iter_mut().zip(&addrs).filter(|_| shared) {
            gateway.wait_for(*addr, LEARNING, 0.0, &dir);
        }
        Fleet {
            sim,
            gateways,
            addrs,
            redis,
            dir,
            rt,
        }
    }

    /// Runs `workload` on `conns` closed-loop connections spread over the gateways (see
    /// [`Fleet::run_paced`]).
    pub(super) fn run<W: Workload>(self, workload: Arc<W>, conns: usize, timing: Timing) -> Run {
        self.run_paced(workload, conns, timing, Duration::ZERO)
    }

    /// Runs `workload` on `conns` connections spread over the gateways, each waiting `think`
    /// after an answer, scraping every gateway and Redis when the measured window opens and
    /// when it closes, then stops the fleet.
    pub(super) fn run_paced<W: Workload>(
        self,
        workload: Arc<W>,
        conns: usize,
        timing: Timing,
        think: Duration,
    ) -> Run {
        let plan = Plan::starting_now(conns, timing).paced(think);
        let load = client::start(&self.addrs, workload, plan);
        std::thread::sleep(plan.measure_from.saturating_duration_since(Instant::now()));
        let (cpu_before, redis_before) = (self.cpu(), self.redis_info());
        let before = self.scrape();
        std::thread::sleep(plan.until.saturating_duration_since(Instant::now()));
        let (cpu_after, redis_after) = (self.cpu(), self.redis_info());
        let after = self.scrape();
        let result = load.join().expect("load client");
        let redis = redis_before.zip(redis_after).map(|(b, a)| b.until(&a));
        let calls = stack::upstream_gets(&self.sim);
        let fallbacks = self.gateway_log_lines(FALLBACK_LOG);
        self.stop();
        Run {
            plan,
            result,
            before,
            after,
            calls,
            fallbacks,
            redis,
            cpu: cpu_before.until(&cpu_after),
        }
    }

    /// The gateways' addresses, in order.
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// The sim they call.
    pub fn sim(&self) -> &Sim {
        &self.sim
    }

    /// The CPU used so far by the gateways, this process, Redis and the machine.
    fn cpu(&self) -> CpuSample {
        let gateways: Vec<u32> = self.gateways.iter().map(|g| g.child.id()).collect();
        CpuSample::take(&gateways, self.redis.as_ref().map(|(r, _)| r.child.id()))
    }

    /// Redis's `INFO all` now, if this fleet has a Redis.
    fn redis_info(&self) -> Option<RedisInfo> {
        self.redis.as_ref().map(|(_, addr)| RedisInfo::take(*addr))
    }

    /// Lines containing `text` in the gateways' logs so far.
    fn gateway_log_lines(&self, text: &str) -> usize {
        self.gateways
            .iter()
            .map(|g| std::fs::read_to_string(self.dir.join(format!("{}.log", g.name))))
            .map(|log| {
                log.unwrap_or_default()
                    .lines()
                    .filter(|l| l.contains(text))
                    .count()
            })
            .sum()
    }

    fn scrape(&self) -> Scrape {
        self.addrs.iter().map(|a| stack::metrics(*a)).collect()
    }

    /// Stops the gateways (draining, all at once), then Redis, then the sim.
    pub fn stop(self) {
        let Fleet {
            sim,
            gateways,
            redis,
            dir,
            rt,
            ..
        } = self;
        let mut clean = stop_all(gateways);
        clean &= stop_all(redis.map(|(p, _)| p));
        rt.block_on(sim.shutdown());
        if clean {
            let _ = std::fs::remove_dir_all(&dir);
        } else {
            eprintln!("S7: logs kept in {}", dir.display());
        }
    }
}

/// SIGTERM to every process, then waits for each until one [`STOP_WITHIN`] from now; whether
/// all exited cleanly in time.
fn stop_all(processes: impl IntoIterator<Item = Process>) -> bool {
    let processes: Vec<Process> = processes.into_iter().collect();
    for process in &processes {
        process.terminate();
    }
    let deadline = Instant::now() + STOP_WITHIN;
    // Waits for every one (no short circuit), then tells whether all were clean.
    let stopped: Vec<bool> = processes
        .into_iter()
        .map(|p| p.wait_stopped(deadline))
        .collect();
    stopped.iter().all(|clean| *clean)
}

/// Gateway `i`'s command: listening on `addr`, calling `sim` at `rps` calls/s, in the fleet of
/// `redis_url` if there is one; its own Redis timeout when [`GATEWAY0_REDIS_TIMEOUT_VAR`] says
/// so (gateway 0 only).
fn gateway_command(
    bin: &Path,
    config: &Path,
    i: usize,
    addr: SocketAddr,
    sim: &Sim,
    rps: usize,
    redis_url: Option<&str>,
) -> Command {
    let base = stack::base_config();
    let mut command = Command::new(bin);
    command
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "tim_gateway=warn")
        .env("TIM_GATEWAY__SERVER__LISTEN", addr.to_string())
        .env("TIM_GATEWAY__UPSTREAM__BASE_URL", sim.base_url())
        .env("TIM_GATEWAY__UPSTREAM__SECRET_KEY", DEMO_SECRET_KEY)
        .env("TIM_GATEWAY__AUTH__MODE", "none")
        .env("TIM_GATEWAY__LIMITS__REQUESTS_PER_SECOND", rps.to_string())
        .env("TIM_GATEWAY__CACHE__TTL_SECONDS", secs(base.cache.ttl))
        .env(
            "TIM_GATEWAY__CACHE__MAX_ENTRIES",
            base.cache.max_entries.to_string(),
        )
        .env(
            "TIM_GATEWAY__SERVER__SHUTDOWN_GRACE_MS",
            base.server.shutdown_grace.as_millis().to_string(),
        );
    if let Some(url) = redis_url {
        command.env("TIM_GATEWAY__FLEET__REDIS_URL", url);
        if let (0, Ok(ms)) = (i, std::env::var(GATEWAY0_REDIS_TIMEOUT_VAR)) {
            command.env("TIM_GATEWAY__FLEET__REDIS_TIMEOUT_MS", ms);
        }
    }
    command
}

/// A fresh Redis with no persistence on a free port, answering, and its address.
fn start_redis(dir: &Path) -> (Process, SocketAddr) {
    let port = free_addr().port().to_string();
    let mut command = Command::new("redis-server");
    command
        .args(["--port", &port, "--bind", "127.0.0.1", "--save", ""])
        .args(["--appendonly", "no"])
        .arg("--dir")
        .arg(dir);
    let mut redis = Process::spawn(format!("redis-{port}"), command, dir);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("redis address");
    let deadline = Instant::now() + READY_WITHIN;
    while TcpStream::connect(addr).is_err() {
        redis.check_alive(dir);
        assert!(Instant::now() < deadline, "S7: redis-server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    (redis, addr)
}

/// A loopback address with a port the OS just had free.
fn free_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address")
}

fn secs(d: Duration) -> String {
    d.as_secs().to_string()
}

// === impl Process ===

impl Process {
    /// Spawns `command` with its output in `dir/<name>.log`.
    fn spawn(name: String, mut command: Command, dir: &Path) -> Process {
        let log = File::create(dir.join(format!("{name}.log"))).expect("log file");
        let child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("S7: cannot start {name}: {e}"));
        Process { name, child }
    }

    /// Panics, naming the log, if the process has exited.
    fn check_alive(&mut self, dir: &Path) {
        if let Ok(Some(status)) = self.child.try_wait() {
            let log = dir.join(format!("{}.log", self.name));
            panic!("S7: {} exited ({status}); see {}", self.name, log.display());
        }
    }

    /// Waits until the gateway at `addr` reports `tim_gateway_fleet_mode{mode}` = 1.
    fn wait_for_mode(&mut self, addr: SocketAddr, mode: &str, dir: &Path) {
        let sample = format!("tim_gateway_fleet_mode{{mode=\"{mode}\"}}");
        self.wait_for(addr, &sample, 1.0, dir);
    }

    /// Waits until the gateway at `addr` reports `sample` = `value`.
    fn wait_for(&mut self, addr: SocketAddr, sample: &str, value: f64, dir: &Path) {
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            self.check_alive(dir);
            if TcpStream::connect(addr).is_ok() && stack::metrics(addr).get(sample) == Some(&value)
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "S7: {} did not report {sample} = {value} within {READY_WITHIN:?}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM.
    fn terminate(&self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
    }

    /// Waits for the exit until `deadline`; SIGKILL past it (on drop). Whether it exited
    /// cleanly in time.
    fn wait_stopped(mut self, deadline: Instant) -> bool {
        while Instant::now() < deadline {
            match self.child.try_wait() {
                Ok(Some(status)) if status.success() => return true,
                Ok(Some(status)) => {
                    eprintln!("S7: {} exited with {status}", self.name);
                    return false;
                }
                _ => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        eprintln!(
            "S7: {} ignored SIGTERM for {STOP_WITHIN:?}; killed",
            self.name
        );
        false
    }
}

impl Drop for Process {
    /// Never leaves a process behind, even when a start-up check panics.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
