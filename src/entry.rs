//! The program's entry: parses the command line and hands it to a front end, the playground
//! (no command) or one of the commands ([`crate::cli`], [`crate::train`]), and turns the outcome
//! into an exit code (2 for a usage error, 128 + N after signal N). It is the one module above
//! both front ends.

use std::process::ExitCode;

use anyhow::anyhow;
use clap::{Args, Parser, Subcommand};

use crate::cli::{self, usage, ModelArgs, UsageError};
use crate::hub::RepoSpec;
use crate::model::DeviceKind;
use crate::tui::config::Config;
use crate::tui::{self, keymap::KeyMap, session, theme::Theme, Options};

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
    Generate(cli::generate::GenerateArgs),
    /// Train a small LLaDA-format diffusion LM on a text corpus (how the default model is made).
    Train(crate::train::TrainArgs),
    /// Time generations: median forward and step latency, tokens/s, forward passes, peak memory.
    Bench(cli::bench::BenchArgs),
    /// Measure a LLaDA-format model: held-out NLL bound, unigram baseline, samples, latency.
    Eval(crate::train::eval::EvalArgs),
    /// Fetch a model from the Hugging Face hub into its cache (what --model does on first use).
    Download(cli::DownloadArgs),
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Generate(args)) => cli::generate::run(args),
        Some(Command::Train(args)) => crate::train::run(args),
        Some(Command::Eval(args)) => crate::train::eval::run(args),
        Some(Command::Bench(args)) => cli::bench::run(args),
        Some(Command::Download(args)) => cli::fetch_with_progress_bar(&args.model).map(|fetched| {
            println!("{}", fetched.dir.display());
        }),
        None => run_app(cli.app),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if let Some(tui::Signalled(signal)) = e.downcast_ref() {
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
    use std::io::IsTerminal;
    if !(std::io::stdin().is_terminal() && std::io::stdout().is_terminal()) {
        return Err(usage(anyhow!(
            "the playground needs a terminal, and this one's input or output is not one; to \
             denoise without a terminal use `dlm-tui generate --prompt TEXT` (see `dlm-tui \
             generate --help`)"
        )));
    }
    let user_config = Config::user_path();
    let config = Config::load(user_config.as_deref()).map_err(usage)?;
    let origin = user_config
        .as_ref()
        .map_or("config.toml".to_string(), |p| p.display().to_string());
    let keymap = KeyMap::with_overrides(&config.keys)
        .map_err(|e| usage(anyhow!("{origin}: [keys] {e:#}")))?;
    let settings = config.sampler.settings().map_err(usage)?;
    // The built-in themes, then the user's own (`themes/*.toml` beside the config file).
    let theme_dir = user_config
        .as_deref()
        .and_then(|p| p.parent())
        .map(|d| d.join("themes"));
    let mut themes = Theme::all(theme_dir.as_deref()).map_err(usage)?;
    if tui::theme::no_colour() {
        themes = themes.into_iter().map(Theme::monochrome).collect();
    } else if !tui::theme::truecolor() {
        themes = themes.into_iter().map(Theme::for_256_colours).collect();
    }
    let theme_name = args.theme.clone().unwrap_or(config.ui.theme.clone());
    let theme_index = themes
        .iter()
        .position(|t| t.name == theme_name)
        .ok_or_else(|| {
            usage(anyhow!(
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
                        .map_err(|e| usage(anyhow!("{origin}: [model] repo: {e:#}")))?,
                )
            }
            ("", dir) => model_args.model_dir = Some(dir.into()),
            _ => {
                return Err(usage(anyhow!(
                    "{origin}: [model] sets both repo and dir: keep one"
                )))
            }
        }
    }
    model_args.fetch_hub_model_with(|spec| tui::download::fetch(spec, &themes[theme_index]))?;
    if model_args.dtype == crate::model::loader::Precision::Auto {
        model_args.dtype = config.model.dtype;
    }
    if model_args.device == DeviceKind::Cpu {
        model_args.device = config.model.device;
    }
    let loaded = cli::generate::load_model(&model_args).map_err(usage)?;
    let chat_template = match &model_args.model_dir {
        Some(dir) => crate::chat::ChatTemplate::from_model_dir(dir).map_err(usage)?,
        None => None,
    };
    tui::run(
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
            replay_speed: config.ui.replay_speed.max(0.0),
            presets: config.sampler.presets(),
            export_dir: match config.ui.export_dir.trim() {
                "" => session::default_export_dir(),
                dir => dir.into(),
            },
        },
    )
}
