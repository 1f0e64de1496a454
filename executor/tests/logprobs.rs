//! Differential test of token logprobs: the burn engine's logprobs (a `vir::logprobs::LogprobSink` over its trace)
//! equal those computed independently from the reference interpreter's logits (`Session::logits_untraced`, plain
//! f64 softmax, a full sort of the vocabulary), on the tiny synthetic model, greedy and sampled; the top-k is sorted,
//! the full distribution sums to 1, and wrapping the sink leaves the trace root unchanged.

mod common;

use common::{Gen, device};
use protocol::SamplingParams;
use verinfer_executor::{BurnEngine, Cpu};
use vir::IntModel;
use vir::gguf::GgufFile;
use vir::interp::{TraceCommitter, generate_committed};
use vir::logprobs::{LogprobSink, MAX_TOP_LOGPROBS, TokenLogprobs, replay_naive_logprobs};
use vir::synthetic::{SyntheticSpec, synthetic_gguf};

fn model(seed: u64) -> IntModel {
    let bytes = synthetic_gguf(&SyntheticSpec::tiny().with_seed(seed)).expect("synthetic model");
    IntModel::load(&GgufFile::parse(bytes).expect("parses")).expect("loads")
}

/// Per generated token: (logprob, the k best as (id, logprob)), from the interpreter's untraced logits
/// (`vir::logprobs::replay_naive_logprobs`); the full distribution sums to 1.
fn independent(
    model: &IntModel,
    prompt: &[u32],
    params: &SamplingParams,
    tokens: &[u32],
    k: usize,
) -> Vec<(f64, Vec<(u32, f64)>)> {
    replay_naive_logprobs(model, prompt, params, tokens, k)
        .expect("the interpreter generates the same tokens")
        .into_iter()
        .map(|n| {
            assert!(
                (n.total - 1.0).abs() < 1e-9,
                "the distribution sums to {}",
                n.total
            );
            (n.logprob, n.top)
        })
        .collect()
}

#[test]
fn burn_logprobs_equal_the_reference_computation() {
    let dev = device();
    let mut g = Gen::new(41);
    let mut checked = 0;
    for model_seed in [0, 3] {
        let model = model(model_seed);
        let engine = BurnEngine::<Cpu>::new(&model, dev).expect("engine");
        let vocab = model.config.vocab_size;
        for case in 0..6 {
            let len = 1 + g.below(if case % 2 == 0 { 80 } else { 12 }) as usize;
            let prompt: Vec<u32> = (0..len).map(|_| g.below(vocab as u64) as u32).collect();
            let params = SamplingParams {
                max_tokens: 1 + g.below(12) as u32,
                temperature_milli: if case % 3 == 0 {
                    0
                } else {
                    1 + g.below(2000) as u32
                },
                top_p_milli: 1 + g.below(1000) as u32,
                seed: g.u64(),
                choice_index: 0,
            };
            let k = [0, 1, 5, MAX_TOP_LOGPROBS][case % 4];
            let (sink, rx) = LogprobSink::new(TraceCommitter::default(), k);
            let mut sink = sink;
            let mut streamed: Vec<(u32, Option<TokenLogprobs>)> = Vec::new();
            let generation = engine
                .generate(&prompt, &params, &mut sink, &mut |t| {
                    streamed.push((t, rx.next()))
                })
                .expect("burn engine runs");
            let trace = sink.into_inner().finish();
            let (want_gen, want_trace) =
                generate_committed(&model, &prompt, &params).expect("reference runs");
            assert_eq!(generation, want_gen);
            assert_eq!(
                trace, want_trace,
                "the logprob sink leaves the trace unchanged"
            );
            let want = independent(&model, &prompt, &params, &generation.tokens, k);
            assert_eq!(streamed.len(), want.len());
            for ((token, lp), (logprob, top)) in streamed.iter().zip(&want) {
                let lp = lp.as_ref().expect("every token comes with its logprobs");
                assert_eq!(lp.token, *token);
                assert!(
                    (lp.logprob - logprob).abs() < 1e-9,
                    "{} vs {logprob}",
                    lp.logprob
                );
                assert!(lp.logprob <= 0.0);
                assert_eq!(
                    lp.top.iter().map(|t| t.token).collect::<Vec<_>>(),
                    top.iter().map(|t| t.0).collect::<Vec<_>>(),
                    "top-{k} ids"
                );
                for (got, (_, p)) in lp.top.iter().zip(top) {
                    assert!((got.logprob - p).abs() < 1e-9);
                }
                assert!(lp.top.windows(2).all(|w| w[0].logprob >= w[1].logprob));
                if params.temperature_milli == 0 && k > 0 {
                    assert_eq!(
                        lp.top[0].token, *token,
                        "greedy picks the most likely token"
                    );
                }
                checked += 1;
            }
        }
    }
    assert!(checked > 20, "checked {checked} tokens");
}
