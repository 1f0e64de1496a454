//! The continuous-batching scheduler on the tiny synthetic model: every request's tokens, trace root and op count
//! equal a solo run of the reference interpreter, whatever it shares steps with; the token budget, the running
//! limit and the KV budget hold in every step; cancellation frees capacity without touching the others; requests
//! that can never fit are refused with a typed error; the threaded handle streams the same results.

mod common;

use common::{Gen, device};
use protocol::SamplingParams;
use std::collections::BTreeMap;
use verinfer_executor::scheduler::RequestId;
use verinfer_executor::{
    BurnEngine, Cpu, Event, Scheduler, SchedulerConfig, SchedulerError, StepStats,
};
use vir::IntModel;
use vir::gguf::GgufFile;
use vir::interp::generate_committed;
use vir::synthetic::{SyntheticSpec, synthetic_gguf};

type Rx = tokio::sync::mpsc::UnboundedReceiver<Event>;

fn model() -> IntModel {
    let bytes = synthetic_gguf(&SyntheticSpec::tiny().with_seed(11)).expect("synthetic model");
    IntModel::load(&GgufFile::parse(bytes).expect("parses")).expect("loads")
}

fn request(g: &mut Gen, vocab: usize) -> (Vec<u32>, SamplingParams) {
    let len = 1 + g.below(40) as usize;
    let prompt = (0..len).map(|_| g.below(vocab as u64) as u32).collect();
    let (temperature_milli, top_p_milli) = match g.below(3) {
        0 => (0, 1000),
        1 => (800, 900),
        _ => (1 + g.below(2000) as u32, 1 + g.below(1000) as u32),
    };
    let params = SamplingParams {
        max_tokens: 1 + g.below(12) as u32,
        temperature_milli,
        top_p_milli,
        seed: g.u64(),
        choice_index: g.below(3) as u32,
    };
    (prompt, params)
}

/// Drains a receiver: the streamed tokens and the final event.
fn drain(rx: &mut Rx) -> (Vec<u32>, Option<Event>) {
    let mut tokens = Vec::new();
    while let Ok(event) = rx.try_recv() {
        match event {
            Event::Token(t) => tokens.push(t),
            last => return (tokens, Some(last)),
        }
    }
    (tokens, None)
}

fn check_step(s: &StepStats, config: &SchedulerConfig) {
    assert!(s.tokens >= 1, "step {} ran nothing", s.step);
    assert!(
        s.tokens <= config.max_step_tokens,
        "step {}: {} tokens over the budget {}",
        s.step,
        s.tokens,
        config.max_step_tokens
    );
    assert_eq!(s.tokens, s.decode_tokens + s.prefill_tokens);
    assert!(
        s.requests <= config.max_running,
        "step {}: {} requests",
        s.step,
        s.requests
    );
    assert!(
        s.kv_reserved <= config.kv_budget,
        "step {}: {} KV positions reserved, budget {}",
        s.step,
        s.kv_reserved,
        config.kv_budget
    );
}

#[test]
fn staggered_requests_equal_solo_reference_runs() {
    let model = model();
    let engine = BurnEngine::<Cpu>::new(&model, device()).expect("engine");
    let config = SchedulerConfig {
        max_step_tokens: 24,
        max_running: 6,
        kv_budget: 160,
    };
    let mut sched = Scheduler::new(engine, config).expect("scheduler");
    let mut g = Gen::new(0x5c4e);
    let vocab = model.config.vocab_size;
    let mut requests: BTreeMap<RequestId, (Vec<u32>, SamplingParams, Rx)> = BTreeMap::new();
    let mut steps = Vec::new();
    // 32 requests, a few at a time, with steps in between.
    for wave in 0..8 {
        for _ in 0..4 {
            let (prompt, params) = request(&mut g, vocab);
            let (id, rx) = sched.submit(prompt.clone(), params).expect("submits");
            requests.insert(id, (prompt, params, rx));
        }
        for _ in 0..(wave % 3) {
            if let Some(s) = sched.step().expect("step runs") {
                steps.push(s);
            }
        }
    }
    steps.extend(sched.run_until_idle());
    assert!(sched.is_idle());
    assert_eq!(sched.kv_reserved(), 0);
    for s in &steps {
        check_step(s, &config);
    }
    assert!(
        steps
            .iter()
            .any(|s| s.decode_tokens > 0 && s.prefill_tokens > 0),
        "no step mixed decode and prefill"
    );
    assert!(steps.iter().any(|s| s.requests > 1), "nothing was batched");
    let stats = sched.stats();
    assert_eq!(stats.completed, 32);
    assert!(stats.max_step_tokens <= config.max_step_tokens);

    for (id, (prompt, params, rx)) in &mut requests {
        let (want, want_trace) =
            generate_committed(&model, prompt, params).expect("reference runs");
        let (tokens, last) = drain(rx);
        let Some(Event::Finished(done)) = last else {
            panic!("request {id}: ended with {last:?}");
        };
        assert_eq!(tokens, want.tokens, "request {id}: streamed tokens");
        assert_eq!(done.generation, want, "request {id}: generation");
        assert_eq!(
            done.trace, want_trace,
            "request {id}: trace root and op count"
        );
    }
}

#[test]
fn cancel_frees_capacity_and_leaves_others_unchanged() {
    let model = model();
    let engine = BurnEngine::<Cpu>::new(&model, device()).expect("engine");
    // Room for two requests of 8 + 20 positions at a time.
    let config = SchedulerConfig {
        max_step_tokens: 16,
        max_running: 4,
        kv_budget: 56,
    };
    let mut sched = Scheduler::new(engine, config).expect("scheduler");
    let params = |seed| SamplingParams {
        max_tokens: 20,
        temperature_milli: 900,
        top_p_milli: 950,
        seed,
        choice_index: 0,
    };
    let prompt: Vec<u32> = (1..=8).collect();
    let (a, mut rx_a) = sched.submit(prompt.clone(), params(1)).expect("a");
    let (_b, mut rx_b) = sched.submit(prompt.clone(), params(2)).expect("b");
    let (_c, mut rx_c) = sched.submit(prompt.clone(), params(3)).expect("c");
    // a and b run; c waits for KV space.
    for _ in 0..3 {
        sched.step().expect("step");
    }
    assert_eq!(sched.running(), 2);
    assert_eq!(sched.waiting(), 1);
    assert_eq!(sched.kv_reserved(), 56);
    let (streamed, last) = drain(&mut rx_a);
    assert!(!streamed.is_empty() && last.is_none(), "a is mid-stream");

    assert!(sched.cancel(a));
    assert!(!sched.cancel(a), "a second cancel finds nothing");
    assert_eq!(sched.kv_reserved(), 28, "a's reservation is freed");
    let (_, last) = drain(&mut rx_a);
    assert!(
        matches!(last, Some(Event::Failed(SchedulerError::Cancelled))),
        "a got {last:?}"
    );
    // c is admitted at the next step.
    sched.step().expect("step");
    assert_eq!(sched.running(), 2);
    assert_eq!(sched.waiting(), 0);
    sched.run_until_idle();
    assert_eq!(
        rx_a.try_recv().ok().map(|_| ()),
        None,
        "nothing after the cancel"
    );
    for (seed, rx) in [(2, &mut rx_b), (3, &mut rx_c)] {
        let (want, want_trace) =
            generate_committed(&model, &prompt, &params(seed)).expect("reference runs");
        let (tokens, last) = drain(rx);
        let Some(Event::Finished(done)) = last else {
            panic!("seed {seed}: ended with {last:?}");
        };
        assert_eq!(tokens, want.tokens);
        assert_eq!(done.trace, want_trace);
    }
    let stats = sched.stats();
    assert_eq!((stats.completed, stats.cancelled), (2, 1));

    // Dropping a receiver cancels too.
    let (_, rx) = sched.submit(prompt.clone(), params(4)).expect("d");
    sched.step().expect("step");
    assert_eq!(sched.running(), 1);
    drop(rx);
    sched.step().expect("step");
    assert!(sched.is_idle());
    assert_eq!(sched.kv_reserved(), 0);
}

#[test]
fn requests_that_cannot_fit_are_refused() {
    let model = model();
    let engine = BurnEngine::<Cpu>::new(&model, device()).expect("engine");
    let config = SchedulerConfig {
        max_step_tokens: 8,
        max_running: 2,
        kv_budget: 30,
    };
    let mut sched = Scheduler::new(engine, config).expect("scheduler");
    let params = SamplingParams {
        max_tokens: 11,
        temperature_milli: 0,
        top_p_milli: 1000,
        seed: 0,
        choice_index: 0,
    };
    let err = sched
        .submit((0..20).collect(), params)
        .expect_err("31 positions cannot fit 30");
    assert!(
        matches!(
            err,
            SchedulerError::KvBudget {
                needed: 31,
                budget: 30,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("lower max_tokens"), "{err}");
    assert!(sched.submit((0..19).collect(), params).is_ok(), "30 fit");
    let err = sched.submit(Vec::new(), params).expect_err("empty prompt");
    assert!(matches!(err, SchedulerError::Invalid(_)), "{err:?}");

    let engine = sched.into_engine();
    let bad = SchedulerConfig {
        max_step_tokens: 2,
        max_running: 4,
        kv_budget: 100,
    };
    let err = Scheduler::new(engine, bad).expect_err("budget below max_running");
    assert!(
        matches!(
            err,
            SchedulerError::Config {
                field: "max_step_tokens",
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn threaded_handle_streams_the_same_results() {
    let model = model();
    let engine = BurnEngine::<Cpu>::new(&model, device()).expect("engine");
    let config = SchedulerConfig {
        max_step_tokens: 32,
        max_running: 8,
        kv_budget: 200,
    };
    let (handle, join) = Scheduler::new(engine, config)
        .expect("scheduler")
        .spawn()
        .expect("thread starts");
    let mut g = Gen::new(77);
    let vocab = model.config.vocab_size;
    let reqs: Vec<_> = (0..10).map(|_| request(&mut g, vocab)).collect();
    let streams: Vec<_> = reqs
        .iter()
        .map(|(p, params)| handle.submit(p.clone(), *params).expect("submits"))
        .collect();
    let long = handle
        .submit(
            vec![1; 8],
            SamplingParams {
                max_tokens: 30,
                temperature_milli: 1000,
                top_p_milli: 1000,
                seed: 5,
                choice_index: 0,
            },
        )
        .expect("submits");
    long.cancel();
    let err = handle
        .submit(vec![1; 200], reqs[0].1)
        .expect_err("over the KV budget");
    assert!(matches!(err, SchedulerError::KvBudget { .. }), "{err:?}");
    for ((prompt, params), stream) in reqs.iter().zip(streams) {
        let (want, want_trace) = generate_committed(&model, prompt, params).expect("reference");
        let (tokens, done) = stream.blocking_finish().expect("finishes");
        assert_eq!(tokens, want.tokens);
        assert_eq!(done.generation, want);
        assert_eq!(done.trace, want_trace);
    }
    match long.blocking_finish() {
        Err(SchedulerError::Cancelled) => {}
        // The cancel may arrive after the request has finished.
        Ok((tokens, _)) => assert!(tokens.len() <= 30),
        Err(e) => panic!("{e}"),
    }
    let stats = handle.stats();
    assert!(stats.max_step_tokens <= config.max_step_tokens);
    drop(handle);
    let totals = join.join().expect("scheduler thread");
    assert_eq!(totals.completed + totals.cancelled, 11);
}
