//! `dlm-tui train`: trains the embedded default model, a small LLaDA-format DLM, with candle on
//! the CPU. Checkpoints (weights, optimizer moments, progress) live outside the work tree and
//! `--resume` continues from them; the exported folder is a regular LLaDA model folder.

pub mod adamw;
pub mod bpe;
pub mod corpus;
pub mod eval;
pub mod objective;

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::model::llada::{Kernels, Llada, LladaConfig};
use crate::model::DeviceKind;
use crate::text::TextCodec;
use adamw::AdamW;
use bpe::{train_bpe, EOS_TOKEN, MASK_TOKEN};
use corpus::{read_stories, split, TokenStream};
use objective::{heldout_nll, loss, mask_batch, Weighting};

#[derive(Debug, Clone, Args, Serialize, Deserialize)]
pub struct TrainArgs {
    /// The training corpus (plain text; stories end at single newlines).
    #[arg(long)]
    pub corpus: PathBuf,
    /// Where the trained model folder is written (config.json, tokenizer.json, model.safetensors).
    #[arg(long)]
    pub out: PathBuf,
    /// Checkpoints and logs (default: ~/.cache/dlm-tui/train/RUN).
    #[arg(long)]
    pub checkpoint_dir: Option<PathBuf>,
    /// Name of this run (the checkpoint folder's name).
    #[arg(long, default_value = "default")]
    pub run: String,
    /// Continue from the run's latest checkpoint.
    #[arg(long)]
    pub resume: bool,
    /// Start a new run from a trained model folder (its weights and tokenizer) instead of from
    /// random weights; the architecture flags must match its config.
    #[arg(long, value_name = "MODEL_DIR")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<PathBuf>,
    #[arg(long, default_value_t = 2048)]
    pub vocab_size: usize,
    #[arg(long, default_value_t = 256)]
    pub d_model: usize,
    #[arg(long, default_value_t = 6)]
    pub n_layers: usize,
    #[arg(long, default_value_t = 4)]
    pub n_heads: usize,
    #[arg(long, default_value_t = 704)]
    pub mlp_hidden: usize,
    /// Training window length in tokens (also the model's context).
    #[arg(long, default_value_t = 256)]
    pub seq_len: usize,
    #[arg(long, default_value_t = 16)]
    pub batch_size: usize,
    /// Total optimizer steps (the length of the cosine schedule).
    #[arg(long, default_value_t = 6000)]
    pub steps: usize,
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// Final learning rate as a fraction of the peak.
    #[arg(long, default_value_t = 0.1)]
    pub min_lr_ratio: f64,
    #[arg(long, default_value_t = 200)]
    pub warmup: usize,
    #[arg(long, default_value_t = 0.1)]
    pub weight_decay: f64,
    #[arg(long, default_value_t = 1.0)]
    pub clip: f64,
    /// Loss weighting of masked tokens (the held-out ELBO is always reported with 1/t).
    #[arg(long, value_enum, default_value_t = Weighting::Elbo)]
    pub weighting: Weighting,
    /// Smallest masking level t.
    #[arg(long, default_value_t = 1e-3)]
    pub eps: f64,
    /// Fraction of stories held out for validation (the last ones).
    #[arg(long, default_value_t = 0.05)]
    pub val_fraction: f64,
    #[arg(long, default_value_t = 50)]
    pub checkpoint_every: usize,
    #[arg(long, default_value_t = 250)]
    pub eval_every: usize,
    /// Held-out windows used per evaluation.
    #[arg(long, default_value_t = 48)]
    pub eval_windows: usize,
    /// Stop (after a checkpoint) once this many minutes have passed in this sitting.
    #[arg(long)]
    pub max_minutes: Option<f64>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Where to train: the CPU, or a GPU in a build with `--features cuda` (same steps, same
    /// checkpoints; a run may move between devices with `--resume`).
    #[arg(long, value_enum, default_value_t = DeviceKind::Cpu)]
    #[serde(default)]
    pub device: DeviceKind,
    /// Only measure: train tokenizers of these sizes and print held-out characters per token.
    #[arg(long, value_delimiter = ',', value_name = "SIZES")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measure_vocab: Option<Vec<usize>>,
}

/// One line of the training log.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogEntry {
    pub step: usize,
    pub tokens: u64,
    pub loss: f64,
    pub lr: f64,
    pub grad_norm: f64,
    pub wall_s: f64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub val_nll_per_token: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub val_nll_per_char: Option<f64>,
}

/// Everything needed to resume, written next to the checkpoint weights.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Progress {
    pub args: TrainArgs,
    pub step: usize,
    pub tokens: u64,
    pub wall_s: f64,
    pub best_val: Option<f64>,
    pub log: Vec<LogEntry>,
    /// The command that started the run.
    pub command: Vec<String>,
    /// Every sitting after the first: its command line and the step it resumed from.
    #[serde(default)]
    pub resumed: Vec<Sitting>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sitting {
    pub from_step: usize,
    pub command: Vec<String>,
}

pub fn default_checkpoint_root() -> PathBuf {
    dirs::cache_dir()
        .unwrap_or_else(std::env::temp_dir)
        .join("dlm-tui")
        .join("train")
}

/// LLaDA-format config of the default architecture.
pub fn model_config(args: &TrainArgs, codec: &TextCodec) -> Result<LladaConfig> {
    let tok = codec.tokenizer();
    let id = |t: &str| {
        tok.token_to_id(t)
            .with_context(|| format!("the tokenizer lacks {t}"))
    };
    let vocab = codec.vocab_size();
    let cfg = LladaConfig {
        d_model: args.d_model,
        n_heads: args.n_heads,
        n_kv_heads: Some(args.n_heads),
        n_layers: args.n_layers,
        mlp_hidden_size: Some(args.mlp_hidden),
        activation_type: "silu".into(),
        block_type: "llama".into(),
        rope: true,
        rope_theta: 10_000.0,
        layer_norm_type: "rms".into(),
        rms_norm_eps: 1e-5,
        max_sequence_length: args.seq_len,
        include_bias: false,
        bias_for_layer_norm: Some(false),
        vocab_size: vocab,
        embedding_size: Some(vocab),
        weight_tying: true,
        eos_token_id: Some(id(EOS_TOKEN)?),
        mask_token_id: Some(id(MASK_TOKEN)?),
        ..LladaConfig::default()
    };
    cfg.validate()?;
    Ok(cfg)
}

/// The learning rate at `step`: linear warm-up, then cosine decay to `min_lr_ratio * lr`.
pub fn learning_rate(args: &TrainArgs, step: usize) -> f64 {
    if step < args.warmup {
        return args.lr * (step + 1) as f64 / args.warmup as f64;
    }
    let progress =
        ((step - args.warmup) as f64 / (args.steps - args.warmup).max(1) as f64).min(1.0);
    let floor = args.lr * args.min_lr_ratio;
    floor + (args.lr - floor) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
}

/// Writes `config.json` in LLaDA's published format (plus the keys transformers expects).
pub fn write_config(cfg: &LladaConfig, path: &Path) -> Result<()> {
    let json = serde_json::json!({
        "architectures": ["LLaDAModelLM"],
        "model_type": "llada",
        "d_model": cfg.d_model,
        "n_heads": cfg.n_heads,
        "n_kv_heads": cfg.n_kv_heads,
        "n_layers": cfg.n_layers,
        "mlp_ratio": cfg.mlp_ratio,
        "mlp_hidden_size": cfg.mlp_hidden_size,
        "activation_type": cfg.activation_type,
        "block_type": cfg.block_type,
        "block_group_size": 1,
        "alibi": false,
        "rope": true,
        "rope_full_precision": true,
        "rope_theta": cfg.rope_theta,
        "flash_attention": false,
        "attention_dropout": 0.0,
        "residual_dropout": 0.0,
        "embedding_dropout": 0.0,
        "attention_layer_norm": false,
        "input_emb_norm": false,
        "layer_norm_type": cfg.layer_norm_type,
        "layer_norm_with_affine": true,
        "rms_norm_eps": cfg.rms_norm_eps,
        "max_sequence_length": cfg.max_sequence_length,
        "include_bias": false,
        "include_qkv_bias": false,
        "bias_for_layer_norm": false,
        "scale_logits": false,
        "vocab_size": cfg.vocab_size,
        "embedding_size": cfg.embedding_size,
        "weight_tying": cfg.weight_tying,
        "eos_token_id": cfg.eos_token_id,
        "pad_token_id": cfg.eos_token_id,
        "mask_token_id": cfg.mask_token_id,
        "init_device": "cpu",
        "init_std": 0.02,
        "use_cache": false,
    });
    std::fs::write(path, serde_json::to_string_pretty(&json)?)
        .with_context(|| format!("writing {}", path.display()))
}

fn save_weights(varmap: &VarMap, path: &Path, dtype: DType) -> Result<()> {
    let data = varmap
        .data()
        .lock()
        .map_err(|_| anyhow::anyhow!("varmap lock poisoned"))?;
    let tensors: HashMap<String, Tensor> = data
        .iter()
        .map(|(k, v)| Ok((k.clone(), v.as_tensor().to_dtype(dtype)?)))
        .collect::<Result<_>>()?;
    let tmp = path.with_extension("tmp");
    candle_core::safetensors::save(&tensors, &tmp)?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

/// Sets every variable from a saved model's weights (any float dtype), requiring the same names
/// and shapes: a warm start must not silently leave a layer random.
fn init_weights(varmap: &VarMap, path: &Path) -> Result<()> {
    let saved = candle_core::safetensors::load(path, &Device::Cpu)
        .with_context(|| format!("--init: reading {}", path.display()))?;
    let data = varmap
        .data()
        .lock()
        .map_err(|_| anyhow::anyhow!("varmap lock poisoned"))?;
    if saved.len() != data.len() {
        bail!(
            "--init: {} holds {} tensors, the model has {}",
            path.display(),
            saved.len(),
            data.len()
        );
    }
    for (name, var) in data.iter() {
        let tensor = saved
            .get(name)
            .with_context(|| format!("--init: {} lacks {name}", path.display()))?;
        if tensor.dims() != var.dims() {
            bail!(
                "--init: {name} is {:?} in {}, the model wants {:?}",
                tensor.dims(),
                path.display(),
                var.dims()
            );
        }
        var.set(&tensor.to_dtype(var.dtype())?.to_device(var.device())?)?;
    }
    Ok(())
}

fn write_json<T: Serialize>(value: &T, path: &Path) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_string_pretty(value)?)?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

/// Writes the model folder: f16 weights, LLaDA config, tokenizer and the training record.
fn export(
    out: &Path,
    varmap: &VarMap,
    cfg: &LladaConfig,
    ckpt: &Path,
    progress: &Progress,
) -> Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    save_weights(varmap, &out.join("model.safetensors"), DType::F16)?;
    write_config(cfg, &out.join("config.json"))?;
    std::fs::copy(ckpt.join("tokenizer.json"), out.join("tokenizer.json"))?;
    write_json(progress, &out.join("training.json"))
}

/// Prints, per vocabulary size, how many characters a held-out token covers and what the
/// embedding table costs, the two sides of the choice.
fn measure_vocab(sizes: &[usize], train: &[String], val: &[String], d_model: usize) -> Result<()> {
    let chars: usize = val.iter().map(|s| s.chars().count() + 1).sum();
    println!("vocab  held-out chars/token  tokens per 100 words  embedding params");
    let words: usize = val.iter().map(|s| s.split_whitespace().count()).sum();
    for &size in sizes {
        let codec = train_bpe(train, size)?;
        let tokens: usize = val
            .iter()
            .map(|s| codec.encode(s, false).map(|t| t.len() + 1))
            .sum::<Result<usize>>()?;
        println!(
            "{size:>5}  {:>20.3}  {:>20.1}  {:>16}",
            chars as f64 / tokens as f64,
            100.0 * tokens as f64 / words as f64,
            codec.vocab_size() * d_model
        );
    }
    Ok(())
}

pub fn run(args: TrainArgs) -> Result<()> {
    if let Some(sizes) = &args.measure_vocab {
        let stories = read_stories(&args.corpus)?;
        let (train_stories, val_stories) = split(&stories, args.val_fraction);
        return measure_vocab(sizes, train_stories, val_stories, args.d_model);
    }
    let started = Instant::now();
    let device = args.device.open()?;
    let ckpt = args
        .checkpoint_dir
        .clone()
        .unwrap_or_else(|| default_checkpoint_root().join(&args.run));
    std::fs::create_dir_all(&ckpt).with_context(|| format!("creating {}", ckpt.display()))?;
    let progress_path = ckpt.join("progress.json");

    let mut progress = if args.resume && progress_path.is_file() {
        let text = std::fs::read_to_string(&progress_path)?;
        let mut saved: Progress = serde_json::from_str(&text)
            .with_context(|| format!("reading {}", progress_path.display()))?;
        // Architecture and data must not change under a resumed run; schedule knobs may.
        let a = &saved.args;
        if (
            a.vocab_size,
            a.d_model,
            a.n_layers,
            a.n_heads,
            a.mlp_hidden,
            a.seq_len,
        ) != (
            args.vocab_size,
            args.d_model,
            args.n_layers,
            args.n_heads,
            args.mlp_hidden,
            args.seq_len,
        ) {
            bail!(
                "--resume: the architecture differs from the checkpoint in {}",
                ckpt.display()
            );
        }
        saved.args = args.clone();
        saved.resumed.push(Sitting {
            from_step: saved.step,
            command: std::env::args().collect(),
        });
        eprintln!("resuming {} at step {}", ckpt.display(), saved.step);
        saved
    } else {
        if args.resume {
            eprintln!("no checkpoint in {}: starting afresh", ckpt.display());
        }
        Progress {
            args: args.clone(),
            step: 0,
            tokens: 0,
            wall_s: 0.0,
            best_val: None,
            log: Vec::new(),
            command: std::env::args().collect(),
            resumed: Vec::new(),
        }
    };

    let stories = read_stories(&args.corpus)?;
    let (train_stories, val_stories) = split(&stories, args.val_fraction);
    let tokenizer_path = ckpt.join("tokenizer.json");
    if let (Some(init), 0) = (&args.init, progress.step) {
        let from = init.join("tokenizer.json");
        std::fs::copy(&from, &tokenizer_path)
            .with_context(|| format!("--init: copying {}", from.display()))?;
    }
    let codec = if tokenizer_path.is_file() && (progress.step > 0 || args.init.is_some()) {
        TextCodec::from_file(&tokenizer_path)?
    } else {
        eprintln!(
            "training a {}-token BPE on {} stories",
            args.vocab_size,
            train_stories.len()
        );
        let codec = train_bpe(train_stories, args.vocab_size)?;
        codec
            .tokenizer()
            .save(&tokenizer_path, false)
            .map_err(|e| anyhow::anyhow!("saving the tokenizer: {e}"))?;
        codec
    };
    let cfg = model_config(&args, &codec)?;
    let eos = cfg.eos_token_id.unwrap_or_default();
    let mask_id = cfg.mask_token_id.unwrap_or_default();
    let train = TokenStream::encode(&codec, train_stories, eos)?;
    let val = TokenStream::encode(&codec, val_stories, eos)?;
    let val_windows = val.windows(args.seq_len, args.eval_windows);
    let val_chars: usize = val_windows
        .iter()
        .map(|w| codec.decode(w, false).chars().count())
        .sum();
    eprintln!(
        "train: {} stories, {} tokens ({:.2} chars/token); held out: {} stories, {} tokens, {} eval windows",
        train_stories.len(),
        train.ids.len(),
        train.chars as f64 / train.ids.len() as f64,
        val_stories.len(),
        val.ids.len(),
        val_windows.len()
    );

    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &device);
    let mut model = Llada::new(cfg.clone(), vb, args.run.clone())?;
    let weights_path = ckpt.join("weights.safetensors");
    let optim_path = ckpt.join("optimizer.safetensors");
    let named: Vec<(String, candle_core::Var)> = varmap
        .data()
        .lock()
        .map_err(|_| anyhow::anyhow!("varmap lock poisoned"))?
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut optim = AdamW::new(named, args.weight_decay)?;
    if progress.step > 0 {
        let mut loaded = varmap.clone();
        loaded
            .load(&weights_path)
            .with_context(|| format!("loading {}", weights_path.display()))?;
        optim.load(&optim_path, progress.step)?;
    } else if let Some(init) = &args.init {
        init_weights(&varmap, &init.join("model.safetensors"))?;
        eprintln!("initialised from {}", init.display());
    }
    eprintln!("model: {} parameters", cfg.parameter_count());

    let bar = ProgressBar::new(args.steps as u64).with_position(progress.step as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} {msg} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let plain_log = !std::io::stderr().is_terminal();
    let wall_before = progress.wall_s;
    let mut window_tokens = 0u64;
    let mut window_start = Instant::now();
    let checkpoint = |progress: &Progress, optim: &AdamW, varmap: &VarMap| -> Result<()> {
        save_weights(varmap, &weights_path, DType::F32)?;
        optim.save(&optim_path)?;
        write_json(progress, &progress_path)
    };

    while progress.step < args.steps {
        let step = progress.step;
        let lr = learning_rate(&args, step);
        let mut rng = ChaCha8Rng::seed_from_u64(
            args.seed ^ (step as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
        );
        let windows: Vec<Vec<u32>> = (0..args.batch_size)
            .map(|_| train.sample_window(args.seq_len, &mut rng))
            .collect();
        let batch = mask_batch(&windows, mask_id, args.eps, None, &mut rng, &device)?;
        model.set_kernels(Kernels::Differentiable);
        let loss_value = loss(&model, &batch, args.weighting)?;
        let grads = loss_value.backward()?;
        let grad_norm = optim.step(&grads, lr, args.clip)?;
        let loss_f = loss_value.to_scalar::<f32>()? as f64;
        if !loss_f.is_finite() {
            bail!("the loss became {loss_f} at step {step}; lower --lr");
        }
        progress.step += 1;
        progress.tokens += batch.tokens as u64;
        window_tokens += batch.tokens as u64;
        progress.wall_s = wall_before + started.elapsed().as_secs_f64();
        let mut entry = LogEntry {
            step: progress.step,
            tokens: progress.tokens,
            loss: loss_f,
            lr,
            grad_norm,
            wall_s: progress.wall_s,
            val_nll_per_token: None,
            val_nll_per_char: None,
        };
        let tok_s = window_tokens as f64 / window_start.elapsed().as_secs_f64();
        bar.set_position(progress.step as u64);
        bar.set_message(format!("loss {loss_f:.3} lr {lr:.2e} {tok_s:.0} tok/s"));

        let last = progress.step == args.steps;
        if progress.step % args.eval_every == 0 || last {
            model.set_kernels(Kernels::Fused);
            let nats = heldout_nll(&model, &val_windows, mask_id, 4, args.batch_size)?;
            let per_token = nats / (val_windows.len() * args.seq_len) as f64;
            let per_char = nats / val_chars as f64;
            entry.val_nll_per_token = Some(per_token);
            entry.val_nll_per_char = Some(per_char);
            let line = format!(
                "step {}: held-out NLL bound {per_token:.4} nats/token, {:.4} bits/char",
                progress.step,
                per_char / std::f64::consts::LN_2
            );
            bar.println(&line);
            if plain_log {
                eprintln!("{line}");
            }
            if progress.best_val.is_none_or(|best| per_token < best) {
                progress.best_val = Some(per_token);
                progress.log.push(entry.clone());
                export(&args.out, &varmap, &cfg, &ckpt, &progress)?;
                progress.log.pop();
            }
        }
        if plain_log && progress.step % 10 == 0 {
            eprintln!(
                "step {}/{} loss {loss_f:.4} lr {lr:.2e} grad {grad_norm:.2} {tok_s:.0} tok/s",
                progress.step, args.steps
            );
            window_tokens = 0;
            window_start = Instant::now();
        }
        progress.log.push(entry);
        let out_of_time = args
            .max_minutes
            .is_some_and(|m| started.elapsed().as_secs_f64() >= m * 60.0);
        if progress.step % args.checkpoint_every == 0 || last || out_of_time {
            checkpoint(&progress, &optim, &varmap)?;
        }
        if out_of_time {
            eprintln!(
                "stopping after {} minutes at step {} (resume with --resume)",
                args.max_minutes.unwrap_or(0.0),
                progress.step
            );
            break;
        }
    }
    bar.finish();
    Ok(())
}
