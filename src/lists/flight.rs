//! Coalescing of one list read: each (options, id) asked by concurrent callers is fetched by
//! one upstream call, which later callers join while it is queued or in flight ("late joiners
//! ride along"). Ids wait in one queue per set of options; the queue's sender task waits for a
//! permit of the API's limiter (first come, first served, within `limits.max_queue_wait_ms`),
//! then takes up to the API's maximum of ids into one call, and goes on while ids wait. Calls
//! run on their own tasks (several may be in flight under the limiter), each through the
//! API's one attempt loop (breaker, retries within their budget, 60007 pacing). What comes
//! back is cached first (`ttl_ms > 0`, successes only, fenced by the id's invalidation stamp),
//! then handed to every waiter of each id, then, in a fleet, shared with the peers waiting on
//! this gateway's claims (`shared.rs`).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::{Map, Value};
use tokio::sync::watch;
use tracing::Instrument as _;

use super::answer::{self, IdAnswer};
use super::metrics::ApiListMetrics;
use super::request;
use crate::apis::ListSpec;
use crate::breaker::Admission;
use crate::cache::{CacheTier, ListCache, ListKeys, ListStamp, ListTierWrite};
use crate::config::LiveDuration;
use crate::error::Error;
use crate::metrics::{Metrics, Outcome};
use crate::ratelimit::CallPermit;
use crate::upstream::{Attempts, RetryTurn, UpstreamPath};

/// What one id's fetch came to: its entry (`None`: the upstream left it out), or the error
/// that failed the whole call.
pub(super) type Fetched = Result<Option<IdAnswer>, Error>;

/// Ids of one API waiting for a call, across every set of options: past this a caller is
/// refused at once (a hostile neighbour cannot grow the queue without bound).
const MAX_WAITING_IDS: usize = 100_000;

/// One (options, id) being fetched.
struct Flight {
    /// The id's invalidation stamp when its fetch was queued.
    stamp: ListStamp,
    done: watch::Sender<Option<Fetched>>,
}

struct Waiting {
    id: Arc<str>,
    flight: Arc<Flight>,
    since: Instant,
    /// The caller's span, for the call's links (when traces are exported).
    caller: Option<opentelemetry::trace::SpanContext>,
}

/// The ids waiting under one set of options; exists while its sender task runs.
struct Queue {
    fields: Arc<Map<String, Value>>,
    waiting: VecDeque<Waiting>,
}

#[derive(Default)]
struct State {
    flights: HashMap<(Arc<str>, Arc<str>), Arc<Flight>>,
    queues: HashMap<Arc<str>, Queue>,
    waiting: usize,
}

/// Everything a list read's calls need.
pub(super) struct Caller {
    pub spec: &'static ListSpec,
    /// The API's position in the list table (its key in the cache).
    pub index: u8,
    pub path: UpstreamPath,
    pub cache: ListCache,
    /// In a fleet, where fetched ids are shared and claims end (`shared.rs`).
    pub tier: CacheTier,
    /// `ttl_ms` (zero: nothing is cached), changed live by a reload.
    pub ttl: LiveDuration,
    pub max_wait: Duration,
    /// `upstream.timeout_ms`.
    pub attempt_timeout: Duration,
    pub metrics: Metrics,
    pub own: ApiListMetrics,
}

/// One list read's flights; cheap to clone.
#[derive(Clone)]
pub(super) struct Flights(Arc<Inner>);

struct Inner {
    caller: Caller,
    state: Mutex<State>,
}

/// A caller's wait for one id.
pub(super) struct Wait {
    pub id: Arc<str>,
    done: watch::Receiver<Option<Fetched>>,
}

impl Flights {
    pub(super) fn new(caller: Caller) -> Flights {
        Flights(Arc::new(Inner {
            caller,
            state: Mutex::new(State::default()),
        }))
    }

    pub(super) fn caller(&self) -> &Caller {
        &self.0.caller
    }

    /// Joins each of `ids` (unique) to its flight under `options`, or queues a new one.
    pub(super) fn join(
        &self,
        options: &Arc<str>,
        fields: &Arc<Map<String, Value>>,
        ids: Vec<Arc<str>>,
    ) -> Result<Vec<Wait>, Error> {
        let caller = &self.0.caller;
        let now = Instant::now();
        let traced = crate::traces::caller_of(&tracing::Span::current());
        let mut state = self.0.state.lock();
        if state.waiting + ids.len() > MAX_WAITING_IDS {
            return Err(Error::QueueWaitExceeded(caller.max_wait));
        }
        let mut waits = Vec::with_capacity(ids.len());
        let mut start_sender = false;
        for id in ids {
            let key = (options.clone(), id.clone());
            if let Some(flight) = state.flights.get(&key) {
                if caller.cache.is_current(flight.stamp) {
                    caller.own.joined.inc();
                    waits.push(Wait {
                        id,
                        done: flight.done.subscribe(),
                    });
                    continue;
                }
            }
            caller.own.fetched.inc();
            let (done, receiver) = watch::channel(None);
            let flight = Arc::new(Flight {
                stamp: caller.cache.stamp(caller.index, &id),
                done,
            });
            state.flights.insert(key, flight.clone());
            let queue = state.queues.entry(options.clone()).or_insert_with(|| {
                start_sender = true;
                Queue {
                    fields: fields.clone(),
                    waiting: VecDeque::new(),
                }
            });
            queue.waiting.push_back(Waiting {
                id: id.clone(),
                flight,
                since: now,
                caller: traced.clone(),
            });
            state.waiting += 1;
            waits.push(Wait { id, done: receiver });
        }
        drop(state);
        if start_sender {
            tokio::spawn(self.clone().send_while_waiting(options.clone()));
        }
        Ok(waits)
    }

    /// The sender of `options`' queue: a permit, then a call of the ids at the front, until
    /// none waits.
    async fn send_while_waiting(self, options: Arc<str>) {
        let caller = &self.0.caller;
        loop {
            let wait_from = Instant::now();
            let acquired = caller
                .path
                .limiter()
                .acquire(wait_from + caller.max_wait, caller.max_wait)
                .await;
            let (permit, waited) = match acquired {
                Ok(acquired) => acquired,
                Err(error) => {
                    if self.fail_waited_since(&options, wait_from, &error) {
                        return;
                    }
                    continue;
                }
            };
            caller.metrics.ratelimit_wait.observe(waited.as_secs_f64());
            let (fields, batch, last) = self.take_batch(&options);
            if !batch.is_empty() {
                tokio::spawn(self.clone().call(options.clone(), fields, batch, permit));
            }
            if last {
                return;
            }
        }
    }

    /// Up to the API's maximum of waiting ids, and whether the queue is now empty (then it is
    /// gone, and the next caller starts a new sender).
    fn take_batch(&self, options: &Arc<str>) -> (Arc<Map<String, Value>>, Vec<Waiting>, bool) {
        let max = self.0.caller.spec.max_ids;
        let mut state = self.0.state.lock();
        let Some(queue) = state.queues.get_mut(options) else {
            return (Arc::default(), Vec::new(), true);
        };
        let take = queue.waiting.len().min(max);
        let batch: Vec<Waiting> = queue.waiting.drain(..take).collect();
        let fields = queue.fields.clone();
        let last = queue.waiting.is_empty();
        if last {
            state.queues.remove(options);
        }
        state.waiting -= batch.len();
        (fields, batch, last)
    }

    /// Fails the ids that have waited since before `wait_from` (the permit did not come in
    /// time for them); whether the queue is now empty and gone.
    fn fail_waited_since(&self, options: &Arc<str>, wait_from: Instant, error: &Error) -> bool {
        let mut failed = Vec::new();
        let last = {
            let mut state = self.0.state.lock();
            let Some(queue) = state.queues.get_mut(options) else {
                return true;
            };
            while queue.waiting.front().is_some_and(|w| w.since <= wait_from) {
                failed.extend(queue.waiting.pop_front());
            }
            let last = queue.waiting.is_empty();
            if last {
                state.queues.remove(options);
            }
            state.waiting -= failed.len();
            for waiting in &failed {
                remove_flight(&mut state, options, waiting);
            }
            last
        };
        for waiting in failed {
            waiting.flight.done.send_replace(Some(Err(error.clone())));
        }
        last
    }

    /// One upstream call for `batch`, then its answers cached and handed out.
    async fn call(
        self,
        options: Arc<str>,
        fields: Arc<Map<String, Value>>,
        batch: Vec<Waiting>,
        permit: CallPermit,
    ) {
        let caller = &self.0.caller;
        let ids: Vec<Arc<str>> = batch.iter().map(|w| w.id.clone()).collect();
        caller.own.call_ids.observe(ids.len() as f64);
        let body = request::call_body(caller.spec, &fields, &ids);
        let span = tracing::debug_span!("list_call", api = caller.spec.label, ids = ids.len());
        let callers = batch.iter().filter_map(|w| w.caller.clone());
        crate::traces::link_callers(&span, callers);
        let outcome = self.send(body, permit).instrument(span).await;
        if let Ok(answers) = &outcome {
            if !caller.ttl.is_zero() {
                for waiting in &batch {
                    if let Some(a) = answers.get(&waiting.id).filter(|a| !a.failed) {
                        let (index, entry) = (caller.index, a.entry.clone());
                        let stamp = waiting.flight.stamp;
                        (caller.cache).store(
                            index,
                            &waiting.id,
                            &options,
                            entry,
                            stamp,
                            caller.ttl.get(),
                        );
                    }
                }
            }
        }
        {
            let mut state = self.0.state.lock();
            for waiting in &batch {
                remove_flight(&mut state, &options, waiting);
            }
        }
        // What the fleet is given: nothing of an id invalidated since its fetch was queued.
        let shared: Vec<(Arc<str>, ListTierWrite)> = batch
            .iter()
            .map(|waiting| {
                let fetched = outcome.as_ref().ok().map(|a| a.get(&waiting.id));
                let current = caller.cache.is_current(waiting.flight.stamp);
                let write = if current {
                    share(fetched)
                } else {
                    ListTierWrite::Release
                };
                (waiting.id.clone(), write)
            })
            .collect();
        for waiting in batch {
            let fetched = match &outcome {
                Ok(answers) => Ok(answers.get(&waiting.id).cloned()),
                Err(e) => Err(e.clone()),
            };
            waiting.flight.done.send_replace(Some(fetched));
        }
        if let Some(tier) = caller.tier.shared() {
            let keys = ListKeys {
                api: caller.spec.label,
                options: &options,
            };
            tier.list_put(keys, &shared, caller.ttl.get()).await;
        }
    }

    /// The call through the breaker and the API's attempt loop: its answer split per id.
    async fn send(
        &self,
        body: bytes::Bytes,
        permit: CallPermit,
    ) -> Result<HashMap<Arc<str>, IdAnswer>, Error> {
        let caller = &self.0.caller;
        let path = &caller.path;
        let Admission::Send { probe } = path.breaker().admit(Instant::now()) else {
            return Err(path.breaker().refusal());
        };
        let plan = Attempts {
            deadline: Instant::now() + caller.max_wait + caller.attempt_timeout,
            attempt_takes: caller.attempt_timeout,
            // A read: whatever failed may be sent again, as the retry policy allows.
            may_retry: |_| true,
            retry_turn: RetryTurn::Queued {
                max_wait: caller.max_wait,
            },
            metrics: &caller.metrics,
        };
        let send = || async {
            let answer = path.call(path.api(), body.clone()).await?;
            answer::split(caller.spec, &answer)
        };
        let result = path.attempts(permit, &plan, send, judge).await;
        let verdict = result.as_ref().map(|_| ());
        path.breaker().record(verdict, probe, Instant::now());
        result
    }
}

impl Wait {
    /// What the id's fetch came to, waiting at most until `deadline`.
    pub(super) async fn outcome(mut self, deadline: Instant) -> Fetched {
        let waited =
            tokio::time::timeout_at(deadline.into(), self.done.wait_for(Option::is_some)).await;
        match waited {
            Ok(Ok(fetched)) => fetched.clone().unwrap_or(Ok(None)),
            Ok(Err(_)) | Err(_) => Err(Error::Internal(Arc::from(
                "a list read's upstream call was lost",
            ))),
        }
    }
}

/// What of one id's fetch the fleet is given: an entry, an id left out, or nothing (a failure,
/// of the id or of the whole call: the claim ends and the peers fetch for themselves).
fn share(fetched: Option<Option<&IdAnswer>>) -> ListTierWrite {
    match fetched {
        Some(Some(answer)) if !answer.failed => ListTierWrite::Entry(answer.entry.clone()),
        Some(None) => ListTierWrite::Absent,
        Some(Some(_)) | None => ListTierWrite::Release,
    }
}

/// Drops `waiting`'s flight from the map, unless a newer flight of the same id replaced it.
fn remove_flight(state: &mut State, options: &Arc<str>, waiting: &Waiting) {
    let key = (options.clone(), waiting.id.clone());
    if state
        .flights
        .get(&key)
        .is_some_and(|f| Arc::ptr_eq(f, &waiting.flight))
    {
        state.flights.remove(&key);
    }
}

/// A call's outcome and code: the call's, or the whole answer's when Tencent failed it.
fn judge(result: &Result<HashMap<Arc<str>, IdAnswer>, Error>) -> (Outcome, i64) {
    let outcome = Outcome::of(result.as_ref().map(|_| ()));
    (outcome, result.as_ref().map_or_else(Error::code, |_| 0))
}
