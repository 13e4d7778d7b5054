//! Where the machine's CPU went in a measured window, from `/proc`: the gateway processes
//! together, this process (the sim and the load generator), Redis, and everything else on the
//! machine (other sessions' builds and tests: the noise a figure must be read with). Read
//! at both ends of the window by `procs.rs`; `sizes.rs` prints the split. Owns no process.

use std::sync::OnceLock;
use std::time::Instant;

/// CPU seconds used so far, per part, and when they were read.
pub struct CpuSample {
    at: Instant,
    gateways: f64,
    this: f64,
    redis: f64,
    /// Every CPU's busy time (all but idle and iowait), the whole machine.
    machine: f64,
}

/// The window's CPU per part, in cores (1.0 = one core busy the whole window).
pub struct CpuSplit {
    pub gateways: f64,
    pub this: f64,
    pub redis: f64,
    /// The machine's busy time less the three above.
    pub other: f64,
}

// === impl CpuSample ===

impl CpuSample {
    /// Reads the processes `gateways` and `redis` (by pid), this process and the machine.
    pub fn take(gateways: &[u32], redis: Option<u32>) -> CpuSample {
        let tick = clock_tick();
        let of = |pid: &str| process_ticks(pid) / tick;
        CpuSample {
            at: Instant::now(),
            gateways: gateways.iter().map(|p| of(&p.to_string())).sum(),
            this: of("self"),
            redis: redis.map_or(0.0, |p| of(&p.to_string())),
            machine: machine_ticks() / tick,
        }
    }

    /// The split from `self` until `later`.
    pub fn until(&self, later: &CpuSample) -> CpuSplit {
        let wall = later.at.duration_since(self.at).as_secs_f64().max(1e-9);
        let cores = |a: f64, b: f64| (b - a) / wall;
        let gateways = cores(self.gateways, later.gateways);
        let this = cores(self.this, later.this);
        let redis = cores(self.redis, later.redis);
        let machine = cores(self.machine, later.machine);
        CpuSplit {
            gateways,
            this,
            redis,
            other: (machine - gateways - this - redis).max(0.0),
        }
    }
}

// === impl CpuSplit ===

impl CpuSplit {
    /// `gateways 1.20 / sim + load 0.45 / redis 0.20 / other 0.10 cores`.
    pub fn text(&self) -> String {
        format!(
            "gateways {:.2} / sim + load {:.2} / redis {:.2} / other {:.2} cores",
            self.gateways, self.this, self.redis, self.other
        )
    }
}

/// `utime + stime` of `/proc/<pid>/stat`, clock ticks (0 once the process is gone).
fn process_ticks(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of stat(5): 12 and 13 after the name.
    field(11) + field(12)
}

/// The machine's busy clock ticks: the `cpu` line of `/proc/stat` less idle and iowait.
fn machine_ticks() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let line = stat.lines().find(|l| l.starts_with("cpu ")).unwrap_or("");
    let ticks: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    let (idle, iowait) = (ticks.get(3), ticks.get(4));
    // guest and guest_nice (fields 9 and 10) are already counted in user and nice.
    let all: f64 = ticks.iter().take(8).sum();
    all - idle.unwrap_or(&0.0) - iowait.unwrap_or(&0.0)
}

/// `USER_HZ`, as `getconf CLK_TCK` reports it (100 on Linux when it cannot be asked), asked
/// once.
fn clock_tick() -> f64 {
    static TICK: OnceLock<f64> = OnceLock::new();
    *TICK.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}
