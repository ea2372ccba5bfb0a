//! Two regions `a` and `b`, each with its own broker and roles, and `chorus mirror` processes between them.

use super::{Cluster, Process, TestKafka};

/// Two regions sharing a topic prefix, each with one ingest, fanout and edge.
pub async fn two_regions_with(fanout_flags: &[&str]) -> (Cluster, Cluster) {
    two_regions_full(1, &[], fanout_flags).await
}

/// Two regions with `edges` edges each (extra edge flags in `edge_flags`).
pub async fn two_regions_full(
    edges: usize,
    edge_flags: &[&str],
    fanout_flags: &[&str],
) -> (Cluster, Cluster) {
    let prefix = format!("t{}.", uuid::Uuid::new_v4().simple());
    let a = TestKafka::start_region(&prefix, "a").await;
    let b = TestKafka::start_region(&prefix, "b").await;
    let flags = |other: &str| {
        let mut flags = vec![format!("--mirrored-regions={other}")];
        flags.extend(fanout_flags.iter().map(|f| (*f).to_owned()));
        flags
    };
    let a = Cluster::start_full(a, edges, 1, edge_flags, &flags("b")).await;
    let b = Cluster::start_full(b, edges, 1, edge_flags, &flags("a")).await;
    (a, b)
}

/// `chorus mirror` copying `from`'s mirrored topics into `to`, as its own process.
pub async fn mirror(from: &Cluster, to: &Cluster) -> Process {
    let mut flags = to.kafka_flags();
    flags.extend([
        format!("--source-kafka={}", from.kafka.args.brokers),
        format!("--source-region={}", from.kafka.args.region),
    ]);
    Process::start("mirror", &flags).await
}
