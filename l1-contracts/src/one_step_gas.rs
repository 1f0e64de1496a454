//! The dispute-game part of the gas report: full games on the embedded chain over a SmolLM2-135M-shaped trace at
//! the longest context (prompt 8,190 tokens + 2 generated: positions up to 8,190, 5.66 M trace ops, trace depth 23),
//! one game per op kind with the lie at the op's most expensive element. The trace is sparse (only the leaves a
//! proof reads are non-zero) and its values are synthetic but in the ranges the ops produce; the model root has
//! SmolLM2's 277 leaves with real bytes for every tensor a proof reads (token embedding stored as Q8_0, the larger
//! block, other matrices Q4_1; the real EXP, SIGMOID and ROPE tables). Gas does not depend on the values except
//! through SwiGlu's SIGMOID lookups: the gate values are spread over the whole table (±16.0) so that the lookups
//! hit every one of its 128 chunks (and every part contract of the prover's held copy), the worst case;
//! [`dispute_entries`] checks that they do.

use crate::dispute::DisputeGame;
use crate::dispute::{Game, GameConfig, deploy_prover};
use crate::embedded::EmbeddedChain;
use crate::gas::{GasEntry, GasReportError};
use crate::one_step::OneStep;
use crate::prover::{ModelData, TraceData, one_step_proof, plan, request};
use crate::rollup::{Rollup, RollupConfig, config_hash};
use alloy::primitives::{B256, Bytes, U256, keccak256};
use alloy::sol_types::SolCall;
use protocol::{FinishReason, InferenceLeaf, LEAF_VERSION, SamplingParams, token_ids_root};
use std::borrow::Cow;
use std::collections::BTreeMap;
use vir::config::LlamaConfig;
use vir::program::{OpKind, Program};

const PROMPT_LEN: usize = 8190;
const GENERATED: usize = 2;
const TIED_EXP_LEAF: u64 = 9 * 30 + 2;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next() % (hi - lo) as u64) as i64
    }
}

fn smollm2() -> LlamaConfig {
    LlamaConfig {
        n_layers: 30,
        d_model: 576,
        d_ff: 1536,
        n_heads: 9,
        n_kv_heads: 3,
        head_dim: 64,
        vocab_size: 49152,
        context_length: 8192,
        rope_base: 100_000.0,
        rms_eps: 1e-5,
        tied_output: true,
    }
}

/// SmolLM2's rollup config with its real `eps_fx` and `score_scale`.
pub(crate) fn smollm2_model_config() -> crate::bindings::InferenceRollup::ModelConfig {
    crate::bindings::InferenceRollup::ModelConfig {
        epsFx: (1e-5f64 * (1u64 << 48) as f64).round() as u64,
        scoreScale: 8192,
        ..crate::gas::smollm2_config()
    }
}

/// A sparse synthetic trace: outputs are a pure function of the op index; leaves outside `leaves` are zero.
struct SparseTrace {
    program: Program,
    prompt: Vec<u32>,
    op_count: u64,
    depth: u32,
    leaves: BTreeMap<u64, B256>,
    zeros: Vec<B256>,
}

impl SparseTrace {
    fn new() -> Self {
        let program = Program::new(smollm2(), PROMPT_LEN);
        let op_count = program.op_count(GENERATED);
        let depth = 64 - (op_count - 1).leading_zeros();
        let mut zeros = vec![B256::ZERO];
        for k in 0..depth as usize {
            zeros.push(keccak256(
                [zeros[k].as_slice(), zeros[k].as_slice()].concat(),
            ));
        }
        let mut rng = Rng(42);
        let prompt = (0..PROMPT_LEN)
            .map(|_| rng.range(0, 49152) as u32)
            .collect();
        Self {
            program,
            prompt,
            op_count,
            depth,
            leaves: BTreeMap::new(),
            zeros,
        }
    }

    fn set_leaf(&mut self, i: u64) {
        let d = self.program.descriptor(i);
        let leaf = protocol::trace::trace_leaf(i, d.hash(), protocol::tensor_root(&self.output(i)));
        self.leaves.insert(i, leaf);
    }

    fn node(&self, h: u32, idx: u64) -> B256 {
        let (lo, hi) = (idx << h, (idx + 1) << h);
        if self.leaves.range(lo..hi).next().is_none() {
            return self.zeros[h as usize];
        }
        if h == 0 {
            return self.leaves[&lo];
        }
        let (l, r) = (self.node(h - 1, 2 * idx), self.node(h - 1, 2 * idx + 1));
        keccak256([l.as_slice(), r.as_slice()].concat())
    }

    fn root(&self) -> B256 {
        self.node(self.depth, 0)
    }

    fn children(&self, start: u64, height: u32) -> (B256, B256) {
        let first = start >> (height - 1);
        (
            self.node(height - 1, first),
            self.node(height - 1, first + 1),
        )
    }
}

fn i32s(v: impl IntoIterator<Item = i64>) -> Vec<u8> {
    v.into_iter()
        .flat_map(|x| (x as i32).to_le_bytes())
        .collect()
}

fn i64s(v: impl IntoIterator<Item = i64>) -> Vec<u8> {
    v.into_iter().flat_map(|x| x.to_le_bytes()).collect()
}

impl TraceData for SparseTrace {
    fn program(&self) -> &Program {
        &self.program
    }
    fn op_count(&self) -> u64 {
        self.op_count
    }
    fn output(&self, index: u64) -> Cow<'_, [u8]> {
        let d = self.program.descriptor(index);
        let n = d.out_len as usize;
        let mut r = Rng(index.wrapping_mul(0x1234_5678_9abc_def1));
        let (code, _, _) = d.code();
        let nv = 48;
        let bytes = match code {
            1 | 5 | 15 | 18 | 21 | 64 => {
                let mut b = i32s((0..d.out_groups).map(|_| r.range(-40, 0)));
                b.extend((0..n).flat_map(|_| (r.range(-32768, 32768) as i16).to_le_bytes()));
                b
            }
            7 | 65 => i32s((0..n).map(|_| (1 << 24) - r.range(0, 1 << 15))),
            9 => i32s((0..n).map(|_| 1 << 24)),
            67 => i32s([1 << 24, r.range(0, 49152)]),
            10 | 68 => i32s((0..n).map(|_| r.range(0, 1 << 16))),
            // Gate i in SIGMOID chunk i mod 128: idx = (g >> 6) + 2^14 covers the whole table.
            19 => {
                i32s((0..n as i64).map(|i| {
                    (((i % 128) * 256 + r.range(0, 256) - (1 << 14)) << 6) + r.range(0, 64)
                }))
            }
            11 | 12 | 13 | 69 | 105 => i64s((0..n).map(|_| r.range(1, 1 << 26))),
            70 => i64s([1 << 30, 1 << 29]),
            106 => i64s([r.range(0, nv), r.range(0, 1 << 20)]),
            107 => i32s([r.range(0, 49152)]),
            c if (71..=104).contains(&c) && c % 2 == 1 => i64s((0..n).map(|_| r.range(1, 1 << 26))),
            c if (71..=104).contains(&c) => i64s([r.range(1, 1 << 16)]),
            _ => i32s((0..n).map(|_| r.range(-(1 << 20), 1 << 20))),
        };
        Cow::Owned(bytes)
    }
    fn trace_proof(&self, index: u64) -> Vec<B256> {
        (0..self.depth)
            .map(|k| self.node(k, (index >> k) ^ 1))
            .collect()
    }
    fn prompt(&self) -> &[u32] {
        &self.prompt
    }
}

/// SmolLM2's 277 model leaves: real bytes for token_embd, layer 0, output_norm and the tables; placeholders for
/// the rest; the config hash last.
struct SyntheticModel {
    tensors: BTreeMap<u64, (u8, Vec<u8>)>,
    tree: protocol::MerkleTree,
}

fn matrix(r: &mut Rng, rows: usize, cols: usize, kind: u8) -> Vec<u8> {
    let mut out = Vec::with_capacity(rows * cols / 32 * 34);
    for _ in 0..rows * cols / 32 {
        if kind == 2 {
            out.extend_from_slice(&(0x2000u16 + r.range(0, 256) as u16).to_le_bytes());
            out.extend((0..32).map(|_| r.next() as u8));
        } else {
            out.extend_from_slice(&(0x2400u16 + r.range(0, 256) as u16).to_le_bytes());
            out.extend_from_slice(&(0xA400u16 + r.range(0, 256) as u16).to_le_bytes());
            out.extend((0..16).map(|_| r.next() as u8));
        }
    }
    out
}

impl SyntheticModel {
    fn new(config_hash: B256) -> Self {
        let c = smollm2();
        let mut r = Rng(7);
        let mut tensors = BTreeMap::new();
        let (d, f, kv) = (c.d_model, c.d_ff, c.n_kv_heads * c.head_dim);
        let gamma = |r: &mut Rng| i32s((0..d).map(|_| r.range(1 << 15, 1 << 17)));
        tensors.insert(0, (2, matrix(&mut r, c.vocab_size, d, 2)));
        tensors.insert(1, (0, gamma(&mut r)));
        tensors.insert(2, (1, matrix(&mut r, d, d, 1)));
        tensors.insert(3, (1, matrix(&mut r, kv, d, 1)));
        tensors.insert(4, (1, matrix(&mut r, kv, d, 1)));
        tensors.insert(5, (1, matrix(&mut r, d, d, 1)));
        tensors.insert(6, (0, gamma(&mut r)));
        tensors.insert(7, (1, matrix(&mut r, f, d, 1)));
        tensors.insert(8, (1, matrix(&mut r, f, d, 1)));
        tensors.insert(9, (1, matrix(&mut r, d, f, 1)));
        tensors.insert(TIED_EXP_LEAF - 1, (0, gamma(&mut r)));
        tensors.insert(
            TIED_EXP_LEAF,
            (0, i32s(vir::tables::exp_table().into_iter().map(i64::from))),
        );
        tensors.insert(
            TIED_EXP_LEAF + 1,
            (
                0,
                i32s(vir::tables::sigmoid_table().into_iter().map(i64::from)),
            ),
        );
        tensors.insert(
            TIED_EXP_LEAF + 2,
            (
                0,
                i32s(
                    vir::tables::rope_table(c.context_length, c.head_dim, c.rope_base)
                        .into_iter()
                        .map(i64::from),
                ),
            ),
        );
        let count = 9 * 30 + 7;
        let leaves: Vec<B256> = (0..count as u64)
            .map(|i| match tensors.get(&i) {
                Some((kind, b)) if *kind != 0 => {
                    let rows = match i {
                        0 => c.vocab_size,
                        2 | 5 | 9 => d,
                        3 | 4 => kv,
                        _ => f,
                    };
                    let cols = if i == 9 { f } else { d };
                    let mut pre = vec![*kind];
                    pre.extend_from_slice(&(rows as u32).to_be_bytes());
                    pre.extend_from_slice(&(cols as u32).to_be_bytes());
                    pre.extend_from_slice(protocol::tensor_root(b).as_slice());
                    keccak256(pre)
                }
                Some((_, b)) => protocol::tensor_root(b),
                None if i == count as u64 - 1 => config_hash,
                None => keccak256(i.to_be_bytes()),
            })
            .collect();
        Self {
            tensors,
            tree: protocol::MerkleTree::new(leaves),
        }
    }
}

impl ModelData for SyntheticModel {
    fn tensor(&self, leaf: u64) -> (u8, Cow<'_, [u8]>) {
        let (k, b) = &self.tensors[&leaf];
        (*k, Cow::Borrowed(b))
    }
    fn kind(&self, leaf: u64) -> u8 {
        self.tensors.get(&leaf).map_or(0, |t| t.0)
    }
    fn model_proof(&self, leaf: u64) -> Vec<B256> {
        self.tree
            .proof(leaf)
            .map(|p| p.siblings)
            .unwrap_or_default()
    }
}

/// The op kinds and elements measured: (name, kind, position, element).
fn cases(p: &Program) -> Vec<(&'static str, u64, u32)> {
    use vir::program::{HeadOp as H, LayerOp as L};
    let last = (PROMPT_LEN + GENERATED - 2) as u64; // position 8190 (n_pos 8191)
    let nc = 128u32;
    let l = |op| OpKind::Layer(0, op);
    let at = |pos: u64, k: OpKind| p.index_of(pos, k);
    vec![
        ("Embed (prompt token)", at(100, OpKind::Embed), 575),
        ("Embed (generated token)", at(last, OpKind::Embed), 575),
        ("AttnNorm (RmsNorm, d 576)", at(last, l(L::AttnNorm)), 575),
        ("QProj (MatMul 576x576)", at(last, l(L::QProj)), 575),
        ("KProj (MatMul 192x576)", at(last, l(L::KProj)), 191),
        ("VProj (MatMul 192x576)", at(last, l(L::VProj)), 191),
        ("QRope", at(last, l(L::QRope)), 575),
        ("KRope", at(last, l(L::KRope)), 191),
        (
            "AttnScores (key at pos 8190)",
            at(last, l(L::AttnScores)),
            8 * 8191 + 8190,
        ),
        (
            "AttnChunkMax (64 scores)",
            at(last, l(L::AttnChunkMax)),
            8 * nc + 126,
        ),
        ("AttnMax (128 chunk maxima)", at(last, l(L::AttnMax)), 8),
        ("AttnExp", at(last, l(L::AttnExp)), 8 * 8191 + 8190),
        (
            "AttnChunkSum (64 weights)",
            at(last, l(L::AttnChunkSum)),
            8 * nc + 126,
        ),
        ("AttnSum (128 partials)", at(last, l(L::AttnSum)), 8),
        (
            "AttnWeightedSum (64 values, 64 trace leaves)",
            at(last, l(L::AttnWeightedSum)),
            (8 * 64 + 63) * nc + 126,
        ),
        ("AttnOut (128 partials)", at(last, l(L::AttnOut)), 575),
        ("AttnOutQuant (d 576)", at(last, l(L::AttnOutQuant)), 575),
        ("OProj (MatMul 576x576)", at(last, l(L::OProj)), 575),
        ("AttnResidual", at(last, l(L::AttnResidual)), 575),
        ("FfnNorm (RmsNorm, d 576)", at(last, l(L::FfnNorm)), 575),
        ("GateProj (MatMul 1536x576)", at(last, l(L::GateProj)), 1535),
        ("UpProj (MatMul 1536x576)", at(last, l(L::UpProj)), 1535),
        (
            "SwiGlu (d_ff 1536, gates hit all 128 SIGMOID chunks)",
            at(last, l(L::SwiGlu)),
            1535,
        ),
        ("DownProj (MatMul 576x1536)", at(last, l(L::DownProj)), 575),
        ("FfnResidual", at(last, l(L::FfnResidual)), 575),
        (
            "OutNorm (RmsNorm, d 576)",
            at(last, OpKind::Head(H::OutNorm)),
            575,
        ),
        (
            "Logits (MatMul row, Q8_0 576)",
            at(last, OpKind::Head(H::Logits)),
            49151,
        ),
        (
            "LogitChunkMax (1024 logits)",
            at(last, OpKind::Head(H::LogitChunkMax)),
            95,
        ),
        (
            "LogitMax (48 pairs)",
            at(last, OpKind::Head(H::LogitMax)),
            1,
        ),
        (
            "SampleExp (T 0.7)",
            at(last, OpKind::Head(H::SampleExp)),
            49151,
        ),
        (
            "SampleChunkSum (1024 weights)",
            at(last, OpKind::Head(H::SampleChunkSum)),
            47,
        ),
        (
            "SampleSum (48 sums)",
            at(last, OpKind::Head(H::SampleSum)),
            1,
        ),
        (
            "TopPChunkSum(16) (1024 weights)",
            at(last, OpKind::Head(H::TopPChunkSum(16))),
            47,
        ),
        (
            "TopPStep(16) (48 sums)",
            at(last, OpKind::Head(H::TopPStep(16))),
            0,
        ),
        (
            "KeptChunkSum (1024 weights)",
            at(last, OpKind::Head(H::KeptChunkSum)),
            47,
        ),
        (
            "PickChunk (48 sums, ChaCha20)",
            at(last, OpKind::Head(H::PickChunk)),
            1,
        ),
        (
            "PickToken (1024 weights)",
            at(last, OpKind::Head(H::PickToken)),
            0,
        ),
    ]
}

/// Runs one full game per op kind; appends `open`, `reveal`, `choose`, `claimLeaf` and `proveOneStep` entries.
pub(crate) async fn dispute_entries(out: &mut Vec<GasEntry>) -> Result<(), GasReportError> {
    let chain = EmbeddedChain::default();
    let acc = crate::dev::accounts();
    let (owner, seq, exec, chal) = (
        acc[0].address,
        acc[1].address,
        acc[2].address,
        acc[4].address,
    );
    let eth = U256::from(10u64).pow(U256::from(18u64));
    let config = RollupConfig {
        min_sequencer_bond: eth,
        min_executor_bond: eth,
        withdrawal_delay: 7200,
        challenge_window: 3600,
        owner,
    };
    let rollup = Rollup::deploy(chain.connect(owner), &config).await?;
    rollup
        .with_l1(chain.connect(seq))
        .register_sequencer(eth)
        .await?;
    rollup
        .with_l1(chain.connect(exec))
        .register_executor(eth)
        .await?;
    let mc = smollm2_model_config();
    let model = SyntheticModel::new(config_hash(&mc));
    let root = model.tree.root();
    let last = model.tree.leaves().len() as u64 - 1;
    rollup
        .register_model(root, mc, model.model_proof(last))
        .await?;
    let verifier = OneStep::deploy(chain.connect(owner))
        .await
        .map_err(|e| GasReportError::Game(e.to_string()))?;
    let prover = deploy_prover(&chain.connect(owner), verifier.address())
        .await
        .map_err(|e| GasReportError::Game(e.to_string()))?;
    let game = Game::deploy(
        chain.connect(owner),
        &GameConfig::new(rollup.address(), prover, U256::ZERO),
    )
    .await
    .map_err(|e| GasReportError::Game(e.to_string()))?;
    rollup.set_dispute_game(game.address()).await?;
    let (ge, gc) = (
        game.with_l1(chain.connect(exec)),
        game.with_l1(chain.connect(chal)),
    );
    let g = |e: crate::dispute::GameError| GasReportError::Game(e.to_string());

    let params = SamplingParams {
        max_tokens: GENERATED as u32,
        temperature_milli: 700,
        top_p_milli: 900,
        seed: 1,
        choice_index: 0,
    };
    let output: Vec<u32> = vec![17, 42];
    let base = SparseTrace::new();
    let (mut max_reveal, mut max_choose, mut open_gas, mut claim_gas) = (0u64, 0u64, 0u64, 0u64);
    for (name, index, element) in cases(&base.program) {
        let mut t = SparseTrace::new();
        let pl = plan(&t, &model, params.temperature_milli, index, element)
            .map_err(|e| GasReportError::Game(format!("{name}: {e}")))?;
        for w in &pl.weights {
            if let crate::prover::ModelRead::Chunks { chunks, .. } = w
                && chunks.len() != 128
            {
                return Err(GasReportError::Game(format!(
                    "{name}: the gates hit {} of the 128 SIGMOID chunks, not the worst case",
                    chunks.len()
                )));
            }
        }
        t.set_leaf(index);
        for r in &pl.inputs {
            if let crate::prover::Source::Op(j) = r.source {
                t.set_leaf(j);
            }
        }
        let leaf = InferenceLeaf {
            version: LEAF_VERSION,
            requestId: keccak256(name),
            modelRoot: root,
            promptRoot: token_ids_root(&t.prompt),
            paramsHash: params.params_hash(),
            outputHash: token_ids_root(&output),
            finishReason: FinishReason::Length.into(),
            traceRoot: t.root(),
            opCount: t.op_count,
            executor: exec,
        };
        let sq = rollup.with_l1(chain.connect(seq));
        let prev = sq.state_root().await?;
        let posted = sq
            .post_batch(Bytes::from_static(b"data"), leaf.hash(), 1, prev)
            .await?;
        let req = request(root, &t.prompt, &output, &params);
        let call = DisputeGame::openCall {
            batchId: U256::from(posted.batch_id),
            leaf: leaf.into(),
            index: U256::ZERO,
            proof: Vec::new(),
            req: req.clone(),
        };
        let r = gc.send(call, U256::ZERO).await.map_err(g)?;
        open_gas = open_gas.max(r.gas_used);
        let id = u64::try_from(
            game.view(DisputeGame::disputeCountCall {})
                .await
                .map_err(g)?,
        )
        .unwrap_or(0);
        loop {
            let d = game.dispute(id).await.map_err(g)?;
            if d.phase != 1 {
                break;
            }
            let (left, right) = t.children(d.start, u32::from(d.height));
            let r = ge.reveal(id, left, right).await.map_err(g)?;
            max_reveal = max_reveal.max(r.gas_used);
            let go_right = (index >> (d.height - 1)) & 1 == 1;
            let r = gc.choose(id, go_right).await.map_err(g)?;
            max_choose = max_choose.max(r.gas_used);
        }
        let r = gc
            .claim_leaf(id, keccak256("challenger's leaf"), element, &req)
            .await
            .map_err(g)?;
        claim_gas = claim_gas.max(r.gas_used);
        let proof = one_step_proof(&t, &model, params.temperature_milli, index, element)
            .map_err(|e| GasReportError::Game(format!("{name}: {e}")))?;
        let calldata = DisputeGame::proveOneStepCall {
            id: U256::from(id),
            req: req.clone(),
            p: proof.clone(),
        }
        .abi_encode()
        .len();
        let r = ge
            .prove_one_step(id, &req, proof)
            .await
            .map_err(|e| GasReportError::Game(format!("{name}: {e}")))?;
        out.push(GasEntry {
            function: "proveOneStep",
            case: name.to_string(),
            gas_used: r.gas_used,
            data_gas: 0,
            calldata_bytes: calldata,
        });
    }
    let depth = base.depth;
    for (function, case, gas, bytes) in [
        (
            "open (game)",
            "SmolLM2, prompt 8190 + 2 tokens".to_string(),
            open_gas,
            0,
        ),
        (
            "reveal",
            format!("largest of {depth} levels"),
            max_reveal,
            100,
        ),
        (
            "choose",
            format!("largest of {depth} levels"),
            max_choose,
            68,
        ),
        ("claimLeaf", "SmolLM2".to_string(), claim_gas, 0),
    ] {
        out.push(GasEntry {
            function,
            case,
            gas_used: gas,
            data_gas: 0,
            calldata_bytes: bytes,
        });
    }
    Ok(())
}
