//! `chorus plan`: how many machines an event needs, from the per-node figures the benchmarks measured
//! (`bench/results/*.json`, written by `chorus-bench`). Every line names the record and figure it comes from;
//! what no benchmark measured is said so. Capacity is the measured figure times `--headroom` (0.5: plan each
//! node at half of what one node was seen to do).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::Value;

#[derive(Debug, Clone, clap::Args)]
pub struct PlanArgs {
    /// Concurrent viewers of the event, over every region (`25M`, `100k` and `1.5M` are understood).
    #[arg(long, value_parser = count)]
    pub viewers: f64,
    /// Regions, each with its own Kafka cluster, fanouts and edges; viewers and posts split evenly.
    #[arg(long, default_value_t = 1)]
    pub regions: u32,
    /// Comments posted per second, over every region.
    #[arg(long, value_parser = count, default_value = "1000")]
    pub comments_per_s: f64,
    /// Likes posted per second, over every region.
    #[arg(long, value_parser = count, default_value = "10000")]
    pub likes_per_s: f64,
    /// Viewers joining per second at the start, over every region.
    #[arg(long, value_parser = count, default_value = "10000")]
    pub join_per_s: f64,
    /// Comments per second each viewer is sent at most (fanout's `--comment-budget`).
    #[arg(long, default_value_t = 50.0)]
    pub comment_budget: f64,
    /// Share of a measured figure a node is planned at.
    #[arg(long, default_value_t = 0.5)]
    pub headroom: f64,
    /// Where the benchmark records are.
    #[arg(long, default_value = "bench/results")]
    pub results: PathBuf,
}

/// `25M`, `100k`, `1.5M`, `2000`.
fn count(raw: &str) -> Result<f64, String> {
    let raw = raw.trim();
    let (number, factor) = match raw.chars().last() {
        Some('k' | 'K') => (&raw[..raw.len() - 1], 1e3),
        Some('m' | 'M') => (&raw[..raw.len() - 1], 1e6),
        Some('g' | 'G' | 'b' | 'B') => (&raw[..raw.len() - 1], 1e9),
        _ => (raw, 1.0),
    };
    number
        .parse::<f64>()
        .ok()
        .filter(|n| n.is_finite() && *n >= 0.0)
        .map(|n| n * factor)
        .ok_or_else(|| format!("{raw:?} is not a count (like 25M, 100k or 2000)"))
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a benchmark record: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "{record} has no row {row:?} with the figure {figure:?} (run `chorus-bench run {record}`)"
    )]
    Missing {
        record: String,
        row: String,
        figure: String,
    },
}

/// The benchmark records, by scenario.
#[derive(Debug, Default)]
pub struct Records {
    by_scenario: HashMap<String, Value>,
}

/// One measured figure and where it comes from.
#[derive(Debug, Clone, PartialEq)]
pub struct Figure {
    pub value: f64,
    pub source: String,
}

impl Records {
    pub fn load(dir: &Path) -> Result<Records, PlanError> {
        let mut records = Records::default();
        for scenario in ["idle", "fanout", "ingest", "join-storm"] {
            let path = dir.join(format!("{scenario}.json"));
            let text = std::fs::read_to_string(&path).map_err(|source| PlanError::Read {
                path: path.clone(),
                source,
            })?;
            let value = serde_json::from_str(&text).map_err(|source| PlanError::Json {
                path: path.clone(),
                source,
            })?;
            records.by_scenario.insert(scenario.to_owned(), value);
        }
        Ok(records)
    }

    /// The figure `figure` of the first row of `scenario` whose name starts with `row`.
    pub fn figure(&self, scenario: &str, row: &str, figure: &str) -> Result<Figure, PlanError> {
        let missing = || PlanError::Missing {
            record: scenario.to_owned(),
            row: row.to_owned(),
            figure: figure.to_owned(),
        };
        let record = self.by_scenario.get(scenario).ok_or_else(missing)?;
        let rows = record["rows"].as_array().ok_or_else(missing)?;
        let found = rows
            .iter()
            .filter(|r| r["name"].as_str().is_some_and(|n| n.starts_with(row)))
            .find_map(|r| {
                let figures = r["figures"].as_array()?;
                let f = figures.iter().find(|f| f[0] == figure)?;
                Some((
                    r["name"].as_str()?.to_owned(),
                    f[1].as_f64()?,
                    f[2].as_str()?.to_owned(),
                ))
            });
        let (name, value, unit) = found.ok_or_else(missing)?;
        Ok(Figure {
            value,
            source: format!("bench/results/{scenario}.json \"{name}\": {figure} {value:.2} {unit}"),
        })
    }

    /// Cores of the machine `scenario` was measured on.
    fn cores(&self, scenario: &str) -> f64 {
        self.by_scenario
            .get(scenario)
            .and_then(|r| r["machine"]["cores"].as_f64())
            .unwrap_or(2.0)
    }

    fn memory_gib(&self, scenario: &str) -> f64 {
        self.by_scenario
            .get(scenario)
            .and_then(|r| r["machine"]["memory_gib"].as_f64())
            .unwrap_or(16.0)
    }
}

/// Bytes of one comment as a viewer receives it (an `events` frame of one ~100-character comment with its
/// cursor), and on the fanout-to-edge link (postcard); computed from the frame layouts, not measured.
const VIEWER_FRAME_BYTES: f64 = 330.0;
const LINK_EVENT_BYTES: f64 = 220.0;
/// A `StreamEvent` record of a ~100-character comment in Kafka (Avro single-object, key, headers, batch
/// overhead); a like is about half. Computed, not measured.
const COMMENT_RECORD_BYTES: f64 = 260.0;
const LIKE_RECORD_BYTES: f64 = 140.0;

/// What the sections of a plan share.
struct Planner<'a> {
    args: &'a PlanArgs,
    records: &'a Records,
    regions: f64,
    /// The headroom.
    h: f64,
    out: String,
}

impl Planner<'_> {
    fn line(&mut self, text: String) {
        let _ = writeln!(self.out, "{text}");
    }

    fn viewers_per_region(&self) -> f64 {
        self.args.viewers / self.regions
    }

    /// Comments each viewer is sent per second.
    fn seen_per_viewer(&self) -> f64 {
        self.args.comments_per_s.min(self.args.comment_budget)
    }

    /// Edges per region, from memory per idle viewer and CPU per delivery (coalesced frames).
    fn edges(&mut self) -> Result<f64, PlanError> {
        let pss = self
            .records
            .figure("idle", "ChorusWs on one edge", "PSS per viewer")?;
        let cpu = self
            .records
            .figure("fanout", HOT_ROW, "edge CPU/delivery")?;
        let viewers = self.viewers_per_region();
        let gib = viewers * pss.value / 1024.0 / 1024.0;
        let by_memory = gib / (self.records.memory_gib("idle") * self.h);
        let deliveries = viewers * self.seen_per_viewer();
        let by_cpu = deliveries * cpu.value / 1e6 / (self.records.cores("fanout") * self.h);
        let joined = self.records.figure("join-storm", "10000 joins", "joined")?;
        let joins_per_edge = joined.value / JOIN_STORM_S;
        let by_joins = self.args.join_per_s / self.regions / (joins_per_edge * self.h);
        let edges = by_memory.max(by_cpu).max(by_joins).ceil().max(1.0);
        let limit = if by_joins >= by_cpu.max(by_memory) {
            "joins per second"
        } else if by_cpu >= by_memory {
            "CPU per delivery"
        } else {
            "memory per viewer"
        };
        self.line(format!(
            "edges per region: {edges} ({:.0} by memory, {:.0} by CPU, {:.0} by joins; limited by {limit}), {} \
             viewers and {} deliveries/s each, {:.1} GiB for its viewers",
            by_memory.ceil(),
            by_cpu.ceil(),
            by_joins.ceil(),
            human(viewers / edges),
            human(deliveries / edges),
            gib / edges,
        ));
        self.line(format!("  from {}", pss.source));
        self.line(format!("  from {}", cpu.source));
        self.line(format!("  from {} (over {JOIN_STORM_S} s)", joined.source));
        Ok(edges)
    }

    /// Fanouts per region, from fanout CPU per event pushed to one edge; returns the pushes per second.
    fn fanouts(&mut self, edges: f64) -> Result<f64, PlanError> {
        let cpu = self.records.figure("fanout", HOT_ROW, "fanout CPU")?;
        let published = self.records.figure("fanout", HOT_ROW, "published/s")?;
        let per_push = cpu.value / 100.0 / published.value.max(1.0);
        let pushed = self.seen_per_viewer() * edges;
        let cores = pushed * per_push / self.h;
        let fanouts = (cores / self.records.cores("fanout")).ceil().max(1.0);
        let partitions = fanouts.max(12.0);
        self.line(format!(
            "fanouts per region: {fanouts} ({} event pushes/s to {edges} edges), partitions: {partitions}",
            human(pushed)
        ));
        self.line(format!(
            "  from {} and {} (one edge)",
            cpu.source, published.source
        ));
        self.line(format!(
            "  and {} likes/s counted per region, every region's: no benchmark measures fanout's like counting yet",
            human(self.args.likes_per_s)
        ));
        Ok(pushed)
    }

    fn ingests(&mut self) -> Result<(), PlanError> {
        let per_core = self
            .records
            .figure("ingest", "20000/s offered", "accepted/s per core")?;
        let posts = (self.args.comments_per_s + self.args.likes_per_s) / self.regions;
        let cores = posts / (per_core.value * self.h);
        let ingests = (cores / self.records.cores("ingest")).ceil().max(1.0);
        self.line(format!(
            "ingests per region: {ingests} ({} posts/s)",
            human(posts)
        ));
        self.line(format!("  from {}", per_core.source));
        Ok(())
    }

    fn network(&mut self, pushed: f64) {
        let args = self.args;
        let write =
            args.comments_per_s * COMMENT_RECORD_BYTES + args.likes_per_s * LIKE_RECORD_BYTES;
        self.line(format!(
            "broker writes per region: {:.1} MB/s (its own events and every other region's, mirrored; \
             record sizes computed, not measured)",
            write / 1e6
        ));
        let link = pushed * LINK_EVENT_BYTES * 8.0 / 1e6;
        let deliveries = self.viewers_per_region() * self.seen_per_viewer();
        let egress = deliveries * VIEWER_FRAME_BYTES * 8.0 / 1e9;
        self.line(format!(
            "fanout to edges: {link:.1} Mbit/s per region; viewer egress: {egress:.1} Gbit/s per region \
             plain (frame sizes computed; compressed: not measured yet)"
        ));
    }

    fn join_storm(&mut self, edges: f64) -> Result<(), PlanError> {
        let joined = self.records.figure("join-storm", "10000 joins", "joined")?;
        let hello = self
            .records
            .figure("join-storm", "10000 joins", "hello p99")?;
        let args = self.args;
        self.line(format!(
            "join storm: {:.0} s for every viewer to join at {} joins/s; {:.0} joins/s per edge (measured: \
             {:.0}/s on one edge, hello p99 {:.0} ms)",
            args.viewers / args.join_per_s.max(1.0),
            human(args.join_per_s),
            args.join_per_s / self.regions / edges,
            joined.value / JOIN_STORM_S,
            hello.value
        ));
        self.line(format!("  from {}", hello.source));
        Ok(())
    }
}

/// How long the join-storm scenario's joins were spread over.
const JOIN_STORM_S: f64 = 10.0;

/// The row of the hot-stream regime the per-delivery figures come from.
const HOT_ROW: &str = "chorus 100 ev/s, coalesce 20 ms";

/// The plan, as printed.
pub fn plan(args: &PlanArgs, records: &Records) -> Result<String, PlanError> {
    let mut p = Planner {
        args,
        records,
        regions: f64::from(args.regions.max(1)),
        h: args.headroom.clamp(0.05, 1.0),
        out: String::new(),
    };
    let summary = format!(
        "event: {} viewers over {} region(s), {} comments/s (each viewer sent at most {}/s), {} likes/s, \
         {} joins/s; nodes planned at {:.0}% of what one was measured to do",
        human(args.viewers),
        args.regions,
        human(args.comments_per_s),
        human(p.seen_per_viewer()),
        human(args.likes_per_s),
        human(args.join_per_s),
        p.h * 100.0
    );
    p.line(summary);
    let edges = p.edges()?;
    let pushed = p.fanouts(edges)?;
    p.ingests()?;
    p.network(pushed);
    p.join_storm(edges)?;
    Ok(p.out)
}

fn human(n: f64) -> String {
    if n >= 1e6 {
        format!("{:.1}M", n / 1e6)
    } else if n >= 1e4 {
        format!("{:.0}k", n / 1e3)
    } else {
        format!("{n:.0}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_take_their_suffixes() {
        assert_eq!(count("25M"), Ok(25e6));
        assert_eq!(count("100k"), Ok(1e5));
        assert_eq!(count("1.5M"), Ok(1.5e6));
        assert_eq!(count("2000"), Ok(2000.0));
        assert!(count("lots").is_err() && count("-1").is_err());
    }

    fn records() -> Records {
        let row =
            |name: &str, figures: Value| serde_json::json!({"name": name, "figures": figures});
        let machine = serde_json::json!({"cores": 2, "memory_gib": 16.0});
        let mut records = Records::default();
        let mut add = |scenario: &str, rows: Vec<Value>| {
            let record = serde_json::json!({"machine": machine, "rows": rows});
            records.by_scenario.insert(scenario.to_owned(), record);
        };
        add(
            "idle",
            vec![row(
                "ChorusWs on one edge",
                serde_json::json!([["PSS per viewer", 8.0, "KiB"]]),
            )],
        );
        add(
            "fanout",
            vec![row(
                "chorus 100 ev/s, coalesce 20 ms",
                serde_json::json!([
                    ["edge CPU/delivery", 1.0, "us"],
                    ["fanout CPU", 10.0, "% of a core"],
                    ["published/s", 100.0, "/s"]
                ]),
            )],
        );
        add(
            "ingest",
            vec![row(
                "20000/s offered",
                serde_json::json!([["accepted/s per core", 10000.0, "/s"]]),
            )],
        );
        add(
            "join-storm",
            vec![row(
                "10000 joins",
                serde_json::json!([["joined", 10000.0, ""], ["hello p99", 900.0, "ms"]]),
            )],
        );
        records
    }

    #[test]
    fn every_figure_comes_from_a_record_and_the_numbers_add_up() {
        let args = PlanArgs {
            viewers: 1e6,
            regions: 1,
            comments_per_s: 100.0,
            likes_per_s: 10_000.0,
            join_per_s: 10_000.0,
            comment_budget: 50.0,
            headroom: 0.5,
            results: PathBuf::new(),
        };
        let plan = plan(&args, &records()).expect("plan");
        // Memory: 1M x 8 KiB = 7.6 GiB over 8 GiB usable per node: 1. CPU: 50M deliveries/s x 1 us = 50
        // core-seconds over 1 core usable per node: 50 edges. Joins: 10k/s at 500 per edge (half of 1000): 20.
        assert!(
            plan.contains(
                "edges per region: 50 (1 by memory, 50 by CPU, 20 by joins; limited by CPU per delivery)"
            ),
            "{plan}"
        );
        assert!(
            plan.contains("from bench/results/idle.json \"ChorusWs on one edge\": PSS per viewer"),
            "{plan}"
        );
        // 10,100 posts/s at 5,000 per core (half of 10,000) is 2.02 cores: two 2-core nodes.
        assert!(
            plan.contains("ingests per region: 2 (10k posts/s)"),
            "{plan}"
        );
        // 50 pushes/s to each of 50 edges at 1 ms of fanout CPU each, doubled: 5 cores, three nodes.
        assert!(
            plan.contains("fanouts per region: 3 (2500 event pushes/s to 50 edges)"),
            "{plan}"
        );
        assert!(plan.contains("join storm: 100 s"), "{plan}");
        let missing = Records::default().figure("idle", "x", "y");
        assert!(matches!(missing, Err(PlanError::Missing { .. })));
    }
}
