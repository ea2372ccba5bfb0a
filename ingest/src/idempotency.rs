//! `Idempotency-Key`: a client that retries a post (after a timeout, a dropped connection) sends the same key,
//! and the event is not posted twice.
//!
//! Two layers make that hold:
//! - The event id of a keyed request is derived from (user, stream, key) ([`event_id`], a UUIDv5), so every
//!   retry, through any ingest instance and at any time, carries the same event id, and edges deliver an event
//!   id to a viewer once.
//! - This instance remembers, for `--idempotency-window-s` and up to `--idempotency-max-keys` keys, the answer
//!   it gave ([`IdempotencyCache`]): a retry within the window gets the same `202` body (event id, partition,
//!   offset) and writes nothing. Concurrent retries of one key wait for the first to finish instead of
//!   producing themselves.
//!
//! The key's syntax is a field rule (`validate::idempotency_key`); the header is read by the HTTP layer.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::OnceCell;
use uuid::Uuid;

/// The namespace of Chorus's derived event ids.
const NAMESPACE: Uuid = Uuid::from_u128(0x6d1c_1f0e_3c52_4a8e_9a4b_2f0d_7c3e_51a7);

/// A key used within the window for a request with another fingerprint: refused, never replayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("this Idempotency-Key was already used for a different request")]
pub struct KeyReused;

/// The event id of a keyed request: the same for every retry of it.
pub fn event_id(user_id: &str, stream_id: &str, key: &str) -> Uuid {
    // NUL appears in none of the three, so the name is unambiguous.
    let name = [user_id, stream_id, key].join("\0");
    Uuid::new_v5(&NAMESPACE, name.as_bytes())
}

/// A fingerprint of what was posted, so a key reused for a different request is refused, not replayed.
pub fn fingerprint(kind: chorus_schemas::EventKind, text: Option<&str>) -> u64 {
    let mut hasher = DefaultHasher::new();
    kind.hash(&mut hasher);
    text.hash(&mut hasher);
    hasher.finish()
}

/// The answer to one key: empty while the first request is being written. Generic over the answer so that
/// this cache knows nothing of what a post is answered with.
pub type Slot<T> = Arc<OnceCell<T>>;

struct Entry<T> {
    inserted: Instant,
    fingerprint: u64,
    slot: Slot<T>,
}

/// Recent keys (by derived event id) and their answers: bounded in count and age.
pub struct IdempotencyCache<T> {
    inner: Mutex<Inner<T>>,
    capacity: usize,
    window: Duration,
}

struct Inner<T> {
    entries: HashMap<Uuid, Entry<T>>,
    /// Insertion order, oldest first; an id whose entry was replaced appears again with its new time.
    order: VecDeque<(Uuid, Instant)>,
}

impl<T> std::fmt::Debug for IdempotencyCache<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdempotencyCache")
            .field("capacity", &self.capacity)
            .field("window", &self.window)
            .finish()
    }
}

impl<T> IdempotencyCache<T> {
    pub fn new(capacity: usize, window: Duration) -> Self {
        IdempotencyCache {
            inner: Mutex::new(Inner {
                entries: HashMap::new(),
                order: VecDeque::new(),
            }),
            capacity: capacity.max(1),
            window,
        }
    }

    /// The slot of `id`: the one a previous request made within the window, or a new empty one.
    /// `Err` when `id` was used within the window for a request with another fingerprint.
    pub fn slot(&self, id: Uuid, fingerprint: u64) -> Result<Slot<T>, KeyReused> {
        let now = Instant::now();
        // Never held across an await: every operation below is in memory.
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner.expire(now, self.window, self.capacity);
        if let Some(entry) = inner.entries.get(&id) {
            if entry.fingerprint != fingerprint {
                return Err(KeyReused);
            }
            return Ok(entry.slot.clone());
        }
        let slot = Slot::default();
        inner.entries.insert(
            id,
            Entry {
                inserted: now,
                fingerprint,
                slot: slot.clone(),
            },
        );
        inner.order.push_back((id, now));
        Ok(slot)
    }

    pub fn len(&self) -> usize {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<T> Inner<T> {
    /// Drops entries older than `window`, then the oldest until one more fits in `capacity`.
    fn expire(&mut self, now: Instant, window: Duration, capacity: usize) {
        while let Some(&(id, inserted)) = self.order.front() {
            let old = now.duration_since(inserted) >= window;
            if !old && self.entries.len() < capacity {
                break;
            }
            self.order.pop_front();
            if self
                .entries
                .get(&id)
                .is_some_and(|e| e.inserted == inserted)
            {
                self.entries.remove(&id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_depend_on_user_stream_and_key() {
        let id = event_id("u", "s", "k");
        assert_eq!(id, event_id("u", "s", "k"));
        assert_ne!(id, event_id("u", "s", "k2"));
        assert_ne!(id, event_id("u2", "s", "k"));
        assert_ne!(event_id("a", "bc", "k"), event_id("ab", "c", "k"));
    }

    #[test]
    fn the_cache_is_bounded_and_refuses_a_reused_key() {
        let cache = IdempotencyCache::<u8>::new(2, Duration::from_secs(60));
        let [a, b, c] = [1u128, 2, 3].map(Uuid::from_u128);
        let first = cache.slot(a, 7).expect("slot");
        assert!(Arc::ptr_eq(&first, &cache.slot(a, 7).expect("slot")));
        assert!(matches!(cache.slot(a, 8), Err(KeyReused)));
        cache.slot(b, 7).expect("slot");
        cache.slot(c, 7).expect("slot");
        assert_eq!(cache.len(), 2, "the oldest went");
        assert!(!Arc::ptr_eq(&first, &cache.slot(a, 7).expect("slot")));
    }

    #[test]
    fn entries_expire() {
        let cache = IdempotencyCache::<u8>::new(10, Duration::ZERO);
        let id = Uuid::from_u128(1);
        let first = cache.slot(id, 1).expect("slot");
        assert!(!Arc::ptr_eq(&first, &cache.slot(id, 1).expect("slot")));
    }
}
