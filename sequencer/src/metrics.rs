//! Prometheus metrics (`verinfer_sequencer_*`) and the middleware that counts every HTTP request by route and status
//! and times it.

use crate::server::AppState;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use std::time::Instant;

/// Every sequencer metric, in its own registry.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    /// `verinfer_sequencer_http_requests_total{route,status}`.
    pub http_requests: IntCounterVec,
    /// `verinfer_sequencer_http_request_duration_seconds{route}` (until the response head).
    pub http_latency: HistogramVec,
    /// `verinfer_sequencer_queue_depth{state}`: jobs queued / leased.
    pub queue_depth: IntGaugeVec,
    /// `verinfer_sequencer_requests_admitted_total{endpoint}`.
    pub admitted: IntCounterVec,
    /// `verinfer_sequencer_admission_duration_seconds`: validation to durable commit.
    pub admission_latency: Histogram,
    /// `verinfer_sequencer_jobs_leased_total`.
    pub jobs_leased: IntCounter,
    /// `verinfer_sequencer_jobs_completed_total`.
    pub jobs_completed: IntCounter,
    /// `verinfer_sequencer_tokens_generated_total`.
    pub tokens_generated: IntCounter,
    /// `verinfer_sequencer_time_to_first_token_seconds` of streamed responses.
    pub time_to_first_token: Histogram,
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let buckets = vec![
            0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            60.0,
        ];
        let http_requests = IntCounterVec::new(
            Opts::new(
                "verinfer_sequencer_http_requests_total",
                "HTTP requests by route and status",
            ),
            &["route", "status"],
        )?;
        let http_latency = HistogramVec::new(
            HistogramOpts::new(
                "verinfer_sequencer_http_request_duration_seconds",
                "Time to the response head, by route",
            )
            .buckets(buckets.clone()),
            &["route"],
        )?;
        let queue_depth = IntGaugeVec::new(
            Opts::new(
                "verinfer_sequencer_queue_depth",
                "Jobs waiting (queued) and running (leased)",
            ),
            &["state"],
        )?;
        let admitted = IntCounterVec::new(
            Opts::new(
                "verinfer_sequencer_requests_admitted_total",
                "Requests stored durably, by endpoint",
            ),
            &["endpoint"],
        )?;
        let admission_latency = Histogram::with_opts(
            HistogramOpts::new(
                "verinfer_sequencer_admission_duration_seconds",
                "Validation, tokenization and durable commit of a request",
            )
            .buckets(buckets.clone()),
        )?;
        let jobs_leased = IntCounter::new(
            "verinfer_sequencer_jobs_leased_total",
            "Job leases handed to executors",
        )?;
        let jobs_completed = IntCounter::new(
            "verinfer_sequencer_jobs_completed_total",
            "Jobs completed by executors",
        )?;
        let tokens_generated = IntCounter::new(
            "verinfer_sequencer_tokens_generated_total",
            "Output tokens of completed jobs",
        )?;
        let time_to_first_token = Histogram::with_opts(
            HistogramOpts::new(
                "verinfer_sequencer_time_to_first_token_seconds",
                "Admission to the first streamed token",
            )
            .buckets(buckets),
        )?;
        registry.register(Box::new(http_requests.clone()))?;
        registry.register(Box::new(http_latency.clone()))?;
        registry.register(Box::new(queue_depth.clone()))?;
        registry.register(Box::new(admitted.clone()))?;
        registry.register(Box::new(admission_latency.clone()))?;
        registry.register(Box::new(jobs_leased.clone()))?;
        registry.register(Box::new(jobs_completed.clone()))?;
        registry.register(Box::new(tokens_generated.clone()))?;
        registry.register(Box::new(time_to_first_token.clone()))?;
        Ok(Self {
            registry,
            http_requests,
            http_latency,
            queue_depth,
            admitted,
            admission_latency,
            jobs_leased,
            jobs_completed,
            tokens_generated,
            time_to_first_token,
        })
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        if TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .is_err()
        {
            return String::new();
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

/// Middleware: counts and times every request by its route template.
pub async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let start = Instant::now();
    let response = next.run(req).await;
    let metrics = state.metrics();
    metrics
        .http_latency
        .with_label_values(&[route.as_str()])
        .observe(start.elapsed().as_secs_f64());
    metrics
        .http_requests
        .with_label_values(&[route.as_str(), response.status().as_str()])
        .inc();
    response
}
