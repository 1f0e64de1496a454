//! The interactive dispute game end to end, with real traces: the tiny synthetic model run by
//! `vir::interp::generate` (temperature and top-p sampling on), the model registered on the rollup, the lie injected
//! into one op output of one side's trace, and the one-step proof built by `prover::one_step_proof`. The same game
//! runs on the embedded chain and on a real anvil.

use crate::common::{WINDOW, eth, min_executor_bond};
use alloy::primitives::{Address, B256, Bytes, U256};
use protocol::{FinishReason, InferenceLeaf, LEAF_VERSION, SamplingParams, keccak256};
use std::sync::OnceLock;
use verinfer_l1_contracts::anvil::Anvil;
use verinfer_l1_contracts::dispute::DisputeGame::{self as G, DisputeGameErrors, Request};
use verinfer_l1_contracts::dispute::OneStepProver::OneStepProverErrors;
use verinfer_l1_contracts::dispute::{Game, GameConfig, GameError, deploy_prover, reveal_children};
use verinfer_l1_contracts::one_step::OneStep;
use verinfer_l1_contracts::prover::{
    IntModelData, RecordedTrace, model_registration, one_step_proof, output_mismatch_openings,
    request,
};
use verinfer_l1_contracts::rpc::{RpcConfig, RpcL1};
use verinfer_l1_contracts::{
    ContractError, EmbeddedChain, L1, LeafStatus, Role, Rollup, RollupConfig, dev,
};
use vir::IntModel;
use vir::gguf::GgufFile;
use vir::program::OutType;
use vir::synthetic::{SyntheticSpec, synthetic_gguf};

const CLOCK: u64 = 1800;
const EXTENSION: u64 = 300;

fn model() -> &'static IntModel {
    static M: OnceLock<IntModel> = OnceLock::new();
    M.get_or_init(|| {
        let bytes = synthetic_gguf(&SyntheticSpec::tiny()).unwrap();
        IntModel::load(&GgufFile::parse(bytes).unwrap()).unwrap()
    })
}

fn params() -> SamplingParams {
    SamplingParams {
        max_tokens: 2,
        temperature_milli: 700,
        top_p_milli: 900,
        seed: 7,
        choice_index: 0,
    }
}

const PROMPT: [u32; 3] = [1, 2, 3];

/// The honest run: trace and output tokens.
fn honest() -> &'static (RecordedTrace, Vec<u32>) {
    static T: OnceLock<(RecordedTrace, Vec<u32>)> = OnceLock::new();
    T.get_or_init(|| {
        let (t, g) = RecordedTrace::run(model(), &PROMPT, &params()).unwrap();
        (t, g.tokens)
    })
}

/// `t` with element `element` of op `index` changed (its value +1; QVec: the int16 value).
fn tampered(t: &RecordedTrace, index: usize, element: usize) -> RecordedTrace {
    let mut ops = t.ops.clone();
    let (d, b) = &mut ops[index];
    let off = match d.out_type {
        OutType::I32 => 4 * element,
        OutType::I64 => 8 * element,
        OutType::QVec => 4 * d.out_groups as usize + 2 * element,
    };
    b[off] = b[off].wrapping_add(1);
    RecordedTrace::new(t.program.clone(), t.prompt.clone(), ops)
}

/// Index of the first op with descriptor code `code` (and round) at position `pos`.
fn find_op(t: &RecordedTrace, code: u8, round: u8, pos: u32) -> usize {
    t.ops
        .iter()
        .position(|(d, _)| d.code().0 == code && d.code().2 == round && d.pos == pos)
        .unwrap_or_else(|| panic!("no op {code}/{round} at {pos}"))
}

/// Chain handles of the named parties.
#[derive(Clone)]
struct Actors<L> {
    owner: L,
    seq: L,
    exec: L,
    challenger: L,
    stranger: L,
}

struct Setup<L> {
    a: Actors<L>,
    rollup: Rollup<L>,
    game: Game<L>,
    batch_id: u64,
    leaf: InferenceLeaf,
    proof: Vec<B256>,
    req: Request,
    gas: Vec<(&'static str, u64)>,
}

/// Rollup + verifier + prover + game deployed, the tiny model registered, a batch with one leaf over
/// `executor_trace` posted (leaf index 1 of 2).
async fn setup<L: L1 + Clone>(a: Actors<L>, executor_trace: &RecordedTrace) -> Setup<L> {
    let config = RollupConfig {
        min_sequencer_bond: eth(1),
        min_executor_bond: min_executor_bond(),
        withdrawal_delay: 2 * WINDOW,
        challenge_window: WINDOW,
        owner: a.owner.sender(),
    };
    let rollup = Rollup::deploy(a.owner.clone(), &config).await.unwrap();
    rollup
        .with_l1(a.seq.clone())
        .register_sequencer(eth(1))
        .await
        .unwrap();
    rollup
        .with_l1(a.exec.clone())
        .register_executor(eth(2))
        .await
        .unwrap();
    let (root, cfg, cproof) = model_registration(model());
    rollup.register_model(root, cfg, cproof).await.unwrap();
    let verifier = OneStep::deploy(a.owner.clone()).await.unwrap();
    let prover = deploy_prover(&a.owner, verifier.address()).await.unwrap();
    let gc = GameConfig {
        clock: CLOCK,
        extension: EXTENSION,
        ..GameConfig::new(rollup.address(), prover, eth(1))
    };
    let game = Game::deploy(a.owner.clone(), &gc).await.unwrap();
    rollup.set_dispute_game(game.address()).await.unwrap();
    let output = &honest().1;
    let leaf = InferenceLeaf {
        version: LEAF_VERSION,
        requestId: keccak256("request"),
        modelRoot: root,
        promptRoot: protocol::token_ids_root(&PROMPT),
        paramsHash: params().params_hash(),
        outputHash: protocol::token_ids_root(output),
        finishReason: FinishReason::Length.into(),
        traceRoot: executor_trace.root(),
        opCount: executor_trace.ops.len() as u64,
        executor: a.exec.sender(),
    };
    let other = InferenceLeaf {
        requestId: keccak256("other"),
        ..leaf
    };
    let hashes = vec![other.hash(), leaf.hash()];
    let seq = rollup.with_l1(a.seq.clone());
    let prev = seq.state_root().await.unwrap();
    let posted = seq
        .post_batch(
            Bytes::from_static(b"batch"),
            protocol::batch_root(&hashes),
            2,
            prev,
        )
        .await
        .unwrap();
    let proof = protocol::leaf_proof(&hashes, 1).unwrap().siblings;
    let req = request(root, &PROMPT, output, &params());
    Setup {
        a,
        rollup,
        game,
        batch_id: posted.batch_id,
        leaf,
        proof,
        req,
        gas: Vec::new(),
    }
}

impl<L: L1 + Clone> Setup<L> {
    fn as_(&self, l: &L) -> Game<L> {
        self.game.with_l1(l.clone())
    }

    async fn open(&mut self) -> u64 {
        let g = self.as_(&self.a.challenger);
        let r = g
            .send(
                G::openCall {
                    batchId: U256::from(self.batch_id),
                    leaf: self.leaf.into(),
                    index: U256::from(1),
                    proof: self.proof.clone(),
                    req: self.req.clone(),
                },
                eth(1),
            )
            .await
            .unwrap();
        self.gas.push(("open", r.gas_used));
        let id = self.game.view(G::disputeCountCall {}).await.unwrap();
        u64::try_from(id).unwrap()
    }

    /// Bisects until the leaf: the executor answers from `exec`, the challenger picks by `chal`.
    async fn bisect(&mut self, id: u64, exec: &RecordedTrace, chal: &RecordedTrace) -> u64 {
        let (e, c) = (self.as_(&self.a.exec), self.as_(&self.a.challenger));
        loop {
            let d = e.dispute(id).await.unwrap();
            if d.phase != 1 {
                return d.start;
            }
            let (start, height) = (d.start, u32::from(d.height));
            let (left, right) = reveal_children(&exec.tree, start, height).unwrap();
            let r = e.reveal(id, left, right).await.unwrap();
            self.gas.push(("reveal", r.gas_used));
            let (my_left, _) = reveal_children(&chal.tree, start, height).unwrap();
            let r = c.choose(id, my_left == left).await.unwrap();
            self.gas.push(("choose", r.gas_used));
        }
    }

    async fn claim_leaf(&mut self, id: u64, chal: &RecordedTrace, index: u64, element: u32) {
        let r = self
            .as_(&self.a.challenger)
            .claim_leaf(id, chal.tree.leaves()[index as usize], element, &self.req)
            .await
            .unwrap();
        self.gas.push(("claimLeaf", r.gas_used));
    }

    /// `proveOneStep` sent by `who` with the proof built from `exec` (the executor's trace).
    async fn prove(
        &mut self,
        id: u64,
        who: &L,
        exec: &RecordedTrace,
        index: u64,
        element: u32,
    ) -> Result<u64, GameError> {
        let data = IntModelData::new(model());
        let p = one_step_proof(exec, &data, params().temperature_milli, index, element).unwrap();
        let r = self.as_(who).prove_one_step(id, &self.req, p).await?;
        self.gas.push(("proveOneStep", r.gas_used));
        Ok(r.gas_used)
    }

    /// A full game: executor trace `exec`, challenger trace `chal` (first difference at `lie_at`, element
    /// `element`); the executor submits the one-step proof. Returns whether the executor won.
    async fn play(
        &mut self,
        exec: &RecordedTrace,
        chal: &RecordedTrace,
        lie_at: usize,
        element: u32,
    ) -> bool {
        let id = self.open().await;
        let i = self.bisect(id, exec, chal).await;
        assert_eq!(i, lie_at as u64);
        self.claim_leaf(id, chal, i, element).await;
        let who = self.a.exec.clone();
        self.prove(id, &who, exec, i, element).await.unwrap();
        let d = self.game.dispute(id).await.unwrap();
        assert_eq!(d.phase, 5);
        d.executorWon
    }

    fn gas_summary(&self) -> String {
        let mut seen: Vec<&str> = Vec::new();
        let mut out = String::new();
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
                out += &format!("{k} x{} {lo}..{hi}; ", g.len());
            }
        }
        out
    }
}

fn embedded() -> Actors<verinfer_l1_contracts::EmbeddedL1> {
    let chain = EmbeddedChain::default();
    let a: Vec<Address> = dev::accounts().iter().map(|a| a.address).collect();
    Actors {
        owner: chain.connect(a[0]),
        seq: chain.connect(a[1]),
        exec: chain.connect(a[2]),
        challenger: chain.connect(a[4]),
        stranger: chain.connect(a[5]),
    }
}

fn game_revert(r: Result<impl std::fmt::Debug, GameError>) -> DisputeGameErrors {
    match r {
        Err(ContractError::Revert(e)) => e,
        other => panic!("expected a DisputeGame revert, got {other:?}"),
    }
}

/// The `OneStepProver` error a `proveOneStep` reverted with (it passes through `DisputeGame` undecoded).
fn prover_revert(r: Result<impl std::fmt::Debug, GameError>) -> OneStepProverErrors {
    use alloy::sol_types::SolInterface;
    match r {
        Err(e) => e
            .undecoded_revert()
            .and_then(|d| OneStepProverErrors::abi_decode(d).ok())
            .unwrap_or_else(|| panic!("expected a OneStepProver revert, got {e:?}")),
        Ok(v) => panic!("expected a OneStepProver revert, got {v:?}"),
    }
}

/// Checks the executor lost: leaf invalid, whole bond slashed (half to the challenger, half burned), challenger
/// bond returned.
async fn assert_executor_slashed<L: L1 + Clone>(s: &Setup<L>) {
    let r = &s.rollup;
    assert_eq!(
        r.leaf_status(s.batch_id, 1).await.unwrap(),
        LeafStatus::Invalid
    );
    assert_eq!(
        r.bond(Role::Executor, s.a.exec.sender())
            .await
            .unwrap()
            .amount,
        U256::ZERO
    );
    assert_eq!(
        r.credits(s.a.challenger.sender()).await.unwrap(),
        min_executor_bond() / U256::from(2)
    );
    assert_eq!(
        s.game.credits(s.a.challenger.sender()).await.unwrap(),
        eth(1)
    );
}

/// Ops where the executor lies, (code, round, position, element): every op kind of the body and the head.
fn lie_sites() -> Vec<(&'static str, u8, u8, u32, u32)> {
    vec![
        ("Embed (prompt token)", 0, 0, 1, 5),
        ("Embed (generated token)", 0, 0, 3, 2),
        ("AttnNorm (RmsNorm)", 1, 0, 1, 7),
        ("QProj (MatMul)", 2, 0, 1, 3),
        ("VProj (MatMul)", 4, 0, 2, 1),
        ("QRope", 5, 0, 2, 17),
        ("KRope", 6, 0, 2, 5),
        ("AttnScores", 7, 0, 2, 5),
        ("AttnChunkMax", 8, 0, 2, 1),
        ("AttnMax", 9, 0, 2, 2),
        ("AttnExp", 10, 0, 2, 4),
        ("AttnChunkSum", 11, 0, 2, 3),
        ("AttnSum", 12, 0, 2, 0),
        ("AttnWeightedSum", 13, 0, 2, 9),
        ("AttnOut", 14, 0, 2, 9),
        ("AttnOutQuant", 15, 0, 2, 33),
        ("OProj (MatMul, Q12)", 16, 0, 2, 3),
        ("AttnResidual", 17, 0, 1, 3),
        ("FfnNorm", 18, 0, 2, 60),
        ("GateProj", 19, 0, 2, 100),
        ("SwiGlu", 21, 0, 2, 127),
        ("DownProj", 22, 0, 2, 63),
        ("FfnResidual", 23, 0, 2, 3),
        ("OutNorm", 64, 0, 2, 0),
        ("Logits", 65, 0, 2, 511),
        ("LogitChunkMax", 66, 0, 2, 1),
        ("LogitMax", 67, 0, 2, 0),
        ("SampleExp", 68, 0, 2, 300),
        ("SampleChunkSum", 69, 0, 2, 0),
        ("SampleSum", 70, 0, 2, 1),
        ("TopPChunkSum(5)", 71 + 10, 5, 2, 0),
        ("TopPStep(0)", 72, 0, 2, 0),
        ("TopPStep(16)", 72 + 32, 16, 3, 0),
        ("KeptChunkSum", 105, 0, 2, 0),
        ("PickChunk", 106, 0, 2, 1),
        ("PickToken", 107, 0, 3, 0),
    ]
}

#[tokio::test]
async fn lying_executor_is_slashed_at_every_op_kind() {
    let (honest, _) = honest();
    let mut report = Vec::new();
    for (name, code, round, pos, element) in lie_sites() {
        let at = find_op(honest, code, round, pos);
        let liar = tampered(honest, at, element as usize);
        let mut s = setup(embedded(), &liar).await;
        let won = s.play(&liar, honest, at, element).await;
        assert!(!won, "{name}: the lying executor won");
        assert_executor_slashed(&s).await;
        report.push(format!("{name}: {}", s.gas_summary()));
    }
    for r in report {
        println!("{r}");
    }
}

#[tokio::test]
async fn honest_executor_wins_against_lying_challenger() {
    let (honest, _) = honest();
    for (name, code, round, pos, element) in [
        ("QProj", 2u8, 0u8, 1u32, 3u32),
        ("AttnWeightedSum", 13, 0, 2, 9),
        ("SwiGlu", 21, 0, 2, 5),
        ("PickToken", 107, 0, 2, 0),
    ] {
        let at = find_op(honest, code, round, pos);
        let wrong = tampered(honest, at, element as usize);
        let mut s = setup(embedded(), honest).await;
        let id = s.open().await;
        let i = s.bisect(id, honest, &wrong).await;
        assert_eq!(i, at as u64);
        s.claim_leaf(id, &wrong, i, element).await;
        // A proof built from the wrong trace does not open the executor's leaf.
        let exec = s.a.exec.clone();
        let e = s.prove(id, &exec, &wrong, i, element).await;
        assert!(e.is_err(), "{name}");
        s.prove(id, &exec, honest, i, element).await.unwrap();
        let d = s.game.dispute(id).await.unwrap();
        assert!(d.executorWon, "{name}");
        let r = &s.rollup;
        assert_eq!(
            r.leaf_status(s.batch_id, 1).await.unwrap(),
            LeafStatus::Pending
        );
        assert_eq!(
            r.bond(Role::Executor, exec.sender()).await.unwrap().amount,
            eth(2)
        );
        assert_eq!(s.game.credits(exec.sender()).await.unwrap(), eth(1));
        assert_eq!(
            s.game.credits(s.a.challenger.sender()).await.unwrap(),
            U256::ZERO
        );
        s.a.owner.advance_time(WINDOW).await.unwrap();
        r.finalize(s.batch_id).await.unwrap();
    }
}

/// Proofs whose trace multiproof or input openings are altered revert; SwiGlu's SIGMOID lookups verify both from
/// the prover's held table (no chunk opened) and from explicitly opened table chunks.
#[tokio::test]
async fn altered_one_step_proofs_revert() {
    use protocol::MerkleTree;
    use verinfer_l1_contracts::prover::{ModelData, ModelRead, plan};
    let (honest, _) = honest();
    let data = IntModelData::new(model());
    let temp = params().temperature_milli;
    for (name, code, pos, element) in [("AttnWeightedSum", 13u8, 2u32, 9u32), ("SwiGlu", 21, 2, 5)]
    {
        let at = find_op(honest, code, 0, pos);
        let wrong = tampered(honest, at, element as usize);
        let mut s = setup(embedded(), honest).await;
        let id = s.open().await;
        let i = s.bisect(id, honest, &wrong).await;
        s.claim_leaf(id, &wrong, i, element).await;
        let good = one_step_proof(honest, &data, temp, i, element).unwrap();
        assert!(
            good.inputs.len() >= 2 && !good.traceNodes.is_empty(),
            "{name}"
        );
        let g = s.as_(&s.a.exec);
        let mut variants = Vec::new();
        let mut p = good.clone();
        p.traceNodes[0] = keccak256("not a node");
        variants.push(("changed node", p));
        let mut p = good.clone();
        p.traceNodes.pop();
        variants.push(("missing node", p));
        let mut p = good.clone();
        p.traceNodes.push(B256::ZERO);
        variants.push(("extra node", p));
        let mut p = good.clone();
        p.inputs[1].outputRoot = p.inputs[0].outputRoot;
        variants.push(("input of another op", p));
        let mut p = good.clone();
        p.inputs.swap(0, 1);
        variants.push(("inputs swapped", p));
        for (what, p) in variants {
            let e = prover_revert(g.prove_one_step(id, &s.req, p).await);
            assert!(
                matches!(
                    e,
                    OneStepProverErrors::BadOpening(_) | OneStepProverErrors::BadChunks(_)
                ),
                "{name}, {what}: {e:?}"
            );
        }
        let mut p = good.clone();
        if code == 21 {
            // The same lookups from opened table chunks (the path of a model whose table the prover does not hold).
            assert!(p.weights[0].chunks.index.is_empty());
            let pl = plan(honest, &data, temp, i, element).unwrap();
            let Some(ModelRead::Chunks { leaf, chunks }) = pl.weights.first() else {
                panic!("SwiGlu reads SIGMOID chunks");
            };
            let (_, bytes) = data.tensor(*leaf);
            let tree = MerkleTree::new(protocol::tensor::chunk_leaves(&bytes));
            let ch = &mut p.weights[0].chunks;
            for &c in chunks {
                let a = c as usize * 1024;
                ch.index.push(c);
                ch.data.push(Bytes::copy_from_slice(
                    &bytes[a..(a + 1024).min(bytes.len())],
                ));
                ch.proofs.push(tree.proof(c).unwrap().siblings);
            }
            let mut missing = p.clone();
            missing.weights[0].chunks.index.pop();
            missing.weights[0].chunks.data.pop();
            missing.weights[0].chunks.proofs.pop();
            let e = prover_revert(g.prove_one_step(id, &s.req, missing).await);
            assert!(matches!(e, OneStepProverErrors::BadChunks(_)), "{e:?}");
        }
        g.prove_one_step(id, &s.req, p).await.unwrap();
        assert!(s.game.dispute(id).await.unwrap().executorWon, "{name}");
    }
}

#[tokio::test]
async fn claim_checks_the_element_and_the_request() {
    let (honest, _) = honest();
    let at = find_op(honest, 9, 0, 1); // AttnMax: n_heads = 4 values
    let wrong = tampered(honest, at, 0);
    let mut s = setup(embedded(), honest).await;
    let id = s.open().await;
    s.bisect(id, honest, &wrong).await;
    let c = s.as_(&s.a.challenger);
    let leaf = wrong.tree.leaves()[at];
    let e = game_revert(c.claim_leaf(id, leaf, 4, &s.req).await);
    assert!(
        matches!(e, DisputeGameErrors::ElementOutOfRange(_)),
        "{e:?}"
    );
    let other = Request {
        seed: 8,
        ..s.req.clone()
    };
    let e = game_revert(c.claim_leaf(id, leaf, 0, &other).await);
    assert!(matches!(e, DisputeGameErrors::RequestMismatch(_)), "{e:?}");
    let e = game_revert(c.claim_leaf(id, honest.tree.leaves()[at], 0, &s.req).await);
    assert!(matches!(e, DisputeGameErrors::ClaimAgrees(_)), "{e:?}");
}

#[tokio::test]
async fn a_liar_that_cannot_open_loses_on_time() {
    // The executor lies at a SampleExp element; it never submits a proof.
    let (honest, _) = honest();
    let at = find_op(honest, 68, 0, 2);
    let liar = tampered(honest, at, 10);
    let mut s = setup(embedded(), &liar).await;
    let id = s.open().await;
    s.bisect(id, &liar, honest).await;
    s.claim_leaf(id, honest, at as u64, 10).await;
    // The challenger cannot prove with its own (honest) data: the executor's leaf does not open.
    let ch = s.a.challenger.clone();
    assert!(s.prove(id, &ch, honest, at as u64, 10).await.is_err());
    // The executor's clock has grown by an extension per reveal.
    let expires = s
        .game
        .view(G::expiresAtCall { id: U256::from(id) })
        .await
        .unwrap();
    let now = s.a.owner.latest_block().await.unwrap().timestamp;
    s.a.owner
        .advance_time(u64::try_from(expires).unwrap() - now + 1)
        .await
        .unwrap();
    s.as_(&s.a.stranger).timeout(id).await.unwrap();
    assert!(!s.game.dispute(id).await.unwrap().executorWon);
    assert_executor_slashed(&s).await;
}

#[tokio::test]
async fn silent_executor_loses_on_time() {
    let (honest, _) = honest();
    let mut s = setup(embedded(), honest).await;
    let id = s.open().await;
    let g = s.as_(&s.a.stranger);
    s.a.owner.advance_time(CLOCK - 10).await.unwrap();
    let e = game_revert(g.timeout(id).await);
    assert!(matches!(e, DisputeGameErrors::ClockRunning(_)), "{e:?}");
    s.a.owner.advance_time(20).await.unwrap();
    let height = u32::from(s.game.dispute(id).await.unwrap().height);
    let (left, right) = reveal_children(&honest.tree, 0, height).unwrap();
    let e = game_revert(s.as_(&s.a.exec).reveal(id, left, right).await);
    assert!(matches!(e, DisputeGameErrors::ClockExpired(_)), "{e:?}");
    let r = g.timeout(id).await.unwrap();
    println!("timeout (executor loses) {} gas", r.gas_used);
    assert!(!s.game.dispute(id).await.unwrap().executorWon);
    assert_executor_slashed(&s).await;
}

#[tokio::test]
async fn silent_challenger_loses_on_time() {
    let (honest, _) = honest();
    let mut s = setup(embedded(), honest).await;
    let id = s.open().await;
    let d = s.game.dispute(id).await.unwrap();
    let (left, right) = reveal_children(&honest.tree, 0, u32::from(d.height)).unwrap();
    s.a.owner.advance_time(100).await.unwrap();
    s.as_(&s.a.exec).reveal(id, left, right).await.unwrap();
    let d2 = s.game.dispute(id).await.unwrap();
    let elapsed = d2.lastMove - d.lastMove;
    assert!(elapsed >= 100);
    assert_eq!(d2.executorClock, CLOCK - elapsed + EXTENSION);
    assert_eq!(d2.challengerClock, CLOCK);
    let e = game_revert(s.as_(&s.a.stranger).choose(id, false).await);
    assert!(matches!(e, DisputeGameErrors::NotYourTurn(_)), "{e:?}");
    s.a.owner.advance_time(CLOCK + 1).await.unwrap();
    s.as_(&s.a.stranger).timeout(id).await.unwrap();
    assert!(s.game.dispute(id).await.unwrap().executorWon);
    assert_eq!(s.game.credits(s.a.exec.sender()).await.unwrap(), eth(1));
    assert_eq!(
        s.rollup.leaf_status(s.batch_id, 1).await.unwrap(),
        LeafStatus::Pending
    );
}

#[tokio::test]
async fn open_checks_bond_inclusion_request_and_model() {
    let (honest, _) = honest();
    let s = setup(embedded(), honest).await;
    let g = s.as_(&s.a.challenger);
    let e = game_revert(
        g.open(
            s.batch_id,
            &s.leaf,
            1,
            &s.proof,
            &s.req,
            eth(1) / U256::from(2),
        )
        .await,
    );
    assert!(matches!(e, DisputeGameErrors::InsufficientBond(_)), "{e:?}");
    let e = game_revert(
        g.open(s.batch_id, &s.leaf, 0, &s.proof, &s.req, eth(1))
            .await,
    );
    assert!(matches!(e, DisputeGameErrors::LeafNotInBatch(_)), "{e:?}");
    for bad in [
        Request {
            promptLen: 4,
            ..s.req.clone()
        },
        Request {
            outputLen: 1,
            ..s.req.clone()
        },
        Request {
            topPMilli: 901,
            ..s.req.clone()
        },
        Request {
            modelRoot: keccak256("other model"),
            ..s.req.clone()
        },
    ] {
        let e = game_revert(g.open(s.batch_id, &s.leaf, 1, &s.proof, &bad, eth(1)).await);
        assert!(matches!(e, DisputeGameErrors::RequestMismatch(_)), "{e:?}");
    }
    assert_eq!(
        g.open(s.batch_id, &s.leaf, 1, &s.proof, &s.req, eth(1))
            .await
            .unwrap(),
        1
    );
    s.a.owner.advance_time(WINDOW).await.unwrap();
    assert!(
        g.open(s.batch_id, &s.leaf, 1, &s.proof, &s.req, eth(1))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn a_trace_of_the_wrong_length_loses_at_open() {
    let (honest, _) = honest();
    // A truncated trace (the last op dropped): its op count does not match the program's.
    let mut ops = honest.ops.clone();
    ops.pop();
    let short = RecordedTrace::new(honest.program.clone(), honest.prompt.clone(), ops);
    let mut s = setup(embedded(), &short).await;
    let id = s.open().await;
    let d = s.game.dispute(id).await.unwrap();
    assert_eq!(d.phase, 5);
    assert!(!d.executorWon);
    assert_executor_slashed(&s).await;
}

#[tokio::test]
async fn unbonded_executor_slashes_the_sequencer() {
    let (honest, _) = honest();
    let s = setup(embedded(), honest).await;
    // The bonded executor's leaf is not a fault.
    let g = s.as_(&s.a.stranger);
    let e = game_revert(
        g.prove_unbonded_executor(s.batch_id, &s.leaf, 1, &s.proof)
            .await,
    );
    assert!(matches!(e, DisputeGameErrors::ExecutorBonded(_)), "{e:?}");
    // A batch whose leaf names an address with no bond.
    let leaf = InferenceLeaf {
        executor: s.a.stranger.sender(),
        ..s.leaf
    };
    let hashes = [leaf.hash()];
    let seq = s.rollup.with_l1(s.a.seq.clone());
    let prev = seq.state_root().await.unwrap();
    let posted = seq
        .post_batch(Bytes::from_static(b"b2"), hashes[0], 1, prev)
        .await
        .unwrap();
    let r = g
        .prove_unbonded_executor(posted.batch_id, &leaf, 0, &[])
        .await
        .unwrap();
    println!("proveUnbondedExecutor {} gas", r.gas_used);
    assert_eq!(
        s.rollup.leaf_status(posted.batch_id, 0).await.unwrap(),
        LeafStatus::Invalid
    );
    assert_eq!(
        s.rollup
            .bond(Role::Sequencer, s.a.seq.sender())
            .await
            .unwrap()
            .amount,
        U256::ZERO
    );
    assert_eq!(
        s.rollup.credits(s.a.stranger.sender()).await.unwrap(),
        eth(1) / U256::from(2)
    );
    // Once is enough.
    assert!(
        g.prove_unbonded_executor(posted.batch_id, &leaf, 0, &[])
            .await
            .is_err()
    );
}

/// One full game on a real anvil: the executor lies at a matmul element and is slashed; then a second game on
/// the same chain where the challenger lies at an attention element and loses its bond.
#[tokio::test]
async fn full_games_on_anvil() {
    let anvil = Anvil::spawn().unwrap_or_else(|e| panic!("{e}"));
    let keys = dev::accounts();
    let owner = RpcL1::connect(anvil.endpoint(), keys[0].signer.clone(), RpcConfig::local())
        .await
        .unwrap();
    let a = Actors {
        seq: owner.with_signer(keys[1].signer.clone()),
        exec: owner.with_signer(keys[2].signer.clone()),
        challenger: owner.with_signer(keys[4].signer.clone()),
        stranger: owner.with_signer(keys[5].signer.clone()),
        owner,
    };
    let (honest, _) = honest();
    let at = find_op(honest, 2, 0, 1);
    let liar = tampered(honest, at, 3);
    let mut s = setup(a.clone(), &liar).await;
    assert!(!s.play(&liar, honest, at, 3).await);
    assert_executor_slashed(&s).await;
    println!("anvil, lying executor: {}", s.gas_summary());

    let at = find_op(honest, 13, 0, 2);
    let wrong = tampered(honest, at, 9);
    let mut s = setup(a, honest).await;
    assert!(s.play(honest, &wrong, at, 9).await);
    assert_eq!(s.game.credits(s.a.exec.sender()).await.unwrap(), eth(1));
    s.a.owner.advance_time(WINDOW).await.unwrap();
    s.rollup.finalize(s.batch_id).await.unwrap();
    assert_eq!(
        s.rollup.leaf_status(s.batch_id, 1).await.unwrap(),
        LeafStatus::Final
    );
    println!("anvil, lying challenger: {}", s.gas_summary());
}

#[tokio::test]
async fn output_that_disagrees_with_the_trace_is_slashed() {
    let (honest, tokens) = honest();
    let mut s = setup(embedded(), honest).await;
    // The leaf's own output matches its trace: no fault.
    let g = s.as_(&s.a.stranger);
    let (pick, chunk) = output_mismatch_openings(honest, tokens, 1);
    let e = game_revert(
        g.prove_output_mismatch(s.batch_id, &s.leaf, 1, &s.proof, &s.req, 1, pick, chunk)
            .await,
    );
    assert!(matches!(e, DisputeGameErrors::OutputMatches(_)), "{e:?}");
    // A leaf over the honest trace whose output token 1 was replaced (a cached answer).
    let mut wrong = tokens.clone();
    wrong[1] = (wrong[1] + 1) % 512;
    let leaf = InferenceLeaf {
        requestId: keccak256("cached"),
        outputHash: protocol::token_ids_root(&wrong),
        ..s.leaf
    };
    let hashes = [leaf.hash()];
    let seq = s.rollup.with_l1(s.a.seq.clone());
    let prev = seq.state_root().await.unwrap();
    let posted = seq
        .post_batch(Bytes::from_static(b"b2"), hashes[0], 1, prev)
        .await
        .unwrap();
    s.req = request(leaf.modelRoot, &PROMPT, &wrong, &params());
    let (pick, chunk) = output_mismatch_openings(honest, &wrong, 0);
    let e = game_revert(
        g.prove_output_mismatch(posted.batch_id, &leaf, 0, &[], &s.req, 0, pick, chunk)
            .await,
    );
    assert!(matches!(e, DisputeGameErrors::OutputMatches(_)), "{e:?}");
    let (pick, chunk) = output_mismatch_openings(honest, &wrong, 1);
    let r = g
        .prove_output_mismatch(posted.batch_id, &leaf, 0, &[], &s.req, 1, pick, chunk)
        .await
        .unwrap();
    println!("proveOutputMismatch {} gas", r.gas_used);
    assert_eq!(
        s.rollup.leaf_status(posted.batch_id, 0).await.unwrap(),
        LeafStatus::Invalid
    );
    assert_eq!(
        s.rollup
            .bond(Role::Executor, s.a.exec.sender())
            .await
            .unwrap()
            .amount,
        U256::ZERO
    );
    assert_eq!(
        s.rollup.credits(s.a.stranger.sender()).await.unwrap(),
        eth(1)
    );
}

#[tokio::test]
async fn a_leaf_over_an_unregistered_model_loses_at_open() {
    let (honest, tokens) = honest();
    let mut s = setup(embedded(), honest).await;
    let leaf = InferenceLeaf {
        requestId: keccak256("unregistered"),
        modelRoot: keccak256("some other model"),
        ..s.leaf
    };
    let seq = s.rollup.with_l1(s.a.seq.clone());
    let prev = seq.state_root().await.unwrap();
    let posted = seq
        .post_batch(Bytes::from_static(b"b3"), leaf.hash(), 1, prev)
        .await
        .unwrap();
    let req = request(leaf.modelRoot, &PROMPT, tokens, &params());
    let id = s
        .as_(&s.a.challenger)
        .open(posted.batch_id, &leaf, 0, &[], &req, eth(1))
        .await
        .unwrap();
    let d = s.game.dispute(id).await.unwrap();
    assert_eq!(d.phase, 5);
    assert!(!d.executorWon);
    s.batch_id = posted.batch_id;
    assert_eq!(
        s.rollup.leaf_status(posted.batch_id, 0).await.unwrap(),
        LeafStatus::Invalid
    );
}
