//! Prometheus metrics (`verinfer_sequencer_*`) and the middleware that counts every HTTP request by route and status
//! and times it.

use crate::server::AppState;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
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
    /// `verinfer_sequencer_jobs_refused_total{reason}`: completions refused by the leaf checks (`signature`,
    /// `leaf_mismatch`, `not_bonded`, `l1_unavailable`).
    pub jobs_refused: IntCounterVec,
    /// `verinfer_sequencer_time_to_first_token_seconds` of streamed responses.
    pub time_to_first_token: Histogram,
    /// Batching, posting and finalization.
    pub settlement: SettlementMetrics,
}

/// Metrics of the batch pipeline (`crate::settlement`).
#[derive(Debug, Clone)]
pub struct SettlementMetrics {
    /// `verinfer_sequencer_batches_planned_total`: batches recorded with their data, before posting.
    pub batches_planned: IntCounter,
    /// `verinfer_sequencer_batches_posted_total`: batches this replica saw onto L1 (posted, or recovered after a
    /// crash).
    pub batches_posted: IntCounter,
    /// `verinfer_sequencer_batches_finalized_total`.
    pub batches_finalized: IntCounter,
    /// `verinfer_sequencer_batch_leaves`: leaves per planned batch.
    pub batch_leaves: Histogram,
    /// `verinfer_sequencer_batch_bytes`: encoded (posted) bytes per planned batch.
    pub batch_bytes: Histogram,
    /// `verinfer_sequencer_l1_post_duration_seconds`: one `postBatch` send until mined (and confirmed).
    pub l1_post_latency: Histogram,
    /// `verinfer_sequencer_l1_post_gas_used`: gas of each `postBatch`.
    pub l1_post_gas: Histogram,
    /// `verinfer_sequencer_l1_gas_used_total{op}`: gas spent on `post` and `finalize`.
    pub l1_gas_used: IntCounterVec,
    /// `verinfer_sequencer_l1_errors_total{op}`: failed L1 operations (retried with backoff).
    pub l1_errors: IntCounterVec,
    /// `verinfer_sequencer_last_posted_batch`: L1 batch id of the latest batch posted.
    pub last_posted_batch: IntGauge,
    /// `verinfer_sequencer_last_final_batch`: L1 batch id of the latest batch seen final.
    pub last_final_batch: IntGauge,
    /// `verinfer_sequencer_l1_bond_wei`: the sequencer's bond in the rollup contract.
    pub l1_bond_wei: Gauge,
    /// `verinfer_sequencer_leaves_rejected_total`: executed jobs never batched (bad leaf, signature or bond).
    pub leaves_rejected: IntCounter,
    /// `verinfer_sequencer_leaves_invalidated_total`: leaves proven invalid on L1.
    pub leaves_invalidated: IntCounter,
    /// `verinfer_sequencer_batch_leader`: 1 while this replica holds the batch leader lock.
    pub leader: IntGauge,
}

impl SettlementMetrics {
    fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let pow2 = |start: f64, n: usize| -> Vec<f64> {
            (0..n).map(|i| start * f64::from(1u32 << i)).collect()
        };
        let m = Self {
            batches_planned: IntCounter::new(
                "verinfer_sequencer_batches_planned_total",
                "Batches recorded durably with their data, before posting",
            )?,
            batches_posted: IntCounter::new(
                "verinfer_sequencer_batches_posted_total",
                "Batches posted to L1",
            )?,
            batches_finalized: IntCounter::new(
                "verinfer_sequencer_batches_finalized_total",
                "Batches seen final on L1",
            )?,
            batch_leaves: Histogram::with_opts(
                HistogramOpts::new("verinfer_sequencer_batch_leaves", "Leaves per batch")
                    .buckets(pow2(1.0, 15)),
            )?,
            batch_bytes: Histogram::with_opts(
                HistogramOpts::new(
                    "verinfer_sequencer_batch_bytes",
                    "Encoded (zstd) batch data bytes per batch",
                )
                .buckets(pow2(256.0, 16)),
            )?,
            l1_post_latency: Histogram::with_opts(
                HistogramOpts::new(
                    "verinfer_sequencer_l1_post_duration_seconds",
                    "postBatch: send until mined and confirmed",
                )
                .buckets(vec![
                    0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
                    300.0, 600.0,
                ]),
            )?,
            l1_post_gas: Histogram::with_opts(
                HistogramOpts::new(
                    "verinfer_sequencer_l1_post_gas_used",
                    "Gas used per postBatch",
                )
                .buckets(pow2(100_000.0, 10)),
            )?,
            l1_gas_used: IntCounterVec::new(
                Opts::new(
                    "verinfer_sequencer_l1_gas_used_total",
                    "Gas used by the sequencer's L1 transactions, by operation",
                ),
                &["op"],
            )?,
            l1_errors: IntCounterVec::new(
                Opts::new(
                    "verinfer_sequencer_l1_errors_total",
                    "Failed batch pipeline rounds, by operation (retried with backoff)",
                ),
                &["op"],
            )?,
            last_posted_batch: IntGauge::new(
                "verinfer_sequencer_last_posted_batch",
                "L1 batch id of the latest batch posted",
            )?,
            last_final_batch: IntGauge::new(
                "verinfer_sequencer_last_final_batch",
                "L1 batch id of the latest batch seen final",
            )?,
            l1_bond_wei: Gauge::new(
                "verinfer_sequencer_l1_bond_wei",
                "The sequencer's bond in the rollup contract, wei",
            )?,
            leaves_rejected: IntCounter::new(
                "verinfer_sequencer_leaves_rejected_total",
                "Executed jobs never batched: leaf, signature or executor bond does not check out",
            )?,
            leaves_invalidated: IntCounter::new(
                "verinfer_sequencer_leaves_invalidated_total",
                "Leaves proven invalid on L1",
            )?,
            leader: IntGauge::new(
                "verinfer_sequencer_batch_leader",
                "1 while this replica holds the batch leader lock",
            )?,
        };
        registry.register(Box::new(m.batches_planned.clone()))?;
        registry.register(Box::new(m.batches_posted.clone()))?;
        registry.register(Box::new(m.batches_finalized.clone()))?;
        registry.register(Box::new(m.batch_leaves.clone()))?;
        registry.register(Box::new(m.batch_bytes.clone()))?;
        registry.register(Box::new(m.l1_post_latency.clone()))?;
        registry.register(Box::new(m.l1_post_gas.clone()))?;
        registry.register(Box::new(m.l1_gas_used.clone()))?;
        registry.register(Box::new(m.l1_errors.clone()))?;
        registry.register(Box::new(m.last_posted_batch.clone()))?;
        registry.register(Box::new(m.last_final_batch.clone()))?;
        registry.register(Box::new(m.l1_bond_wei.clone()))?;
        registry.register(Box::new(m.leaves_rejected.clone()))?;
        registry.register(Box::new(m.leaves_invalidated.clone()))?;
        registry.register(Box::new(m.leader.clone()))?;
        Ok(m)
    }
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
        let jobs_refused = IntCounterVec::new(
            prometheus::Opts::new(
                "verinfer_sequencer_jobs_refused_total",
                "Executor completions refused by the leaf checks, by reason",
            ),
            &["reason"],
        )?;
        registry.register(Box::new(jobs_refused.clone()))?;
        registry.register(Box::new(jobs_completed.clone()))?;
        registry.register(Box::new(tokens_generated.clone()))?;
        registry.register(Box::new(time_to_first_token.clone()))?;
        let settlement = SettlementMetrics::new(&registry)?;
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
            jobs_refused,
            time_to_first_token,
            settlement,
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
