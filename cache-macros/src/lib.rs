//! The `#[cached_action]` attribute macro of action-cache (work in progress).
