//! What the fleet's `redis-server` itself says about a measured window: one `INFO all` at each
//! end (over a raw RESP exchange on loopback, no client library), the commands it ran
//! (`commandstats`: every command a client sent, and the ones its Lua scripts called; the
//! scripts run apart) and the
//! CPU it used (`used_cpu_sys` + `used_cpu_user`). `procs.rs` takes the snapshots, `sizes.rs`
//! reads the deltas. Owns no figures and no process.

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::Instant;

/// The command this snapshot itself is; left out of the deltas.
const OWN_COMMAND: &str = "info";
/// The commands that run a Lua script (whose own `redis.call`s commandstats counts too).
const SCRIPT_COMMANDS: [&str; 6] = [
    "eval",
    "evalsha",
    "eval_ro",
    "evalsha_ro",
    "fcall",
    "fcall_ro",
];

/// One `INFO all` answer and when it came.
pub struct RedisInfo {
    at: Instant,
    /// Per command (lower case), the calls so far.
    calls: BTreeMap<String, u64>,
    /// `used_cpu_sys` + `used_cpu_user`, seconds.
    cpu: f64,
}

/// What Redis did between two snapshots.
pub struct RedisDelta {
    /// When the first snapshot's answer came.
    pub from: Instant,
    /// When the second one's came.
    pub until: Instant,
    /// Per command, calls in the window (commands with none left out), most first.
    pub calls: Vec<(String, u64)>,
    /// CPU seconds Redis used in the window.
    pub cpu: f64,
}

// === impl RedisInfo ===

impl RedisInfo {
    /// Asks the Redis at `addr` for `INFO all`.
    pub fn take(addr: SocketAddr) -> RedisInfo {
        let text = info_all(addr);
        let at = Instant::now();
        let field = |name: &str| -> f64 {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0.0)
        };
        RedisInfo {
            at,
            calls: text.lines().filter_map(command_calls).collect(),
            cpu: field("used_cpu_sys") + field("used_cpu_user"),
        }
    }

    /// What Redis did from `self` until `later`.
    pub fn until(&self, later: &RedisInfo) -> RedisDelta {
        let mut calls: Vec<(String, u64)> = later
            .calls
            .iter()
            .filter(|(name, _)| name.as_str() != OWN_COMMAND)
            .map(|(name, n)| (name.clone(), n - self.calls.get(name).copied().unwrap_or(0)))
            .filter(|(_, n)| *n > 0)
            .collect();
        calls.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        RedisDelta {
            from: self.at,
            until: later.at,
            calls,
            cpu: later.cpu - self.cpu,
        }
    }
}

// === impl RedisDelta ===

impl RedisDelta {
    /// Every command Redis ran in the window, those its scripts called included.
    pub fn total(&self) -> u64 {
        self.calls.iter().map(|(_, n)| n).sum()
    }

    /// The scripts run in the window (each a client's command; what they called is in
    /// [`RedisDelta::total`]).
    pub fn scripts(&self) -> u64 {
        let is_script = |name: &str| SCRIPT_COMMANDS.contains(&name);
        self.calls
            .iter()
            .filter(|(c, _)| is_script(c))
            .map(|(_, n)| n)
            .sum()
    }

    /// Redis's CPU over the window's wall time, % of one core.
    pub fn cpu_percent(&self) -> f64 {
        let wall = self.until.duration_since(self.from);
        100.0 * self.cpu / wall.as_secs_f64().max(1e-9)
    }

    /// The `most` busiest commands, `name n` each, comma-separated.
    pub fn busiest(&self, most: usize) -> String {
        let named: Vec<String> = self
            .calls
            .iter()
            .take(most)
            .map(|(name, n)| format!("{name} {n}"))
            .collect();
        named.join(", ")
    }
}

/// `cmdstat_get:calls=12,usec=...` -> `("get", 12)`.
fn command_calls(line: &str) -> Option<(String, u64)> {
    let (name, stats) = line.strip_prefix("cmdstat_")?.split_once(':')?;
    let calls = stats.split(',').find_map(|kv| kv.strip_prefix("calls="))?;
    Some((name.to_ascii_lowercase(), calls.trim().parse().ok()?))
}

/// `INFO all` as one RESP bulk string.
fn info_all(addr: SocketAddr) -> String {
    let stream = TcpStream::connect(addr).expect("S7: connect to redis for INFO");
    (&stream)
        .write_all(b"*2\r\n$4\r\nINFO\r\n$3\r\nall\r\n")
        .expect("S7: send INFO");
    let mut reader = BufReader::new(&stream);
    let mut header = String::new();
    reader.read_line(&mut header).expect("S7: INFO header");
    let length: usize = header
        .trim_end()
        .strip_prefix('$')
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("S7: INFO answered {header:?}"));
    let mut body = vec![0; length];
    reader.read_exact(&mut body).expect("S7: INFO body");
    String::from_utf8_lossy(&body).into_owned()
}
