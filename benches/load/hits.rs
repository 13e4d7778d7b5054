//! S1 and S2: the hit path over HTTP. A fixed set of request bodies (1x1, or 20x4 cycling
//! through several distinct bodies), closed loop on 64 connections; the warm-up fills the cache,
//! so every measured request should be answered from it (checked against the sim's call log).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tim_gateway::sim::SimConfig;

use crate::client::{self, Plan, Workload};
use crate::inmem;
use crate::report::Table;
use crate::stack::{self, Stack};
use crate::Timing;

/// One hit-path scenario.
pub struct Hits {
    pub name: &'static str,
    pub accounts: usize,
    pub tags: usize,
    /// Distinct bodies each connection cycles through.
    pub bodies: usize,
    pub conns: usize,
}

/// Pre-built requests; each connection cycles through them from its own offset.
struct Fixed {
    requests: Vec<Vec<u8>>,
    next: Vec<AtomicUsize>,
}

impl Workload for Fixed {
    type Sent = ();

    fn request(&self, conn: usize, out: &mut Vec<u8>) {
        let i = self.next[conn].fetch_add(1, Ordering::Relaxed) % self.requests.len();
        out.extend_from_slice(&self.requests[i]);
    }

    fn answered(&self, (): (), _code: i64, _body: &[u8]) -> bool {
        true
    }
}

impl Hits {
    pub fn run(&self, table: &mut Table, timing: Timing) {
        eprintln!(
            "{}: {}x{} hits, {} bodies, {} conns",
            self.name, self.accounts, self.tags, self.bodies, self.conns
        );
        let stack = Stack::start(SimConfig::default(), stack::base_config());
        let requests = (0..self.bodies)
            .map(|b| {
                let body =
                    inmem::readable_body((b * self.accounts) as u64, self.accounts, self.tags);
                let mut request = Vec::new();
                client::write_request(&mut request, body.as_bytes());
                request
            })
            .collect();
        let workload = Arc::new(Fixed {
            requests,
            next: (0..self.conns).map(|c| AtomicUsize::new(c * 7)).collect(),
        });
        let plan = Plan::starting_now(self.conns, timing);
        let Plan {
            measure_from,
            until,
            ..
        } = plan;
        let result = client::start(&[stack.addr], workload, plan)
            .join()
            .expect("client");
        let upstream = stack::within(&stack.upstream_gets(), measure_from, until).len();
        stack.stop();

        let (name, secs) = (self.name, timing.measure.as_secs_f64());
        let shape = format!("{}x{}:{}", self.accounts, self.tags, self.bodies);
        table.info(name, "shape (accounts x tags : bodies)", shape);
        table.info(
            name,
            "req/s",
            format!("{:.0}", result.ok.len() as f64 / secs),
        );
        table.latencies(name, "", &result.ok);
        let errors: u64 = result.errors.values().sum();
        table.target(name, "errors", errors, "0", errors == 0);
        let check = "0 (all hits)";
        table.target(
            name,
            "upstream calls while measured",
            upstream,
            check,
            upstream == 0,
        );
    }
}
