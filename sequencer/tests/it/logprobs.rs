//! Logprobs end to end: chat and completions, JSON and SSE, `n > 1`, `top_logprobs`, stop strings, on both storage
//! backends; every value checked against an independent computation from the reference interpreter's logits
//! (`Session::logits_untraced`, a plain f64 softmax, a full sort), and the storage rules (logprobs stored with the
//! tokens, kept across a re-lease, required when asked for).

use crate::common::{Backend, MODEL, TestDb, TestServer, bundle, on_both, reference};
use async_openai::Client;
use async_openai::config::OpenAIConfig;
use async_openai::types::chat::{
    ChatCompletionRequestUserMessageArgs, CreateChatCompletionRequestArgs,
};
use futures_util::StreamExt;
use protocol::{B256, SamplingParams, token_ids_root};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;
use verinfer_sequencer::clock::ManualClock;
use verinfer_sequencer::ids::{RequestId, RequestKind};
use verinfer_sequencer::storage::{JobOutcome, NewRequest, StorageError};
use vir::logprobs::{TokenLogprobs, TopLogprob, replay_naive_logprobs};

/// One expected token: id, logprob, the `k` best (id, logprob).
#[derive(Debug, Clone)]
struct Expected {
    token: u32,
    logprob: f64,
    top: Vec<(u32, f64)>,
}

/// The reference tokens of a choice and their logprobs, from the interpreter's logits computed outside the trace
/// (`vir::logprobs::replay_naive_logprobs`).
fn expected(prompt: &[u32], params: &SamplingParams, k: usize) -> Vec<Expected> {
    let (tokens, _) = reference(prompt, params);
    replay_naive_logprobs(&bundle().model, prompt, params, &tokens, k)
        .expect("the interpreter generates its own tokens")
        .into_iter()
        .zip(&tokens)
        .map(|(n, &token)| {
            assert!(close(n.total, 1.0), "probabilities sum to {}", n.total);
            Expected {
                token,
                logprob: n.logprob,
                top: n.top,
            }
        })
        .collect()
}

/// The raw bytes of a token (checked against the tokenizer's own decoding by [`check_chat_content`]).
fn bytes_of(id: u32) -> Vec<u8> {
    bundle()
        .tokenizer
        .token_bytes(id)
        .expect("in the vocabulary")
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

/// Prompt tokens and per-choice params of a stored request.
async fn stored(server: &TestServer, body: &Value) -> (Vec<u32>, Vec<SamplingParams>) {
    let id = body["verinfer"]["request_id"].as_str().expect("request id");
    let id = RequestId::parse_any(id).expect("parses");
    let storage = server.state.storage();
    let request = storage.request(id).await.expect("db").expect("stored");
    let jobs = storage.jobs(id).await.expect("jobs");
    (
        request.prompt_tokens,
        jobs.into_iter().map(|j| j.params).collect(),
    )
}

/// Checks chat `content` entries against the expectation: same logprobs, same top-k (ids through their bytes).
fn check_chat_content(content: &[Value], want: &[Expected], k: usize) {
    assert_eq!(content.len(), want.len(), "one entry per generated token");
    // The entries' bytes spell what the tokenizer decodes for the tokens (partial UTF-8 joins up).
    let all: Vec<u8> = content
        .iter()
        .flat_map(|e| serde_json::from_value::<Vec<u8>>(e["bytes"].clone()).expect("bytes"))
        .collect();
    let ids: Vec<u32> = want.iter().map(|w| w.token).collect();
    assert_eq!(
        String::from_utf8_lossy(&all),
        bundle()
            .tokenizer
            .decode_with_specials(&ids)
            .expect("decodes")
    );
    for (entry, w) in content.iter().zip(want) {
        let lp = entry["logprob"].as_f64().expect("logprob");
        assert!(close(lp, w.logprob), "{lp} vs {}", w.logprob);
        let bytes: Vec<u8> = serde_json::from_value(entry["bytes"].clone()).expect("bytes");
        assert_eq!(bytes, bytes_of(w.token));
        assert_eq!(
            entry["token"].as_str(),
            Some(String::from_utf8_lossy(&bytes).as_ref())
        );
        let top = entry["top_logprobs"].as_array().expect("top_logprobs");
        assert_eq!(top.len(), k);
        let mut previous = f64::INFINITY;
        for (alt, (id, p)) in top.iter().zip(&w.top) {
            let got = alt["logprob"].as_f64().expect("logprob");
            assert!(close(got, *p), "top {got} vs {p}");
            assert!(got <= previous, "top_logprobs sorted");
            previous = got;
            let b: Vec<u8> = serde_json::from_value(alt["bytes"].clone()).expect("bytes");
            assert_eq!(b, bytes_of(*id));
        }
        assert!(
            w.top
                .first()
                .is_none_or(|(_, best)| w.logprob <= *best + 1e-12),
            "no token beats the best"
        );
    }
}

/// SSE `data:` payloads of a streamed request (without `[DONE]`).
async fn sse(server: &TestServer, path: &str, body: &Value) -> Vec<Value> {
    let r = server
        .http
        .post(format!("{}{path}", server.base))
        .bearer_auth(&server.key)
        .json(body)
        .send()
        .await
        .expect("server reachable");
    assert_eq!(r.status(), StatusCode::OK);
    let text = r.text().await.expect("stream");
    text.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).expect("chunk JSON"))
        .collect()
}

async fn chat_flow(backend: Backend) {
    let server = TestServer::start(backend).await;
    let k = 3;
    let body = json!({"model": MODEL, "messages": [{"role": "user", "content": "Tell me a story"}],
        "max_tokens": 10, "temperature": 0.9, "seed": 5, "n": 2, "logprobs": true, "top_logprobs": k});
    let (status, r) = server.post("/v1/chat/completions", &body).await;
    assert_eq!(status, StatusCode::OK, "{r}");
    let (prompt, params) = stored(&server, &r).await;
    let choices = r["choices"].as_array().expect("choices");
    assert_eq!(choices.len(), 2);
    let mut per_choice = Vec::new();
    for (choice, p) in choices.iter().zip(&params) {
        let want = expected(&prompt, p, k);
        let lp = &choice["logprobs"];
        assert!(lp["refusal"].is_null());
        let content = lp["content"].as_array().expect("content").clone();
        check_chat_content(&content, &want, k);
        per_choice.push(content);
    }
    assert_ne!(per_choice[0], per_choice[1], "choices sample independently");

    // Streamed: the chunks' logprobs concatenate to the same entries.
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let chunks = sse(&server, "/v1/chat/completions", &streamed).await;
    let mut got: Vec<Vec<Value>> = vec![Vec::new(); 2];
    for chunk in &chunks {
        for c in chunk["choices"].as_array().expect("choices") {
            let i = c["index"].as_u64().expect("index") as usize;
            if let Some(content) = c["logprobs"]["content"].as_array() {
                got[i].extend(content.iter().cloned());
            }
        }
    }
    assert_eq!(got, per_choice);

    // Without logprobs: null, and nothing is computed or stored.
    let (_, plain) = server
        .post(
            "/v1/chat/completions",
            &json!({"model": MODEL, "messages": [{"role": "user", "content": "x"}], "max_tokens": 3}),
        )
        .await;
    assert!(plain["choices"][0]["logprobs"].is_null());
    server.stop().await;
}

async fn completion_flow(backend: Backend) {
    let server = TestServer::start(backend).await;
    let k = 2;
    let body = json!({"model": MODEL, "prompt": [5, 6, 7, 8], "max_tokens": 8, "temperature": 0.8,
        "seed": 9, "n": 2, "logprobs": k});
    let (status, r) = server.post("/v1/completions", &body).await;
    assert_eq!(status, StatusCode::OK, "{r}");
    let (prompt, params) = stored(&server, &r).await;
    let mut whole = Vec::new();
    for (choice, p) in r["choices"]
        .as_array()
        .expect("choices")
        .iter()
        .zip(&params)
    {
        let want = expected(&prompt, p, k);
        let lp = &choice["logprobs"];
        let tokens = lp["tokens"].as_array().expect("tokens");
        let token_lp = lp["token_logprobs"].as_array().expect("token_logprobs");
        let tops = lp["top_logprobs"].as_array().expect("top_logprobs");
        let offsets = lp["text_offset"].as_array().expect("text_offset");
        assert_eq!(tokens.len(), want.len());
        assert_eq!(
            (token_lp.len(), tops.len(), offsets.len()),
            (want.len(), want.len(), want.len())
        );
        for (i, w) in want.iter().enumerate() {
            let text = String::from_utf8_lossy(&bytes_of(w.token)).into_owned();
            assert_eq!(tokens[i].as_str(), Some(text.as_str()));
            assert!(close(token_lp[i].as_f64().expect("f64"), w.logprob));
            // The k best plus the generated token (OpenAI: up to logprobs + 1 entries).
            let top = tops[i].as_object().expect("object");
            let mut names: Vec<String> = w
                .top
                .iter()
                .map(|(id, _)| String::from_utf8_lossy(&bytes_of(*id)).into_owned())
                .collect();
            names.push(text.clone());
            names.sort();
            names.dedup();
            let mut keys: Vec<String> = top.keys().cloned().collect();
            keys.sort();
            assert_eq!(keys, names);
            for (id, p) in &w.top {
                let name = String::from_utf8_lossy(&bytes_of(*id)).into_owned();
                let got = top[&name].as_f64().expect("f64");
                // Two ids may decode alike; the entry holds the likelier one (listed first).
                assert!(got >= *p - 1e-9);
            }
        }
        // Offsets: where each token starts in the text (the text holds no special tokens).
        let text = choice["text"].as_str().expect("text");
        assert_eq!(offsets.first().and_then(Value::as_u64), Some(0));
        for pair in offsets.windows(2) {
            assert!(pair[0].as_u64() <= pair[1].as_u64());
        }
        assert!(
            offsets
                .iter()
                .all(|o| o.as_u64().unwrap_or(u64::MAX) <= text.chars().count() as u64)
        );
        whole.push(lp.clone());
    }

    // Streamed, through the same pipeline.
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let chunks = sse(&server, "/v1/completions", &streamed).await;
    let mut got: Vec<Value> = vec![
        json!({"tokens": [], "token_logprobs": [], "top_logprobs": [],
        "text_offset": []});
        2
    ];
    for chunk in &chunks {
        for c in chunk["choices"].as_array().expect("choices") {
            let i = c["index"].as_u64().expect("index") as usize;
            if c["logprobs"].is_null() {
                continue;
            }
            for field in ["tokens", "token_logprobs", "top_logprobs", "text_offset"] {
                let items = c["logprobs"][field].as_array().expect("list").clone();
                if let Some(list) = got[i][field].as_array_mut() {
                    list.extend(items);
                }
            }
        }
    }
    assert_eq!(got, whole);

    // logprobs: 0 → the generated token only.
    let (_, zero) = server
        .post(
            "/v1/completions",
            &json!({"model": MODEL, "prompt": [5, 6], "max_tokens": 3, "seed": 1, "logprobs": 0}),
        )
        .await;
    for top in zero["choices"][0]["logprobs"]["top_logprobs"]
        .as_array()
        .expect("list")
    {
        assert_eq!(top.as_object().map(|o| o.len()), Some(1));
    }
    server.stop().await;
}

/// A stop string cuts the logprobs where it cuts the text: exactly the tokens whose text starts before the cut.
async fn stop_flow(backend: Backend) {
    let server = TestServer::start(backend).await;
    let base = json!({"model": MODEL, "prompt": [9, 10, 11], "max_tokens": 24, "temperature": 1.0,
        "seed": 77, "logprobs": 1});
    let (_, full) = server.post("/v1/completions", &base).await;
    let text = full["choices"][0]["text"]
        .as_str()
        .expect("text")
        .to_string();
    let chars: Vec<char> = text.chars().collect();
    assert!(
        chars.len() >= 6,
        "the tiny model writes something: {text:?}"
    );
    // A stop string from the middle of the text (its first occurrence decides the cut).
    let stop: String = chars[chars.len() / 2..chars.len() / 2 + 2].iter().collect();
    let cut = text.find(&stop).expect("occurs");
    let cut_chars = text[..cut].chars().count() as u64;
    let mut body = base.clone();
    body["stop"] = json!([stop]);
    let (_, r) = server.post("/v1/completions", &body).await;
    assert_eq!(r["choices"][0]["text"].as_str(), Some(&text[..cut]));
    let offsets: Vec<u64> = full["choices"][0]["logprobs"]["text_offset"]
        .as_array()
        .expect("offsets")
        .iter()
        .filter_map(Value::as_u64)
        .collect();
    let kept = offsets.iter().filter(|&&o| o < cut_chars).count();
    let lp = &r["choices"][0]["logprobs"];
    let token_lp = lp["token_logprobs"].as_array().expect("list");
    assert_eq!(token_lp.len(), kept);
    assert_eq!(
        token_lp[..],
        full["choices"][0]["logprobs"]["token_logprobs"]
            .as_array()
            .expect("list")[..kept]
    );
    // Streamed the same.
    body["stream"] = json!(true);
    let n: usize = sse(&server, "/v1/completions", &body)
        .await
        .iter()
        .flat_map(|c| c["choices"].as_array().cloned().unwrap_or_default())
        .filter_map(|c| c["logprobs"]["token_logprobs"].as_array().map(Vec::len))
        .sum();
    assert_eq!(n, kept);
    server.stop().await;
}

#[tokio::test]
async fn logprobs_chat() {
    on_both(chat_flow).await;
}

#[tokio::test]
async fn logprobs_completions() {
    on_both(completion_flow).await;
}

#[tokio::test]
async fn logprobs_cut_by_stop_strings() {
    on_both(stop_flow).await;
}

/// The strict client parses the logprobs, JSON and streamed.
#[tokio::test]
async fn logprobs_async_openai() {
    let server = TestServer::start(Backend::Sqlite).await;
    let c = Client::with_config(
        OpenAIConfig::new()
            .with_api_base(format!("{}/v1", server.base))
            .with_api_key(&server.key),
    );
    let req = CreateChatCompletionRequestArgs::default()
        .model(MODEL)
        .messages([ChatCompletionRequestUserMessageArgs::default()
            .content("Hello")
            .build()
            .expect("message")
            .into()])
        .max_completion_tokens(6u32)
        .seed(3)
        .n(2u8)
        .logprobs(true)
        .top_logprobs(4u8)
        .build()
        .expect("request");
    let chat = tokio::time::timeout(Duration::from_secs(60), c.chat().create(req.clone()))
        .await
        .expect("no hang")
        .expect("chat");
    let mut whole = Vec::new();
    for choice in &chat.choices {
        let content = choice
            .logprobs
            .as_ref()
            .and_then(|l| l.content.clone())
            .expect("content");
        assert!(!content.is_empty());
        for t in &content {
            assert_eq!(t.top_logprobs.len(), 4);
            assert!(t.logprob <= 0.0);
            assert!(
                t.top_logprobs
                    .windows(2)
                    .all(|w| w[0].logprob >= w[1].logprob)
            );
        }
        whole.push(content);
    }
    let mut stream = c.chat().create_stream(req).await.expect("stream");
    let mut streamed = vec![Vec::new(); 2];
    while let Some(chunk) = tokio::time::timeout(Duration::from_secs(60), stream.next())
        .await
        .expect("no hang")
    {
        for choice in chunk.expect("chunk").choices {
            if let Some(content) = choice.logprobs.and_then(|l| l.content) {
                streamed[choice.index as usize].extend(content);
            }
        }
    }
    assert_eq!(streamed, whole);
    server.stop().await;
}

fn lp(token: u32, logprob: f64) -> TokenLogprobs {
    TokenLogprobs {
        token,
        logprob,
        top: vec![
            TopLogprob {
                token: 1,
                logprob: -0.5,
            },
            TopLogprob {
                token: 2,
                logprob: -1.5,
            },
        ],
    }
}

/// Storage: logprobs go with the tokens, are required when asked for, and survive a re-lease.
async fn storage_flow(backend: Backend) {
    let db = TestDb::new(backend).await;
    let clock = ManualClock::new(1_700_000_000_000);
    let storage = db.storage(clock.clone()).await;
    let prompt = vec![1, 2, 3];
    let params = SamplingParams {
        max_tokens: 4,
        temperature_milli: 700,
        top_p_milli: 1000,
        seed: 1,
        choice_index: 0,
    };
    let request = NewRequest {
        id: RequestId::random().expect("random"),
        kind: RequestKind::Completion,
        model: MODEL.into(),
        model_root: B256::repeat_byte(7),
        key_id: None,
        created_ms: 0,
        prompt_root: token_ids_root(&prompt),
        prompt_tokens: prompt,
        options: "{}".into(),
        choices: vec![params],
        logprobs: Some(2),
    };
    storage.insert_request(&request).await.expect("insert");
    let lease = Duration::from_secs(10);
    let first = storage.lease("a", 1, lease).await.expect("lease");
    assert_eq!(first[0].logprobs, Some(2));
    let l1 = first[0].lease;
    assert!(matches!(
        storage.append_tokens("a", l1, 0, &[7, 8], None).await,
        Err(StorageError::Logprobs { .. })
    ));
    assert!(matches!(
        storage
            .append_tokens("a", l1, 0, &[7, 8], Some(&[lp(7, -0.25)]))
            .await,
        Err(StorageError::Logprobs { .. })
    ));
    storage
        .append_tokens("a", l1, 0, &[7, 8], Some(&[lp(7, -0.25), lp(8, -2.0)]))
        .await
        .expect("append");
    // Re-leased: the streamed tokens keep their logprobs; later tokens get the new attempt's.
    clock.advance(20_000);
    let second = storage.lease("b", 1, lease).await.expect("lease");
    assert_eq!(
        (second[0].tokens.clone(), second[0].logprobs),
        (vec![7, 8], Some(2))
    );
    let l2 = second[0].lease;
    storage
        .append_tokens("b", l2, 1, &[8, 9], Some(&[lp(8, -3.0), lp(9, -1.0)]))
        .await
        .expect("append");
    let tokens = vec![7, 8, 9, 10];
    storage
        .complete(
            "b",
            l2,
            &JobOutcome {
                output_hash: token_ids_root(&tokens),
                tokens: tokens.clone(),
                finish_reason: protocol::FinishReason::Length,
                trace_root: B256::repeat_byte(3),
                op_count: 1,
                executor_address: protocol::Address::repeat_byte(9),
                signature: None,
                leaf_hash: B256::repeat_byte(4),
                logprobs: Some(vec![lp(7, -9.0), lp(8, -9.0), lp(9, -9.0), lp(10, -0.75)]),
            },
        )
        .await
        .expect("complete");
    let progress = storage.progress(request.id).await.expect("progress");
    assert_eq!(progress[0].tokens, tokens);
    assert_eq!(
        progress[0].logprobs,
        vec![lp(7, -0.25), lp(8, -2.0), lp(9, -1.0), lp(10, -0.75)]
    );
    db.cleanup().await;
}

#[tokio::test]
async fn logprobs_storage() {
    on_both(storage_flow).await;
}
