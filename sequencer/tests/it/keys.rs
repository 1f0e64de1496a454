//! API keys end to end: a created key works, revoked and unknown keys get 401, per-key limits give 429 with
//! `Retry-After`, and the admin API needs its token.

use crate::common::{ADMIN_TOKEN, Backend, MODEL, TestServer, on_both};
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn models_with(server: &TestServer, key: Option<&str>) -> (StatusCode, Value) {
    let mut req = server.http.get(format!("{}/v1/models", server.base));
    if let Some(key) = key {
        req = req.bearer_auth(key);
    }
    let r = req.send().await.expect("reachable");
    (r.status(), r.json().await.expect("json"))
}

#[tokio::test]
async fn keys_lifecycle() {
    on_both(|backend| async move {
        let server = TestServer::start(backend).await;
        let created = server.create_key(json!({"name": "dapp"})).await;
        let key = created["key"].as_str().expect("key shown once");
        assert!(key.starts_with("sk-") && key.len() == 67);
        let id = created["id"].as_i64().expect("id");

        let (status, _) = models_with(&server, Some(key)).await;
        assert_eq!(status, StatusCode::OK);

        // The listing never shows keys, only prefixes, with usage.
        let list: Value = server
            .http
            .get(format!("{}/admin/keys", server.admin))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("reachable")
            .json()
            .await
            .expect("json");
        let text = list.to_string();
        assert!(!text.contains(key), "a key leaked into the listing");
        assert!(text.contains(&key[..10]));
        assert_eq!(list["data"].as_array().expect("data").len(), 2);

        let r = server
            .http
            .delete(format!("{}/admin/keys/{id}", server.admin))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("reachable");
        assert_eq!(r.status(), StatusCode::OK);
        let (status, v) = models_with(&server, Some(key)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(v["error"]["code"], "invalid_api_key");
        let r = server
            .http
            .delete(format!("{}/admin/keys/{id}", server.admin))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("reachable");
        assert_eq!(r.status(), StatusCode::NOT_FOUND);

        let (status, _) = models_with(&server, Some("sk-0000")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (status, v) = models_with(&server, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(
            v["error"]["message"]
                .as_str()
                .expect("message")
                .contains("API key")
        );

        // Auth comes before the body: a bad body with a bad key is 401.
        let r = server
            .http
            .post(format!("{}/v1/chat/completions", server.base))
            .bearer_auth("sk-bad")
            .body("{nope")
            .send()
            .await
            .expect("reachable");
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

        // The admin API needs its token.
        for token in [None, Some("wrong")] {
            let mut req = server.http.get(format!("{}/admin/keys", server.admin));
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            let r = req.send().await.expect("reachable");
            assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        }
        server.stop().await;
    })
    .await;
}

#[tokio::test]
async fn per_key_limits() {
    let server = TestServer::start(Backend::Sqlite).await;
    let limited = server
        .create_key(json!({"name": "slow", "rpm_limit": 2}))
        .await;
    let key = limited["key"].as_str().expect("key").to_string();
    let body = json!({"model": MODEL, "prompt": "Hi", "max_tokens": 2});
    for _ in 0..2 {
        let r = server
            .http
            .post(format!("{}/v1/completions", server.base))
            .bearer_auth(&key)
            .json(&body)
            .send()
            .await
            .expect("reachable");
        assert_eq!(r.status(), StatusCode::OK);
    }
    let r = server
        .http
        .post(format!("{}/v1/completions", server.base))
        .bearer_auth(&key)
        .json(&body)
        .send()
        .await
        .expect("reachable");
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!((1..=60).contains(&retry));
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["error"]["code"], "rate_limit_exceeded");
    assert_eq!(v["error"]["type"], "requests");
    // Other keys are not affected.
    let (status, _) = server.post("/v1/completions", &body).await;
    assert_eq!(status, StatusCode::OK);

    // Tokens per minute: prompt + max_tokens × n.
    let tpm = server
        .create_key(json!({"name": "tpm", "tpm_limit": 40}))
        .await;
    let key = tpm["key"].as_str().expect("key").to_string();
    let r = server
        .http
        .post(format!("{}/v1/completions", server.base))
        .bearer_auth(&key)
        .json(&json!({"model": MODEL, "prompt": "Hi", "max_tokens": 20, "n": 3}))
        .send()
        .await
        .expect("reachable");
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers().contains_key("retry-after"));

    // Usage is counted per key.
    let list: Value = server
        .http
        .get(format!("{}/admin/keys", server.admin))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("reachable")
        .json()
        .await
        .expect("json");
    let slow = list["data"]
        .as_array()
        .expect("data")
        .iter()
        .find(|k| k["name"] == "slow")
        .expect("listed");
    assert_eq!(slow["usage"]["requests"], 2);
    assert!(slow["usage"]["completion_tokens"].as_u64().expect("count") >= 2);
    server.stop().await;
}
