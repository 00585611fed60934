//! The program's entry: parses the command line and hands it to a front end, the playground
//! (no command) or one of the commands ([`crate::cli`], [`crate::train`]), and turns the outcome
//! into an exit code (2 for a usage error, 128 + N after signal N). It is the one module above
//! both front ends.

use std::process::ExitCode;

use anyhow::{anyhow, Context};
use clap::{Args, Parser, Subcommand};

use crate::cli::{self, usage, ModelArgs, UsageError};
use crate::hub::RepoSpec;
use crate::model::{DeviceKind, ModelInfo};
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
    /// Run on a `dlm-tui serve` elsewhere (its URL, e.g. http://gpu-box:8080/v1): the model and
    /// its tokenizer come from there, every instrument works as with a local model. `mercury`,
    /// another OpenAI-compatible server's URL, or the NAME of a `[remote.NAME]` table of
    /// config.toml show that server's text frames as steps.
    #[arg(long, value_name = "URL|mercury|NAME", conflicts_with_all = ["model", "model_dir"])]
    pub remote: Option<String>,
    /// A text-streaming server's lane beside the model's (`mercury`, a URL or a `[remote.NAME]`
    /// table): every run adds it as the last lane, on the same canvas, so Mercury's frames and
    /// a local sampler run side by side (compare on: beside every compared lane).
    #[arg(long, value_name = "mercury|URL|NAME", conflicts_with = "remote")]
    pub beside: Option<String>,
    /// The environment variable holding the server's bearer token (its --token-env), for
    /// --remote or --beside.
    #[arg(long, value_name = "VAR")]
    pub api_key_env: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Denoise a prompt headlessly and print the result (or every step as JSON lines).
    Generate(cli::generate::GenerateArgs),
    /// Serve the model over HTTP: OpenAI-compatible chat and text completions, and the per-step
    /// stream of `generate --json`'s events (127.0.0.1 unless --host says otherwise).
    Serve(cli::serve::ServeArgs),
    /// Train a small LLaDA-format diffusion LM on a text corpus (how the default model is made).
    Train(crate::train::TrainArgs),
    /// Time generations: median forward and step latency, tokens/s, forward passes, peak memory.
    Bench(cli::bench::BenchArgs),
    /// Measure a LLaDA-format model: held-out NLL bound, unigram baseline, samples, latency.
    Eval(crate::train::eval::EvalArgs),
    /// Fetch a model from the Hugging Face hub into its cache (what --model does on first use).
    Download(cli::DownloadArgs),
    /// Open a saved run (`generate --json`, or the playground's export) in the playground and
    /// replay it, with scrubbing and the token inspector, without loading the model.
    Replay(ReplayArgs),
    /// Write a LLaDA or Dream model folder as a quantized GGUF file (llama.cpp's names and
    /// metadata: llama.cpp's llama-diffusion-cli reads it, and so does --gguf).
    Quantize(QuantizeArgs),
    /// List the models that can run without a download: the embedded one and those in the
    /// Hugging Face cache (family, size, whether complete).
    Models(ModelsArgs),
}

#[derive(Debug, Clone, Args)]
pub struct QuantizeArgs {
    /// The model folder (config.json, tokenizer, *.safetensors) of a LLaDA or Dream model, e.g.
    /// models/default or a hub snapshot (`dlm-tui download ORG/NAME` prints where).
    pub dir: std::path::PathBuf,
    /// The format of the matrices (embedding and linear layers); norms and biases stay f32, and
    /// rows that do not fit a k-quant's blocks of 256 fall back as with --quantize.
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub to: crate::kernels::quant::Quantization,
    /// The GGUF file to write (written whole or not at all).
    #[arg(long, value_name = "FILE.gguf")]
    pub out: std::path::PathBuf,
}

#[derive(Debug, Clone, Args)]
pub struct ModelsArgs {
    /// One JSON object per model instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Args)]
pub struct ReplayArgs {
    /// The trace: JSON lines written by `dlm-tui generate --json` (add --inspect for the token
    /// inspector's candidates) or by the playground's export (F9).
    pub file: std::path::PathBuf,
    /// The folder of the model that made the trace, for its tokenizer (nothing else is read).
    /// Default: the embedded model's tokenizer, or the hub cache's copy of the model the trace
    /// names.
    #[arg(long, value_name = "DIR")]
    pub model_dir: Option<std::path::PathBuf>,
    /// Colour theme (as for the playground).
    #[arg(long, value_name = "NAME")]
    pub theme: Option<String>,
}

fn quantize(args: QuantizeArgs) -> anyhow::Result<()> {
    if args.out.extension().is_none_or(|x| x != "gguf") {
        anyhow::bail!("--out {}: name the file *.gguf", args.out.display());
    }
    let written = crate::model::gguf_write::write_gguf(&args.dir, args.to, &args.out)?;
    println!("wrote {}: {written}", args.out.display());
    Ok(())
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Generate(mut args)) => (|| {
            if args.remote.is_some() {
                // `--remote NAME` may name a [remote.NAME] table of the user's config.toml.
                args.remote_tables = load_config()?.0.remote;
            }
            cli::generate::run(args)
        })(),
        Some(Command::Serve(args)) => cli::serve::run(args),
        Some(Command::Train(args)) => crate::train::run(args),
        Some(Command::Eval(args)) => crate::train::eval::run(args),
        Some(Command::Bench(args)) => cli::bench::run(args),
        Some(Command::Download(args)) => cli::fetch_with_progress_bar(&args.model).map(|fetched| {
            println!("{}", fetched.dir.display());
        }),
        Some(Command::Replay(args)) => run_replay(args),
        Some(Command::Models(args)) => list_models(args),
        Some(Command::Quantize(args)) => quantize(args),
        None => run_app(cli.app),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let broken_pipe = e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            });
            if let Some(tui::Signalled(signal)) = e.downcast_ref() {
                ExitCode::from((128 + signal) as u8)
            } else if broken_pipe {
                // The reader went away (`generate --json | head`): nothing to say.
                ExitCode::SUCCESS
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

/// The playground needs a terminal on both sides.
fn need_terminal() -> anyhow::Result<()> {
    use std::io::IsTerminal;
    if !(std::io::stdin().is_terminal() && std::io::stdout().is_terminal()) {
        return Err(usage(anyhow!(
            "the playground needs a terminal, and this one's input or output is not one; to \
             denoise without a terminal use `dlm-tui generate --prompt TEXT` (see `dlm-tui \
             generate --help`)"
        )));
    }
    Ok(())
}

fn run_replay(args: ReplayArgs) -> anyhow::Result<()> {
    let source = args.file.display().to_string();
    let text =
        std::fs::read_to_string(&args.file).map_err(|e| usage(anyhow!("reading {source}: {e}")))?;
    let trace = crate::engine::trace::read(&text, &source).map_err(usage)?;
    let codec = replay_tokenizer(&trace.model, args.model_dir.as_deref()).map_err(usage)?;
    need_terminal()?;
    let (config, origin) = load_config()?;
    let (themes, theme_index) = themes(&config, args.theme.as_deref())?;
    let keymap = KeyMap::with_overrides(&config.keys)
        .map_err(|e| usage(anyhow!("{origin}: [keys] {e:#}")))?;
    tui::replay(
        codec,
        trace,
        &source,
        Options {
            keymap,
            themes,
            theme_index,
            theme_forced: true,
            settings: Default::default(),
            session_path: None,
            chat_template: None,
            replay_speed: config.ui.replay_speed.max(0.0),
            presets: config.sampler.presets(),
            export_dir: export_dir(&config),
            load: tui::ModelLoad {
                precision: crate::model::loader::Precision::Auto,
                device: DeviceKind::Cpu,
                quantize: None,
            },
            model_folders: Vec::new(),
            beside: None,
            warning: None,
        },
    )
}

/// The tokenizer of the model a trace names: from `dir` when given, the embedded one for the
/// embedded model, else the hub cache's copy of it.
fn replay_tokenizer(
    model: &str,
    dir: Option<&std::path::Path>,
) -> anyhow::Result<crate::text::TextCodec> {
    if let Some(dir) = dir {
        return crate::model::loader::load_tokenizer(dir);
    }
    if model == crate::model::embedded::NAME {
        return crate::model::embedded::codec();
    }
    let cached = RepoSpec::parse(model).ok().and_then(|spec| {
        let dir = crate::hub::Hub::from_env().ok()?.cached_snapshot(&spec)?;
        crate::model::loader::load_tokenizer(&dir).ok()
    });
    match cached {
        Some(codec) => Ok(codec),
        None => Err(anyhow!(
            "the trace was made with {model:?}, whose tokenizer is not here: pass --model-dir \
             DIR (the model's folder, or any folder with its tokenizer.json), or fetch it with \
             `dlm-tui download {model}`"
        )),
    }
}

/// `dlm-tui models`: the embedded model, then every model repository in the hub cache.
fn list_models(args: ModelsArgs) -> anyhow::Result<()> {
    use std::io::Write;
    let hub = crate::hub::Hub::from_env()?;
    let cached = crate::hub::scan::scan(hub.cache_dir());
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(
            out,
            "{}",
            serde_json::json!({"id": crate::model::embedded::NAME, "family": "llada", "embedded": true})
        )?;
        for m in &cached {
            let (family, unsupported) = match &m.family {
                Ok(f) => (Some(*f), None),
                Err(e) => (None, Some(e.as_str())),
            };
            writeln!(
                out,
                "{}",
                serde_json::json!({
                    "id": m.id, "family": family, "unsupported": unsupported,
                    "bytes": m.bytes, "complete": m.missing.is_empty(),
                    "missing": m.missing, "dir": m.dir,
                })
            )?;
        }
        return Ok(());
    }
    writeln!(out, "{:<44} {:<11} {:>9}  state", "model", "family", "size")?;
    writeln!(
        out,
        "{:<44} {:<11} {:>9}  built in (runs with no flag)",
        crate::model::embedded::NAME,
        "llada",
        "20 MiB"
    )?;
    for m in &cached {
        let family = m.family.as_ref().map_or("-", |f| *f);
        let state = m
            .problem()
            .unwrap_or_else(|| format!("complete: dlm-tui --model {}", m.id));
        let size = crate::files::human_bytes(m.bytes);
        writeln!(out, "{:<44} {:<11} {:>9}  {state}", m.id, family, size)?;
    }
    if cached.is_empty() {
        writeln!(
            out,
            "(nothing in the Hugging Face cache at {}; `dlm-tui download ORG/NAME` fetches a model)",
            hub.cache_dir().display()
        )?;
    }
    Ok(())
}

fn load_config() -> anyhow::Result<(Config, String)> {
    let user_config = Config::user_path();
    let config = Config::load(user_config.as_deref()).map_err(usage)?;
    let origin = user_config
        .as_ref()
        .map_or("config.toml".to_string(), |p| p.display().to_string());
    Ok((config, origin))
}

/// The themes (built in, then the user's, adapted to the terminal's colours) and the index of
/// the one asked for (`name`, else the configured one).
fn themes(config: &Config, name: Option<&str>) -> anyhow::Result<(Vec<Theme>, usize)> {
    let theme_dir = Config::user_path()
        .as_deref()
        .and_then(|p| p.parent())
        .map(|d| d.join("themes"));
    let mut themes = Theme::all(theme_dir.as_deref()).map_err(usage)?;
    if tui::theme::no_colour() {
        themes = themes.into_iter().map(Theme::monochrome).collect();
    } else if !tui::theme::truecolor() {
        themes = themes.into_iter().map(Theme::for_256_colours).collect();
    }
    let theme_name = name.unwrap_or(&config.ui.theme).to_string();
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
    Ok((themes, theme_index))
}

/// An error on one line for the status bar: a TOML error's source excerpt (the `|` lines and
/// the caret) left out, its position and reason kept, the home folder written `~`.
fn one_line(e: &anyhow::Error) -> String {
    let text = format!("{e:#}");
    let kept: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| {
            let excerpt = l.starts_with('|')
                || l.split_once('|').is_some_and(|(n, _)| {
                    !n.trim().is_empty() && n.trim().chars().all(|c| c.is_ascii_digit())
                });
            !l.is_empty() && !excerpt
        })
        .collect();
    crate::files::shorten_home(&kept.join(": "))
}

/// The built-in themes alone, adapted to the terminal, the dark one chosen: what the app starts
/// on when the user's themes folder or configured theme cannot be used.
fn builtin_themes() -> (Vec<Theme>, usize) {
    let mut themes: Vec<Theme> = tui::theme::BUILTIN
        .iter()
        .filter_map(|(name, _)| Theme::builtin(name))
        .collect();
    if tui::theme::no_colour() {
        themes = themes.into_iter().map(Theme::monochrome).collect();
    } else if !tui::theme::truecolor() {
        themes = themes.into_iter().map(Theme::for_256_colours).collect();
    }
    let index = themes.iter().position(|t| t.name == "dark").unwrap_or(0);
    (themes, index)
}

fn export_dir(config: &Config) -> std::path::PathBuf {
    match config.ui.export_dir.trim() {
        "" => session::default_export_dir(),
        dir => dir.into(),
    }
}

fn run_app(args: AppArgs) -> anyhow::Result<()> {
    need_terminal()?;
    let user_config = Config::user_path();
    let origin = user_config
        .as_ref()
        .map_or("config.toml".to_string(), |p| p.display().to_string());
    // A broken config or theme file does not keep the playground closed: it starts on the
    // defaults for what could not be used, and says what is wrong (file, line, column) there.
    let mut problems: Vec<String> = Vec::new();
    let config = Config::load(user_config.as_deref()).unwrap_or_else(|e| {
        problems.push(format!(
            "the built-in settings are in use: {}",
            one_line(&e)
        ));
        Config::default()
    });
    let keymap = KeyMap::with_overrides(&config.keys).unwrap_or_else(|e| {
        problems.push(format!(
            "the default keys are in use: {origin}: [keys] {}",
            one_line(&e)
        ));
        KeyMap::defaults()
    });
    let settings = config.sampler.settings().unwrap_or_else(|e| {
        problems.push(format!(
            "the default sampler settings are in use: {}",
            one_line(&e)
        ));
        crate::run::Settings::default()
    });
    let (themes, theme_index) = match themes(&config, args.theme.as_deref()) {
        Ok(found) => found,
        // An explicit --theme that does not exist is still refused.
        Err(e) if args.theme.is_some() => return Err(e),
        Err(e) => {
            problems.push(format!("the built-in themes are in use: {}", one_line(&e)));
            builtin_themes()
        }
    };
    let warning = (!problems.is_empty()).then(|| problems.join(" · "));
    let options = |chat_template, load: tui::ModelLoad| Options {
        keymap: keymap.clone(),
        themes: themes.clone(),
        theme_index,
        theme_forced: args.theme.is_some(),
        settings: settings.clone(),
        session_path: if args.no_session || !config.ui.autosave {
            None
        } else {
            session::default_path()
        },
        chat_template,
        replay_speed: config.ui.replay_speed.max(0.0),
        presets: config.sampler.presets(),
        export_dir: export_dir(&config),
        load,
        model_folders: config.model.folders.iter().map(Into::into).collect(),
        beside: None,
        warning: warning.clone(),
    };
    if let Some(remote) = &args.remote {
        let (engine, codec, info) =
            remote_engine(remote, args.api_key_env.as_deref(), &config.remote)?;
        let load = tui::ModelLoad {
            precision: config.model.dtype,
            device: config.model.device,
            quantize: None,
        };
        return tui::run_with(engine, codec, info, options(None, load));
    }
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
        Some(dir) => crate::model::loader::chat_template(dir).map_err(usage)?,
        None => None,
    };
    let load = tui::ModelLoad {
        precision: model_args.dtype,
        device: model_args.device,
        quantize: model_args.quantize,
    };
    let mut options = options(chat_template, load);
    let Some(remote) = &args.beside else {
        return tui::run(loaded, options);
    };
    // A text-streaming server's lane beside the model: its frames in this model's tokenizer.
    let endpoint =
        crate::remote::Endpoint::resolve(remote, None, args.api_key_env.as_deref(), &config.remote)
            .map_err(usage)?;
    let crate::model::loader::LoadedModel { model, codec } = loaded;
    let info = model.info().clone();
    let frames =
        crate::engine::Engine::frames(info.clone(), endpoint, std::sync::Arc::new(codec.clone()))?;
    let engine = crate::engine::Engine::beside(crate::engine::Engine::new(model)?, frames)?;
    options.beside = Some(if remote.starts_with("http") {
        "remote".to_string()
    } else {
        remote.clone()
    });
    tui::run_with(engine, codec, info, options)
}

/// The engine of a remote model: a `dlm-tui serve` at `url` (its model's tokenizer and facts),
/// else a server that streams text (`mercury`, or any OpenAI-compatible URL), shown through the
/// embedded model's tokenizer.
fn remote_engine(
    url: &str,
    key_env: Option<&str>,
    tables: &std::collections::BTreeMap<String, crate::remote::RemoteTable>,
) -> anyhow::Result<(crate::engine::Engine, crate::text::TextCodec, ModelInfo)> {
    let endpoint = crate::remote::Endpoint::resolve(url, None, key_env, tables).map_err(usage)?;
    let served = match endpoint.kind {
        crate::remote::Kind::Mercury => None,
        crate::remote::Kind::OpenAi => {
            crate::remote::runtime()?.block_on(crate::remote::served_model(&endpoint))?
        }
    };
    if let Some((facts, tokenizer)) = served {
        let codec = crate::text::TextCodec::from_bytes(&tokenizer)?;
        let info = served_info(&facts)
            .with_context(|| format!("{} described its model oddly", endpoint.describe()))?;
        let engine = crate::engine::Engine::remote(info.clone(), endpoint)?;
        return Ok((engine, codec, info));
    }
    let codec = crate::model::embedded::codec()?;
    let config = crate::model::embedded::config()?;
    let info = ModelInfo {
        eos_ids: config.eos_token_id.into_iter().collect(),
        ..ModelInfo::stand_in(
            format!("{} (remote)", endpoint.describe()),
            crate::model::Family::Remote,
            config.mask_token_id.unwrap_or_default(),
            codec.vocab_size(),
            // Room for long answers: the canvas only holds the display tokenizer's ids.
            4096,
        )
    };
    let engine = crate::engine::Engine::frames(
        info.clone(),
        endpoint,
        std::sync::Arc::new(crate::model::embedded::codec()?),
    )?;
    Ok((engine, codec, info))
}

/// A served model's facts as the app's [`ModelInfo`].
fn served_info(facts: &serde_json::Value) -> anyhow::Result<ModelInfo> {
    let number = |key: &str| {
        facts[key]
            .as_u64()
            .ok_or_else(|| anyhow!("{key:?} is missing"))
    };
    let ids = |key: &str| -> Vec<u32> {
        facts[key]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_u64().map(|v| v as u32))
            .collect()
    };
    // A family this version does not know shows as a remote model's frames.
    let family = facts["family"]
        .as_str()
        .and_then(crate::model::Family::named)
        .unwrap_or(crate::model::Family::Remote);
    Ok(ModelInfo {
        name: format!("{} (remote)", facts["name"].as_str().unwrap_or("model")),
        family,
        mask_id: number("mask_id")? as u32,
        logits_width: number("logits_width")? as usize,
        max_context: number("max_context")? as usize,
        shift_logits: facts["shift_logits"].as_bool().unwrap_or(false),
        eos_ids: ids("eos_ids"),
        eot_ids: ids("eot_ids"),
        parameters: number("parameters").unwrap_or(0) as usize,
        weight_bytes: number("weight_bytes").unwrap_or(0) as usize,
        quantization: None,
        blocks: None,
    })
}
