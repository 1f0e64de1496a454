//! The real reference model, SmolLM2-135M-Instruct (Q4_1 GGUF): token ids and trace roots of the burn engine
//! equal the reference interpreter's for chat prompts, greedy and sampled, alone and batched.
//!
//! Needs the GGUF at `$VERINFER_SMOLLM2_GGUF` or `~/.cache/verinfer/models/SmolLM2-135M-Instruct.Q4_1.gguf`
//! (`scripts/fetch-model`); fails with that message when it is absent.

mod common;

use alloy_primitives::B256;
use common::{OpLog, assert_same_ops, device, smollm2_path};
use protocol::{SamplingParams, TraceCommitment};
use std::sync::OnceLock;
use verinfer_executor::{BatchItem, BurnEngine, Cpu};
use vir::bundle::ModelBundle;
use vir::interp::{Generation, generate};
use vir::program::OpDescriptor;
use vir::tokenizer::ChatMessage;

const PROMPTS: [&str; 5] = [
    "What is the capital of France?",
    "Write a haiku about the sea.",
    "How many legs does a spider have?",
    "Give me three tips for learning to code.",
    "Translate 'good morning' into Spanish.",
];

fn bundle() -> &'static ModelBundle {
    static B: OnceLock<ModelBundle> = OnceLock::new();
    B.get_or_init(|| ModelBundle::open(smollm2_path()).expect("SmolLM2 loads"))
}

fn engine() -> &'static BurnEngine<Cpu> {
    static E: OnceLock<BurnEngine<Cpu>> = OnceLock::new();
    E.get_or_init(|| BurnEngine::new(&bundle().model, device()).expect("engine"))
}

/// Prompt `i` with its sampling parameters: prompts 0..3 greedy, 3 and 4 sampled.
fn request(i: usize) -> (Vec<u32>, SamplingParams) {
    let msg = [ChatMessage::new("user", PROMPTS[i % PROMPTS.len()])];
    let prompt = bundle().tokenizer.encode_chat(&msg, true).expect("encodes");
    let (temperature_milli, top_p_milli) = match i {
        0..=2 => (0, 1000),
        3 => (800, 900),
        _ => (1200, 950),
    };
    let params = SamplingParams {
        max_tokens: 12,
        temperature_milli,
        top_p_milli,
        seed: 42 + i as u64,
        choice_index: (i / PROMPTS.len()) as u32,
    };
    (prompt, params)
}

type Ops = Vec<(OpDescriptor, B256)>;

/// The reference results of requests 0..8 (prompts 5..8 repeat 0..3 as other choices), computed once.
fn reference() -> &'static Vec<(Generation, Ops, TraceCommitment)> {
    static R: OnceLock<Vec<(Generation, Ops, TraceCommitment)>> = OnceLock::new();
    R.get_or_init(|| {
        (0..8)
            .map(|i| {
                let (prompt, params) = request(i);
                let mut log = OpLog::default();
                let g = generate(&bundle().model, &prompt, &params, &mut log, &mut |_| {})
                    .expect("reference runs");
                let (ops, commit) = log.finish();
                (g, ops, commit)
            })
            .collect()
    })
}

#[test]
fn chat_prompts_match_the_reference() {
    for (i, text) in PROMPTS.iter().enumerate() {
        let (prompt, params) = request(i);
        let mut log = OpLog::default();
        let got = engine()
            .generate(&prompt, &params, &mut log, &mut |_| {})
            .expect("burn engine runs");
        let (ops, commit) = log.finish();
        let (want, want_ops, want_commit) = &reference()[i];
        let what = format!(
            "prompt {i} {:?} ({} tokens, {params:?})",
            text,
            prompt.len()
        );
        assert_same_ops(&ops, want_ops, &what);
        assert_eq!(&got, want, "{what}");
        assert_eq!(&commit, want_commit, "{what}");
        eprintln!("{what}: {:?} {:?}", got.tokens, commit.root);
    }
    // The greedy answer to the first prompt is the golden one (vir/tests/smollm2.rs).
    assert_eq!(
        reference()[0].0.tokens[..8],
        [504, 3575, 282, 4649, 314, 7042, 30, 2]
    );
}

#[test]
fn eight_batched_requests_match_the_reference() {
    let engine = engine();
    let mut states: Vec<_> = (0..8)
        .map(|i| {
            let (prompt, params) = request(i);
            engine.start(&prompt, &params).expect("admitted")
        })
        .collect();
    let mut logs: Vec<OpLog> = (0..8).map(|_| OpLog::default()).collect();
    let mut step = 0usize;
    while states.iter().any(|s| !s.is_finished()) {
        // Requests join over the first steps; prefill in chunks of 16 next to other requests' decode steps.
        let mut items: Vec<BatchItem<'_, Cpu>> = states
            .iter_mut()
            .zip(logs.iter_mut())
            .enumerate()
            .filter(|(i, (s, _))| *i <= step && !s.is_finished())
            .map(|(_, (s, log))| {
                let positions = s.max_step_positions().min(16);
                BatchItem {
                    request: s,
                    positions,
                    sink: log,
                }
            })
            .collect();
        if !items.is_empty() {
            engine.forward_batch(&mut items).expect("step runs");
        }
        step += 1;
    }
    for (i, (state, log)) in states.iter().zip(logs).enumerate() {
        let (ops, commit) = log.finish();
        let (want, want_ops, want_commit) = &reference()[i];
        let what = format!("batched request {i}");
        assert_same_ops(&ops, want_ops, &what);
        assert_eq!(state.generation().as_ref(), Some(want), "{what}");
        assert_eq!(&commit, want_commit, "{what}");
    }
}
