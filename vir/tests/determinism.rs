//! Determinism and trace layout of the reference interpreter, on the seeded synthetic model.

use protocol::{FinishReason, SamplingParams};
use std::sync::OnceLock;
use verinfer_vir::IntModel;
use verinfer_vir::gguf::GgufFile;
use verinfer_vir::interp::{
    RunError, TensorView, TraceCommitter, TraceSink, generate, generate_committed,
};
use verinfer_vir::program::{OpDescriptor, Program};
use verinfer_vir::synthetic::{SyntheticSpec, synthetic_gguf};

fn model() -> &'static IntModel {
    static MODEL: OnceLock<IntModel> = OnceLock::new();
    MODEL.get_or_init(|| {
        let bytes = synthetic_gguf(&SyntheticSpec::tiny()).expect("tiny spec is valid");
        IntModel::load(&GgufFile::parse(bytes).expect("parses")).expect("loads")
    })
}

fn params(temperature_milli: u32, top_p_milli: u32, seed: u64, max_tokens: u32) -> SamplingParams {
    SamplingParams {
        max_tokens,
        temperature_milli,
        top_p_milli,
        seed,
        choice_index: 0,
    }
}

const PROMPT: [u32; 6] = [1, 300, 301, 302, 303, 304];

#[test]
fn same_seed_and_params_give_identical_ids_and_trace_root() {
    for p in [
        params(0, 1000, 0, 20),
        params(900, 950, 7, 20),
        params(1500, 500, 99, 20),
    ] {
        let (a, ta) = generate_committed(model(), &PROMPT, &p).expect("runs");
        let (b, tb) = generate_committed(model(), &PROMPT, &p).expect("runs");
        assert_eq!(a, b);
        assert_eq!(ta, tb);
    }
}

#[test]
fn different_seeds_with_temperature_give_different_ids() {
    let runs: Vec<Vec<u32>> = (0..6)
        .map(|seed| {
            generate_committed(model(), &PROMPT, &params(1200, 1000, seed, 16))
                .expect("runs")
                .0
                .tokens
        })
        .collect();
    let distinct: std::collections::HashSet<&Vec<u32>> = runs.iter().collect();
    assert!(
        distinct.len() >= 5,
        "seeds should change sampled ids: {runs:?}"
    );
}

#[test]
fn greedy_ignores_the_seed_and_choice_index_changes_sampling() {
    let a = generate_committed(model(), &PROMPT, &params(0, 1000, 1, 12)).expect("runs");
    let b = generate_committed(model(), &PROMPT, &params(0, 1000, 2, 12)).expect("runs");
    assert_eq!(a.0.tokens, b.0.tokens);
    // The trace still commits the seed's random draw (PickChunk), so the roots differ while the ids agree.
    assert_ne!(a.1.root, b.1.root);
    let mut p = params(1200, 1000, 5, 12);
    let c0 = generate_committed(model(), &PROMPT, &p)
        .expect("runs")
        .0
        .tokens;
    p.choice_index = 1;
    let c1 = generate_committed(model(), &PROMPT, &p)
        .expect("runs")
        .0
        .tokens;
    assert_ne!(c0, c1, "choice index keys the sampler");
}

#[test]
fn tiny_top_p_keeps_only_the_argmax() {
    // top_p = 0.001 keeps the smallest set reaching 0.1% of the mass: the argmax alone, so sampling is greedy.
    let greedy = generate_committed(model(), &PROMPT, &params(0, 1000, 0, 12))
        .expect("runs")
        .0
        .tokens;
    for seed in 0..4 {
        let nucleus = generate_committed(model(), &PROMPT, &params(1000, 1, seed, 12))
            .expect("runs")
            .0
            .tokens;
        assert_eq!(nucleus, greedy);
    }
}

/// Checks that each emitted op is exactly what `Program::descriptor(i)` says, and counts outputs.
struct LayoutChecker {
    program: Program,
    seen: u64,
    mismatches: Vec<(OpDescriptor, OpDescriptor)>,
}

impl TraceSink for LayoutChecker {
    fn record(&mut self, desc: &OpDescriptor, out: TensorView<'_>) {
        let expected = self.program.descriptor(self.seen);
        if expected != *desc {
            self.mismatches.push((expected, *desc));
        }
        assert_eq!(out.len(), desc.out_len as usize, "{desc:?}");
        self.seen += 1;
    }
}

#[test]
fn op_i_is_a_pure_function_of_config_prompt_length_and_i() {
    for (prompt_len, max_tokens) in [(1usize, 1u32), (1, 5), (6, 3), (70, 4), (130, 2)] {
        let prompt: Vec<u32> = (0..prompt_len as u32).map(|i| 3 + i % 500).collect();
        let mut checker = LayoutChecker {
            program: Program::new(model().config.clone(), prompt_len),
            seen: 0,
            mismatches: vec![],
        };
        let g = generate(
            model(),
            &prompt,
            &params(700, 900, 1, max_tokens),
            &mut checker,
            &mut |_| {},
        )
        .expect("runs");
        assert!(
            checker.mismatches.is_empty(),
            "first mismatch: {:?}",
            checker.mismatches.first()
        );
        assert_eq!(checker.seen, checker.program.op_count(g.tokens.len()));
        // Descriptor hashes differ between ops (they identify the op, its position and its size).
        let hashes: std::collections::HashSet<_> = (0..checker.seen)
            .map(|i| checker.program.descriptor(i).hash())
            .collect();
        assert_eq!(hashes.len() as u64, checker.seen);
    }
}

#[test]
fn trace_root_commits_every_op_output() {
    // Same tokens, different prompt split between prompt and generation would change the layout; here we check
    // that the committer's op count equals the program's and that the root differs when any generated token does.
    let p = params(0, 1000, 0, 8);
    let (g, t) = generate_committed(model(), &PROMPT, &p).expect("runs");
    assert_eq!(
        t.op_count,
        Program::new(model().config.clone(), PROMPT.len()).op_count(g.tokens.len())
    );
    let mut other = PROMPT;
    other[3] += 1;
    let (_, t2) = generate_committed(model(), &other, &p).expect("runs");
    assert_ne!(t.root, t2.root);
    let mut committer = TraceCommitter::default();
    generate(model(), &PROMPT, &p, &mut committer, &mut |_| {}).expect("runs");
    assert_eq!(committer.finish(), t);
}

#[test]
fn streaming_callback_sees_every_token_in_order() {
    let mut streamed = Vec::new();
    let g = generate(
        model(),
        &PROMPT,
        &params(800, 1000, 4, 10),
        &mut verinfer_vir::interp::NoTrace,
        &mut |t| streamed.push(t),
    )
    .expect("runs");
    assert_eq!(streamed, g.tokens);
    assert_eq!(g.finish_reason, FinishReason::Length);
    assert_eq!(g.tokens.len(), 10);
}

#[test]
fn bad_requests_are_rejected_with_the_field_named() {
    let m = model();
    let p = params(0, 1000, 0, 4);
    assert_eq!(
        generate_committed(m, &[], &p).unwrap_err(),
        RunError::EmptyPrompt
    );
    let err = generate_committed(m, &[1, 512], &p).unwrap_err();
    assert_eq!(
        err,
        RunError::TokenOutOfRange {
            index: 1,
            id: 512,
            vocab: 512
        }
    );
    assert!(err.to_string().contains("#1"));
    let long: Vec<u32> = vec![5; 250];
    let err = generate_committed(m, &long, &params(0, 1000, 0, 7)).unwrap_err();
    assert!(
        matches!(
            err,
            RunError::ContextExceeded {
                prompt: 250,
                max_tokens: 7,
                context: 256
            }
        ),
        "{err}"
    );
    let err = generate_committed(m, &PROMPT, &params(2001, 1000, 0, 4)).unwrap_err();
    assert!(err.to_string().contains("temperature_milli"), "{err}");
    let err = generate_committed(m, &PROMPT, &params(0, 0, 0, 4)).unwrap_err();
    assert!(err.to_string().contains("top_p_milli"), "{err}");
    let err = generate_committed(m, &PROMPT, &params(0, 1000, 0, 0)).unwrap_err();
    assert!(err.to_string().contains("max_tokens"), "{err}");
}

#[test]
fn generation_stops_on_a_committed_stop_id() {
    // Make every token a stop token in a copy of the model: the first generated token ends the request.
    let bytes = synthetic_gguf(&SyntheticSpec::tiny()).expect("valid");
    let mut m = IntModel::load(&GgufFile::parse(bytes).expect("parses")).expect("loads");
    assert_eq!(
        m.stop_ids,
        vec![0, 2],
        "EOS and <|endoftext|> of the synthetic vocabulary"
    );
    m.stop_ids = (0..512).collect();
    let (g, t) = generate_committed(&m, &PROMPT, &params(0, 1000, 0, 10)).expect("runs");
    assert_eq!(g.tokens.len(), 1);
    assert_eq!(g.finish_reason, FinishReason::Stop);
    assert_eq!(
        t.op_count,
        Program::new(m.config.clone(), PROMPT.len()).op_count(1)
    );
}
