//! In-process miss coalescing: one leader loads, the others wait for its outcome.
//!
//! The load runs in the leader's own task, so it may borrow the caller's arguments. If the leader
//! is dropped (timeout, client gone) its guard tells the waiters the flight was abandoned and one
//! of them becomes the next leader; if the loader panics, the guard tells them it panicked.
//! Either way the key is free again.

use std::any::Any;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// What a finished flight gives its waiters.
#[derive(Clone)]
pub(crate) enum Outcome {
    /// The leader's value, type-erased (the key's function fixes the type); each waiter takes a
    /// clone, so a value that could not be stored is shared all the same.
    Value(Arc<dyn Any + Send + Sync>),
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

type Slot = watch::Receiver<Option<Outcome>>;

#[derive(Debug, Default)]
pub(crate) struct Flights {
    /// Key -> (flight id, its outcome channel, when it started).
    map: Mutex<HashMap<String, (u64, SlotDebug, Instant)>>,
    next_id: AtomicU64,
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
    Waiter(Slot),
}

impl Flights {
    /// Joins the flight for `key`, leading it if there is none, or if the one there has run
    /// for longer than `max_age` (a hung load: its waiters have given up by then, and a new
    /// caller must not wait on it again).
    pub(crate) fn join(self: &Arc<Self>, key: &str, max_age: Duration) -> Role {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, slot, started)) = map.get(key) {
            if started.elapsed() <= max_age {
                return Role::Waiter(slot.0.clone());
            }
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = watch::channel(None);
        map.insert(key.to_string(), (id, SlotDebug(rx), Instant::now()));
        Role::Leader(FlightGuard {
            flights: Arc::clone(self),
            key: key.to_string(),
            id,
            tx: Some(tx),
        })
    }

    fn leave(&self, key: &str, id: u64) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.get(key).is_some_and(|(held, _, _)| *held == id) {
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
    tx: Option<watch::Sender<Option<Outcome>>>,
}

impl FlightGuard {
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
pub(crate) async fn wait(mut slot: Slot) -> Option<Outcome> {
    match slot.wait_for(Option::is_some).await {
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
        let Role::Waiter(w) = f.join("k", Duration::MAX) else {
            panic!("second waits")
        };
        guard.finish(Outcome::Value(Arc::new("v".to_string())));
        assert!(
            matches!(wait(w).await, Some(Outcome::Value(v)) if v.downcast_ref::<String>().unwrap() == "v")
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
        let Role::Waiter(w) = f.join("k", Duration::MAX) else {
            panic!()
        };
        drop(guard);
        assert!(wait(w).await.is_none());
        assert!(matches!(f.join("k", Duration::MAX), Role::Leader(_)));
    }

    #[tokio::test]
    async fn a_panicking_leader_reports_the_panic() {
        let f = Arc::new(Flights::default());
        let Role::Leader(guard) = f.join("k", Duration::MAX) else {
            panic!()
        };
        let Role::Waiter(w) = f.join("k", Duration::MAX) else {
            panic!()
        };
        let h = tokio::spawn(async move {
            let _g = guard;
            panic!("loader blew up");
        });
        assert!(h.await.unwrap_err().is_panic());
        assert!(matches!(wait(w).await, Some(Outcome::Panicked)));
        assert_eq!(f.len(), 0);
    }
}
