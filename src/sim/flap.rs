//! A flapping upstream for soaks: [`flap`] cycles a running [`Sim`] through Tencent's bad days
//! on a fixed timetable, forever (drop the future to stop it).
//!
//! One cycle of `period`, as fractions of it: healthy until 60 %, then a burst of HTTP 502s
//! (5 %), a latency spike of [`SPIKE_LATENCY`] on top of the base latency (10 %), connections
//! closed without an answer (5 %), then one oversized answer ([`Fault::Oversized`]) and healthy
//! again for the rest. The schedule is the same on every run, so a soak's figures compare.

use std::time::Duration;

use super::{Fault, Sim};

/// Latency added to the base latency during a spike.
pub const SPIKE_LATENCY: Duration = Duration::from_millis(400);

/// What the sim does during one phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Healthy,
    BadGateway,
    LatencySpike,
    DropConnections,
    Oversized,
}

/// The cycle: each phase with its share of the period, in per mille.
const CYCLE: [(Phase, u32); 5] = [
    (Phase::Healthy, 600),
    (Phase::BadGateway, 50),
    (Phase::LatencySpike, 100),
    (Phase::DropConnections, 50),
    // The next call gets the oversized answer; the sim is healthy again right after it.
    (Phase::Oversized, 200),
];

/// Cycles `sim` through [`CYCLE`] every `period`, with `base_latency` outside spikes. Never
/// returns; dropping the future leaves the current phase's fault and latency in place.
pub async fn flap(sim: &Sim, period: Duration, base_latency: Duration) {
    loop {
        for (phase, per_mille) in CYCLE {
            apply(sim, phase, base_latency);
            tokio::time::sleep(period * per_mille / 1000).await;
        }
    }
}

fn apply(sim: &Sim, phase: Phase, base_latency: Duration) {
    tracing::info!(?phase, "sim flaps");
    let (fault, latency) = match phase {
        Phase::Healthy => (Fault::None, base_latency),
        Phase::BadGateway => (Fault::Status(502), base_latency),
        Phase::LatencySpike => (Fault::None, base_latency + SPIKE_LATENCY),
        Phase::DropConnections => (Fault::DropConnection, base_latency),
        Phase::Oversized => (Fault::Oversized, base_latency),
    };
    sim.set_latency(latency);
    sim.set_fault(fault);
}
