//! `verinfer keys`: API keys straight in the sequencer's database (no running sequencer needed). A key is printed
//! once at creation; only its sha256 is stored.

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use verinfer_sequencer::clock;
use verinfer_sequencer::keys;
use verinfer_sequencer::storage::{self, SharedStorage};

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key and print it (`sk-…`); it cannot be shown again.
    Create(CreateArgs),
    /// List keys: id, prefix, name, limits, usage, revocation.
    List(DbArgs),
    /// Revoke a key by id (replicas stop accepting it within their key-cache TTL, 2 s by default).
    Revoke(RevokeArgs),
}

#[derive(Debug, Args)]
pub struct DbArgs {
    /// The sequencer's database: `postgres://user@host:5432/db` or `sqlite:///path/to/file.sqlite`.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: String,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    #[command(flatten)]
    pub db: DbArgs,
    /// A name to recognise the key by (shown by `list`).
    #[arg(long)]
    pub name: String,
    /// Requests per minute allowed (default: unlimited).
    #[arg(long)]
    pub rpm_limit: Option<u64>,
    /// Tokens (prompt + max_tokens) per minute allowed (default: unlimited).
    #[arg(long)]
    pub tpm_limit: Option<u64>,
}

#[derive(Debug, Args)]
pub struct RevokeArgs {
    #[command(flatten)]
    pub db: DbArgs,
    /// Id of the key (from `list`).
    pub id: i64,
}

pub fn run(cmd: KeysCommand) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(keys_command(cmd))
}

async fn open(db: &DbArgs) -> Result<SharedStorage> {
    storage::connect(&db.database_url, clock::system())
        .await
        .context("opening --database-url")
}

async fn keys_command(cmd: KeysCommand) -> Result<()> {
    match cmd {
        KeysCommand::Create(args) => {
            let store = open(&args.db).await?;
            let created = keys::create_key(
                store.as_ref(),
                &args.name,
                args.rpm_limit,
                args.tpm_limit,
                clock::system().now_ms(),
            )
            .await?;
            if args.db.json {
                println!("{}", serde_json::to_string_pretty(&created)?);
            } else {
                println!("{}", created.key);
                eprintln!(
                    "key id {} ({}): store it now, it is not shown again",
                    created.record.id, created.record.name
                );
            }
        }
        KeysCommand::List(db) => {
            let store = open(&db).await?;
            let list = store.list_keys().await?;
            if db.json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                println!(
                    "{:>6}  {:<12}  {:<20}  {:>10}  {:>10}  {:>10}  status",
                    "id", "prefix", "name", "rpm", "tpm", "requests"
                );
                for k in list {
                    let limit = |l: Option<u64>| l.map_or("-".to_string(), |v| v.to_string());
                    println!(
                        "{:>6}  {:<12}  {:<20}  {:>10}  {:>10}  {:>10}  {}",
                        k.id,
                        k.prefix,
                        k.name,
                        limit(k.rpm_limit),
                        limit(k.tpm_limit),
                        k.usage.requests,
                        if k.revoked_ms.is_some() {
                            "revoked"
                        } else {
                            "active"
                        }
                    );
                }
            }
        }
        KeysCommand::Revoke(args) => {
            let store = open(&args.db).await?;
            if !store.revoke_key(args.id).await? {
                bail!("no active key with id {}", args.id);
            }
            if args.db.json {
                println!("{}", serde_json::json!({"id": args.id, "revoked": true}));
            } else {
                println!("revoked key {}", args.id);
            }
        }
    }
    Ok(())
}
