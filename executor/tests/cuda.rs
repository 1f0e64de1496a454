//! CPU vs CUDA (feature `cuda`, needs an NVIDIA GPU with its driver and NVRTC): the CUDA engine's ops, tokens
//! and trace roots equal the reference interpreter's (and so the CPU engine's) on the synthetic model and on
//! SmolLM2, alone and batched. Run with
//! `cargo test -p verinfer-executor --features cuda --test cuda -- --ignored`.
#![cfg(feature = "cuda")]

mod common;

use burn::backend::cuda::CudaDevice;
use common::{Gen, OpLog, assert_same_ops, smollm2_path};
use protocol::SamplingParams;
use verinfer_executor::{BatchItem, BurnEngine, Cuda};
use vir::IntModel;
use vir::bundle::ModelBundle;
use vir::gguf::GgufFile;
use vir::interp::generate;
use vir::synthetic::{SyntheticSpec, synthetic_gguf};
use vir::tokenizer::ChatMessage;

fn check(
    engine: &BurnEngine<Cuda>,
    model: &IntModel,
    prompt: &[u32],
    params: &SamplingParams,
    what: &str,
) {
    let mut want_log = OpLog::default();
    let want = generate(model, prompt, params, &mut want_log, &mut |_| {}).expect("reference runs");
    let mut got_log = OpLog::default();
    let got = engine
        .generate(prompt, params, &mut got_log, &mut |_| {})
        .expect("cuda engine runs");
    let (want_ops, want_commit) = want_log.finish();
    let (got_ops, got_commit) = got_log.finish();
    assert_same_ops(&got_ops, &want_ops, what);
    assert_eq!(got, want, "{what}");
    assert_eq!(got_commit, want_commit, "{what}");
}

#[test]
#[ignore = "needs an NVIDIA GPU (driver + NVRTC)"]
fn cuda_matches_the_reference_on_the_synthetic_model() {
    let mut g = Gen::new(31);
    for seed in 0..4u64 {
        let bytes = synthetic_gguf(&SyntheticSpec::tiny().with_seed(seed)).expect("model");
        let model = IntModel::load(&GgufFile::parse(bytes).expect("parses")).expect("loads");
        let engine = BurnEngine::<Cuda>::new(&model, CudaDevice::default()).expect("engine");
        for len in [1usize, 5, 64, 65, 130] {
            let prompt: Vec<u32> = (0..len)
                .map(|_| g.below(model.config.vocab_size as u64) as u32)
                .collect();
            let params = SamplingParams {
                max_tokens: 1 + g.below(12) as u32,
                temperature_milli: if g.chance(1, 2) {
                    0
                } else {
                    1 + g.below(2000) as u32
                },
                top_p_milli: 1 + g.below(1000) as u32,
                seed: g.u64(),
                choice_index: 0,
            };
            check(
                &engine,
                &model,
                &prompt,
                &params,
                &format!("seed {seed}, prompt {len}"),
            );
        }
    }
}

#[test]
#[ignore = "needs an NVIDIA GPU (driver + NVRTC) and the SmolLM2 GGUF"]
fn cuda_matches_the_reference_on_smollm2_alone_and_batched() {
    let bundle = ModelBundle::open(smollm2_path()).expect("SmolLM2 loads");
    let engine = BurnEngine::<Cuda>::new(&bundle.model, CudaDevice::default()).expect("engine");
    let prompts = [
        "What is the capital of France?",
        "Write a haiku about the sea.",
        "How many legs does a spider have?",
        "Give me three tips for learning to code.",
        "Translate 'good morning' into Spanish.",
    ];
    let requests: Vec<(Vec<u32>, SamplingParams)> = prompts
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let ids = bundle
                .tokenizer
                .encode_chat(&[ChatMessage::new("user", *p)], true)
                .expect("encodes");
            let params = SamplingParams {
                max_tokens: 12,
                temperature_milli: if i < 3 { 0 } else { 800 },
                top_p_milli: 950,
                seed: i as u64,
                choice_index: 0,
            };
            (ids, params)
        })
        .collect();
    for (i, (prompt, params)) in requests.iter().enumerate() {
        check(
            &engine,
            &bundle.model,
            prompt,
            params,
            &format!("prompt {i}"),
        );
    }
    // All five in one batch, prefill and decode steps shared.
    let mut states: Vec<_> = requests
        .iter()
        .map(|(p, params)| engine.start(p, params).expect("admitted"))
        .collect();
    let mut logs: Vec<OpLog> = requests.iter().map(|_| OpLog::default()).collect();
    while states.iter().any(|s| !s.is_finished()) {
        let mut items: Vec<BatchItem<'_, Cuda>> = states
            .iter_mut()
            .zip(logs.iter_mut())
            .filter(|(s, _)| !s.is_finished())
            .map(|(s, log)| {
                let positions = s.max_step_positions();
                BatchItem {
                    request: s,
                    positions,
                    sink: log,
                }
            })
            .collect();
        engine.forward_batch(&mut items).expect("step");
    }
    for (i, ((prompt, params), log)) in requests.iter().zip(logs).enumerate() {
        let want =
            vir::interp::generate_committed(&bundle.model, prompt, params).expect("reference");
        assert_eq!(
            (states[i].generation().expect("finished"), log.finish().1),
            want,
            "batched {i}"
        );
    }
}
