//! Moderation at ingest: the bans and chat settings of every region (rebuilt from the compacted topics
//! `bans` and `stream-settings` and their mirrored copies by [`follow`], and followed live), and the checks
//! every post passes: a banned user is refused (`403`, until when), a stream open only to moderators or closed
//! refuses whom it should (`403`), a comment with a blocked term is refused (`422`, naming the rule, never the
//! terms; see [`terms`]), and slow mode lets a viewer comment once per interval (`429` with `Retry-After`;
//! counted per ingest instance; the owner and moderators are exempt). `closed` means nobody, `moderators`
//! the owner and moderators; blocked terms hold for everyone. Likes pass all but bans. It also holds what
//! `GET /v1/streams/{id}` answers: viewers on every edge of every region, and the like total.

pub mod follow;
mod refusal;
pub mod terms;

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use chorus_schemas::ViewerTally;
use chorus_schemas::{
    Ban, CommentsOpenTo, EventKind, LikeTotal, StreamSettings, UserRole, ViewerCount,
};

pub use refusal::Refusal;
use terms::BlockedTerms;

/// A post as moderation sees it.
#[derive(Debug, Clone, Copy)]
pub struct Asked<'a> {
    pub stream_id: &'a str,
    pub user_id: &'a str,
    pub role: UserRole,
    pub kind: EventKind,
    pub text: Option<&'a str>,
}

/// What `GET /v1/streams/{id}` tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Standing {
    pub viewers: u64,
    pub likes_total: u64,
    pub settings: Option<StreamSettings>,
}

#[derive(Debug, Default)]
struct Tables {
    /// Per ban key, per topic (local or mirrored), the latest record.
    bans: HashMap<String, HashMap<String, Ban>>,
    /// Per stream, per topic, the latest settings and their terms normalised.
    settings: HashMap<String, HashMap<String, (StreamSettings, BlockedTerms)>>,
    viewers: ViewerTally,
    /// Per stream, per events topic counted, the like total.
    likes: HashMap<String, HashMap<String, i64>>,
}

impl Tables {
    /// The ban of `key` in force at `now_ms`: the latest change of every region decides.
    fn ban(&self, key: &str, now_ms: i64) -> Option<&Ban> {
        let latest = self.bans.get(key)?.values().max_by_key(|b| b.updated_ms)?;
        latest.in_force(now_ms).then_some(latest)
    }

    fn settings(&self, stream_id: &str) -> Option<&(StreamSettings, BlockedTerms)> {
        self.settings
            .get(stream_id)?
            .values()
            .max_by_key(|(s, _)| s.updated_ms)
    }
}

#[derive(Debug, Default)]
pub struct Moderation {
    tables: RwLock<Tables>,
    /// Per (stream, user), when their last comment was let through (slow mode).
    last_comment: Mutex<HashMap<(String, String), Instant>>,
}

impl Moderation {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Tables> {
        self.tables.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Tables> {
        self.tables.write().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn apply_ban(&self, topic: &str, key: &str, value: Option<Ban>) {
        let mut tables = self.write();
        match value {
            Some(ban) => {
                let slot = tables.bans.entry(key.to_owned()).or_default();
                slot.insert(topic.to_owned(), ban);
            }
            None => {
                if let Some(slot) = tables.bans.get_mut(key) {
                    slot.remove(topic);
                }
            }
        }
    }

    pub fn apply_settings(&self, topic: &str, key: &str, value: Option<StreamSettings>) {
        let mut tables = self.write();
        match value {
            Some(settings) => {
                let terms = BlockedTerms::new(&settings.blocked_terms);
                let slot = tables.settings.entry(key.to_owned()).or_default();
                slot.insert(topic.to_owned(), (settings, terms));
            }
            None => {
                if let Some(slot) = tables.settings.get_mut(key) {
                    slot.remove(topic);
                }
            }
        }
    }

    pub fn apply_viewer_count(&self, topic: &str, key: &str, value: Option<ViewerCount>) {
        self.write().viewers.apply(topic, key, value);
    }

    pub fn apply_like_total(&self, record: LikeTotal) {
        let mut tables = self.write();
        let totals = tables.likes.entry(record.stream_id).or_default();
        totals.insert(record.topic, record.total);
    }

    /// Whether `user_id` may post to `stream_id` at `now_ms` as far as bans go.
    pub fn check_ban(&self, stream_id: &str, user_id: &str, now_ms: i64) -> Result<(), Refusal> {
        let tables = self.read();
        let here = tables.ban(&Ban::key(Some(stream_id), user_id), now_ms);
        let everywhere = tables.ban(&Ban::key(None, user_id), now_ms);
        match (here, everywhere) {
            (None, None) => Ok(()),
            (here, everywhere) => {
                let until = |b: Option<&Ban>| b.map(|b| b.until_ms.unwrap_or(i64::MAX));
                let longest = until(here).max(until(everywhere)).filter(|u| *u < i64::MAX);
                Err(Refusal::Banned {
                    until_ms: longest,
                    everywhere: everywhere.is_some(),
                })
            }
        }
    }

    /// Every check a post passes (see the module's documentation), at `now_ms` (`now` for slow mode).
    pub fn check(&self, post: &Asked<'_>, now_ms: i64, now: Instant) -> Result<(), Refusal> {
        self.check_ban(post.stream_id, post.user_id, now_ms)?;
        if post.kind != EventKind::Comment {
            return Ok(());
        }
        let privileged = post.role.is_privileged();
        let slow_mode = {
            let tables = self.read();
            let Some((settings, terms)) = tables.settings(post.stream_id) else {
                return Ok(());
            };
            match settings.comments {
                CommentsOpenTo::Open => {}
                CommentsOpenTo::Moderators if privileged => {}
                CommentsOpenTo::Moderators => return Err(Refusal::ModeratorsOnly),
                CommentsOpenTo::Closed => return Err(Refusal::Closed),
            }
            if terms.found_in(post.text.unwrap_or_default()) {
                return Err(Refusal::BlockedTerm);
            }
            u32::try_from(settings.slow_mode_s).unwrap_or(0)
        };
        if privileged {
            return Ok(());
        }
        self.slow_mode(post, slow_mode, now)
    }

    fn slow_mode(&self, post: &Asked<'_>, every_s: u32, now: Instant) -> Result<(), Refusal> {
        if every_s == 0 {
            return Ok(());
        }
        let every = Duration::from_secs(u64::from(every_s));
        let mut last = self
            .last_comment
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let key = (post.stream_id.to_owned(), post.user_id.to_owned());
        if let Some(at) = last.get(&key) {
            let since = now.saturating_duration_since(*at);
            if since < every {
                return Err(Refusal::SlowMode {
                    every_s,
                    retry_after: every - since,
                });
            }
        }
        last.insert(key, now);
        Ok(())
    }

    /// Forgets slow-mode entries older than `idle` (the longest slow mode allowed).
    pub fn forget_idle(&self, idle: Duration, now: Instant) {
        let mut last = self
            .last_comment
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        last.retain(|_, at| now.saturating_duration_since(*at) < idle);
    }

    /// The stream's latest settings, if it has any.
    pub fn settings(&self, stream_id: &str) -> Option<StreamSettings> {
        self.read().settings(stream_id).map(|(s, _)| s.clone())
    }

    /// Viewers, likes and settings of `stream_id` at `now_ms`.
    pub fn standing(&self, stream_id: &str, now_ms: i64) -> Standing {
        let tables = self.read();
        let likes = tables
            .likes
            .get(stream_id)
            .map_or(0, |t| t.values().sum::<i64>());
        Standing {
            viewers: tables.viewers.total(stream_id, now_ms),
            likes_total: u64::try_from(likes).unwrap_or(0),
            settings: tables.settings(stream_id).map(|(s, _)| s.clone()),
        }
    }

    /// Bans in force at `now_ms` (for the gauge).
    pub fn bans_in_force(&self, now_ms: i64) -> usize {
        let tables = self.read();
        tables
            .bans
            .keys()
            .filter(|key| tables.ban(key, now_ms).is_some())
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn comment<'a>(user: &'a str, role: UserRole, text: &'a str) -> Asked<'a> {
        Asked {
            stream_id: "s",
            user_id: user,
            role,
            kind: EventKind::Comment,
            text: Some(text),
        }
    }

    fn ban(stream: Option<&str>, until_ms: Option<i64>, lifted: bool, updated_ms: i64) -> Ban {
        Ban {
            stream_id: stream.map(str::to_owned),
            user_id: "u".into(),
            until_ms,
            reason: None,
            lifted,
            by: "m".into(),
            updated_ms,
        }
    }

    #[test]
    fn the_latest_change_of_any_region_decides_a_ban_and_it_ends_by_itself() {
        let m = Moderation::default();
        let key = Ban::key(Some("s"), "u");
        m.apply_ban("bans", &key, Some(ban(Some("s"), Some(5000), false, 100)));
        let now = Instant::now();
        let refused = m.check(&comment("u", UserRole::Moderator, "hi"), 1000, now);
        assert_eq!(
            refused,
            Err(Refusal::Banned {
                until_ms: Some(5000),
                everywhere: false
            }),
            "a ban holds for moderators too"
        );
        assert!(
            m.check(&comment("u", UserRole::Viewer, "hi"), 5000, now)
                .is_ok(),
            "over"
        );
        m.apply_ban("b.bans", &key, Some(ban(Some("s"), None, true, 200)));
        assert!(
            m.check(&comment("u", UserRole::Viewer, "hi"), 1000, now)
                .is_ok(),
            "lifted in b, later"
        );
        m.apply_ban(
            "bans",
            &Ban::key(None, "u"),
            Some(ban(None, None, false, 300)),
        );
        let everywhere = m.check_ban("other", "u", 1000);
        assert_eq!(
            everywhere,
            Err(Refusal::Banned {
                until_ms: None,
                everywhere: true
            })
        );
        assert_eq!(m.bans_in_force(1000), 1);
    }

    #[test]
    fn settings_refuse_whom_they_should_and_slow_mode_lets_one_comment_through_per_interval() {
        let m = Moderation::default();
        let mut settings = StreamSettings {
            stream_id: "s".into(),
            slow_mode_s: 2,
            comments: CommentsOpenTo::Open,
            blocked_terms: vec!["spoiler".into()],
            by: "o".into(),
            updated_ms: 1,
        };
        m.apply_settings("stream-settings", "s", Some(settings.clone()));
        let t0 = Instant::now();
        let viewer = |text| comment("v", UserRole::Viewer, text);
        assert_eq!(
            m.check(&viewer("a SPOILER"), 0, t0),
            Err(Refusal::BlockedTerm)
        );
        assert!(m.check(&viewer("one"), 0, t0).is_ok());
        let again = m.check(&viewer("two"), 0, t0 + Duration::from_millis(500));
        assert!(
            matches!(again, Err(Refusal::SlowMode { every_s: 2, .. })),
            "{again:?}"
        );
        assert!(m
            .check(&viewer("three"), 0, t0 + Duration::from_secs(2))
            .is_ok());
        let moderator = comment("m", UserRole::Moderator, "hello");
        for _ in 0..3 {
            assert!(m.check(&moderator, 0, t0).is_ok(), "exempt from slow mode");
        }
        let term = comment("m", UserRole::Owner, "spoiler");
        assert_eq!(
            m.check(&term, 0, t0),
            Err(Refusal::BlockedTerm),
            "for everyone"
        );
        settings.comments = CommentsOpenTo::Moderators;
        settings.updated_ms = 2;
        m.apply_settings("stream-settings", "s", Some(settings.clone()));
        assert_eq!(m.check(&viewer("x"), 0, t0), Err(Refusal::ModeratorsOnly));
        assert!(m.check(&moderator, 0, t0).is_ok());
        settings.comments = CommentsOpenTo::Closed;
        settings.updated_ms = 3;
        m.apply_settings("b.stream-settings", "s", Some(settings));
        assert_eq!(m.check(&viewer("x"), 0, t0), Err(Refusal::Closed));
        assert_eq!(m.check(&moderator, 0, t0), Err(Refusal::Closed), "nobody");
        let like = Asked {
            kind: EventKind::Like,
            text: None,
            ..viewer("")
        };
        assert!(m.check(&like, 0, t0).is_ok(), "likes still count");
    }
}
