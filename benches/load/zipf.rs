//! Account popularity for S4 and the account population S4 and S5 draw from.
//!
//! [`Zipf`] samples ranks `0..n` with probability proportional to `1 / (rank + 1)^s` by binary
//! search in a precomputed CDF (8 bytes per rank). [`readable_account`] (`common/inmem.rs`) maps
//! a rank to a sim account that answers: the sim fails every read of `user{n}` with
//! `n % 97 == 13` (40006, never cached), which would turn one of the hottest accounts into a
//! permanent miss; real profiles do not behave like that, so the population skips them.

use rand::Rng;

/// A Zipf distribution over ranks `0..n`.
pub struct Zipf {
    /// `cdf[k]` = P(rank <= k); the last entry is 1.
    cdf: Vec<f64>,
}

impl Zipf {
    /// Zipf with exponent `s` over `n` ranks.
    pub fn new(n: usize, s: f64) -> Zipf {
        let mut cdf = Vec::with_capacity(n);
        let mut sum = 0.0;
        for k in 1..=n {
            sum += (k as f64).powf(-s);
            cdf.push(sum);
        }
        for c in &mut cdf {
            *c /= sum;
        }
        Zipf { cdf }
    }

    /// One rank, 0 the most popular.
    pub fn sample(&self, rng: &mut impl Rng) -> usize {
        let u: f64 = rng.random();
        self.cdf.partition_point(|c| *c < u).min(self.cdf.len() - 1)
    }
}

pub use crate::inmem::readable_account;

/// Sim accounts needed to hold `n` readable accounts.
pub fn accounts_for(n: u64) -> u64 {
    readable_account(n) + 1
}
