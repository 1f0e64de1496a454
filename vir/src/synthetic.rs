//! Seeded synthetic llama models: a real GGUF v3 file (llama metadata, Q8_0/Q4_1/F32 tensors encoded exactly as
//! llama.cpp writes them, a byte-level BPE tokenizer and a ChatML chat template) built from a [`SyntheticSpec`].
//!
//! The file is a pure function of the spec: weights come from ChaCha8 seeded with [`SyntheticSpec::seed`] and are
//! drawn with `+ - * / sqrt` only (no library `exp`/`ln`/`sin`), so every platform produces the same bytes.
//! Weight magnitudes follow a trained model (per-row Gaussian-like weights with std ≈ 1/sqrt(fan_in), norm
//! weights ≈ 1), so activations stay in realistic ranges and greedy generation is not degenerate.
//!
//! The tokenizer does not depend on the seed: ids 0..3 are the control tokens `<|endoftext|>`, `<|im_start|>`,
//! `<|im_end|>` (BOS = 1, EOS = 2), then the 256 byte tokens in GPT-2 byte-to-unicode form, then tokens learned by
//! BPE on a small built-in English corpus; if the corpus runs out of merges, the rest are `<|unused_N|>` (type
//! UNUSED, never produced by encoding).

use crate::config::{LlamaConfig, MAX_CONTEXT};
use crate::gguf::{GgufWriter, MetaValue, QK, TensorType};
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{Rng, SeedableRng};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use thiserror::Error;

/// The control tokens at ids 0, 1, 2.
pub const SPECIAL_TOKENS: [&str; 3] = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];
/// `tokenizer.ggml.bos_token_id` (`<|im_start|>`).
pub const BOS_ID: u32 = 1;
/// `tokenizer.ggml.eos_token_id` (`<|im_end|>`).
pub const EOS_ID: u32 = 2;
/// `tokenizer.ggml.unknown_token_id` (`<|endoftext|>`).
pub const UNK_ID: u32 = 0;
/// `tokenizer.ggml.padding_token_id` (`<|im_end|>`, as SmolLM2).
pub const PAD_ID: u32 = 2;
/// Smallest vocabulary: the control tokens plus the 256 byte tokens.
pub const MIN_VOCAB: usize = SPECIAL_TOKENS.len() + 256;
/// Largest vocabulary the generator accepts.
pub const MAX_VOCAB: usize = 1 << 20;
/// `tokenizer.ggml.pre`.
pub const PRE_TOKENIZER: &str = "smollm";
/// `tokenizer.chat_template`: SmolLM2's ChatML template.
pub const CHAT_TEMPLATE: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

/// `llama_token_type` values written to `tokenizer.ggml.token_type`.
const TYPE_NORMAL: i32 = 1;
const TYPE_CONTROL: i32 = 3;
const TYPE_UNUSED: i32 = 5;
/// `general.file_type` of a mostly-Q4_1 model (`LLAMA_FTYPE_MOSTLY_Q4_1`).
const FILE_TYPE_MOSTLY_Q4_1: u32 = 3;

/// The corpus the BPE merges are learned from.
const CORPUS: &[&str] = &[
    "Hello world! This is a small model that was made for testing.",
    "The quick brown fox jumps over the lazy dog.",
    "Once upon a time there was a little girl who lived in a village near the forest.",
    "She liked to walk along the river and watch the birds sing in the morning.",
    "What is the capital of France? The capital of France is Paris.",
    "Can you tell me a story about a dragon and a brave knight?",
    "The weather today is sunny and warm, but tomorrow it will rain.",
    "Please write a short poem about the sea and the stars at night.",
    "Machine learning models learn patterns from data and make predictions.",
    "A language model predicts the next word in a sentence from the words before it.",
    "The sun rises in the east and sets in the west every day.",
    "Water boils at one hundred degrees and freezes at zero degrees.",
    "I would like a cup of coffee with milk and a piece of cake, please.",
    "Thank you for your help! You are a very helpful assistant.",
    "How are you doing today? I am doing well, thank you for asking.",
    "The children played in the garden while their parents talked inside the house.",
    "Reading books is a wonderful way to learn new things and to relax.",
    "The history of the world is full of interesting people and important events.",
    "Mathematics is the language of science, and numbers are everywhere around us.",
    "The train leaves the station at nine in the morning and arrives at noon.",
    "My favorite colors are blue and green, like the sky and the trees.",
    "Computers process information very quickly using electricity and logic.",
    "The old man sat by the window and watched the snow falling on the street.",
    "Good morning! Let us start the meeting with a short review of the project.",
    "The cat slept on the warm blanket next to the fireplace all afternoon.",
    "People have always wondered about the stars, the planets and the moon.",
    "Learning to play music takes practice, patience and a lot of time.",
    "The teacher asked the students to write an essay about their summer holidays.",
    "Fresh fruit and vegetables are important for a healthy diet.",
    "In the beginning the universe was small, hot and very dense.",
    "The company announced a new product that helps people work together online.",
    "Every morning he runs five kilometers around the park before breakfast.",
    "The museum has paintings, sculptures and ancient objects from many countries.",
    "If you have any questions, please let me know and I will answer them.",
    "The bridge was built over the river more than two hundred years ago.",
    "Friends are people who listen to you and help you when things are hard.",
    "The scientist carefully measured the temperature of the solution.",
    "Write a function that returns the sum of two numbers.",
    "The little robot wanted to understand why humans laugh and cry.",
    "There are seven days in a week and twelve months in a year.",
];

/// Shape, hyper-parameters and seed of a synthetic llama model.
///
/// `rope_base` and `rms_eps` are `f32` because GGUF stores them as F32: the loaded [`LlamaConfig`] holds exactly
/// `f64::from` of these values.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntheticSpec {
    /// Seed of the weights (ChaCha8); the tokenizer does not depend on it.
    pub seed: u64,
    pub n_layers: usize,
    pub d_model: usize,
    pub d_ff: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    /// Number of tokens, also the rows of `token_embd.weight`; at least [`MIN_VOCAB`].
    pub vocab_size: usize,
    pub context_length: usize,
    pub rope_base: f32,
    pub rms_eps: f32,
}

impl SyntheticSpec {
    /// 2 layers, d_model 64, d_ff 128, 4 heads (head_dim 16), 2 KV heads, 512 tokens, context 256, seed 0.
    pub fn tiny() -> Self {
        Self {
            seed: 0,
            n_layers: 2,
            d_model: 64,
            d_ff: 128,
            n_heads: 4,
            n_kv_heads: 2,
            vocab_size: 512,
            context_length: 256,
            rope_base: 10_000.0,
            rms_eps: 1e-5,
        }
    }

    /// The same spec with another seed.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// `d_model / n_heads` (0 when `n_heads` is 0).
    pub fn head_dim(&self) -> usize {
        self.d_model.checked_div(self.n_heads).unwrap_or(0)
    }

    /// `n_kv_heads · head_dim`: rows of `attn_k` and `attn_v`.
    pub fn kv_dim(&self) -> usize {
        self.n_kv_heads * self.head_dim()
    }

    /// The config [`LlamaConfig::from_gguf`] reads back from the generated file (tied output).
    pub fn config(&self) -> LlamaConfig {
        LlamaConfig {
            n_layers: self.n_layers,
            d_model: self.d_model,
            d_ff: self.d_ff,
            n_heads: self.n_heads,
            n_kv_heads: self.n_kv_heads,
            head_dim: self.head_dim(),
            vocab_size: self.vocab_size,
            context_length: self.context_length.min(MAX_CONTEXT),
            rope_base: f64::from(self.rope_base),
            rms_eps: f64::from(self.rms_eps),
            tied_output: true,
        }
    }

    /// Checks what the generator needs to encode the tensors and the tokenizer. Values the encoding does not
    /// depend on (epsilon, RoPE base, a KV head count that does not divide the head count, ...) are written as
    /// given, so the loader's own validation can be tested with generated files.
    pub fn validate(&self) -> Result<(), SyntheticError> {
        let bad = |field: &'static str, value: usize, why: String| SyntheticError::InvalidSpec {
            field,
            value: value.to_string(),
            why,
        };
        if self.n_layers > 256 {
            return Err(bad("n_layers", self.n_layers, "must be at most 256".into()));
        }
        for (field, v) in [("d_model", self.d_model), ("d_ff", self.d_ff)] {
            if v == 0 || !v.is_multiple_of(QK) || v > 1 << 16 {
                return Err(bad(
                    field,
                    v,
                    format!(
                        "must be a positive multiple of the {QK}-element quantization block up to 65536"
                    ),
                ));
            }
        }
        if self.n_heads == 0 || !self.d_model.is_multiple_of(self.n_heads) {
            return Err(bad(
                "n_heads",
                self.n_heads,
                "must be positive and divide d_model".into(),
            ));
        }
        if self.n_kv_heads == 0 || self.n_kv_heads > self.n_heads {
            return Err(bad(
                "n_kv_heads",
                self.n_kv_heads,
                "must be in 1..=n_heads".into(),
            ));
        }
        if !(MIN_VOCAB..=MAX_VOCAB).contains(&self.vocab_size) {
            return Err(bad(
                "vocab_size",
                self.vocab_size,
                format!(
                    "must be in {MIN_VOCAB}..={MAX_VOCAB} (3 control tokens, 256 byte tokens, then merges)"
                ),
            ));
        }
        if self.context_length > u32::MAX as usize {
            return Err(bad(
                "context_length",
                self.context_length,
                "must fit in u32".into(),
            ));
        }
        Ok(())
    }
}

impl Default for SyntheticSpec {
    fn default() -> Self {
        Self::tiny()
    }
}

#[derive(Debug, Error)]
pub enum SyntheticError {
    #[error("synthetic model spec `{field}` = {value} is invalid: {why}")]
    InvalidSpec {
        field: &'static str,
        value: String,
        why: String,
    },
    #[error("cannot write synthetic model to {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// The tokenizer part of a synthetic model, as written to `tokenizer.ggml.*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntheticVocab {
    /// Token strings in byte-level form, one per id.
    pub tokens: Vec<String>,
    /// `llama_token_type` of each token.
    pub token_types: Vec<i32>,
    /// BPE merges in rank order, each `"left right"`.
    pub merges: Vec<String>,
}

/// Builds the GGUF image of `spec`.
pub fn synthetic_gguf(spec: &SyntheticSpec) -> Result<Vec<u8>, SyntheticError> {
    spec.validate()?;
    let vocab = synthetic_vocab(spec.vocab_size);
    let mut w = GgufWriter::new();
    let u32v = |v: usize| MetaValue::U32(v as u32);
    let strings =
        |v: &[String]| MetaValue::Array(v.iter().cloned().map(MetaValue::String).collect());
    w.meta("general.architecture", MetaValue::String("llama".into()))
        .meta(
            "general.name",
            MetaValue::String(format!("verinfer synthetic llama (seed {})", spec.seed)),
        )
        .meta("general.file_type", MetaValue::U32(FILE_TYPE_MOSTLY_Q4_1))
        .meta("general.quantization_version", MetaValue::U32(2))
        .meta("llama.block_count", u32v(spec.n_layers))
        .meta("llama.context_length", u32v(spec.context_length))
        .meta("llama.embedding_length", u32v(spec.d_model))
        .meta("llama.feed_forward_length", u32v(spec.d_ff))
        .meta("llama.attention.head_count", u32v(spec.n_heads))
        .meta("llama.attention.head_count_kv", u32v(spec.n_kv_heads))
        .meta("llama.rope.freq_base", MetaValue::F32(spec.rope_base))
        .meta(
            "llama.attention.layer_norm_rms_epsilon",
            MetaValue::F32(spec.rms_eps),
        )
        .meta("llama.vocab_size", u32v(spec.vocab_size))
        .meta("llama.rope.dimension_count", u32v(spec.head_dim()))
        .meta("tokenizer.ggml.model", MetaValue::String("gpt2".into()))
        .meta(
            "tokenizer.ggml.pre",
            MetaValue::String(PRE_TOKENIZER.into()),
        )
        .meta("tokenizer.ggml.tokens", strings(&vocab.tokens))
        .meta(
            "tokenizer.ggml.token_type",
            MetaValue::Array(
                vocab
                    .token_types
                    .iter()
                    .map(|&t| MetaValue::I32(t))
                    .collect(),
            ),
        )
        .meta("tokenizer.ggml.merges", strings(&vocab.merges))
        .meta("tokenizer.ggml.bos_token_id", MetaValue::U32(BOS_ID))
        .meta("tokenizer.ggml.eos_token_id", MetaValue::U32(EOS_ID))
        .meta("tokenizer.ggml.unknown_token_id", MetaValue::U32(UNK_ID))
        .meta("tokenizer.ggml.padding_token_id", MetaValue::U32(PAD_ID))
        .meta("tokenizer.ggml.add_bos_token", MetaValue::Bool(false))
        .meta(
            "tokenizer.chat_template",
            MetaValue::String(CHAT_TEMPLATE.into()),
        );

    let mut g = WeightGen::new(spec.seed);
    let (d, ff, kvd, n_vocab) = (spec.d_model, spec.d_ff, spec.kv_dim(), spec.vocab_size);
    let dims = |rows: usize, cols: usize| [cols as u64, rows as u64];
    // Embedding rows with rms ≈ 0.3, below the layers' contributions to the residual (rms ≈ 1): with a tied output a
    // dominant embedding makes the model repeat its input token.
    let embd = g.matrix(n_vocab, d, 0.3);
    w.tensor(
        "token_embd.weight",
        &dims(n_vocab, d),
        TensorType::Q8_0,
        quantize_q8_0(&embd),
    );
    let inv_sqrt = |n: usize| 1.0 / (n as f32).sqrt();
    for l in 0..spec.n_layers {
        let p = format!("blk.{l}");
        let attn_norm = g.norm(d);
        w.tensor(
            &format!("{p}.attn_norm.weight"),
            &[d as u64],
            TensorType::F32,
            f32_bytes(&attn_norm),
        );
        // Query/key gain 2: attention is peaked enough to depend on the context, as in trained models.
        let mats = [
            ("attn_q", d, d, 2.0 * inv_sqrt(d)),
            ("attn_k", kvd, d, 2.0 * inv_sqrt(d)),
            ("attn_v", kvd, d, inv_sqrt(d)),
            ("attn_output", d, d, inv_sqrt(d)),
        ];
        write_q4_1_matrices(&mut g, &mut w, &p, &mats);
        let ffn_norm = g.norm(d);
        w.tensor(
            &format!("{p}.ffn_norm.weight"),
            &[d as u64],
            TensorType::F32,
            f32_bytes(&ffn_norm),
        );
        let mats = [
            ("ffn_gate", ff, d, inv_sqrt(d)),
            ("ffn_up", ff, d, inv_sqrt(d)),
            ("ffn_down", d, ff, 2.0 * inv_sqrt(ff)),
        ];
        write_q4_1_matrices(&mut g, &mut w, &p, &mats);
    }
    let output_norm = g.norm(d);
    w.tensor(
        "output_norm.weight",
        &[d as u64],
        TensorType::F32,
        f32_bytes(&output_norm),
    );
    Ok(w.to_bytes())
}

/// Writes the GGUF image of `spec` to `path`.
pub fn write_synthetic(spec: &SyntheticSpec, path: impl AsRef<Path>) -> Result<(), SyntheticError> {
    let path = path.as_ref();
    let bytes = synthetic_gguf(spec)?;
    std::fs::write(path, bytes).map_err(|source| SyntheticError::Io {
        path: path.display().to_string(),
        source,
    })
}

/// Seeded weight values.
struct WeightGen {
    rng: ChaCha8Rng,
}

impl WeightGen {
    fn new(seed: u64) -> Self {
        Self {
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    /// Uniform in [0, 1), exact (24 random bits).
    fn uniform(&mut self) -> f32 {
        (self.rng.next_u64() >> 40) as f32 * (1.0 / (1u32 << 24) as f32)
    }

    /// Zero mean, unit variance, bounded by ±3.46: the Irwin–Hall sum of four uniforms, rescaled.
    fn gauss(&mut self) -> f32 {
        let s = self.uniform() + self.uniform() + self.uniform() + self.uniform();
        (s - 2.0) * 3.0f32.sqrt()
    }

    /// Row-major `rows × cols` weights; each row's std is `std` times a gain in [0.75, 1.25).
    fn matrix(&mut self, rows: usize, cols: usize, std: f32) -> Vec<f32> {
        let mut out = Vec::with_capacity(rows * cols);
        for _ in 0..rows {
            let row_std = std * (0.75 + 0.5 * self.uniform());
            for _ in 0..cols {
                out.push(row_std * self.gauss());
            }
        }
        out
    }

    /// Norm weights around 1.0 (std 0.1).
    fn norm(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| 1.0 + 0.1 * self.gauss()).collect()
    }
}

/// Draws each `(name, rows, cols, std)` matrix of layer prefix `p` and writes it as Q4_1.
fn write_q4_1_matrices(
    g: &mut WeightGen,
    w: &mut GgufWriter,
    p: &str,
    mats: &[(&str, usize, usize, f32)],
) {
    for &(name, rows, cols, std) in mats {
        let m = g.matrix(rows, cols, std);
        w.tensor(
            &format!("{p}.{name}.weight"),
            &[cols as u64, rows as u64],
            TensorType::Q4_1,
            quantize_q4_1(&m),
        );
    }
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Converts to IEEE half precision, rounding to nearest even (overflow gives ±inf, NaN stays NaN).
pub fn f32_to_f16(x: f32) -> u16 {
    let bits = x.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let exp = ((bits >> 23) & 0xff) as i32;
    let mant = bits & 0x7f_ffff;
    if exp == 0xff {
        return sign | 0x7c00 | if mant != 0 { 0x200 } else { 0 };
    }
    let e = exp - 127 + 15;
    if e >= 0x1f {
        return sign | 0x7c00;
    }
    let round = |value: u32, shift: u32| -> u32 {
        let q = value >> shift;
        let rem = value & ((1 << shift) - 1);
        let half = 1 << (shift - 1);
        if rem > half || (rem == half && q & 1 == 1) {
            q + 1
        } else {
            q
        }
    };
    if e <= 0 {
        // f16 subnormal (or zero): value = m16 · 2^-24 with m16 = (mant | 2^23) · 2^(e - 14).
        if e < -10 {
            return sign;
        }
        return sign | round(mant | 0x80_0000, (14 - e) as u32) as u16;
    }
    // A carry out of the mantissa correctly bumps the exponent (up to inf).
    sign | round(((e as u32) << 23) | mant, 13) as u16
}

/// Quantizes to Q4_1 blocks as llama.cpp's `quantize_row_q4_1_ref`: `d = (max − min)/15`, `m = min`,
/// `q = min(15, trunc((w − min)/d + 0.5))`; byte `j` holds element `j` (low nibble) and `j + 16` (high nibble).
/// `values.len()` must be a multiple of 32; a trailing partial block is ignored.
pub fn quantize_q4_1(values: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(values.len() / QK * 20);
    for block in values.chunks_exact(QK) {
        let min = block.iter().copied().fold(f32::INFINITY, f32::min);
        let max = block.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let d = (max - min) / 15.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        out.extend_from_slice(&f32_to_f16(d).to_le_bytes());
        out.extend_from_slice(&f32_to_f16(min).to_le_bytes());
        let q = |x: f32| (((x - min) * id + 0.5) as i32).clamp(0, 15) as u8;
        for j in 0..QK / 2 {
            out.push(q(block[j]) | (q(block[j + QK / 2]) << 4));
        }
    }
    out
}

/// Quantizes to Q8_0 blocks as llama.cpp's `quantize_row_q8_0_ref`: `d = max|w|/127`, `q = round(w/d)`.
/// `values.len()` must be a multiple of 32; a trailing partial block is ignored.
pub fn quantize_q8_0(values: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(values.len() / QK * 34);
    for block in values.chunks_exact(QK) {
        let amax = block.iter().fold(0f32, |m, x| m.max(x.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        out.extend_from_slice(&f32_to_f16(d).to_le_bytes());
        out.extend(
            block
                .iter()
                .map(|&x| ((x * id).round() as i32).clamp(-128, 127) as i8 as u8),
        );
    }
    out
}

/// GPT-2's `bytes_to_unicode`: the printable character standing for each byte in byte-level BPE.
pub fn byte_to_unicode(b: u8) -> char {
    let printable = |c: u8| matches!(c, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    if printable(b) {
        return char::from(b);
    }
    let rank = (0..b).filter(|&c| !printable(c)).count() as u32;
    // 256 + rank < 0x200 is always a valid scalar value.
    char::from_u32(256 + rank).unwrap_or(char::REPLACEMENT_CHARACTER)
}

/// The tokenizer of a synthetic model with `vocab_size` tokens (at least [`MIN_VOCAB`]; smaller sizes give the
/// [`MIN_VOCAB`] base vocabulary).
pub fn synthetic_vocab(vocab_size: usize) -> SyntheticVocab {
    let mut tokens: Vec<String> = SPECIAL_TOKENS.iter().map(|s| s.to_string()).collect();
    let mut token_types = vec![TYPE_CONTROL; SPECIAL_TOKENS.len()];
    let byte_ids: Vec<u32> = (0..=255u8)
        .map(|b| {
            tokens.push(byte_to_unicode(b).to_string());
            token_types.push(TYPE_NORMAL);
            (tokens.len() - 1) as u32
        })
        .collect();
    let mut ids: HashMap<String, u32> = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), i as u32))
        .collect();

    // Pre-tokenize the corpus roughly as the smollm pre-tokenizer does (single digits, an optional leading space
    // on letter and punctuation runs), then count each distinct word as a sequence of byte-token ids.
    let mut word_counts: BTreeMap<Vec<u32>, u64> = BTreeMap::new();
    for sentence in CORPUS {
        for word in pre_tokenize(sentence) {
            let symbols = word.bytes().map(|b| byte_ids[b as usize]).collect();
            *word_counts.entry(symbols).or_insert(0) += 1;
        }
    }
    let mut words: Vec<(Vec<u32>, u64)> = word_counts.into_iter().collect();

    let mut merges = Vec::new();
    while tokens.len() < vocab_size {
        // Most frequent adjacent pair; ties go to the smallest (left, right) id pair.
        let mut pairs: BTreeMap<(u32, u32), u64> = BTreeMap::new();
        for (symbols, count) in &words {
            for pair in symbols.windows(2) {
                *pairs.entry((pair[0], pair[1])).or_insert(0) += count;
            }
        }
        let Some((&(a, b), _)) =
            pairs
                .iter()
                .fold(None, |best: Option<(&(u32, u32), &u64)>, cur| match best {
                    Some(best) if best.1 >= cur.1 => Some(best),
                    _ => Some(cur),
                })
        else {
            break;
        };
        let (left, right) = (&tokens[a as usize], &tokens[b as usize]);
        merges.push(format!("{left} {right}"));
        let merged = format!("{left}{right}");
        let id = match ids.get(&merged) {
            Some(&id) => id,
            None => {
                let id = tokens.len() as u32;
                ids.insert(merged.clone(), id);
                tokens.push(merged);
                token_types.push(TYPE_NORMAL);
                id
            }
        };
        for (symbols, _) in &mut words {
            let mut out = Vec::with_capacity(symbols.len());
            let mut i = 0;
            while i < symbols.len() {
                if i + 1 < symbols.len() && symbols[i] == a && symbols[i + 1] == b {
                    out.push(id);
                    i += 2;
                } else {
                    out.push(symbols[i]);
                    i += 1;
                }
            }
            *symbols = out;
        }
        words.retain(|(symbols, _)| symbols.len() > 1);
    }
    while tokens.len() < vocab_size {
        tokens.push(format!("<|unused_{}|>", tokens.len()));
        token_types.push(TYPE_UNUSED);
    }
    SyntheticVocab {
        tokens,
        token_types,
        merges,
    }
}

/// Splits text into runs of letters, single digits and runs of other non-space characters, each keeping one
/// leading space (GPT-2 style); other whitespace is dropped (the merges only need word statistics).
fn pre_tokenize(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let class = |c: char| {
        if c.is_alphabetic() {
            0
        } else if c.is_ascii_digit() {
            1
        } else {
            2
        }
    };
    let mut space = false;
    let mut prev_class = None;
    for c in text.chars() {
        if c.is_whitespace() {
            if !cur.is_empty() {
                words.push(std::mem::take(&mut cur));
            }
            space = c == ' ';
            prev_class = None;
            continue;
        }
        let k = class(c);
        if prev_class != Some(k) || k == 1 {
            if !cur.is_empty() {
                words.push(std::mem::take(&mut cur));
            }
            if space {
                cur.push(' ');
            }
        }
        space = false;
        prev_class = Some(k);
        cur.push(c);
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    words
}
