//! `verinfer executor`: a remote executor. Leases jobs from a sequencer's executor API, runs them on the burn engine
//! (CPU or CUDA) or the reference interpreter, streams tokens as they are produced and completes each job with the
//! leaf signed by its executor key. Stateless: run as many as you like against one sequencer.

use crate::model_ref::ModelRef;
use crate::node::{DeviceKind, Engine, EngineKind, read_key_file, shutdown_signal};
use anyhow::{Context, Result};
use clap::Args;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use verinfer_sequencer::worker::{Worker, WorkerConfig, WorkerMetrics};

/// Run an executor against a sequencer.
///
/// The executor key signs every result (EIP-712 leaf); the sequencer accepts results only from keys with an active
/// executor bond on the rollup (register one with `registerExecutor` and at least the minimum bond). The rollup's
/// chain id and address are read from the sequencer (`GET /executor/v1/info`). On SIGINT/SIGTERM the executor stops
/// leasing, finishes and completes the jobs it holds, then exits.
#[derive(Debug, Args)]
pub struct ExecutorArgs {
    /// Base URL of the sequencer (the listener with /executor/v1), e.g. http://sequencer:8080.
    #[arg(long)]
    pub sequencer: String,
    /// File with the executor's secp256k1 private key (64 hex digits, 0x optional). Never printed.
    #[arg(long)]
    pub key: PathBuf,
    /// Bearer token of the sequencer's executor API (configured there with --executor-token).
    #[arg(long, env = "VERINFER_EXECUTOR_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// `smollm2` (fetched and verified on first use), `tiny` (synthetic test model) or a GGUF path; must be the
    /// model the sequencer serves (same model root).
    #[arg(long, default_value = "smollm2")]
    pub model: ModelRef,
    /// Engine.
    #[arg(long, value_enum, default_value_t = EngineKind::Burn)]
    pub engine: EngineKind,
    /// Device of the burn engine.
    #[arg(long, value_enum, default_value_t = DeviceKind::Cpu)]
    pub device: DeviceKind,
    /// Jobs run at once.
    #[arg(long, default_value_t = 4)]
    pub concurrency: u32,
    /// Lease duration asked for, seconds (renewed every third of it while a job runs).
    #[arg(long, default_value_t = 30)]
    pub lease_secs: u64,
    /// Serve Prometheus metrics (`verinfer_executor_*`) on this address (`/metrics`).
    #[arg(long)]
    pub metrics_listen: Option<SocketAddr>,
}

pub fn run(args: ExecutorArgs) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(executor(args))
}

async fn executor(args: ExecutorArgs) -> Result<()> {
    let signer = read_key_file(&args.key)?;
    let model_ref = args.model.clone();
    let (kind, device) = (args.engine, args.device);
    let engine = tokio::task::spawn_blocking(move || -> Result<Engine> {
        let bundle = Arc::new(model_ref.open()?);
        Engine::load(bundle, kind, device)
    })
    .await
    .context("engine loading task")??;
    let lease = Duration::from_secs(args.lease_secs.max(1));
    let config = WorkerConfig {
        token: args.token.clone(),
        concurrency: args.concurrency.max(1),
        lease,
        heartbeat_every: lease / 3,
        ..WorkerConfig::new(args.sequencer.clone())
    };
    let worker = Worker::new(config, Arc::new(engine), signer)?;
    eprintln!(
        "verinfer executor {} running against {} ({} jobs at once)",
        worker.address(),
        args.sequencer,
        args.concurrency.max(1)
    );
    if let Some(addr) = args.metrics_listen {
        serve_metrics(addr, worker.metrics().clone()).await?;
    }
    worker.run(shutdown_signal()).await?;
    eprintln!("verinfer executor: stopped");
    Ok(())
}

async fn serve_metrics(addr: SocketAddr, metrics: WorkerMetrics) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("listening on {addr} (metrics)"))?;
    let router = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let metrics = metrics.clone();
            async move { metrics.render() }
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Ok(())
}
