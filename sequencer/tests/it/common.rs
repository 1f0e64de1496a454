//! Test harness: fresh databases (a new Postgres database per test, dropped afterwards; an SQLite file in a temp
//! dir), a sequencer served on 127.0.0.1 with the tiny synthetic model, and an executor (the library worker over the
//! executor API, running the reference interpreter `vir::interp::generate`).

use protocol::{Address, FinishReason};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::{Connection, Executor};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use verinfer_sequencer::clock::{self, SharedClock};
use verinfer_sequencer::executor_api::AllowList;
use verinfer_sequencer::model::ServedModel;
use verinfer_sequencer::storage::{PgStorage, SharedStorage, SqliteStorage};
use verinfer_sequencer::worker::{ReferenceEngine, Worker, WorkerConfig};
use verinfer_sequencer::{AppState, SequencerConfig, admin_router, public_router};
use vir::bundle::ModelBundle;
use vir::gguf::GgufFile;
use vir::interp::generate;
use vir::synthetic::{SyntheticSpec, synthetic_gguf};

/// Model id the tests use.
pub const MODEL: &str = "tiny";
/// Admin token of test servers.
pub const ADMIN_TOKEN: &str = "admin-secret";
/// Executor token of the in-test worker.
pub const EXECUTOR_TOKEN: &str = "executor-secret";
/// Executor id of the in-test worker.
pub const EXECUTOR_ID: &str = "test-executor";
/// Postgres server of the development and CI machines.
pub const PG_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// The tiny synthetic model, built once per test binary.
pub fn bundle() -> &'static Arc<ModelBundle> {
    static BUNDLE: OnceLock<Arc<ModelBundle>> = OnceLock::new();
    BUNDLE.get_or_init(|| {
        let bytes = synthetic_gguf(&SyntheticSpec::tiny()).expect("tiny spec is valid");
        let file = GgufFile::parse(bytes).expect("synthetic GGUF parses");
        Arc::new(ModelBundle::from_file(file).expect("synthetic model loads"))
    })
}

/// Storage backends under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// A fresh database; [`TestDb::cleanup`] drops it (Postgres) or the temp dir goes with it (SQLite).
pub struct TestDb {
    pub url: String,
    pg_name: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

fn random_suffix() -> String {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).expect("os random");
    hex::encode(b)
}

impl TestDb {
    pub async fn new(backend: Backend) -> Self {
        match backend {
            Backend::Postgres => {
                let name = format!("verinfer_test_{}", random_suffix());
                let mut conn = sqlx::PgConnection::connect(PG_ADMIN_URL)
                    .await
                    .expect("Postgres at 127.0.0.1:5432 (user postgres, trust auth) is required");
                conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .await
                    .expect("create test database");
                Self {
                    url: format!("postgres://postgres@127.0.0.1:5432/{name}"),
                    pg_name: Some(name),
                    _dir: None,
                }
            }
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite://{}", dir.path().join("sequencer.db").display());
                Self {
                    url,
                    pg_name: None,
                    _dir: Some(dir),
                }
            }
        }
    }

    pub async fn storage(&self, clock: SharedClock) -> SharedStorage {
        if self.pg_name.is_some() {
            Arc::new(
                PgStorage::connect(&self.url, clock)
                    .await
                    .expect("connect Postgres"),
            )
        } else {
            Arc::new(
                SqliteStorage::connect(&self.url, clock)
                    .await
                    .expect("open SQLite"),
            )
        }
    }

    pub async fn cleanup(self) {
        if let Some(name) = &self.pg_name
            && let Ok(mut conn) = sqlx::PgConnection::connect(PG_ADMIN_URL).await
        {
            let _ = conn
                .execute(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .await;
        }
    }
}

/// A running sequencer.
pub struct TestServer {
    /// `http://127.0.0.1:PORT` of the public router.
    pub base: String,
    /// `http://127.0.0.1:PORT` of the admin router.
    pub admin: String,
    /// An API key created through the admin API.
    pub key: String,
    pub state: AppState,
    pub http: reqwest::Client,
    db: TestDb,
    tasks: Vec<JoinHandle<()>>,
}

/// Test defaults: small body limit (so a 10 MB body is clearly over), fast polling, short timeouts.
pub fn test_config() -> SequencerConfig {
    SequencerConfig {
        max_body_bytes: 1024 * 1024,
        admin_token: Some(ADMIN_TOKEN.into()),
        poll_interval: Duration::from_millis(50),
        response_timeout: Duration::from_secs(60),
        ..SequencerConfig::default()
    }
}

impl TestServer {
    /// Starts a server with an in-test executor.
    pub async fn start(backend: Backend) -> Self {
        Self::start_with(backend, test_config(), true).await
    }

    pub async fn start_with(backend: Backend, config: SequencerConfig, worker: bool) -> Self {
        Self::start_full(backend, config, worker, true).await
    }

    /// `monitor`: run the queue-depth recount (off where a test needs the admission-side count alone).
    pub async fn start_full(
        backend: Backend,
        config: SequencerConfig,
        worker: bool,
        monitor: bool,
    ) -> Self {
        let db = TestDb::new(backend).await;
        let storage = db.storage(clock::system()).await;
        let model = ServedModel::from_bundle(MODEL, bundle(), 1_700_000_000);
        let state = AppState::new(
            config,
            storage,
            vec![model],
            Arc::new(AllowList::new([(EXECUTOR_ID, EXECUTOR_TOKEN)])),
            clock::system(),
        )
        .expect("metrics register");
        let public = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let admin = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", public.local_addr().expect("addr"));
        let admin_base = format!("http://{}", admin.local_addr().expect("addr"));
        let mut tasks = vec![
            tokio::spawn({
                let router = public_router(state.clone());
                async move {
                    let _ = axum::serve(public, router).await;
                }
            }),
            tokio::spawn({
                let router = admin_router(state.clone());
                async move {
                    let _ = axum::serve(admin, router).await;
                }
            }),
        ];
        if monitor {
            tasks.push(verinfer_sequencer::server::spawn_queue_monitor(
                state.clone(),
                Duration::from_millis(200),
            ));
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("client");
        if worker {
            tasks.push(spawn_worker(base.clone(), EXECUTOR_TOKEN.into()));
        }
        let mut server = Self {
            base,
            admin: admin_base,
            key: String::new(),
            state,
            http,
            db,
            tasks,
        };
        server.key = server.create_key(json!({"name": "test"})).await["key"]
            .as_str()
            .expect("key in response")
            .to_string();
        server
    }

    /// `POST /admin/keys`.
    pub async fn create_key(&self, body: Value) -> Value {
        let r = self
            .http
            .post(format!("{}/admin/keys", self.admin))
            .bearer_auth(ADMIN_TOKEN)
            .json(&body)
            .send()
            .await
            .expect("admin reachable");
        assert_eq!(r.status(), StatusCode::CREATED);
        r.json().await.expect("json")
    }

    /// POST JSON to a public path with the server's key.
    pub async fn post(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.key)
            .json(body)
            .send()
            .await
            .expect("server reachable");
        let status = r.status();
        (status, r.json().await.expect("JSON body"))
    }

    /// GET a public path with the server's key.
    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.key)
            .send()
            .await
            .expect("server reachable");
        let status = r.status();
        (status, r.json().await.expect("JSON body"))
    }

    pub async fn stop(self) {
        for t in &self.tasks {
            t.abort();
        }
        self.db.cleanup().await;
    }
}

/// Runs `f` against a fresh server on each backend.
pub async fn on_both<F, Fut>(f: F)
where
    F: Fn(Backend) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for backend in [Backend::Sqlite, Backend::Postgres] {
        f(backend).await;
    }
}

/// Signs leaves as a bonded executor under the rollup's EIP-712 domain.
#[derive(Clone)]
pub struct LeafSigner {
    pub account: l1_contracts::dev::DevAccount,
    pub domain: alloy_sol_types::Eip712Domain,
}

impl LeafSigner {
    /// The signature of `leaf`.
    pub fn sign(&self, leaf: &protocol::InferenceLeaf) -> protocol::LeafSignature {
        protocol::sign_leaf(leaf, &self.domain, self.account.signer.credential())
            .expect("signing with a dev key")
    }
}

/// The in-test executor: the library worker ([`verinfer_sequencer::worker`]) over HTTP with the reference
/// interpreter, signing with a development key under a placeholder domain (servers without L1 checks store the
/// signature as given).
pub fn spawn_worker(base: String, token: String) -> JoinHandle<()> {
    spawn_worker_with(base, token, None)
}

/// [`spawn_worker`] that signs each leaf as `signer` (its key, its rollup's domain) when given.
pub fn spawn_worker_with(
    base: String,
    token: String,
    signer: Option<LeafSigner>,
) -> JoinHandle<()> {
    let signer = signer.unwrap_or_else(|| LeafSigner {
        account: l1_contracts::dev::accounts()[9].clone(),
        domain: protocol::leaf_domain(31337, Address::repeat_byte(0x11)),
    });
    let config = WorkerConfig {
        token: Some(token),
        concurrency: 8,
        wait: Duration::from_millis(500),
        heartbeat_every: Duration::from_secs(5),
        max_backoff: Duration::from_millis(200),
        domain: Some(signer.domain.clone()),
        ..WorkerConfig::new(base)
    };
    let engine = Arc::new(ReferenceEngine::new(bundle().clone()));
    let worker = Worker::new(config, engine, signer.account.signer.clone()).expect("worker");
    tokio::spawn(async move {
        if let Err(e) = worker.run(std::future::pending()).await {
            eprintln!("test worker stopped: {e}");
        }
    })
}

/// The reference result of a choice, computed directly (for comparing with what the API returned).
pub fn reference(prompt: &[u32], params: &protocol::SamplingParams) -> (Vec<u32>, FinishReason) {
    let g = generate(
        &bundle().model,
        prompt,
        params,
        &mut vir::interp::NoTrace,
        &mut |_| {},
    )
    .expect("valid request");
    (g.tokens, g.finish_reason)
}
