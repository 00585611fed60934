//! Command-line front end: `dlm-tui generate` (headless) and the options shared by every command.

pub mod bench;
pub mod generate;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::hub::{self, RepoSpec};
use crate::model::loader::Precision;
use crate::model::{AttentionKernel, DeviceKind};

#[derive(Debug, Parser)]
#[command(
    name = "dlm-tui",
    version,
    about = "A terminal playground for diffusion language models"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Options of the interactive app (when no command is given).
    #[command(flatten)]
    pub app: AppArgs,
}

/// `dlm-tui` with no command opens the interactive playground.
#[derive(Debug, Clone, Args)]
pub struct AppArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Colour theme: dark, light, high-contrast, or a theme file's name from the config
    /// directory's themes/ folder.
    #[arg(long, value_name = "NAME")]
    pub theme: Option<String>,
    /// Neither restore nor save the editor session.
    #[arg(long)]
    pub no_session: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Denoise a prompt headlessly and print the result (or every step as JSON lines).
    Generate(generate::GenerateArgs),
    /// Train a small LLaDA-format diffusion LM on a text corpus (how the default model is made).
    Train(crate::train::TrainArgs),
    /// Time generations: median forward and step latency, tokens/s, forward passes, peak memory.
    Bench(bench::BenchArgs),
    /// Measure a LLaDA-format model: held-out NLL bound, unigram baseline, samples, latency.
    Eval(crate::train::eval::EvalArgs),
    /// Fetch a model from the Hugging Face hub into its cache (what --model does on first use).
    Download(DownloadArgs),
}

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
    /// A local model folder: config.json, a tokenizer and *.safetensors (LLaDA or Dream).
    /// Without it or --model, the embedded default model runs.
    #[arg(long, value_name = "DIR")]
    pub model_dir: Option<PathBuf>,
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
        let Some(spec) = self.model.clone() else {
            return Ok(());
        };
        self.model_dir = Some(fetch(&spec)?.dir);
        self.display_name = Some(spec.to_string());
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

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Generate(args)) => generate::run(args),
        Some(Command::Train(args)) => crate::train::run(args),
        Some(Command::Eval(args)) => crate::train::eval::run(args),
        Some(Command::Bench(args)) => bench::run(args),
        Some(Command::Download(args)) => fetch_with_progress_bar(&args.model).map(|fetched| {
            println!("{}", fetched.dir.display());
        }),
        None => run_app(cli.app),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if let Some(crate::tui::Signalled(signal)) = e.downcast_ref() {
                ExitCode::from((128 + signal) as u8)
            } else if let Some(usage) = e.downcast_ref::<UsageError>() {
                eprintln!("error: {usage}");
                ExitCode::from(2)
            } else {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        }
    }
}

fn run_app(args: AppArgs) -> anyhow::Result<()> {
    use crate::tui::config::Config;
    use crate::tui::{keymap::KeyMap, session, theme::Theme, Options};
    let user_config = Config::user_path();
    let config = Config::load(user_config.as_deref()).map_err(usage)?;
    let origin = user_config
        .as_ref()
        .map_or("config.toml".to_string(), |p| p.display().to_string());
    let keymap = KeyMap::with_overrides(&config.keys)
        .map_err(|e| usage(anyhow::anyhow!("{origin}: [keys] {e:#}")))?;
    let settings = config.sampler.settings().map_err(usage)?;
    // The built-in themes, then the user's own (`themes/*.toml` beside the config file).
    let theme_dir = user_config
        .as_deref()
        .and_then(|p| p.parent())
        .map(|d| d.join("themes"));
    let mut themes = Theme::all(theme_dir.as_deref()).map_err(usage)?;
    if crate::tui::theme::no_colour() {
        themes = themes.into_iter().map(Theme::monochrome).collect();
    }
    let theme_name = args.theme.clone().unwrap_or(config.ui.theme.clone());
    let theme_index = themes
        .iter()
        .position(|t| t.name == theme_name)
        .ok_or_else(|| {
            usage(anyhow::anyhow!(
                "unknown theme {theme_name:?}: choose one of {}",
                themes
                    .iter()
                    .map(|t| t.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
    let mut model_args = args.model.clone();
    if model_args.model.is_none() && model_args.model_dir.is_none() {
        match (config.model.repo.trim(), config.model.dir.as_str()) {
            ("", "") => {}
            (repo, "") => {
                model_args.model = Some(
                    RepoSpec::parse(repo)
                        .map_err(|e| usage(anyhow::anyhow!("{origin}: [model] repo: {e:#}")))?,
                )
            }
            ("", dir) => model_args.model_dir = Some(dir.into()),
            _ => {
                return Err(usage(anyhow::anyhow!(
                    "{origin}: [model] sets both repo and dir: keep one"
                )))
            }
        }
    }
    model_args
        .fetch_hub_model_with(|spec| crate::tui::download::fetch(spec, &themes[theme_index]))?;
    if model_args.dtype == crate::model::loader::Precision::Auto {
        model_args.dtype = config.model.dtype;
    }
    if model_args.device == DeviceKind::Cpu {
        model_args.device = config.model.device;
    }
    let loaded = generate::load_model(&model_args).map_err(usage)?;
    let chat_template = match &model_args.model_dir {
        Some(dir) => crate::chat::ChatTemplate::from_model_dir(dir).map_err(usage)?,
        None => None,
    };
    crate::tui::run(
        loaded,
        Options {
            keymap,
            themes,
            theme_index,
            theme_forced: args.theme.is_some(),
            settings,
            session_path: if args.no_session || !config.ui.autosave {
                None
            } else {
                session::default_path()
            },
            chat_template,
        },
    )
}
