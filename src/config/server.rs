//! `[server]`: the listener clients talk to, how big and how slow their requests may be, and
//! how long a draining gateway keeps serving.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::checks::{at_least, invalid, millis, MIN_BODY_BYTES};
use super::ConfigError;

/// `[server]` settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerConfig {
    /// Address the gateway serves on.
    pub listen: SocketAddr,
    /// Larger request bodies get a Tencent-style error instead of being read.
    pub max_body_bytes: usize,
    /// Concurrent client connections; at the cap the longest-idle ones are closed to make room.
    pub max_connections: usize,
    /// Drain deadline after SIGTERM.
    pub shutdown_grace: Duration,
    /// A connection's first request, and any HTTP/1 request head once its first byte arrived,
    /// must be complete within this (slowloris, silent connections, bare HTTP/2 prefaces).
    pub header_read_timeout: Duration,
    /// A request body must be received whole within this.
    pub body_read_timeout: Duration,
    /// A connection with no request in flight for this long is closed (keep-alive idle).
    pub idle_timeout: Duration,
    /// How often an HTTP/2 connection is pinged to check the client is still there.
    pub http2_keep_alive_interval: Duration,
    /// An unanswered HTTP/2 ping closes the connection after this.
    pub http2_keep_alive_timeout: Duration,
    /// Concurrent streams per HTTP/2 connection.
    pub http2_max_concurrent_streams: u32,
    /// After SIGTERM, how long `/readyz` says 503 while the listener still accepts.
    pub drain_announce: Duration,
}

raw_section!(
    /// `[server]` as written.
    RawServer {
        listen: String = "127.0.0.1:8080".to_owned(),
        max_body_bytes: usize = 1_048_576,
        max_connections: usize = 10_000,
        shutdown_grace_ms: u64 = 20_000,
        header_read_timeout_ms: u64 = 5_000,
        body_read_timeout_ms: u64 = 10_000,
        idle_timeout_ms: u64 = 60_000,
        http2_keep_alive_interval_ms: u64 = 20_000,
        http2_keep_alive_timeout_ms: u64 = 10_000,
        http2_max_concurrent_streams: u32 = 256,
        drain_announce_ms: u64 = 5_000,
    }
);

impl RawServer {
    pub(super) fn validate(self) -> Result<ServerConfig, ConfigError> {
        let listen = self.listen.parse().map_err(|e: std::net::AddrParseError| {
            invalid("server.listen", format!("{:?}", self.listen), e.to_string())
        })?;
        Ok(ServerConfig {
            listen,
            max_body_bytes: at_least("server.max_body_bytes", self.max_body_bytes, MIN_BODY_BYTES)?,
            max_connections: at_least("server.max_connections", self.max_connections, 1)?,
            shutdown_grace: Duration::from_millis(self.shutdown_grace_ms),
            header_read_timeout: millis(
                "server.header_read_timeout_ms",
                self.header_read_timeout_ms,
            )?,
            body_read_timeout: millis("server.body_read_timeout_ms", self.body_read_timeout_ms)?,
            idle_timeout: millis("server.idle_timeout_ms", self.idle_timeout_ms)?,
            http2_keep_alive_interval: millis(
                "server.http2_keep_alive_interval_ms",
                self.http2_keep_alive_interval_ms,
            )?,
            http2_keep_alive_timeout: millis(
                "server.http2_keep_alive_timeout_ms",
                self.http2_keep_alive_timeout_ms,
            )?,
            http2_max_concurrent_streams: at_least(
                "server.http2_max_concurrent_streams",
                self.http2_max_concurrent_streams,
                1,
            )?,
            drain_announce: Duration::from_millis(self.drain_announce_ms),
        })
    }
}
