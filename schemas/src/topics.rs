//! Topic names and partitioning, the things every producer and reader of Chorus's topics must agree on.

/// The names of Chorus's topics, with an optional prefix so several deployments (or tests) share a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    /// Comments and likes accepted by this region's ingest (delete policy).
    pub events: String,
    /// Which edge has viewers of which stream (compacted).
    pub subscriptions: String,
    /// Which edges are alive and where to reach them (compacted).
    pub edges: String,
    /// Like counts per stream, kept by fanout (compacted, partitioned like `events`; never mirrored).
    pub like_totals: String,
    /// Who may not post where (compacted, mirrored to every region).
    pub bans: String,
    /// Each stream's chat settings (compacted, mirrored to every region).
    pub stream_settings: String,
    /// Viewers per stream and edge (compacted, partitioned like `events`, mirrored to every region).
    pub viewer_counts: String,
}

impl Topics {
    pub fn with_prefix(prefix: &str) -> Self {
        Topics {
            events: format!("{prefix}events"),
            subscriptions: format!("{prefix}subscriptions"),
            edges: format!("{prefix}edges"),
            like_totals: format!("{prefix}like-totals"),
            bans: format!("{prefix}bans"),
            stream_settings: format!("{prefix}stream-settings"),
            viewer_counts: format!("{prefix}viewer-counts"),
        }
    }

    /// The topics every region mirrors from every other (MirrorMaker 2 naming: `<region>.<topic>`).
    pub fn mirrored(&self) -> [&str; 4] {
        [
            &self.events,
            &self.bans,
            &self.stream_settings,
            &self.viewer_counts,
        ]
    }

    /// `topic` of `region` as mirrored into another region's cluster.
    pub fn mirrored_name(region: &str, topic: &str) -> String {
        format!("{region}.{topic}")
    }

    /// The copy of `events` from `region` on another region's cluster: `<region>.<events>`, MirrorMaker 2's
    /// naming (its default replication policy), which `chorus mirror` follows too.
    pub fn mirrored_events(&self, region: &str) -> String {
        format!("{region}.{}", self.events)
    }

    /// The region whose copy of `events` `topic` is, when it is one (`<region>.<events>`, the region one
    /// name without dots).
    pub fn mirrored_region<'t>(&self, topic: &'t str) -> Option<&'t str> {
        mirrored_region(topic, &self.events)
    }
}

/// The region whose copy of the events topic `events` `topic` is, when it is one (see
/// [`Topics::mirrored_region`]), for readers that know only the events topic's name.
pub fn mirrored_region<'t>(topic: &'t str, events: &str) -> Option<&'t str> {
    topic
        .strip_suffix(events)
        .and_then(|region| region.strip_suffix('.'))
        .filter(|region| !region.is_empty() && !region.contains('.'))
}

/// One partition of one topic: the key of everything Chorus keeps per partition.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: i32,
}

impl TopicPartition {
    pub fn new(topic: &str, partition: i32) -> Self {
        TopicPartition {
            topic: topic.to_owned(),
            partition,
        }
    }
}

/// The partition of `events` that carries a stream: Kafka's default partitioner for keyed records
/// (murmur2 of the key, sign bit cleared, modulo the partition count), which producers are configured to use
/// (`partitioner=murmur2_random` in librdkafka), so an edge can tell a stream's partition without asking.
pub fn partition_for(stream_id: &str, partitions: i32) -> i32 {
    let hash = murmur2::murmur2(stream_id.as_bytes(), murmur2::KAFKA_SEED) & 0x7fff_ffff;
    (hash % partitions.max(1) as u32) as i32
}

/// Longest stream id, in bytes.
pub const MAX_STREAM_ID_LEN: usize = 128;

/// A stream id is 1 to 128 of `A-Z a-z 0-9 . _ -`, starting with a letter or digit. It is a Kafka key and part
/// of URLs and of subscription keys, so nothing else is allowed (in particular no `/`).
pub fn is_valid_stream_id(id: &str) -> bool {
    let mut chars = id.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    first_ok
        && id.len() <= MAX_STREAM_ID_LEN
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitioning_matches_kafkas_default_partitioner() {
        // Hashes from Apache Kafka's own tests of `Utils.murmur2`.
        for (key, hash) in [("21", -973932308i32), ("foobar", -790332482)] {
            assert_eq!(
                murmur2::murmur2(key.as_bytes(), murmur2::KAFKA_SEED) as i32,
                hash
            );
            assert_eq!(partition_for(key, 12), (hash & 0x7fff_ffff) % 12);
        }
        for n in 1..40 {
            assert!((0..n).contains(&partition_for("any-stream", n)));
        }
    }

    #[test]
    fn stream_ids() {
        for ok in ["a", "final-2026", "IPL.final_2", &"x".repeat(128)] {
            assert!(is_valid_stream_id(ok), "{ok}");
        }
        for bad in ["", "-a", "a/b", "a b", "ü", &"x".repeat(129), "a\u{0}"] {
            assert!(!is_valid_stream_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn prefixes_apply_to_every_topic() {
        let t = Topics::with_prefix("t1.");
        assert_eq!(t.events, "t1.events");
        assert_eq!(t.subscriptions, "t1.subscriptions");
        assert_eq!(t.edges, "t1.edges");
        assert_eq!(t.like_totals, "t1.like-totals");
    }

    #[test]
    fn mirrored_topics_are_named_and_recognised_the_same_way() {
        let t = Topics::with_prefix("t1.");
        assert_eq!(t.mirrored_events("eu"), "eu.t1.events");
        assert_eq!(t.mirrored_region("eu.t1.events"), Some("eu"));
        assert_eq!(t.mirrored_region(&t.mirrored_events("us")), Some("us"));
        for not_mirrored in [
            "t1.events",
            ".t1.events",
            "a.b.t1.events",
            "eu.t1.edges",
            "eut1.events",
        ] {
            assert_eq!(t.mirrored_region(not_mirrored), None, "{not_mirrored}");
        }
    }
}
