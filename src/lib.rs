//! tim-gateway: a drop-in sidecar for Tencent Cloud IM's REST API, caching and coalescing
//! `v4/profile/portrait_get`.
//!
//! Callers point their existing Tencent client at the gateway (only the host changes) and get
//! exactly what Tencent would answer; Tencent sees far fewer, fuller calls, never more than its
//! per-second limit. Every other API is passed through under its own limit, and Tencent's
//! callbacks keep the cache true when profiles change elsewhere.
//!
//! # Layout
//!
//! Public: `apis`, `config`, `demo`, `metrics`, `reload`, `shutdown`, `sim`, `traces`, `usersig`; everything else is
//! internal (`bench` and `fuzzing` are doc-hidden doors for `benches/` and `fuzz/`).
//!
//! | module | owns |
//! |---|---|
//! | `apis` | the one table of APIs: path, metric label, handling (cached, invalidating); the rest passed through |
//! | `config` | TOML + env -> validated [`Config`] |
//! | `wire` | Tencent JSON: request validation, upstream decoding, response and error encoding |
//! | `error` | the one [`Error`] type: Tencent code, fault, retryable or outage |
//! | `usersig`, `auth` | UserSig v2 sign/verify; checking callers' query strings |
//! | `tls` | (leaf) rustls client configs, CA files, the one pooled HTTPS client builder |
//! | `readiness` | (leaf) the [`Report`](readiness::Report) seam: a component's line in `/readyz` |
//! | `cache` | per-(account, tag) values, absences and stale slots in moka; invalidation stamps; the [`SharedTier`](cache::SharedTier) seam behind L1 |
//! | `answers` | whole all-hit answers by exact request body, voided by expiry or invalidation |
//! | `batcher` | coalescing misses of concurrent callers into upstream calls of <= 100 accounts |
//! | `lists` | the other list reads (`[list_apis]`): one pipeline for every row of the list table, per-id cache, coalesced calls |
//! | `ratelimit` | FIFO, deadline-bounded limiter per upstream API (local engine, or a [`SharedBudget`](ratelimit::SharedBudget)), pace, window gauges |
//! | `fleet` | Redis: one budget, one shared cache tier, one invalidation channel for N gateways; plugs into the two seams, named only by `wiring` |
//! | `breaker`, `retry` | stop calling a failing upstream; retries inside a budget |
//! | `upstream` | HTTP(S) calls to Tencent (rustls, h2 by ALPN), signed as the gateway's admin; each API's path (limiter, breaker, retries) and its one attempt loop |
//! | `passthrough` | every other `/v4/<service>/<command>`, forwarded byte for byte under its own limiter |
//! | `callback` | Tencent's callbacks: Sign check, invalidation, over-limit pacing, relay to the app |
//! | `service` | API policy: validate -> cache -> tier -> batcher -> assemble (one file per stage); stale; portrait_set; admin purge |
//! | `routes`, `server` | route table, probes and responses; bounded connections, announced drain |
//! | `metrics` | the owned registry, the request path's series, exposition; components register their own families on it |
//! | `sim` | the simulated Tencent upstream (demo, `tim-gateway sim`, tests, benches) |
//! | `demo` | `tim-gateway demo`: the gateway in front of the sim, and a ready curl |
//! | `shutdown` | the SIGTERM / Ctrl-C future that starts the drain |
//! | `traces` | OpenTelemetry export when the OTEL_* variables ask; a request's span continues the caller's traceparent |
//! | `reload` | a config read again on SIGHUP: the rates and TTLs applied live, the rest kept until a restart |
//! | `wiring` | builds every component from the config, plugs the fleet into its seams, serves |
//!
//! Imports between these modules run one way (`tests/architecture.rs` fails on any circle):
//! leaves (`apis`, `error`, `wire`, `tls`, `readiness`, `usersig`, `config`, `metrics`) <- components
//! (`cache`, `ratelimit`, `breaker`, `retry`, `auth`) <- `fleet` and `upstream` <- `batcher`
//! <- `service`, `passthrough` <- `callback` <- `routes` <- `server` <- `wiring`. Only
//! `wiring` names `fleet`.
//!
//! # One request
//!
//! `server` accepts -> `routes` matches `POST /v4/profile/portrait_get`, `auth` checks the
//! query, the body is read up to a limit -> `service` serves a still-valid answer kept for
//! exactly this body (`answers`), or validates it (`wire`) and looks each (account, tag) up in
//! `cache`. All hits: the answer is written from cached raw JSON and kept by body, done.
//! In a fleet, misses are looked up in the shared tier (`fleet`, behind `cache`'s seam) first.
//! The rest go to `batcher`, whose one worker joins them to fetches in flight or batches them,
//! waits for a `ratelimit` permit and calls `upstream`; it caches what comes back and hands
//! each caller its own accounts. `service` assembles the answer in `To_Account` and `TagList`
//! order. Every outcome is HTTP 200 with Tencent's envelope.

#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]
#![warn(unreachable_pub)]

// The public surface: configuration, the entry points, the simulated Tencent, UserSig tools,
// and what `build_service` and an `UpstreamApi` implementation name. Everything else is
// internal; benches and fuzz targets reach what they measure through doc-hidden modules.
pub mod apis;
pub mod config;
pub mod demo;
pub mod metrics;
pub mod reload;
pub mod shutdown;
pub mod sim;
pub mod traces;
pub mod usersig;

#[doc(hidden)]
pub mod bench;
#[doc(hidden)]
pub mod fuzzing;

pub(crate) mod answers;
pub(crate) mod auth;
pub(crate) mod batcher;
pub(crate) mod breaker;
pub(crate) mod cache;
pub(crate) mod callback;
pub(crate) mod error;
pub(crate) mod fleet;
pub(crate) mod lists;
pub(crate) mod passthrough;
pub(crate) mod ratelimit;
pub(crate) mod readiness;
pub(crate) mod request_id;
pub(crate) mod retry;
pub(crate) mod routes;
pub(crate) mod server;
pub(crate) mod service;
pub(crate) mod tls;
pub(crate) mod upstream;
pub(crate) mod wire;

pub(crate) mod wiring;

pub use config::Config;
pub use error::Error;
pub use service::ProfileService;
pub use upstream::UpstreamApi;
pub use wire::STANDARD_TAGS;
pub use wiring::{build_service, run, run_reloading, run_with_upstream, Listeners};
