//! The request leaf: the EIP-712 struct an executor signs for each request, its sampling
//! parameters and their hash, the signing domain, and leaf signatures (sign, encode, recover).
//!
//! The leaf hash is the EIP-712 `hashStruct` of [`InferenceLeaf`]; the batch tree is built over leaf
//! hashes. Signatures are over the EIP-712 signing hash under [`leaf_domain`].

use alloy_primitives::{
    Address, B256, FixedBytes, Signature, SignatureError as EcdsaError, U256, keccak256, uint,
};
use alloy_sol_types::{Eip712Domain, SolStruct, SolValue};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;

/// Version of the leaf layout; the only accepted value of [`InferenceLeaf::version`].
pub const LEAF_VERSION: u16 = 1;

/// EIP-712 domain name.
pub const LEAF_DOMAIN_NAME: &str = "verinfer";

/// EIP-712 domain version.
pub const LEAF_DOMAIN_VERSION: &str = "1";

/// The EIP-712 `encodeType` of the leaf; its keccak is the leaf type hash.
pub const LEAF_TYPE: &str = "InferenceLeaf(uint16 version,bytes32 requestId,bytes32 modelRoot,\
bytes32 promptRoot,bytes32 paramsHash,bytes32 outputHash,uint8 finishReason,bytes32 traceRoot,\
uint64 opCount,address executor)";

/// Largest accepted `temperature_milli` (temperature 2.0, OpenAI's maximum).
pub const TEMPERATURE_MILLI_MAX: u32 = 2000;

/// Largest accepted `top_p_milli` (top-p 1.0).
pub const TOP_P_MILLI_MAX: u32 = 1000;

/// secp256k1 group order `n`.
const SECP256K1_N: U256 =
    uint!(0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141_U256);

/// `n / 2`: canonical (EIP-2 "low-s") signatures have `s <= n / 2`.
const SECP256K1_N_HALF: U256 =
    uint!(0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0_U256);

alloy_sol_types::sol! {
    /// One request's result, signed by its executor (EIP-712). Field order and types are the
    /// protocol: see `docs/protocol.md`.
    #[derive(Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
    struct InferenceLeaf {
        /// Layout version, [`LEAF_VERSION`].
        uint16 version;
        /// Sequencer-assigned request id.
        bytes32 requestId;
        /// Model root registered on L1.
        bytes32 modelRoot;
        /// `token_ids_root` of the prompt token ids (after the chat template).
        bytes32 promptRoot;
        /// [`SamplingParams::params_hash`].
        bytes32 paramsHash;
        /// `token_ids_root` of the output token ids.
        bytes32 outputHash;
        /// [`FinishReason`] as its `u8` value.
        uint8 finishReason;
        /// Root of the execution trace.
        bytes32 traceRoot;
        /// Number of ops in the trace.
        uint64 opCount;
        /// The signer.
        address executor;
    }
}

impl InferenceLeaf {
    /// The leaf hash: EIP-712 `hashStruct(leaf)`; batch roots are built over these.
    pub fn hash(&self) -> B256 {
        self.eip712_hash_struct()
    }

    /// The EIP-712 signing hash `keccak256(0x1901 ‖ domainSeparator ‖ hashStruct(leaf))`.
    pub fn signing_hash(&self, domain: &Eip712Domain) -> B256 {
        self.eip712_signing_hash(domain)
    }

    /// The typed finish reason.
    pub fn finish_reason(&self) -> Result<FinishReason, UnknownFinishReason> {
        FinishReason::try_from(self.finishReason)
    }
}

/// Why generation stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum FinishReason {
    /// An end-of-sequence token was generated.
    Stop = 0,
    /// `max_tokens` tokens were generated.
    Length = 1,
}

/// A finish-reason byte with no meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unknown finish reason {0} (0 = stop, 1 = length)")]
pub struct UnknownFinishReason(pub u8);

impl TryFrom<u8> for FinishReason {
    type Error = UnknownFinishReason;

    fn try_from(value: u8) -> Result<Self, Self::Error> {
        match value {
            0 => Ok(Self::Stop),
            1 => Ok(Self::Length),
            other => Err(UnknownFinishReason(other)),
        }
    }
}

impl From<FinishReason> for u8 {
    fn from(reason: FinishReason) -> Self {
        reason as Self
    }
}

/// A sampling parameter outside its allowed range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} = {value} is out of range {min}..={max}")]
pub struct ParamsError {
    /// Field name as in [`SamplingParams`].
    pub field: &'static str,
    /// The rejected value.
    pub value: u64,
    /// Smallest allowed value.
    pub min: u64,
    /// Largest allowed value.
    pub max: u64,
}

/// Sampling parameters of one choice of a request, in integer units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SamplingParams {
    /// Maximum number of generated tokens, `>= 1`.
    pub max_tokens: u32,
    /// Temperature × 1000, `0..=2000`; 0 is greedy.
    pub temperature_milli: u32,
    /// Top-p × 1000, `1..=1000`.
    pub top_p_milli: u32,
    /// Request seed.
    pub seed: u64,
    /// Index of this choice (OpenAI `n`).
    pub choice_index: u32,
}

impl SamplingParams {
    /// Checks every field's range; the error names the first bad field.
    pub fn validate(&self) -> Result<(), ParamsError> {
        let check = |field, value: u32, min: u32, max: u32| {
            if (min..=max).contains(&value) {
                Ok(())
            } else {
                Err(ParamsError {
                    field,
                    value: value.into(),
                    min: min.into(),
                    max: max.into(),
                })
            }
        };
        check("max_tokens", self.max_tokens, 1, u32::MAX)?;
        check(
            "temperature_milli",
            self.temperature_milli,
            0,
            TEMPERATURE_MILLI_MAX,
        )?;
        check("top_p_milli", self.top_p_milli, 1, TOP_P_MILLI_MAX)?;
        Ok(())
    }

    /// `keccak256(abi.encode(uint32 maxTokens, uint32 temperatureMilli, uint32 topPMilli,
    /// uint64 seed, uint32 choiceIndex))`.
    pub fn params_hash(&self) -> B256 {
        keccak256(
            (
                self.max_tokens,
                self.temperature_milli,
                self.top_p_milli,
                self.seed,
                self.choice_index,
            )
                .abi_encode_params(),
        )
    }

    /// The ChaCha20 key of this choice: `keccak256(seed as 8 bytes BE ‖ choice_index as 4 bytes
    /// BE)`.
    pub fn sampling_key(&self) -> B256 {
        let mut buf = [0u8; 12];
        buf[..8].copy_from_slice(&self.seed.to_be_bytes());
        buf[8..].copy_from_slice(&self.choice_index.to_be_bytes());
        keccak256(buf)
    }

    /// Whether sampling is greedy (temperature 0).
    pub const fn is_greedy(&self) -> bool {
        self.temperature_milli == 0
    }
}

/// The leaf signing domain: name `"verinfer"`, version `"1"`, `chain_id`, and the rollup contract as
/// verifying contract (no salt).
pub fn leaf_domain(chain_id: u64, verifying_contract: Address) -> Eip712Domain {
    Eip712Domain::new(
        Some(Cow::Borrowed(LEAF_DOMAIN_NAME)),
        Some(Cow::Borrowed(LEAF_DOMAIN_VERSION)),
        Some(U256::from(chain_id)),
        Some(verifying_contract),
        None,
    )
}

/// EIP-712 signing hash of `leaf` under `domain`.
pub fn signing_hash(leaf: &InferenceLeaf, domain: &Eip712Domain) -> B256 {
    leaf.signing_hash(domain)
}

/// Errors of leaf signatures.
#[derive(Debug, thiserror::Error)]
pub enum SignatureError {
    /// The `v` byte is not 27 or 28.
    #[error("signature v = {0} is not 27 or 28")]
    InvalidV(u8),
    /// `r` or `s` is zero or not below the curve order.
    #[error("signature {0} is zero or not below the secp256k1 order")]
    ScalarOutOfRange(&'static str),
    /// `s > n/2`: not canonical (EIP-2); the contract rejects it too.
    #[error("signature s is in the upper half of the secp256k1 order (non-canonical, EIP-2)")]
    HighS,
    /// No public key recovers from the signature.
    #[error("signature does not recover a public key: {0}")]
    Recovery(#[from] EcdsaError),
    /// The signing key failed to sign.
    #[error("signing failed: {0}")]
    Signing(#[from] k256::ecdsa::Error),
}

fn check_canonical(sig: &Signature) -> Result<(), SignatureError> {
    if sig.r().is_zero() || sig.r() >= SECP256K1_N {
        return Err(SignatureError::ScalarOutOfRange("r"));
    }
    if sig.s().is_zero() || sig.s() >= SECP256K1_N {
        return Err(SignatureError::ScalarOutOfRange("s"));
    }
    if sig.s() > SECP256K1_N_HALF {
        return Err(SignatureError::HighS);
    }
    Ok(())
}

/// The address whose key signed `leaf` under `domain`. Rejects non-canonical signatures (`r`, `s`
/// out of range, high `s`), exactly like the L1 contract.
pub fn recover_signer(
    leaf: &InferenceLeaf,
    domain: &Eip712Domain,
    signature: &Signature,
) -> Result<Address, SignatureError> {
    check_canonical(signature)?;
    Ok(signature.recover_address_from_prehash(&leaf.signing_hash(domain))?)
}

/// Signs `leaf` under `domain` with `key` (RFC 6979 deterministic nonce, low `s`).
pub fn sign_leaf(
    leaf: &InferenceLeaf,
    domain: &Eip712Domain,
    key: &k256::ecdsa::SigningKey,
) -> Result<LeafSignature, SignatureError> {
    let (sig, recid) = key.sign_prehash_recoverable(leaf.signing_hash(domain).as_slice())?;
    let sig = Signature::from((sig, recid)).normalized_s();
    Ok(LeafSignature::from_signature(&sig))
}

/// A leaf signature as carried in batch data and accepted by the contract: 65 bytes
/// `r (32, big-endian) ‖ s (32, big-endian) ‖ v (1)` with `v ∈ {27, 28}` (`27 + y-parity`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LeafSignature(pub FixedBytes<65>);

impl Default for LeafSignature {
    fn default() -> Self {
        Self(FixedBytes::ZERO)
    }
}

impl From<[u8; 65]> for LeafSignature {
    fn from(bytes: [u8; 65]) -> Self {
        Self(FixedBytes(bytes))
    }
}

impl From<LeafSignature> for [u8; 65] {
    fn from(sig: LeafSignature) -> Self {
        sig.0.0
    }
}

impl LeafSignature {
    /// Encodes a signature (`v = 27 + y_parity`). Does not normalise `s`.
    pub fn from_signature(sig: &Signature) -> Self {
        let mut out = [0u8; 65];
        out[..32].copy_from_slice(&sig.r().to_be_bytes::<32>());
        out[32..64].copy_from_slice(&sig.s().to_be_bytes::<32>());
        out[64] = 27 + u8::from(sig.v());
        Self(FixedBytes(out))
    }

    /// The 65 bytes.
    pub const fn as_bytes(&self) -> &[u8; 65] {
        &self.0.0
    }

    /// Decodes and checks canonical form: `v ∈ {27, 28}`, `0 < r < n`, `0 < s <= n/2`.
    pub fn to_signature(&self) -> Result<Signature, SignatureError> {
        let b = &self.0.0;
        let parity = match b[64] {
            27 => false,
            28 => true,
            v => return Err(SignatureError::InvalidV(v)),
        };
        let r = U256::from_be_slice(&b[..32]);
        let s = U256::from_be_slice(&b[32..64]);
        let sig = Signature::new(r, s, parity);
        check_canonical(&sig)?;
        Ok(sig)
    }

    /// The signer of `leaf` under `domain` ([`recover_signer`] of the decoded signature).
    pub fn recover(
        &self,
        leaf: &InferenceLeaf,
        domain: &Eip712Domain,
    ) -> Result<Address, SignatureError> {
        recover_signer(leaf, domain, &self.to_signature()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::address;

    fn key() -> k256::ecdsa::SigningKey {
        k256::ecdsa::SigningKey::from_slice(&[0x11; 32]).unwrap()
    }

    fn key_address(key: &k256::ecdsa::SigningKey) -> Address {
        Address::from_public_key(key.verifying_key())
    }

    pub(crate) fn sample_leaf(executor: Address) -> InferenceLeaf {
        InferenceLeaf {
            version: LEAF_VERSION,
            requestId: B256::repeat_byte(1),
            modelRoot: B256::repeat_byte(2),
            promptRoot: B256::repeat_byte(3),
            paramsHash: B256::repeat_byte(4),
            outputHash: B256::repeat_byte(5),
            finishReason: FinishReason::Length.into(),
            traceRoot: B256::repeat_byte(6),
            opCount: 123_456,
            executor,
        }
    }

    #[test]
    fn type_string() {
        assert_eq!(InferenceLeaf::eip712_encode_type(), LEAF_TYPE);
    }

    #[test]
    fn sign_and_recover() {
        let key = key();
        let addr = key_address(&key);
        let domain = leaf_domain(
            31337,
            address!("0x5FbDB2315678afecb367f032d93F642f64180aa3"),
        );
        let leaf = sample_leaf(addr);
        let sig = sign_leaf(&leaf, &domain, &key).unwrap();
        assert!(matches!(sig.as_bytes()[64], 27 | 28));
        assert_eq!(sig.recover(&leaf, &domain).unwrap(), addr);
        let decoded = sig.to_signature().unwrap();
        assert_eq!(recover_signer(&leaf, &domain, &decoded).unwrap(), addr);

        // Any flipped field (or a different domain) recovers someone else.
        let mut other = leaf;
        other.opCount += 1;
        assert_ne!(sig.recover(&other, &domain).unwrap(), addr);
        let mut other = leaf;
        other.finishReason = 0;
        assert_ne!(sig.recover(&other, &domain).unwrap(), addr);
        let other_domain = leaf_domain(1, address!("0x5FbDB2315678afecb367f032d93F642f64180aa3"));
        assert_ne!(sig.recover(&leaf, &other_domain).unwrap(), addr);
    }

    #[test]
    fn non_canonical_signatures_rejected() {
        let key = key();
        let domain = leaf_domain(1, Address::ZERO);
        let leaf = sample_leaf(key_address(&key));
        let sig = sign_leaf(&leaf, &domain, &key).unwrap();

        let mut bad = *sig.as_bytes();
        bad[64] = 1;
        assert!(matches!(
            LeafSignature::from(bad).to_signature(),
            Err(SignatureError::InvalidV(1))
        ));

        // The malleated twin (n - s, flipped parity) recovers the same key but is rejected.
        let good = sig.to_signature().unwrap();
        let twin = Signature::new(good.r(), SECP256K1_N - good.s(), !good.v());
        assert!(matches!(
            recover_signer(&leaf, &domain, &twin),
            Err(SignatureError::HighS)
        ));
        let twin_bytes = LeafSignature::from_signature(&twin);
        assert!(matches!(
            twin_bytes.to_signature(),
            Err(SignatureError::HighS)
        ));

        let zero_r = Signature::new(U256::ZERO, good.s(), good.v());
        assert!(matches!(
            recover_signer(&leaf, &domain, &zero_r),
            Err(SignatureError::ScalarOutOfRange("r"))
        ));
    }

    #[test]
    fn finish_reason_values() {
        assert_eq!(FinishReason::try_from(0), Ok(FinishReason::Stop));
        assert_eq!(FinishReason::try_from(1), Ok(FinishReason::Length));
        assert_eq!(FinishReason::try_from(2), Err(UnknownFinishReason(2)));
        assert_eq!(u8::from(FinishReason::Length), 1);
    }

    #[test]
    fn params() {
        let p = SamplingParams {
            max_tokens: 256,
            temperature_milli: 700,
            top_p_milli: 950,
            seed: 0x0102_0304_0506_0708,
            choice_index: 2,
        };
        assert_eq!(p.validate(), Ok(()));
        let mut enc = [0u8; 160];
        enc[28..32].copy_from_slice(&256u32.to_be_bytes());
        enc[60..64].copy_from_slice(&700u32.to_be_bytes());
        enc[92..96].copy_from_slice(&950u32.to_be_bytes());
        enc[120..128].copy_from_slice(&0x0102_0304_0506_0708u64.to_be_bytes());
        enc[156..160].copy_from_slice(&2u32.to_be_bytes());
        assert_eq!(p.params_hash(), keccak256(enc));
        assert_eq!(
            p.sampling_key(),
            keccak256([1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 2])
        );

        let bad = SamplingParams {
            temperature_milli: 2001,
            ..p
        };
        let err = bad.validate().unwrap_err();
        assert_eq!(err.field, "temperature_milli");
        assert_eq!(
            err.to_string(),
            "temperature_milli = 2001 is out of range 0..=2000"
        );
        assert_eq!(
            SamplingParams {
                top_p_milli: 0,
                ..p
            }
            .validate()
            .unwrap_err()
            .field,
            "top_p_milli"
        );
        assert_eq!(
            SamplingParams {
                top_p_milli: 1001,
                ..p
            }
            .validate()
            .unwrap_err()
            .field,
            "top_p_milli"
        );
        assert_eq!(
            SamplingParams { max_tokens: 0, ..p }
                .validate()
                .unwrap_err()
                .field,
            "max_tokens"
        );
    }

    #[test]
    fn json_shapes() {
        let leaf = sample_leaf(Address::ZERO);
        let json = serde_json::to_value(leaf).unwrap();
        assert!(json.get("requestId").is_some());
        let back: InferenceLeaf = serde_json::from_value(json).unwrap();
        assert_eq!(back, leaf);
        let sig = LeafSignature::from([7u8; 65]);
        let s = serde_json::to_string(&sig).unwrap();
        assert_eq!(s.len(), 2 + 2 + 130);
        assert_eq!(serde_json::from_str::<LeafSignature>(&s).unwrap(), sig);
    }
}
