//! (leaf) Readiness reports: what a component says about its state in `/readyz`'s body.
//!
//! The probe's status says only whether the gateway serves (a sidecar's readiness gates its
//! whole pod, so a degraded dependency must not take every pod of the app out at once); the
//! body says how well: each report is one line an operator reads, e.g. the fleet's membership.

/// A component that reports its state in `/readyz`'s body.
pub(crate) trait Report: Send + Sync {
    /// One line (no newline) describing the component's state now.
    fn readiness(&self) -> String;
}
