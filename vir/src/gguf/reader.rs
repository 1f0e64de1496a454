//! GGUF reader: bounds-checked parsing of the header, metadata and tensor table of a whole file held in memory.

use super::{DEFAULT_ALIGNMENT, GGUF_MAGIC, GgufError, MetaValue, TensorInfo, TensorType};
use std::collections::BTreeMap;
use std::path::Path;

/// Upper bound on metadata array lengths and tensor counts (far above any real model; stops absurd allocations).
const MAX_ITEMS: u64 = 1 << 24;
/// Upper bound on a tensor's rank.
const MAX_DIMS: u32 = 4;

/// A parsed GGUF file. The tensor data stays in `bytes`; [`GgufFile::tensor_data`] slices it.
#[derive(Debug)]
pub struct GgufFile {
    pub version: u32,
    pub metadata: BTreeMap<String, MetaValue>,
    pub tensors: Vec<TensorInfo>,
    pub alignment: u64,
    data_offset: usize,
    bytes: Vec<u8>,
}

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: u64, what: &str) -> Result<&'a [u8], GgufError> {
        let remaining = (self.bytes.len() - self.pos) as u64;
        if n > remaining {
            return Err(GgufError::Truncated {
                what: what.to_string(),
                offset: self.pos as u64,
                needed: n,
                len: self.bytes.len() as u64,
            });
        }
        let start = self.pos;
        // n <= remaining <= usize::MAX
        self.pos += n as usize;
        Ok(&self.bytes[start..self.pos])
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], GgufError> {
        let s = self.take(N as u64, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(s);
        Ok(out)
    }

    fn u32(&mut self, what: &str) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    fn string(&mut self, what: &str) -> Result<String, GgufError> {
        let len = self.u64(what)?;
        let raw = self.take(len, what)?;
        String::from_utf8(raw.to_vec()).map_err(|_| GgufError::Corrupt {
            what: what.to_string(),
            detail: "string is not valid UTF-8".into(),
        })
    }

    fn value(&mut self, ty: u32, what: &str, depth: u32) -> Result<MetaValue, GgufError> {
        Ok(match ty {
            0 => MetaValue::U8(self.array::<1>(what)?[0]),
            1 => MetaValue::I8(i8::from_le_bytes(self.array(what)?)),
            2 => MetaValue::U16(u16::from_le_bytes(self.array(what)?)),
            3 => MetaValue::I16(i16::from_le_bytes(self.array(what)?)),
            4 => MetaValue::U32(self.u32(what)?),
            5 => MetaValue::I32(i32::from_le_bytes(self.array(what)?)),
            6 => MetaValue::F32(f32::from_le_bytes(self.array(what)?)),
            7 => match self.array::<1>(what)?[0] {
                0 => MetaValue::Bool(false),
                1 => MetaValue::Bool(true),
                b => {
                    return Err(GgufError::Corrupt {
                        what: what.into(),
                        detail: format!("bool byte is {b}, not 0 or 1"),
                    });
                }
            },
            8 => MetaValue::String(self.string(what)?),
            9 => {
                if depth > 0 {
                    return Err(GgufError::Corrupt {
                        what: what.into(),
                        detail: "nested arrays are not supported".into(),
                    });
                }
                let item_ty = self.u32(what)?;
                let count = self.u64(what)?;
                if count > MAX_ITEMS || count > (self.bytes.len() - self.pos) as u64 {
                    return Err(GgufError::Corrupt {
                        what: what.into(),
                        detail: format!("array length {count} exceeds what the file can hold"),
                    });
                }
                let mut items = Vec::with_capacity(count as usize);
                for _ in 0..count {
                    items.push(self.value(item_ty, what, depth + 1)?);
                }
                MetaValue::Array(items)
            }
            10 => MetaValue::U64(self.u64(what)?),
            11 => MetaValue::I64(i64::from_le_bytes(self.array(what)?)),
            12 => MetaValue::F64(f64::from_le_bytes(self.array(what)?)),
            other => {
                return Err(GgufError::Corrupt {
                    what: what.into(),
                    detail: format!("unknown value type {other}"),
                });
            }
        })
    }
}

impl GgufFile {
    /// Reads and parses a GGUF file.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, GgufError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| GgufError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(bytes)
    }

    /// Parses a GGUF image held in memory.
    pub fn parse(bytes: Vec<u8>) -> Result<Self, GgufError> {
        let mut cur = Cursor {
            bytes: &bytes,
            pos: 0,
        };
        let magic = cur.u32("magic")?;
        if magic != GGUF_MAGIC {
            return Err(GgufError::BadMagic { found: magic });
        }
        let version = cur.u32("version")?;
        if !(2..=3).contains(&version) {
            return Err(GgufError::UnsupportedVersion(version));
        }
        let tensor_count = cur.u64("tensor count")?;
        let kv_count = cur.u64("metadata count")?;
        for (what, n) in [("tensor count", tensor_count), ("metadata count", kv_count)] {
            if n > MAX_ITEMS {
                return Err(GgufError::Corrupt {
                    what: what.into(),
                    detail: format!("{n} is implausibly large"),
                });
            }
        }

        let mut metadata = BTreeMap::new();
        for i in 0..kv_count {
            let key = cur.string(&format!("metadata key #{i}"))?;
            let ty = cur.u32(&format!("type of metadata `{key}`"))?;
            let value = cur.value(ty, &format!("metadata `{key}`"), 0)?;
            if metadata.insert(key.clone(), value).is_some() {
                return Err(GgufError::Corrupt {
                    what: format!("metadata `{key}`"),
                    detail: "duplicate key".into(),
                });
            }
        }
        let alignment = match metadata.get("general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some(v) => match v.as_u64() {
                Some(a) if a > 0 && a.is_power_of_two() && a <= 1 << 16 => a,
                _ => {
                    return Err(GgufError::Metadata {
                        key: "general.alignment".into(),
                        problem: format!("must be a power of two up to 65536, found {v:?}"),
                    });
                }
            },
        };

        let mut tensors = Vec::with_capacity(tensor_count as usize);
        let mut names = std::collections::HashSet::new();
        for i in 0..tensor_count {
            tensors.push(read_tensor_info(&mut cur, i, alignment)?);
            let name = &tensors[tensors.len() - 1].name;
            if !names.insert(name.clone()) {
                return Err(GgufError::Corrupt {
                    what: format!("tensor `{name}`"),
                    detail: "duplicate tensor name".into(),
                });
            }
        }

        let data_offset = (cur.pos as u64).div_ceil(alignment) * alignment;
        let file_len = bytes.len() as u64;
        for t in &tensors {
            let end = data_offset
                .checked_add(t.offset)
                .and_then(|s| s.checked_add(t.n_bytes()));
            match end {
                Some(end) if end <= file_len => {}
                _ => {
                    return Err(GgufError::Truncated {
                        what: format!("data of tensor `{}`", t.name),
                        offset: data_offset.saturating_add(t.offset),
                        needed: t.n_bytes(),
                        len: file_len,
                    });
                }
            }
        }
        let data_offset = usize::try_from(data_offset).map_err(|_| GgufError::Corrupt {
            what: "data offset".into(),
            detail: "exceeds address space".into(),
        })?;
        Ok(Self {
            version,
            metadata,
            tensors,
            alignment,
            data_offset,
            bytes,
        })
    }

    /// The tensor's header entry.
    pub fn tensor(&self, name: &str) -> Result<&TensorInfo, GgufError> {
        self.tensors
            .iter()
            .find(|t| t.name == name)
            .ok_or_else(|| GgufError::MissingTensor(name.to_string()))
    }

    /// The tensor's raw data bytes (bounds were checked at parse time).
    pub fn tensor_data(&self, info: &TensorInfo) -> &[u8] {
        let start = self.data_offset + info.offset as usize;
        &self.bytes[start..start + info.n_bytes() as usize]
    }

    /// A metadata value that must be present.
    pub fn meta(&self, key: &str) -> Result<&MetaValue, GgufError> {
        self.metadata.get(key).ok_or_else(|| GgufError::Metadata {
            key: key.into(),
            problem: "is missing".into(),
        })
    }

    pub fn meta_u64(&self, key: &str) -> Result<u64, GgufError> {
        let v = self.meta(key)?;
        v.as_u64().ok_or_else(|| GgufError::Metadata {
            key: key.into(),
            problem: format!("must be a non-negative integer, found {v:?}"),
        })
    }

    pub fn meta_f64(&self, key: &str) -> Result<f64, GgufError> {
        let v = self.meta(key)?;
        v.as_f64().ok_or_else(|| GgufError::Metadata {
            key: key.into(),
            problem: format!("must be a float, found {v:?}"),
        })
    }

    pub fn meta_str(&self, key: &str) -> Result<&str, GgufError> {
        let v = self.meta(key)?;
        v.as_str().ok_or_else(|| GgufError::Metadata {
            key: key.into(),
            problem: format!("must be a string, found {v:?}"),
        })
    }

    /// Total number of tensor elements (the parameter count).
    pub fn parameter_count(&self) -> u64 {
        self.tensors.iter().map(TensorInfo::n_elements).sum()
    }
}

fn read_tensor_info(cur: &mut Cursor<'_>, i: u64, alignment: u64) -> Result<TensorInfo, GgufError> {
    let name = cur.string(&format!("name of tensor #{i}"))?;
    let what = format!("tensor `{name}`");
    let n_dims = cur.u32(&what)?;
    if n_dims == 0 || n_dims > MAX_DIMS {
        return Err(GgufError::Corrupt {
            what,
            detail: format!("rank {n_dims} is outside 1..={MAX_DIMS}"),
        });
    }
    let mut dims = Vec::with_capacity(n_dims as usize);
    let mut elems: u64 = 1;
    for _ in 0..n_dims {
        let d = cur.u64(&what)?;
        elems = match elems.checked_mul(d) {
            Some(e) if d > 0 && e <= 1 << 40 => e,
            _ => {
                return Err(GgufError::Corrupt {
                    what,
                    detail: format!("dimension {d} is zero or too large"),
                });
            }
        };
        dims.push(d);
    }
    let type_id = cur.u32(&what)?;
    let ty = TensorType::from_id(type_id).ok_or_else(|| GgufError::UnsupportedTensorType {
        name: name.clone(),
        ty: TensorType::describe_id(type_id),
    })?;
    if dims[0] % ty.block_elems() as u64 != 0 {
        return Err(GgufError::Corrupt {
            what,
            detail: format!(
                "row length {} is not a multiple of the {} block size {}",
                dims[0],
                ty.name(),
                ty.block_elems()
            ),
        });
    }
    let offset = cur.u64(&what)?;
    if offset % alignment != 0 {
        return Err(GgufError::Corrupt {
            what,
            detail: format!("data offset {offset} is not aligned to {alignment}"),
        });
    }
    Ok(TensorInfo {
        name,
        dims,
        ty,
        offset,
    })
}
