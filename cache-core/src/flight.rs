//! In-process miss coalescing: one leader loads, the others wait for its outcome.
//!
//! The load runs in the leader's own task, so it may borrow the caller's arguments. If the leader
//! is dropped (timeout, client gone) its guard tells the waiters the flight was abandoned and one
//! of them becomes the next leader; if the loader panics, the guard tells them it panicked.
//! Either way the key is free again.
//!
//! A waiter takes a value only from a store call its leader sent after the waiter joined (the
//! guarded write that stored it, or the read that found it): an earlier call may have reached
//! the store before a purge the waiter saw return, and its value is the one that purge removed.
//! Each flight counts the calls its leader sends ([`Marks::mark`]); a waiter notes the count
//! when it joins, and a value marked no later than that sends it to a new flight. A value that
//! was not stored is marked by the read of the purge generations before its load, or, when a
//! caller joined after that, by a second read once the load ended that found them unmoved.

use std::any::Any;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// What a finished flight gives its waiters.
#[derive(Clone)]
pub(crate) enum Outcome {
    /// The leader's value, type-erased (the key's function fixes the type), and the waiters it
    /// is good for; each of those takes a clone, so a value that could not be stored is shared
    /// all the same.
    Value(Arc<dyn Any + Send + Sync>, Valid),
    /// The load began before a purge or a put of its entry: its value went to its own caller
    /// only, and the waiters start again, since any of them may have come after the purge.
    Superseded,
    /// The leader's patience ran out while another process held the load lock.
    TimedOut,
    /// The leader's error, type-erased (the key's function fixes the type).
    Failed(Arc<dyn Any + Send + Sync>),
    /// The loader panicked.
    Panicked,
}

/// Which of a flight's waiters its value is good for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Valid {
    /// Every waiter: outside a flight, or a value that was not stored while the store could
    /// not tell its purge generations (fail-open: the store is failing, and a purge cannot be
    /// acknowledged then either).
    ForAll,
    /// The waiters that joined before the leader's store call with this mark was sent: that
    /// call (the write that stored the value, or the read that found it) began after they
    /// arrived, so it saw every purge they had seen return.
    JoinedBefore(u64),
}

type Slot = watch::Receiver<Option<Outcome>>;

#[derive(Debug, Default)]
pub(crate) struct Flights {
    /// Key -> the flight loading it.
    map: Mutex<HashMap<String, Flight>>,
    next_id: AtomicU64,
}

#[derive(Debug)]
struct Flight {
    id: u64,
    slot: SlotDebug,
    started: Instant,
    /// The store calls its leader sent and the callers that joined (see the module docs).
    counts: Arc<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    /// How many store calls whose answer it shares the leader has sent.
    sent: AtomicU64,
    /// The count of sent calls when the latest waiter joined.
    last_joined: AtomicU64,
}

/// `watch::Receiver<Option<Outcome>>` with a `Debug` that does not need `Outcome: Debug`.
struct SlotDebug(Slot);

impl std::fmt::Debug for SlotDebug {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Flight")
    }
}

pub(crate) enum Role {
    Leader(FlightGuard),
    Waiter(Waiter),
}

/// A caller waiting on another's load.
pub(crate) struct Waiter {
    slot: Slot,
    /// The flight's count of sent store calls when this caller joined.
    joined: u64,
}

impl Waiter {
    /// Whether a value the leader shared as `valid` may be this waiter's answer.
    pub(crate) fn accepts(&self, valid: Valid) -> bool {
        match valid {
            Valid::ForAll => true,
            Valid::JoinedBefore(mark) => self.joined < mark,
        }
    }
}

impl Flights {
    /// Joins the flight for `key`, leading it if there is none, or if the one there has run
    /// for longer than `max_age` (a hung load: its waiters have given up by then, and a new
    /// caller must not wait on it again).
    pub(crate) fn join(self: &Arc<Self>, key: &str, max_age: Duration) -> Role {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(flight) = map.get(key) {
            if flight.started.elapsed() <= max_age {
                let joined = flight.counts.sent.load(Ordering::SeqCst);
                flight
                    .counts
                    .last_joined
                    .fetch_max(joined, Ordering::SeqCst);
                return Role::Waiter(Waiter {
                    slot: flight.slot.0.clone(),
                    joined,
                });
            }
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = watch::channel(None);
        let counts = Arc::new(Counts::default());
        let flight = Flight {
            id,
            slot: SlotDebug(rx),
            started: Instant::now(),
            counts: Arc::clone(&counts),
        };
        map.insert(key.to_string(), flight);
        Role::Leader(FlightGuard {
            flights: Arc::clone(self),
            key: key.to_string(),
            id,
            marks: Marks(counts),
            tx: Some(tx),
        })
    }

    fn leave(&self, key: &str, id: u64) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.get(key).is_some_and(|flight| flight.id == id) {
            map.remove(key);
        }
    }

    /// The loads in flight now.
    pub(crate) fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

/// Held by a flight's leader; publishing an outcome or dropping it ends the flight.
pub(crate) struct FlightGuard {
    flights: Arc<Flights>,
    key: String,
    id: u64,
    marks: Marks,
    tx: Option<watch::Sender<Option<Outcome>>>,
}

/// A flight's count of the store calls its leader sent, for the leader to mark each one by.
#[derive(Clone, Debug)]
pub(crate) struct Marks(Arc<Counts>);

impl Marks {
    /// Marks a store call about to be sent: a value it answers is good for the waiters that
    /// joined before now.
    pub(crate) fn mark(&self) -> Valid {
        Valid::JoinedBefore(self.0.sent.fetch_add(1, Ordering::SeqCst) + 1)
    }

    /// Whether a caller joined once the call marked `valid` was sent, so that `valid` turns it
    /// away (a caller joining as this is asked may be missed, and is turned away then).
    pub(crate) fn joined_since(&self, valid: Valid) -> bool {
        match valid {
            Valid::ForAll => false,
            Valid::JoinedBefore(mark) => self.0.last_joined.load(Ordering::SeqCst) >= mark,
        }
    }
}

impl FlightGuard {
    /// The flight's marks, for the calls its leader sends.
    pub(crate) fn marks(&self) -> &Marks {
        &self.marks
    }

    /// Ends the flight with an outcome for every waiter.
    pub(crate) fn finish(mut self, outcome: Outcome) {
        self.flights.leave(&self.key, self.id);
        if let Some(tx) = self.tx.take() {
            tx.send_replace(Some(outcome));
        }
    }
}

impl Drop for FlightGuard {
    fn drop(&mut self) {
        self.flights.leave(&self.key, self.id);
        if let Some(tx) = self.tx.take() {
            if std::thread::panicking() {
                tx.send_replace(Some(Outcome::Panicked));
            }
            // Otherwise dropping `tx` tells the waiters the flight was abandoned.
        }
    }
}

/// Waits for a flight's outcome; `None` when the leader went away without one.
pub(crate) async fn wait(waiter: &mut Waiter) -> Option<Outcome> {
    match waiter.slot.wait_for(Option::is_some).await {
        Ok(v) => v.clone(),
        Err(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waiters_get_the_leaders_outcome_and_the_key_is_freed() {
        let f = Arc::new(Flights::default());
        let Role::Leader(guard) = f.join("k", Duration::MAX) else {
            panic!("first is leader")
        };
        let Role::Waiter(mut w) = f.join("k", Duration::MAX) else {
            panic!("second waits")
        };
        guard.finish(Outcome::Value(Arc::new("v".to_string()), Valid::ForAll));
        assert!(
            matches!(wait(&mut w).await, Some(Outcome::Value(v, Valid::ForAll)) if v.downcast_ref::<String>().unwrap() == "v")
        );
        assert_eq!(f.len(), 0);
        assert!(matches!(f.join("k", Duration::MAX), Role::Leader(_)));
    }

    #[tokio::test]
    async fn a_dropped_leader_abandons_the_flight() {
        let f = Arc::new(Flights::default());
        let Role::Leader(guard) = f.join("k", Duration::MAX) else {
            panic!()
        };
        let Role::Waiter(mut w) = f.join("k", Duration::MAX) else {
            panic!()
        };
        drop(guard);
        assert!(wait(&mut w).await.is_none());
        assert!(matches!(f.join("k", Duration::MAX), Role::Leader(_)));
    }

    #[tokio::test]
    async fn a_panicking_leader_reports_the_panic() {
        let f = Arc::new(Flights::default());
        let Role::Leader(guard) = f.join("k", Duration::MAX) else {
            panic!()
        };
        let Role::Waiter(mut w) = f.join("k", Duration::MAX) else {
            panic!()
        };
        let h = tokio::spawn(async move {
            let _g = guard;
            panic!("loader blew up");
        });
        assert!(h.await.unwrap_err().is_panic());
        assert!(matches!(wait(&mut w).await, Some(Outcome::Panicked)));
        assert_eq!(f.len(), 0);
    }

    #[test]
    fn a_waiter_takes_only_values_of_store_calls_sent_after_it_joined() {
        let f = Arc::new(Flights::default());
        let Role::Leader(guard) = f.join("k", Duration::MAX) else {
            panic!()
        };
        let Role::Waiter(early) = f.join("k", Duration::MAX) else {
            panic!()
        };
        let first = guard.marks().mark();
        let Role::Waiter(late) = f.join("k", Duration::MAX) else {
            panic!()
        };
        assert!(guard.marks().joined_since(first));
        let second = guard.marks().mark();
        assert!(!guard.marks().joined_since(second));
        assert!(early.accepts(first) && early.accepts(second));
        assert!(!late.accepts(first), "that call may predate a purge it saw");
        assert!(late.accepts(second));
        assert!(late.accepts(Valid::ForAll));
    }
}
