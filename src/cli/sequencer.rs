//! `verinfer sequencer`: the sequencer service. One public listener (OpenAI-compatible API at /v1, receipts, the
//! executor API at /executor/v1, /health, /metrics), an optional private admin listener (/admin/keys), and the
//! settlement pipeline (batch → post to L1 → finalize) run by one leader per database.

use crate::model_ref::ModelRef;
use crate::node::{
    SequencerSetup, deploy_dev, read_key_file, served_model, shutdown_signal, start_sequencer,
};
use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use l1_contracts::rpc::{FollowerConfig, RpcConfig, RpcL1};
use l1_contracts::{ChainConfig, Clock, EmbeddedChain, L1, Rollup, dev};
use protocol::Address;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use verinfer_sequencer::SequencerConfig;
use verinfer_sequencer::clock;
use verinfer_sequencer::executor_api::AllowList;
use verinfer_sequencer::settlement::{BatcherConfig, DaMode, PipelineConfig};
use verinfer_sequencer::storage;

/// Run the sequencer.
///
/// Requests are stored durably (the database row is committed before any byte of the response), leased to
/// executors, and their signed results batched and posted to the InferenceRollup contract with the sequencer key.
/// Results are accepted only when signed by an executor with an active bond on the rollup. Safe to kill at any
/// time: on restart every stored request is served, every executed result batched, and no batch posted twice.
///
/// Example (anvil, Postgres):
///   verinfer sequencer --database-url postgres://postgres@127.0.0.1/verinfer --l1-rpc http://127.0.0.1:8545
///     --rollup 0x5FbDB2315678afecb367f032d93F642f64180aa3 --sequencer-key seq.key --model smollm2
///     --executor-token gpu-1=s3cret --admin-listen 127.0.0.1:9090
#[derive(Debug, Args)]
pub struct SequencerArgs {
    /// Database: `postgres://user@host:5432/db` (production; several replicas may share it) or
    /// `sqlite:///path/file.sqlite` (one replica). Migrations are applied at start.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: String,
    /// JSON-RPC URL of the L1 node, or `embedded` for an in-process development chain (deployed at start, lost at
    /// exit: for trying things out only).
    #[arg(long, env = "VERINFER_L1_RPC")]
    pub l1_rpc: String,
    /// Address of the InferenceRollup contract (required unless --l1-rpc embedded).
    #[arg(long, env = "VERINFER_ROLLUP")]
    pub rollup: Option<Address>,
    /// L1 block the rollup was deployed in (event searches start there).
    #[arg(long, default_value_t = 0)]
    pub start_block: u64,
    /// File with the sequencer's private key (64 hex digits): it posts batches and must hold an active sequencer
    /// bond. Never printed. Optional with --l1-rpc embedded (a development key is used).
    #[arg(long)]
    pub sequencer_key: Option<PathBuf>,
    /// Public listener: OpenAI API, receipts, executor API, /health, /metrics.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Admin listener (`/admin/keys`); keep it private. Disabled when absent.
    #[arg(long)]
    pub admin_listen: Option<SocketAddr>,
    /// Bearer token of the admin API (required with --admin-listen).
    #[arg(long, env = "VERINFER_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// `smollm2`, `tiny` (synthetic test model) or a GGUF path: the model served.
    #[arg(long, default_value = "smollm2")]
    pub model: ModelRef,
    /// The id clients send as `model` (default: `smollm2`, `tiny`, or the file name).
    #[arg(long)]
    pub model_id: Option<String>,
    /// An executor allowed to use the executor API, as ID=TOKEN; repeat for several (or a comma-separated list in
    /// VERINFER_EXECUTOR_TOKENS).
    #[arg(
        long = "executor-token",
        env = "VERINFER_EXECUTOR_TOKENS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub executor_tokens: Vec<String>,
    /// A batch is posted once this many results wait.
    #[arg(long, default_value_t = 1024)]
    pub batch_max_leaves: u32,
    /// A batch is posted once its uncompressed data reaches this many bytes.
    #[arg(long, default_value_t = 1 << 20)]
    pub batch_max_bytes: u64,
    /// A batch is posted once its oldest result waited this long, milliseconds.
    #[arg(long, default_value_t = 10_000)]
    pub batch_max_age_ms: u64,
    /// Where batch data goes on L1: `blobs` (EIP-4844 blob transactions sent with cell proofs, constant
    /// `postBatchBlobs` gas; batches are capped at the 6 blobs of one transaction) or `calldata` (`postBatch`, gas
    /// grows with the data).
    #[arg(long, default_value = "blobs")]
    pub da: DaMode,
    /// Confirmations before finality events (BatchFinalized, LeafInvalidated) are acted on.
    #[arg(long, default_value_t = 12)]
    pub confirmations: u64,
    /// How long a non-streaming response waits for its result before 504 (the request stays durable), seconds.
    #[arg(long, default_value_t = 600)]
    pub response_timeout_secs: u64,
    /// Jobs queued or running beyond which new requests get 429.
    #[arg(long, default_value_t = 10_000)]
    pub max_queue_depth: u64,
    /// With --l1-rpc embedded: challenge window of the development rollup, seconds.
    #[arg(long, default_value_t = 5)]
    pub embedded_challenge_window: u64,
    /// With --l1-rpc embedded: bond this executor address (repeatable); the embedded chain has no RPC, so remote
    /// executors cannot bond themselves.
    #[arg(long)]
    pub bond_executor: Vec<Address>,
}

pub fn run(args: SequencerArgs) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(sequencer(args))
}

fn executor_tokens(entries: &[String]) -> Result<AllowList> {
    let mut pairs = Vec::new();
    for entry in entries.iter().filter(|e| !e.trim().is_empty()) {
        let (id, token) = entry
            .split_once('=')
            .ok_or_else(|| anyhow!("--executor-token takes ID=TOKEN (got an entry without `=`)"))?;
        if id.trim().is_empty() || token.trim().is_empty() {
            bail!("--executor-token takes ID=TOKEN with both parts non-empty");
        }
        pairs.push((id.trim().to_string(), token.trim().to_string()));
    }
    if pairs.is_empty() {
        eprintln!(
            "verinfer sequencer: warning: no --executor-token given: no executor can lease jobs"
        );
    }
    Ok(AllowList::new(pairs))
}

async fn sequencer(args: SequencerArgs) -> Result<()> {
    if args.admin_listen.is_some() && args.admin_token.is_none() {
        bail!("--admin-listen needs --admin-token (or VERINFER_ADMIN_TOKEN)");
    }
    let auth = executor_tokens(&args.executor_tokens)?;
    let model_ref = args.model.clone();
    let bundle = tokio::task::spawn_blocking(move || model_ref.open())
        .await
        .context("model loading task")??;
    let id = args.model_id.clone().unwrap_or_else(|| match &args.model {
        ModelRef::SmolLm2 => "smollm2".into(),
        ModelRef::Tiny => "tiny".into(),
        ModelRef::Path(p) => p
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "model".into()),
    });
    let storage = storage::connect(&args.database_url, clock::system())
        .await
        .context("opening --database-url")?;
    let setup = SequencerSetup {
        config: SequencerConfig {
            admin_token: args.admin_token.clone(),
            response_timeout: Duration::from_secs(args.response_timeout_secs),
            max_queue_depth: args.max_queue_depth,
            ..SequencerConfig::default()
        },
        storage,
        models: vec![served_model(&id, &bundle)],
        executor_auth: Arc::new(auth),
        clock: clock::system(),
        listen: args.listen,
        admin_listen: args.admin_listen,
        pipeline: PipelineConfig {
            batcher: BatcherConfig {
                max_leaves: args.batch_max_leaves,
                max_bytes: max_batch_bytes(args.batch_max_bytes, args.da),
                max_age: Duration::from_millis(args.batch_max_age_ms),
            },
            start_block: args.start_block,
            follower: FollowerConfig {
                confirmations: args.confirmations,
                ..FollowerConfig::local()
            },
            da: args.da,
            ..PipelineConfig::default()
        },
        bond_cache_ttl: Duration::from_secs(30),
    };
    if args.l1_rpc == "embedded" {
        let chain = EmbeddedChain::new(ChainConfig {
            clock: Clock::Wall,
            ..ChainConfig::default()
        });
        let accounts = dev::accounts();
        let sequencer_address = match &args.sequencer_key {
            Some(path) => read_key_file(path)?.address(),
            None => accounts[1].address,
        };
        chain.set_balance(sequencer_address, dev::DEV_BALANCE)?;
        let mut executors = Vec::new();
        for a in &args.bond_executor {
            chain.set_balance(*a, dev::DEV_BALANCE)?;
            executors.push(chain.connect(*a));
        }
        let sequencer = chain.connect(sequencer_address);
        let deployment = deploy_dev(
            chain.connect(accounts[0].address),
            &sequencer,
            &executors,
            &bundle.model,
            args.embedded_challenge_window,
        )
        .await?;
        eprintln!(
            "verinfer sequencer: embedded chain {}; InferenceRollup at {}",
            deployment.chain_id,
            deployment.rollup.address()
        );
        let ticker = spawn_block_ticker(sequencer.clone());
        let result = serve(setup, deployment.rollup.with_l1(sequencer)).await;
        ticker.abort();
        result
    } else {
        let rollup = args
            .rollup
            .ok_or_else(|| anyhow!("--rollup ADDRESS is required with a JSON-RPC --l1-rpc"))?;
        let key_path = args
            .sequencer_key
            .as_ref()
            .ok_or_else(|| anyhow!("--sequencer-key FILE is required with a JSON-RPC --l1-rpc"))?;
        let l1 = RpcL1::connect(&args.l1_rpc, read_key_file(key_path)?, RpcConfig::local())
            .await
            .context("connecting to --l1-rpc")?;
        serve(setup, Rollup::at(l1, rollup)).await
    }
}

/// `--batch-max-bytes`, capped in blob mode so that a batch's data always fits the blobs of one transaction (the
/// compressed data is never larger than the uncompressed layout the batcher counts, plus the zstd frame).
pub(crate) fn max_batch_bytes(requested: u64, da: DaMode) -> u64 {
    match da {
        DaMode::Calldata => requested,
        DaMode::Blobs => requested.min(l1_contracts::blobs::MAX_DATA_BYTES as u64 - 1024),
    }
}

fn spawn_block_ticker<L: L1 + 'static>(l1: L) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            if l1.mine().await.is_err() {
                return;
            }
        }
    })
}

async fn serve<L: L1 + Clone + 'static>(setup: SequencerSetup, rollup: Rollup<L>) -> Result<()> {
    let sender = rollup.l1().sender();
    let running = start_sequencer(setup, rollup).await?;
    eprintln!(
        "verinfer sequencer {sender} listening on http://{} (OpenAI API at /v1, executor API at /executor/v1){}",
        running.addr,
        running
            .admin_addr
            .map(|a| format!("; admin API on http://{a}/admin/keys"))
            .unwrap_or_default()
    );
    shutdown_signal().await;
    eprintln!("verinfer sequencer: shutting down (in-flight responses finish) ...");
    running.shutdown().await;
    eprintln!("verinfer sequencer: stopped");
    Ok(())
}
