//! GGUF container: parsing (v2/v3 header, metadata, tensor infos, aligned data) and writing.
//!
//! The reader validates every length and offset against the file before using it, so a truncated, corrupt or
//! unsupported file gives a [`GgufError`] naming the problem instead of a panic or a huge allocation.

mod reader;
mod writer;

pub use reader::GgufFile;
pub use writer::GgufWriter;

use thiserror::Error;

/// `GGUF` in little-endian byte order.
pub const GGUF_MAGIC: u32 = 0x4655_4747;
/// Data alignment when the file does not set `general.alignment`.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// Elements per block of the block-quantized types we support.
pub const QK: usize = 32;

/// Element types of tensors (the `ggml_type` numbering). Only the ones the loader can read are listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TensorType {
    F32,
    F16,
    Q4_1,
    Q8_0,
}

impl TensorType {
    /// Maps a `ggml_type` id; other types are reported as unsupported by the caller.
    pub fn from_id(id: u32) -> Option<Self> {
        match id {
            0 => Some(Self::F32),
            1 => Some(Self::F16),
            3 => Some(Self::Q4_1),
            8 => Some(Self::Q8_0),
            _ => None,
        }
    }

    pub fn id(self) -> u32 {
        match self {
            Self::F32 => 0,
            Self::F16 => 1,
            Self::Q4_1 => 3,
            Self::Q8_0 => 8,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "F32",
            Self::F16 => "F16",
            Self::Q4_1 => "Q4_1",
            Self::Q8_0 => "Q8_0",
        }
    }

    /// Elements per storage block (1 for plain types).
    pub fn block_elems(self) -> usize {
        match self {
            Self::F32 | Self::F16 => 1,
            Self::Q4_1 | Self::Q8_0 => QK,
        }
    }

    /// Bytes per storage block.
    pub fn block_bytes(self) -> usize {
        match self {
            Self::F32 => 4,
            Self::F16 => 2,
            // f16 d, f16 m, 16 bytes of nibbles
            Self::Q4_1 => 20,
            // f16 d, 32 x i8
            Self::Q8_0 => 34,
        }
    }

    /// Name of a `ggml_type` id, for error messages about types we cannot read.
    pub fn describe_id(id: u32) -> String {
        const NAMES: [&str; 31] = [
            "F32", "F16", "Q4_0", "Q4_1", "Q4_2", "Q4_3", "Q5_0", "Q5_1", "Q8_0", "Q8_1", "Q2_K",
            "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q8_K", "IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S",
            "IQ4_NL", "IQ3_S", "IQ2_S", "IQ4_XS", "I8", "I16", "I32", "I64", "F64", "IQ1_M",
            "BF16",
        ];
        NAMES.get(id as usize).map_or_else(
            || format!("type id {id}"),
            |n| format!("{n} (type id {id})"),
        )
    }
}

/// Metadata value types (`gguf_type` numbering).
#[derive(Debug, Clone, PartialEq)]
pub enum MetaValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    Array(Vec<MetaValue>),
    U64(u64),
    I64(i64),
    F64(f64),
}

impl MetaValue {
    /// Any non-negative integer value as u64.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Self::U8(v) => Some(v.into()),
            Self::U16(v) => Some(v.into()),
            Self::U32(v) => Some(v.into()),
            Self::U64(v) => Some(v),
            Self::I8(v) => u64::try_from(v).ok(),
            Self::I16(v) => u64::try_from(v).ok(),
            Self::I32(v) => u64::try_from(v).ok(),
            Self::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Self::I8(v) => Some(v.into()),
            Self::I16(v) => Some(v.into()),
            Self::I32(v) => Some(v.into()),
            Self::I64(v) => Some(v),
            _ => self.as_u64().and_then(|v| i64::try_from(v).ok()),
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Self::F32(v) => Some(v.into()),
            Self::F64(v) => Some(v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Self::Bool(b) => Some(b),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[MetaValue]> {
        match self {
            Self::Array(a) => Some(a),
            _ => None,
        }
    }

    /// `gguf_type` id of this value.
    pub fn type_id(&self) -> u32 {
        match self {
            Self::U8(_) => 0,
            Self::I8(_) => 1,
            Self::U16(_) => 2,
            Self::I16(_) => 3,
            Self::U32(_) => 4,
            Self::I32(_) => 5,
            Self::F32(_) => 6,
            Self::Bool(_) => 7,
            Self::String(_) => 8,
            Self::Array(_) => 9,
            Self::U64(_) => 10,
            Self::I64(_) => 11,
            Self::F64(_) => 12,
        }
    }
}

/// One tensor's header entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    pub name: String,
    /// GGUF order: `dims[0]` is the contiguous (innermost) dimension.
    pub dims: Vec<u64>,
    pub ty: TensorType,
    /// Byte offset relative to the start of the data section.
    pub offset: u64,
}

impl TensorInfo {
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }

    /// Size of the tensor's data in bytes (dims were validated so this cannot overflow).
    pub fn n_bytes(&self) -> u64 {
        self.n_elements() / self.ty.block_elems() as u64 * self.ty.block_bytes() as u64
    }
}

#[derive(Debug, Error)]
pub enum GgufError {
    #[error("cannot read GGUF file {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("not a GGUF file: magic is {found:#010x}, expected {GGUF_MAGIC:#010x} (\"GGUF\")")]
    BadMagic { found: u32 },
    #[error("unsupported GGUF version {0}: only versions 2 and 3 are supported")]
    UnsupportedVersion(u32),
    #[error(
        "GGUF file truncated: needed {needed} bytes at offset {offset} while reading {what}, file has {len}"
    )]
    Truncated {
        what: String,
        offset: u64,
        needed: u64,
        len: u64,
    },
    #[error("GGUF {what}: {detail}")]
    Corrupt { what: String, detail: String },
    #[error(
        "tensor `{name}` has unsupported type {ty}: supported types are F32, F16, Q4_1 and Q8_0"
    )]
    UnsupportedTensorType { name: String, ty: String },
    #[error("tensor `{0}` not found in the GGUF file")]
    MissingTensor(String),
    #[error("metadata key `{key}` {problem}")]
    Metadata { key: String, problem: String },
}

/// Converts IEEE half-precision bits to f32 (exact).
pub fn f16_to_f32(bits: u16) -> f32 {
    let sign = if bits & 0x8000 != 0 { -1.0f32 } else { 1.0 };
    let exp = i32::from((bits >> 10) & 0x1f);
    let frac = f32::from(bits & 0x3ff);
    match exp {
        0 => sign * frac * (2.0f32).powi(-24),
        31 if frac == 0.0 => sign * f32::INFINITY,
        31 => f32::NAN,
        _ => sign * (1024.0 + frac) * (2.0f32).powi(exp - 25),
    }
}

/// Converts a finite f16 to an exact integer in units of 2^-24 (every finite f16 is one). `None` for inf/NaN.
pub fn f16_to_units(bits: u16) -> Option<i64> {
    let exp = u32::from((bits >> 10) & 0x1f);
    let frac = i64::from(bits & 0x3ff);
    let magnitude = match exp {
        0 => frac,
        31 => return None,
        _ => (1024 + frac) << (exp - 1),
    };
    Some(if bits & 0x8000 != 0 {
        -magnitude
    } else {
        magnitude
    })
}
