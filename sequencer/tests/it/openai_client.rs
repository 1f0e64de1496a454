//! The strict official-style client, `async-openai` 0.43, against the running server: models, chat and completions,
//! streaming and not, `n > 1`, and errors surfacing as its typed `ApiError` (never a parse error).

use crate::common::{Backend, MODEL, TestServer};
use async_openai::Client;
use async_openai::config::OpenAIConfig;
use async_openai::error::OpenAIError;
use async_openai::types::chat::{
    ChatCompletionRequestSystemMessageArgs, ChatCompletionRequestUserMessageArgs,
    ChatCompletionStreamOptions, CreateChatCompletionRequestArgs, FinishReason,
};
use async_openai::types::completions::CreateCompletionRequestArgs;
use futures_util::StreamExt;
use reqwest::StatusCode;
use std::time::Duration;

fn client(server: &TestServer, key: &str) -> Client<OpenAIConfig> {
    Client::with_config(
        OpenAIConfig::new()
            .with_api_base(format!("{}/v1", server.base))
            .with_api_key(key),
    )
}

fn api_error(e: OpenAIError) -> (StatusCode, async_openai::error::ApiError) {
    match e {
        OpenAIError::ApiError(r) => (r.status_code, r.api_error),
        other => panic!("expected a typed API error, got {other:?}"),
    }
}

async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), f)
        .await
        .expect("no hang")
}

#[tokio::test]
async fn async_openai_round_trips() {
    let server = TestServer::start(Backend::Postgres).await;
    let c = client(&server, &server.key);

    let models = within(c.models().list()).await.expect("list models");
    assert_eq!(models.data[0].id, MODEL);
    let model = within(c.models().retrieve(MODEL)).await.expect("retrieve");
    assert_eq!(model.owned_by, "verinfer");

    // Chat, n = 2.
    let req = CreateChatCompletionRequestArgs::default()
        .model(MODEL)
        .messages([
            ChatCompletionRequestSystemMessageArgs::default()
                .content("You are terse.")
                .build()
                .expect("message")
                .into(),
            ChatCompletionRequestUserMessageArgs::default()
                .content("Hello world")
                .build()
                .expect("message")
                .into(),
        ])
        .max_completion_tokens(12u32)
        .temperature(0.9)
        .seed(11)
        .n(2u8)
        .build()
        .expect("request");
    let chat = within(c.chat().create(req.clone())).await.expect("chat");
    assert!(chat.id.starts_with("chatcmpl-"));
    assert_eq!(chat.choices.len(), 2);
    for (i, choice) in chat.choices.iter().enumerate() {
        assert_eq!(choice.index as usize, i);
        assert!(matches!(
            choice.finish_reason,
            Some(FinishReason::Stop | FinishReason::Length)
        ));
    }
    let usage = chat.usage.clone().expect("usage");
    assert_eq!(
        usage.total_tokens,
        usage.prompt_tokens + usage.completion_tokens
    );

    // The same request streamed gives the same texts (same seed), with the usage chunk last.
    let mut streamed = req;
    streamed.stream = Some(true);
    streamed.stream_options = Some(ChatCompletionStreamOptions {
        include_usage: Some(true),
        ..Default::default()
    });
    let mut stream = within(c.chat().create_stream(streamed))
        .await
        .expect("stream");
    let mut texts = [String::new(), String::new()];
    let mut stream_usage = None;
    while let Some(chunk) = within(stream.next()).await {
        let chunk = chunk.expect("chunk parses");
        for choice in &chunk.choices {
            texts[choice.index as usize]
                .push_str(choice.delta.content.as_deref().unwrap_or_default());
        }
        if chunk.usage.is_some() {
            stream_usage = chunk.usage;
        }
    }
    for (text, choice) in texts.iter().zip(&chat.choices) {
        assert_eq!(Some(text.as_str()), choice.message.content.as_deref());
    }
    assert_eq!(
        stream_usage.map(|u| u.total_tokens),
        Some(usage.total_tokens)
    );

    // Completions, plain and streamed.
    let req = CreateCompletionRequestArgs::default()
        .model(MODEL)
        .prompt("The quick brown fox")
        .max_tokens(10u32)
        .temperature(0.0)
        .build()
        .expect("request");
    let done = within(c.completions().create(req.clone()))
        .await
        .expect("completion");
    assert!(done.id.starts_with("cmpl-"));
    let mut streamed = req;
    streamed.stream = Some(true);
    let mut stream = within(c.completions().create_stream(streamed))
        .await
        .expect("stream");
    let mut text = String::new();
    while let Some(chunk) = within(stream.next()).await {
        text.push_str(&chunk.expect("chunk parses").choices[0].text);
    }
    assert_eq!(text, done.choices[0].text);
    server.stop().await;
}

#[tokio::test]
async fn async_openai_gets_typed_errors() {
    let server = TestServer::start(Backend::Sqlite).await;
    let c = client(&server, &server.key);
    let chat = |model: &str, max_tokens: u32, temperature: f32| {
        CreateChatCompletionRequestArgs::default()
            .model(model)
            .messages([ChatCompletionRequestUserMessageArgs::default()
                .content("Hello")
                .build()
                .expect("message")
                .into()])
            .max_completion_tokens(max_tokens)
            .temperature(temperature)
            .build()
            .expect("request")
    };

    let (status, e) = api_error(
        within(c.chat().create(chat("gpt-9", 4, 0.0)))
            .await
            .expect_err("404"),
    );
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(e.code.as_deref(), Some("model_not_found"));
    assert_eq!(e.param.as_deref(), Some("model"));

    let (status, e) = api_error(
        within(c.chat().create(chat(MODEL, 4, 5.0)))
            .await
            .expect_err("400"),
    );
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(e.param.as_deref(), Some("temperature"));
    assert_eq!(e.r#type.as_deref(), Some("invalid_request_error"));

    let (status, e) = api_error(
        within(c.chat().create(chat(MODEL, 10_000, 0.0)))
            .await
            .expect_err("context"),
    );
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(e.code.as_deref(), Some("context_length_exceeded"));
    assert_eq!(e.param.as_deref(), Some("messages"));

    // Streaming requests fail the same way, before any chunk.
    let mut bad = chat("gpt-9", 4, 0.0);
    bad.stream = Some(true);
    let (status, _) = api_error(
        within(c.chat().create_stream(bad))
            .await
            .err()
            .expect("404"),
    );
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (status, e) = api_error(
        within(client(&server, "sk-unknown").models().list())
            .await
            .expect_err("401"),
    );
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(e.code.as_deref(), Some("invalid_api_key"));

    let (status, _) = api_error(within(c.models().retrieve("nope")).await.expect_err("404"));
    assert_eq!(status, StatusCode::NOT_FOUND);
    server.stop().await;
}
