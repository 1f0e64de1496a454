//! Batch invariance: requests of different lengths and sampling parameters, admitted at different steps and
//! advanced by [`BurnEngine::forward_batch`] in mixed steps (prefill chunks of random size next to decode
//! tokens), each produce exactly the reference's ops, tokens and trace root — the same as alone.

mod common;

use common::{Gen, OpLog, assert_same_ops, device};
use protocol::SamplingParams;
use verinfer_executor::{BatchItem, BurnEngine, Cpu, EngineError, RequestState};
use vir::IntModel;
use vir::gguf::GgufFile;
use vir::interp::generate;
use vir::synthetic::{SyntheticSpec, synthetic_gguf};

fn model(seed: u64) -> IntModel {
    let bytes = synthetic_gguf(&SyntheticSpec::tiny().with_seed(seed)).expect("synthetic model");
    IntModel::load(&GgufFile::parse(bytes).expect("parses")).expect("loads")
}

struct Req {
    prompt: Vec<u32>,
    params: SamplingParams,
    admit_at: usize,
}

fn random_requests(g: &mut Gen, n: usize, vocab: usize) -> Vec<Req> {
    (0..n)
        .map(|i| {
            let len = 1 + g.below(if i % 3 == 0 { 120 } else { 20 }) as usize;
            let temperature_milli = if g.chance(1, 3) {
                0
            } else {
                1 + g.below(2000) as u32
            };
            Req {
                prompt: (0..len).map(|_| g.below(vocab as u64) as u32).collect(),
                params: SamplingParams {
                    max_tokens: 1 + g.below(16) as u32,
                    temperature_milli,
                    top_p_milli: 1 + g.below(1000) as u32,
                    seed: g.u64(),
                    choice_index: g.below(3) as u32,
                },
                admit_at: g.below(12) as usize,
            }
        })
        .collect()
}

/// Runs the requests through mixed batch steps; returns each request's op log and result.
fn run_batched(
    engine: &BurnEngine<Cpu>,
    reqs: &[Req],
    g: &mut Gen,
) -> Vec<(OpLog, RequestState<Cpu>)> {
    let mut states: Vec<Option<RequestState<Cpu>>> = reqs.iter().map(|_| None).collect();
    let mut logs: Vec<OpLog> = reqs.iter().map(|_| OpLog::default()).collect();
    let mut step = 0;
    let mut streamed: Vec<Vec<u32>> = vec![Vec::new(); reqs.len()];
    loop {
        if states
            .iter()
            .all(|s| s.as_ref().is_some_and(RequestState::is_finished))
        {
            break;
        }
        for (r, s) in reqs.iter().zip(states.iter_mut()) {
            if s.is_none() && r.admit_at <= step {
                *s = Some(engine.start(&r.prompt, &r.params).expect("admitted"));
            }
        }
        let mut owners = Vec::new();
        let mut items: Vec<BatchItem<'_, Cpu>> = Vec::new();
        for (i, (s, log)) in states.iter_mut().zip(logs.iter_mut()).enumerate() {
            if let Some(req) = s.as_mut().filter(|r| !r.is_finished()) {
                let max = req.max_step_positions();
                let positions = if max > 1 {
                    1 + g.below(max.min(40) as u64) as usize
                } else {
                    1
                };
                owners.push(i);
                items.push(BatchItem {
                    request: req,
                    positions,
                    sink: log,
                });
            }
        }
        if !items.is_empty() {
            let out = engine.forward_batch(&mut items).expect("step runs");
            for (o, &i) in out.iter().zip(&owners) {
                streamed[i].extend(o.token);
            }
        }
        step += 1;
        assert!(step < 1000, "scheduler does not terminate");
    }
    let done: Vec<(OpLog, RequestState<Cpu>)> = logs
        .into_iter()
        .zip(states)
        .map(|(l, s)| (l, s.expect("admitted")))
        .collect();
    for ((_, s), tokens) in done.iter().zip(&streamed) {
        assert_eq!(s.tokens(), tokens.as_slice(), "streamed tokens");
    }
    done
}

#[test]
fn batched_requests_equal_the_reference_alone() {
    let dev = device();
    let mut g = Gen::new(21);
    // 32 requests: each one shares its steps with up to 31 others.
    // The last case runs the burn ops (the CUDA path) instead of the CPU backend's host step.
    for (seed, n, burn_ops) in [(0u64, 32usize, false), (5, 12, false), (6, 12, true)] {
        let model = model(seed);
        let engine = BurnEngine::<Cpu>::new(&model, dev).expect("engine");
        let engine = if burn_ops {
            engine.with_device_ops()
        } else {
            engine
        };
        let reqs = random_requests(&mut g, n, model.config.vocab_size);
        let done = run_batched(&engine, &reqs, &mut g);
        for (i, (r, (log, state))) in reqs.iter().zip(done).enumerate() {
            let mut want_log = OpLog::default();
            let want = generate(&model, &r.prompt, &r.params, &mut want_log, &mut |_| {})
                .expect("reference");
            let (want_ops, want_commit) = want_log.finish();
            let (got_ops, got_commit) = log.finish();
            let what = format!(
                "model {seed} (burn ops: {burn_ops}), request {i} (prompt {}, {:?})",
                r.prompt.len(),
                r.params
            );
            assert_same_ops(&got_ops, &want_ops, &what);
            assert_eq!(state.generation(), Some(want), "{what}");
            assert_eq!(got_commit, want_commit, "{what}");
            assert_eq!(state.ops_emitted(), want_commit.op_count, "{what}");
        }
    }
}

#[test]
fn bad_steps_are_rejected_without_side_effects() {
    let dev = device();
    let model = model(1);
    let engine = BurnEngine::<Cpu>::new(&model, dev).expect("engine");
    let params = SamplingParams {
        max_tokens: 2,
        temperature_milli: 0,
        top_p_milli: 1000,
        seed: 1,
        choice_index: 0,
    };
    let prompt = [5u32, 6, 7];
    let mut req = engine.start(&prompt, &params).expect("admitted");
    let mut log = OpLog::default();
    // More positions than the prompt has left.
    let err = engine
        .forward_batch(&mut [BatchItem {
            request: &mut req,
            positions: 4,
            sink: &mut log,
        }])
        .expect_err("rejected");
    assert!(matches!(err, EngineError::Step { index: 0, .. }), "{err}");
    assert_eq!((req.position(), req.ops_emitted()), (0, 0));
    // Zero positions.
    assert!(
        engine
            .forward_batch(&mut [BatchItem {
                request: &mut req,
                positions: 0,
                sink: &mut log
            }])
            .is_err()
    );
    // Run to completion, then one more step is rejected.
    while !req.is_finished() {
        let positions = req.max_step_positions();
        engine
            .forward_batch(&mut [BatchItem {
                request: &mut req,
                positions,
                sink: &mut log,
            }])
            .expect("step");
    }
    let err = engine
        .forward_batch(&mut [BatchItem {
            request: &mut req,
            positions: 1,
            sink: &mut log,
        }])
        .expect_err("finished");
    assert!(err.to_string().contains("finished"), "{err}");
    let want = vir::interp::generate_committed(&model, &prompt, &params).expect("reference");
    assert_eq!((req.generation().expect("done"), log.finish().1), want);
}
