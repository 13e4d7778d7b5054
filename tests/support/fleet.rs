//! Fleet test support: a real `redis-server` on a free loopback port (started, stopped,
//! paused and restarted by PID), and N gateways in process sharing it in front of one sim.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tim_gateway::config::{Config, RawConfig};
use tim_gateway::sim::{Sim, SimConfig};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::{test_config, Caller};

/// A `redis-server` child process on 127.0.0.1, killed when dropped.
pub struct RedisServer {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a fresh, empty Redis with no persistence on a free port.
    pub fn start() -> RedisServer {
        let port = free_port();
        let dir =
            std::env::temp_dir().join(format!("tim-gateway-redis-{port}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir for redis");
        let mut server = RedisServer {
            port,
            dir,
            child: None,
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "yes",
            ])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start redis-server ({e}): the fleet tests need Debian's redis-server \
                     package (`apt-get install -y redis-server`; tests/run.sh installs it)"
                )
            });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not start on {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `redis://127.0.0.1:PORT/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Where it listens.
    pub fn addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().expect("redis is running").id()
    }

    /// Kills the server (SIGKILL): its state is gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again, empty, on the same port.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// SIGSTOP: connections stay open, nothing answers.
    pub fn pause(&self) {
        signal(self.pid(), "-STOP");
    }

    /// SIGCONT.
    pub fn resume(&self) {
        signal(self.pid(), "-CONT");
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(child) = &self.child {
            signal(child.id(), "-CONT");
        }
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn signal(pid: u32, which: &str) {
    let status = Command::new("kill")
        .args([which, &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill {which} {pid}");
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// One sim, one Redis and N gateways sharing it.
pub struct TestFleet {
    pub sim: Sim,
    pub redis: RedisServer,
    pub gateways: Vec<FleetMember>,
}

/// One gateway of a [`TestFleet`]; derefs to a [`Caller`] of it.
pub struct FleetMember {
    caller: Caller,
    shutdown: Option<oneshot::Sender<()>>,
    join: JoinHandle<()>,
}

impl std::ops::Deref for FleetMember {
    type Target = Caller;
    fn deref(&self) -> &Caller {
        &self.caller
    }
}

impl TestFleet {
    /// Starts Redis, the sim and `n` gateways whose config `tweak` adjusts (fleet settings
    /// point at the Redis already), then waits until every gateway is in fleet mode.
    pub async fn start(
        n: usize,
        sim: impl FnOnce(&mut SimConfig),
        tweak: impl Fn(&mut Config),
    ) -> TestFleet {
        TestFleet::start_each(n, sim, |_, config| tweak(config)).await
    }

    /// As [`TestFleet::start`], with `tweak` told which gateway (0..n) it adjusts.
    pub async fn start_each(
        n: usize,
        sim: impl FnOnce(&mut SimConfig),
        tweak: impl Fn(usize, &mut Config),
    ) -> TestFleet {
        TestFleet::start_on(RedisServer::start(), n, sim, tweak).await
    }

    /// As [`TestFleet::start_each`], on a Redis the test started (to put a proxy before it).
    pub async fn start_on(
        redis: RedisServer,
        n: usize,
        sim: impl FnOnce(&mut SimConfig),
        tweak: impl Fn(usize, &mut Config),
    ) -> TestFleet {
        let mut sim_config = SimConfig::default();
        sim(&mut sim_config);
        let sim = Sim::start(sim_config).await.expect("sim starts");
        let mut gateways = Vec::new();
        for i in 0..n {
            let mut config = fleet_config(&redis);
            config.upstream.base_url = sim.base_url().parse().expect("sim url");
            tweak(i, &mut config);
            gateways.push(FleetMember::start(config).await);
        }
        let fleet = TestFleet {
            sim,
            redis,
            gateways,
        };
        assert!(
            fleet.all_in_mode("fleet", Duration::from_secs(10)).await,
            "gateways did not reach fleet mode"
        );
        assert!(
            fleet.all_learned(Duration::from_secs(10)).await,
            "the fleet's first lease did not end"
        );
        fleet
    }

    /// A caller of each gateway, in order.
    pub fn callers(&self) -> Vec<Caller> {
        self.gateways.iter().map(|g| Caller::clone(g)).collect()
    }

    /// Waits until every gateway reports `mode`.
    pub async fn all_in_mode(&self, mode: &str, within: Duration) -> bool {
        let sample = format!("tim_gateway_fleet_mode{{mode=\"{mode}\"}}");
        super::eventually(within, || async {
            for gateway in &self.gateways {
                if gateway.metric(&sample).await != Some(1.0) {
                    return false;
                }
            }
            true
        })
        .await
    }

    /// Waits until no gateway reports a Redis state younger than one lease (a new Redis holds
    /// back every share's growth for one lease).
    pub async fn all_learned(&self, within: Duration) -> bool {
        super::eventually(within, || async {
            for gateway in &self.gateways {
                if gateway.metric("tim_gateway_fleet_learning").await != Some(0.0) {
                    return false;
                }
            }
            true
        })
        .await
    }

    /// Stops every gateway, then the sim.
    pub async fn shutdown(self) {
        for gateway in self.gateways {
            gateway.shutdown().await;
        }
        self.sim.shutdown().await;
    }
}

/// The test config of a fleet member: sim credentials, no caller auth, this Redis, and the
/// shipped timings (Redis timeout 250 ms, heartbeat 400 ms, lease 4 s).
pub fn fleet_config(redis: &RedisServer) -> Config {
    fleet_config_at(&redis.url())
}

/// As [`fleet_config`], for a Redis reached at `url` (through a proxy, say).
pub fn fleet_config_at(url: &str) -> Config {
    let mut config = test_config();
    config.auth.mode = tim_gateway::config::AuthMode::None;
    let mut raw = RawConfig::default();
    raw.fleet.redis_url = url.to_owned();
    let fleet = Config::from_raw(raw).expect("valid fleet config").fleet;
    config.fleet = fleet;
    config
}

impl FleetMember {
    pub async fn start(config: Config) -> FleetMember {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = oneshot::channel::<()>();
        let join = tokio::spawn(async move {
            tim_gateway::run(config, listener, async {
                let _ = rx.await;
            })
            .await;
        });
        FleetMember {
            caller: Caller::new(addr),
            shutdown: Some(tx),
            join,
        }
    }

    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        match tokio::time::timeout(Duration::from_secs(15), &mut self.join).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Ok(Err(e)) => panic!("gateway task failed: {e}"),
            Err(_) => panic!("gateway did not stop within 15 s"),
        }
    }
}

/// The most calls in any sliding one-second window of `instants` (sorted or not).
pub fn max_in_any_second(instants: &[Instant]) -> usize {
    busiest_second(instants).map_or(0, |(_, count)| count)
}

/// The sliding second holding the most of `instants` (sorted or not): when it began, and how
/// many it holds.
pub fn busiest_second(instants: &[Instant]) -> Option<(Instant, usize)> {
    let mut sorted = instants.to_vec();
    sorted.sort();
    let in_second = |i: usize| {
        let ends = sorted[i] + Duration::from_secs(1);
        sorted[i..].iter().take_while(|t| **t < ends).count()
    };
    let busiest = (0..sorted.len()).max_by_key(|i| in_second(*i))?;
    Some((sorted[busiest], in_second(busiest)))
}

/// A fleet member run as its own process (the binary), so a test can SIGKILL it: no graceful
/// leave, its lease left to run out in Redis. In front of `sim`, in the fleet of `redis`
/// (`env` adds or overrides keys); returns once it reports fleet mode.
pub async fn process_member(
    sim: &Sim,
    redis: &RedisServer,
    env: &[(&str, &str)],
) -> super::process::GatewayProcess {
    process_member_with(sim, redis, &[], env).await
}

/// As [`process_member`], with command-line `args` (`--config FILE`, say).
pub async fn process_member_with(
    sim: &Sim,
    redis: &RedisServer,
    args: &[&str],
    env: &[(&str, &str)],
) -> super::process::GatewayProcess {
    let url = redis.url();
    let mut all = vec![("TIM_GATEWAY__FLEET__REDIS_URL", url.as_str())];
    all.extend_from_slice(env);
    let member = super::process::GatewayProcess::in_front_of_with(sim, args, &all).await;
    let sample = "tim_gateway_fleet_mode{mode=\"fleet\"}";
    let in_fleet = super::eventually(Duration::from_secs(20), || async {
        member.metric(sample).await == Some(1.0)
    });
    assert!(
        in_fleet.await,
        "the gateway process did not reach fleet mode"
    );
    member
}
