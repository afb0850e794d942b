//! Capturing what a test logs through `tracing`, to assert on it (a line that must appear, a
//! secret that must not).
//!
//! One global subscriber routes each event to the capture of the thread that logs it. A
//! per-thread default subscriber (`tracing::subscriber::set_default`) would be simpler, but it
//! races with `tracing`'s global callsite-interest cache when tests run in parallel, and a test
//! could then miss a line it asserts on. Tests that capture run on a current-thread runtime, so
//! the tasks they start, background refreshes among them, log on the capturing thread too.
//!
//! ```
//! use action_cache_testing::logs::Logs;
//!
//! let (logs, _guard) = Logs::capture();
//! tracing::info!(user = "ada", "signed in");
//! assert!(logs.text().contains("signed in"));
//! ```

use std::cell::RefCell;
use std::io::Write;
use std::sync::{Arc, Mutex, Once};

/// What one thread logged, `DEBUG` and up, as plain text (no colours).
#[derive(Debug, Clone, Default)]
pub struct Logs(Arc<Mutex<Vec<u8>>>);

thread_local! {
    static CAPTURE: RefCell<Option<Logs>> = const { RefCell::new(None) };
}

/// Writes into the capture of the thread that logs, if it has one.
struct ThreadWriter;

impl Write for ThreadWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        CAPTURE.with(|capture| {
            if let Some(logs) = capture.borrow().as_ref() {
                logs.0
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .extend_from_slice(buf);
            }
        });
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Stops this thread's capture when dropped.
#[derive(Debug)]
#[must_use = "the capture stops when the guard drops"]
pub struct CaptureGuard(());

impl Drop for CaptureGuard {
    fn drop(&mut self) {
        CAPTURE.with(|capture| capture.borrow_mut().take());
    }
}

impl Logs {
    /// Captures every event logged on this thread, `DEBUG` and up, until the guard drops.
    ///
    /// # Panics
    ///
    /// When the test binary installed a global `tracing` subscriber of its own.
    pub fn capture() -> (Logs, CaptureGuard) {
        static INSTALL: Once = Once::new();
        INSTALL.call_once(|| {
            let subscriber = tracing_subscriber::fmt()
                .with_writer(|| ThreadWriter)
                .with_max_level(tracing::Level::DEBUG)
                .with_ansi(false)
                .finish();
            tracing::subscriber::set_global_default(subscriber)
                .expect("no other global tracing subscriber in this test binary");
        });
        let logs = Logs::default();
        CAPTURE.with(|capture| *capture.borrow_mut() = Some(logs.clone()));
        (logs, CaptureGuard(()))
    }

    /// Everything captured so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
    }
}
