//! The JSON body extractor used by every route instead of axum's `Json`, whose rejections are plain text that the
//! OpenAI clients cannot parse. Bodies over the limit are answered 413 after the rest is drained (so the client reads
//! the answer instead of a reset connection); syntax errors, truncation and wrong types are 400, all as OpenAI error
//! JSON.

use crate::error::ApiError;
use crate::server::AppState;
use axum::body::Body;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use futures_util::StreamExt;
use serde::de::DeserializeOwned;
use std::time::Duration;

/// How much of an oversize body is read and thrown away before answering 413, as a multiple of the limit.
const DRAIN_FACTOR: usize = 16;

/// Time allowed to receive a whole body.
const BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// A JSON request body of type `T`.
#[derive(Debug, Clone)]
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let limit = state.config().max_body_bytes;
        let bytes = read_body(req.into_body(), limit).await?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// Reads at most `limit` bytes of `body`.
pub async fn read_body(body: Body, limit: usize) -> Result<Vec<u8>, ApiError> {
    let read = async move {
        let mut stream = body.into_data_stream();
        let mut buf = Vec::new();
        let mut total = 0usize;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| {
                ApiError::invalid(
                    format!("Failed to read the request body: {e}"),
                    None,
                    Some("invalid_body"),
                )
            })?;
            total = total.saturating_add(chunk.len());
            if total > limit {
                // Drain (bounded) so the client gets to read the 413 instead of a reset connection.
                while total <= limit.saturating_mul(DRAIN_FACTOR) {
                    match stream.next().await {
                        Some(Ok(c)) => total = total.saturating_add(c.len()),
                        _ => break,
                    }
                }
                return Err(ApiError::payload_too_large(limit));
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(buf)
    };
    tokio::time::timeout(BODY_TIMEOUT, read)
        .await
        .unwrap_or_else(|_| {
            Err(ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                crate::error::INVALID_REQUEST,
                "Timed out reading the request body.",
                None,
                Some("body_timeout"),
            ))
        })
}

/// Parses a JSON body: syntax errors and truncation are "could not parse", type errors name the problem.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => ApiError::invalid(
            format!("Invalid request body: {e}"),
            None,
            Some("invalid_type"),
        ),
        _ => ApiError::malformed_json(e),
    })
}
