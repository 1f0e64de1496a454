//! Admin routes, served on their own router (bind it to a private address): create, list and revoke API keys.
//! Guarded by `Authorization: Bearer <admin token>`; without a configured token every admin call is 403.

use crate::body::JsonBody;
use crate::error::ApiError;
use crate::keys::{CreatedKey, bearer, create_key};
use crate::server::AppState;
use crate::storage::ApiKeyRecord;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// `POST /admin/keys` body.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CreateKeyRequest {
    /// Name shown in listings.
    #[serde(default)]
    pub name: String,
    /// Requests per minute.
    #[serde(default)]
    pub rpm_limit: Option<u64>,
    /// Prompt + max tokens per minute.
    #[serde(default)]
    pub tpm_limit: Option<u64>,
}

/// `GET /admin/keys` response.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyList {
    /// `list`.
    pub object: String,
    /// Keys (never the keys themselves).
    pub data: Vec<ApiKeyRecord>,
}

/// Result of a revocation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Revoked {
    /// Key id.
    pub id: i64,
    /// Always true.
    pub revoked: bool,
}

/// The admin routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/keys", post(create).get(list))
        .route("/admin/keys/{id}", delete(revoke))
        .route("/admin/keys/{id}/revoke", post(revoke))
        .route("/admin/health", get(|| async { "ok" }))
}

fn guard(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(expected) = state.config().admin_token.as_deref() else {
        return Err(ApiError::forbidden(
            "The admin API is disabled: no admin token is configured.",
        ));
    };
    let given = bearer(headers).unwrap_or_default();
    // Compare digests so the comparison time does not depend on where the strings differ.
    if Sha256::digest(given.as_bytes()) == Sha256::digest(expected.as_bytes()) {
        Ok(())
    } else {
        Err(ApiError::unauthorized("Invalid admin token."))
    }
}

async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    JsonBody(req): JsonBody<CreateKeyRequest>,
) -> Result<(StatusCode, Json<CreatedKey>), ApiError> {
    guard(&state, &headers)?;
    let created = create_key(
        state.storage().as_ref(),
        &req.name,
        req.rpm_limit,
        req.tpm_limit,
        state.clock().now_ms(),
    )
    .await
    .map_err(|e| match e {
        crate::keys::KeyError::Storage(s) => ApiError::from(s),
        other => ApiError::internal(other),
    })?;
    state.authenticator().invalidate();
    Ok((StatusCode::CREATED, Json(created)))
}

async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<KeyList>, ApiError> {
    guard(&state, &headers)?;
    Ok(Json(KeyList {
        object: "list".into(),
        data: state.storage().list_keys().await?,
    }))
}

async fn revoke(
    State(state): State<AppState>,
    headers: HeaderMap,
    id: Result<Path<i64>, PathRejection>,
) -> Result<Json<Revoked>, ApiError> {
    guard(&state, &headers)?;
    let Path(id) = id.map_err(|_| ApiError::not_found("Unknown key id."))?;
    if !state.storage().revoke_key(id).await? {
        return Err(ApiError::not_found(format!("No active key with id {id}.")));
    }
    state.authenticator().invalidate();
    Ok(Json(Revoked { id, revoked: true }))
}
