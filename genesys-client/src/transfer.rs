//! Reading a response off the wire: its metadata and its whole body, with a body that fails in
//! transit told apart from a server that could not be reached.

use std::sync::Arc;

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::meta::ResponseMeta;

/// The metadata and the whole body of `response`. A body that fails in transit is
/// [`Error::BodyCutOff`] (or [`Error::Timeout`]), never a transport error that claims Genesys
/// could not be reached.
pub(crate) async fn read_response(
    mut response: reqwest::Response,
) -> Result<(ResponseMeta, Bytes)> {
    let meta = ResponseMeta::from_headers(response.status(), response.headers());
    let mut body = Vec::with_capacity(
        usize::try_from(response.content_length().unwrap_or(0).min(1 << 20)).unwrap_or(0),
    );
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            Ok(None) => return Ok((meta, Bytes::from(body))),
            Err(err) if err.is_timeout() => {
                return Err(Error::Timeout {
                    source: Arc::new(err),
                })
            }
            Err(err) => {
                return Err(Error::BodyCutOff {
                    received: body.len(),
                    meta: Box::new(meta),
                    source: Arc::new(err),
                })
            }
        }
    }
}
