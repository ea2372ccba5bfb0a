//! Everything the edge counts happening, one variant per occurrence: [`Occurrence::emit`] logs it (where a log
//! line helps) and moves its metric, so each occurrence is logged and counted in exactly one place, whichever
//! code path meets it (in the manner of Vector's `internal_events`). The metrics themselves are named in the
//! `metrics` module.

use std::time::Duration;

use crate::metrics::{EdgeMetrics, FeedMetrics};

/// Something that happened on this edge.
#[derive(Debug)]
pub enum Occurrence<'a> {
    /// A request refused with a problem document (`reason`: its type in snake case, the metric's label).
    Refused {
        reason: &'a str,
    },
    /// A viewer got its `hello`.
    Joined {
        transport: &'static str,
    },
    /// A viewer is told with a `gap` frame that it missed frames.
    Gap {
        missed: u64,
        reason: &'static str,
    },
    /// A viewer that fell behind or stopped reading is let go: `stalled` (a write did not complete in time)
    /// or `too_slow` (it did not catch up after a gap).
    SlowDisconnect {
        why: &'static str,
    },
    /// A viewer came back with a cursor: resumed with `replayed` events it missed, ready `after` its
    /// connect, or not resumed (the outcome says why).
    Resume {
        outcome: crate::cursor::Outcome,
        replayed: usize,
        after: Duration,
    },
    /// A viewer is asked with a `reconnect` frame to come back.
    Reconnect {
        reason: &'static str,
    },
    /// A WebSocket viewer silent for two heartbeats is closed.
    LivenessTimeout,
    /// A WebSocket viewer is closed with `code` for what it sent (`reason`: the metric's label): too many
    /// frames, or a breach of the protocol.
    Violation {
        reason: &'static str,
        code: u16,
    },
    /// A frame written to a viewer (on the hot path, as the next four: counted, not logged).
    FrameSent {
        bytes: usize,
    },
    /// Events handed to one viewer.
    Delivered {
        events: u64,
    },
    /// A viewer's first event, this long after its `hello`.
    FirstEvent {
        after: Duration,
    },
    /// Frames waiting for a viewer when its writer starts a write.
    Backlog {
        frames: usize,
    },
    /// One event's age as it reaches the edge, by the topic it was read from.
    EventAge {
        topic: &'a str,
        age_ms: i64,
    },
    /// A push batch from fanout, and the events in it (before they are routed to rooms).
    BatchReceived,
    EventsReceived {
        count: usize,
    },
    /// Events dropped because they were broadcast already (at-least-once delivery brings repeats).
    DuplicatesDropped {
        count: usize,
    },
    /// Events of a stream without a room here.
    Unrouted {
        count: usize,
    },
    /// A `likes` frame broadcast to a stream's viewers.
    LikesBroadcast,
    /// Comments taken down in a room (logged: a moderator acted).
    TakenDown {
        stream_id: &'a str,
        count: usize,
    },
    /// A viewer count broadcast to a stream's viewers.
    ViewersBroadcast,
    /// The streams with a room here changed.
    StreamsHere {
        count: usize,
    },
    /// A fanout instance said hello on its push session.
    FanoutConnected {
        fanout_id: &'a str,
        partitions: i32,
    },
    /// A push session that had said hello ended.
    FanoutDisconnected,
    /// A connection to the internal port refused for its credential (`reason`: `missing_token` or
    /// `invalid_token`), or a push session ended for breaking the link's protocol (`malformed_batch`,
    /// `no_hello`).
    PushRefused {
        reason: &'static str,
    },
    /// A position (or an event) from fanout not adopted (see `positions`; `reason`: the metric's label).
    PositionRefused {
        reason: &'static str,
    },
    /// A request to a mutating admin route refused for its credential.
    AdminRefused {
        reason: &'static str,
    },
    /// The edge stopped taking viewers and lets the connected ones go.
    Draining,
    /// A membership record was written, or not (`outcome`: `ok` or `error`; the writer logs why).
    MembershipWrite {
        record: &'static str,
        outcome: &'static str,
    },
}

impl Occurrence<'_> {
    pub fn emit(self, metrics: &EdgeMetrics) {
        let (viewers, feed) = (&metrics.viewers, &metrics.feed);
        match self {
            Occurrence::Refused { reason } => {
                tracing::debug!(reason, "viewer refused");
                viewers.rejected.with_label_values(&[reason]).inc();
            }
            Occurrence::Joined { transport } => {
                tracing::debug!(transport, "viewer joined");
                viewers.joins.inc();
            }
            Occurrence::Gap { missed, reason } => {
                tracing::debug!(missed_frames = missed, reason, "viewer missed frames");
                viewers.gaps.inc();
            }
            Occurrence::SlowDisconnect { why } => {
                tracing::debug!(why, "slow viewer disconnected");
                viewers.slow_disconnects.inc();
            }
            Occurrence::Resume {
                outcome,
                replayed,
                after,
            } => resume(viewers, outcome, replayed, after),
            Occurrence::Reconnect { reason } => {
                tracing::debug!(reason, "viewer asked to reconnect");
                viewers.reconnects.with_label_values(&[reason]).inc();
            }
            Occurrence::LivenessTimeout => {
                tracing::debug!("silent viewer closed");
                viewers.liveness_timeouts.inc();
            }
            Occurrence::Violation { reason, code } => {
                tracing::debug!(reason, code, "viewer closed for what it sent");
                viewers.violations.with_label_values(&[reason]).inc();
            }
            Occurrence::FrameSent { bytes } => {
                viewers.frames_sent.inc();
                viewers.bytes_sent.inc_by(bytes as u64);
            }
            Occurrence::Delivered { events } => viewers.events_delivered.inc_by(events),
            Occurrence::FirstEvent { after } => {
                viewers.join_to_first_event.observe(after.as_secs_f64())
            }
            Occurrence::Backlog { frames } => viewers.queue_depth.observe(frames as f64),
            Occurrence::EventAge { topic, age_ms } => feed
                .event_age
                .with_label_values(&[topic])
                .observe(age_ms.max(0) as f64 / 1000.0),
            Occurrence::BatchReceived => feed.push_batches.inc(),
            Occurrence::EventsReceived { count } => feed.events_received.inc_by(count as u64),
            Occurrence::DuplicatesDropped { count } => feed.duplicates_dropped.inc_by(count as u64),
            Occurrence::Unrouted { count } => feed.events_unrouted.inc_by(count as u64),
            Occurrence::LikesBroadcast => feed.likes_frames.inc(),
            Occurrence::TakenDown { stream_id, count } => {
                tracing::info!(stream_id, count, "comments taken down");
                feed.taken_down.inc_by(count as u64);
            }
            Occurrence::ViewersBroadcast => feed.viewers_frames.inc(),
            Occurrence::StreamsHere { count } => feed.streams.set(count as i64),
            Occurrence::FanoutConnected {
                fanout_id,
                partitions,
            } => {
                tracing::info!(fanout_id, partitions, "fanout connected");
                feed.push_sessions.inc();
            }
            Occurrence::FanoutDisconnected => feed.push_sessions.dec(),
            Occurrence::PushRefused { .. }
            | Occurrence::PositionRefused { .. }
            | Occurrence::AdminRefused { .. } => self.emit_internal(feed),
            Occurrence::Draining => viewers.draining.set(1),
            Occurrence::MembershipWrite { record, outcome } => feed
                .membership_writes
                .with_label_values(&[record, outcome])
                .inc(),
        }
    }
}

impl Occurrence<'_> {
    /// The refusals on the internal link and the admin port.
    fn emit_internal(self, feed: &FeedMetrics) {
        match self {
            Occurrence::PushRefused { reason } => {
                tracing::warn!(reason, "push connection refused or dropped");
                feed.push_refused.with_label_values(&[reason]).inc();
            }
            Occurrence::PositionRefused { reason } => {
                tracing::debug!(reason, "position from fanout refused");
                feed.positions_refused.with_label_values(&[reason]).inc();
            }
            Occurrence::AdminRefused { reason } => {
                tracing::warn!(reason, "admin request refused: not the admin token");
                feed.admin_refused.with_label_values(&[reason]).inc();
            }
            _ => {}
        }
    }
}

/// A resume's outcome, what it replayed and how soon.
fn resume(
    viewers: &crate::metrics::ViewerMetrics,
    outcome: crate::cursor::Outcome,
    replayed: usize,
    after: Duration,
) {
    let outcome = outcome.label();
    let after_ms = after.as_millis() as u64;
    tracing::debug!(
        outcome,
        replayed,
        after_ms,
        "viewer came back with a cursor"
    );
    viewers.resumes.with_label_values(&[outcome]).inc();
    if outcome == "resumed" {
        viewers.resume_replayed.inc_by(replayed as u64);
        viewers.resume_to_replay.observe(after.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_occurrence_moves_its_metric() {
        let metrics = EdgeMetrics::register(&prometheus::Registry::new()).expect("metrics");
        let happen = |occurrence: Occurrence<'_>| occurrence.emit(&metrics);
        happen(Occurrence::Gap {
            missed: 3,
            reason: "slow_viewer",
        });
        happen(Occurrence::FrameSent { bytes: 10 });
        happen(Occurrence::FrameSent { bytes: 5 });
        happen(Occurrence::EventAge {
            topic: "events",
            age_ms: -5,
        });
        happen(Occurrence::FanoutConnected {
            fanout_id: "f",
            partitions: 4,
        });
        happen(Occurrence::FanoutDisconnected);
        assert_eq!(metrics.viewers.gaps.get(), 1);
        assert_eq!(metrics.viewers.frames_sent.get(), 2);
        assert_eq!(metrics.viewers.bytes_sent.get(), 15);
        let age = metrics.feed.event_age.with_label_values(&["events"]);
        assert_eq!(age.get_sample_sum(), 0.0, "a clock behind counts as no age");
        assert_eq!(metrics.feed.push_sessions.get(), 0);
    }
}
