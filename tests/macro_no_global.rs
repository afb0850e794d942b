//! Without a global cache (and no `cache = ...`), cached functions run uncached with one warning.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use action_cache::cached_action;
use tracing::field::{Field, Visit};
use tracing::{span, Event, Level, Metadata, Subscriber};

/// Records the message of every warning.
struct Warnings(Arc<Mutex<Vec<String>>>);

struct Message(String);
impl Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!("{}={value:?} ", field.name()));
    }
}

impl Subscriber for Warnings {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &span::Attributes<'_>) -> span::Id {
        span::Id::from_u64(1)
    }
    fn record(&self, _: &span::Id, _: &span::Record<'_>) {}
    fn record_follows_from(&self, _: &span::Id, _: &span::Id) {}
    fn event(&self, event: &Event<'_>) {
        if *event.metadata().level() == Level::WARN {
            let mut m = Message(String::new());
            event.record(&mut m);
            self.0.lock().unwrap().push(m.0);
        }
    }
    fn enter(&self, _: &span::Id) {}
    fn exit(&self, _: &span::Id) {}
}

static CALLS: AtomicUsize = AtomicUsize::new(0);

#[cached_action(fresh = 60, tags = ["id:{id}"])]
async fn uncached(id: u32) -> Result<u32, String> {
    CALLS.fetch_add(1, Ordering::SeqCst);
    Ok(id)
}

#[cached_action(fresh = 60)]
async fn also_uncached(name: &str) -> Option<String> {
    CALLS.fetch_add(1, Ordering::SeqCst);
    Some(name.to_uppercase())
}

#[tokio::test]
async fn runs_uncached_and_warns_once() {
    let warnings = Arc::new(Mutex::new(Vec::new()));
    tracing::subscriber::set_global_default(Warnings(warnings.clone())).unwrap();

    assert_eq!(uncached(1).await, Ok(1));
    assert_eq!(uncached(1).await, Ok(1));
    assert_eq!(also_uncached("a").await.as_deref(), Some("A"));
    assert_eq!(also_uncached("a").await.as_deref(), Some("A"));
    assert_eq!(CALLS.load(Ordering::SeqCst), 4, "every call runs the body");

    let warnings = warnings.lock().unwrap().clone();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("no global cache"), "{warnings:?}");
    assert!(warnings[0].contains("uncached"), "{warnings:?}");

    // Companions still work: the key under the default prefix, nothing to purge or write.
    let key = uncached_key(1);
    assert!(key.starts_with("ac:"), "{key}");
    assert!(key.contains("macro_no_global::uncached:"), "{key}");
    assert!(!uncached_invalidate(1).await.unwrap());
    uncached_put(1, &5).await.unwrap();
    assert_eq!(uncached(1).await, Ok(1));
}
