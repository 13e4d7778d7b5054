//! The fleet's own metric families, registered on the gateway's registry when `[fleet]` is set
//! (a standalone gateway exposes only `fleet_mode{mode="standalone"}`).
//!
//! Label values are fixed sets: `mode` (standalone, fleet, fallback), `command` (one per
//! Redis script or command the gateway sends), `result`, `direction`.

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::Mutex;
use prometheus::Opts;
use prometheus::{
    Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
};

use crate::metrics::Metrics;

/// Which mode a gateway is in (the `mode` label of `fleet_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// No Redis configured.
    Standalone,
    /// Redis answers: one budget, one cache tier, one truth.
    Fleet,
    /// Redis is configured but down or slow: local fallback budget, L1 only.
    Fallback,
}

impl Mode {
    const ALL: [Mode; 3] = [Mode::Standalone, Mode::Fleet, Mode::Fallback];

    fn label(self) -> &'static str {
        match self {
            Mode::Standalone => "standalone",
            Mode::Fleet => "fleet",
            Mode::Fallback => "fallback",
        }
    }
}

/// A Redis command or script the gateway sends (the `command` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Command {
    /// The budget script: take a hold in the fleet's sliding window.
    Acquire,
    /// Shorten a hold to one window after its call's answer.
    Release,
    /// Read (account, tag) values from the shared tier.
    CacheGet,
    /// Write fetched values to the shared tier, version-checked.
    CachePut,
    /// Bump an account's version, drop its values, tell every gateway.
    Invalidate,
    /// The health probe while in fallback.
    Ping,
    /// The invalidation channel's subscription.
    Subscribe,
    /// Renew the membership and the shares.
    Heartbeat,
    /// Halve the fleet's pace after a 60007.
    Pace,
    /// End claims on accounts whose fetch failed.
    ReleaseClaims,
    /// Read (and claim) a list read's ids in the shared tier.
    ListGet,
    /// Write a list read's fetched ids, ending their claims.
    ListPut,
}

impl Command {
    const ALL: [Command; 12] = [
        Command::Acquire,
        Command::Release,
        Command::CacheGet,
        Command::CachePut,
        Command::Invalidate,
        Command::Ping,
        Command::Subscribe,
        Command::Heartbeat,
        Command::Pace,
        Command::ReleaseClaims,
        Command::ListGet,
        Command::ListPut,
    ];

    fn label(self) -> &'static str {
        match self {
            Command::Acquire => "acquire",
            Command::Release => "release",
            Command::CacheGet => "cache_get",
            Command::CachePut => "cache_put",
            Command::Invalidate => "invalidate",
            Command::Ping => "ping",
            Command::Subscribe => "subscribe",
            Command::Heartbeat => "heartbeat",
            Command::Pace => "pace",
            Command::ReleaseClaims => "release_claims",
            Command::ListGet => "list_get",
            Command::ListPut => "list_put",
        }
    }
}

/// The fleet families; cheap to clone.
#[derive(Clone)]
pub(crate) struct FleetMetrics {
    mode: IntGaugeVec,
    duration: HistogramVec,
    errors: IntCounterVec,
    /// `shared_cache_lookups_total{result=hit}`: pairs answered by the shared tier.
    pub l2_hits: IntCounter,
    /// `shared_cache_lookups_total{result=absent}`: pairs the shared tier holds as unset.
    pub l2_absent: IntCounter,
    /// `shared_cache_lookups_total{result=miss}`: pairs the shared tier did not have.
    pub l2_misses: IntCounter,
    /// `shared_cache_lookups_total{result=skipped}`: pairs not looked up (Redis down).
    pub l2_skipped: IntCounter,
    /// `fleet_invalidations_total{direction=sent}`.
    pub invalidations_sent: IntCounter,
    /// `fleet_invalidations_total{direction=received}`.
    pub invalidations_received: IntCounter,
    /// `fleet_claims_total{result=won}`: missed accounts this gateway claimed to fetch.
    pub claims_won: IntCounter,
    /// `fleet_claims_total{result=waited}`: accounts answered by a peer's claimed fetch.
    pub claims_waited: IntCounter,
    /// `fleet_claims_total{result=expired}`: accounts waited on in vain (the peer's claim
    /// lapsed or its fetch failed), then fetched by this gateway.
    pub claims_expired: IntCounter,
    /// Switches between fleet and fallback mode (a flapping link shows here).
    pub mode_changes: IntCounter,
    /// Whole-L1 flushes after the invalidation channel was lost.
    pub l1_flushes: IntCounter,
    /// Time from asking Redis for a hold to being allowed to send.
    pub budget_wait: Histogram,
    /// Upstream calls granted, by API and source (the gateway's own share, or the pool).
    pub grants: IntCounterVec,
    /// Live gateways at the last heartbeat (this one included).
    pub peers: IntGauge,
    /// Gateways whose lease lives but whose heartbeats stopped.
    pub silent_peers: IntGauge,
    /// Gateways dropped from the fleet because their lease ran out (no graceful leave),
    /// counted by the one gateway whose heartbeat dropped each.
    pub peers_expired: IntCounter,
    /// How long this gateway's shares stay spendable without another answered heartbeat.
    pub lease_remaining: Gauge,
    /// 1 while Redis's state is younger than one lease (shares held, none grows, no pool).
    pub learning: IntGauge,
    shares: IntGaugeVec,
    /// The last shares shown per API (own, fair, paced, booked, for silent), for `/readyz`.
    last_shares: Arc<Mutex<BTreeMap<String, [u32; 5]>>>,
}

const REDIS_BUCKETS_SECONDS: [f64; 12] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
];
const WAIT_BUCKETS_SECONDS: [f64; 12] = [
    0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

impl FleetMetrics {
    /// Registers the fleet families on the gateway's registry.
    pub(crate) fn register(metrics: &Metrics) -> FleetMetrics {
        let mode = metrics.register(IntGaugeVec::new(
            Opts::new("fleet_mode", "1 for the mode this gateway is in"),
            &["mode"],
        ));
        let duration = metrics.register(HistogramVec::new(
            HistogramOpts::new(
                "redis_command_duration_seconds",
                "Duration of Redis commands, including those that failed",
            )
            .buckets(REDIS_BUCKETS_SECONDS.to_vec()),
            &["command"],
        ));
        let errors = metrics.register(IntCounterVec::new(
            Opts::new(
                "redis_errors_total",
                "Redis commands that failed or passed fleet.redis_timeout_ms",
            ),
            &["command"],
        ));
        let lookups = metrics.register(IntCounterVec::new(
            Opts::new(
                "shared_cache_lookups_total",
                "(account, tag) pairs looked up in the shared tier after an L1 miss",
            ),
            &["result"],
        ));
        let invalidations = metrics.register(IntCounterVec::new(
            Opts::new(
                "fleet_invalidations_total",
                "Account invalidations sent to and received from the fleet",
            ),
            &["direction"],
        ));
        let claims = metrics.register(IntCounterVec::new(
            Opts::new(
                "fleet_claims_total",
                "Accounts missed fleet-wide, by who fetched them: this gateway's claim (won), \
                 a peer's claimed fetch (waited), or this gateway after waiting in vain \
                 (expired)",
            ),
            &["result"],
        ));
        for command in Command::ALL {
            errors.with_label_values(&[command.label()]);
        }
        let grants = metrics.register(IntCounterVec::new(
            Opts::new(
                "fleet_grants_total",
                "Upstream calls granted, by source: the gateway's own share (no Redis round \
                 trip) or the fleet's pool (one)",
            ),
            &["api", "source"],
        ));
        let shares = metrics.register(IntGaugeVec::new(
            Opts::new(
                "fleet_share_calls",
                "Calls per second of each budget: this gateway's share (own), the fair share, \
                 the paced limit, booked by every gateway (booked), booked for silent ones \
                 (silent)",
            ),
            &["api", "kind"],
        ));
        let fleet = FleetMetrics {
            l2_hits: lookups.with_label_values(&["hit"]),
            l2_absent: lookups.with_label_values(&["absent"]),
            l2_misses: lookups.with_label_values(&["miss"]),
            l2_skipped: lookups.with_label_values(&["skipped"]),
            invalidations_sent: invalidations.with_label_values(&["sent"]),
            invalidations_received: invalidations.with_label_values(&["received"]),
            claims_won: claims.with_label_values(&["won"]),
            claims_waited: claims.with_label_values(&["waited"]),
            claims_expired: claims.with_label_values(&["expired"]),
            mode_changes: metrics.register(IntCounter::new(
                "fleet_mode_changes_total",
                "Switches between fleet and fallback mode",
            )),
            l1_flushes: metrics.register(IntCounter::new(
                "fleet_l1_flushes_total",
                "Whole local caches dropped because invalidations may have been missed",
            )),
            budget_wait: metrics.register(Histogram::with_opts(
                HistogramOpts::new(
                    "fleet_budget_wait_seconds",
                    "Wait for a hold in the fleet's upstream budget",
                )
                .buckets(WAIT_BUCKETS_SECONDS.to_vec()),
            )),
            grants,
            peers: metrics.register(IntGauge::new(
                "fleet_peers",
                "Live gateways of the fleet at the last heartbeat, this one included",
            )),
            silent_peers: metrics.register(IntGauge::new(
                "fleet_silent_peers",
                "Gateways whose lease still lives but whose heartbeats stopped (cut off from \
                 Redis, or dead until their lease ends): their shares stay reserved",
            )),
            peers_expired: metrics.register(IntCounter::new(
                "fleet_peers_expired_total",
                "Gateways dropped from the fleet because their lease ran out without a leave \
                 (killed, or cut off from Redis); each counted once fleet-wide, by the gateway \
                 whose heartbeat dropped it",
            )),
            lease_remaining: metrics.register(Gauge::new(
                "fleet_lease_remaining_seconds",
                "How long this gateway may go on spending its shares without another \
                 answered heartbeat",
            )),
            learning: metrics.register(IntGauge::new(
                "fleet_learning",
                "1 while Redis's budget state is younger than one lease (new, or restarted \
                 empty): shares are held as claimed, none grows, the pool is closed",
            )),
            shares,
            last_shares: Arc::default(),
            mode,
            duration,
            errors,
        };
        fleet.set_mode(Mode::Standalone);
        fleet
    }

    /// Shows `mode` as the current one.
    pub(crate) fn set_mode(&self, mode: Mode) {
        for m in Mode::ALL {
            self.mode
                .with_label_values(&[m.label()])
                .set(i64::from(m == mode));
        }
    }

    /// Shows one budget's shares after a heartbeat.
    pub(super) fn show_shares(&self, api: &str, own: u32, granted: &super::limiter::Granted) {
        let shown = [
            own,
            granted.fair,
            granted.paced,
            granted.booked,
            granted.for_silent,
        ];
        self.last_shares.lock().insert(api.to_owned(), shown);
        for (kind, value) in ["own", "fair", "paced", "booked", "silent"]
            .into_iter()
            .zip(shown)
        {
            self.shares
                .with_label_values(&[api, kind])
                .set(i64::from(value));
        }
    }

    /// The membership and every budget's shares as last shown, in one line for `/readyz`.
    pub(super) fn readiness(&self, mode: Mode) -> String {
        let mut line = format!(
            "fleet {} peers={} silent={} lease_left={:.1}s learning={}",
            mode.label(),
            self.peers.get(),
            self.silent_peers.get(),
            self.lease_remaining.get(),
            if self.learning.get() == 1 {
                "yes"
            } else {
                "no"
            },
        );
        for (api, [own, fair, paced, booked, silent]) in self.last_shares.lock().iter() {
            line.push_str(&format!(
                "; {api} share={own}/s fair={fair}/s paced={paced}/s booked={booked}/s \
                 for_silent={silent}/s"
            ));
        }
        line
    }

    /// Records one Redis command.
    pub(crate) fn record(&self, command: Command, seconds: f64, ok: bool) {
        self.duration
            .with_label_values(&[command.label()])
            .observe(seconds);
        if !ok {
            self.errors.with_label_values(&[command.label()]).inc();
        }
    }
}
