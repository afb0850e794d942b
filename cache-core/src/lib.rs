//! cache-core (work in progress)
