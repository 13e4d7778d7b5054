//! `[fleet]`: the Redis a fleet of gateways shares, in one of three shapes (a single primary, a
//! Sentinel set, a Cluster), its TLS trust, and how the fleet's budget is leased.

use std::fmt;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use url::Url;

use super::checks::{between, invalid};
use super::ConfigError;

/// `[fleet]` settings: every gateway with the same Redis, key prefix and sdkappid shares one
/// upstream budget, one cache tier and one invalidation channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FleetConfig {
    /// The shared Redis; `None` runs the gateway standalone.
    pub redis: Option<RedisShape>,
    /// PEM CA certificates that `rediss://` connections (to the primary, sentinels or cluster
    /// nodes) trust instead of the public roots.
    pub redis_ca_file: Option<PathBuf>,
    /// Namespace of every Redis key and channel the gateway uses.
    pub key_prefix: String,
    /// Per Redis command; a slower Redis counts as down.
    pub redis_timeout: Duration,
    /// The fewest gateways a fair share is counted for: a share is at most
    /// `requests_per_second / max(live gateways, fallback_instances)`.
    pub fallback_instances: NonZeroU32,
    /// How often a gateway renews its membership and its reserved shares in Redis.
    pub heartbeat: Duration,
    /// How long a membership (and the shares reserved for it) outlives its last heartbeat.
    pub lease: Duration,
    /// What a gateway does once it has been cut off from Redis for longer than its lease.
    pub after_lease: AfterLease,
}

/// Which Redis the fleet shares: exactly one of `redis_url`, `redis_sentinel_nodes` (with
/// `redis_sentinel_master`) and `redis_cluster_nodes`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RedisShape {
    /// One primary (`fleet.redis_url`).
    Single(RedisUrl),
    /// A Sentinel set: the sentinels name the primary of `master` and announce failovers.
    /// Credentials and `rediss://` in a node's URL apply to the sentinels and the primary.
    Sentinel {
        /// The sentinels, asked in turn.
        nodes: Vec<RedisUrl>,
        /// The name the sentinels monitor the primary under.
        master: String,
    },
    /// A Redis Cluster, discovered from any of these nodes.
    Cluster {
        /// Seed nodes (the client learns the rest of the cluster from them).
        nodes: Vec<RedisUrl>,
    },
}

impl RedisShape {
    /// The shape and its addresses, for logs (never a password).
    pub fn describe(&self) -> String {
        let hosts = |nodes: &[RedisUrl]| {
            let hosts: Vec<String> = nodes.iter().map(RedisUrl::host_port).collect();
            hosts.join(",")
        };
        match self {
            RedisShape::Single(url) => format!("redis {}", url.host_port()),
            RedisShape::Sentinel { nodes, master } => {
                format!("sentinel {master} via {}", hosts(nodes))
            }
            RedisShape::Cluster { nodes } => format!("cluster via {}", hosts(nodes)),
        }
    }
}

/// What a gateway cut off from Redis does once its lease has run out (`fleet.after_lease`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AfterLease {
    /// Stop calling Tencent: callers are answered from the cache (stale where allowed) or
    /// with 60007. The fleet can never exceed its budget, whatever fails.
    #[default]
    Stop,
    /// Keep spending the last reserved share: callers keep being served through a long Redis
    /// outage, but gateways that start (or whose shares were handed on) meanwhile may push
    /// the app over its limit.
    SpendShare,
}

/// A `redis://` or `rediss://` URL. `Debug` hides any password in it.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl(Url);

raw_section!(
    /// `[fleet]` as written.
    RawFleet {
        redis_url: String = String::new(),
        redis_sentinel_nodes: Vec<String> = Vec::new(),
        redis_sentinel_master: String = String::new(),
        redis_cluster_nodes: Vec<String> = Vec::new(),
        redis_ca_file: String = String::new(),
        key_prefix: String = "tim-gateway".to_owned(),
        redis_timeout_ms: u64 = 250,
        fallback_instances: u32 = 4,
        heartbeat_ms: u64 = 400,
        lease_ms: u64 = 4_000,
        after_lease: AfterLease = AfterLease::Stop,
    }
);

impl RawFleet {
    pub(super) fn validate(self) -> Result<FleetConfig, ConfigError> {
        let redis = self.shape()?;
        let redis_ca_file = match self.redis_ca_file.trim() {
            "" => None,
            path => {
                crate::tls::load_ca_file(Path::new(path)).map_err(|reason| {
                    invalid("fleet.redis_ca_file", format!("{path:?}"), reason)
                })?;
                Some(PathBuf::from(path))
            }
        };
        // Braces would break the hash tag that keeps a fleet's keys on one Cluster slot.
        let prefix_ok = !self.key_prefix.is_empty()
            && self.key_prefix.len() <= 64
            && self
                .key_prefix
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b'{' && b != b'}');
        if !prefix_ok {
            let value = format!("{:?}", self.key_prefix);
            let reason = "must be 1 to 64 visible ASCII characters, no braces";
            return Err(invalid("fleet.key_prefix", value, reason));
        }
        let timeout = between("fleet.redis_timeout_ms", self.redis_timeout_ms, 1, 10_000)?;
        let instances = between(
            "fleet.fallback_instances",
            self.fallback_instances,
            1,
            10_000,
        )?;
        let heartbeat = between("fleet.heartbeat_ms", self.heartbeat_ms, 50, 10_000)?;
        // A lease must survive a few lost heartbeats, and must not strand a dead gateway's
        // share for longer than a minute.
        let lease = between("fleet.lease_ms", self.lease_ms, 1_000, 60_000)?;
        if lease < heartbeat * 4 {
            let reason = format!("must be at least 4 heartbeats ({} ms)", heartbeat * 4);
            return Err(invalid("fleet.lease_ms", lease, reason));
        }
        Ok(FleetConfig {
            redis,
            redis_ca_file,
            key_prefix: self.key_prefix,
            redis_timeout: Duration::from_millis(timeout),
            fallback_instances: NonZeroU32::new(instances).unwrap_or(NonZeroU32::MIN),
            heartbeat: Duration::from_millis(heartbeat),
            lease: Duration::from_millis(lease),
            after_lease: self.after_lease,
        })
    }

    /// The one shape of Redis set, if any; two at once is an error naming both.
    fn shape(&self) -> Result<Option<RedisShape>, ConfigError> {
        let url = self.redis_url.trim();
        let sentinel =
            !self.redis_sentinel_nodes.is_empty() || !self.redis_sentinel_master.is_empty();
        let set: Vec<&'static str> = [
            (!url.is_empty(), "fleet.redis_url"),
            (sentinel, "fleet.redis_sentinel_nodes"),
            (
                !self.redis_cluster_nodes.is_empty(),
                "fleet.redis_cluster_nodes",
            ),
        ]
        .into_iter()
        .filter_map(|(on, key)| on.then_some(key))
        .collect();
        if let [first, second, ..] = set[..] {
            let reason =
                format!("set together with {second}: a fleet uses exactly one shape of Redis");
            return Err(invalid(first, "<redacted>", reason));
        }
        if !url.is_empty() {
            return Ok(Some(RedisShape::Single(RedisUrl::parse(
                url,
                "fleet.redis_url",
            )?)));
        }
        if sentinel {
            let master = self.redis_sentinel_master.trim();
            if master.is_empty() {
                let reason = "fleet.redis_sentinel_master must name the monitored primary";
                return Err(invalid("fleet.redis_sentinel_master", "\"\"", reason));
            }
            let nodes = nodes(&self.redis_sentinel_nodes, "fleet.redis_sentinel_nodes")?;
            return Ok(Some(RedisShape::Sentinel {
                nodes,
                master: master.to_owned(),
            }));
        }
        if !self.redis_cluster_nodes.is_empty() {
            let nodes = nodes(&self.redis_cluster_nodes, "fleet.redis_cluster_nodes")?;
            return Ok(Some(RedisShape::Cluster { nodes }));
        }
        Ok(None)
    }
}

/// Node entries: `host:port`, or a whole `redis://` / `rediss://` URL (with credentials).
fn nodes(entries: &[String], key: &'static str) -> Result<Vec<RedisUrl>, ConfigError> {
    let mut nodes = Vec::with_capacity(entries.len());
    for entry in entries.iter().map(|e| e.trim()) {
        if entry.is_empty() {
            return Err(invalid(key, "\"\"", "an empty node entry"));
        }
        let text = if entry.contains("://") {
            entry.to_owned()
        } else {
            format!("redis://{entry}")
        };
        nodes.push(RedisUrl::parse(&text, key)?);
    }
    Ok(nodes)
}

impl RedisUrl {
    fn parse(text: &str, key: &'static str) -> Result<RedisUrl, ConfigError> {
        // Never echo the URL: it may carry a password.
        let bad = |reason: &str| invalid(key, "<redacted>", reason);
        let url = Url::parse(text).map_err(|e| bad(&e.to_string()))?;
        if !matches!(url.scheme(), "redis" | "rediss") {
            return Err(bad("scheme must be redis or rediss"));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(bad("must have a host"));
        }
        // What the Redis client will parse at start-up must parse now (a bad db number, say).
        if redis::Client::open(text).is_err() {
            return Err(bad(
                "the Redis client does not accept it (redis://host:port/db)",
            ));
        }
        Ok(RedisUrl(url))
    }

    /// The URL itself, for connecting. Never log it.
    pub fn expose(&self) -> &str {
        self.0.as_str()
    }

    /// Whether it asks for TLS (`rediss://`).
    pub fn is_tls(&self) -> bool {
        self.0.scheme() == "rediss"
    }

    /// `host:port`, for logs.
    pub fn host_port(&self) -> String {
        let host = self.0.host_str().unwrap_or("");
        match self.0.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        }
    }
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RedisUrl({}://{})", self.0.scheme(), self.host_port())
    }
}
