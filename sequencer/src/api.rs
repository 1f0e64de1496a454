//! The public OpenAI-compatible routes (`/v1/models`, `/v1/chat/completions`, `/v1/completions`), receipts,
//! `/health` and `/metrics`. Every `/v1` route needs an API key (checked before the body is read).

use crate::admission::admit;
use crate::body::JsonBody;
use crate::error::ApiError;
use crate::ids::RequestId;
use crate::openai::{ModelCard, ModelList};
use crate::params::{parse_chat, parse_completion};
use crate::receipt::{Receipt, build};
use crate::results::{ResultFollower, respond_json, respond_stream};
use crate::server::AppState;
use crate::storage::ApiKeyRecord;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde_json::Value;
use std::collections::HashMap;

/// Header carrying the request id on every generation response.
pub const REQUEST_ID_HEADER: &str = "x-verinfer-request-id";

/// The `/v1` routes (auth applied by the caller's layer).
pub fn v1_router() -> Router<AppState> {
    Router::new()
        .route("/v1/models", get(list_models))
        .route("/v1/models/{*id}", get(get_model))
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/completions", post(completions))
        .route("/v1/receipts/{id}", get(receipt))
}

/// Middleware: authenticates the API key and passes its record on.
pub async fn require_key(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    if !state.config().require_api_key {
        return next.run(req).await;
    }
    match state
        .authenticator()
        .authenticate(state.storage().as_ref(), req.headers())
        .await
    {
        Ok(record) => {
            req.extensions_mut().insert(record);
            next.run(req).await
        }
        Err(e) => e.into_response(),
    }
}

fn card(model: &crate::model::ServedModel) -> ModelCard {
    ModelCard {
        id: model.id.clone(),
        object: "model".into(),
        created: model.created,
        owned_by: model.owned_by.clone(),
        root: model.root.to_string(),
        max_model_len: model.context_length,
    }
}

async fn list_models(State(state): State<AppState>) -> Json<ModelList> {
    Json(ModelList {
        object: "list".into(),
        data: state.models().iter().map(card).collect(),
    })
}

async fn get_model(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<ModelCard>, ApiError> {
    let Path(id) = id.map_err(|_| ApiError::not_found("Invalid model id."))?;
    state
        .model(&id)
        .map(|m| Json(card(m)))
        .ok_or_else(|| ApiError::model_not_found(&id))
}

async fn chat_completions(
    State(state): State<AppState>,
    key: Option<Extension<ApiKeyRecord>>,
    JsonBody(body): JsonBody<Value>,
) -> Result<Response, ApiError> {
    let req = parse_chat(&body)?;
    generate(state, key.map(|Extension(k)| k), req).await
}

async fn completions(
    State(state): State<AppState>,
    key: Option<Extension<ApiKeyRecord>>,
    JsonBody(body): JsonBody<Value>,
) -> Result<Response, ApiError> {
    let req = parse_completion(&body)?;
    generate(state, key.map(|Extension(k)| k), req).await
}

async fn generate(
    state: AppState,
    key: Option<ApiKeyRecord>,
    req: crate::params::GenerationRequest,
) -> Result<Response, ApiError> {
    let stream = req.stream;
    let admitted = admit(&state, key.as_ref(), req).await?;
    let request_id = admitted.request_id;
    let follower = ResultFollower::new(state, admitted);
    let mut response = if stream {
        respond_stream(follower)
    } else {
        respond_json(follower).await?
    };
    if let Ok(v) = HeaderValue::from_str(&request_id.to_string()) {
        response.headers_mut().insert(REQUEST_ID_HEADER, v);
    }
    Ok(response)
}

async fn receipt(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<Receipt>, ApiError> {
    let unknown = || ApiError::not_found("No request with this id.");
    let Path(id) = id.map_err(|_| unknown())?;
    let id = RequestId::parse_any(&id).ok_or_else(unknown)?;
    let storage = state.storage();
    let request = storage.request(id).await?.ok_or_else(unknown)?;
    let jobs = storage.jobs(id).await?;
    let mut batches = HashMap::new();
    for number in jobs.iter().filter_map(|j| j.batch_number) {
        if !batches.contains_key(&number)
            && let Some(batch) = storage.batch(number).await?
        {
            batches.insert(number, batch);
        }
    }
    Ok(Json(build(&request, &jobs, &batches)))
}

/// `GET /health`: 200 when the database answers.
pub async fn health(State(state): State<AppState>) -> Response {
    match state.storage().queue_depth().await {
        Ok(depth) => Json(serde_json::json!({"status": "ok", "queue": depth})).into_response(),
        Err(e) => ApiError::unavailable(e).into_response(),
    }
}

/// `GET /metrics`: Prometheus text.
pub async fn metrics(State(state): State<AppState>) -> Response {
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        state.metrics().render(),
    )
        .into_response()
}
