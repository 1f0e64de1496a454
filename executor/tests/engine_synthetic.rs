//! End to end on the tiny synthetic model: the burn engine's tokens, finish reason, op count and trace root (and
//! every op's output root) equal the reference interpreter's, for many model seeds, prompts of several lengths
//! (across the 64-position attention chunks), greedy and sampled, and any prefill chunking.

mod common;

use common::{Gen, OpLog, assert_same_ops, device};
use protocol::SamplingParams;
use verinfer_executor::{BurnEngine, Cpu, EngineError};
use vir::IntModel;
use vir::gguf::GgufFile;
use vir::interp::{RunError, generate, generate_committed};
use vir::synthetic::{SyntheticSpec, synthetic_gguf};

fn model(seed: u64) -> IntModel {
    let bytes = synthetic_gguf(&SyntheticSpec::tiny().with_seed(seed)).expect("synthetic model");
    IntModel::load(&GgufFile::parse(bytes).expect("parses")).expect("loads")
}

fn params(g: &mut Gen, max_tokens: u32) -> SamplingParams {
    let (temperature_milli, top_p_milli) = match g.below(4) {
        0 => (0, 1000),
        1 => (700, 1000),
        2 => (1 + g.below(2000) as u32, 1 + g.below(1000) as u32),
        _ => (2000, 900),
    };
    SamplingParams {
        max_tokens,
        temperature_milli,
        top_p_milli,
        seed: g.u64(),
        choice_index: g.below(4) as u32,
    }
}

fn prompt(g: &mut Gen, len: usize, vocab: usize) -> Vec<u32> {
    (0..len).map(|_| g.below(vocab as u64) as u32).collect()
}

/// Runs one request on both engines and compares every op.
fn check(
    engine: &BurnEngine<Cpu>,
    model: &IntModel,
    prompt: &[u32],
    params: &SamplingParams,
    what: &str,
) -> usize {
    let mut want_log = OpLog::default();
    let want = generate(model, prompt, params, &mut want_log, &mut |_| {}).expect("reference runs");
    let (want_ops, want_commit) = want_log.finish();

    let mut got_log = OpLog::default();
    let mut streamed = Vec::new();
    let got = engine
        .generate(prompt, params, &mut got_log, &mut |t| streamed.push(t))
        .expect("burn engine runs");
    let (got_ops, got_commit) = got_log.finish();
    assert_same_ops(&got_ops, &want_ops, what);
    assert_eq!(got, want, "{what}: generation");
    assert_eq!(streamed, want.tokens, "{what}: streamed tokens");
    assert_eq!(got_commit, want_commit, "{what}: trace commitment");
    eprintln!(
        "{what}: {} tokens, {:?}",
        want.tokens.len(),
        want.finish_reason
    );
    want.tokens.len()
}

#[test]
fn tokens_and_trace_roots_match_the_reference() {
    let dev = device();
    let mut g = Gen::new(11);
    let (mut runs, mut tokens) = (0, 0);
    for seed in 0..6 {
        let model = model(seed);
        let engine = BurnEngine::<Cpu>::new(&model, dev).expect("engine");
        let vocab = model.config.vocab_size;
        for len in [1usize, 2, 5, 17, 63, 64, 65, 130] {
            let p = prompt(&mut g, len, vocab);
            let max_tokens = 1 + g.below(12) as u32;
            let params = params(&mut g, max_tokens);
            let what = format!("seed {seed}, prompt {len}, {params:?}");
            tokens += check(&engine, &model, &p, &params, &what);
            runs += 1;
        }
    }
    assert_eq!(runs, 48);
    // Not a degenerate comparison: most runs generate several tokens.
    assert!(
        tokens > 150,
        "only {tokens} tokens generated in {runs} runs"
    );
}

/// The CPU backend runs steps on the host by default; the burn ops (the CUDA path) must give the same results,
/// so they are checked here on the CPU backend too.
#[test]
fn burn_ops_path_matches_the_reference() {
    let dev = device();
    let mut g = Gen::new(14);
    for seed in [1u64, 4] {
        let model = model(seed);
        let host = BurnEngine::<Cpu>::new(&model, dev).expect("engine");
        assert!(host.runs_on_host());
        let engine = host.with_device_ops();
        assert!(!engine.runs_on_host());
        let vocab = model.config.vocab_size;
        for len in [1usize, 17, 65, 130] {
            let p = prompt(&mut g, len, vocab);
            let max_tokens = 1 + g.below(8) as u32;
            let params = params(&mut g, max_tokens);
            let what = format!("burn ops, seed {seed}, prompt {len}, {params:?}");
            check(&engine, &model, &p, &params, &what);
        }
    }
}

#[test]
fn generation_crosses_attention_chunks_in_decode() {
    // A long decode (positions 60..130) exercises decode rows that open new 64-position chunks.
    let dev = device();
    let model = model(7);
    let engine = BurnEngine::<Cpu>::new(&model, dev).expect("engine");
    let mut g = Gen::new(12);
    for temperature_milli in [0, 900] {
        let p = prompt(&mut g, 60, model.config.vocab_size);
        let params = SamplingParams {
            max_tokens: 70,
            temperature_milli,
            top_p_milli: 950,
            seed: 99,
            choice_index: 0,
        };
        let n = check(
            &engine,
            &model,
            &p,
            &params,
            &format!("long decode T={temperature_milli}"),
        );
        assert!(
            n > 10,
            "generation stopped after {n} tokens: pick another seed"
        );
    }
}

#[test]
fn prefill_chunking_does_not_change_results() {
    let dev = device();
    let model = model(3);
    let mut g = Gen::new(13);
    let p = prompt(&mut g, 70, model.config.vocab_size);
    let params = params(&mut g, 6);
    let want = generate_committed(&model, &p, &params).expect("reference");
    for chunk in [1usize, 7, 64, 200] {
        let engine = BurnEngine::<Cpu>::new(&model, dev)
            .expect("engine")
            .with_prefill_chunk(chunk);
        let got = engine.generate_committed(&p, &params).expect("burn");
        assert_eq!(got, want, "prefill chunk {chunk}");
    }
}

#[test]
fn invalid_requests_fail_like_the_reference() {
    let dev = device();
    let model = model(0);
    let engine = BurnEngine::<Cpu>::new(&model, dev).expect("engine");
    let ok = SamplingParams {
        max_tokens: 4,
        temperature_milli: 0,
        top_p_milli: 1000,
        seed: 0,
        choice_index: 0,
    };
    let vocab = model.config.vocab_size as u32;
    let cases: Vec<(Vec<u32>, SamplingParams)> = vec![
        (vec![], ok),
        (vec![1, vocab], ok),
        (
            vec![1; 250],
            SamplingParams {
                max_tokens: 10,
                ..ok
            },
        ),
        (
            vec![1],
            SamplingParams {
                max_tokens: 0,
                ..ok
            },
        ),
        (
            vec![1],
            SamplingParams {
                temperature_milli: 2001,
                ..ok
            },
        ),
        (
            vec![1],
            SamplingParams {
                top_p_milli: 0,
                ..ok
            },
        ),
    ];
    for (p, params) in cases {
        let want: RunError =
            generate_committed(&model, &p, &params).expect_err("reference rejects");
        match engine.generate_committed(&p, &params) {
            Err(EngineError::Request(got)) => assert_eq!(got, want),
            other => panic!("{p:?} {params:?}: expected {want:?}, got {other:?}"),
        }
    }
}
