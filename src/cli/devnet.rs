//! `verinfer devnet`: the whole system in one process, no set-up. An L1 (the embedded revm chain, or `--l1-rpc`),
//! the rollup deployed with the model registered and the sequencer and executors bonded, a database (an SQLite
//! file, or `--database-url`), the sequencer (OpenAI API, receipts, executor API, settlement pipeline) and N executors
//! talking to it over loopback HTTP. Prints the endpoint, an API key and examples, then serves until Ctrl-C.

use crate::model_ref::ModelRef;
use crate::node::{
    DevDeployment, DeviceKind, Engine, EngineKind, SequencerSetup, deploy_dev, flush_batches,
    served_model, shutdown_signal, start_sequencer,
};
use anyhow::{Context, Result, bail};
use clap::Args;
use l1_contracts::rpc::{FollowerConfig, RpcConfig, RpcL1};
use l1_contracts::{ChainConfig, Clock, EmbeddedChain, L1, Rollup, dev};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use verinfer_sequencer::clock;
use verinfer_sequencer::executor_api::AllowList;
use verinfer_sequencer::settlement::{BatcherConfig, DaMode, PipelineConfig};
use verinfer_sequencer::storage::{self, SharedStorage};
use verinfer_sequencer::worker::{Worker, WorkerConfig};
use verinfer_sequencer::{SequencerConfig, keys};
use vir::bundle::ModelBundle;

/// Run a complete local verinfer network in one process.
///
/// Starts an L1 chain with the InferenceRollup contract deployed, the model registered and the sequencer and
/// executors bonded; a database; the sequencer (OpenAI-compatible API at /v1, receipts, the executor API and the
/// batch poster); and executors that lease jobs over loopback HTTP and run the deterministic integer engine. Every
/// response gets a receipt that goes pending → executed → posted → final within seconds (the devnet's challenge
/// window is short). Prints the endpoint, a fresh API key and copy-paste examples, then serves until Ctrl-C
/// (in-flight jobs finish and pending batches are posted before it exits).
///
/// Development keys (anvil's public test accounts) are used throughout: never point --l1-rpc at a real network.
#[derive(Debug, Args)]
pub struct DevnetArgs {
    /// `smollm2` (SmolLM2-135M-Instruct, fetched and checksum-verified on first use), `tiny` (a synthetic model:
    /// instant start, meaningless text; for tests) or a path to a GGUF file.
    #[arg(long, default_value = "smollm2")]
    pub model: ModelRef,
    /// Port of the API (0 picks a free one; the one in use is printed).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Address the API listens on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: IpAddr,
    /// Number of in-process executors (1 to 8), each bonded with its own development key.
    #[arg(long, default_value_t = 1)]
    pub executors: u32,
    /// Jobs each executor runs at once.
    #[arg(long, default_value_t = 2)]
    pub executor_concurrency: u32,
    /// Executor engine: the burn engine on the CPU, or the (slow) reference interpreter.
    #[arg(long, value_enum, default_value_t = EngineKind::Burn)]
    pub engine: EngineKind,
    /// Directory of the SQLite database (default: a temporary directory, deleted on exit).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Use this Postgres database instead of SQLite (`postgres://user@host/db`; it must hold no batches from
    /// another chain).
    #[arg(long)]
    pub database_url: Option<String>,
    /// JSON-RPC URL of a development chain (anvil, a geth dev node) to deploy to instead of the embedded chain;
    /// anvil's first development accounts must be funded there.
    #[arg(long)]
    pub l1_rpc: Option<String>,
    /// Challenge window of the devnet rollup, seconds (results are final this long after their batch is posted).
    #[arg(long, default_value_t = 5)]
    pub challenge_window: u64,
    /// A batch is posted once its oldest result is this old, milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub batch_age_ms: u64,
    /// Where batch data goes on L1: `blobs` (EIP-4844 blob transactions, constant `postBatchBlobs` gas) or
    /// `calldata` (`postBatch`, gas grows with the data).
    #[arg(long, default_value = "blobs")]
    pub da: DaMode,
}

/// Development accounts: 0 deploys and owns the rollup, 1 sequences, 2.. execute.
const OWNER: usize = 0;
const SEQUENCER: usize = 1;
const FIRST_EXECUTOR: usize = 2;

pub fn run(args: DevnetArgs) -> Result<()> {
    if !(1..=8).contains(&args.executors) {
        bail!("--executors must be between 1 and 8 (one development key each)");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(devnet(args))
}

fn model_id(model: &ModelRef) -> String {
    match model {
        ModelRef::SmolLm2 => "smollm2".into(),
        ModelRef::Tiny => "tiny".into(),
        ModelRef::Path(p) => p
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "model".into()),
    }
}

async fn devnet(args: DevnetArgs) -> Result<()> {
    eprintln!(
        "verinfer devnet: loading model {} ...",
        model_id(&args.model)
    );
    let model_ref = args.model.clone();
    let bundle = Arc::new(
        tokio::task::spawn_blocking(move || model_ref.open())
            .await
            .context("model loading task")??,
    );
    let accounts = dev::accounts();
    let executor_accounts: Vec<_> = accounts
        .iter()
        .skip(FIRST_EXECUTOR)
        .take(args.executors as usize)
        .cloned()
        .collect();
    match args.l1_rpc.clone() {
        None => {
            let chain = EmbeddedChain::new(ChainConfig {
                clock: Clock::Wall,
                ..ChainConfig::default()
            });
            let owner = chain.connect(accounts[OWNER].address);
            let sequencer = chain.connect(accounts[SEQUENCER].address);
            let executors: Vec<_> = executor_accounts
                .iter()
                .map(|a| chain.connect(a.address))
                .collect();
            let describe = format!("embedded revm chain (chain id {})", chain.chain_id());
            run_on(args, bundle, owner, sequencer, executors, describe).await
        }
        Some(url) => {
            let owner = RpcL1::connect(&url, accounts[OWNER].signer.clone(), RpcConfig::local())
                .await
                .context("connecting to --l1-rpc")?;
            let sequencer = owner.with_signer(accounts[SEQUENCER].signer.clone());
            let executors: Vec<_> = executor_accounts
                .iter()
                .map(|a| owner.with_signer(a.signer.clone()))
                .collect();
            let describe = format!("JSON-RPC chain (chain id {})", owner.chain_id().await?);
            run_on(args, bundle, owner, sequencer, executors, describe).await
        }
    }
}

async fn open_storage(
    args: &DevnetArgs,
) -> Result<(SharedStorage, String, Option<tempfile::TempDir>)> {
    if let Some(url) = &args.database_url {
        let storage = storage::connect(url, clock::system())
            .await
            .context("opening --database-url")?;
        return Ok((storage, redact_url(url), None));
    }
    let (dir, temp) = match &args.data_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating --data-dir {}", dir.display()))?;
            (dir.clone(), None)
        }
        None => {
            let temp = tempfile::Builder::new()
                .prefix("verinfer-devnet-")
                .tempdir()
                .context("creating a temporary data directory")?;
            (temp.path().to_path_buf(), Some(temp))
        }
    };
    let path = dir.join("devnet.sqlite");
    // A new chain needs a new database: batches recorded for an old chain would never post.
    for suffix in ["", "-wal", "-shm"] {
        let p = PathBuf::from(format!("{}{suffix}", path.display()));
        if p.exists() {
            std::fs::remove_file(&p).with_context(|| format!("removing {}", p.display()))?;
        }
    }
    let url = format!("sqlite://{}", path.display());
    let storage = storage::connect(&url, clock::system())
        .await
        .with_context(|| format!("opening {url}"))?;
    Ok((storage, url, temp))
}

/// `postgres://user:secret@host/db` → `postgres://user:***@host/db`.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &url[scheme + 3..at];
            match creds.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme + 3],
                    &creds[..colon],
                    &url[at..]
                ),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

async fn run_on<L: L1 + Clone + 'static>(
    args: DevnetArgs,
    bundle: Arc<ModelBundle>,
    owner: L,
    sequencer: L,
    executors: Vec<L>,
    chain_description: String,
) -> Result<()> {
    let (storage, db_description, _temp) = open_storage(&args).await?;
    if storage.batch_head().await?.is_some() {
        bail!(
            "the database already holds batches (from another devnet chain): use an empty database for a new devnet"
        );
    }
    eprintln!("verinfer devnet: deploying the rollup ...");
    let DevDeployment {
        rollup,
        start_block,
        chain_id,
    } = deploy_dev(
        owner,
        &sequencer,
        &executors,
        &bundle.model,
        args.challenge_window,
    )
    .await?;
    let as_sequencer: Rollup<L> = rollup.with_l1(sequencer.clone());

    let id = model_id(&args.model);
    let mut tokens: Vec<(String, String)> = Vec::new();
    for i in 0..executors.len() {
        let token = keys::generate_key().map_err(|e| anyhow::anyhow!("no OS randomness: {e}"))?;
        tokens.push((format!("devnet-executor-{i}"), token));
    }
    let pipeline = PipelineConfig {
        batcher: BatcherConfig {
            max_age: Duration::from_millis(args.batch_age_ms),
            max_bytes: super::sequencer::max_batch_bytes(
                BatcherConfig::default().max_bytes,
                args.da,
            ),
            ..BatcherConfig::default()
        },
        poll_interval: Duration::from_millis(250),
        max_backoff: Duration::from_secs(5),
        start_block,
        follower: FollowerConfig::local(),
        bond_refresh: Duration::from_secs(30),
        da: args.da,
        ..PipelineConfig::default()
    };
    let setup = SequencerSetup {
        config: SequencerConfig {
            poll_interval: Duration::from_millis(50),
            ..SequencerConfig::default()
        },
        storage: storage.clone(),
        models: vec![served_model(&id, &bundle)],
        executor_auth: Arc::new(AllowList::new(tokens.clone())),
        clock: clock::system(),
        listen: SocketAddr::new(args.host, args.port),
        admin_listen: None,
        pipeline: pipeline.clone(),
        bond_cache_ttl: Duration::from_secs(30),
    };
    let mut running = start_sequencer(setup, as_sequencer.clone()).await?;
    let base = format!("http://{}", running.addr);

    // The chain's clock moves with the wall clock; a block a second keeps "now" on chain current for finality.
    let ticker = tokio::spawn({
        let l1 = sequencer.clone();
        async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                if let Err(e) = l1.mine().await {
                    if matches!(e, l1_contracts::L1Error::Unsupported(_)) {
                        return; // a chain that mines on its own
                    }
                    eprintln!("verinfer devnet: mining a block: {e}");
                }
            }
        }
    });

    let (stop_workers, workers_stop) = watch::channel(false);
    let mut workers = Vec::new();
    let accounts = dev::accounts();
    let domain = protocol::leaf_domain(chain_id, rollup.address());
    let mut executor_addresses = Vec::new();
    for (i, (_, token)) in tokens.iter().enumerate() {
        let account = &accounts[FIRST_EXECUTOR + i];
        executor_addresses.push(account.address);
        let engine = {
            let bundle = bundle.clone();
            let kind = args.engine;
            tokio::task::spawn_blocking(move || Engine::load(bundle, kind, DeviceKind::Cpu))
                .await
                .context("engine loading task")??
        };
        let config = WorkerConfig {
            token: Some(token.clone()),
            concurrency: args.executor_concurrency.max(1),
            domain: Some(domain.clone()),
            ..WorkerConfig::new(base.clone())
        };
        let worker = Worker::new(config, Arc::new(engine), account.signer.clone())?;
        let mut stop = workers_stop.clone();
        workers.push(tokio::spawn(worker.run(async move {
            let _ = stop.wait_for(|s| *s).await;
        })));
    }

    let key = keys::create_key(
        storage.as_ref(),
        "devnet",
        None,
        None,
        clock::system().now_ms(),
    )
    .await
    .context("creating the devnet API key")?;
    print_banner(&Banner {
        base: &base,
        key: &key.key,
        model: &id,
        model_root: bundle.model.root,
        chain: &chain_description,
        rollup: rollup.address(),
        window: args.challenge_window,
        database: &db_description,
        engine: args.engine,
        executors: &executor_addresses,
    });

    shutdown_signal().await;
    eprintln!(
        "verinfer devnet: shutting down (finishing running jobs, then posting pending batches) ..."
    );
    let _ = stop_workers.send(true);
    for w in workers {
        match tokio::time::timeout(Duration::from_secs(60), w).await {
            Ok(Ok(Err(e))) => eprintln!("verinfer devnet: executor: {e}"),
            Err(_) => eprintln!("verinfer devnet: an executor did not finish within 60 s"),
            _ => {}
        }
    }
    running.stop_pipeline();
    let state = running.state.clone();
    running.shutdown().await;
    match flush_batches(storage, clock::system(), &state, as_sequencer, pipeline).await {
        Ok(0) => {}
        Ok(n) => eprintln!("verinfer devnet: posted {n} pending batch(es)"),
        Err(e) => eprintln!("verinfer devnet: posting pending batches: {e:#}"),
    }
    ticker.abort();
    eprintln!("verinfer devnet: stopped");
    Ok(())
}

struct Banner<'a> {
    base: &'a str,
    key: &'a str,
    model: &'a str,
    model_root: protocol::B256,
    chain: &'a str,
    rollup: protocol::Address,
    window: u64,
    database: &'a str,
    engine: EngineKind,
    executors: &'a [protocol::Address],
}

fn print_banner(b: &Banner<'_>) {
    let engine = match b.engine {
        EngineKind::Burn => "burn engine on the CPU",
        EngineKind::Reference => "reference interpreter",
    };
    let executors = b
        .executors
        .iter()
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let (base, key, model) = (b.base, b.key, b.model);
    println!(
        r#"
verinfer devnet is running.

  OpenAI base URL  {base}/v1
  API key          {key}
  model            {model}  (model root {root})
  L1               {chain}; InferenceRollup at {rollup}; challenge window {window} s
  database         {database}
  executors        {n} x {engine}: {executors}

Chat completion with curl:

  curl -s {base}/v1/chat/completions \
    -H "Authorization: Bearer {key}" -H "Content-Type: application/json" \
    -d '{{"model": "{model}", "messages": [{{"role": "user", "content": "What is the capital of France?"}}], "max_tokens": 32, "temperature": 0}}'

With the openai Python client (pip install openai):

  from openai import OpenAI
  client = OpenAI(base_url="{base}/v1", api_key="{key}")
  r = client.chat.completions.create(model="{model}", max_tokens=32, temperature=0,
      messages=[{{"role": "user", "content": "What is the capital of France?"}}])
  print(r.choices[0].message.content)
  print(r.model_extra["verinfer"]["receipt_url"])

Every response names its receipt (`verinfer.receipt_url`): curl -s -H "Authorization: Bearer {key}" {base}<receipt_url>
shows the leaf, its batch, the Merkle proof and the status: pending -> executed -> posted -> final.
Metrics: {base}/metrics. Ctrl-C stops (running jobs finish, pending batches are posted)."#,
        root = b.model_root,
        chain = b.chain,
        rollup = b.rollup,
        window = b.window,
        database = b.database,
        n = b.executors.len(),
    );
    use std::io::Write;
    let _ = std::io::stdout().flush();
}
