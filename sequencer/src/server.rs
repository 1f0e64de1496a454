//! Configuration, shared state and the routers: the public router (OpenAI API, receipts, health, metrics, executor
//! API) and the admin router, meant for a separate, private listener.

use crate::error::ApiError;
use crate::executor_api::ExecutorAuth;
use crate::hub::Hub;
use crate::keys::Authenticator;
use crate::metrics::Metrics;
use crate::model::ServedModel;
use crate::ratelimit::RateLimiter;
use crate::storage::SharedStorage;
use crate::verify::LeafVerifier;
use crate::{admin, api, executor_api, metrics};
use axum::Router;
use axum::middleware::from_fn_with_state;
use axum::routing::get;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Sequencer settings.
#[derive(Debug, Clone)]
pub struct SequencerConfig {
    /// Largest request body; larger ones get 413.
    pub max_body_bytes: usize,
    /// Jobs queued or running beyond which requests get 429 (overloaded).
    pub max_queue_depth: u64,
    /// `Retry-After` of an overload 429.
    pub overload_retry_after: Duration,
    /// How long a non-streaming response (or a stream) waits for its results before answering 504.
    pub response_timeout: Duration,
    /// Storage polling interval of waiting responses (wake-ups from this replica are immediate).
    pub poll_interval: Duration,
    /// Lease duration when the executor names none.
    pub default_lease: Duration,
    /// Longest lease.
    pub max_lease: Duration,
    /// Bearer token of the admin API (`None`: admin API disabled).
    pub admin_token: Option<String>,
    /// Whether `/v1` routes need an API key.
    pub require_api_key: bool,
    /// How long an API key lookup is cached.
    pub key_cache_ttl: Duration,
}

impl Default for SequencerConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 2 * 1024 * 1024,
            max_queue_depth: 10_000,
            overload_retry_after: Duration::from_secs(1),
            response_timeout: Duration::from_secs(600),
            poll_interval: Duration::from_millis(250),
            default_lease: Duration::from_secs(30),
            max_lease: Duration::from_secs(300),
            admin_token: None,
            require_api_key: true,
            key_cache_ttl: Duration::from_secs(2),
        }
    }
}

struct Inner {
    config: SequencerConfig,
    storage: SharedStorage,
    models: Vec<ServedModel>,
    hub: Arc<Hub>,
    metrics: Metrics,
    authenticator: Authenticator,
    limiter: RateLimiter,
    executor_auth: Arc<dyn ExecutorAuth>,
    clock: crate::clock::SharedClock,
    queued: AtomicU64,
    verifier: std::sync::OnceLock<Arc<dyn LeafVerifier>>,
}

/// Shared state of every route (cheap to clone).
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("config", &self.0.config)
            .field("models", &self.0.models)
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// State over a storage backend, the served models and the executor authentication.
    pub fn new(
        config: SequencerConfig,
        storage: SharedStorage,
        models: Vec<ServedModel>,
        executor_auth: Arc<dyn ExecutorAuth>,
        clock: crate::clock::SharedClock,
    ) -> Result<Self, prometheus::Error> {
        Ok(Self(Arc::new(Inner {
            authenticator: Authenticator::new(config.key_cache_ttl),
            config,
            storage,
            models,
            hub: Arc::new(Hub::default()),
            metrics: Metrics::new()?,
            limiter: RateLimiter::default(),
            executor_auth,
            clock,
            queued: AtomicU64::new(0),
            verifier: std::sync::OnceLock::new(),
        })))
    }

    /// Settings.
    pub fn config(&self) -> &SequencerConfig {
        &self.0.config
    }

    /// Storage.
    pub fn storage(&self) -> &SharedStorage {
        &self.0.storage
    }

    /// Served models.
    pub fn models(&self) -> &[ServedModel] {
        &self.0.models
    }

    /// The served model with this id.
    pub fn model(&self, id: &str) -> Option<&ServedModel> {
        self.0.models.iter().find(|m| m.id == id)
    }

    /// Wake-ups.
    pub fn hub(&self) -> &Arc<Hub> {
        &self.0.hub
    }

    /// Metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.0.metrics
    }

    /// API key checks.
    pub fn authenticator(&self) -> &Authenticator {
        &self.0.authenticator
    }

    /// Per-key limits.
    pub fn limiter(&self) -> &RateLimiter {
        &self.0.limiter
    }

    /// Executor authentication.
    pub fn executor_auth(&self) -> &dyn ExecutorAuth {
        self.0.executor_auth.as_ref()
    }

    /// Requires every completed leaf to be signed by a bonded executor and to match its job ([`crate::verify`]);
    /// without a verifier results are stored as given (the batcher still checks before posting). Set once; `false`
    /// when one was already set.
    pub fn set_leaf_verifier(&self, verifier: Arc<dyn LeafVerifier>) -> bool {
        self.0.verifier.set(verifier).is_ok()
    }

    /// The leaf verifier, when set.
    pub fn leaf_verifier(&self) -> Option<&Arc<dyn LeafVerifier>> {
        self.0.verifier.get()
    }

    /// Clock.
    pub fn clock(&self) -> &crate::clock::SharedClock {
        &self.0.clock
    }

    /// Jobs queued or running, as last counted plus admitted since.
    pub fn queue_estimate(&self) -> u64 {
        self.0.queued.load(Ordering::Relaxed)
    }

    pub(crate) fn add_queued(&self, n: u64) {
        self.0.queued.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn sub_queued(&self, n: u64) {
        let _ = self
            .0
            .queued
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some(v.saturating_sub(n))
            });
    }

    /// Recounts the queue from storage and updates the gauge.
    pub async fn refresh_queue_depth(&self) -> Result<(), crate::storage::StorageError> {
        let depth = self.storage().queue_depth().await?;
        self.0
            .queued
            .store(depth.queued + depth.leased, Ordering::Relaxed);
        let gauge = &self.metrics().queue_depth;
        gauge
            .with_label_values(&["queued"])
            .set(i64::try_from(depth.queued).unwrap_or(i64::MAX));
        gauge
            .with_label_values(&["leased"])
            .set(i64::try_from(depth.leased).unwrap_or(i64::MAX));
        Ok(())
    }
}

async fn not_found() -> ApiError {
    ApiError::not_found("Unknown route.")
}

async fn method_not_allowed() -> ApiError {
    ApiError::method_not_allowed()
}

/// The public router: `/v1/*` (API key required), `/health`, `/metrics`, `/executor/v1/*`.
pub fn public_router(state: AppState) -> Router {
    let v1 = api::v1_router().layer(from_fn_with_state(state.clone(), api::require_key));
    Router::new()
        .merge(v1)
        .merge(executor_api::router())
        .route("/health", get(api::health))
        .route("/metrics", get(api::metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(from_fn_with_state(state.clone(), metrics::track))
        .with_state(state)
}

/// The admin router (`/admin/keys`), for a private listener.
pub fn admin_router(state: AppState) -> Router {
    admin::router()
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

/// Keeps the queue-depth gauge and the overload estimate current (every `every`).
pub fn spawn_queue_monitor(state: AppState, every: Duration) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            if let Err(e) = state.refresh_queue_depth().await {
                eprintln!("verinfer-sequencer: queue depth: {e}");
            }
        }
    })
}

/// Serves `router` on `listener` until the task is dropped or the listener fails.
pub async fn serve(listener: TcpListener, router: Router) -> std::io::Result<()> {
    axum::serve(listener, router).await
}
