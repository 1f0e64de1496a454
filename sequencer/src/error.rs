//! The one error shape of every HTTP route: `{"error":{"message","type","param","code"}}` with `code` a string or
//! null (what the strict `async-openai` client parses), a 4xx/5xx status, and `Retry-After` on 429.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;

/// The `error` object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorObject {
    /// Human-readable message.
    pub message: String,
    /// OpenAI error type (`invalid_request_error`, ...).
    #[serde(rename = "type")]
    pub kind: String,
    /// Offending request field.
    pub param: Option<String>,
    /// Machine-readable code; always a string or null.
    pub code: Option<String>,
}

/// The error body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorObject,
}

/// An API error: status, body, and the `Retry-After` seconds of a 429.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status}: {message}")]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Message.
    pub message: String,
    /// OpenAI error type.
    pub kind: &'static str,
    /// Offending field.
    pub param: Option<Cow<'static, str>>,
    /// Code.
    pub code: Option<&'static str>,
    /// Seconds for `Retry-After`.
    pub retry_after: Option<u64>,
}

/// Type of request validation errors.
pub const INVALID_REQUEST: &str = "invalid_request_error";

impl ApiError {
    /// An error with every field given.
    pub fn new(
        status: StatusCode,
        kind: &'static str,
        message: impl Into<String>,
        param: Option<Cow<'static, str>>,
        code: Option<&'static str>,
    ) -> Self {
        Self {
            status,
            message: message.into(),
            kind,
            param,
            code,
            retry_after: None,
        }
    }

    /// 400 `invalid_request_error`.
    pub fn invalid(
        message: impl Into<String>,
        param: impl Into<Option<Cow<'static, str>>>,
        code: Option<&'static str>,
    ) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            INVALID_REQUEST,
            message,
            param.into(),
            code,
        )
    }

    /// 400 for a body that is not JSON.
    pub fn malformed_json(detail: impl std::fmt::Display) -> Self {
        Self::invalid(
            format!(
                "We could not parse the JSON body of your request ({detail}). The API expects a JSON object as \
                 the request body."
            ),
            None,
            Some("invalid_json"),
        )
    }

    /// 404 for an unknown model.
    pub fn model_not_found(model: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            INVALID_REQUEST,
            format!("The model `{model}` does not exist or you do not have access to it."),
            Some("model".into()),
            Some("model_not_found"),
        )
    }

    /// 404 for anything else.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            INVALID_REQUEST,
            message,
            None,
            Some("not_found"),
        )
    }

    /// 405.
    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            INVALID_REQUEST,
            "Method not allowed for this route.",
            None,
            Some("method_not_allowed"),
        )
    }

    /// 401.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            INVALID_REQUEST,
            message,
            None,
            Some("invalid_api_key"),
        )
    }

    /// 413 for a body over the limit.
    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            INVALID_REQUEST,
            format!("Request body is larger than the limit of {limit} bytes."),
            None,
            Some("request_too_large"),
        )
    }

    /// 429 for a per-key rate limit.
    pub fn rate_limited(message: impl Into<String>, kind: &'static str, retry_after: u64) -> Self {
        Self {
            retry_after: Some(retry_after.max(1)),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                kind,
                message,
                None,
                Some("rate_limit_exceeded"),
            )
        }
    }

    /// 429 when the queue is full.
    pub fn overloaded(retry_after: u64) -> Self {
        Self {
            retry_after: Some(retry_after.max(1)),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "server_overloaded",
                "The server is overloaded: too many requests are waiting for an executor. Please retry later.",
                None,
                Some("server_overloaded"),
            )
        }
    }

    /// 409 for executor calls on a lost lease or conflicting tokens.
    pub fn conflict(message: impl Into<String>, code: &'static str) -> Self {
        Self::new(
            StatusCode::CONFLICT,
            INVALID_REQUEST,
            message,
            None,
            Some(code),
        )
    }

    /// 403.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "permission_error",
            message,
            None,
            Some("forbidden"),
        )
    }

    /// 504 when a non-streaming response waited too long (the request stays durable; see its receipt).
    pub fn timeout(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::GATEWAY_TIMEOUT,
            "timeout_error",
            message,
            None,
            Some("timeout"),
        )
    }

    /// 500; the detail is logged, not shown.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        eprintln!("verinfer-sequencer: internal error: {detail}");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "The server had an error while processing your request.",
            None,
            Some("internal_error"),
        )
    }

    /// 503 while the database is unreachable.
    pub fn unavailable(detail: impl std::fmt::Display) -> Self {
        eprintln!("verinfer-sequencer: storage unavailable: {detail}");
        Self {
            retry_after: Some(1),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "server_error",
                "The service is temporarily unavailable. Please retry later.",
                None,
                Some("service_unavailable"),
            )
        }
    }

    /// The JSON body.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorObject {
                message: self.message.clone(),
                kind: self.kind.to_string(),
                param: self.param.as_ref().map(|p| p.to_string()),
                code: self.code.map(str::to_string),
            },
        }
    }
}

impl From<crate::storage::StorageError> for ApiError {
    fn from(e: crate::storage::StorageError) -> Self {
        use crate::storage::StorageError as E;
        match e {
            E::Database(_) | E::Migrate(_) => Self::unavailable(e),
            E::LeaseLost { .. } => Self::conflict(e.to_string(), "lease_lost"),
            E::TokenMismatch { .. } | E::TokenGap { .. } | E::TooManyTokens { .. } => {
                Self::conflict(e.to_string(), "token_conflict")
            }
            E::UnknownJob(_) => Self::not_found(e.to_string()),
            E::Logprobs { .. } => Self::invalid(
                e.to_string(),
                Some("logprobs".into()),
                Some("invalid_logprobs"),
            ),
            E::DuplicateRequest(_) | E::BatchConflict { .. } | E::Corrupt(_) => Self::internal(e),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body())).into_response();
        if let Some(secs) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&secs.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
        response
    }
}
