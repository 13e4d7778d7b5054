//! Following a Sentinel failover: the sentinels are asked which server is the primary, often
//! while commands fail (a dead or demoted primary) and now and then while they succeed; when
//! the answer changes, commands and the channel move to the new primary. The budget treats a
//! new primary as a Redis restarted maybe empty (the heartbeat script finds the state under
//! the old primary's run id and starts a new epoch, which learns for one lease).

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::link::Link;

/// How often the sentinels are asked while Redis does not answer.
const WHILE_DOWN: Duration = Duration::from_millis(250);
/// How often they are asked while it does (a failover that left the old primary up).
const WHILE_UP: Duration = Duration::from_secs(2);

/// The longest one round of asking may take (sentinels that do not answer).
const ASK_LIMIT: Duration = Duration::from_secs(2);

fn timed_out() -> redis::RedisError {
    redis::RedisError::from((redis::ErrorKind::Io, "the sentinels did not answer in time"))
}

/// Runs until `stop` is cancelled.
pub(super) async fn follow(link: Link, stop: CancellationToken) {
    let mut failing = false;
    loop {
        let asked = tokio::time::timeout(ASK_LIMIT, link.backend().follow_sentinel()).await;
        let answer = asked.unwrap_or_else(|_| Err(timed_out()));
        match answer {
            Ok(Some(address)) => {
                info!(primary = %address, "sentinel: following the primary");
                failing = false;
            }
            Ok(None) => failing = false,
            Err(e) if !failing => {
                warn!(error = %e, "sentinel: cannot learn the primary");
                failing = true;
            }
            Err(_) => {}
        }
        let wait = if link.is_up() { WHILE_UP } else { WHILE_DOWN };
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
    }
}
