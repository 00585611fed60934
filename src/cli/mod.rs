//! The command-line front end: `generate` (headless), `bench`, `download`, and the options every
//! command shares (which model, a usage error's exit code). `train` and `eval` live in
//! [`crate::train`]; the program's entry ([`crate::entry`]) dispatches to them and to the
//! playground.

pub mod bench;
pub mod generate;
pub mod serve;

use std::path::PathBuf;

use clap::Args;

use crate::hub::{self, RepoSpec};
use crate::model::loader::Precision;
use crate::model::{AttentionKernel, DeviceKind};

#[derive(Debug, Args)]
pub struct DownloadArgs {
    /// The model, ORG/NAME or ORG/NAME@REVISION.
    #[arg(value_name = "ORG/NAME[@REV]", value_parser = parse_repo)]
    pub model: RepoSpec,
}

/// Which model to run.
#[derive(Debug, Clone, Args)]
pub struct ModelArgs {
    /// A model on the Hugging Face hub, e.g. GSAI-ML/LLaDA-8B-Instruct or
    /// Dream-org/Dream-v0-Base-7B@main. Downloaded into the Hugging Face cache on first use
    /// (HF_HOME, HF_HUB_CACHE); HF_TOKEN, HF_ENDPOINT and HF_HUB_OFFLINE=1 are honoured.
    #[arg(long, value_name = "ORG/NAME[@REV]", value_parser = parse_repo, conflicts_with = "model_dir")]
    pub model: Option<RepoSpec>,
    /// A local model folder: config.json, a tokenizer and *.safetensors, of a supported family:
    /// LLaDA (and LLaDA-format models such as dlm-tui's own), Dream, ModernBERT chat models, or
    /// an A2D conversion of Qwen3. Or a GGUF file of a LLaDA or Dream model as llama.cpp's
    /// converter writes it (--gguf FILE, or a folder holding one .gguf): configuration, mask token
    /// and tokenizer come from its metadata, quantized layers stay quantized. Without it or
    /// --model, the embedded default model runs.
    #[arg(long, value_name = "DIR", visible_alias = "gguf")]
    pub model_dir: Option<PathBuf>,
    /// With --model: fetch only this GGUF file of the repository (and its tokenizer.json, if it
    /// has one) and run it, e.g. --gguf-file llada-8b-instruct-Q4_K_M.gguf.
    #[arg(long, value_name = "NAME.gguf", requires = "model")]
    pub gguf_file: Option<String>,
    /// The hub id to show for a fetched model (set by `fetch_hub_model`).
    #[arg(skip)]
    pub display_name: Option<String>,
    /// Precision of weights and activations.
    #[arg(long, value_enum, default_value_t = Precision::Auto)]
    pub dtype: Precision,
    /// Where the model runs: cpu, or cuda / metal in builds with those cargo features.
    #[arg(long, value_enum, default_value_t = DeviceKind::Cpu)]
    pub device: DeviceKind,
    /// Attention kernel (for benchmarks: auto picks by the size of the score matrix).
    #[arg(long, value_enum, default_value_t = AttentionKernel::Auto)]
    pub attention: AttentionKernel,
    /// Quantize the linear layers at load (the embedding and the norms stay in float): less
    /// memory, candle's quantized kernels. Layers whose rows do not fit a k-quant's blocks of
    /// 256 fall back as llama.cpp does (q4_k and q5_k to q5_0, q6_k to q8_0).
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub quantize: Option<crate::kernels::quant::Quantization>,
    /// Decode a dLLM A2D conversion block by block, as its BD3LM sampler does (blocks of 32, or
    /// --block-length); on by itself when the repository or folder name says `bd3lm`.
    #[arg(long)]
    pub block_diffusion: bool,
}

fn parse_repo(text: &str) -> Result<RepoSpec, String> {
    RepoSpec::parse(text).map_err(|e| e.to_string())
}

impl ModelArgs {
    /// With `--model`, fetches the model (from the cache when it is complete there, else from the
    /// hub with a progress bar on stderr) and points `model_dir` at its snapshot.
    pub fn fetch_hub_model(&mut self) -> anyhow::Result<()> {
        self.fetch_hub_model_with(fetch_with_progress_bar)
    }

    /// As [`Self::fetch_hub_model`], fetching with `fetch` (the playground shows its own panel).
    pub fn fetch_hub_model_with(
        &mut self,
        fetch: impl FnOnce(&RepoSpec) -> anyhow::Result<hub::Fetched>,
    ) -> anyhow::Result<()> {
        let Some(mut spec) = self.model.clone() else {
            return Ok(());
        };
        if let Some(file) = &self.gguf_file {
            spec = spec.with_file(file).map_err(UsageError)?;
        }
        let dir = fetch(&spec)?.dir;
        self.display_name = Some(match &spec.file {
            Some(file) => format!("{spec}/{file}"),
            None => spec.to_string(),
        });
        self.model_dir = Some(match &spec.file {
            Some(file) => dir.join(file),
            None => dir,
        });
        Ok(())
    }
}

/// Fetches `spec` with an indicatif bar on stderr (drawn only on a terminal) and a closing line.
pub fn fetch_with_progress_bar(spec: &RepoSpec) -> anyhow::Result<hub::Fetched> {
    use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
    let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(
            "{msg:30!} [{bar:30}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} eta {eta}",
        )
        .expect("a valid template")
        .progress_chars("=> "),
    );
    bar.set_message(format!("fetching {spec}"));
    let sink_bar = bar.clone();
    let sink: hub::ProgressSink = std::sync::Arc::new(move |p: &hub::DownloadProgress| {
        sink_bar.set_length(p.total_bytes);
        sink_bar.set_position(p.done_bytes);
        if let Some(file) = &p.current {
            sink_bar.set_message(file.clone());
        }
    });
    let started = std::time::Instant::now();
    let result = hub::fetch_blocking(spec, sink);
    let total = bar.length().unwrap_or(0);
    bar.finish_and_clear();
    let fetched = result?;
    match fetched.origin {
        hub::Origin::Cache => {
            eprintln!("dlm-tui: {spec} from the cache: {}", fetched.dir.display())
        }
        hub::Origin::Network => eprintln!(
            "dlm-tui: downloaded {spec} ({:.1} MiB in {:.1} s) into {}",
            total as f64 / (1 << 20) as f64,
            started.elapsed().as_secs_f64(),
            fetched.dir.display()
        ),
    }
    Ok(fetched)
}

/// An error caused by the user's input (arguments, prompt, model folder): exit code 2.
#[derive(Debug)]
pub struct UsageError(pub anyhow::Error);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#}", self.0)
    }
}

impl std::error::Error for UsageError {}

/// Wraps an error as a usage error.
pub fn usage(e: anyhow::Error) -> anyhow::Error {
    anyhow::Error::new(UsageError(e))
}
