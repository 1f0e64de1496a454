//! Random call sequences against a shadow model: every call succeeds exactly when the model says it should, the
//! contract's balance always equals the bonds plus unclaimed credits, no inactive address ever posts, and nobody
//! withdraws before the delay or while under dispute. Signature challenges (challenge, answer, resolve) move the
//! challenge bonds in and out of escrow and slash sequencers, and the books still add up.

use crate::common::*;
use alloy::primitives::{Address, Bytes, U256, keccak256};
use proptest::prelude::*;
use protocol::batch::{signature_proof, signature_root};
use protocol::{InferenceLeaf, LeafSignature, leaf_domain, leaf_proof, sign_leaf};
use std::collections::HashMap;
use verinfer_l1_contracts::{BondStatus, Role, dev, signature_opening};

#[derive(Debug, Clone)]
enum Op {
    Register(usize, Role, u64),
    TopUp(usize, Role, u64),
    RequestWithdrawal(usize, Role),
    Withdraw(usize, Role),
    Post(usize),
    Advance(u64),
    Slash(usize, Role, u64, bool),
    Claim(usize),
    Finalize(u64),
    OpenDispute(u64, usize),
    CloseDispute(u64, usize),
    ChallengeSig(u64, u64),
    AnswerSig(u64, u64),
    ResolveSig(u64, u64),
}

/// Leaves per posted batch.
const LEAVES: u64 = 3;

const ACTORS: usize = 3;
/// Bond amounts in units of 0.5 ETH (so 1 is below both minimums and 2 is below the executor minimum).
fn half_eth(n: u64) -> U256 {
    eth(n) / U256::from(2)
}

fn role() -> impl Strategy<Value = Role> {
    prop_oneof![Just(Role::Sequencer), Just(Role::Executor)]
}

fn op() -> impl Strategy<Value = Op> {
    let a = 0..ACTORS;
    prop_oneof![
        3 => (a.clone(), role(), 0u64..8).prop_map(|(a, r, v)| Op::Register(a, r, v)),
        2 => (a.clone(), role(), 0u64..3).prop_map(|(a, r, v)| Op::TopUp(a, r, v)),
        2 => (a.clone(), role()).prop_map(|(a, r)| Op::RequestWithdrawal(a, r)),
        3 => (a.clone(), role()).prop_map(|(a, r)| Op::Withdraw(a, r)),
        4 => a.clone().prop_map(Op::Post),
        3 => prop_oneof![1u64..100, Just(WINDOW - 2), Just(WINDOW), Just(DELAY - 2), Just(DELAY)].prop_map(Op::Advance),
        2 => (a.clone(), role(), 0u64..6, any::<bool>()).prop_map(|(a, r, v, w)| Op::Slash(a, r, v, w)),
        1 => a.clone().prop_map(Op::Claim),
        2 => (0u64..4).prop_map(Op::Finalize),
        3 => (1u64..3, a.clone()).prop_map(|(b, a)| Op::OpenDispute(b, a)),
        3 => (1u64..3, a).prop_map(|(b, a)| Op::CloseDispute(b, a)),
        2 => (1u64..3, 0..LEAVES).prop_map(|(b, i)| Op::ChallengeSig(b, i)),
        4 => (1u64..3, 0..LEAVES).prop_map(|(b, i)| Op::AnswerSig(b, i)),
        3 => (1u64..3, 0..LEAVES).prop_map(|(b, i)| Op::ResolveSig(b, i)),
    ]
}

#[derive(Debug, Clone, Copy, Default)]
struct ShadowBond {
    amount: U256,
    status: u8, // 0 none, 1 active, 2 withdrawing
    unlock_at: u64,
}

#[derive(Debug, Default)]
struct Shadow {
    bonds: HashMap<(usize, u8), ShadowBond>,
    credits: HashMap<usize, U256>,
    batches: Vec<(u64, bool)>, // (posted_at, finalized)
    /// Per batch: the posting actor and the DA commitment.
    posters: Vec<(usize, alloy::primitives::B256)>,
    /// Signature challenges by (batch, index): (deadline, status 1 pending, 2 answered, 3 resolved).
    challenges: HashMap<(u64, u64), (u64, u8)>,
    invalid: std::collections::HashSet<(u64, u64)>,
    /// Challenge bonds held for pending challenges.
    escrow: U256,
    open_batch: HashMap<u64, u64>,
    open_exec: HashMap<usize, u64>,
}

impl Shadow {
    fn min(role: Role) -> U256 {
        match role {
            Role::Sequencer => min_sequencer_bond(),
            Role::Executor => min_executor_bond(),
        }
    }

    fn bond(&mut self, a: usize, r: Role) -> &mut ShadowBond {
        self.bonds.entry((a, r as u8)).or_default()
    }

    fn active(&mut self, a: usize, r: Role) -> bool {
        let b = *self.bond(a, r);
        b.status == 1 && b.amount >= Self::min(r)
    }
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let fx = Fx::ready_empty().await;
        let actors: Vec<Address> = dev::accounts()[4..4 + ACTORS]
            .iter()
            .map(|a| a.address)
            .collect();
        let mut shadow = Shadow::default();
        let contract = fx.rollup.address();
        // Every batch carries the same leaves (nominally by `fx.exec`), each signed by the executor's key except
        // the last, whose signature is garbage: its challenges can only be resolved.
        let leaves = sample_leaves(LEAVES, fx.exec);
        let hashes: Vec<alloy::primitives::B256> = leaves.iter().map(InferenceLeaf::hash).collect();
        let domain = leaf_domain(31337, contract);
        let exec_key = k256::ecdsa::SigningKey::from_slice(dev::DEV_KEYS[2].as_slice()).unwrap();
        let mut sigs: Vec<LeafSignature> = leaves
            .iter()
            .map(|l| sign_leaf(l, &domain, &exec_key).unwrap())
            .collect();
        sigs[LEAVES as usize - 1] = LeafSignature::default();
        let sig_root = signature_root(&sigs);
        let challenge_bond = fx.rollup.signature_challenge_bond().await.unwrap();
        let window = fx.rollup.signature_response_window().await.unwrap();
        for op in ops {
            let now = fx.chain.latest_block().timestamp + 1;
            match op {
                Op::Register(a, role, v) => {
                    let amount = half_eth(v);
                    let r = fx.by(actors[a]);
                    let res = match role {
                        Role::Sequencer => r.register_sequencer(amount).await,
                        Role::Executor => r.register_executor(amount).await,
                    };
                    let b = shadow.bond(a, role);
                    let ok = b.status == 0 && amount >= Shadow::min(role);
                    prop_assert_eq!(res.is_ok(), ok, "{:?}: {:?}", op, res);
                    if ok {
                        *b = ShadowBond {
                            amount,
                            status: 1,
                            unlock_at: 0,
                        };
                    }
                }
                Op::TopUp(a, role, v) => {
                    let amount = half_eth(v);
                    let res = fx.by(actors[a]).top_up(role, amount).await;
                    let b = shadow.bond(a, role);
                    let ok = b.status == 1 && !amount.is_zero();
                    prop_assert_eq!(res.is_ok(), ok, "{:?}: {:?}", op, res);
                    if ok {
                        b.amount += amount;
                    }
                }
                Op::RequestWithdrawal(a, role) => {
                    let res = fx.by(actors[a]).request_withdrawal(role).await;
                    let b = shadow.bond(a, role);
                    let ok = b.status == 1;
                    prop_assert_eq!(res.is_ok(), ok, "{:?}: {:?}", op, res);
                    if ok {
                        b.status = 2;
                        b.unlock_at = now + DELAY;
                    }
                }
                Op::Withdraw(a, role) => {
                    let before = fx.balance(actors[a]).await;
                    let res = fx.by(actors[a]).withdraw(role).await;
                    let open = *shadow.open_exec.get(&a).unwrap_or(&0);
                    let b = shadow.bond(a, role);
                    let ok = b.status == 2
                        && now >= b.unlock_at
                        && (role == Role::Sequencer || open == 0);
                    prop_assert_eq!(res.is_ok(), ok, "{:?}: {:?}", op, res);
                    if ok {
                        // Never early: the receipt's block time is at or past the unlock time.
                        let receipt = res.unwrap();
                        prop_assert!(receipt.block_timestamp >= b.unlock_at);
                        prop_assert_eq!(fx.balance(actors[a]).await, before + b.amount);
                        *b = ShadowBond::default();
                    }
                }
                Op::Post(a) => {
                    let seq = fx.by(actors[a]);
                    let prev = seq.state_root().await.unwrap();
                    let data = Bytes::from(keccak256(now.to_be_bytes()).to_vec());
                    let da = keccak256(&data);
                    let res = seq
                        .post_batch_calldata(data, protocol::batch_root(&hashes), LEAVES, sig_root, prev)
                        .await;
                    let ok = shadow.active(a, Role::Sequencer);
                    prop_assert_eq!(res.is_ok(), ok, "{:?}: {:?}", op, res);
                    if let Ok(posted) = res {
                        // Only active, bonded sequencers post.
                        let b = fx.rollup.bond(Role::Sequencer, actors[a]).await.unwrap();
                        prop_assert!(
                            b.status == BondStatus::Active && b.amount >= min_sequencer_bond()
                        );
                        shadow.batches.push((posted.receipt.block_timestamp, false));
                        shadow.posters.push((a, da));
                    }
                }
                Op::Advance(secs) => {
                    fx.advance(secs).await;
                }
                Op::Slash(a, role, v, reward) => {
                    let amount = half_eth(v);
                    let b = *shadow.bond(a, role);
                    let slashed = amount.min(b.amount);
                    let reward = if reward {
                        slashed / U256::from(2)
                    } else {
                        U256::ZERO
                    };
                    let res = fx
                        .by(fx.game)
                        .slash(role, actors[a], amount, fx.challenger, reward)
                        .await;
                    prop_assert!(res.is_ok(), "{:?}: {:?}", op, res);
                    shadow.bond(a, role).amount -= slashed;
                    *shadow.credits.entry(usize::MAX).or_default() += reward;
                }
                Op::Claim(a) => {
                    // Actor 0 claims the challenger's credits (the beneficiary of every slash).
                    let who = if a == 0 { fx.challenger } else { actors[a] };
                    let key = if a == 0 { usize::MAX } else { a };
                    let res = fx.by(who).claim().await;
                    let credit = shadow.credits.get(&key).copied().unwrap_or_default();
                    prop_assert_eq!(res.is_ok(), !credit.is_zero(), "{:?}: {:?}", op, res);
                    shadow.credits.remove(&key);
                }
                Op::Finalize(id) => {
                    let res = fx.rollup.finalize(id).await;
                    let open = *shadow.open_batch.get(&id).unwrap_or(&0);
                    let pending = shadow
                        .challenges
                        .iter()
                        .any(|((b, _), (_, st))| *b == id && *st == 1);
                    let ok = match shadow.batches.get((id as usize).wrapping_sub(1)) {
                        Some((posted, false)) => now >= posted + WINDOW && open == 0 && !pending,
                        _ => false,
                    };
                    prop_assert_eq!(res.is_ok(), ok, "{:?}: {:?}", op, res);
                    if ok {
                        shadow.batches[id as usize - 1].1 = true;
                    }
                }
                Op::OpenDispute(id, a) => {
                    let res = fx.by(fx.game).dispute_opened(id, actors[a]).await;
                    let ok = match shadow.batches.get((id as usize).wrapping_sub(1)) {
                        Some((posted, false)) => now < posted + WINDOW,
                        _ => false,
                    };
                    prop_assert_eq!(res.is_ok(), ok, "{:?}: {:?}", op, res);
                    if ok {
                        *shadow.open_batch.entry(id).or_default() += 1;
                        *shadow.open_exec.entry(a).or_default() += 1;
                    }
                }
                Op::CloseDispute(id, a) => {
                    let res = fx.by(fx.game).dispute_closed(id, actors[a]).await;
                    let ok = shadow.open_batch.get(&id).is_some_and(|n| *n > 0)
                        && shadow.open_exec.get(&a).is_some_and(|n| *n > 0);
                    prop_assert_eq!(res.is_ok(), ok, "{:?}: {:?}", op, res);
                    if ok {
                        *shadow.open_batch.entry(id).or_default() -= 1;
                        *shadow.open_exec.entry(a).or_default() -= 1;
                    }
                }
                Op::ChallengeSig(id, i) => {
                    let res = fx
                        .by(fx.challenger)
                        .challenge_signature(id, &leaves[i as usize], &leaf_proof(&hashes, i).unwrap())
                        .await;
                    let ok = matches!(shadow.batches.get((id as usize).wrapping_sub(1)), Some((_, false)))
                        && !shadow.invalid.contains(&(id, i))
                        && !shadow.challenges.contains_key(&(id, i));
                    prop_assert_eq!(res.is_ok(), ok, "{:?}: {:?}", op, res);
                    if ok {
                        shadow.challenges.insert((id, i), (now + window, 1));
                        shadow.escrow += challenge_bond;
                    }
                }
                Op::AnswerSig(id, i) => {
                    let da = shadow
                        .posters
                        .get((id as usize).wrapping_sub(1))
                        .map_or(alloy::primitives::B256::ZERO, |p| p.1);
                    let opening = signature_opening(
                        da,
                        sig_root,
                        sigs[i as usize].as_bytes(),
                        &signature_proof(&sigs, i).unwrap(),
                    );
                    let res = fx.by(fx.stranger).answer_signature_challenge(id, i, opening).await;
                    let ok = i != LEAVES - 1
                        && matches!(shadow.challenges.get(&(id, i)), Some((deadline, 1)) if now < *deadline);
                    prop_assert_eq!(res.is_ok(), ok, "{:?}: {:?}", op, res);
                    if ok {
                        shadow.challenges.insert((id, i), (0, 2));
                        shadow.escrow -= challenge_bond;
                        // Actor 0 is the challenger's account, whose credits are kept under `usize::MAX`.
                        let poster = match shadow.posters[id as usize - 1].0 {
                            0 => usize::MAX,
                            p => p,
                        };
                        *shadow.credits.entry(poster).or_default() += challenge_bond;
                    }
                }
                Op::ResolveSig(id, i) => {
                    let res = fx.by(fx.stranger).resolve_signature_challenge(id, i).await;
                    let ok = matches!(shadow.challenges.get(&(id, i)), Some((deadline, 1)) if now >= *deadline);
                    prop_assert_eq!(res.is_ok(), ok, "{:?}: {:?}", op, res);
                    if ok {
                        shadow.challenges.insert((id, i), (0, 3));
                        shadow.invalid.insert((id, i));
                        shadow.escrow -= challenge_bond;
                        // The poster's whole bond: half to the challenger, half burned.
                        let poster = shadow.posters[id as usize - 1].0;
                        let b = shadow.bond(poster, Role::Sequencer);
                        let half = b.amount / U256::from(2);
                        b.amount = U256::ZERO;
                        *shadow.credits.entry(usize::MAX).or_default() += half + challenge_bond;
                    }
                }
            }

            // Invariant: the contract holds exactly the bonds, the unclaimed credits and the challenge bonds in
            // escrow.
            let mut bonds = U256::ZERO;
            for (i, who) in actors.iter().enumerate() {
                for role in [Role::Sequencer, Role::Executor] {
                    let b = fx.rollup.bond(role, *who).await.unwrap();
                    let s = *shadow.bond(i, role);
                    prop_assert_eq!(b.amount, s.amount);
                    prop_assert_eq!(b.status as u8, s.status);
                    bonds += b.amount;
                }
            }
            let mut credits = fx.rollup.credits(fx.challenger).await.unwrap();
            prop_assert_eq!(
                credits,
                shadow.credits.get(&usize::MAX).copied().unwrap_or_default()
            );
            for (i, who) in actors.iter().enumerate().skip(1) {
                let c = fx.rollup.credits(*who).await.unwrap();
                prop_assert_eq!(c, shadow.credits.get(&i).copied().unwrap_or_default());
                credits += c;
            }
            prop_assert_eq!(fx.balance(contract).await, bonds + credits + shadow.escrow);
        }
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn random_call_sequences_keep_the_books(ops in prop::collection::vec(op(), 1..80)) {
        run(ops)?;
    }
}
