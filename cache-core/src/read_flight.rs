//! In-flight store reads, so that concurrent readers of one key share one `GET` instead of
//! queueing thousands of identical commands on the connection (which, during a stampede on a
//! cold key, pushed reads and the load lock past the operation timeout).
//!
//! Most reads have nobody to share with, so a read that leads costs one small allocation (its
//! slot), one copy of the key and two short locks: no channel, no notification when nobody
//! follows.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use tokio::sync::Notify;

use crate::error::StoreError;

/// What a shared read gives its followers: the bytes under the key, or the store's error.
pub(crate) type ReadResult = Result<Option<Arc<Vec<u8>>>, StoreError>;

/// The store reads in flight, by full key.
#[derive(Default)]
pub(crate) struct ReadFlights {
    map: Mutex<HashMap<String, Arc<Slot>>>,
}

impl std::fmt::Debug for ReadFlights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReadFlights")
    }
}

/// One shared read: its outcome, set once, and the followers waiting for it.
#[derive(Default)]
pub(crate) struct Slot {
    /// `Some(result)` once the reader published; `None` when it went away without reading.
    outcome: OnceLock<Option<ReadResult>>,
    done: Notify,
}

impl Slot {
    /// Waits for the reader: its result, or `None` when it went away before reading (the
    /// follower then reads for itself).
    pub(crate) async fn wait(&self) -> Option<ReadResult> {
        loop {
            let notified = self.done.notified();
            tokio::pin!(notified);
            // Registered before the check, so a publish between the two is not missed.
            notified.as_mut().enable();
            if let Some(outcome) = self.outcome.get() {
                return outcome.clone();
            }
            notified.await;
        }
    }

    fn finish(&self, outcome: Option<ReadResult>) {
        let _ = self.outcome.set(outcome);
        self.done.notify_waiters();
    }
}

/// Whether this caller reads for everyone, or follows another caller's read.
pub(crate) enum ReadRole<'a> {
    Reader(ReadGuard<'a>),
    Follower(Arc<Slot>),
}

impl ReadFlights {
    /// The shared reads in flight now.
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    /// Leads the read of `key`, or follows the read already in flight.
    pub(crate) fn join<'a>(&'a self, key: &'a str) -> ReadRole<'a> {
        let mut map = self.lock();
        if let Some(slot) = map.get(key) {
            return ReadRole::Follower(Arc::clone(slot));
        }
        let slot = Arc::new(Slot::default());
        map.insert(key.to_owned(), Arc::clone(&slot));
        ReadRole::Reader(ReadGuard {
            flights: self,
            key,
            slot,
            published: false,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Slot>>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn leave(&self, key: &str) {
        self.lock().remove(key);
    }
}

/// Held by the caller that reads; publishing or dropping it (e.g. the caller was cancelled)
/// ends the shared read, and followers then read for themselves.
pub(crate) struct ReadGuard<'a> {
    flights: &'a ReadFlights,
    key: &'a str,
    slot: Arc<Slot>,
    published: bool,
}

impl ReadGuard<'_> {
    /// Gives the result to every follower.
    pub(crate) fn publish(mut self, result: &ReadResult) {
        // Leave first: a caller arriving after the publish must read afresh, not reuse it.
        self.flights.leave(self.key);
        self.published = true;
        // Nobody else holds the slot: nobody follows, so there is nothing to hand over.
        if Arc::strong_count(&self.slot) > 1 {
            self.slot.finish(Some(result.clone()));
        }
    }
}

impl Drop for ReadGuard<'_> {
    fn drop(&mut self) {
        if !self.published {
            self.flights.leave(self.key);
            self.slot.finish(None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn followers_get_the_readers_result_and_the_key_is_free_again() {
        let flights = ReadFlights::default();
        let ReadRole::Reader(guard) = flights.join("k") else {
            panic!("the first caller reads")
        };
        let ReadRole::Follower(slot) = flights.join("k") else {
            panic!("the second follows")
        };
        let waiting = tokio::spawn(async move { slot.wait().await });
        tokio::task::yield_now().await;
        guard.publish(&Ok(Some(Arc::new(b"v".to_vec()))));
        let got = waiting.await.unwrap();
        assert!(matches!(got, Some(Ok(Some(ref b))) if b.as_slice() == b"v"));
        assert_eq!(flights.len(), 0);
        assert!(matches!(flights.join("k"), ReadRole::Reader(_)));
    }

    #[tokio::test]
    async fn a_reader_that_goes_away_sends_followers_to_read_for_themselves() {
        let flights = ReadFlights::default();
        let ReadRole::Reader(guard) = flights.join("k") else {
            panic!("the first caller reads")
        };
        let ReadRole::Follower(slot) = flights.join("k") else {
            panic!("the second follows")
        };
        drop(guard);
        assert!(slot.wait().await.is_none());
        assert_eq!(flights.len(), 0);
    }

    #[tokio::test]
    async fn a_follower_that_arrives_after_the_publish_gets_it() {
        let flights = ReadFlights::default();
        let ReadRole::Reader(guard) = flights.join("k") else {
            panic!("the first caller reads")
        };
        let ReadRole::Follower(slot) = flights.join("k") else {
            panic!("the second follows")
        };
        guard.publish(&Ok(None));
        // Already published: no wake-up is needed to see it.
        assert!(matches!(slot.wait().await, Some(Ok(None))));
    }
}
