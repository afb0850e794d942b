//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::cell::RefCell;
use std::io::Write;
use std::sync::{Arc, Mutex, Once};

use genesys_client::{ExponentialBackoff, RetryPolicy};

/// Log lines captured from the current thread's `tracing` events.
#[derive(Clone, Default)]
pub(crate) struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    pub(crate) fn contents(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

thread_local! {
    static CAPTURE: RefCell<Option<Logs>> = const { RefCell::new(None) };
}

/// Writes into the capture of the thread that logs, if it has one.
pub(crate) struct ThreadWriter;

impl Write for ThreadWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        CAPTURE.with(|capture| {
            if let Some(logs) = capture.borrow().as_ref() {
                logs.0.lock().unwrap().extend_from_slice(buf);
            }
        });
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Stops capturing when dropped.
pub(crate) struct CaptureGuard;

impl Drop for CaptureGuard {
    fn drop(&mut self) {
        CAPTURE.with(|capture| capture.borrow_mut().take());
    }
}

/// Captures every event (TRACE and up) logged on this thread until the guard drops. Tests use
/// a current-thread runtime, so the client's and the fake's events land here.
///
/// One global subscriber routes events to the logging thread's capture: per-thread default
/// subscribers race with `tracing`'s global callsite-interest cache when tests run in parallel.
pub(crate) fn capture_logs() -> (Logs, CaptureGuard) {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let subscriber = tracing_subscriber::fmt()
            .with_writer(|| ThreadWriter)
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("no other global subscriber");
    });
    let logs = Logs::default();
    CAPTURE.with(|capture| *capture.borrow_mut() = Some(logs.clone()));
    (logs, CaptureGuard)
}

/// The default policy with a seeded backoff, so waits are repeatable.
pub(crate) fn seeded_policy(seed: u64) -> RetryPolicy {
    RetryPolicy::default().with_backoff(ExponentialBackoff::default().with_seed(seed))
}
