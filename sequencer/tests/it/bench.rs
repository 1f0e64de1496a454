//! Admission throughput (ignored by default; `cargo test --release -p verinfer-sequencer --test it -- --ignored
//! --nocapture bench`): admitted requests/s and time-to-response-head percentiles with the tiny model, no executor,
//! against a baseline measured in the same run: `GET /health` on the same server with the same client and
//! concurrency (the HTTP floor, nothing stored).

use crate::common::{Backend, MODEL, TestServer, test_config};
use reqwest::StatusCode;
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};
use verinfer_sequencer::SequencerConfig;

async fn admission(backend: Backend, total: usize, concurrency: usize) {
    let config = SequencerConfig {
        max_queue_depth: 1_000_000,
        ..test_config()
    };
    let server = Arc::new(TestServer::start_full(backend, config, false, true).await);
    let body = json!({"model": MODEL, "messages": [{"role": "user", "content": "Hello world, how are you?"}],
        "max_tokens": 8, "stream": true});
    let health = drive(&server, total, concurrency, None).await;
    let admitted = drive(&server, total, concurrency, Some(&body)).await;
    println!("{backend:?} baseline GET /health: {health}");
    println!("{backend:?} admission:          {admitted}");
    println!(
        "{backend:?} admission / baseline: {:.2}x req/s, p99 {:.1}x",
        admitted.rate / health.rate,
        admitted.p99.as_secs_f64() / health.p99.as_secs_f64()
    );
    if let Ok(server) = Arc::try_unwrap(server) {
        server.stop().await;
    }
}

/// Requests/s and latency percentiles of one load run.
struct Load {
    count: usize,
    elapsed: Duration,
    rate: f64,
    p50: Duration,
    p99: Duration,
}

impl std::fmt::Display for Load {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} requests in {:.2?} = {:.0} req/s; head latency p50 {:.1?} p99 {:.1?}",
            self.count, self.elapsed, self.rate, self.p50, self.p99
        )
    }
}

/// `total` requests from `concurrency` clients: chat completions with `body`, or `GET /health` when `None`.
async fn drive(
    server: &Arc<TestServer>,
    total: usize,
    concurrency: usize,
    body: Option<&serde_json::Value>,
) -> Load {
    let start = Instant::now();
    let per = total / concurrency;
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let server = server.clone();
            let body = body.cloned();
            tokio::spawn(async move {
                let mut lat = Vec::with_capacity(per);
                for _ in 0..per {
                    let t = Instant::now();
                    let request = match &body {
                        Some(body) => server
                            .http
                            .post(format!("{}/v1/chat/completions", server.base))
                            .bearer_auth(&server.key)
                            .json(body),
                        None => server.http.get(format!("{}/health", server.base)),
                    };
                    let r = request.send().await.expect("reachable");
                    assert_eq!(r.status(), StatusCode::OK);
                    lat.push(t.elapsed());
                    drop(r);
                }
                lat
            })
        })
        .collect();
    let mut lat: Vec<Duration> = Vec::new();
    for t in tasks {
        lat.extend(t.await.expect("client task"));
    }
    let elapsed = start.elapsed();
    lat.sort();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    Load {
        count: lat.len(),
        elapsed,
        rate: lat.len() as f64 / elapsed.as_secs_f64(),
        p50: pct(0.5),
        p99: pct(0.99),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark"]
async fn bench_admission() {
    admission(Backend::Sqlite, 2000, 32).await;
    admission(Backend::Postgres, 2000, 32).await;
}
