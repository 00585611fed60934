//! `dlm-tui generate`: the headless front end. Tests and benchmarks rely on its output contract:
//! with `--json`, one JSON object per line, a `step` object per denoising step and a final `done`.

use std::io::Write;

use anyhow::{anyhow, Context, Result};
use clap::Args;
use serde_json::json;

use super::{usage, ModelArgs};
use crate::engine::trace::{step_line, Ending, LaneEnd, LaneRecipe, RunHeader};
use crate::engine::{Engine, Event, Job};
use crate::model::loader::{load_dir_as, LoadedModel};
use crate::run::plan::{self, Lanes, Text};
use crate::run::Settings;
use crate::sampler::{CacheMode, Parallel, Remdm, SamplerParams, Schedule, Strategy};
use crate::text::TextCodec;

#[derive(Debug, Clone, Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The prompt. `[MASK]` is one masked token, `[MASK:N]` is N of them.
    #[arg(long)]
    pub prompt: String,
    #[command(flatten)]
    pub schedule: ScheduleArgs,
    /// Instruct models: send the prompt as a user message through the model's chat template
    /// (tokenizer_config.json) and denoise the answer after it; the printed answer stops at the
    /// first end-of-text token.
    #[arg(long)]
    pub chat: bool,
    /// Print every step as a JSON line, then a final `done` line.
    #[arg(long)]
    pub json: bool,
    /// With --json: add to each step line every position the step scored, committed or kept
    /// masked, with its proposal, score and the model's 5 most likely tokens there (what the
    /// playground's token inspector shows; `dlm-tui replay` reads it).
    #[arg(long, requires = "json")]
    pub inspect: bool,
    /// A remote model instead of a local one: `mercury` (Inception's API; the key comes from
    /// INCEPTION_API_KEY, the URL from INCEPTION_BASE_URL if set) or the URL of an
    /// OpenAI-compatible server (SGLang, vLLM, LMDeploy, dInfer), e.g. http://127.0.0.1:30000/v1,
    /// or the NAME of a `[remote.NAME]` table in config.toml (url, model, key_env, key_file).
    /// The prompt is sent as a user message; --length is the most tokens to write.
    #[arg(long, value_name = "mercury|URL|NAME", conflicts_with_all = ["chat", "inspect"])]
    pub remote: Option<String>,
    /// The `[remote.NAME]` tables of config.toml (set by the entry point).
    #[arg(skip)]
    pub remote_tables: std::collections::BTreeMap<String, crate::remote::RemoteTable>,
    /// The model id on the remote server (default: the first one it lists).
    #[arg(long, value_name = "ID", requires = "remote")]
    pub remote_model: Option<String>,
    /// The environment variable holding the key of a remote URL (sent as a bearer token).
    #[arg(long, value_name = "VAR", requires = "remote")]
    pub api_key_env: Option<String>,
}

/// A count flag: a whole number from 0, with that said when a negative one is given (clap would
/// otherwise read `-1` as an unknown flag).
pub fn count(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(n) => Ok(n),
        Err(_) if text.trim().starts_with('-') => {
            Err(format!("{text} is negative: it must be at least 0"))
        }
        Err(e) => Err(format!("{text:?} is not a whole number ({e})")),
    }
}

/// The denoising schedule, shared by `generate` and `bench`. Its defaults are the playground's
/// ([`Settings::default`]: chosen by measurement on the embedded model), so a first
/// `dlm-tui generate` writes what a first F5 does.
#[derive(Debug, Clone, Args)]
pub struct ScheduleArgs {
    /// Masked tokens appended after the prompt (0: fill only the prompt's masks).
    #[arg(long, default_value_t = Settings::default().length, allow_negative_numbers = true, value_parser = count)]
    pub length: usize,
    /// Denoising steps in all (default: one per masked token).
    #[arg(long, allow_negative_numbers = true, value_parser = count)]
    pub steps: Option<usize>,
    /// Semi-autoregressive block length [default: 16; a block-diffusion model's (SDAR) the block
    /// length it was trained with].
    #[arg(long, allow_negative_numbers = true, value_parser = count)]
    pub block_length: Option<usize>,
    /// Block-diffusion models (SDAR): denoising steps in each block [default: --steps shared
    /// among the blocks to decode; with auto steps, one token a step].
    #[arg(long, allow_negative_numbers = true, value_parser = count)]
    pub steps_per_block: Option<usize>,
    /// Fast-dLLM v2: sub-blocks decoded one after the other inside a block [default: 8].
    #[arg(long, allow_negative_numbers = true, value_parser = count)]
    pub sub_block_length: Option<usize>,
    /// Sampling temperature (0: greedy).
    #[arg(long, default_value_t = Settings::default().params.temperature, allow_negative_numbers = true)]
    pub temperature: f64,
    /// Keep only the k most likely tokens (Dream-style sampling).
    #[arg(long, allow_negative_numbers = true)]
    pub top_k: Option<i64>,
    /// Keep the smallest set of tokens whose probability reaches p (Dream-style sampling).
    #[arg(long, allow_negative_numbers = true)]
    pub top_p: Option<f64>,
    /// Remasking strategy: which masked positions are committed first.
    #[arg(long, value_enum, default_value_t = Settings::default().params.strategy)]
    pub strategy: Strategy,
    /// Commit schedule: how many positions each step commits.
    #[arg(long, value_enum, default_value_t = Schedule::Uniform)]
    pub schedule: Schedule,
    /// Confidence-threshold parallel decoding: commit the best plus all with score >= TAU.
    #[arg(
        long,
        value_name = "TAU",
        conflicts_with = "factor",
        allow_negative_numbers = true
    )]
    pub threshold: Option<f64>,
    /// Factor parallel decoding: accept the n-th best while its score >= 1 - F/(n+1).
    #[arg(long, value_name = "F", allow_negative_numbers = true)]
    pub factor: Option<f64>,
    /// Key/value caching across a block's steps (Fast-dLLM): none is exact; prefix reuses what
    /// precedes the block; dual also reuses the stale suffix.
    #[arg(long, value_enum, default_value_t = CacheMode::None)]
    pub cache: CacheMode,
    /// Instruct models: once the answer has ended (a generated end-of-text with only masks after
    /// it), fill the rest with end-of-text and stop.
    #[arg(long)]
    pub stop_at_eos: bool,
    /// Never propose end-of-text (LLaDA's logits_eos_inf).
    #[arg(long, alias = "logits-eos-inf")]
    pub suppress_eos: bool,
    /// Score end-of-text and end-of-turn proposals 0, so they are committed last (LLaDA's
    /// confidence_eos_eot_inf).
    #[arg(long, alias = "confidence-eos-eot-inf")]
    pub defer_eos: bool,
    /// Sample committed positions from softmax(score / T) instead of taking the top ones.
    #[arg(long, value_name = "T", allow_negative_numbers = true)]
    pub alg_temp: Option<f64>,
    /// Classifier-free guidance scale (the unconditional pass masks the prompt).
    #[arg(
        long,
        value_name = "S",
        default_value_t = 0.0,
        allow_negative_numbers = true
    )]
    pub cfg: f64,
    /// ReMDM remasking: committed tokens may be masked again (cap, rescale, loop); it then
    /// decides how many tokens each step commits, sampling at --temperature with --top-p.
    #[arg(long, value_enum, default_value_t = Remdm::Off)]
    pub remdm: Remdm,
    /// ReMDM's remasking rate (cap, loop) or share of the largest rate (rescale).
    #[arg(long, default_value_t = SamplerParams::default().eta, allow_negative_numbers = true)]
    pub eta: f64,
    /// ReMDM loop: the time (1 at the first step, 0 at the end) the loop starts.
    #[arg(long, default_value_t = SamplerParams::default().t_on, allow_negative_numbers = true)]
    pub t_on: f64,
    /// ReMDM loop: the time the loop ends.
    #[arg(long, default_value_t = SamplerParams::default().t_off, allow_negative_numbers = true)]
    pub t_off: f64,
    /// ReMDM loop: the share of tokens committed while the loop runs.
    #[arg(long, default_value_t = SamplerParams::default().alpha_on, allow_negative_numbers = true)]
    pub alpha_on: f64,
    /// Random seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

impl ScheduleArgs {
    /// Sampler parameters; `masked` is the number of masked positions (the default step count).
    pub fn sampler_params(&self, masked: usize) -> Result<SamplerParams> {
        let params = self.settings()?.sampler_params(masked);
        params.validate()?;
        Ok(params)
    }

    /// [`Self::settings`] for `model`: a block-diffusion model decodes in blocks of the length
    /// it was trained with unless `--block-length` says otherwise.
    pub fn settings_for(&self, model: &crate::model::ModelInfo) -> Result<Settings> {
        let mut settings = self.settings()?;
        if let (None, Some(blocks)) = (self.block_length, model.blocks) {
            settings.params.block_length = blocks.size;
        }
        Ok(settings)
    }

    /// The run settings these flags give: the same [`Settings`] the playground's parameters
    /// panel edits and `serve`'s requests fill, planned by [`crate::run::plan`].
    pub fn settings(&self) -> Result<Settings> {
        let top_k = match self.top_k {
            Some(k) if k < 1 => return Err(anyhow!("top-k must be at least 1, got {k}")),
            Some(k) => Some(k as usize),
            None => None,
        };
        let params = SamplerParams {
            block_length: self
                .block_length
                .unwrap_or(Settings::default().params.block_length),
            steps_per_block: self.steps_per_block,
            sub_block_length: self.sub_block_length,
            temperature: self.temperature,
            top_k,
            top_p: self.top_p,
            strategy: self.strategy,
            schedule: self.schedule,
            parallel: match (self.threshold, self.factor) {
                (Some(t), _) => Some(Parallel::Threshold(t)),
                (None, Some(f)) => Some(Parallel::Factor(f)),
                (None, None) => None,
            },
            cache: self.cache,
            stop_at_eos: self.stop_at_eos,
            suppress_eos: self.suppress_eos,
            defer_eos: self.defer_eos,
            alg_temp: self.alg_temp,
            cfg_scale: self.cfg,
            seed: self.seed,
            remdm: self.remdm,
            eta: self.eta,
            t_on: self.t_on,
            t_off: self.t_off,
            alpha_on: self.alpha_on,
            ..SamplerParams::default()
        };
        let settings = Settings {
            params,
            length: self.length,
            steps: self.steps,
            ..Settings::default()
        };
        settings.validate_run()?;
        Ok(settings)
    }
}

/// Loads the model named by the arguments: a folder, or the embedded default model.
pub fn load_model(args: &ModelArgs) -> Result<LoadedModel> {
    let device = args.device.open()?;
    let mut loaded = match &args.model_dir {
        Some(dir) => load_dir_as(dir, args.display_name.as_deref(), args.dtype, &device),
        None => crate::model::embedded::load(args.dtype, &device),
    }?;
    loaded.model.set_attention(args.attention);
    // A conversion named bd3lm already decodes as BD3LM (the loader sees to it).
    let bd3lm = crate::sampler::blocks::Layout::Bd3lm;
    if args.block_diffusion && loaded.model.info().blocks.is_none_or(|b| b.layout != bd3lm) {
        loaded
            .model
            .decode_by_blocks(crate::model::qwen::BD3LM_BLOCK)?;
    }
    if let Some(to) = args.quantize {
        let summary = loaded.model.quantize(to)?;
        eprintln!("dlm-tui: quantized {summary}");
    }
    Ok(loaded)
}

pub fn run(mut args: GenerateArgs) -> Result<()> {
    if let Some(remote) = args.remote.clone() {
        return run_remote(&args, &remote);
    }
    args.model.fetch_hub_model()?;
    let LoadedModel { model, codec } = load_model(&args.model).map_err(usage)?;
    let info = model.info().clone();
    let settings = args.schedule.settings_for(&info).map_err(usage)?;
    let template = if args.chat {
        let dir = args.model.model_dir.as_deref().ok_or_else(|| {
            usage(anyhow!(
                "--chat needs an instruct model (--model ORG/NAME or --model-dir DIR): the embedded model has no chat template"
            ))
        })?;
        let template = crate::model::loader::chat_template(dir)
            .map_err(usage)?
            .ok_or_else(|| {
                usage(anyhow!(
                    "{} has no chat template (tokenizer_config.json, or a GGUF's tokenizer.chat_template): --chat needs an instruct model",
                    dir.display()
                ))
            })?;
        Some(template)
    } else {
        None
    };
    let text = match &template {
        Some(template) => Text::Chat(&args.prompt, template),
        None => Text::Plain(&args.prompt),
    };
    let (canvas, prompt_len) = plan::canvas(&settings, text, &codec, &info)
        .map_err(|e| usage(anyhow!("{e:#} ({})", info.name)))?;
    let masked = canvas.iter().filter(|&&t| t == info.mask_id).count();
    if masked == 0 {
        return Err(usage(anyhow!(
            "nothing to generate: use --length N or put [MASK] in the prompt"
        )));
    }
    let (_, params) = plan::lane_params(&settings, Lanes::One, masked, &info)
        .map_err(usage)?
        .remove(0);

    let engine = Engine::new(model)?;
    let mut handle = engine.submit(Job {
        canvas: canvas.clone(),
        lanes: vec![params.clone()],
        inspect: args.inspect,
    });
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if args.json {
        // The run first, so that a trace can be replayed and reproduced
        // (`dlm-tui replay FILE`).
        let label = params.method();
        let header = RunHeader {
            chat: args.chat,
            lanes: vec![LaneRecipe {
                lane: 0,
                label: &label,
                params: &params,
            }],
            ..RunHeader::new(&info, &args.prompt, &canvas, prompt_len)
        };
        writeln!(out, "{}", header.line())?;
    }
    let mut last = canvas;
    let mut nfe = 0;
    while let Some(event) = handle.events.blocking_recv() {
        match event {
            Event::Step(step) => {
                if args.json {
                    writeln!(out, "{}", step_line(&step, &codec, info.mask_id))?;
                }
                nfe = step.nfe;
                last = step.canvas;
            }
            Event::LaneDone(_) => {}
            Event::Finished { elapsed } => {
                let text = if args.chat {
                    answer(&codec, &last[prompt_len..], &info.eos_ids)
                } else {
                    codec.decode(&last, true)
                };
                if args.json {
                    let done = LaneEnd {
                        ending: Ending::Done,
                        lane: 0,
                        strategy: Some(args.schedule.strategy.name()),
                        tokens: &last,
                        prompt_len,
                        text: &text,
                        masked: last.iter().filter(|&&t| t == info.mask_id).count(),
                        nfe,
                        elapsed_ms: elapsed.as_secs_f64() * 1e3,
                    };
                    writeln!(out, "{}", done.line())?;
                } else {
                    writeln!(out, "{text}")?;
                }
                return Ok(());
            }
            Event::Cancelled => return Err(anyhow!("generation was cancelled")),
            Event::Failed(message) => return Err(anyhow!(message)).context("generation failed"),
        }
    }
    Err(anyhow!("the engine stopped without finishing"))
}

/// End-of-turn tokens of common chat templates (ChatML, Llama 3 / LLaDA-Instruct).
const END_OF_TURN: [&str; 3] = ["<|im_end|>", "<|eot_id|>", "<|endoftext|>"];

/// A chat answer: the generated ids up to the first end-of-text or end-of-turn token (instruct
/// models fill the rest of the canvas with them), decoded without special tokens.
pub fn answer(codec: &TextCodec, generated: &[u32], eos_ids: &[u32]) -> String {
    let stops: Vec<u32> = eos_ids
        .iter()
        .copied()
        .chain(END_OF_TURN.iter().filter_map(|t| codec.token_id(t)))
        .collect();
    let end = generated
        .iter()
        .position(|id| stops.contains(id))
        .unwrap_or(generated.len());
    codec.decode(&generated[..end], true).trim().to_string()
}

/// `generate --remote`: streams the remote model's frames; with --json one `step` line per frame
/// (the frame's text, the characters that changed since the previous one, the settled prefix)
/// after a `run` line, then the `done` line with the frame count, the time to the first frame and
/// tokens per second from the server's usage.
fn run_remote(args: &GenerateArgs, remote: &str) -> Result<()> {
    use crate::remote::{stream, Endpoint, Request};
    let endpoint = Endpoint::resolve(
        remote,
        args.remote_model.clone(),
        args.api_key_env.as_deref(),
        &args.remote_tables,
    )
    .map_err(usage)?;
    let request = Request {
        prompt: args.prompt.clone(),
        max_tokens: args.schedule.length.max(1),
        temperature: args.schedule.temperature,
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if args.json {
        let header = json!({
            "type": "run",
            "version": env!("CARGO_PKG_VERSION"),
            "remote": endpoint.describe(),
            "model": endpoint.model,
            "prompt": args.prompt,
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
        });
        writeln!(out, "{header}")?;
    }
    let mut written: Result<()> = Ok(());
    let mut step = 0;
    let runtime = crate::hub::runtime()?;
    let finish = runtime.block_on(stream(&endpoint, &request, |frame| {
        step += 1;
        if args.json && written.is_ok() {
            let line = json!({
                "type": "step",
                "lane": 0,
                "step": step,
                "text": frame.text,
                "changed": [frame.changed.start, frame.changed.end],
                "settled": frame.settled,
                "elapsed_ms": frame.elapsed.as_secs_f64() * 1e3,
            });
            written = writeln!(out, "{line}").map_err(Into::into);
        }
    }))?;
    written?;
    let seconds = finish.elapsed.as_secs_f64();
    let tokens_per_s = finish
        .completion_tokens
        .filter(|_| seconds > 0.0)
        .map(|t| t as f64 / seconds);
    if args.json {
        let done = json!({
            "type": "done",
            "lane": 0,
            "model": finish.model,
            "text": finish.text,
            "frames": finish.frames,
            "first_frame_ms": finish.first_frame.map(|d| d.as_secs_f64() * 1e3),
            "elapsed_ms": seconds * 1e3,
            "completion_tokens": finish.completion_tokens,
            "tokens_per_s": tokens_per_s,
            "warnings": finish.warnings,
        });
        writeln!(out, "{done}")?;
    } else {
        writeln!(out, "{}", finish.text)?;
        for warning in &finish.warnings {
            eprintln!("dlm-tui: {} says: {warning}", endpoint.describe());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        schedule: ScheduleArgs,
    }

    /// `generate` with no schedule flags runs what the playground's first F5 runs.
    #[test]
    fn schedule_defaults_are_the_playgrounds() {
        let flags = Flags::parse_from(["generate"]).schedule;
        let playground = Settings::default();
        assert_eq!(flags.length, playground.length);
        assert_eq!(flags.steps, playground.steps);
        let params = flags.sampler_params(playground.length).unwrap();
        let mut want = playground.params.clone();
        // "auto" steps: one per masked position, in both.
        want.steps = playground.length;
        assert_eq!(params, want);
    }
}
