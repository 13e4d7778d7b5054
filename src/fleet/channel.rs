//! The invalidation channel: every gateway subscribes to its app's channel and drops from its
//! L1 each account another gateway invalidated; on the same connection it hears the filled
//! channel, which wakes the callers waiting on a peer's claimed fetch (fills.rs). The task also
//! decides when the gateway is back in fleet mode: only while this subscription is live, Redis
//! answers its pings, and the node holding the fleet's keys answers a probe (a Cluster's
//! subscription may be on another node).
//!
//! A (re)subscription on a new connection flushes the whole L1 first: while the gateway was not
//! listening it may have missed invalidations, so nothing it cached before is trusted. Then the
//! invalidations this gateway could not send are sent again, and only then does it return to
//! fleet mode. Pings that go unanswered count as failed commands (two in a row switch to
//! fallback); the subscription is kept (a live connection loses no message) until several
//! pings in a row fail, then re-made.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::link::{Link, LinkError};
use super::metrics::Command;
use super::tier::{RedisTier, FLUSH_ALL};
use crate::cache::ProfileCache;
use crate::wire::Account;

/// How often the live subscription is pinged.
const PING_EVERY: Duration = Duration::from_millis(200);
/// Unanswered pings in a row before the subscription is re-made on a new connection.
const PINGS_BEFORE_RECONNECT: u32 = 10;
/// Waits between failed (re)subscriptions: grows from the first to the last.
const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(2);

/// Runs until `stop` is cancelled.
pub(super) async fn run(tier: RedisTier, cache: ProfileCache, stop: CancellationToken) {
    let mut retry = RETRY_MIN;
    loop {
        let session = async {
            match subscribe(&tier).await {
                Ok((sink, stream)) => {
                    retry = RETRY_MIN;
                    listen(&tier, &cache, sink, stream).await;
                }
                Err(e) => {
                    tier.link().mark_down(&e);
                    debug!(error = %e, "invalidation channel: cannot subscribe");
                }
            }
        };
        tokio::select! {
            () = stop.cancelled() => return,
            () = session => {}
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(retry) => retry = (retry * 2).min(RETRY_MAX),
        }
    }
}

async fn subscribe(
    tier: &RedisTier,
) -> Result<(redis::aio::PubSubSink, redis::aio::PubSubStream), LinkError> {
    let link = tier.link();
    let started = Instant::now();
    let connect = async {
        let client = link.backend().pubsub_client().ok_or_else(|| {
            redis::RedisError::from((redis::ErrorKind::Io, "no Redis server known yet"))
        })?;
        let (mut sink, stream) = client.get_async_pubsub().await?.split();
        sink.subscribe(&[tier.channel(), tier.filled_channel(), tier.list_channel()])
            .await?;
        Ok::<_, redis::RedisError>((sink, stream))
    };
    let limit = link.timeout().max(Duration::from_millis(500));
    let result = match tokio::time::timeout(limit, connect).await {
        Ok(Ok(pair)) => Ok(pair),
        Ok(Err(e)) => Err(LinkError::Redis(e)),
        Err(_) => Err(LinkError::Timeout),
    };
    let seconds = started.elapsed().as_secs_f64();
    link.metrics()
        .record(Command::Subscribe, seconds, result.is_ok());
    result
}

/// Serves one subscription until its connection is lost.
async fn listen(
    tier: &RedisTier,
    cache: &ProfileCache,
    mut sink: redis::aio::PubSubSink,
    mut stream: redis::aio::PubSubStream,
) {
    let link = tier.link();
    cache.invalidate_all();
    link.metrics().l1_flushes.inc();
    let mut failed_pings = 0u32;
    let mut ticks = tokio::time::interval(PING_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            message = stream.next() => match message {
                Some(message) => on_message(tier, cache, &message),
                None => {
                    warn!("invalidation channel lost");
                    link.mark_down(&LinkError::Down);
                    return;
                }
            },
            _ = ticks.tick() => {
                // Where the subscription's node may not be the one serving the fleet's keys (a
                // Cluster), or while in fallback, the command path must answer too.
                let probe = !link.is_up() || link.backend().channel_elsewhere();
                let answered = ping(link, &mut sink).await
                    && (!probe || link.probe().await)
                    && tier.resend_pending().await;
                if answered {
                    failed_pings = 0;
                    link.mark_up();
                } else {
                    failed_pings += 1;
                    if failed_pings >= PINGS_BEFORE_RECONNECT {
                        warn!("invalidation channel unanswered: reconnecting");
                        return;
                    }
                }
            }
        }
    }
}

async fn ping(link: &Link, sink: &mut redis::aio::PubSubSink) -> bool {
    let started = Instant::now();
    let answer = tokio::time::timeout(link.timeout(), sink.ping::<redis::Value>()).await;
    let ok = matches!(answer, Ok(Ok(_)));
    link.metrics()
        .record(Command::Ping, started.elapsed().as_secs_f64(), ok);
    if !ok {
        link.failed(&LinkError::Timeout);
    }
    ok
}

fn on_message(tier: &RedisTier, cache: &ProfileCache, message: &redis::Msg) {
    if message.get_channel_name() == tier.filled_channel() {
        tier.fills().heard(message.get_payload_bytes());
        return;
    }
    if message.get_channel_name() == tier.list_channel() {
        tier.link().metrics().invalidations_received.inc();
        super::tier::heard_list(cache, message.get_payload_bytes());
        return;
    }
    let Ok(account) = std::str::from_utf8(message.get_payload_bytes()) else {
        return;
    };
    tier.link().metrics().invalidations_received.inc();
    if account == FLUSH_ALL {
        cache.invalidate_all();
        tier.link().metrics().l1_flushes.inc();
    } else {
        cache.invalidate(&Account::from(account));
    }
}
