//! Bad input of every kind gets OpenAI error JSON with a 4xx status: never a 5xx, never plain text, never a hang.

use crate::common::{Backend, MODEL, TestServer};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;

/// Sends a raw body; returns the status and the parsed error body, checking its exact shape.
async fn send_raw(
    server: &TestServer,
    method: reqwest::Method,
    path: &str,
    body: Vec<u8>,
) -> (StatusCode, Value) {
    let r = tokio::time::timeout(
        Duration::from_secs(30),
        server
            .http
            .request(method, format!("{}{path}", server.base))
            .bearer_auth(&server.key)
            .header("content-type", "application/json")
            .body(body)
            .send(),
    )
    .await
    .expect("no hang")
    .expect("server answers");
    let status = r.status();
    let text = r.text().await.expect("body");
    let v: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{path} answered {status} with non-JSON {text:?}: {e}"));
    let error = v["error"].as_object().expect("error object");
    assert!(error["message"].is_string(), "{v}");
    assert!(error["type"].is_string(), "{v}");
    assert!(
        error.contains_key("param") && (error["param"].is_string() || error["param"].is_null())
    );
    assert!(error.contains_key("code") && (error["code"].is_string() || error["code"].is_null()));
    (status, v)
}

fn chat(extra: Value) -> Vec<u8> {
    let mut body =
        json!({"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            if v.is_null() {
                b.remove(k);
            } else {
                b.insert(k.clone(), v.clone());
            }
        }
    }
    serde_json::to_vec(&body).expect("json")
}

/// (name, path, body, expected status, expected `param`).
type Case = (
    &'static str,
    &'static str,
    Vec<u8>,
    StatusCode,
    Option<&'static str>,
);

#[tokio::test]
async fn bad_input_is_a_4xx_with_openai_error_json() {
    // No worker: nothing here may need one.
    let server = TestServer::start_with(Backend::Sqlite, crate::common::test_config(), false).await;
    let post = reqwest::Method::POST;
    let cases: Vec<Case> = vec![
        (
            "malformed",
            "/v1/chat/completions",
            b"{not json".to_vec(),
            StatusCode::BAD_REQUEST,
            None,
        ),
        (
            "truncated",
            "/v1/chat/completions",
            br#"{"model": "tiny", "messages": [{"role": "us"#.to_vec(),
            StatusCode::BAD_REQUEST,
            None,
        ),
        (
            "empty body",
            "/v1/chat/completions",
            Vec::new(),
            StatusCode::BAD_REQUEST,
            None,
        ),
        (
            "not utf-8",
            "/v1/completions",
            vec![0xff, 0xfe, b'{'],
            StatusCode::BAD_REQUEST,
            None,
        ),
        (
            "array body",
            "/v1/chat/completions",
            b"[1, 2]".to_vec(),
            StatusCode::BAD_REQUEST,
            None,
        ),
        (
            "trailing garbage",
            "/v1/completions",
            br#"{"model": "tiny", "prompt": "x"} x"#.to_vec(),
            StatusCode::BAD_REQUEST,
            None,
        ),
        (
            "missing model",
            "/v1/chat/completions",
            chat(json!({"model": null})),
            StatusCode::BAD_REQUEST,
            Some("model"),
        ),
        (
            "model not a string",
            "/v1/chat/completions",
            chat(json!({"model": 5})),
            StatusCode::BAD_REQUEST,
            Some("model"),
        ),
        (
            "missing messages",
            "/v1/chat/completions",
            chat(json!({"messages": null})),
            StatusCode::BAD_REQUEST,
            Some("messages"),
        ),
        (
            "messages not an array",
            "/v1/chat/completions",
            chat(json!({"messages": "hi"})),
            StatusCode::BAD_REQUEST,
            Some("messages"),
        ),
        (
            "empty messages",
            "/v1/chat/completions",
            chat(json!({"messages": []})),
            StatusCode::BAD_REQUEST,
            Some("messages"),
        ),
        (
            "unknown role",
            "/v1/chat/completions",
            chat(json!({"messages": [{"role": "wizard", "content": "x"}]})),
            StatusCode::BAD_REQUEST,
            Some("messages[0].role"),
        ),
        (
            "message not an object",
            "/v1/chat/completions",
            chat(json!({"messages": ["hi"]})),
            StatusCode::BAD_REQUEST,
            Some("messages[0]"),
        ),
        (
            "content wrong type",
            "/v1/chat/completions",
            chat(json!({"messages": [{"role": "user", "content": 5}]})),
            StatusCode::BAD_REQUEST,
            Some("messages[0].content"),
        ),
        (
            "image part",
            "/v1/chat/completions",
            chat(
                json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}),
            ),
            StatusCode::BAD_REQUEST,
            Some("messages[0].content[0].type"),
        ),
        (
            "temperature type",
            "/v1/chat/completions",
            chat(json!({"temperature": "hot"})),
            StatusCode::BAD_REQUEST,
            Some("temperature"),
        ),
        (
            "temperature high",
            "/v1/chat/completions",
            chat(json!({"temperature": 2.01})),
            StatusCode::BAD_REQUEST,
            Some("temperature"),
        ),
        (
            "temperature negative",
            "/v1/chat/completions",
            chat(json!({"temperature": -0.1})),
            StatusCode::BAD_REQUEST,
            Some("temperature"),
        ),
        (
            "top_p zero",
            "/v1/chat/completions",
            chat(json!({"top_p": 0})),
            StatusCode::BAD_REQUEST,
            Some("top_p"),
        ),
        (
            "top_p high",
            "/v1/chat/completions",
            chat(json!({"top_p": 1.5})),
            StatusCode::BAD_REQUEST,
            Some("top_p"),
        ),
        (
            "max_tokens zero",
            "/v1/chat/completions",
            chat(json!({"max_tokens": 0})),
            StatusCode::BAD_REQUEST,
            Some("max_tokens"),
        ),
        (
            "max_tokens negative",
            "/v1/chat/completions",
            chat(json!({"max_tokens": -3})),
            StatusCode::BAD_REQUEST,
            Some("max_tokens"),
        ),
        (
            "max_tokens decimal",
            "/v1/chat/completions",
            chat(json!({"max_tokens": 2.5})),
            StatusCode::BAD_REQUEST,
            Some("max_tokens"),
        ),
        (
            "max_tokens huge",
            "/v1/chat/completions",
            chat(json!({"max_tokens": 1e30})),
            StatusCode::BAD_REQUEST,
            Some("max_tokens"),
        ),
        (
            "max_completion_tokens over context",
            "/v1/chat/completions",
            chat(json!({"max_completion_tokens": 4_000_000_000u64})),
            StatusCode::BAD_REQUEST,
            Some("messages"),
        ),
        (
            "n zero",
            "/v1/chat/completions",
            chat(json!({"n": 0})),
            StatusCode::BAD_REQUEST,
            Some("n"),
        ),
        (
            "n too big",
            "/v1/chat/completions",
            chat(json!({"n": 129})),
            StatusCode::BAD_REQUEST,
            Some("n"),
        ),
        (
            "seed type",
            "/v1/chat/completions",
            chat(json!({"seed": "x"})),
            StatusCode::BAD_REQUEST,
            Some("seed"),
        ),
        (
            "seed out of range",
            "/v1/chat/completions",
            chat(json!({"seed": 1e20})),
            StatusCode::BAD_REQUEST,
            Some("seed"),
        ),
        (
            "stop type",
            "/v1/chat/completions",
            chat(json!({"stop": 3})),
            StatusCode::BAD_REQUEST,
            Some("stop"),
        ),
        (
            "stop too many",
            "/v1/chat/completions",
            chat(json!({"stop": ["a", "b", "c", "d", "e"]})),
            StatusCode::BAD_REQUEST,
            Some("stop"),
        ),
        (
            "stream type",
            "/v1/chat/completions",
            chat(json!({"stream": "yes"})),
            StatusCode::BAD_REQUEST,
            Some("stream"),
        ),
        (
            "stream_options without stream",
            "/v1/chat/completions",
            chat(json!({"stream_options": {"include_usage": true}})),
            StatusCode::BAD_REQUEST,
            Some("stream_options"),
        ),
        (
            "logprobs type",
            "/v1/chat/completions",
            chat(json!({"logprobs": 3})),
            StatusCode::BAD_REQUEST,
            Some("logprobs"),
        ),
        (
            "top_logprobs without logprobs",
            "/v1/chat/completions",
            chat(json!({"top_logprobs": 2})),
            StatusCode::BAD_REQUEST,
            Some("top_logprobs"),
        ),
        (
            "top_logprobs high",
            "/v1/chat/completions",
            chat(json!({"logprobs": true, "top_logprobs": 21})),
            StatusCode::BAD_REQUEST,
            Some("top_logprobs"),
        ),
        (
            "penalty",
            "/v1/chat/completions",
            chat(json!({"frequency_penalty": 0.5})),
            StatusCode::BAD_REQUEST,
            Some("frequency_penalty"),
        ),
        (
            "tools",
            "/v1/chat/completions",
            chat(json!({"tools": [{"type": "function"}]})),
            StatusCode::BAD_REQUEST,
            Some("tools"),
        ),
        (
            "unknown model",
            "/v1/chat/completions",
            chat(json!({"model": "gpt-9"})),
            StatusCode::NOT_FOUND,
            Some("model"),
        ),
        (
            "prompt missing",
            "/v1/completions",
            br#"{"model": "tiny"}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            Some("prompt"),
        ),
        (
            "prompt type",
            "/v1/completions",
            br#"{"model": "tiny", "prompt": {"a": 1}}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            Some("prompt"),
        ),
        (
            "prompt empty array",
            "/v1/completions",
            br#"{"model": "tiny", "prompt": []}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            Some("prompt"),
        ),
        (
            "prompt empty string",
            "/v1/completions",
            br#"{"model": "tiny", "prompt": ""}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            Some("prompt"),
        ),
        (
            "prompt token out of vocab",
            "/v1/completions",
            br#"{"model": "tiny", "prompt": [1, 999999]}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            Some("prompt[1]"),
        ),
        (
            "prompt negative token",
            "/v1/completions",
            br#"{"model": "tiny", "prompt": [-1]}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            Some("prompt[0]"),
        ),
        (
            "several prompts",
            "/v1/completions",
            br#"{"model": "tiny", "prompt": ["a", "b"]}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            Some("prompt"),
        ),
        (
            "completions logprobs high",
            "/v1/completions",
            br#"{"model": "tiny", "prompt": "a", "logprobs": 6}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            Some("logprobs"),
        ),
        (
            "echo",
            "/v1/completions",
            br#"{"model": "tiny", "prompt": "a", "echo": true}"#.to_vec(),
            StatusCode::BAD_REQUEST,
            Some("echo"),
        ),
        (
            "executor body",
            "/executor/v1/lease",
            b"{\"max_jobs\": \"x\"".to_vec(),
            StatusCode::UNAUTHORIZED,
            None,
        ),
    ];
    for (name, path, body, status, param) in cases {
        let (got, v) = send_raw(&server, post.clone(), path, body).await;
        assert_eq!(got, status, "{name}: {v}");
        assert_eq!(v["error"]["param"].as_str(), param, "{name}: {v}");
    }

    // Prompts over the context, short and very long (the long one is refused before tokenizing).
    for (path, body, param) in [
        (
            "/v1/completions",
            json!({"model": MODEL, "prompt": "word ".repeat(400)}),
            "prompt",
        ),
        (
            "/v1/completions",
            json!({"model": MODEL, "prompt": "x".repeat(900_000)}),
            "prompt",
        ),
        (
            "/v1/chat/completions",
            json!({"model": MODEL, "messages": [{"role": "user", "content": "hello ".repeat(300)}]}),
            "messages",
        ),
        (
            "/v1/completions",
            json!({"model": MODEL, "prompt": "Hello", "max_tokens": 300}),
            "prompt",
        ),
    ] {
        let (got, v) = send_raw(
            &server,
            post.clone(),
            path,
            serde_json::to_vec(&body).expect("json"),
        )
        .await;
        assert_eq!(got, StatusCode::BAD_REQUEST, "{v}");
        assert_eq!(v["error"]["code"], "context_length_exceeded");
        assert_eq!(v["error"]["param"], param);
    }

    // 10 MB body → 413 with the JSON body.
    let big = format!(
        r#"{{"model": "tiny", "prompt": "{}"}}"#,
        "a".repeat(10 * 1024 * 1024)
    );
    let (got, v) = send_raw(&server, post.clone(), "/v1/completions", big.into_bytes()).await;
    assert_eq!(got, StatusCode::PAYLOAD_TOO_LARGE, "{v}");

    // Unknown routes and wrong methods.
    let (got, _) = send_raw(&server, reqwest::Method::GET, "/v1/nothing", Vec::new()).await;
    assert_eq!(got, StatusCode::NOT_FOUND);
    let (got, _) = send_raw(
        &server,
        reqwest::Method::GET,
        "/v1/chat/completions",
        Vec::new(),
    )
    .await;
    assert_eq!(got, StatusCode::METHOD_NOT_ALLOWED);

    // Nothing above reached storage as a request.
    let depth = server.state.storage().queue_depth().await.expect("depth");
    assert_eq!(depth.queued, 0);
    server.stop().await;
}

#[tokio::test]
async fn overload_is_429_with_retry_after() {
    let config = verinfer_sequencer::SequencerConfig {
        max_queue_depth: 2,
        ..crate::common::test_config()
    };
    // No worker: jobs stay queued; no recount: the admission-side count alone decides.
    let server = TestServer::start_full(Backend::Sqlite, config, false, false).await;
    let body = json!({"model": MODEL, "prompt": "Hi", "max_tokens": 2, "stream": true});
    let mut streams = Vec::new();
    for _ in 0..2 {
        let r = server
            .http
            .post(format!("{}/v1/completions", server.base))
            .bearer_auth(&server.key)
            .json(&body)
            .send()
            .await
            .expect("reachable");
        assert_eq!(r.status(), StatusCode::OK);
        streams.push(r);
    }
    let r = server
        .http
        .post(format!("{}/v1/completions", server.base))
        .bearer_auth(&server.key)
        .json(&body)
        .send()
        .await
        .expect("reachable");
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers().contains_key("retry-after"));
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["error"]["code"], "server_overloaded");
    drop(streams);
    server.stop().await;
}
