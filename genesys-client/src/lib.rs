//! A Genesys Cloud Platform API client (work in progress).
