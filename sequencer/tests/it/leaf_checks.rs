//! `/executor/v1/complete` with L1 checks on (a `BondedExecutors` verifier over the embedded chain): a leaf signed by
//! a bonded executor is accepted; a wrong signer, an unbonded key, a tampered leaf field or a missing signature are
//! refused with a clear 4xx, and nothing is stored for them (the same job completes afterwards with a good leaf).

use crate::common::*;
use l1_contracts::{EmbeddedChain, Rollup, RollupConfig, dev};
use protocol::{B256, InferenceLeaf, token_ids_root};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use verinfer_sequencer::ids::RequestId;
use verinfer_sequencer::leaf::{LeafContext, build_leaf};
use verinfer_sequencer::verify::BondedExecutors;
use verinfer_sequencer::wire::{CompleteRequest, LeaseResponse, WireJob};

/// A server whose `/complete` checks leaves against a rollup on an embedded chain where `bonded` is an executor and
/// `stranger` is not.
async fn checked_server(backend: Backend) -> (TestServer, LeafSigner, LeafSigner) {
    let chain = EmbeddedChain::default();
    let accounts = dev::accounts();
    let config = RollupConfig::devnet(accounts[0].address);
    let rollup = Rollup::deploy(chain.connect(accounts[0].address), &config)
        .await
        .expect("deploy");
    rollup
        .with_l1(chain.connect(accounts[2].address))
        .register_executor(config.min_executor_bond)
        .await
        .expect("bond the executor");
    let domain = protocol::leaf_domain(chain.chain_id(), rollup.address());
    let server = TestServer::start_with(backend, test_config(), false).await;
    let verifier = BondedExecutors::new(rollup, chain.chain_id(), Duration::from_secs(30));
    assert!(server.state.set_leaf_verifier(Arc::new(verifier)));
    let bonded = LeafSigner {
        account: accounts[2].clone(),
        domain: domain.clone(),
    };
    let stranger = LeafSigner {
        account: accounts[5].clone(),
        domain,
    };
    (server, bonded, stranger)
}

async fn lease_one(server: &TestServer) -> WireJob {
    for _ in 0..100 {
        let r: LeaseResponse = server
            .http
            .post(format!("{}/executor/v1/lease", server.base))
            .bearer_auth(EXECUTOR_TOKEN)
            .json(&json!({"max_jobs": 1, "wait_ms": 1000, "lease_ms": 60000}))
            .send()
            .await
            .expect("reachable")
            .json()
            .await
            .expect("lease JSON");
        if let Some(job) = r.jobs.into_iter().next() {
            return job;
        }
    }
    panic!("no job to lease");
}

/// The honest result of `job` as `executor`: the complete request (unsigned) and its leaf.
fn result_of(job: &WireJob, executor: protocol::Address) -> (CompleteRequest, InferenceLeaf) {
    let (tokens, finish) = reference(&job.prompt_tokens, &job.params);
    let mut sink = vir::interp::TraceCommitter::default();
    vir::interp::generate(
        &bundle().model,
        &job.prompt_tokens,
        &job.params,
        &mut sink,
        &mut |_| {},
    )
    .expect("runs");
    let trace = sink.finish();
    let ctx = LeafContext {
        request_id: job.request_id,
        model_root: job.model_root,
        prompt_root: token_ids_root(&job.prompt_tokens),
        params_hash: job.params.params_hash(),
    };
    let leaf = build_leaf(&ctx, &tokens, finish, trace.root, trace.op_count, executor);
    let request = CompleteRequest {
        job_id: job.job_id,
        attempt: job.attempt,
        tokens,
        logprobs: None,
        finish_reason: finish,
        trace_root: trace.root,
        op_count: trace.op_count,
        executor,
        signature: None,
        leaf: None,
    };
    (request, leaf)
}

async fn complete(server: &TestServer, request: &CompleteRequest) -> (StatusCode, Value) {
    let r = server
        .http
        .post(format!("{}/executor/v1/complete", server.base))
        .bearer_auth(EXECUTOR_TOKEN)
        .json(request)
        .send()
        .await
        .expect("reachable");
    let status = r.status();
    (status, r.json().await.expect("JSON body"))
}

#[tokio::test]
async fn complete_checks_signature_bond_and_fields() {
    on_both(|backend| async move {
        let (server, bonded, stranger) = checked_server(backend).await;
        let request = {
            let (http, base, key) = (server.http.clone(), server.base.clone(), server.key.clone());
            tokio::spawn(async move {
                http.post(format!("{base}/v1/chat/completions"))
                    .bearer_auth(key)
                    .json(&json!({
                        "model": MODEL,
                        "messages": [{"role": "user", "content": "hello"}],
                        "max_tokens": 6,
                    }))
                    .send()
                    .await
                    .expect("reachable")
                    .json::<Value>()
                    .await
                    .expect("JSON")
            })
        };
        let job = lease_one(&server).await;
        let (honest, leaf) = result_of(&job, bonded.account.address);

        // Unsigned.
        let (status, body) = complete(&server, &honest).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["error"]["code"], "invalid_signature");

        // Signed by another key while naming the bonded executor.
        let wrong_signer = CompleteRequest {
            signature: Some(stranger.sign(&leaf)),
            ..honest.clone()
        };
        let (status, body) = complete(&server, &wrong_signer).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["error"]["code"], "invalid_signature");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(&stranger.account.address.to_string())),
            "{body}"
        );

        // A valid signature of an unbonded key.
        let (unbonded, unbonded_leaf) = result_of(&job, stranger.account.address);
        let unbonded = CompleteRequest {
            signature: Some(stranger.sign(&unbonded_leaf)),
            ..unbonded
        };
        let (status, body) = complete(&server, &unbonded).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert_eq!(body["error"]["code"], "executor_not_bonded");

        // A tampered field (another model root), signed by the bonded key: with the leaf sent, the field is named;
        // without it, the signature does not recover.
        let tampered = InferenceLeaf {
            modelRoot: B256::repeat_byte(0xee),
            ..leaf
        };
        let with_leaf = CompleteRequest {
            signature: Some(bonded.sign(&tampered)),
            leaf: Some(tampered),
            ..honest.clone()
        };
        let (status, body) = complete(&server, &with_leaf).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["error"]["code"], "leaf_mismatch");
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("modelRoot")),
            "{body}"
        );
        let without_leaf = CompleteRequest {
            leaf: None,
            ..with_leaf
        };
        let (status, body) = complete(&server, &without_leaf).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["error"]["code"], "invalid_signature");

        // Nothing was stored: the job is still leased, and the honest signed result is accepted.
        let (_, receipt_before) = server
            .get(&format!(
                "/v1/receipts/{}",
                receipt_id_of_job(&server, &job).await
            ))
            .await;
        assert_eq!(receipt_before["status"], "pending", "{receipt_before}");
        let good = CompleteRequest {
            signature: Some(bonded.sign(&leaf)),
            leaf: Some(leaf),
            ..honest
        };
        let (status, body) = complete(&server, &good).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["leaf_hash"], json!(leaf.hash()));
        let response = request.await.expect("request task");
        assert_eq!(response["object"], "chat.completion", "{response}");

        let metrics = server
            .http
            .get(format!("{}/metrics", server.base))
            .send()
            .await
            .expect("reachable")
            .text()
            .await
            .expect("text");
        for reason in ["signature", "not_bonded", "leaf_mismatch"] {
            assert!(
                metrics.contains(&format!(
                    "verinfer_sequencer_jobs_refused_total{{reason=\"{reason}\"}}"
                )),
                "{reason} counted"
            );
        }
        server.stop().await;
    })
    .await;
}

/// The response id of the request a job belongs to (from the stored request).
async fn receipt_id_of_job(server: &TestServer, job: &WireJob) -> String {
    let request = server
        .state
        .storage()
        .request(RequestId(job.request_id))
        .await
        .expect("storage")
        .expect("request stored");
    request.id.response_id(request.kind)
}
