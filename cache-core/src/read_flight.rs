//! In-flight store reads, so that concurrent readers of one key share a `GET` instead of
//! queueing thousands of identical commands on the connection (which, during a stampede on a
//! cold key, pushed reads and the load lock past the operation timeout).
//!
//! A caller only ever shares a read that is sent after it arrived, never one already in
//! flight: a read sent earlier may have reached the store before a purge that this caller saw
//! acknowledged (from this process or any other), and its answer would be the purged value.
//! So a key has at most one read in flight and one read waiting: the first caller reads at
//! once; a caller that finds that read in flight becomes the next reader, which waits for it to
//! end and then reads for every caller that arrived meanwhile (its followers). A stampede on a
//! key costs two `GET`s, not one per caller.
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

/// The map of reads in flight. Every store read hashes its key four times here (join: look up,
/// insert; leave: look up, remove), so it takes foldhash, seeded per map, over SipHash: about a
/// thousand instructions less per hit for a 60-byte key.
type ReadMap = HashMap<String, Reads, foldhash::fast::RandomState>;

/// The store reads in flight, by full key.
#[derive(Default)]
pub(crate) struct ReadFlights {
    map: Mutex<ReadMap>,
}

/// The reads of one key: the one sent last, and the one that waits for it to end.
struct Reads {
    sent: Arc<Slot>,
    /// Whether the read sent last has ended (the next one waits for it no longer).
    sent_ended: bool,
    next: Option<Arc<Slot>>,
}

impl std::fmt::Debug for ReadFlights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReadFlights")
    }
}

/// One shared read: its outcome, set once, and the callers waiting for it.
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

/// Whether this caller reads for everyone, or follows a read that will be sent for it.
pub(crate) enum ReadRole<'a> {
    Reader(ReadGuard<'a>),
    Follower(Arc<Slot>),
}

impl ReadFlights {
    /// The keys with a shared read in flight or waiting now.
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    /// Reads `key` now, or next (once the read in flight ended), or follows the next read.
    pub(crate) fn join<'a>(&'a self, key: &'a str) -> ReadRole<'a> {
        let mut map = self.lock();
        // The slot is made only by a caller that reads: a follower shares the next one.
        let (slot, after) = match map.get_mut(key) {
            Some(Reads {
                next: Some(next), ..
            }) => return ReadRole::Follower(Arc::clone(next)),
            Some(reads) => {
                let slot = Arc::new(Slot::default());
                reads.next = Some(Arc::clone(&slot));
                (slot, Some(Arc::clone(&reads.sent)))
            }
            None => {
                let slot = Arc::new(Slot::default());
                map.insert(
                    key.to_owned(),
                    Reads {
                        sent: Arc::clone(&slot),
                        sent_ended: false,
                        next: None,
                    },
                );
                (slot, None)
            }
        };
        ReadRole::Reader(ReadGuard {
            flights: self,
            key,
            slot,
            after,
            published: false,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ReadMap> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The read of `slot` is about to be sent: no caller may join it from now on.
    fn send(&self, key: &str, slot: &Arc<Slot>) {
        let mut map = self.lock();
        if let Some(reads) = map.get_mut(key) {
            if reads.next.as_ref().is_some_and(|n| Arc::ptr_eq(n, slot)) {
                reads.sent = Arc::clone(slot);
                reads.sent_ended = false;
                reads.next = None;
            }
        }
    }

    /// The read of `slot` ended (or will never be sent).
    fn leave(&self, key: &str, slot: &Arc<Slot>) {
        let mut map = self.lock();
        let Some(reads) = map.get_mut(key) else {
            return;
        };
        if reads.next.as_ref().is_some_and(|n| Arc::ptr_eq(n, slot)) {
            // Never sent: later callers start a next read of their own.
            reads.next = None;
            if reads.sent_ended {
                map.remove(key);
            }
        } else if Arc::ptr_eq(&reads.sent, slot) {
            if reads.next.is_none() {
                map.remove(key);
            } else {
                // The next read waits on this one and takes the key over when it is sent.
                reads.sent_ended = true;
            }
        }
    }
}

/// Held by the caller that reads; publishing or dropping it (e.g. the caller was cancelled)
/// ends the shared read, and followers then read for themselves.
pub(crate) struct ReadGuard<'a> {
    flights: &'a ReadFlights,
    key: &'a str,
    slot: Arc<Slot>,
    /// The read in flight when this caller arrived: this read is sent once it ended.
    after: Option<Arc<Slot>>,
    published: bool,
}

impl ReadGuard<'_> {
    /// Waits until this caller may send its read (the read in flight when it arrived ended, or
    /// took longer than `patience`), and closes the read to later callers.
    pub(crate) async fn ready(&mut self, patience: std::time::Duration) {
        if let Some(sent) = self.after.take() {
            let _ = tokio::time::timeout(patience, sent.wait()).await;
            self.flights.send(self.key, &self.slot);
        }
    }

    /// Gives the result to every follower.
    pub(crate) fn publish(mut self, result: &ReadResult) {
        // Leave first: a caller arriving after the publish must read afresh, not reuse it.
        self.flights.leave(self.key, &self.slot);
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
            self.flights.leave(self.key, &self.slot);
            self.slot.finish(None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn bytes(v: &[u8]) -> ReadResult {
        Ok(Some(Arc::new(v.to_vec())))
    }

    fn reader<'a>(flights: &'a ReadFlights, key: &'a str) -> ReadGuard<'a> {
        match flights.join(key) {
            ReadRole::Reader(guard) => guard,
            ReadRole::Follower(_) => panic!("expected to read"),
        }
    }

    fn follower(flights: &ReadFlights, key: &str) -> Arc<Slot> {
        match flights.join(key) {
            ReadRole::Follower(slot) => slot,
            ReadRole::Reader(_) => panic!("expected to follow"),
        }
    }

    #[tokio::test]
    async fn a_caller_never_takes_a_read_already_sent_only_the_next_one() {
        let flights = ReadFlights::default();
        let first = reader(&flights, "k");
        // The first read is in flight: the next caller reads after it, for whoever follows.
        let mut next = reader(&flights, "k");
        let slot = follower(&flights, "k");
        let waiting = tokio::spawn(async move { slot.wait().await });
        first.publish(&bytes(b"old"));
        next.ready(Duration::from_secs(5)).await;
        // Sent now: a caller arriving from here on waits for a read after this one.
        let mut later = reader(&flights, "k");
        next.publish(&bytes(b"new"));
        let got = waiting.await.unwrap();
        assert!(matches!(got, Some(Ok(Some(ref b))) if b.as_slice() == b"new"));
        later.ready(Duration::from_secs(5)).await;
        later.publish(&Ok(None));
        assert_eq!(flights.len(), 0);
        let _ = reader(&flights, "k");
    }

    #[tokio::test(start_paused = true)]
    async fn the_next_read_waits_for_the_one_in_flight() {
        let flights = ReadFlights::default();
        let first = reader(&flights, "k");
        let mut next = reader(&flights, "k");
        let ready = async { next.ready(Duration::from_secs(5)).await };
        tokio::pin!(ready);
        assert!(
            tokio::time::timeout(Duration::from_millis(20), ready.as_mut())
                .await
                .is_err(),
            "sent while the first read was still in flight"
        );
        first.publish(&Ok(None));
        ready.await;
    }

    #[tokio::test]
    async fn a_next_reader_that_goes_away_sends_followers_to_read_for_themselves() {
        let flights = ReadFlights::default();
        let first = reader(&flights, "k");
        let next = reader(&flights, "k");
        let slot = follower(&flights, "k");
        drop(next);
        assert!(slot.wait().await.is_none());
        assert_eq!(flights.len(), 1, "the first read is still in flight");
        first.publish(&Ok(None));
        assert_eq!(flights.len(), 0);
    }

    #[tokio::test]
    async fn the_key_is_free_once_both_reads_ended_in_either_order() {
        let flights = ReadFlights::default();
        let first = reader(&flights, "k");
        let next = reader(&flights, "k");
        first.publish(&Ok(None));
        assert_eq!(flights.len(), 1);
        drop(next);
        assert_eq!(flights.len(), 0);
    }

    #[tokio::test]
    async fn a_follower_that_waits_after_the_publish_gets_it() {
        let flights = ReadFlights::default();
        let first = reader(&flights, "k");
        let mut next = reader(&flights, "k");
        let slot = follower(&flights, "k");
        first.publish(&Ok(None));
        next.ready(Duration::from_secs(5)).await;
        next.publish(&bytes(b"v"));
        // Already published: no wake-up is needed to see it.
        assert!(matches!(slot.wait().await, Some(Ok(Some(ref b))) if b.as_slice() == b"v"));
    }
}
