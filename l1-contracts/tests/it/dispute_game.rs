//! The interactive dispute game end to end on the embedded chain, with real traces: the tiny synthetic model run by
//! `vir::interp::generate` with a recording trace sink, the lie injected into one ResidualAdd output.

use crate::common::{Fx, WINDOW, eth, min_executor_bond};
use alloy::primitives::{Address, B256, U256};
use protocol::tensor::tensor_chunk_proof;
use protocol::trace::trace_leaf;
use protocol::{FinishReason, InferenceLeaf, LEAF_VERSION, MerkleTree, SamplingParams, keccak256};
use verinfer_l1_contracts::dispute::DisputeGame::{
    self as G, Descriptor, DisputeGameErrors, TensorOpening,
};
use verinfer_l1_contracts::dispute::{Game, GameConfig, GameError, reveal_children};
use verinfer_l1_contracts::one_step::OneStep;
use verinfer_l1_contracts::{ContractError, EmbeddedL1, LeafStatus, Role};
use vir::IntModel;
use vir::gguf::GgufFile;
use vir::interp::{TensorView, TraceSink, generate};
use vir::program::OpDescriptor;
use vir::synthetic::{SyntheticSpec, synthetic_gguf};

const CLOCK: u64 = 1800;
const EXTENSION: u64 = 300;

/// Records every op's descriptor and canonical output bytes.
#[derive(Default)]
struct Recorder(Vec<(OpDescriptor, Vec<u8>)>);

impl TraceSink for Recorder {
    fn record(&mut self, desc: &OpDescriptor, out: TensorView<'_>) {
        self.0.push((*desc, out.canonical_bytes()));
    }
}

/// One side's view of a trace: every op's descriptor and output bytes, and the trace tree.
#[derive(Clone)]
struct Trace {
    ops: Vec<(OpDescriptor, Vec<u8>)>,
    tree: MerkleTree,
}

impl Trace {
    fn new(ops: Vec<(OpDescriptor, Vec<u8>)>) -> Self {
        let leaves = ops
            .iter()
            .enumerate()
            .map(|(i, (d, b))| trace_leaf(i as u64, d.hash(), protocol::tensor_root(b)))
            .collect();
        Self {
            ops,
            tree: MerkleTree::new(leaves),
        }
    }

    fn root(&self) -> B256 {
        self.tree.root()
    }

    fn count(&self) -> u64 {
        self.ops.len() as u64
    }

    /// This trace with i32 element `element` of op `index` changed by +1.
    fn tampered(&self, index: usize, element: usize) -> Self {
        let mut ops = self.ops.clone();
        let b = &mut ops[index].1[4 * element..4 * element + 4];
        let v = i32::from_le_bytes(b.try_into().unwrap()).wrapping_add(1);
        b.copy_from_slice(&v.to_le_bytes());
        Self::new(ops)
    }

    /// Opening of op `index` at i32 element `element`.
    fn opening(&self, index: u64, element: u32) -> TensorOpening {
        let (d, bytes) = &self.ops[index as usize];
        let (code, layer, round) = d.code();
        let (chunk, proof) = tensor_chunk_proof(bytes, u64::from(element) * 4 / 1024).unwrap();
        TensorOpening {
            desc: Descriptor {
                code,
                layer,
                round,
                pos: d.pos,
                outType: d.out_type as u8,
                outLen: d.out_len,
                outGroups: d.out_groups,
            },
            outputRoot: protocol::tensor_root(bytes),
            traceProof: self.tree.proof(index).unwrap().siblings,
            chunk: chunk.to_vec().into(),
            chunkProof: proof.siblings,
        }
    }
}

/// The honest trace of the tiny model on a short prompt (2 generated tokens).
fn honest_trace() -> Trace {
    let bytes = synthetic_gguf(&SyntheticSpec::tiny()).unwrap();
    let model = IntModel::load(&GgufFile::parse(bytes).unwrap()).unwrap();
    let params = SamplingParams {
        max_tokens: 2,
        temperature_milli: 0,
        top_p_milli: 1000,
        seed: 0,
        choice_index: 0,
    };
    let mut rec = Recorder::default();
    generate(&model, &[1, 2, 3], &params, &mut rec, &mut |_| {}).unwrap();
    Trace::new(rec.0)
}

/// Index of the first op with descriptor code `code` at position `pos`.
fn find_op(t: &Trace, code: u8, pos: u32) -> u64 {
    t.ops
        .iter()
        .position(|(d, _)| d.code().0 == code && d.pos == pos)
        .unwrap() as u64
}

struct Setup {
    fx: Fx,
    game: Game<EmbeddedL1>,
    batch_id: u64,
    leaf: InferenceLeaf,
    proof: Vec<B256>,
    gas: Vec<(&'static str, u64)>,
}

/// Rollup + verifier + game deployed, a batch with one leaf over `executor_trace` posted.
async fn setup(executor_trace: &Trace) -> Setup {
    let fx = Fx::new().await;
    fx.by(fx.seq).register_sequencer(eth(1)).await.unwrap();
    fx.by(fx.exec).register_executor(eth(2)).await.unwrap();
    let verifier = OneStep::deploy(fx.chain.connect(fx.owner)).await.unwrap();
    let config = GameConfig {
        clock: CLOCK,
        extension: EXTENSION,
        ..GameConfig::new(fx.rollup.address(), verifier.address(), eth(1))
    };
    let game = Game::deploy(fx.chain.connect(fx.owner), &config)
        .await
        .unwrap();
    fx.rollup.set_dispute_game(game.address()).await.unwrap();
    let leaf = InferenceLeaf {
        version: LEAF_VERSION,
        requestId: keccak256("request"),
        modelRoot: keccak256("model"),
        promptRoot: protocol::token_ids_root(&[1, 2, 3]),
        paramsHash: keccak256("params"),
        outputHash: keccak256("output"),
        finishReason: FinishReason::Length.into(),
        traceRoot: executor_trace.root(),
        opCount: executor_trace.count(),
        executor: fx.exec,
    };
    let other = InferenceLeaf {
        requestId: keccak256("other"),
        ..leaf
    };
    let (posted, hashes) = fx.post(&[other, leaf]).await;
    let proof = protocol::leaf_proof(&hashes, 1).unwrap().siblings;
    Setup {
        game,
        batch_id: posted.batch_id,
        leaf,
        proof,
        gas: Vec::new(),
        fx,
    }
}

impl Setup {
    fn as_(&self, who: Address) -> Game<EmbeddedL1> {
        self.game.with_l1(self.fx.chain.connect(who))
    }

    async fn open(&mut self) -> u64 {
        let g = self.as_(self.fx.challenger);
        let r = g
            .send(
                G::openCall {
                    batchId: U256::from(self.batch_id),
                    leaf: self.leaf.into(),
                    index: U256::from(1),
                    proof: self.proof.clone(),
                },
                eth(1),
            )
            .await
            .unwrap();
        self.gas.push(("open", r.gas_used));
        let id = 1;
        let d = g.dispute(id).await.unwrap();
        assert_eq!(d.executor, self.fx.exec);
        assert_eq!(d.phase, 1); // Reveal
        id
    }

    /// Bisects until the leaf: the executor answers from `exec`, the challenger picks by `chal`. Returns the index.
    async fn bisect(&mut self, id: u64, exec: &Trace, chal: &Trace) -> u64 {
        let (e, c) = (self.as_(self.fx.exec), self.as_(self.fx.challenger));
        loop {
            let d = e.dispute(id).await.unwrap();
            if d.phase != 1 {
                return d.start;
            }
            let (start, height) = (d.start, u32::from(d.height));
            let (left, right) = reveal_children(&exec.tree, start, height).unwrap();
            let r = e
                .send(
                    G::revealCall {
                        id: U256::from(id),
                        left,
                        right,
                    },
                    U256::ZERO,
                )
                .await
                .unwrap();
            self.gas.push(("reveal", r.gas_used));
            let (my_left, _) = reveal_children(&chal.tree, start, height).unwrap();
            let r = c
                .send(
                    G::chooseCall {
                        id: U256::from(id),
                        right: my_left == left,
                    },
                    U256::ZERO,
                )
                .await
                .unwrap();
            self.gas.push(("choose", r.gas_used));
        }
    }

    async fn claim_leaf(&mut self, id: u64, chal: &Trace, index: u64, element: u32) {
        let r = self
            .as_(self.fx.challenger)
            .send(
                G::claimLeafCall {
                    id: U256::from(id),
                    claimedLeaf: chal.tree.leaves()[index as usize],
                    element,
                },
                U256::ZERO,
            )
            .await
            .unwrap();
        self.gas.push(("claimLeaf", r.gas_used));
    }

    /// `proveResidualAdd` sent by `who` with openings from `exec` (the executor's trace).
    async fn prove(
        &mut self,
        id: u64,
        who: Address,
        exec: &Trace,
        index: u64,
        element: u32,
    ) -> Result<(), GameError> {
        let code = exec.ops[index as usize].0.code().0;
        let (a, b) = if code == 17 {
            (index - 17, index - 1)
        } else {
            (index - 6, index - 1)
        };
        let r = self
            .as_(who)
            .send(
                G::proveResidualAddCall {
                    id: U256::from(id),
                    out: exec.opening(index, element),
                    a: exec.opening(a, element),
                    b: exec.opening(b, element),
                },
                U256::ZERO,
            )
            .await?;
        self.gas.push(("proveResidualAdd", r.gas_used));
        Ok(())
    }

    fn print_gas(&self, name: &str) {
        let mut seen: Vec<&str> = Vec::new();
        for (k, _) in &self.gas {
            if !seen.contains(k) {
                seen.push(k);
                let g: Vec<u64> = self
                    .gas
                    .iter()
                    .filter(|(n, _)| n == k)
                    .map(|(_, g)| *g)
                    .collect();
                let (lo, hi) = (g.iter().min().unwrap(), g.iter().max().unwrap());
                println!("{name}: {k} x{} {lo}..{hi} gas", g.len());
            }
        }
    }
}

fn game_revert(r: Result<impl std::fmt::Debug, GameError>) -> DisputeGameErrors {
    match r {
        Err(ContractError::Revert(e)) => e,
        other => panic!("expected a DisputeGame revert, got {other:?}"),
    }
}

#[tokio::test]
async fn lying_executor_is_slashed() {
    let honest = honest_trace();
    let lie_at = find_op(&honest, 23, 1) as usize; // FfnResidual of layer 0, position 1
    let element = 3u32;
    let liar = honest.tampered(lie_at, element as usize);
    let mut s = setup(&liar).await;
    let rollup_before = s.fx.balance(s.fx.rollup.address()).await;
    let id = s.open().await;
    let i = s.bisect(id, &liar, &honest).await;
    assert_eq!(i, lie_at as u64);
    s.claim_leaf(id, &honest, i, element).await;
    // The challenger completes the one-step proof itself.
    let challenger = s.fx.challenger;
    s.prove(id, challenger, &liar, i, element).await.unwrap();
    let d = s.game.dispute(id).await.unwrap();
    assert_eq!(d.phase, 5);
    assert!(!d.executorWon);
    s.print_gas("lying executor");

    let r = &s.fx.rollup;
    assert_eq!(
        r.leaf_status(s.batch_id, 1).await.unwrap(),
        LeafStatus::Invalid
    );
    assert_eq!(
        r.bond(Role::Executor, s.fx.exec).await.unwrap().amount,
        U256::ZERO
    );
    // Half of the 2 ETH bond credited to the challenger, half burned; the challenger's bond is returned.
    assert_eq!(r.credits(s.fx.challenger).await.unwrap(), eth(1));
    assert_eq!(
        s.fx.balance(r.address()).await,
        rollup_before - min_executor_bond() + eth(1)
    );
    assert_eq!(s.game.credits(s.fx.challenger).await.unwrap(), eth(1));
    let before = s.fx.balance(s.fx.challenger).await;
    s.as_(s.fx.challenger)
        .send(G::claimCall {}, U256::ZERO)
        .await
        .unwrap();
    assert_eq!(s.fx.balance(s.fx.challenger).await, before + eth(1));
    // The dispute is closed: the batch finalizes after the window (the invalid leaf never becomes final).
    s.fx.advance(WINDOW).await;
    r.finalize(s.batch_id).await.unwrap();
    assert_eq!(
        r.leaf_status(s.batch_id, 1).await.unwrap(),
        LeafStatus::Invalid
    );
}

#[tokio::test]
async fn honest_executor_wins_against_lying_challenger() {
    let honest = honest_trace();
    let lie_at = find_op(&honest, 17, 0) as usize; // AttnResidual of layer 0, position 0 (input: Embed)
    let element = 1u32;
    let wrong = honest.tampered(lie_at, element as usize);
    let mut s = setup(&honest).await;
    let id = s.open().await;
    let i = s.bisect(id, &honest, &wrong).await;
    assert_eq!(i, lie_at as u64);
    s.claim_leaf(id, &wrong, i, element).await;
    // A mismatched opening is rejected.
    let exec = s.fx.exec;
    let e = game_revert(s.prove(id, exec, &wrong, i, element).await);
    assert!(matches!(e, DisputeGameErrors::BadOpening(_)), "{e:?}");
    s.prove(id, exec, &honest, i, element).await.unwrap();
    let d = s.game.dispute(id).await.unwrap();
    assert!(d.executorWon);
    s.print_gas("honest executor");
    let r = &s.fx.rollup;
    assert_eq!(
        r.leaf_status(s.batch_id, 1).await.unwrap(),
        LeafStatus::Pending
    );
    assert_eq!(r.bond(Role::Executor, exec).await.unwrap().amount, eth(2));
    assert_eq!(s.game.credits(exec).await.unwrap(), eth(1));
    assert_eq!(s.game.credits(s.fx.challenger).await.unwrap(), U256::ZERO);
    s.fx.advance(WINDOW).await;
    r.finalize(s.batch_id).await.unwrap();
}

#[tokio::test]
async fn unsupported_op_reverts() {
    let honest = honest_trace();
    let lie_at = find_op(&honest, 2, 0) as usize; // QProj (I32 output)
    let wrong = honest.tampered(lie_at, 0);
    let mut s = setup(&honest).await;
    let id = s.open().await;
    let i = s.bisect(id, &honest, &wrong).await;
    assert_eq!(i, lie_at as u64);
    s.claim_leaf(id, &wrong, i, 0).await;
    let exec = s.fx.exec;
    let out = honest.opening(i, 0);
    let e = game_revert(
        s.as_(exec)
            .send(
                G::proveResidualAddCall {
                    id: U256::from(id),
                    out: out.clone(),
                    a: out.clone(),
                    b: out,
                },
                U256::ZERO,
            )
            .await,
    );
    assert_eq!(
        e,
        DisputeGameErrors::OpNotSupportedYet(G::OpNotSupportedYet { code: 2 })
    );
}

#[tokio::test]
async fn silent_executor_loses_on_time() {
    let honest = honest_trace();
    let mut s = setup(&honest).await;
    let id = s.open().await;
    let g = s.as_(s.fx.stranger);
    // (Each transaction on the embedded chain mines a block one second later.)
    s.fx.advance(CLOCK - 10).await;
    let e = game_revert(
        g.send(G::timeoutCall { id: U256::from(id) }, U256::ZERO)
            .await,
    );
    assert!(matches!(e, DisputeGameErrors::ClockRunning(_)), "{e:?}");
    s.fx.advance(20).await;
    // Too late to move.
    let (left, right) = reveal_children(
        &honest.tree,
        0,
        u32::from(s.game.dispute(id).await.unwrap().height),
    )
    .unwrap();
    let e = game_revert(
        s.as_(s.fx.exec)
            .send(
                G::revealCall {
                    id: U256::from(id),
                    left,
                    right,
                },
                U256::ZERO,
            )
            .await,
    );
    assert!(matches!(e, DisputeGameErrors::ClockExpired(_)), "{e:?}");
    let r = g
        .send(G::timeoutCall { id: U256::from(id) }, U256::ZERO)
        .await
        .unwrap();
    println!("timeout (executor loses) {} gas", r.gas_used);
    assert!(!s.game.dispute(id).await.unwrap().executorWon);
    assert_eq!(
        s.fx.rollup.leaf_status(s.batch_id, 1).await.unwrap(),
        LeafStatus::Invalid
    );
    assert_eq!(s.fx.rollup.credits(s.fx.challenger).await.unwrap(), eth(1));
}

#[tokio::test]
async fn silent_challenger_loses_on_time() {
    let honest = honest_trace();
    let mut s = setup(&honest).await;
    let id = s.open().await;
    let d = s.game.dispute(id).await.unwrap();
    let (left, right) = reveal_children(&honest.tree, 0, u32::from(d.height)).unwrap();
    s.fx.advance(100).await;
    s.as_(s.fx.exec)
        .send(
            G::revealCall {
                id: U256::from(id),
                left,
                right,
            },
            U256::ZERO,
        )
        .await
        .unwrap();
    // Executor's clock: charged the elapsed time (≥ 100 s), plus the extension; the challenger's is untouched.
    let d2 = s.game.dispute(id).await.unwrap();
    let elapsed = d2.lastMove - d.lastMove;
    assert!(elapsed >= 100);
    assert_eq!(d2.executorClock, CLOCK - elapsed + EXTENSION);
    assert_eq!(d2.challengerClock, CLOCK);
    // Wrong side / not a party.
    let e = game_revert(
        s.as_(s.fx.stranger)
            .send(
                G::chooseCall {
                    id: U256::from(id),
                    right: false,
                },
                U256::ZERO,
            )
            .await,
    );
    assert!(matches!(e, DisputeGameErrors::NotYourTurn(_)), "{e:?}");
    s.fx.advance(CLOCK + 1).await;
    s.as_(s.fx.stranger)
        .send(G::timeoutCall { id: U256::from(id) }, U256::ZERO)
        .await
        .unwrap();
    assert!(s.game.dispute(id).await.unwrap().executorWon);
    assert_eq!(s.game.credits(s.fx.exec).await.unwrap(), eth(1));
    assert_eq!(
        s.fx.rollup.leaf_status(s.batch_id, 1).await.unwrap(),
        LeafStatus::Pending
    );
}

#[tokio::test]
async fn open_checks_bond_and_inclusion() {
    let honest = honest_trace();
    let s = setup(&honest).await;
    let g = s.as_(s.fx.challenger);
    let e = game_revert(
        g.open(s.batch_id, &s.leaf, 1, &s.proof, eth(1) / U256::from(2))
            .await,
    );
    assert!(matches!(e, DisputeGameErrors::InsufficientBond(_)), "{e:?}");
    let e = game_revert(g.open(s.batch_id, &s.leaf, 0, &s.proof, eth(1)).await);
    assert!(matches!(e, DisputeGameErrors::LeafNotInBatch(_)), "{e:?}");
    assert_eq!(
        g.open(s.batch_id, &s.leaf, 1, &s.proof, eth(1))
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        g.open(s.batch_id, &s.leaf, 1, &s.proof, eth(1))
            .await
            .unwrap(),
        2
    );
    // After the challenge window the rollup refuses (its revert bubbles up undecoded as a game error).
    s.fx.advance(WINDOW).await;
    assert!(
        g.open(s.batch_id, &s.leaf, 1, &s.proof, eth(1))
            .await
            .is_err()
    );
}
