//! The storage conformance suite: one generic body run against Postgres and SQLite.

use crate::common::{Backend, TestDb};
use protocol::{Address, B256, FinishReason, SamplingParams, token_ids_root};
use std::sync::Arc;
use std::time::Duration;
use verinfer_sequencer::clock::ManualClock;
use verinfer_sequencer::ids::{RequestId, RequestKind};
use verinfer_sequencer::keys::hash_key;
use verinfer_sequencer::storage::{
    JobOutcome, JobState, LeaseRef, NewApiKey, NewRequest, SharedStorage, StorageError,
};

const LEASE: Duration = Duration::from_secs(10);

fn params(choice_index: u32, max_tokens: u32) -> SamplingParams {
    SamplingParams {
        max_tokens,
        temperature_milli: 700,
        top_p_milli: 900,
        seed: u64::MAX - 5,
        choice_index,
    }
}

fn new_request(key_id: Option<i64>, n: u32, created_ms: i64) -> NewRequest {
    let prompt = vec![1, 2, 3, 70_000];
    NewRequest {
        id: RequestId::random().expect("random"),
        kind: RequestKind::Chat,
        model: "tiny".into(),
        model_root: B256::repeat_byte(7),
        key_id,
        created_ms,
        prompt_root: token_ids_root(&prompt),
        prompt_tokens: prompt,
        options: r#"{"stop":[]}"#.into(),
        choices: (0..n).map(|i| params(i, 4)).collect(),
        logprobs: None,
    }
}

fn outcome(tokens: Vec<u32>) -> JobOutcome {
    JobOutcome {
        output_hash: token_ids_root(&tokens),
        tokens,
        finish_reason: FinishReason::Length,
        trace_root: B256::repeat_byte(3),
        op_count: 1234,
        executor_address: Address::repeat_byte(9),
        signature: None,
        leaf_hash: B256::repeat_byte(4),
        logprobs: None,
    }
}

async fn conformance(storage: SharedStorage, clock: Arc<ManualClock>) {
    // Keys: only hashes; lookup, list, revoke.
    let key = storage
        .create_key(&NewApiKey {
            hash: hash_key("sk-test"),
            prefix: "sk-test".into(),
            name: "conformance".into(),
            created_ms: clock_now(&clock),
            rpm_limit: Some(60),
            tpm_limit: None,
        })
        .await
        .expect("create key");
    assert_eq!(key.rpm_limit, Some(60));
    let found = storage
        .key_by_hash(&hash_key("sk-test"))
        .await
        .expect("lookup")
        .expect("found");
    assert_eq!(found.id, key.id);
    assert!(
        storage
            .key_by_hash(&hash_key("sk-other"))
            .await
            .expect("lookup")
            .is_none()
    );

    // Requests: stored with one queued job per choice, counted against the key.
    let req = new_request(Some(key.id), 2, clock_now(&clock));
    storage.insert_request(&req).await.expect("insert");
    assert!(matches!(
        storage.insert_request(&req).await,
        Err(StorageError::DuplicateRequest(_))
    ));
    let stored = storage
        .request(req.id)
        .await
        .expect("read")
        .expect("stored");
    assert_eq!(
        (
            stored.kind,
            stored.n,
            &stored.prompt_tokens,
            stored.prompt_root
        ),
        (RequestKind::Chat, 2, &req.prompt_tokens, req.prompt_root)
    );
    assert!(
        storage
            .request(RequestId::random().expect("random"))
            .await
            .expect("read")
            .is_none()
    );
    let progress = storage.progress(req.id).await.expect("progress");
    assert_eq!(progress.len(), 2);
    assert!(
        progress
            .iter()
            .all(|p| p.state == JobState::Queued && p.tokens.is_empty())
    );
    let depth = storage.queue_depth().await.expect("depth");
    assert_eq!((depth.queued, depth.leased), (2, 0));
    let jobs = storage.jobs(req.id).await.expect("jobs");
    assert_eq!(jobs[1].params, params(1, 4), "u64 seed round-trips");

    // Leasing: oldest first, one lease per job.
    let a = storage.lease("exec-a", 1, LEASE).await.expect("lease");
    assert_eq!(a.len(), 1);
    let job0 = &a[0];
    assert_eq!(
        (
            job0.lease.attempt,
            job0.params.choice_index,
            job0.request_id
        ),
        (1, 0, req.id)
    );
    assert_eq!(job0.prompt_tokens, req.prompt_tokens);
    let b = storage.lease("exec-a", 5, LEASE).await.expect("lease");
    assert_eq!(b.len(), 1);
    let job1 = &b[0];
    assert_eq!(job1.params.choice_index, 1);
    assert!(
        storage
            .lease("exec-b", 5, LEASE)
            .await
            .expect("lease")
            .is_empty()
    );
    let depth = storage.queue_depth().await.expect("depth");
    assert_eq!((depth.queued, depth.leased), (0, 2));

    // Streaming tokens: idempotent overlap, mismatch, gap, fencing, max_tokens.
    let l0 = job0.lease;
    let stored = storage
        .append_tokens("exec-a", l0, 0, &[5, 6], None)
        .await
        .expect("append");
    assert_eq!((stored.stored, stored.request_id), (2, req.id));
    let stored = storage
        .append_tokens("exec-a", l0, 1, &[6, 7], None)
        .await
        .expect("append");
    assert_eq!(stored.stored, 3);
    assert_eq!(
        storage
            .append_tokens("exec-a", l0, 0, &[5], None)
            .await
            .expect("same")
            .stored,
        3
    );
    assert!(matches!(
        storage.append_tokens("exec-a", l0, 0, &[9], None).await,
        Err(StorageError::TokenMismatch { index: 0, .. })
    ));
    assert!(matches!(
        storage.append_tokens("exec-a", l0, 5, &[1], None).await,
        Err(StorageError::TokenGap { .. })
    ));
    assert!(matches!(
        storage.append_tokens("exec-b", l0, 3, &[1], None).await,
        Err(StorageError::LeaseLost { .. })
    ));
    let stale = LeaseRef { attempt: 7, ..l0 };
    assert!(matches!(
        storage.append_tokens("exec-a", stale, 3, &[1], None).await,
        Err(StorageError::LeaseLost { .. })
    ));
    assert!(matches!(
        storage.append_tokens("exec-a", l0, 3, &[1, 2], None).await,
        Err(StorageError::TooManyTokens { .. })
    ));
    assert!(matches!(
        storage
            .append_tokens(
                "exec-a",
                LeaseRef {
                    job_id: 999_999,
                    attempt: 1
                },
                0,
                &[1],
                None
            )
            .await,
        Err(StorageError::UnknownJob(999_999))
    ));
    let progress = storage.progress(req.id).await.expect("progress");
    assert_eq!(progress[0].tokens, vec![5, 6, 7]);
    assert_eq!(progress[0].state, JobState::Leased);

    // Heartbeats renew only the caller's live leases.
    let renewed = storage
        .heartbeat("exec-a", &[l0], LEASE)
        .await
        .expect("heartbeat");
    assert_eq!(renewed, vec![l0]);
    assert!(
        storage
            .heartbeat("exec-b", &[l0], LEASE)
            .await
            .expect("heartbeat")
            .is_empty()
    );

    // Expired leases are leased again (job 1 was not renewed); the old holder is fenced off.
    clock.advance(6_000);
    storage
        .heartbeat("exec-a", &[l0], LEASE)
        .await
        .expect("heartbeat");
    clock.advance(5_000);
    storage
        .append_tokens("exec-a", job1.lease, 0, &[8], None)
        .await
        .expect("an expired but not yet taken-over lease may still write");
    let again = storage.lease("exec-b", 5, LEASE).await.expect("lease");
    assert_eq!(again.len(), 1, "only the expired job is leased again");
    let job1b = &again[0];
    assert_eq!(
        (job1b.lease.job_id, job1b.lease.attempt),
        (job1.lease.job_id, 2)
    );
    assert_eq!(job1b.tokens, vec![8], "streamed tokens survive a re-lease");
    assert!(matches!(
        storage
            .append_tokens("exec-a", job1.lease, 1, &[9], None)
            .await,
        Err(StorageError::LeaseLost { .. })
    ));

    // Completion: must extend the streamed tokens; idempotent; counted in usage.
    assert!(matches!(
        storage
            .complete("exec-a", l0, &outcome(vec![5, 9, 7, 1]))
            .await,
        Err(StorageError::TokenMismatch { index: 1, .. })
    ));
    let done = outcome(vec![5, 6, 7, 1]);
    storage
        .complete("exec-a", l0, &done)
        .await
        .expect("complete");
    storage
        .complete("exec-a", l0, &done)
        .await
        .expect("repeat is a no-op");
    assert!(matches!(
        storage.append_tokens("exec-a", l0, 4, &[1], None).await,
        Err(StorageError::LeaseLost { .. })
    ));
    let job = storage.job(l0.job_id).await.expect("read").expect("exists");
    assert_eq!(job.state, JobState::Executed);
    assert_eq!(job.tokens, done.tokens);
    assert_eq!(job.finish_reason, Some(FinishReason::Length));
    assert_eq!(
        (
            job.trace_root,
            job.op_count,
            job.executor_address,
            job.leaf_hash,
            job.output_hash
        ),
        (
            Some(done.trace_root),
            Some(1234),
            Some(done.executor_address),
            Some(done.leaf_hash),
            Some(done.output_hash)
        )
    );
    assert!(job.executed_ms.is_some() && job.lease_expires_ms.is_none());
    assert_eq!(job.batch_number, None);
    let progress = storage.progress(req.id).await.expect("progress");
    assert!(progress[0].state.has_result());
    assert_eq!(progress[0].finish_reason, Some(FinishReason::Length));
    let key = storage
        .key_by_hash(&hash_key("sk-test"))
        .await
        .expect("lookup")
        .expect("found");
    assert_eq!(
        (
            key.usage.requests,
            key.usage.prompt_tokens,
            key.usage.completion_tokens
        ),
        (1, 4, 4)
    );

    // Revocation.
    assert!(storage.revoke_key(key.id).await.expect("revoke"));
    assert!(!storage.revoke_key(key.id).await.expect("revoke twice"));
    assert!(!storage.revoke_key(424_242).await.expect("unknown"));
    let keys = storage.list_keys().await.expect("list");
    assert_eq!(keys.len(), 1);
    assert!(keys[0].revoked_ms.is_some());

    // Concurrent leasers never get the same job.
    let mut ids = Vec::new();
    for _ in 0..5 {
        let r = new_request(None, 4, clock_now(&clock));
        storage.insert_request(&r).await.expect("insert");
        ids.push(r.id);
    }
    let leasers: Vec<_> = (0..4)
        .map(|i| {
            let storage = storage.clone();
            tokio::spawn(async move {
                let mut got = Vec::new();
                for _ in 0..10 {
                    let jobs = storage
                        .lease(&format!("exec-{i}"), 2, LEASE)
                        .await
                        .expect("lease");
                    got.extend(jobs.into_iter().map(|j| j.lease.job_id));
                }
                got
            })
        })
        .collect();
    let mut all = Vec::new();
    for l in leasers {
        all.extend(l.await.expect("leaser"));
    }
    let total = all.len();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), total, "a job was leased twice");
    assert_eq!(total, 20, "every new job leased exactly once");
}

fn clock_now(clock: &ManualClock) -> i64 {
    use verinfer_sequencer::clock::Clock;
    clock.now_ms()
}

async fn run(backend: Backend) {
    let db = TestDb::new(backend).await;
    let clock = ManualClock::new(1_700_000_000_000);
    let storage = db.storage(clock.clone()).await;
    conformance(storage, clock.clone()).await;
    // Migrations are idempotent: opening the same database again works and sees the data.
    let again = db.storage(clock).await;
    assert_eq!(again.list_keys().await.expect("list").len(), 1);
    db.cleanup().await;
}

#[tokio::test]
async fn conformance_postgres() {
    run(Backend::Postgres).await;
}

#[tokio::test]
async fn conformance_sqlite() {
    run(Backend::Sqlite).await;
}
