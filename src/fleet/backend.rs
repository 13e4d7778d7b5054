//! Backend: the Redis a fleet talks to, in its configured shape, and how each shape is reached.
//!
//! | shape | commands go to | the channel subscribes on | a failover |
//! |---|---|---|---|
//! | single | the primary at `redis_url` (reconnecting) | the primary | none to follow |
//! | Sentinel | the primary the sentinels name, checked with `ROLE` | the same primary | followed: asked again while commands fail and every few seconds |
//! | Cluster | the node owning the fleet's one hash-tag slot (MOVED/ASK by the client) | any node (cluster pub/sub reaches all) | the client follows slot moves |
//!
//! TLS (`rediss://`) trusts `fleet.redis_ca_file` when set, else the public roots; credentials
//! come from the URLs (`user:password@`, or `:password@`) and are never logged.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use parking_lot::RwLock;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{Client, FromRedisValue, IntoConnectionInfo, RedisResult, ScriptInvocation};
use redis::{TlsCertificates, TlsMode};

use crate::config::{FleetConfig, RedisShape, RedisUrl};

/// One connection to issue commands on; cheap to clone.
#[derive(Clone)]
pub(super) enum Conn {
    /// The primary (single or Sentinel's), reconnecting on its own.
    Primary(ConnectionManager),
    /// The cluster, routing each command by its keys' slot.
    Cluster(ClusterConnection),
}

impl Conn {
    pub(super) async fn invoke<T: FromRedisValue>(
        &mut self,
        invocation: &ScriptInvocation<'_>,
    ) -> RedisResult<T> {
        match self {
            Conn::Primary(conn) => invocation.invoke_async(conn).await,
            Conn::Cluster(conn) => invocation.invoke_async(conn).await,
        }
    }
}

/// The primary commands go to now.
#[derive(Clone)]
struct Primary {
    client: Client,
    conn: ConnectionManager,
    /// `host:port`: which server holds the fleet's state (a change means a failover).
    address: String,
}

/// The fleet's Redis in its shape.
pub(super) struct Backend {
    shape: Shape,
    manager_config: ConnectionManagerConfig,
}

enum Shape {
    Single(Primary),
    Sentinel {
        sentinel: tokio::sync::Mutex<SentinelClient>,
        /// `None` until the sentinels first named a primary.
        primary: RwLock<Option<Primary>>,
    },
    Cluster {
        client: ClusterClient,
        conn: RwLock<Option<ClusterConnection>>,
        /// Connecting, one caller at a time.
        connecting: tokio::sync::Mutex<()>,
        /// One client per seed node, for the channel's subscription; tried in turn.
        nodes: Vec<Client>,
        next_node: AtomicUsize,
    },
}

impl Backend {
    /// Prepares the shape in `config`; nothing connects yet (a Redis down at start-up only
    /// means starting in fallback).
    pub(super) fn new(config: &FleetConfig, shape: &RedisShape) -> RedisResult<Backend> {
        let ca = match &config.redis_ca_file {
            Some(path) => Some(std::fs::read(path)?),
            None => None,
        };
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.redis_timeout.max(Duration::from_millis(200))))
            .set_response_timeout(Some(config.redis_timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(1));
        let shape = match shape {
            RedisShape::Single(url) => {
                let client = client(url, ca.as_deref())?;
                Shape::Single(primary(client, &manager_config)?)
            }
            RedisShape::Sentinel { nodes, master } => Shape::Sentinel {
                sentinel: tokio::sync::Mutex::new(sentinel(nodes, master, ca.as_deref())?),
                primary: RwLock::new(None),
            },
            RedisShape::Cluster { nodes } => Shape::Cluster {
                client: cluster(nodes, ca.as_deref(), config.redis_timeout)?,
                conn: RwLock::new(None),
                connecting: tokio::sync::Mutex::new(()),
                nodes: nodes
                    .iter()
                    .map(|n| client(n, ca.as_deref()))
                    .collect::<RedisResult<_>>()?,
                next_node: AtomicUsize::new(0),
            },
        };
        Ok(Backend {
            shape,
            manager_config,
        })
    }

    /// A connection for the next command, connecting first where nothing is connected yet
    /// (the caller bounds the wait).
    pub(super) async fn conn(&self) -> RedisResult<Conn> {
        match &self.shape {
            Shape::Single(primary) => Ok(Conn::Primary(primary.conn.clone())),
            Shape::Sentinel { primary, .. } => {
                if let Some(current) = primary.read().as_ref() {
                    return Ok(Conn::Primary(current.conn.clone()));
                }
                self.follow_sentinel().await?;
                let current = primary.read();
                let current = current.as_ref().ok_or_else(no_primary)?;
                Ok(Conn::Primary(current.conn.clone()))
            }
            Shape::Cluster {
                client,
                conn,
                connecting,
                ..
            } => {
                if let Some(conn) = conn.read().as_ref() {
                    return Ok(Conn::Cluster(conn.clone()));
                }
                let _one = connecting.lock().await;
                if let Some(conn) = conn.read().as_ref() {
                    return Ok(Conn::Cluster(conn.clone()));
                }
                let connected = client.get_async_connection().await?;
                *conn.write() = Some(connected.clone());
                Ok(Conn::Cluster(connected))
            }
        }
    }

    /// A client for the channel's own (pub/sub) connection: the primary, or the next cluster
    /// node in turn.
    pub(super) fn pubsub_client(&self) -> Option<Client> {
        match &self.shape {
            Shape::Single(primary) => Some(primary.client.clone()),
            Shape::Sentinel { primary, .. } => primary.read().as_ref().map(|p| p.client.clone()),
            Shape::Cluster {
                nodes, next_node, ..
            } => {
                let i = next_node.fetch_add(1, Ordering::Relaxed);
                nodes.get(i % nodes.len().max(1)).cloned()
            }
        }
    }

    /// Whether the channel's subscription may be on another node than the one serving the
    /// fleet's keys (a Cluster's), so its pings say nothing of the commands' node.
    pub(super) fn channel_elsewhere(&self) -> bool {
        matches!(self.shape, Shape::Cluster { .. })
    }

    /// Whether this shape has a primary that can move (Sentinel).
    pub(super) fn follows_failovers(&self) -> bool {
        matches!(self.shape, Shape::Sentinel { .. })
    }

    /// Asks the sentinels which server is the primary now (checked with `ROLE`: never a
    /// replica) and moves commands there when it changed. Returns the new address on a
    /// change; a no-op for the other shapes.
    pub(super) async fn follow_sentinel(&self) -> RedisResult<Option<String>> {
        let Shape::Sentinel { sentinel, primary } = &self.shape else {
            return Ok(None);
        };
        let client = sentinel.lock().await.async_get_client().await?;
        let address = client.get_connection_info().addr().to_string();
        if primary
            .read()
            .as_ref()
            .is_some_and(|p| p.address == address)
        {
            return Ok(None);
        }
        let next = Primary {
            conn: ConnectionManager::new_lazy_with_config(
                client.clone(),
                self.manager_config.clone(),
            )?,
            client,
            address: address.clone(),
        };
        *primary.write() = Some(next);
        Ok(Some(address))
    }
}

fn no_primary() -> redis::RedisError {
    redis::RedisError::from((redis::ErrorKind::Io, "the sentinels named no primary"))
}

fn primary(client: Client, config: &ConnectionManagerConfig) -> RedisResult<Primary> {
    let address = client.get_connection_info().addr().to_string();
    let conn = ConnectionManager::new_lazy_with_config(client.clone(), config.clone())?;
    Ok(Primary {
        client,
        conn,
        address,
    })
}

fn certificates(ca: &[u8]) -> TlsCertificates {
    TlsCertificates {
        client_tls: None,
        root_cert: Some(ca.to_vec()),
    }
}

/// A client for one server: `rediss://` trusts `ca` when given.
fn client(url: &RedisUrl, ca: Option<&[u8]>) -> RedisResult<Client> {
    match ca.filter(|_| url.is_tls()) {
        Some(ca) => Client::build_with_tls(url.expose(), certificates(ca)),
        None => Client::open(url.expose()),
    }
}

/// A Sentinel client for `master`; the first node's credentials and scheme apply to every
/// sentinel and to the primary.
fn sentinel(nodes: &[RedisUrl], master: &str, ca: Option<&[u8]>) -> RedisResult<SentinelClient> {
    let infos: Vec<redis::ConnectionInfo> = nodes
        .iter()
        .map(|n| n.expose().into_connection_info())
        .collect::<RedisResult<_>>()?;
    let addresses = infos.iter().map(|i| i.addr().clone());
    let mut builder = SentinelClientBuilder::new(addresses, master, SentinelServerType::Master)?;
    if let Some(first) = infos.first() {
        let settings = first.redis_settings();
        if let Some(username) = settings.username() {
            builder = builder
                .set_client_to_redis_username(username)
                .set_client_to_sentinel_username(username);
        }
        if let Some(password) = settings.password() {
            builder = builder
                .set_client_to_redis_password(password)
                .set_client_to_sentinel_password(password);
        }
        builder = builder.set_client_to_redis_db(settings.db());
    }
    if nodes.first().is_some_and(RedisUrl::is_tls) {
        builder = builder
            .set_client_to_redis_tls_mode(TlsMode::Secure)
            .set_client_to_sentinel_tls_mode(TlsMode::Secure);
        if let Some(ca) = ca {
            builder = builder
                .set_client_to_redis_certificates(certificates(ca))
                .set_client_to_sentinel_certificates(certificates(ca));
        }
    }
    builder.build()
}

fn cluster(nodes: &[RedisUrl], ca: Option<&[u8]>, timeout: Duration) -> RedisResult<ClusterClient> {
    let mut builder = ClusterClient::builder(nodes.iter().map(RedisUrl::expose))
        .connection_timeout(timeout.max(Duration::from_millis(200)))
        .response_timeout(timeout)
        .retries(2);
    if let Some(ca) = ca.filter(|_| nodes.first().is_some_and(RedisUrl::is_tls)) {
        builder = builder.certs(certificates(ca));
    }
    builder.build()
}
