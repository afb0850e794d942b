//! The request log: one JSON line per request.
//!
//! [`AccessLog::Tracing`] (the library's default) emits a `tracing` event, so an application
//! that embeds the proxy gets the lines through its own subscriber.
//! [`AccessLog::Stdout`] (what the binary uses) writes the same JSON shape as
//! `tracing_subscriber`'s JSON formatter straight to standard output, one `write` per line as
//! nginx does, without the formatter's per-event work: it is on the hit path of every request.
//! It still obeys `RUST_LOG` (a line is written only while `info` events of
//! `action_cache_proxy::server`, the target the lines name, are enabled).

use axum::http::Method;
use std::cell::RefCell;
use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Where request log lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum AccessLog {
    /// A `tracing` event per request (`message = "request"` with `method`, `path`, `status`,
    /// `latency_ms`, `cache`).
    #[default]
    Tracing,
    /// The same fields as a JSON line on standard output, formatted without `tracing`.
    Stdout,
}

/// One request, as logged.
pub(crate) struct Line<'a> {
    pub(crate) method: &'a Method,
    pub(crate) path: &'a str,
    pub(crate) status: u16,
    pub(crate) latency: Duration,
    pub(crate) cache: &'a str,
}

impl AccessLog {
    /// Logs `line`.
    pub(crate) fn log(self, line: &Line<'_>) {
        match self {
            AccessLog::Tracing => tracing::info!(
                target: "action_cache_proxy::server",
                method = %line.method,
                path = %line.path,
                status = line.status,
                latency_ms = line.latency.as_secs_f64() * 1000.0,
                cache = line.cache,
                "request"
            ),
            AccessLog::Stdout => {
                // The target the lines name, so RUST_LOG filters them as it would the event.
                if tracing::enabled!(target: "action_cache_proxy::server", tracing::Level::INFO) {
                    write_stdout(line);
                }
            }
        }
    }
}

thread_local! {
    /// The line being written, and the formatted second it starts with.
    static BUFFER: RefCell<(Vec<u8>, u64, [u8; 19])> = const { RefCell::new((Vec::new(), u64::MAX, [0; 19])) };
}

fn write_stdout(line: &Line<'_>) {
    BUFFER.with(|cell| {
        let Ok(mut guard) = cell.try_borrow_mut() else {
            return;
        };
        let (buf, second, stamp) = &mut *guard;
        buf.clear();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        if now.as_secs() != *second {
            *second = now.as_secs();
            *stamp = civil(now.as_secs());
        }
        buf.extend_from_slice(b"{\"timestamp\":\"");
        buf.extend_from_slice(stamp);
        let mut micros = itoa::Buffer::new();
        let m = micros.format(now.subsec_micros());
        buf.push(b'.');
        buf.extend(std::iter::repeat_n(b'0', 6 - m.len()));
        buf.extend_from_slice(m.as_bytes());
        buf.extend_from_slice(
            b"Z\",\"level\":\"INFO\",\"fields\":{\"message\":\"request\",\"method\":",
        );
        json_str(buf, line.method.as_str());
        buf.extend_from_slice(b",\"path\":");
        json_str(buf, line.path);
        buf.extend_from_slice(b",\"status\":");
        buf.extend_from_slice(itoa::Buffer::new().format(line.status).as_bytes());
        buf.extend_from_slice(b",\"latency_ms\":");
        let micros = line.latency.as_micros() as u64;
        buf.extend_from_slice(itoa::Buffer::new().format(micros / 1000).as_bytes());
        buf.push(b'.');
        let frac = micros % 1000;
        buf.extend_from_slice(&[
            b'0' + (frac / 100) as u8,
            b'0' + (frac / 10 % 10) as u8,
            b'0' + (frac % 10) as u8,
        ]);
        buf.extend_from_slice(b",\"cache\":");
        json_str(buf, line.cache);
        buf.extend_from_slice(b"},\"target\":\"action_cache_proxy::server\"}\n");
        // Logging never fails a request.
        let _ = std::io::stdout().lock().write_all(buf);
    });
}

/// `s` as a JSON string.
fn json_str(buf: &mut Vec<u8>, s: &str) {
    let _ = serde_json::to_writer(&mut *buf, s);
}

/// `YYYY-MM-DDTHH:MM:SS` (UTC) of a Unix time.
fn civil(secs: u64) -> [u8; 19] {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let mut out = [0u8; 19];
    let mut put = |at: usize, value: u64, width: usize| {
        let mut v = value;
        for i in (0..width).rev() {
            out[at + i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, year as u64, 4);
    put(5, month as u64, 2);
    put(8, day as u64, 2);
    put(11, rem / 3600, 2);
    put(14, rem / 60 % 60, 2);
    put(17, rem % 60, 2);
    out[4] = b'-';
    out[7] = b'-';
    out[10] = b'T';
    out[13] = b':';
    out[16] = b':';
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_time_is_right() {
        assert_eq!(&civil(0), b"1970-01-01T00:00:00");
        assert_eq!(&civil(951_782_400), b"2000-02-29T00:00:00");
        assert_eq!(&civil(1_796_131_199), b"2026-12-01T13:19:59");
        assert_eq!(&civil(4_102_444_800), b"2100-01-01T00:00:00");
    }
}
