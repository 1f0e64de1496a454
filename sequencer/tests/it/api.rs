//! The OpenAI surface over HTTP (reqwest): response shapes, streaming, `n > 1`, stop strings, receipts, executor
//! API checks, health and metrics — on both storage backends.

use crate::common::{Backend, MODEL, TestServer, bundle, on_both, reference};
use protocol::{FinishReason, SamplingParams};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;
use verinfer_sequencer::api::REQUEST_ID_HEADER;
use vir::tokenizer::ChatMessage;

/// `data:` payloads of an SSE body.
pub fn sse_events(body: &str) -> Vec<String> {
    body.split("\n\n")
        .flat_map(|event| event.lines())
        .filter_map(|line| {
            line.strip_prefix("data: ")
                .or_else(|| line.strip_prefix("data:"))
        })
        .map(|d| d.trim().to_string())
        .collect()
}

fn chat_prompt(content: &str) -> Vec<u32> {
    bundle()
        .tokenizer
        .encode_chat(&[ChatMessage::new("user", content)], true)
        .expect("encodes")
}

fn expected_text(prompt: &[u32], params: &SamplingParams) -> (String, FinishReason, usize) {
    let (tokens, finish) = reference(prompt, params);
    let text = bundle().tokenizer.decode(&tokens).expect("decodes");
    (text, finish, tokens.len())
}

fn finish_str(f: FinishReason) -> &'static str {
    match f {
        FinishReason::Stop => "stop",
        FinishReason::Length => "length",
    }
}

#[tokio::test]
async fn models_list_and_retrieve() {
    let server = TestServer::start(Backend::Sqlite).await;
    let (status, list) = server.get("/v1/models").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["object"], "list");
    let card = &list["data"][0];
    assert_eq!(
        (
            card["id"].as_str(),
            card["object"].as_str(),
            card["owned_by"].as_str()
        ),
        (Some(MODEL), Some("model"), Some("verinfer"))
    );
    assert!(card["created"].is_u64());
    let (status, one) = server.get(&format!("/v1/models/{MODEL}")).await;
    assert_eq!((status, &one), (StatusCode::OK, card));
    let (status, err) = server.get("/v1/models/gpt-9").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(err["error"]["code"], "model_not_found");
    assert_eq!(err["error"]["param"], "model");
    server.stop().await;
}

#[tokio::test]
async fn chat_matches_the_reference_interpreter_and_has_a_receipt() {
    on_both(|backend| async move {
        let server = TestServer::start(backend).await;
        let r = server
            .http
            .post(format!("{}/v1/chat/completions", server.base))
            .bearer_auth(&server.key)
            .json(&json!({
                "model": MODEL,
                "messages": [{"role": "user", "content": "Hello world"}],
                "max_tokens": 12, "temperature": 0, "seed": 7
            }))
            .send()
            .await
            .expect("reachable");
        assert_eq!(r.status(), StatusCode::OK);
        let request_id = r.headers()[REQUEST_ID_HEADER]
            .to_str()
            .expect("ascii")
            .to_string();
        let body: Value = r.json().await.expect("json");
        let prompt = chat_prompt("Hello world");
        let params = SamplingParams {
            max_tokens: 12,
            temperature_milli: 0,
            top_p_milli: 1000,
            seed: 7,
            choice_index: 0,
        };
        let (text, finish, generated) = expected_text(&prompt, &params);
        assert!(
            generated > 1 && !text.is_empty(),
            "the tiny model says something"
        );
        assert!(body["id"].as_str().expect("id").starts_with("chatcmpl-"));
        assert_eq!(body["object"], "chat.completion");
        assert!(body["created"].is_u64());
        assert_eq!(body["model"], MODEL);
        let choice = &body["choices"][0];
        assert_eq!(choice["index"], 0);
        assert_eq!(choice["message"]["role"], "assistant");
        assert_eq!(choice["message"]["content"], text.as_str());
        assert_eq!(choice["finish_reason"], finish_str(finish));
        assert!(choice["logprobs"].is_null());
        assert_eq!(body["usage"]["prompt_tokens"], prompt.len());
        assert_eq!(body["usage"]["completion_tokens"], generated);
        assert_eq!(body["usage"]["total_tokens"], prompt.len() + generated);
        assert_eq!(body["verinfer"]["request_id"], request_id.as_str());
        assert_eq!(body["verinfer"]["status"], "executed");

        // The receipt: by response id and by request id, with the leaf.
        let url = body["verinfer"]["receipt_url"]
            .as_str()
            .expect("url")
            .to_string();
        let (status, receipt) = server.get(&url).await;
        assert_eq!(status, StatusCode::OK);
        let (_, again) = server.get(&format!("/v1/receipts/{request_id}")).await;
        assert_eq!(receipt, again);
        assert_eq!(receipt["status"], "executed");
        assert_eq!(receipt["request_id"], request_id.as_str());
        let c = &receipt["choices"][0];
        assert_eq!(c["state"], "executed");
        assert_eq!(c["completion_tokens"], generated);
        assert_eq!(c["leaf"]["requestId"], request_id.as_str());
        assert_eq!(c["leaf_hash"], c["leaf_hash"]);
        assert!(c["leaf_hash"].is_string() && c["trace_root"].is_string());
        assert!(c["batch"].is_null() && c["merkle_proof"].is_null() && c["l1_tx"].is_null());
        let (status, err) = server.get("/v1/receipts/chatcmpl-nope").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(err["error"]["message"].is_string());
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn n_choices_sample_independently_with_seeded_keys() {
    let server = TestServer::start(Backend::Postgres).await;
    let (status, body) = server
        .post(
            "/v1/chat/completions",
            &json!({
                "model": MODEL,
                "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "The quick brown fox"}],
                "max_completion_tokens": 10, "temperature": 1.3, "top_p": 0.95, "seed": 42, "n": 3
            }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let prompt = bundle()
        .tokenizer
        .encode_chat(
            &[
                ChatMessage::new("system", "Be brief."),
                ChatMessage::new("user", "The quick brown fox"),
            ],
            true,
        )
        .expect("encodes");
    let mut total = 0;
    for i in 0..3u32 {
        let params = SamplingParams {
            max_tokens: 10,
            temperature_milli: 1300,
            top_p_milli: 950,
            seed: 42,
            choice_index: i,
        };
        let (text, finish, generated) = expected_text(&prompt, &params);
        let c = &body["choices"][i as usize];
        assert_eq!(c["index"], i);
        assert_eq!(c["message"]["content"], text.as_str(), "choice {i}");
        assert_eq!(c["finish_reason"], finish_str(finish));
        total += generated;
    }
    assert_eq!(body["usage"]["completion_tokens"], total);
    let texts: Vec<&str> = (0..3)
        .map(|i| {
            body["choices"][i]["message"]["content"]
                .as_str()
                .expect("text")
        })
        .collect();
    assert!(
        texts[0] != texts[1] || texts[1] != texts[2],
        "choices sample independently: {texts:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn completions_stream_concatenates_to_the_non_streamed_text() {
    on_both(|backend| async move {
        let server = TestServer::start(backend).await;
        let request = json!({
            "model": MODEL, "prompt": "Hello world! This", "max_tokens": 20,
            "temperature": 0.8, "seed": 3, "n": 2
        });
        let (status, plain) = server.post("/v1/completions", &request).await;
        assert_eq!(status, StatusCode::OK, "{plain}");
        assert_eq!(plain["object"], "text_completion");
        assert!(plain["id"].as_str().expect("id").starts_with("cmpl-"));

        let mut streamed = request.clone();
        streamed["stream"] = json!(true);
        streamed["stream_options"] = json!({"include_usage": true});
        let r = server
            .http
            .post(format!("{}/v1/completions", server.base))
            .bearer_auth(&server.key)
            .json(&streamed)
            .send()
            .await
            .expect("reachable");
        assert_eq!(r.status(), StatusCode::OK);
        assert!(r.headers().contains_key(REQUEST_ID_HEADER));
        assert!(
            r.headers()["content-type"]
                .to_str()
                .expect("ascii")
                .starts_with("text/event-stream")
        );
        let events = sse_events(&r.text().await.expect("body"));
        assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
        let chunks: Vec<Value> = events[..events.len() - 1]
            .iter()
            .map(|e| serde_json::from_str(e).expect("chunk is JSON"))
            .collect();
        let mut texts = [String::new(), String::new()];
        let mut finishes = [None, None];
        for c in &chunks[..chunks.len() - 1] {
            assert_eq!(c["object"], "text_completion");
            assert!(c["usage"].is_null());
            for choice in c["choices"].as_array().expect("choices") {
                let i = choice["index"].as_u64().expect("index") as usize;
                texts[i].push_str(choice["text"].as_str().expect("text"));
                if let Some(f) = choice["finish_reason"].as_str() {
                    finishes[i] = Some(f.to_string());
                }
            }
        }
        let usage_chunk = chunks.last().expect("usage chunk");
        assert_eq!(usage_chunk["choices"], json!([]));
        assert_eq!(
            usage_chunk["usage"]["prompt_tokens"],
            plain["usage"]["prompt_tokens"]
        );
        assert_eq!(
            usage_chunk["usage"]["completion_tokens"],
            plain["usage"]["completion_tokens"]
        );
        for i in 0..2 {
            assert_eq!(
                texts[i],
                plain["choices"][i]["text"].as_str().expect("text")
            );
            assert_eq!(
                finishes[i].as_deref(),
                plain["choices"][i]["finish_reason"].as_str()
            );
        }
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn chat_stream_shape() {
    let server = TestServer::start(Backend::Sqlite).await;
    let r = server
        .http
        .post(format!("{}/v1/chat/completions", server.base))
        .bearer_auth(&server.key)
        .json(&json!({
            "model": MODEL, "messages": [{"role": "user", "content": "Hi"}],
            "max_tokens": 8, "temperature": 0, "stream": true
        }))
        .send()
        .await
        .expect("reachable");
    assert_eq!(r.status(), StatusCode::OK);
    let events = sse_events(&r.text().await.expect("body"));
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).expect("JSON"))
        .collect();
    let first = &chunks[0];
    assert_eq!(first["object"], "chat.completion.chunk");
    assert_eq!(
        first["choices"][0]["delta"],
        json!({"role": "assistant", "content": ""})
    );
    let id = first["id"].clone();
    let mut text = String::new();
    for c in &chunks {
        assert_eq!(c["id"], id);
        assert!(c["created"].is_u64() && c["model"] == MODEL);
        for choice in c["choices"].as_array().expect("choices") {
            assert_eq!(choice["index"], 0);
            text.push_str(choice["delta"]["content"].as_str().unwrap_or_default());
        }
    }
    let last = chunks.last().expect("last");
    assert!(last["choices"][0]["finish_reason"].is_string());
    let (expected, _, _) = expected_text(
        &chat_prompt("Hi"),
        &SamplingParams {
            max_tokens: 8,
            temperature_milli: 0,
            top_p_milli: 1000,
            seed: 0,
            choice_index: 0,
        },
    );
    assert_eq!(text, expected, "greedy output does not depend on the seed");
    server.stop().await;
}

#[tokio::test]
async fn stop_strings_truncate_the_text() {
    let server = TestServer::start(Backend::Sqlite).await;
    let params = SamplingParams {
        max_tokens: 30,
        temperature_milli: 0,
        top_p_milli: 1000,
        seed: 0,
        choice_index: 0,
    };
    let prompt_text = "The quick brown fox";
    let prompt = bundle().tokenizer.encode(prompt_text).expect("encodes");
    let (full, _, _) = expected_text(&prompt, &params);
    let chars: Vec<char> = full.chars().collect();
    assert!(
        chars.len() > 6,
        "reference text too short to test stops: {full:?}"
    );
    let stop: String = chars[3..5].iter().collect();
    let cut = full.find(&stop).expect("stop occurs");
    for stream in [false, true] {
        let body = json!({
            "model": MODEL, "prompt": prompt_text, "max_tokens": 30, "temperature": 0,
            "stop": [stop.clone(), "\u{1}never"], "stream": stream
        });
        let r = server
            .http
            .post(format!("{}/v1/completions", server.base))
            .bearer_auth(&server.key)
            .json(&body)
            .send()
            .await
            .expect("reachable");
        assert_eq!(r.status(), StatusCode::OK);
        let (text, finish) = if stream {
            let events = sse_events(&r.text().await.expect("body"));
            let mut text = String::new();
            let mut finish = None;
            for e in &events[..events.len() - 1] {
                let c: Value = serde_json::from_str(e).expect("JSON");
                text.push_str(c["choices"][0]["text"].as_str().unwrap_or_default());
                if let Some(f) = c["choices"][0]["finish_reason"].as_str() {
                    finish = Some(f.to_string());
                }
            }
            (text, finish)
        } else {
            let v: Value = r.json().await.expect("json");
            (
                v["choices"][0]["text"].as_str().expect("text").to_string(),
                v["choices"][0]["finish_reason"]
                    .as_str()
                    .map(str::to_string),
            )
        };
        assert_eq!(text, full[..cut], "stream = {stream}");
        assert_eq!(finish.as_deref(), Some("stop"));
    }
    server.stop().await;
}

#[tokio::test]
async fn executor_api_checks_results_and_callers() {
    let server = TestServer::start_with(Backend::Sqlite, crate::common::test_config(), false).await;
    let http = &server.http;
    let base = &server.base;
    // Unknown executor.
    let r = http
        .post(format!("{base}/executor/v1/lease"))
        .bearer_auth("nope")
        .json(&json!({"max_jobs": 1}))
        .send()
        .await
        .expect("reachable");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // Malformed executor bodies are OpenAI-style 400s.
    let r = http
        .post(format!("{base}/executor/v1/complete"))
        .bearer_auth(crate::common::EXECUTOR_TOKEN)
        .json(&json!({"job_id": "x"}))
        .send()
        .await
        .expect("reachable");
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let v: Value = r.json().await.expect("json");
    assert!(v["error"]["message"].is_string());

    // Admit a request (streaming, so the response starts at once), lease it, report a bad result.
    let stream = http
        .post(format!("{base}/v1/completions"))
        .bearer_auth(&server.key)
        .json(&json!({"model": MODEL, "prompt": "Hello", "max_tokens": 4, "temperature": 0, "stream": true}))
        .send()
        .await
        .expect("reachable");
    assert_eq!(stream.status(), StatusCode::OK);
    let leased: Value = http
        .post(format!("{base}/executor/v1/lease"))
        .bearer_auth(crate::common::EXECUTOR_TOKEN)
        .json(&json!({"max_jobs": 4, "wait_ms": 5000, "lease_ms": 200}))
        .send()
        .await
        .expect("reachable")
        .json()
        .await
        .expect("json");
    let job = &leased["jobs"][0];
    assert_eq!(job["attempt"], 1);
    assert_eq!(job["params"]["maxTokens"], 4);
    let bad = json!({
        "job_id": job["job_id"], "attempt": 1, "tokens": [1, 2], "finish_reason": "length",
        "trace_root": format!("0x{}", "00".repeat(32)), "op_count": 1,
        "executor": format!("0x{}", "11".repeat(20))
    });
    let r = http
        .post(format!("{base}/executor/v1/complete"))
        .bearer_auth(crate::common::EXECUTOR_TOKEN)
        .json(&bad)
        .send()
        .await
        .expect("reachable");
    assert_eq!(
        r.status(),
        StatusCode::BAD_REQUEST,
        "length finish with 2 of 4 tokens"
    );

    // The 200 ms lease expires; the real worker takes the job over and the stream completes.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let worker = crate::common::spawn_worker(base.clone(), crate::common::EXECUTOR_TOKEN.into());
    let body = tokio::time::timeout(Duration::from_secs(30), stream.text())
        .await
        .expect("stream ends")
        .expect("body");
    assert!(body.trim_end().ends_with("data: [DONE]"), "{body}");
    let r = http
        .post(format!("{base}/executor/v1/tokens"))
        .bearer_auth(crate::common::EXECUTOR_TOKEN)
        .json(&json!({"job_id": job["job_id"], "attempt": 1, "offset": 0, "tokens": [1]}))
        .send()
        .await
        .expect("reachable");
    assert_eq!(
        r.status(),
        StatusCode::CONFLICT,
        "the first lease was taken over"
    );
    worker.abort();
    server.stop().await;
}

#[tokio::test]
async fn health_and_metrics() {
    let server = TestServer::start(Backend::Sqlite).await;
    let (status, health) = server.get("/health").await;
    assert_eq!((status, &health["status"]), (StatusCode::OK, &json!("ok")));
    let (status, _) = server
        .post(
            "/v1/completions",
            &json!({"model": MODEL, "prompt": "Hi", "max_tokens": 2}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let _ = server.get("/v1/models/unknown").await;
    let text = server
        .http
        .get(format!("{}/metrics", server.base))
        .send()
        .await
        .expect("reachable")
        .text()
        .await
        .expect("text");
    for needle in [
        "verinfer_sequencer_http_requests_total{route=\"/v1/completions\",status=\"200\"} 1",
        "verinfer_sequencer_http_requests_total{route=\"/v1/models/{*id}\",status=\"404\"} 1",
        "verinfer_sequencer_http_request_duration_seconds_bucket",
        "verinfer_sequencer_queue_depth{state=\"queued\"}",
        "verinfer_sequencer_requests_admitted_total{endpoint=\"completion\"} 1",
        "verinfer_sequencer_jobs_completed_total 1",
    ] {
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }
    server.stop().await;
}
