//! End-to-end tests of the built `verinfer` binary: `verinfer devnet` (embedded chain + SQLite, batch data in blobs
//! and as calldata; anvil + Postgres with blobs) from a chat completion to a final receipt whose Merkle proof the
//! contract accepts and whose batch data reads back from the blobs, and a crash test of
//! `verinfer sequencer` (SIGKILL mid-load, restart on the same database: every request that got an id completes and
//! gets a receipt; no batch is posted twice).
//!
//! The anvil tests need `npm ci` in `l1-contracts/` (they are skipped with a message when anvil is not installed) and
//! the Postgres at 127.0.0.1:5432 (user postgres, trust auth).

use alloy::primitives::{Address, B256};
use alloy::sol_types::SolEvent;
use l1_contracts::anvil::{Anvil, AnvilError};
use l1_contracts::bindings::InferenceRollup;
use l1_contracts::rpc::{RpcConfig, RpcL1};
use l1_contracts::{L1, LogFilter, Rollup, dev};
use protocol::{InferenceLeaf, MerkleProof, verify_leaf};
use serde_json::{Value, json};
use sqlx::{Connection, Executor};
use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_verinfer");
const PG_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A child process killed on drop.
struct Proc {
    child: Child,
    lines: mpsc::Receiver<String>,
    name: &'static str,
}

impl Proc {
    fn spawn(name: &'static str, args: &[&str]) -> Self {
        let mut child = Command::new(BIN)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn verinfer");
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        let tx2 = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[{name}] {line}");
                let _ = tx2.send(format!("[stderr] {line}"));
            }
        });
        Self { child, lines, name }
    }

    /// Waits for a stdout line starting (after trimming) with `prefix`; returns the rest, trimmed.
    fn field(&self, prefix: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(rest) = line.trim().strip_prefix(prefix) {
                        return rest.trim().to_string();
                    }
                }
                Err(_) => panic!("{}: no line `{prefix}` within {timeout:?}", self.name),
            }
        }
    }

    /// SIGINT, then waits for a clean exit.
    fn interrupt(mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-INT", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                assert!(status.success(), "{} exited with {status}", self.name);
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not stop on SIGINT",
                self.name
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGKILL.
    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .expect("client")
}

/// A free loopback port (bound then released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// anvil, or `None` (with a message) when it is not installed. `block_time`: mine a block every so many seconds
/// (chain time moves without transactions, as on a real network).
fn anvil_with(block_time: Option<u64>) -> Option<Anvil> {
    let builder = Anvil::builder();
    let builder = match block_time {
        Some(s) => builder.block_time(s),
        None => builder,
    };
    match builder.spawn() {
        Ok(a) => Some(a),
        Err(AnvilError::NotInstalled { path }) => {
            eprintln!(
                "SKIPPED: anvil is not installed at {} (run `npm ci` in l1-contracts/)",
                path.display()
            );
            None
        }
        Err(e) => panic!("anvil: {e}"),
    }
}

fn anvil() -> Option<Anvil> {
    anvil_with(None)
}

/// A fresh Postgres database, dropped by [`drop_db`].
async fn create_db() -> (String, String) {
    let name = format!(
        "verinfer_cli_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("time")
            .subsec_nanos()
    );
    let mut conn = sqlx::PgConnection::connect(PG_ADMIN_URL)
        .await
        .expect("Postgres at 127.0.0.1:5432 (user postgres, trust auth) is required");
    conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .await
        .expect("create database");
    (format!("postgres://postgres@127.0.0.1:5432/{name}"), name)
}

async fn drop_db(name: &str) {
    if let Ok(mut conn) = sqlx::PgConnection::connect(PG_ADMIN_URL).await {
        let _ = conn
            .execute(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            )))
            .await;
    }
}

async fn chat(base: &str, key: &str, content: &str) -> Value {
    let r = http()
        .post(format!("{base}/chat/completions"))
        .bearer_auth(key)
        .json(&json!({
            "model": "tiny",
            "messages": [{"role": "user", "content": content}],
            "max_tokens": 8,
            "temperature": 0,
        }))
        .send()
        .await
        .expect("API reachable");
    assert_eq!(r.status(), reqwest::StatusCode::OK);
    r.json().await.expect("JSON")
}

/// Polls the receipt at `path` until `done`; returns every status seen and the last receipt.
async fn receipt_until(
    root: &str,
    key: &str,
    path: &str,
    done: impl Fn(&Value) -> bool,
    timeout: Duration,
) -> (Vec<String>, Value) {
    let deadline = Instant::now() + timeout;
    let mut seen: Vec<String> = Vec::new();
    loop {
        let r = http()
            .get(format!("{root}{path}"))
            .bearer_auth(key)
            .send()
            .await;
        if let Ok(r) = r
            && r.status().is_success()
        {
            let receipt: Value = r.json().await.expect("receipt JSON");
            let status = receipt["status"].as_str().unwrap_or("?").to_string();
            if seen.last() != Some(&status) {
                seen.push(status);
            }
            if done(&receipt) {
                return (seen, receipt);
            }
        }
        assert!(
            Instant::now() < deadline,
            "receipt {path} not done within {timeout:?}; statuses seen: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Batch id, leaf hash and proof of a receipt choice, checked off chain against its batch root.
fn posted_leaf(choice: &Value) -> (u64, B256, MerkleProof) {
    let batch = choice["batch"].as_u64().expect("batch id");
    let leaf: InferenceLeaf = serde_json::from_value(choice["leaf"].clone()).expect("leaf");
    let hash = leaf.hash();
    assert_eq!(choice["leaf_hash"], json!(hash));
    let proof = MerkleProof {
        index: choice["leaf_index"].as_u64().expect("leaf index"),
        siblings: serde_json::from_value(choice["merkle_proof"].clone()).expect("proof"),
    };
    let root: B256 = serde_json::from_value(choice["batch_root"].clone()).expect("batch root");
    let count = choice["leaf_count"].as_u64().expect("leaf count");
    assert!(verify_leaf(root, count, hash, &proof), "proof off chain");
    (batch, hash, proof)
}

/// Starts a devnet; returns it with its API root (`http://…`, no `/v1`), key and rollup address.
fn start_devnet(extra: &[&str]) -> (Proc, String, String, Address) {
    let mut args = vec![
        "devnet",
        "--model",
        "tiny",
        "--port",
        "0",
        "--challenge-window",
        "2",
        "--batch-age-ms",
        "200",
    ];
    args.extend_from_slice(extra);
    let devnet = Proc::spawn("devnet", &args);
    let base = devnet.field("OpenAI base URL", Duration::from_secs(300));
    let key = devnet.field("API key", Duration::from_secs(5));
    let l1 = devnet.field("L1", Duration::from_secs(5));
    let rollup: Address = l1
        .split("InferenceRollup at ")
        .nth(1)
        .and_then(|s| s.split(';').next())
        .expect("rollup address in the banner")
        .parse()
        .expect("rollup address");
    let root = base
        .strip_suffix("/v1")
        .expect("base ends in /v1")
        .to_string();
    assert!(key.starts_with("sk-"), "API key printed: {key}");
    (devnet, root, key, rollup)
}

/// One chat completion through a devnet to a final receipt; returns the final receipt's first choice.
async fn completion_to_final(root: &str, key: &str) -> Value {
    let response = chat(&format!("{root}/v1"), key, "What is the capital of France?").await;
    assert_eq!(response["object"], "chat.completion");
    let url = response["verinfer"]["receipt_url"]
        .as_str()
        .expect("receipt url")
        .to_string();
    let (seen, receipt) = receipt_until(
        root,
        key,
        &url,
        |r| r["status"] == "final",
        Duration::from_secs(120),
    )
    .await;
    // The response is written once executed, so `pending` is seen only when the batch is slow; the rest in order.
    let order = ["pending", "executed", "posted", "final"];
    let positions: Vec<usize> = seen
        .iter()
        .map(|s| order.iter().position(|o| o == s).expect("known status"))
        .collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "statuses in order: {seen:?}"
    );
    receipt["choices"][0].clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn devnet_embedded_sqlite_request_to_final() {
    let (devnet, root, key, _) = start_devnet(&[]);
    let choice = completion_to_final(&root, &key).await;
    posted_leaf(&choice);
    // Unknown key: 401.
    let r = http()
        .get(format!("{root}/v1/models"))
        .bearer_auth("sk-wrong")
        .send()
        .await
        .expect("reachable");
    assert_eq!(r.status(), reqwest::StatusCode::UNAUTHORIZED);
    devnet.interrupt();
}

#[tokio::test(flavor = "multi_thread")]
async fn devnet_calldata_mode_request_to_final() {
    let (devnet, root, key, _) = start_devnet(&["--da", "calldata"]);
    let choice = completion_to_final(&root, &key).await;
    posted_leaf(&choice);
    devnet.interrupt();
}

#[tokio::test(flavor = "multi_thread")]
async fn devnet_on_anvil_and_postgres_proof_accepted_by_contract() {
    let Some(anvil) = anvil() else { return };
    let (db_url, db_name) = create_db().await;
    let (devnet, root, key, rollup_address) =
        start_devnet(&["--l1-rpc", anvil.endpoint(), "--database-url", &db_url]);
    let choice = completion_to_final(&root, &key).await;
    let (batch, hash, proof) = posted_leaf(&choice);
    let l1 = RpcL1::connect(
        anvil.endpoint(),
        dev::accounts()[9].signer.clone(),
        RpcConfig::local(),
    )
    .await
    .expect("anvil");
    let rollup = Rollup::at(l1, rollup_address);
    assert!(rollup.verify_leaf(batch, hash, &proof).await.expect("view"));
    assert!(
        rollup
            .is_finalized(batch, hash, &proof)
            .await
            .expect("view"),
        "the contract accepts the receipt's proof as final"
    );
    // The batch went in blobs (the default); its data reads back from anvil's blobs, holds the leaf, and the
    // posted signature root is the root of the signatures in it.
    let (event, log) = rollup.batch_posted(batch).await.expect("BatchPosted");
    let tx = rollup
        .l1()
        .transaction(log.tx_hash)
        .await
        .expect("transaction")
        .expect("mined");
    assert!(!tx.blob_versioned_hashes.is_empty(), "a blob transaction");
    let data = rollup.batch_data(batch).await.expect("blobs read back");
    let decoded = protocol::BatchData::decode(&data).expect("batch data");
    assert!(decoded.leaf_hashes().contains(&hash));
    assert_eq!(
        protocol::batch::batch_signature_root(&decoded),
        event.sigRoot
    );
    devnet.interrupt();
    drop_db(&db_name).await;
}

fn write_key(dir: &Path, name: &str, key: &B256) -> String {
    let path = dir.join(name);
    std::fs::write(&path, format!("{key}\n")).expect("write key");
    path.display().to_string()
}

struct Sequencer<'a> {
    db_url: &'a str,
    rpc: &'a str,
    rollup: String,
    start_block: String,
    key_file: String,
    port: u16,
}

impl Sequencer<'_> {
    fn start(&self) -> Proc {
        let listen = format!("127.0.0.1:{}", self.port);
        let p = Proc::spawn(
            "sequencer",
            &[
                "sequencer",
                "--database-url",
                self.db_url,
                "--l1-rpc",
                self.rpc,
                "--rollup",
                &self.rollup,
                "--start-block",
                &self.start_block,
                "--sequencer-key",
                &self.key_file,
                "--model",
                "tiny",
                "--listen",
                &listen,
                "--executor-token",
                "crash-executor=executor-token",
                "--batch-max-age-ms",
                "300",
                "--batch-max-leaves",
                "8",
                "--confirmations",
                "1",
            ],
        );
        p.field("[stderr] verinfer sequencer 0x", Duration::from_secs(120));
        p
    }
}

/// Streams a chat completion until its first chunk; returns the response id (the request is durable from then on)
/// and keeps reading in the background.
async fn stream_id(base: &str, key: &str, n: usize) -> Option<String> {
    use futures_util::StreamExt;
    let r = http()
        .post(format!("{base}/v1/chat/completions"))
        .bearer_auth(key)
        .json(&json!({
            "model": "tiny",
            "messages": [{"role": "user", "content": format!("request number {n}")}],
            "max_tokens": 16,
            "stream": true,
        }))
        .send()
        .await
        .ok()?;
    if !r.status().is_success() {
        return None;
    }
    let mut body = r.bytes_stream();
    let mut buf = String::new();
    while let Some(Ok(chunk)) = body.next().await {
        buf.push_str(&String::from_utf8_lossy(&chunk));
        for line in buf.lines() {
            if let Some(data) = line.strip_prefix("data: ")
                && let Ok(v) = serde_json::from_str::<Value>(data)
                && let Some(id) = v["id"].as_str()
            {
                let id = id.to_string();
                tokio::spawn(async move { while body.next().await.is_some() {} });
                return Some(id);
            }
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread")]
async fn sequencer_crash_mid_load_loses_nothing_and_posts_once() {
    let Some(anvil) = anvil_with(Some(1)) else {
        return;
    };
    let (db_url, db_name) = create_db().await;
    let accounts = dev::accounts();
    let connect = |i: usize| {
        let signer = accounts[i].signer.clone();
        let url = anvil.endpoint().to_string();
        async move {
            RpcL1::connect(&url, signer, RpcConfig::local())
                .await
                .expect("anvil")
        }
    };
    let (owner, seq, exec) = (connect(0).await, connect(1).await, connect(2).await);
    let model = verinfer::model_ref::ModelRef::Tiny
        .open()
        .expect("tiny model");
    let deployment = verinfer::node::deploy_dev(owner, &seq, &[exec], &model.model, 2)
        .await
        .expect("deploy");
    let dir = tempfile::tempdir().expect("temp dir");
    let seq_key = write_key(dir.path(), "sequencer.key", &dev::DEV_KEYS[1]);
    let exec_key = write_key(dir.path(), "executor.key", &dev::DEV_KEYS[2]);
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let config = Sequencer {
        db_url: &db_url,
        rpc: anvil.endpoint(),
        rollup: deployment.rollup.address().to_string(),
        start_block: deployment.start_block.to_string(),
        key_file: seq_key,
        port,
    };
    let sequencer = config.start();
    let keys = Proc::spawn(
        "keys",
        &[
            "keys",
            "create",
            "--database-url",
            &db_url,
            "--name",
            "crash",
        ],
    );
    let key = keys.field("sk-", Duration::from_secs(60));
    let key = format!("sk-{key}");
    let _executor = Proc::spawn(
        "executor",
        &[
            "executor",
            "--sequencer",
            &base,
            "--key",
            &exec_key,
            "--token",
            "executor-token",
            "--model",
            "tiny",
            "--concurrency",
            "2",
            "--lease-secs",
            "5",
        ],
    );

    // Load: 24 streamed requests; the sequencer is killed while they run.
    let load: Vec<_> = (0..24)
        .map(|n| {
            let (base, key) = (base.clone(), key.clone());
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(50 * n as u64)).await;
                stream_id(&base, &key, n).await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(700)).await;
    sequencer.kill();
    let mut ids = Vec::new();
    for l in load {
        if let Some(id) = l.await.expect("load task") {
            ids.push(id);
        }
    }
    assert!(!ids.is_empty(), "some requests got an id before the crash");
    let sequencer = config.start();
    // After the restart: more requests, all served.
    for n in 100..104 {
        ids.push(
            stream_id(&base, &key, n)
                .await
                .expect("served after restart"),
        );
    }
    eprintln!("{} requests got an id", ids.len());
    for id in &ids {
        let (_, receipt) = receipt_until(
            &base,
            &key,
            &format!("/v1/receipts/{id}"),
            |r| r["status"] == "final",
            Duration::from_secs(180),
        )
        .await;
        posted_leaf(&receipt["choices"][0]);
    }

    // No batch posted twice: every BatchPosted event has its own id and root, ids are 1..=n.
    let filter = LogFilter::new(deployment.rollup.address(), deployment.start_block)
        .event(InferenceRollup::BatchPosted::SIGNATURE_HASH);
    let logs = deployment.rollup.l1().logs(&filter).await.expect("logs");
    let mut roots = HashSet::new();
    let mut by_id = BTreeMap::new();
    for log in &logs {
        let e = InferenceRollup::BatchPosted::decode_log(&log.inner)
            .expect("decode")
            .data;
        assert!(roots.insert(e.batchRoot), "batch root posted twice");
        assert!(
            by_id.insert(e.batchId, e.batchRoot).is_none(),
            "batch id twice"
        );
    }
    let ids_on_chain: Vec<u64> = by_id.keys().map(|k| k.to::<u64>()).collect();
    assert_eq!(
        ids_on_chain,
        (1..=ids_on_chain.len() as u64).collect::<Vec<_>>()
    );
    assert_eq!(
        deployment.rollup.batch_count().await.expect("count"),
        logs.len() as u64
    );
    sequencer.interrupt();
    drop_db(&db_name).await;
}
