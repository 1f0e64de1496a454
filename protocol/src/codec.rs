//! The batch data (DA) codec: a strict, canonical little-endian binary layout of a batch's leaves,
//! prompts, parameters, outputs and signatures, compressed as one zstd frame; and the DA commitment
//! `keccak256(encoded)` posted to L1.
//!
//! Layout and frame rules are normative in `docs/protocol.md` §6. [`BatchData::decode`] accepts
//! exactly what that section allows and names the first thing that is wrong.

use crate::leaf::{
    FinishReason, InferenceLeaf, LEAF_VERSION, LeafSignature, ParamsError, SamplingParams,
    UnknownFinishReason,
};
use crate::tensor::token_ids_root;
use alloy_primitives::{Address, B256, FixedBytes, keccak256};
use serde::{Deserialize, Serialize};
use std::fmt;
use zstd::zstd_safe;

/// Version byte of the layout.
pub const BATCH_DATA_VERSION: u8 = 1;

/// Largest accepted decompressed batch: 64 MiB.
pub const MAX_DECOMPRESSED_BYTES: u64 = 64 << 20;

/// zstd level used by [`BatchData::encode`] (decoders accept any level).
pub const ZSTD_LEVEL: i32 = 3;

/// Encoded size of a leaf.
pub const LEAF_BYTES: usize = 2 + 5 * 32 + 1 + 32 + 8 + 20;

/// Encoded size of sampling parameters.
pub const PARAMS_BYTES: usize = 4 * 3 + 8 + 4;

/// Smallest encoded entry (empty prompt and output).
pub const MIN_ENTRY_BYTES: usize = LEAF_BYTES + PARAMS_BYTES + 4 + 4 + 65;

/// Size of the header (version, chain id, entry count).
pub const HEADER_BYTES: usize = 1 + 8 + 4;

const ZSTD_MAGIC: [u8; 4] = [0x28, 0xB5, 0x2F, 0xFD];

/// Where in the layout a value was being read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    /// Entry index, `None` in the header.
    pub entry: Option<u32>,
    /// Field name as in `docs/protocol.md`.
    pub field: &'static str,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.entry {
            Some(i) => write!(f, "entry {i} field {}", self.field),
            None => write!(f, "header field {}", self.field),
        }
    }
}

/// What is wrong with one entry's content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    /// `leaf.version` is not [`LEAF_VERSION`].
    #[error("leaf version {0} is not supported (expected {LEAF_VERSION})")]
    LeafVersion(u16),
    /// `leaf.finishReason` is not a [`FinishReason`].
    #[error("leaf finishReason: {0}")]
    FinishReason(#[from] UnknownFinishReason),
    /// A sampling parameter is out of range.
    #[error("params: {0}")]
    Params(#[from] ParamsError),
    /// A leaf field disagrees with the data carried beside it.
    #[error("leaf {field} is {found} but the carried data hashes to {expected}")]
    Mismatch {
        /// `promptRoot`, `outputHash` or `paramsHash`.
        field: &'static str,
        /// Recomputed from the carried data.
        expected: B256,
        /// In the leaf.
        found: B256,
    },
}

/// Errors of the batch data codec.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// The input is not a zstd frame of the accepted profile.
    #[error("invalid zstd frame: {0}")]
    Frame(&'static str),
    /// zstd rejected the frame.
    #[error("zstd: {0}")]
    Zstd(&'static str),
    /// Bytes follow the single zstd frame.
    #[error("{0} bytes follow the zstd frame")]
    TrailingFrameBytes(usize),
    /// The batch (declared or actual) is larger than [`MAX_DECOMPRESSED_BYTES`].
    #[error("decompressed size {size} exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Declared or required size.
        size: u64,
        /// [`MAX_DECOMPRESSED_BYTES`].
        limit: u64,
    },
    /// Unknown layout version.
    #[error("unsupported batch data version {0} (expected {BATCH_DATA_VERSION})")]
    Version(u8),
    /// The data ends (or a count points) past the end.
    #[error("truncated at {at}: needs {needed} bytes, {remaining} left")]
    Truncated {
        /// What was being read.
        at: Location,
        /// Bytes it needs.
        needed: u64,
        /// Bytes left.
        remaining: u64,
    },
    /// Bytes after the last entry.
    #[error("{0} trailing bytes after the last entry")]
    TrailingBytes(usize),
    /// An entry's content is invalid.
    #[error("entry {index}: {error}")]
    Entry {
        /// Entry index.
        index: u32,
        /// What is wrong.
        error: EntryError,
    },
    /// A count does not fit its `u32` field.
    #[error("{what} count {count} does not fit in u32")]
    CountOverflow {
        /// What is counted.
        what: &'static str,
        /// The count.
        count: usize,
    },
    /// zstd failed to compress.
    #[error("zstd compression failed: {0}")]
    Compress(String),
}

/// One request in a batch: the signed leaf and the data its hashes commit to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchEntry {
    /// The signed leaf.
    pub leaf: InferenceLeaf,
    /// Prompt token ids (`leaf.promptRoot = token_ids_root(prompt_tokens)`).
    pub prompt_tokens: Vec<u32>,
    /// Sampling parameters (`leaf.paramsHash = params.params_hash()`).
    pub params: SamplingParams,
    /// Output token ids (`leaf.outputHash = token_ids_root(output_tokens)`).
    pub output_tokens: Vec<u32>,
    /// The executor's signature over the leaf.
    pub signature: LeafSignature,
}

impl BatchEntry {
    /// Checks the entry's content: leaf version, finish reason, parameter ranges, and that the
    /// leaf's `paramsHash`, `promptRoot`, `outputHash` match the carried data. Does not check the
    /// signature.
    pub fn validate(&self) -> Result<(), EntryError> {
        if self.leaf.version != LEAF_VERSION {
            return Err(EntryError::LeafVersion(self.leaf.version));
        }
        FinishReason::try_from(self.leaf.finishReason)?;
        self.params.validate()?;
        let check = |field, expected: B256, found: B256| {
            if expected == found {
                Ok(())
            } else {
                Err(EntryError::Mismatch {
                    field,
                    expected,
                    found,
                })
            }
        };
        check(
            "paramsHash",
            self.params.params_hash(),
            self.leaf.paramsHash,
        )?;
        check(
            "promptRoot",
            token_ids_root(&self.prompt_tokens),
            self.leaf.promptRoot,
        )?;
        check(
            "outputHash",
            token_ids_root(&self.output_tokens),
            self.leaf.outputHash,
        )?;
        Ok(())
    }

    /// The leaf hash.
    pub fn leaf_hash(&self) -> B256 {
        self.leaf.hash()
    }

    fn encoded_len(&self) -> usize {
        MIN_ENTRY_BYTES + 4 * (self.prompt_tokens.len() + self.output_tokens.len())
    }
}

/// The data of one batch, as posted to L1.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchData {
    /// Layout version, [`BATCH_DATA_VERSION`].
    pub version: u8,
    /// Chain id of the rollup contract the batch is posted to.
    pub chain_id: u64,
    /// Entries in batch (leaf) order.
    pub entries: Vec<BatchEntry>,
}

impl BatchData {
    /// A version-1 batch.
    pub const fn new(chain_id: u64, entries: Vec<BatchEntry>) -> Self {
        Self {
            version: BATCH_DATA_VERSION,
            chain_id,
            entries,
        }
    }

    /// Leaf hashes in batch order.
    pub fn leaf_hashes(&self) -> Vec<B256> {
        self.entries.iter().map(BatchEntry::leaf_hash).collect()
    }

    /// The batch root over the entries' leaf hashes.
    pub fn batch_root(&self) -> B256 {
        crate::batch::batch_root(&self.leaf_hashes())
    }

    /// Checks everything [`Self::decode`] checks on content: version and every entry.
    pub fn validate(&self) -> Result<(), CodecError> {
        if self.version != BATCH_DATA_VERSION {
            return Err(CodecError::Version(self.version));
        }
        for (index, entry) in self.entries.iter().enumerate() {
            entry.validate().map_err(|error| CodecError::Entry {
                index: index as u32,
                error,
            })?;
        }
        Ok(())
    }

    /// Validates, lays out and compresses the batch: the bytes to post.
    pub fn encode(&self) -> Result<Vec<u8>, CodecError> {
        self.validate()?;
        compress(&self.encode_raw()?)
    }

    /// The uncompressed layout, without content validation (size and count limits are checked).
    pub fn encode_raw(&self) -> Result<Vec<u8>, CodecError> {
        let size = HEADER_BYTES as u64
            + self
                .entries
                .iter()
                .map(|e| e.encoded_len() as u64)
                .sum::<u64>();
        if size > MAX_DECOMPRESSED_BYTES {
            return Err(CodecError::TooLarge {
                size,
                limit: MAX_DECOMPRESSED_BYTES,
            });
        }
        let count = |what, n: usize| {
            u32::try_from(n).map_err(|_| CodecError::CountOverflow { what, count: n })
        };
        let mut out = Vec::with_capacity(size as usize);
        out.push(self.version);
        out.extend_from_slice(&self.chain_id.to_le_bytes());
        out.extend_from_slice(&count("entry", self.entries.len())?.to_le_bytes());
        for e in &self.entries {
            let l = &e.leaf;
            out.extend_from_slice(&l.version.to_le_bytes());
            out.extend_from_slice(l.requestId.as_slice());
            out.extend_from_slice(l.modelRoot.as_slice());
            out.extend_from_slice(l.promptRoot.as_slice());
            out.extend_from_slice(l.paramsHash.as_slice());
            out.extend_from_slice(l.outputHash.as_slice());
            out.push(l.finishReason);
            out.extend_from_slice(l.traceRoot.as_slice());
            out.extend_from_slice(&l.opCount.to_le_bytes());
            out.extend_from_slice(l.executor.as_slice());
            let p = &e.params;
            out.extend_from_slice(&p.max_tokens.to_le_bytes());
            out.extend_from_slice(&p.temperature_milli.to_le_bytes());
            out.extend_from_slice(&p.top_p_milli.to_le_bytes());
            out.extend_from_slice(&p.seed.to_le_bytes());
            out.extend_from_slice(&p.choice_index.to_le_bytes());
            for (what, tokens) in [
                ("prompt token", &e.prompt_tokens),
                ("output token", &e.output_tokens),
            ] {
                out.extend_from_slice(&count(what, tokens.len())?.to_le_bytes());
                for t in tokens {
                    out.extend_from_slice(&t.to_le_bytes());
                }
            }
            out.extend_from_slice(e.signature.as_bytes());
        }
        Ok(out)
    }

    /// Decompresses and decodes posted batch data, checking the frame, the size limit, the layout
    /// and every entry (see [`Self::validate`]).
    pub fn decode(encoded: &[u8]) -> Result<Self, CodecError> {
        let batch = Self::decode_raw(&decompress(encoded)?)?;
        batch.validate()?;
        Ok(batch)
    }

    /// Decodes the uncompressed layout (structure only: no content validation).
    pub fn decode_raw(raw: &[u8]) -> Result<Self, CodecError> {
        let mut r = Reader { data: raw, pos: 0 };
        let header = |field| Location { entry: None, field };
        let version = r.u8(header("version"))?;
        if version != BATCH_DATA_VERSION {
            return Err(CodecError::Version(version));
        }
        let chain_id = r.u64(header("chain_id"))?;
        let at = header("entry_count");
        let count = r.u32(at)?;
        r.reserve(u64::from(count) * MIN_ENTRY_BYTES as u64, at)?;
        let mut entries = Vec::with_capacity(count as usize);
        for i in 0..count {
            let at = |field| Location {
                entry: Some(i),
                field,
            };
            let leaf = InferenceLeaf {
                version: r.u16(at("leaf.version"))?,
                requestId: B256::new(r.array(at("leaf.requestId"))?),
                modelRoot: B256::new(r.array(at("leaf.modelRoot"))?),
                promptRoot: B256::new(r.array(at("leaf.promptRoot"))?),
                paramsHash: B256::new(r.array(at("leaf.paramsHash"))?),
                outputHash: B256::new(r.array(at("leaf.outputHash"))?),
                finishReason: r.u8(at("leaf.finishReason"))?,
                traceRoot: B256::new(r.array(at("leaf.traceRoot"))?),
                opCount: r.u64(at("leaf.opCount"))?,
                executor: Address::new(r.array(at("leaf.executor"))?),
            };
            let params = SamplingParams {
                max_tokens: r.u32(at("params.max_tokens"))?,
                temperature_milli: r.u32(at("params.temperature_milli"))?,
                top_p_milli: r.u32(at("params.top_p_milli"))?,
                seed: r.u64(at("params.seed"))?,
                choice_index: r.u32(at("params.choice_index"))?,
            };
            let prompt_tokens = r.u32s(at("prompt_tokens"))?;
            let output_tokens = r.u32s(at("output_tokens"))?;
            let signature = LeafSignature(FixedBytes(r.array(at("signature"))?));
            entries.push(BatchEntry {
                leaf,
                prompt_tokens,
                params,
                output_tokens,
                signature,
            });
        }
        if r.remaining() != 0 {
            return Err(CodecError::TrailingBytes(r.remaining()));
        }
        Ok(Self {
            version,
            chain_id,
            entries,
        })
    }
}

/// The DA commitment posted with the batch root: `keccak256(encoded)` over the posted (compressed)
/// bytes.
pub fn da_commitment(encoded: &[u8]) -> B256 {
    keccak256(encoded)
}

/// Compresses a raw layout as one zstd frame (level [`ZSTD_LEVEL`], content size and checksum).
pub fn compress(raw: &[u8]) -> Result<Vec<u8>, CodecError> {
    use zstd_safe::CParameter;
    let err = |e: std::io::Error| CodecError::Compress(e.to_string());
    let mut c = zstd::bulk::Compressor::new(ZSTD_LEVEL).map_err(err)?;
    c.set_parameter(CParameter::ChecksumFlag(true))
        .map_err(err)?;
    c.set_parameter(CParameter::ContentSizeFlag(true))
        .map_err(err)?;
    c.compress(raw).map_err(err)
}

/// Checks the frame profile and decompresses: exactly one zstd frame, no dictionary, reserved and
/// unused header bits zero, declared content size `<=` [`MAX_DECOMPRESSED_BYTES`], content checksum
/// present (and verified), nothing after the frame.
pub fn decompress(encoded: &[u8]) -> Result<Vec<u8>, CodecError> {
    let zstd_err = |code| CodecError::Zstd(zstd_safe::get_error_name(code));
    let (Some(magic), Some(&fhd)) = (encoded.get(..4), encoded.get(4)) else {
        return Err(CodecError::Frame("shorter than a zstd frame header"));
    };
    if magic != ZSTD_MAGIC {
        return Err(CodecError::Frame("bad magic number"));
    }
    if fhd & 0x08 != 0 {
        return Err(CodecError::Frame("reserved header bit set"));
    }
    if fhd & 0x10 != 0 {
        return Err(CodecError::Frame("unused header bit set"));
    }
    if fhd & 0x03 != 0 {
        return Err(CodecError::Frame("dictionary id present"));
    }
    if fhd & 0x04 == 0 {
        return Err(CodecError::Frame("content checksum missing"));
    }
    let single_segment = fhd & 0x20 != 0;
    if !single_segment && fhd >> 6 == 0 {
        return Err(CodecError::Frame("content size not declared"));
    }
    let frame_len = zstd_safe::find_frame_compressed_size(encoded).map_err(zstd_err)?;
    if frame_len < encoded.len() {
        return Err(CodecError::TrailingFrameBytes(encoded.len() - frame_len));
    }
    let size = match zstd_safe::get_frame_content_size(encoded) {
        Ok(Some(size)) => size,
        Ok(None) => return Err(CodecError::Frame("content size not declared")),
        Err(_) => return Err(CodecError::Frame("content size unreadable")),
    };
    if size > MAX_DECOMPRESSED_BYTES {
        return Err(CodecError::TooLarge {
            size,
            limit: MAX_DECOMPRESSED_BYTES,
        });
    }
    // The output buffer is exactly the declared size: zstd cannot write past it, and a frame that
    // decodes to more or less than it declares is an error.
    let mut out = Vec::with_capacity(size as usize);
    let mut dctx =
        zstd_safe::DCtx::try_create().ok_or(CodecError::Zstd("cannot allocate context"))?;
    let written = dctx.decompress(&mut out, encoded).map_err(zstd_err)?;
    if written as u64 != size {
        return Err(CodecError::Frame("content size does not match the content"));
    }
    Ok(out)
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }

    fn reserve(&self, needed: u64, at: Location) -> Result<(), CodecError> {
        let remaining = self.remaining() as u64;
        if needed > remaining {
            return Err(CodecError::Truncated {
                at,
                needed,
                remaining,
            });
        }
        Ok(())
    }

    fn take(&mut self, n: usize, at: Location) -> Result<&'a [u8], CodecError> {
        self.reserve(n as u64, at)?;
        let out = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn array<const N: usize>(&mut self, at: Location) -> Result<[u8; N], CodecError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, at)?);
        Ok(out)
    }

    fn u8(&mut self, at: Location) -> Result<u8, CodecError> {
        Ok(self.array::<1>(at)?[0])
    }

    fn u16(&mut self, at: Location) -> Result<u16, CodecError> {
        Ok(u16::from_le_bytes(self.array(at)?))
    }

    fn u32(&mut self, at: Location) -> Result<u32, CodecError> {
        Ok(u32::from_le_bytes(self.array(at)?))
    }

    fn u64(&mut self, at: Location) -> Result<u64, CodecError> {
        Ok(u64::from_le_bytes(self.array(at)?))
    }

    fn u32s(&mut self, at: Location) -> Result<Vec<u32>, CodecError> {
        let len = self.u32(at)?;
        let bytes = self.take_counted(len, at)?;
        Ok(bytes
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }

    fn take_counted(&mut self, len: u32, at: Location) -> Result<&'a [u8], CodecError> {
        let needed = u64::from(len) * 4;
        self.reserve(needed, at)?;
        self.take(needed as usize, at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(seed: u64, prompt: Vec<u32>, output: Vec<u32>) -> BatchEntry {
        let params = SamplingParams {
            max_tokens: 64,
            temperature_milli: 700,
            top_p_milli: 900,
            seed,
            choice_index: 0,
        };
        let leaf = InferenceLeaf {
            version: LEAF_VERSION,
            requestId: keccak256(seed.to_le_bytes()),
            modelRoot: B256::repeat_byte(9),
            promptRoot: token_ids_root(&prompt),
            paramsHash: params.params_hash(),
            outputHash: token_ids_root(&output),
            finishReason: 0,
            traceRoot: B256::repeat_byte(7),
            opCount: 1000,
            executor: Address::repeat_byte(0xee),
        };
        BatchEntry {
            leaf,
            prompt_tokens: prompt,
            params,
            output_tokens: output,
            signature: LeafSignature::from([3u8; 65]),
        }
    }

    fn batch() -> BatchData {
        BatchData::new(
            31337,
            vec![
                entry(1, vec![1, 2, 3], vec![4, 5]),
                entry(2, vec![], vec![]),
                entry(3, vec![9; 300], vec![7]),
            ],
        )
    }

    #[test]
    fn round_trip_and_layout() {
        let b = batch();
        let raw = b.encode_raw().unwrap();
        assert_eq!(
            raw.len(),
            HEADER_BYTES + 3 * MIN_ENTRY_BYTES + 4 * (3 + 2 + 300 + 1)
        );
        assert_eq!(raw[0], 1);
        assert_eq!(&raw[1..9], &31337u64.to_le_bytes());
        assert_eq!(&raw[9..13], &3u32.to_le_bytes());
        let enc = b.encode().unwrap();
        assert_eq!(BatchData::decode(&enc).unwrap(), b);
        assert_eq!(da_commitment(&enc), keccak256(&enc));
        assert_eq!(b.batch_root(), crate::batch::batch_root(&b.leaf_hashes()));
        assert_eq!(
            BatchData::decode(&BatchData::new(1, vec![]).encode().unwrap())
                .unwrap()
                .entries,
            vec![]
        );
    }

    #[test]
    fn content_errors_name_entry_and_field() {
        let mut b = batch();
        b.entries[2].output_tokens.push(1);
        let enc = compress(&b.encode_raw().unwrap()).unwrap();
        let err = BatchData::decode(&enc).unwrap_err();
        assert!(
            matches!(
                err,
                CodecError::Entry {
                    index: 2,
                    error: EntryError::Mismatch {
                        field: "outputHash",
                        ..
                    }
                }
            ),
            "{err}"
        );
        assert!(err.to_string().starts_with("entry 2: leaf outputHash is"));
        assert_eq!(b.encode().unwrap_err(), err);

        let mut b = batch();
        b.entries[1].leaf.finishReason = 2;
        let err = BatchData::decode(&compress(&b.encode_raw().unwrap()).unwrap()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "entry 1: leaf finishReason: unknown finish reason 2 (0 = stop, 1 = length)"
        );

        let mut b = batch();
        b.entries[0].params.top_p_milli = 0;
        let err = BatchData::decode(&compress(&b.encode_raw().unwrap()).unwrap()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "entry 0: params: top_p_milli = 0 is out of range 1..=1000"
        );

        let mut b = batch();
        b.entries[0].leaf.version = 2;
        assert!(matches!(
            b.encode(),
            Err(CodecError::Entry {
                index: 0,
                error: EntryError::LeafVersion(2)
            })
        ));
        let mut b = batch();
        b.version = 2;
        assert_eq!(b.encode(), Err(CodecError::Version(2)));
    }

    #[test]
    fn layout_errors() {
        let raw = batch().encode_raw().unwrap();
        let mut long = raw.clone();
        long.push(0);
        assert_eq!(
            BatchData::decode_raw(&long),
            Err(CodecError::TrailingBytes(1))
        );
        let err = BatchData::decode_raw(&raw[..raw.len() - 1]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "truncated at entry 2 field signature: needs 65 bytes, 64 left"
        );
        let mut huge = raw.clone();
        huge[9..13].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            BatchData::decode_raw(&huge),
            Err(CodecError::Truncated {
                at: Location {
                    entry: None,
                    field: "entry_count"
                },
                ..
            })
        ));
        let mut bad_version = raw;
        bad_version[0] = 0;
        assert_eq!(
            BatchData::decode_raw(&bad_version),
            Err(CodecError::Version(0))
        );
    }

    #[test]
    fn frame_errors() {
        let enc = batch().encode().unwrap();
        let mut trailing = enc.clone();
        trailing.extend_from_slice(&enc);
        assert_eq!(
            BatchData::decode(&trailing),
            Err(CodecError::TrailingFrameBytes(enc.len()))
        );
        assert!(matches!(
            BatchData::decode(&enc[..3]),
            Err(CodecError::Frame(_))
        ));
        assert!(matches!(
            BatchData::decode(&enc[..enc.len() - 1]),
            Err(CodecError::Zstd(_))
        ));
        let mut unused = enc.clone();
        unused[4] |= 0x10;
        assert_eq!(
            BatchData::decode(&unused),
            Err(CodecError::Frame("unused header bit set"))
        );
        // A frame without checksum (plain zstd::encode_all) is outside the profile.
        let plain = zstd::encode_all(&batch().encode_raw().unwrap()[..], 3).unwrap();
        assert_eq!(
            BatchData::decode(&plain),
            Err(CodecError::Frame("content checksum missing"))
        );
    }

    #[test]
    fn bomb_rejected_by_declared_size() {
        // 65 MiB of zeros compresses to a few KiB; the declared size is checked before decoding.
        let zeros = vec![0u8; (MAX_DECOMPRESSED_BYTES + (1 << 20)) as usize];
        let bomb = compress(&zeros).unwrap();
        assert!(bomb.len() < 1 << 16);
        assert!(matches!(
            BatchData::decode(&bomb),
            Err(CodecError::TooLarge { .. })
        ));
    }
}
