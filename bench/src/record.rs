//! What one benchmark run records: written as JSON to `bench/results/<scenario>.json`, and the input of the
//! generated report (`bench/REPORT.md`).

use serde::{Deserialize, Serialize};

/// One run of one scenario.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRecord {
    /// `latency`, `fanout`, `idle`, `join-storm`, `ingest` or `peer`.
    pub scenario: String,
    /// `tiny` (the CI smoke size) or `full`.
    pub size: String,
    /// The command line that produced this record.
    pub command: String,
    /// When the run started, milliseconds since the Unix epoch.
    pub started_ms: i64,
    /// The machine: CPU model, core count, memory, kernel.
    pub machine: Machine,
    /// One row per measured configuration (e.g. Chorus at 500 events/s, Nchan at 500 events/s).
    pub rows: Vec<Row>,
    /// Series to plot (latency distributions, deliveries over time).
    pub series: Vec<Series>,
    /// What limited the run (client CPU, server CPU, broker), in a sentence or two each.
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub memory_gib: f64,
    pub kernel: String,
}

/// One measured configuration: a name and named figures, in the order they should appear in a table.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Row {
    /// E.g. `chorus, 500 ev/s, coalesce 20 ms`.
    pub name: String,
    /// (column, value, unit), e.g. ("p99", 12.5, "ms"), ("deliveries/s", 95000.0, "/s").
    pub figures: Vec<(String, f64, String)>,
}

/// Points to plot: `kind` is `latency-cdf` (x = latency ms, y = fraction at or below) or `over-time`
/// (x = seconds since the start, y = `y_label` per second).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Series {
    /// The plot this series belongs to (one SVG per plot), e.g. `fanout-latency`.
    pub plot: String,
    pub kind: String,
    /// The legend entry, e.g. `chorus 500 ev/s`.
    pub label: String,
    pub x_label: String,
    pub y_label: String,
    pub points: Vec<(f64, f64)>,
}
