//! Rate limits: how much one client address, one user and one stream may post to this ingest instance.
//!
//! Each limit is a token bucket per key (GCRA, from `governor`): a sustained rate per second and a burst.
//! The address is checked first, before authentication, so a flood of bad tokens costs little; the user and the
//! stream are checked once a request is otherwise valid, just before it is written to Kafka, so nothing over a
//! limit is ever stored. Keys that have been idle long enough to be back at a full bucket are forgotten by
//! [`RateLimits::forget_idle`], which ingest calls periodically: memory follows the number of recently active
//! keys, not every key ever seen.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use chorus_schemas::EventKind;
use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

use crate::config::LimitArgs;

type Keyed<K> = RateLimiter<K, DefaultKeyedStateStore<K>, DefaultClock>;

/// Which limit a request went over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Address,
    UserComments,
    UserLikes,
    Stream,
}

impl Limit {
    /// Short, bounded label for metrics and the problem document's `limit` member.
    pub fn label(self) -> &'static str {
        match self {
            Limit::Address => "address",
            Limit::UserComments => "user_comments",
            Limit::UserLikes => "user_likes",
            Limit::Stream => "stream",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Limit::Address => "too many requests from this client address",
            Limit::UserComments => "too many comments from this user",
            Limit::UserLikes => "too many likes from this user",
            Limit::Stream => "this stream is receiving more events than ingest accepts",
        }
    }
}

/// A request over a limit, and how long until the same request would pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    pub limit: Limit,
    pub retry_after: Duration,
}

/// The problem document's `detail` of a 429.
impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}; retry after {} s",
            self.limit.describe(),
            self.retry_after_s()
        )
    }
}

impl std::error::Error for Refused {}

impl Refused {
    /// Whole seconds for `Retry-After`, rounded up, at least 1.
    pub fn retry_after_s(&self) -> u64 {
        let secs = self.retry_after.as_secs() + u64::from(self.retry_after.subsec_nanos() > 0);
        secs.max(1)
    }
}

/// The limiters of one ingest instance; `None` everywhere with `--rate-limits off`.
pub struct RateLimits {
    address: Option<Keyed<IpAddr>>,
    user_comments: Option<Keyed<String>>,
    user_likes: Option<Keyed<String>>,
    stream: Option<Keyed<String>>,
}

impl std::fmt::Debug for RateLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimits")
            .field("enabled", &self.address.is_some())
            .field("tracked_keys", &self.tracked_keys())
            .finish()
    }
}

fn keyed<K: std::hash::Hash + Eq + Clone>(rate: NonZeroU32, burst: NonZeroU32) -> Keyed<K> {
    RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst))
}

fn check<K: std::hash::Hash + Eq + Clone>(
    limiter: Option<&Keyed<K>>,
    key: &K,
    limit: Limit,
) -> Result<(), Refused> {
    let Some(limiter) = limiter else {
        return Ok(());
    };
    limiter.check_key(key).map_err(|not_until| Refused {
        limit,
        retry_after: not_until.wait_time_from(limiter.clock().now()),
    })
}

impl RateLimits {
    pub fn new(args: &LimitArgs) -> Self {
        let on = args.enabled;
        RateLimits {
            address: on.then(|| keyed(args.address_rate, args.address_burst)),
            user_comments: on.then(|| keyed(args.user_rate, args.user_burst)),
            user_likes: on.then(|| keyed(args.user_like_rate, args.user_like_burst)),
            stream: on.then(|| keyed(args.stream_rate, args.stream_burst)),
        }
    }

    /// Counts one request from `address` (IPv6 by its /64: one subscriber usually holds a whole /64).
    pub fn check_address(&self, address: IpAddr) -> Result<(), Refused> {
        let key = chorus_service::serve::client_key(address);
        check(self.address.as_ref(), &key, Limit::Address)
    }

    /// Counts one event of `kind` from `user_id` to `stream_id`.
    pub fn check_event(
        &self,
        kind: EventKind,
        user_id: &str,
        stream_id: &str,
    ) -> Result<(), Refused> {
        let (limiter, limit) = match kind {
            EventKind::Like => (self.user_likes.as_ref(), Limit::UserLikes),
            _ => (self.user_comments.as_ref(), Limit::UserComments),
        };
        if limiter.is_some() {
            check(limiter, &user_id.to_owned(), limit)?;
        }
        if self.stream.is_some() {
            check(self.stream.as_ref(), &stream_id.to_owned(), Limit::Stream)?;
        }
        Ok(())
    }

    /// Forgets keys whose bucket is full again (indistinguishable from a key never seen) and frees their memory.
    pub fn forget_idle(&self) {
        fn forget<K: std::hash::Hash + Eq + Clone>(limiter: Option<&Keyed<K>>) {
            if let Some(limiter) = limiter {
                limiter.retain_recent();
                limiter.shrink_to_fit();
            }
        }
        forget(self.address.as_ref());
        forget(self.user_comments.as_ref());
        forget(self.user_likes.as_ref());
        forget(self.stream.as_ref());
    }

    /// Keys currently remembered over all limiters.
    pub fn tracked_keys(&self) -> usize {
        self.address.as_ref().map_or(0, Keyed::len)
            + self.user_comments.as_ref().map_or(0, Keyed::len)
            + self.user_likes.as_ref().map_or(0, Keyed::len)
            + self.stream.as_ref().map_or(0, Keyed::len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(enabled: bool) -> LimitArgs {
        chorus_service::parse_args::<crate::config::IngestConfig>(&[
            "--rate-limits",
            if enabled { "on" } else { "off" },
            "--user-rate=1",
            "--user-burst=2",
        ])
        .expect("args")
        .limits
    }

    #[test]
    fn a_user_over_the_burst_is_refused_and_others_are_not() {
        let limits = RateLimits::new(&args(true));
        for _ in 0..2 {
            assert!(limits.check_event(EventKind::Comment, "a", "s").is_ok());
        }
        let refused = limits
            .check_event(EventKind::Comment, "a", "s")
            .expect_err("third comment at once is over the burst");
        assert_eq!(refused.limit, Limit::UserComments);
        assert_eq!(refused.retry_after_s(), 1);
        assert!(limits.check_event(EventKind::Comment, "b", "s").is_ok());
        assert!(
            limits.check_event(EventKind::Like, "a", "s").is_ok(),
            "likes have their own bucket"
        );
    }

    #[test]
    fn off_means_off() {
        let limits = RateLimits::new(&args(false));
        for _ in 0..100 {
            assert!(limits.check_event(EventKind::Comment, "a", "s").is_ok());
        }
        assert_eq!(limits.tracked_keys(), 0);
    }

    #[test]
    fn an_ipv6_subscriber_counts_by_its_prefix() {
        let limits = RateLimits::new(&args(true));
        let first: IpAddr = "2001:db8:1:2::1".parse().expect("ip");
        let same_prefix: IpAddr = "2001:db8:1:2:ffff::9".parse().expect("ip");
        assert!(limits.check_address(first).is_ok());
        assert!(limits.check_address(same_prefix).is_ok());
        assert_eq!(limits.address.as_ref().map_or(0, Keyed::len), 1);
    }
}
