//! Admission throughput (ignored by default; `cargo test -p verinfer-sequencer --test it -- --ignored --nocapture
//! bench`): admitted requests/s and time-to-response-head percentiles with the tiny model, no executor.

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
    let start = Instant::now();
    let per = total / concurrency;
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let server = server.clone();
            let body = body.clone();
            tokio::spawn(async move {
                let mut lat = Vec::with_capacity(per);
                for _ in 0..per {
                    let t = Instant::now();
                    let r = server
                        .http
                        .post(format!("{}/v1/chat/completions", server.base))
                        .bearer_auth(&server.key)
                        .json(&body)
                        .send()
                        .await
                        .expect("reachable");
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
    println!(
        "{backend:?}: {} admitted in {:.2?} = {:.0} req/s; head latency p50 {:.1?} p99 {:.1?}",
        lat.len(),
        elapsed,
        lat.len() as f64 / elapsed.as_secs_f64(),
        pct(0.5),
        pct(0.99)
    );
    if let Ok(server) = Arc::try_unwrap(server) {
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark"]
async fn bench_admission() {
    admission(Backend::Sqlite, 2000, 32).await;
    admission(Backend::Postgres, 2000, 32).await;
}
