//! The synthetic model generator (determinism, a loadable llama GGUF, sane generation, float/integer agreement,
//! tokenizer metadata) and, with its files, the GGUF reader's handling of damaged input.

use protocol::SamplingParams;
use std::sync::OnceLock;
use std::time::Instant;
use verinfer_vir::IntModel;
use verinfer_vir::LlamaConfig;
use verinfer_vir::float_ref::FloatModel;
use verinfer_vir::gguf::{GgufError, GgufFile, GgufWriter, MetaValue, TensorType, f16_to_f32};
use verinfer_vir::interp::generate_committed;
use verinfer_vir::synthetic::{
    BOS_ID, CHAT_TEMPLATE, EOS_ID, MIN_VOCAB, SyntheticError, SyntheticSpec, f32_to_f16,
    quantize_q4_1, quantize_q8_0, synthetic_gguf, synthetic_vocab, write_synthetic,
};
use verinfer_vir::tokenizer::{ChatMessage, Tokenizer, TokenizerSpec};
use verinfer_vir::weights::QuantMatrix;

/// The tiny model's file, generated once.
fn tiny_bytes() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| synthetic_gguf(&SyntheticSpec::tiny()).expect("tiny spec is valid"))
}

fn tiny_file() -> GgufFile {
    GgufFile::parse(tiny_bytes().to_vec()).expect("synthetic file parses")
}

fn tiny_models() -> &'static (IntModel, FloatModel) {
    static MODELS: OnceLock<(IntModel, FloatModel)> = OnceLock::new();
    MODELS.get_or_init(|| {
        let file = tiny_file();
        (
            IntModel::load(&file).expect("integer model loads"),
            FloatModel::load(&file).expect("float model loads"),
        )
    })
}

fn greedy(max_tokens: u32) -> SamplingParams {
    SamplingParams {
        max_tokens,
        temperature_milli: 0,
        top_p_milli: 1000,
        seed: 0,
        choice_index: 0,
    }
}

/// GGUF metadata → [`TokenizerSpec`] (test stand-in for the loader's glue).
fn tokenizer_spec(file: &GgufFile) -> TokenizerSpec {
    let strings = |key: &str| -> Vec<String> {
        file.meta(key)
            .expect("key present")
            .as_array()
            .expect("array")
            .iter()
            .map(|s| s.as_str().expect("string element").to_string())
            .collect()
    };
    let id = |key: &str| Some(file.meta_u64(key).expect("id present") as u32);
    let token_types = file
        .meta("tokenizer.ggml.token_type")
        .expect("token types present")
        .as_array()
        .expect("array")
        .iter()
        .map(|t| match t {
            MetaValue::I32(t) => *t,
            other => panic!("token_type element {other:?} is not i32"),
        })
        .collect();
    TokenizerSpec {
        model: file
            .meta_str("tokenizer.ggml.model")
            .expect("model")
            .to_string(),
        pre: Some(
            file.meta_str("tokenizer.ggml.pre")
                .expect("pre")
                .to_string(),
        ),
        tokens: strings("tokenizer.ggml.tokens"),
        merges: strings("tokenizer.ggml.merges"),
        token_types,
        bos_id: id("tokenizer.ggml.bos_token_id"),
        eos_id: id("tokenizer.ggml.eos_token_id"),
        unk_id: id("tokenizer.ggml.unknown_token_id"),
        pad_id: id("tokenizer.ggml.padding_token_id"),
        add_bos: file
            .meta("tokenizer.ggml.add_bos_token")
            .expect("add_bos present")
            .as_bool()
            .expect("bool"),
        chat_template: Some(
            file.meta_str("tokenizer.chat_template")
                .expect("template")
                .to_string(),
        ),
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The generator

#[test]
fn same_seed_gives_identical_bytes_and_other_seeds_differ() {
    let again = synthetic_gguf(&SyntheticSpec::tiny()).expect("valid");
    assert!(again == tiny_bytes(), "same seed must give the same file");
    let other = synthetic_gguf(&SyntheticSpec::tiny().with_seed(1)).expect("valid");
    assert_eq!(
        other.len(),
        tiny_bytes().len(),
        "only the weights and name change"
    );
    assert!(other != tiny_bytes(), "another seed must give another file");
    let a = GgufFile::parse(other).expect("parses");
    let b = tiny_file();
    for name in ["token_embd.weight", "blk.1.ffn_down.weight"] {
        let (ta, tb) = (
            a.tensor(name).expect("present"),
            b.tensor(name).expect("present"),
        );
        assert_ne!(
            a.tensor_data(ta),
            b.tensor_data(tb),
            "{name} must depend on the seed"
        );
    }
}

#[test]
fn file_is_a_llama_gguf_matching_the_spec() {
    let spec = SyntheticSpec::tiny();
    let file = tiny_file();
    assert_eq!(file.version, 3);
    assert_eq!(
        file.meta_str("general.architecture").expect("arch"),
        "llama"
    );
    assert!(
        file.meta_str("general.name")
            .expect("name")
            .contains("synthetic")
    );
    let config = LlamaConfig::from_gguf(&file).expect("config");
    assert_eq!(config, spec.config());
    assert_eq!(
        (
            config.n_layers,
            config.d_model,
            config.d_ff,
            config.head_dim,
            config.vocab_size
        ),
        (2, 64, 128, 16, 512)
    );
    assert!(config.tied_output);
    for (key, value) in [
        ("llama.vocab_size", 512),
        ("llama.rope.dimension_count", 16),
        ("llama.context_length", 256),
        ("llama.attention.head_count", 4),
        ("llama.attention.head_count_kv", 2),
    ] {
        assert_eq!(file.meta_u64(key).expect(key), value, "{key}");
    }
    assert_eq!(
        file.meta_f64("llama.rope.freq_base").expect("rope base"),
        f64::from(spec.rope_base)
    );

    let embd = file.tensor("token_embd.weight").expect("embedding");
    assert_eq!(
        (embd.ty, embd.dims.as_slice()),
        (TensorType::Q8_0, &[64u64, 512][..])
    );
    assert!(file.tensor("output.weight").is_err(), "output is tied");
    assert_eq!(
        file.tensor("output_norm.weight").expect("output norm").ty,
        TensorType::F32
    );
    for l in 0..2 {
        for (name, dims) in [
            ("attn_q", [64, 64]),
            ("attn_k", [64, 32]),
            ("attn_v", [64, 32]),
            ("attn_output", [64, 64]),
            ("ffn_gate", [64, 128]),
            ("ffn_up", [64, 128]),
            ("ffn_down", [128, 64]),
        ] {
            let t = file
                .tensor(&format!("blk.{l}.{name}.weight"))
                .expect("layer matrix");
            assert_eq!(
                (t.ty, t.dims.as_slice()),
                (TensorType::Q4_1, &dims[..]),
                "{}",
                t.name
            );
        }
        for name in ["attn_norm", "ffn_norm"] {
            let t = file
                .tensor(&format!("blk.{l}.{name}.weight"))
                .expect("norm");
            assert_eq!((t.ty, t.dims.as_slice()), (TensorType::F32, &[64u64][..]));
        }
    }
    assert_eq!(file.tensors.len(), 1 + 2 * 9 + 1);
}

#[test]
fn quantizers_encode_blocks_like_gguf() {
    // f16 conversion: every finite half round-trips, and rounding is to nearest even.
    for bits in 0..=u16::MAX {
        let x = f16_to_f32(bits);
        if x.is_finite() {
            assert_eq!(f32_to_f16(x), bits, "f16 {bits:#06x}");
        }
    }
    assert_eq!(f32_to_f16(1.0 + 1.0 / 2048.0), 0x3c00, "tie rounds to even");
    assert_eq!(f32_to_f16(1.0 + 3.0 / 2048.0), 0x3c02, "tie rounds to even");
    assert_eq!(f32_to_f16(1e6), 0x7c00, "overflow is inf");
    assert_eq!(f32_to_f16(1e-9), 0, "underflow is zero");

    // Q4_1 / Q8_0 bytes, read back by the GGUF loader, reproduce the values within half a step.
    let values: Vec<f32> = (0..64 * 4)
        .map(|i| ((i * 37 % 101) as f32 - 50.0) / 200.0 + if i % 64 == 3 { 0.7 } else { 0.0 })
        .collect();
    let mut w = GgufWriter::new();
    w.tensor("q4", &[64, 4], TensorType::Q4_1, quantize_q4_1(&values))
        .tensor("q8", &[64, 4], TensorType::Q8_0, quantize_q8_0(&values));
    let file = GgufFile::parse(w.to_bytes()).expect("parses");
    for (name, steps) in [("q4", 15.0f32), ("q8", 254.0)] {
        let m = QuantMatrix::from_gguf(&file, name).expect("matrix");
        let back = m.dequantize_f32();
        for (b, (orig, deq)) in values.chunks(32).zip(back.chunks(32)).enumerate() {
            let lo = orig.iter().copied().fold(f32::INFINITY, f32::min);
            let hi = orig.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let range = if name == "q4" {
                hi - lo
            } else {
                2.0 * lo.abs().max(hi.abs())
            };
            let tol = 0.5 * range / steps * 1.01 + 2e-3 * lo.abs().max(hi.abs());
            for (x, y) in orig.iter().zip(deq) {
                assert!(
                    (x - y).abs() <= tol,
                    "{name} block {b}: {x} -> {y} (tol {tol})"
                );
            }
        }
    }
    // Nibble layout: byte j = element j (low) | element j + 16 (high).
    let ramp: Vec<f32> = (0..32).map(|i| i as f32 / 31.0 * 15.0).collect();
    let block = quantize_q4_1(&ramp);
    assert_eq!(block.len(), 20);
    assert_eq!(
        f16_to_f32(u16::from_le_bytes([block[2], block[3]])),
        0.0,
        "m = min"
    );
    assert_eq!(block[4] & 0x0f, 0);
    assert_eq!(block[4] >> 4, 8, "element 16 = 16·15/31 ≈ 7.74 → 8");
    assert_eq!(block[19] >> 4, 15);
}

/// An edit that makes a spec invalid, and the text its error must contain.
type BadSpec = (fn(&mut SyntheticSpec), &'static str);

#[test]
fn invalid_specs_are_rejected_with_the_field() {
    let cases: [BadSpec; 4] = [
        (|s| s.d_model = 48, "`d_model` = 48"),
        (|s| s.n_heads = 3, "`n_heads` = 3"),
        (|s| s.vocab_size = 100, "`vocab_size` = 100"),
        (|s| s.d_ff = 0, "`d_ff` = 0"),
    ];
    for (edit, needle) in cases {
        let mut spec = SyntheticSpec::tiny();
        edit(&mut spec);
        let err = synthetic_gguf(&spec).expect_err("invalid spec");
        assert!(matches!(err, SyntheticError::InvalidSpec { .. }));
        assert!(err.to_string().contains(needle), "{err}");
    }
    // The loader, not the generator, judges values the encoding does not depend on.
    let mut spec = SyntheticSpec::tiny();
    spec.rms_eps = 0.0;
    let file = GgufFile::parse(synthetic_gguf(&spec).expect("encodable")).expect("parses");
    let err = LlamaConfig::from_gguf(&file).expect_err("eps 0 is invalid");
    assert!(err.to_string().contains("layer_norm_rms_epsilon"), "{err}");

    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("tiny.gguf");
    write_synthetic(&SyntheticSpec::tiny(), &path).expect("writes");
    assert!(std::fs::read(&path).expect("reads") == tiny_bytes());
    let err = write_synthetic(
        &SyntheticSpec::tiny(),
        dir.path().join("no/such/dir/x.gguf"),
    )
    .expect_err("missing directory");
    assert!(
        err.to_string().contains("cannot write synthetic model"),
        "{err}"
    );
}

#[test]
fn larger_vocabularies_stay_valid() {
    let vocab = synthetic_vocab(MIN_VOCAB);
    assert_eq!(vocab.tokens.len(), MIN_VOCAB);
    assert!(vocab.merges.is_empty());
    let vocab = synthetic_vocab(2048);
    assert_eq!(vocab.tokens.len(), 2048);
    assert_eq!(vocab.token_types.len(), 2048);
    assert!(vocab.merges.len() >= 500, "{} merges", vocab.merges.len());
    let spec = TokenizerSpec {
        model: "gpt2".into(),
        pre: Some("smollm".into()),
        tokens: vocab.tokens,
        merges: vocab.merges,
        token_types: vocab.token_types,
        bos_id: Some(BOS_ID),
        eos_id: Some(EOS_ID),
        ..TokenizerSpec::default()
    };
    let tok = Tokenizer::from_spec(&spec).expect("tokenizer builds");
    let text = "The children played in the garden. 42 € ünïcode\n\ttabs";
    let ids = tok.encode(text).expect("encodes");
    assert_eq!(tok.decode(&ids).expect("decodes"), text);
}

// ---------------------------------------------------------------------------------------------------------------
// The model it describes

#[test]
fn tiny_model_loads_and_generates_varied_tokens() {
    let start = Instant::now();
    let bytes = synthetic_gguf(&SyntheticSpec::tiny()).expect("valid");
    let generated = start.elapsed();
    let start = Instant::now();
    let model = IntModel::load(&GgufFile::parse(bytes).expect("parses")).expect("loads");
    let loaded = start.elapsed();
    let prompt = [BOS_ID, 300, 301, 302, 303];
    let start = Instant::now();
    let (generation, trace) = generate_committed(&model, &prompt, &greedy(16)).expect("runs");
    let took = start.elapsed();
    eprintln!(
        "tiny model: generate file {generated:?}, parse+load {loaded:?}, 16 greedy steps {took:?}, \
         tokens {:?}, trace ops {}",
        generation.tokens, trace.op_count
    );
    let (float_tokens, _) = tiny_models().1.generate_greedy(&prompt, 16, &[]);
    let same = float_tokens
        .iter()
        .zip(&generation.tokens)
        .take_while(|(a, b)| a == b)
        .count();
    eprintln!("float model greedy: {float_tokens:?} (first {same} of 16 equal)");
    assert_eq!(generation.tokens.len(), 16);
    let mut distinct = generation.tokens.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert!(
        distinct.len() >= 2,
        "degenerate generation {:?}",
        generation.tokens
    );
    // Deterministic: the same request gives the same tokens and trace.
    let (again, trace2) = generate_committed(&model, &prompt, &greedy(16)).expect("runs");
    assert_eq!((again.tokens, trace2.root), (generation.tokens, trace.root));
}

#[test]
fn float_and_integer_models_agree_on_the_greedy_first_token() {
    let (model, float) = tiny_models();
    let prompts: [&[u32]; 4] = [
        &[BOS_ID, 300, 301, 302],
        &[BOS_ID, 72, 105, 33],
        &[BOS_ID, 400, 410, 420, 430, 440],
        &[1, 350, 2, 1, 260],
    ];
    let mut agree = 0;
    for prompt in prompts {
        let (int_gen, _) = generate_committed(model, prompt, &greedy(1)).expect("runs");
        let (float_gen, session) = float.generate_greedy(prompt, 1, &[]);
        eprintln!(
            "prompt {prompt:?}: integer {:?}, float {:?}, float stats {:?}",
            int_gen.tokens, float_gen, session.stats
        );
        agree += usize::from(int_gen.tokens == float_gen);
        assert!(
            session.stats.residual < 1e3 && session.stats.logits < 1e3,
            "activations in range"
        );
    }
    eprintln!(
        "float/integer greedy first-token agreement: {agree}/{}",
        prompts.len()
    );
    assert!(
        agree * 3 >= prompts.len() * 2,
        "only {agree}/{} agree",
        prompts.len()
    );
}

#[test]
fn tokenizer_metadata_builds_a_working_tokenizer() {
    let file = tiny_file();
    let spec = tokenizer_spec(&file);
    assert_eq!(spec.tokens.len(), 512);
    assert_eq!(spec.chat_template.as_deref(), Some(CHAT_TEMPLATE));
    let tok = Tokenizer::from_spec(&spec).expect("tokenizer builds");
    assert_eq!(tok.vocab_size(), 512);
    assert_eq!((tok.bos_id(), tok.eos_id()), (Some(BOS_ID), Some(EOS_ID)));
    assert!(tok.is_stop(EOS_ID));
    let ids = tok.encode("hello world").expect("encodes");
    assert!(ids.len() < "hello world".len(), "merges apply: {ids:?}");
    assert_eq!(tok.decode(&ids).expect("decodes"), "hello world");
    eprintln!("\"hello world\" -> {ids:?}");

    let chat = tok
        .encode_chat(&[ChatMessage::new("user", "Hi there!")], true)
        .expect("chat encodes");
    assert_eq!(chat[0], BOS_ID);
    assert_eq!(
        chat.iter().filter(|&&t| t == EOS_ID).count(),
        2,
        "system and user turns end"
    );
    let text = tok.decode_with_specials(&chat).expect("decodes");
    assert!(text.ends_with("<|im_start|>assistant\n"), "{text:?}");
}

// ---------------------------------------------------------------------------------------------------------------
// Damaged files

/// Offset just past the length-prefixed string `s` in the header.
fn after_string(bytes: &[u8], s: &str) -> usize {
    let mut needle = (s.len() as u64).to_le_bytes().to_vec();
    needle.extend_from_slice(s.as_bytes());
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap_or_else(|| panic!("{s:?} not in the header"));
    at + needle.len()
}

/// Offset of the type id of tensor `name` (after its name, rank and dims).
fn tensor_type_offset(bytes: &[u8], name: &str) -> usize {
    let at = after_string(bytes, name);
    let rank = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
    at + 4 + 8 * rank
}

fn data_offset(file: &GgufFile) -> usize {
    let last = file
        .tensors
        .iter()
        .max_by_key(|t| t.offset)
        .expect("tensors");
    tiny_bytes().len() - (last.offset + last.n_bytes()) as usize
}

fn parse_err(bytes: Vec<u8>) -> GgufError {
    GgufFile::parse(bytes).expect_err("damaged file must not parse")
}

#[test]
fn truncated_files_are_errors() {
    let bytes = tiny_bytes();
    let data = data_offset(&tiny_file());
    let n = bytes.len();
    let cuts = (0..=data).chain([data + 1, data + 33, n / 2, n - 20, n - 1]);
    for cut in cuts {
        match parse_err(bytes[..cut].to_vec()) {
            GgufError::Truncated { .. } | GgufError::Corrupt { .. } => {}
            other => panic!("cut at {cut}: unexpected error {other}"),
        }
    }
    let err = parse_err(bytes[..data + 1].to_vec());
    let text = err.to_string();
    assert!(
        text.contains("truncated") && text.contains("data of tensor"),
        "{text}"
    );
    let err = parse_err(bytes[..10].to_vec());
    assert!(
        err.to_string().contains("while reading tensor count"),
        "{err}"
    );
}

#[test]
fn bad_magic_and_versions_are_named() {
    let mut bytes = tiny_bytes().to_vec();
    bytes[0] = b'X';
    let err = parse_err(bytes);
    assert!(matches!(err, GgufError::BadMagic { .. }), "{err:?}");
    assert!(err.to_string().contains("not a GGUF file"), "{err}");

    for version in [0u32, 1, 4, 1000] {
        let mut bytes = tiny_bytes().to_vec();
        bytes[4..8].copy_from_slice(&version.to_le_bytes());
        let err = parse_err(bytes);
        assert!(
            matches!(err, GgufError::UnsupportedVersion(v) if v == version),
            "{err:?}"
        );
        assert!(
            err.to_string()
                .contains(&format!("unsupported GGUF version {version}")),
            "{err}"
        );
    }
    let mut v2 = tiny_bytes().to_vec();
    v2[4..8].copy_from_slice(&2u32.to_le_bytes());
    assert_eq!(GgufFile::parse(v2).expect("v2 reads like v3").version, 2);
}

#[test]
fn unsupported_tensor_type_names_tensor_and_type() {
    let mut bytes = tiny_bytes().to_vec();
    let at = tensor_type_offset(&bytes, "blk.1.ffn_up.weight");
    assert_eq!(
        u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4")),
        3,
        "Q4_1"
    );
    bytes[at..at + 4].copy_from_slice(&12u32.to_le_bytes());
    let err = parse_err(bytes);
    match &err {
        GgufError::UnsupportedTensorType { name, ty } => {
            assert_eq!(name, "blk.1.ffn_up.weight");
            assert!(ty.contains("Q4_K"), "{ty}");
        }
        other => panic!("unexpected {other:?}"),
    }
    let text = err.to_string();
    assert!(
        text.contains("blk.1.ffn_up.weight") && text.contains("Q4_K"),
        "{text}"
    );
}

#[test]
fn tensor_offset_past_the_end_is_truncated() {
    for offset in [1u64 << 40, u64::MAX - 31] {
        let mut bytes = tiny_bytes().to_vec();
        let at = tensor_type_offset(&bytes, "blk.0.attn_k.weight") + 4;
        bytes[at..at + 8].copy_from_slice(&offset.to_le_bytes());
        let err = parse_err(bytes);
        assert!(matches!(err, GgufError::Truncated { .. }), "{err:?}");
        assert!(
            err.to_string()
                .contains("data of tensor `blk.0.attn_k.weight`"),
            "{err}"
        );
    }
    // A misaligned offset is corrupt.
    let mut bytes = tiny_bytes().to_vec();
    let at = tensor_type_offset(&bytes, "blk.0.attn_k.weight") + 4;
    bytes[at..at + 8].copy_from_slice(&7u64.to_le_bytes());
    let err = parse_err(bytes);
    assert!(err.to_string().contains("not aligned"), "{err}");
}

#[test]
fn huge_lengths_are_corrupt_or_truncated() {
    for count in [u64::MAX, 1 << 40, 1 << 23] {
        let mut bytes = tiny_bytes().to_vec();
        // key, then value type (9 = array), item type (8 = string), count.
        let at = after_string(&bytes, "tokenizer.ggml.tokens") + 8;
        bytes[at..at + 8].copy_from_slice(&count.to_le_bytes());
        let err = parse_err(bytes);
        assert!(matches!(err, GgufError::Corrupt { .. }), "{err:?}");
        let text = err.to_string();
        assert!(
            text.contains("tokenizer.ggml.tokens") && text.contains("array length"),
            "{text}"
        );
    }
    // A string length past the end is truncation, and absurd table sizes are corrupt.
    let mut bytes = tiny_bytes().to_vec();
    let at = after_string(&bytes, "general.name") + 4;
    bytes[at..at + 8].copy_from_slice(&(1u64 << 62).to_le_bytes());
    assert!(matches!(parse_err(bytes), GgufError::Truncated { .. }));
    for field in [8usize, 16] {
        let mut bytes = tiny_bytes().to_vec();
        bytes[field..field + 8].copy_from_slice(&u64::MAX.to_le_bytes());
        let err = parse_err(bytes);
        assert!(err.to_string().contains("implausibly large"), "{err}");
    }
}

#[test]
fn random_header_damage_never_panics() {
    use rand_chacha::ChaCha8Rng;
    use rand_chacha::rand_core::{Rng, SeedableRng};
    let bytes = tiny_bytes();
    let header = data_offset(&tiny_file());
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let (mut parsed, mut loaded) = (0, 0);
    for _ in 0..300 {
        let mut damaged = bytes.to_vec();
        for _ in 0..1 + rng.next_u64() % 3 {
            let at = (rng.next_u64() % header as u64) as usize;
            damaged[at] ^= 1 << (rng.next_u64() % 8);
        }
        if let Ok(file) = GgufFile::parse(damaged) {
            parsed += 1;
            if IntModel::load(&file).is_ok() {
                loaded += 1;
            }
        }
    }
    eprintln!("random damage: {parsed}/300 still parse, {loaded} still load");
}
