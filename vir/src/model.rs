//! The integer model: exact weights, fixed-point norm weights, committed tables, and the model root.

use crate::config::LlamaConfig;
use crate::gguf::GgufFile;
use crate::ops::{ACT_FRAC, ATTN_CHUNK, RESIDUAL_FRAC, TOPP_ROUNDS, VOCAB_CHUNK, score_scale};
use crate::tables;
use crate::tokenizer::TokenizerSpec;
use crate::weights::{NORM_FRAC_BITS, QuantKind, QuantMatrix, WeightError, to_fixed, vector_f32};
use crate::{ModelError, VIR_VERSION};
use alloy_primitives::{B256, keccak256};
use protocol::merkle::merkle_root;
use protocol::tensor::{tensor_root, token_ids_root};

/// Largest |gamma| in Q16 (gamma < 256): bounds RMSNorm's `z = y·g` below 2^63 (docs/vir.md).
pub const MAX_GAMMA_Q16: i64 = 1 << 24;

/// One decoder layer's weights.
#[derive(Debug)]
pub struct LayerWeights {
    pub attn_norm: Vec<i64>,
    pub wq: QuantMatrix,
    pub wk: QuantMatrix,
    pub wv: QuantMatrix,
    pub wo: QuantMatrix,
    pub ffn_norm: Vec<i64>,
    pub w_gate: QuantMatrix,
    pub w_up: QuantMatrix,
    pub w_down: QuantMatrix,
}

/// Committed lookup tables.
#[derive(Debug)]
pub struct Tables {
    pub exp: Vec<i32>,
    pub sigmoid: Vec<i32>,
    /// `[position][pair][cos, sin]`, Q16.
    pub rope: Vec<i32>,
}

impl Tables {
    pub fn rope_row(&self, pos: usize, head_dim: usize) -> &[i32] {
        &self.rope[pos * head_dim..(pos + 1) * head_dim]
    }
}

/// Integer program parameters derived from the config (what a verifier needs besides the weights).
#[derive(Debug, Clone, PartialEq)]
pub struct ProgramParams {
    /// `round(eps · 2^48)`.
    pub eps_fx: i64,
    /// `round(2^16 / sqrt(head_dim))`.
    pub score_scale: i64,
}

/// The integer model: everything the VIR program reads.
#[derive(Debug)]
pub struct IntModel {
    pub config: LlamaConfig,
    pub params: ProgramParams,
    pub token_embd: QuantMatrix,
    pub layers: Vec<LayerWeights>,
    pub output_norm: Vec<i64>,
    /// `None` when the output projection is tied to `token_embd`.
    pub output: Option<QuantMatrix>,
    pub tables: Tables,
    /// Token ids that end generation (EOS and the chat end-of-turn tokens), committed in the model root.
    pub stop_ids: Vec<u32>,
    /// Tensor roots in model-root order (see [`IntModel::commitment_names`]).
    pub tensor_roots: Vec<(String, B256)>,
    pub root: B256,
}

fn gamma(file: &GgufFile, name: &str, d: usize) -> Result<Vec<i64>, WeightError> {
    let g = to_fixed(&vector_f32(file, name, d)?, NORM_FRAC_BITS);
    if let Some(i) = g.iter().position(|v| v.abs() >= MAX_GAMMA_Q16) {
        return Err(WeightError::Invalid {
            name: name.to_string(),
            why: format!(
                "element {i} = {} exceeds the supported norm weight magnitude 256",
                g[i] as f64 / 65536.0
            ),
        });
    }
    Ok(g)
}

/// Model-root leaf of a weight matrix: `keccak256(kind u8 ‖ rows u32 BE ‖ cols u32 BE ‖ tensor_root(raw))`,
/// kind 1 = Q4_1, 2 = Q8_0, so a verifier knows how to parse a row from the root alone.
pub fn matrix_leaf(m: &QuantMatrix) -> B256 {
    let kind: u8 = match m.kind {
        QuantKind::Q4_1 => 1,
        QuantKind::Q8_0 => 2,
    };
    let mut pre = Vec::with_capacity(41);
    pre.push(kind);
    pre.extend_from_slice(&(m.rows as u32).to_be_bytes());
    pre.extend_from_slice(&(m.cols as u32).to_be_bytes());
    pre.extend_from_slice(tensor_root(&m.raw).as_slice());
    keccak256(pre)
}

fn i32_bytes(v: impl IntoIterator<Item = i32>) -> Vec<u8> {
    v.into_iter().flat_map(i32::to_le_bytes).collect()
}

fn gamma_bytes(g: &[i64]) -> Vec<u8> {
    // |g| < 2^24, so the i32 narrowing is exact.
    i32_bytes(g.iter().map(|&v| v as i32))
}

impl IntModel {
    pub fn open(path: impl AsRef<std::path::Path>) -> Result<Self, ModelError> {
        Self::load(&GgufFile::open(path)?)
    }

    pub fn load(file: &GgufFile) -> Result<Self, ModelError> {
        let config = LlamaConfig::from_gguf(file)?;
        let d = config.d_model;
        let mat = |name: &str, rows: usize, cols: usize| -> Result<QuantMatrix, WeightError> {
            let m = QuantMatrix::from_gguf(file, name)?;
            if (m.rows, m.cols) != (rows, cols) {
                return Err(WeightError::Invalid {
                    name: name.into(),
                    why: format!(
                        "shape {}x{} does not match the config ({rows}x{cols})",
                        m.rows, m.cols
                    ),
                });
            }
            m.check_accumulator_bound()?;
            Ok(m)
        };
        let kvd = config.kv_dim();
        let layers = (0..config.n_layers)
            .map(|l| -> Result<LayerWeights, WeightError> {
                let p = format!("blk.{l}");
                Ok(LayerWeights {
                    attn_norm: gamma(file, &format!("{p}.attn_norm.weight"), d)?,
                    wq: mat(&format!("{p}.attn_q.weight"), d, d)?,
                    wk: mat(&format!("{p}.attn_k.weight"), kvd, d)?,
                    wv: mat(&format!("{p}.attn_v.weight"), kvd, d)?,
                    wo: mat(&format!("{p}.attn_output.weight"), d, d)?,
                    ffn_norm: gamma(file, &format!("{p}.ffn_norm.weight"), d)?,
                    w_gate: mat(&format!("{p}.ffn_gate.weight"), config.d_ff, d)?,
                    w_up: mat(&format!("{p}.ffn_up.weight"), config.d_ff, d)?,
                    w_down: mat(&format!("{p}.ffn_down.weight"), d, config.d_ff)?,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let token_embd = mat("token_embd.weight", config.vocab_size, d)?;
        let output = if config.tied_output {
            None
        } else {
            Some(mat("output.weight", config.vocab_size, d)?)
        };
        let tables = Tables {
            exp: tables::exp_table(),
            sigmoid: tables::sigmoid_table(),
            rope: tables::rope_table(config.context_length, config.head_dim, config.rope_base),
        };
        let params = ProgramParams {
            eps_fx: (config.rms_eps * (1u64 << 48) as f64).round() as i64,
            score_scale: score_scale(config.head_dim),
        };
        let stop_ids = if file.metadata.contains_key("tokenizer.ggml.tokens") {
            TokenizerSpec::from_gguf(file)
                .map_err(ModelError::Tokenizer)?
                .stop_ids()
        } else {
            Vec::new()
        };
        let mut model = Self {
            stop_ids,
            output_norm: gamma(file, "output_norm.weight", d)?,
            config,
            params,
            token_embd,
            layers,
            output,
            tables,
            tensor_roots: Vec::new(),
            root: B256::ZERO,
        };
        model.tensor_roots = model.commitments();
        model.root = merkle_root(
            &model
                .tensor_roots
                .iter()
                .map(|(_, r)| *r)
                .collect::<Vec<_>>(),
        );
        Ok(model)
    }

    /// The output projection (tied or separate).
    pub fn output_matrix(&self) -> &QuantMatrix {
        self.output.as_ref().unwrap_or(&self.token_embd)
    }

    /// Hash of the program parameters: every integer the VIR program uses besides weights and tables.
    pub fn config_hash(&self) -> B256 {
        let c = &self.config;
        let fields: [u64; 18] = [
            u64::from(VIR_VERSION),
            c.n_layers as u64,
            c.d_model as u64,
            c.d_ff as u64,
            c.n_heads as u64,
            c.n_kv_heads as u64,
            c.head_dim as u64,
            c.vocab_size as u64,
            c.context_length as u64,
            u64::from(c.tied_output),
            self.params.eps_fx as u64,
            self.params.score_scale as u64,
            u64::from(RESIDUAL_FRAC),
            u64::from(ACT_FRAC),
            ATTN_CHUNK as u64,
            VOCAB_CHUNK as u64,
            TOPP_ROUNDS as u64,
            u64::from(tables::TABLE_FRAC),
        ];
        keccak256(
            fields
                .iter()
                .flat_map(|f| f.to_be_bytes())
                .collect::<Vec<u8>>(),
        )
    }

    /// Leaves of the model root in order: token_embd; per layer attn_norm, attn_q, attn_k, attn_v, attn_output,
    /// ffn_norm, ffn_gate, ffn_up, ffn_down; output_norm; output (if untied); EXP, SIGMOID, ROPE tables; stop ids; config. Matrices enter as [`matrix_leaf`].
    fn commitments(&self) -> Vec<(String, B256)> {
        let mut out = vec![(
            "token_embd.weight".to_string(),
            matrix_leaf(&self.token_embd),
        )];
        for (l, layer) in self.layers.iter().enumerate() {
            let p = format!("blk.{l}");
            out.push((
                format!("{p}.attn_norm.weight"),
                tensor_root(&gamma_bytes(&layer.attn_norm)),
            ));
            for m in [&layer.wq, &layer.wk, &layer.wv, &layer.wo] {
                out.push((m.name.clone(), matrix_leaf(m)));
            }
            out.push((
                format!("{p}.ffn_norm.weight"),
                tensor_root(&gamma_bytes(&layer.ffn_norm)),
            ));
            for m in [&layer.w_gate, &layer.w_up, &layer.w_down] {
                out.push((m.name.clone(), matrix_leaf(m)));
            }
        }
        out.push((
            "output_norm.weight".into(),
            tensor_root(&gamma_bytes(&self.output_norm)),
        ));
        if let Some(o) = &self.output {
            out.push((o.name.clone(), matrix_leaf(o)));
        }
        out.push((
            "table.exp".into(),
            tensor_root(&i32_bytes(self.tables.exp.iter().copied())),
        ));
        out.push((
            "table.sigmoid".into(),
            tensor_root(&i32_bytes(self.tables.sigmoid.iter().copied())),
        ));
        out.push((
            "table.rope".into(),
            tensor_root(&i32_bytes(self.tables.rope.iter().copied())),
        ));
        out.push(("stop_ids".into(), token_ids_root(&self.stop_ids)));
        out.push(("config".into(), self.config_hash()));
        out
    }
}
