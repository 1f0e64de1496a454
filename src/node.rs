//! Wiring of the roles (shared by `verinfer sequencer`, `verinfer executor` and `verinfer devnet`): key files, the
//! development deployment (rollup, model, bonds), the sequencer service (public API + executor API, admin API,
//! settlement pipeline) and the executor engines.

use anyhow::{Context, Result, bail};
use executor::identity::ExecutorKey;
use l1_contracts::{L1, Rollup, RollupConfig, config_hash, model_leaf_count};
use protocol::{Address, B256, MerkleTree, SamplingParams};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use verinfer_sequencer::clock::SharedClock;
use verinfer_sequencer::executor_api::ExecutorAuth;
use verinfer_sequencer::model::ServedModel;
use verinfer_sequencer::settlement::{L1Pipeline, PipelineConfig, PipelineHandle};
use verinfer_sequencer::storage::SharedStorage;
use verinfer_sequencer::verify::BondedExecutors;
use verinfer_sequencer::worker::{
    EngineFailure, Execution, InferenceEngine, ReferenceEngine, committed_run,
};
use verinfer_sequencer::{AppState, SequencerConfig, admin_router, public_router};
use vir::bundle::ModelBundle;
use vir::logprobs::TokenLogprobs;

pub use alloy::signers::local::PrivateKeySigner;

/// Reads a secp256k1 private key file: 64 hex digits, `0x` optional, surrounding whitespace ignored. The key is
/// never printed; errors name the file only. Parsing is the executor identity's ([`ExecutorKey::from_hex`]).
pub fn read_key_file(path: &Path) -> Result<PrivateKeySigner> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading key file {}", path.display()))?;
    let key = ExecutorKey::from_hex(&text, &path.display().to_string()).with_context(|| {
        format!(
            "key file {} must hold one private key as 64 hex digits (0x optional)",
            path.display()
        )
    })?;
    Ok(key.signer().clone())
}

/// Registers `model` on the rollup (owner only): its root, config and the proof of the config leaf.
pub async fn register_model<L: L1>(rollup: &Rollup<L>, model: &vir::IntModel) -> Result<()> {
    let config = l1_contracts::prover::model_config(model);
    if config_hash(&config) != model.config_hash() {
        bail!("the model's config hash does not match the contract's encoding of its config");
    }
    let leaves: Vec<B256> = model.tensor_roots.iter().map(|(_, r)| *r).collect();
    let count = leaves.len() as u64;
    if count != model_leaf_count(config.nLayers, config.tiedOutput == 1) {
        bail!("the model root has {count} leaves, the contract expects another layout");
    }
    let tree = MerkleTree::new(leaves);
    let proof = tree.proof(count - 1)?;
    if tree.root() != model.root {
        bail!("the model root does not rebuild from its leaves");
    }
    rollup
        .register_model(model.root, config, proof.siblings)
        .await
        .context("registering the model on the rollup")?;
    Ok(())
}

/// A development deployment: the rollup (deployed by `owner`), the model registered, the sequencer and executors
/// bonded with the minimum bond.
pub struct DevDeployment<L> {
    /// The rollup as its owner.
    pub rollup: Rollup<L>,
    /// First block to search for events (the block before deployment).
    pub start_block: u64,
    /// Chain id.
    pub chain_id: u64,
}

/// Deploys and sets up a rollup on a development chain (see [`DevDeployment`]).
pub async fn deploy_dev<L: L1 + Clone>(
    owner: L,
    sequencer: &L,
    executors: &[L],
    model: &vir::IntModel,
    challenge_window: u64,
) -> Result<DevDeployment<L>> {
    let chain_id = owner.chain_id().await?;
    let start_block = owner.latest_block().await?.number;
    let config = RollupConfig {
        challenge_window,
        withdrawal_delay: challenge_window.max(1) * 2,
        ..RollupConfig::devnet(owner.sender())
    };
    let rollup = Rollup::deploy(owner, &config)
        .await
        .context("deploying InferenceRollup")?;
    register_model(&rollup, model).await?;
    rollup
        .with_l1(sequencer.clone())
        .register_sequencer(config.min_sequencer_bond)
        .await
        .context("bonding the sequencer")?;
    for executor in executors {
        rollup
            .with_l1(executor.clone())
            .register_executor(config.min_executor_bond)
            .await
            .with_context(|| format!("bonding executor {}", executor.sender()))?;
    }
    Ok(DevDeployment {
        rollup,
        start_block,
        chain_id,
    })
}

/// Everything a sequencer needs besides its chain.
pub struct SequencerSetup {
    /// HTTP settings.
    pub config: SequencerConfig,
    /// Storage.
    pub storage: SharedStorage,
    /// Served models.
    pub models: Vec<ServedModel>,
    /// Executor authentication.
    pub executor_auth: Arc<dyn ExecutorAuth>,
    /// Clock.
    pub clock: SharedClock,
    /// Public listener (OpenAI API, receipts, executor API, health, metrics).
    pub listen: SocketAddr,
    /// Admin listener (`/admin/keys`), if any.
    pub admin_listen: Option<SocketAddr>,
    /// Settlement pipeline settings.
    pub pipeline: PipelineConfig,
    /// How long an executor bond lookup is cached.
    pub bond_cache_ttl: Duration,
}

/// A running sequencer.
pub struct RunningSequencer {
    /// Shared state.
    pub state: AppState,
    /// Bound public address.
    pub addr: SocketAddr,
    /// Bound admin address.
    pub admin_addr: Option<SocketAddr>,
    stop: watch::Sender<bool>,
    servers: Vec<JoinHandle<std::io::Result<()>>>,
    monitor: JoinHandle<()>,
    pipeline: Option<PipelineHandle>,
}

impl RunningSequencer {
    /// Stops accepting connections, lets in-flight responses finish, and stops the pipeline.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        for server in self.servers.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(10), server).await;
        }
        self.monitor.abort();
        if let Some(p) = self.pipeline.take() {
            p.abort();
        }
    }

    /// Stops the settlement pipeline only (before a final flush).
    pub fn stop_pipeline(&mut self) {
        if let Some(p) = self.pipeline.take() {
            p.abort();
        }
    }
}

/// Starts the sequencer: API servers, queue monitor, leaf verifier and the batch pipeline posting through `rollup`
/// (whose handle's sender is the bonded sequencer).
pub async fn start_sequencer<L: L1 + Clone + 'static>(
    setup: SequencerSetup,
    rollup: Rollup<L>,
) -> Result<RunningSequencer> {
    let state = AppState::new(
        setup.config,
        setup.storage.clone(),
        setup.models,
        setup.executor_auth,
        setup.clock.clone(),
    )?;
    let verifier = BondedExecutors::connect(rollup.clone(), setup.bond_cache_ttl)
        .await
        .context("reading the chain id from L1")?;
    state.set_leaf_verifier(Arc::new(verifier));
    let pipeline = L1Pipeline::new(
        setup.storage,
        setup.clock,
        state.metrics(),
        rollup,
        setup.pipeline,
    )
    .await
    .context("starting the settlement pipeline (is the sequencer key bonded on this rollup?)")?;
    let (stop, stopped) = watch::channel(false);
    let public = TcpListener::bind(setup.listen)
        .await
        .with_context(|| format!("listening on {}", setup.listen))?;
    let addr = public.local_addr()?;
    let mut servers = vec![spawn_server(
        public,
        public_router(state.clone()),
        stopped.clone(),
    )];
    let mut admin_addr = None;
    if let Some(listen) = setup.admin_listen {
        let admin = TcpListener::bind(listen)
            .await
            .with_context(|| format!("listening on {listen} (admin)"))?;
        admin_addr = Some(admin.local_addr()?);
        servers.push(spawn_server(admin, admin_router(state.clone()), stopped));
    }
    let monitor =
        verinfer_sequencer::server::spawn_queue_monitor(state.clone(), Duration::from_secs(1));
    Ok(RunningSequencer {
        state,
        addr,
        admin_addr,
        stop,
        servers,
        monitor,
        pipeline: Some(pipeline.spawn()),
    })
}

fn spawn_server(
    listener: TcpListener,
    router: axum::Router,
    mut stopped: watch::Receiver<bool>,
) -> JoinHandle<std::io::Result<()>> {
    tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let _ = stopped.wait_for(|s| *s).await;
            })
            .await
    })
}

/// Plans every waiting executed job into batches (due or not) and posts them: the last act of a graceful
/// shutdown. Returns the number of batches posted.
pub async fn flush_batches<L: L1 + Clone + 'static>(
    storage: SharedStorage,
    clock: SharedClock,
    state: &AppState,
    rollup: Rollup<L>,
    config: PipelineConfig,
) -> Result<usize> {
    let pipeline = L1Pipeline::new(storage, clock, state.metrics(), rollup, config).await?;
    while pipeline.batcher().plan_now().await?.is_some() {}
    Ok(pipeline.post().await?.len())
}

/// Which engine an executor runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EngineKind {
    /// The executor's burn engine (CPU, or CUDA with `--device cuda`).
    Burn,
    /// The scalar reference interpreter (slow; the specification).
    Reference,
}

/// Device of the burn engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DeviceKind {
    /// CPU (burn's flex backend).
    Cpu,
    /// CUDA (needs a binary built with `--features cuda` and a CUDA driver).
    Cuda,
}

type RunFn = dyn Fn(
        &[u32],
        &SamplingParams,
        Option<u8>,
        &mut dyn FnMut(u32, Option<TokenLogprobs>),
    ) -> Result<Execution, EngineFailure>
    + Send
    + Sync;

/// An [`InferenceEngine`] chosen at run time.
pub struct Engine {
    root: B256,
    run: Box<RunFn>,
}

impl InferenceEngine for Engine {
    fn model_root(&self) -> B256 {
        self.root
    }

    fn run(
        &self,
        prompt: &[u32],
        params: &SamplingParams,
        logprobs: Option<u8>,
        on_token: &mut dyn FnMut(u32, Option<TokenLogprobs>),
    ) -> Result<Execution, EngineFailure> {
        (self.run)(prompt, params, logprobs, on_token)
    }
}

/// The run function of a burn engine (any backend): its trace committed by the parallel committer (same
/// commitment as the reference's), logprobs from that trace ([`committed_run`]).
macro_rules! burn_run {
    ($engine:expr) => {{
        let engine = $engine;
        let run: Box<RunFn> = Box::new(move |prompt, params, logprobs, on_token| {
            committed_run(
                executor::ParallelCommitter::default(),
                executor::ParallelCommitter::finish,
                logprobs,
                on_token,
                |sink, on_token| engine.generate(prompt, params, sink, on_token),
            )
        });
        run
    }};
}

impl Engine {
    /// Loads `bundle`'s model into the chosen engine.
    pub fn load(bundle: Arc<ModelBundle>, kind: EngineKind, device: DeviceKind) -> Result<Self> {
        let root = bundle.model.root;
        let run: Box<RunFn> = match (kind, device) {
            (EngineKind::Reference, _) => {
                let engine = ReferenceEngine::new(bundle);
                Box::new(move |p, s, l, t| engine.run(p, s, l, t))
            }
            (EngineKind::Burn, DeviceKind::Cpu) => burn_run!(
                executor::BurnEngine::<executor::Cpu>::new(&bundle.model, Default::default())?
            ),
            #[cfg(feature = "cuda")]
            (EngineKind::Burn, DeviceKind::Cuda) => burn_run!(executor::BurnEngine::<
                executor::Cuda,
            >::new(
                &bundle.model, Default::default()
            )?),
            #[cfg(not(feature = "cuda"))]
            (EngineKind::Burn, DeviceKind::Cuda) => bail!(
                "this binary was built without CUDA: rebuild with `cargo build --release --features cuda`"
            ),
        };
        Ok(Self { root, run })
    }
}

/// A served model from a bundle, named `id`.
pub fn served_model(id: &str, bundle: &ModelBundle) -> ServedModel {
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX))
        .unwrap_or(0);
    ServedModel::from_bundle(id, bundle, created)
}

/// The address of a key, for printing.
pub fn address_of(key: &PrivateKeySigner) -> Address {
    key.address()
}

/// Resolves on Ctrl-C (SIGINT) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
