//! Model registration.

use crate::common::*;
use alloy::primitives::{B256, keccak256};
use alloy::sol_types::SolEvent;
use verinfer_l1_contracts::bindings::InferenceRollup::{self, InferenceRollupErrors as E};
use verinfer_l1_contracts::gas::{smollm2_config, synthetic_model_root};
use verinfer_l1_contracts::{config_hash, model_leaf_count};

#[tokio::test]
async fn register_model_binds_config_to_root() {
    let fx = Fx::new().await;
    let config = smollm2_config();
    let (root, proof) = synthetic_model_root(&config).unwrap();
    assert_eq!(model_leaf_count(30, true), 277);

    let e = revert(
        fx.by(fx.stranger)
            .register_model(root, config.clone(), proof.clone())
            .await,
    );
    assert!(matches!(e, E::NotOwner(x) if x.caller == fx.stranger));

    let r = fx
        .rollup
        .register_model(root, config.clone(), proof.clone())
        .await
        .unwrap();
    let ev = InferenceRollup::ModelRegistered::decode_log(&r.logs[0].inner).unwrap();
    assert_eq!(ev.modelRoot, root);
    assert_eq!(ev.configHash, config_hash(&config));
    assert_eq!((ev.nLayers, ev.contextLength), (30, 8192));
    let m = fx.rollup.model(root).await.unwrap().unwrap();
    assert_eq!(m.configHash, config_hash(&config));
    assert_eq!(m.config, config);
    assert_eq!(fx.rollup.model(keccak256("other")).await.unwrap(), None);

    let e = revert(fx.rollup.register_model(root, config, proof).await);
    assert!(matches!(e, E::ModelAlreadyRegistered(x) if x.modelRoot == root));
}

#[tokio::test]
async fn config_hash_matches_rust() {
    let fx = Fx::new().await;
    let mut config = smollm2_config();
    config.epsFx = 0x0102_0304_0506_0708;
    config.scoreScale = u64::MAX;
    // Rust reference: be8 of the 18 values, in order.
    let values = [
        1u64,
        30,
        576,
        1536,
        9,
        3,
        64,
        49152,
        8192,
        1,
        0x0102_0304_0506_0708,
        u64::MAX,
        12,
        16,
        64,
        1024,
        17,
        16,
    ];
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_be_bytes()).collect();
    assert_eq!(bytes.len(), 144);
    assert_eq!(config_hash(&config), keccak256(&bytes));
    let (root, proof) = synthetic_model_root(&config).unwrap();
    fx.rollup
        .register_model(root, config.clone(), proof)
        .await
        .unwrap();
    assert_eq!(
        fx.rollup.model(root).await.unwrap().unwrap().configHash,
        keccak256(&bytes)
    );
}

#[tokio::test]
async fn register_model_reverts() {
    let fx = Fx::new().await;
    let config = smollm2_config();
    let (root, proof) = synthetic_model_root(&config).unwrap();

    let e = revert(
        fx.rollup
            .register_model(B256::ZERO, config.clone(), proof.clone())
            .await,
    );
    assert!(matches!(e, E::ZeroModelRoot(_)));

    for (field, mutate) in [
        (
            "virVersion",
            Box::new(|c: &mut InferenceRollup::ModelConfig| c.virVersion = 0)
                as Box<dyn Fn(&mut _)>,
        ),
        (
            "nLayers",
            Box::new(|c: &mut InferenceRollup::ModelConfig| c.nLayers = 0),
        ),
        (
            "dModel",
            Box::new(|c: &mut InferenceRollup::ModelConfig| c.dModel = 0),
        ),
        (
            "vocabSize",
            Box::new(|c: &mut InferenceRollup::ModelConfig| c.vocabSize = 0),
        ),
        (
            "contextLength",
            Box::new(|c: &mut InferenceRollup::ModelConfig| c.contextLength = 0),
        ),
        (
            "tiedOutput",
            Box::new(|c: &mut InferenceRollup::ModelConfig| c.tiedOutput = 2),
        ),
    ] {
        let mut bad = config.clone();
        mutate(&mut bad);
        let e = revert(fx.rollup.register_model(root, bad, proof.clone()).await);
        assert!(
            matches!(&e, E::InvalidModelConfig(x) if x.field == field),
            "{field}: {e:?}"
        );
    }

    // A config that is not the root's last leaf: changed parameter, wrong proof, untied flag (other leaf count).
    let mut other = config.clone();
    other.contextLength = 2048;
    let e = revert(
        fx.rollup
            .register_model(root, other.clone(), proof.clone())
            .await,
    );
    assert!(matches!(e, E::ConfigNotInModelRoot(x) if x.configHash == config_hash(&other)));
    let mut bad_proof = proof.clone();
    bad_proof[0] = B256::repeat_byte(7);
    let e = revert(
        fx.rollup
            .register_model(root, config.clone(), bad_proof)
            .await,
    );
    assert!(matches!(e, E::ConfigNotInModelRoot(_)));
    let mut untied = config.clone();
    untied.tiedOutput = 0;
    let e = revert(
        fx.rollup
            .register_model(root, untied.clone(), proof.clone())
            .await,
    );
    assert!(matches!(e, E::ConfigNotInModelRoot(_)));
    // An untied model with its own root registers.
    let (untied_root, untied_proof) = synthetic_model_root(&untied).unwrap();
    fx.rollup
        .register_model(untied_root, untied, untied_proof)
        .await
        .unwrap();
}
