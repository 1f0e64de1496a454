//! Replay for disputes on the tiny synthetic model: the replayed output of an op, and each of its trace-op
//! inputs, has the tensor root the normal run's trace recorded at that index (first op, last op, prompt and
//! generated positions, attention with its KV history, the sampling head), and indices past the trace are refused.

mod common;

use common::{OpLog, device};
use protocol::SamplingParams;
use verinfer_executor::replay::{InputSource, OpInput, op_inputs};
use verinfer_executor::{BurnEngine, Cpu, ReplayError, replay};
use vir::IntModel;
use vir::gguf::GgufFile;
use vir::interp::generate;
use vir::program::{HeadOp, LayerOp, OpKind, Program};
use vir::synthetic::{SyntheticSpec, synthetic_gguf};

fn model() -> IntModel {
    let bytes = synthetic_gguf(&SyntheticSpec::tiny().with_seed(3)).expect("synthetic model");
    IntModel::load(&GgufFile::parse(bytes).expect("parses")).expect("loads")
}

#[test]
fn replayed_ops_match_the_committed_trace() {
    let model = model();
    let engine = BurnEngine::<Cpu>::new(&model, device()).expect("engine");
    // Long enough to cross the 32-position prefill chunk and the 64-position attention chunk.
    let prompt: Vec<u32> = (0..70).map(|i| (i * 37 + 5) % 512).collect();
    let params = SamplingParams {
        max_tokens: 5,
        temperature_milli: 900,
        top_p_milli: 950,
        seed: 42,
        choice_index: 1,
    };
    let mut log = OpLog::default();
    let generation = generate(&model, &prompt, &params, &mut log, &mut |_| {}).expect("runs");
    let (ops, _) = log.finish();
    let n = ops.len() as u64;
    let program = Program::new(model.config.clone(), prompt.len());
    assert_eq!(n, program.op_count(generation.tokens.len()));

    let last_pos = (prompt.len() + generation.tokens.len() - 2) as u64;
    let mut indices = vec![
        0,
        1,
        n - 1,
        n - 2,
        n / 2,
        program.index_of(40, OpKind::Layer(1, LayerOp::AttnScores)),
        program.index_of(69, OpKind::Layer(0, LayerOp::AttnWeightedSum)),
        program.index_of(70, OpKind::Embed),
        program.index_of(last_pos, OpKind::Head(HeadOp::PickChunk)),
        program.index_of(last_pos, OpKind::Head(HeadOp::TopPStep(3))),
        program.index_of(69, OpKind::Head(HeadOp::OutNorm)),
    ];
    indices.sort_unstable();
    indices.dedup();
    for index in indices {
        let r = replay(&engine, &prompt, &params, index).expect("replays");
        let (want_desc, want_root) = ops[index as usize];
        assert_eq!(r.desc, want_desc, "op {index}: descriptor");
        assert_eq!(r.output.view().root(), want_root, "op {index}: output root");
        let sources = op_inputs(&program, index);
        assert_eq!(r.inputs.len(), sources.len(), "op {index}");
        assert!(!sources.is_empty(), "op {index} has inputs");
        for (input, source) in r.inputs.iter().zip(&sources) {
            match (input, source) {
                (OpInput::Op { desc, value }, InputSource::Op(i)) => {
                    assert!(*i < index, "op {index}: input {i} is not earlier");
                    assert_eq!(
                        *desc, ops[*i as usize].0,
                        "op {index}: input {i} descriptor"
                    );
                    assert_eq!(
                        value.view().root(),
                        ops[*i as usize].1,
                        "op {index}: input {i}"
                    );
                }
                (OpInput::Token(t), InputSource::Token { pos }) => {
                    let pos = *pos as usize;
                    let want = prompt
                        .get(pos)
                        .copied()
                        .unwrap_or_else(|| generation.tokens[pos - prompt.len()]);
                    assert_eq!(*t, want, "op {index}: token");
                }
                (OpInput::Draw(d), InputSource::Draw { step }) => {
                    assert_eq!(*d, vir::sampling::draw(params.sampling_key(), *step));
                }
                other => panic!("op {index}: input and source disagree: {other:?}"),
            }
        }
    }
    let err = replay(&engine, &prompt, &params, n + 5_000).expect_err("past the end");
    assert!(matches!(err, ReplayError::OutOfRange { .. }), "{err}");
}
