//! The controls of a stream's owner and moderators (and the platform's administrators), as ingest's domain:
//! each is idempotent, made durable in Kafka before it is answered, and applies in every region (bans and
//! settings through their mirrored topics, take-downs as events on the stream's own partition).

use chorus_schemas::{
    Ban, CommentsOpenTo, EventKind, Retraction, StreamEvent, StreamSettings, UserRole,
};
use chorus_service::clock;
use uuid::Uuid;

use crate::post::{Accepted, Caller, Ingest, PostError};

/// What a ban asks for (`PUT .../bans/{user_id}`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BanRequest {
    /// `None`: until lifted.
    pub duration_s: Option<u64>,
    pub reason: Option<String>,
    /// Also take down the user's comments of the last this many seconds.
    pub retract_recent_s: Option<u64>,
}

/// Names the take-down events, so a repeated request writes an event viewers' edges drop as a repeat.
const TAKE_DOWN_NAMESPACE: Uuid = Uuid::from_u128(0x6c0a_77f4_5e7b_4d1e_9c59_0f4a_2b1d_c0de);

impl Ingest {
    /// Takes the comment `event_id` of `stream_id` down on every viewer: a `RETRACT` event on the stream's
    /// partition, ordered with its comments.
    pub async fn take_down(
        &self,
        by: &Caller,
        stream_id: &str,
        event_id: &str,
    ) -> Result<Accepted, PostError> {
        let name = format!("{stream_id}/{event_id}");
        let id = Uuid::new_v5(&TAKE_DOWN_NAMESPACE, name.as_bytes());
        let retraction = Retraction {
            event_ids: vec![event_id.to_owned()],
            ..Retraction::default()
        };
        let accepted = self.retract(by, stream_id, id, retraction).await?;
        self.metrics
            .record_control("take_down", Some(stream_id), &by.user_id);
        Ok(accepted)
    }

    async fn retract(
        &self,
        by: &Caller,
        stream_id: &str,
        id: Uuid,
        retraction: Retraction,
    ) -> Result<Accepted, PostError> {
        let event = StreamEvent {
            event_id: id.to_string(),
            stream_id: stream_id.to_owned(),
            user_id: by.user_id.clone(),
            kind: EventKind::Retract,
            text: None,
            created_ms: clock::now_ms(),
            origin: self.region.clone(),
            role: privileged(by),
            retraction: Some(retraction),
        };
        self.store(event).await
    }

    /// Bans `user_id` from `stream_id` (`None`: every stream), and with `retract_recent_s` takes down their
    /// comments of that window there. Applied here at once, elsewhere as the record arrives.
    pub async fn ban(
        &self,
        by: &Caller,
        stream_id: Option<&str>,
        user_id: &str,
        request: BanRequest,
    ) -> Result<Ban, PostError> {
        let now = clock::now_ms();
        let duration_ms = |s: u64| i64::try_from(s.saturating_mul(1000)).unwrap_or(i64::MAX);
        let ban = Ban {
            stream_id: stream_id.map(str::to_owned),
            user_id: user_id.to_owned(),
            until_ms: request
                .duration_s
                .map(|s| now.saturating_add(duration_ms(s))),
            reason: request.reason,
            lifted: false,
            by: by.user_id.clone(),
            updated_ms: now,
        };
        self.write_ban(&ban).await?;
        self.metrics.record_control("ban", stream_id, &by.user_id);
        if let (Some(stream_id), Some(recent)) = (stream_id, request.retract_recent_s) {
            let name = format!("{stream_id}/{user_id}/{now}");
            let id = Uuid::new_v5(&TAKE_DOWN_NAMESPACE, name.as_bytes());
            let retraction = Retraction {
                event_ids: Vec::new(),
                author: Some(user_id.to_owned()),
                since_ms: Some(now.saturating_sub(duration_ms(recent))),
            };
            self.retract(by, stream_id, id, retraction).await?;
        }
        Ok(ban)
    }

    /// Lifts the ban of `user_id` from `stream_id` (`None`: the platform-wide one).
    pub async fn lift(
        &self,
        by: &Caller,
        stream_id: Option<&str>,
        user_id: &str,
    ) -> Result<Ban, PostError> {
        let ban = Ban {
            stream_id: stream_id.map(str::to_owned),
            user_id: user_id.to_owned(),
            until_ms: None,
            reason: None,
            lifted: true,
            by: by.user_id.clone(),
            updated_ms: clock::now_ms(),
        };
        self.write_ban(&ban).await?;
        self.metrics.record_control("lift", stream_id, &by.user_id);
        Ok(ban)
    }

    async fn write_ban(&self, ban: &Ban) -> Result<(), PostError> {
        let key = Ban::key(ban.stream_id.as_deref(), &ban.user_id);
        let payload = self.codecs.bans.encode(ban).map_err(unavailable)?;
        self.producer
            .produce_state(&self.topics.bans, &key, Some(&payload))
            .await
            .map_err(unavailable)?;
        self.moderation
            .apply_ban(&self.topics.bans, &key, Some(ban.clone()));
        Ok(())
    }

    /// Replaces the chat settings of a stream.
    pub async fn set_settings(
        &self,
        by: &Caller,
        stream_id: &str,
        slow_mode_s: u32,
        comments: CommentsOpenTo,
        blocked_terms: Vec<String>,
    ) -> Result<StreamSettings, PostError> {
        let settings = StreamSettings {
            stream_id: stream_id.to_owned(),
            slow_mode_s: i32::try_from(slow_mode_s).unwrap_or(i32::MAX),
            comments,
            blocked_terms,
            by: by.user_id.clone(),
            updated_ms: clock::now_ms(),
        };
        let payload = self
            .codecs
            .settings
            .encode(&settings)
            .map_err(unavailable)?;
        let topic = &self.topics.stream_settings;
        self.producer
            .produce_state(topic, stream_id, Some(&payload))
            .await
            .map_err(unavailable)?;
        self.moderation
            .apply_settings(topic, stream_id, Some(settings.clone()));
        self.metrics
            .record_control("settings", Some(stream_id), &by.user_id);
        Ok(settings)
    }
}

/// The role a control's event records: a moderator's at least.
fn privileged(by: &Caller) -> UserRole {
    if by.role.is_privileged() {
        by.role
    } else {
        UserRole::Moderator
    }
}

/// A control not made durable: logged here, answered `503`.
fn unavailable(error: impl std::fmt::Display) -> PostError {
    tracing::warn!(%error, "moderation record not stored");
    PostError::Unavailable { retry_after_s: 1 }
}
