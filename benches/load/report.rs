//! The load tool's output: one table of figures (scenario, figure, value, target, verdict) and
//! the percentile and formatting helpers the scenarios use. Owns no measurement.

use std::fmt::Display;

/// One line of the summary table.
pub struct Row {
    scenario: String,
    figure: String,
    value: String,
    target: String,
    /// `met` / `MISSED` when the figure has a target, empty otherwise.
    verdict: &'static str,
}

/// The summary table, filled by the scenarios and printed once at the end.
#[derive(Default)]
pub struct Table {
    rows: Vec<Row>,
}

// === impl Table ===

impl Table {
    /// Adds a figure without a target.
    pub fn info(&mut self, scenario: &str, figure: &str, value: impl Display) {
        self.push(scenario, figure, value, "", None);
    }

    /// Two rows: the p50 and p99 of `sorted` latencies (µs), labelled "`what` p50/p99 latency".
    pub fn latencies(&mut self, scenario: &str, what: &str, sorted: &[u32]) {
        for (label, q) in [("p50", 0.50), ("p99", 0.99)] {
            let figure = format!("{what} {label} latency").trim_start().to_string();
            self.info(scenario, &figure, micros(percentile(sorted, q)));
        }
    }

    /// Adds a figure with its target and whether it was met.
    pub fn target(
        &mut self,
        scenario: &str,
        figure: &str,
        value: impl Display,
        target: &str,
        met: bool,
    ) {
        self.push(scenario, figure, value, target, Some(met));
    }

    fn push(
        &mut self,
        scenario: &str,
        figure: &str,
        value: impl Display,
        target: &str,
        met: Option<bool>,
    ) {
        let row = Row {
            scenario: scenario.to_owned(),
            figure: figure.to_owned(),
            value: value.to_string(),
            target: target.to_owned(),
            verdict: match met {
                Some(true) => "met",
                Some(false) => "MISSED",
                None => "",
            },
        };
        eprintln!("  {scenario} {}: {} {}", row.figure, row.value, row.verdict);
        self.rows.push(row);
    }

    /// Prints the table (Markdown, aligned) in scenario order.
    pub fn print(&mut self) {
        self.rows.sort_by(|a, b| a.scenario.cmp(&b.scenario));
        let header = ["scenario", "figure", "value", "target", "verdict"];
        let cells: Vec<[&str; 5]> = self
            .rows
            .iter()
            .map(|r| {
                [
                    r.scenario.as_str(),
                    &r.figure,
                    &r.value,
                    &r.target,
                    r.verdict,
                ]
            })
            .collect();
        let mut widths = header.map(str::len);
        for row in &cells {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let line = |row: &[&str; 5]| {
            let padded: Vec<String> = row
                .iter()
                .zip(widths)
                .map(|(cell, w)| format!("{cell:<w$}"))
                .collect();
            println!("| {} |", padded.join(" | "));
        };
        line(&header);
        let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
        println!("|-{}-|", rule.join("-|-"));
        for row in &cells {
            line(row);
        }
    }
}

// === helpers ===

/// The `q` quantile (0..=1) of ascending `sorted` microseconds; 0 when empty.
pub fn percentile(sorted: &[u32], q: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Microseconds as `850 us` or `12.3 ms`.
pub fn micros(us: u32) -> String {
    if us < 1_000 {
        format!("{us} us")
    } else {
        format!("{:.2} ms", f64::from(us) / 1_000.0)
    }
}
