//! `dlm-tui bench`: warm-up runs, then timed generations on one model; medians of forward
//! latency and step time, tokens per second, forward passes and peak memory.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{anyhow, Result};
use clap::Args;
use serde::Serialize;

use super::generate::{count, load_model, ScheduleArgs};
use crate::prompt;
use crate::run::plan::{self, Lanes, Text};

/// `println!` that returns an error (a closed or full standard output) instead of panicking.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)
            .map_err(|e| anyhow!("writing the report to standard output: {e}"))?;
    }};
}

/// A count flag that must be at least 1 (a median of no runs is no figure).
fn at_least_one(text: &str) -> Result<usize, String> {
    match count(text)? {
        0 => Err("0 runs give no figure: it must be at least 1".to_string()),
        n => Ok(n),
    }
}
use super::{usage, ModelArgs};
use crate::model::{Denoiser, KvCache};
use crate::run::LaneSpec;
use crate::run::Settings;
use crate::sampler::{CacheMode, Sampler, SamplerParams, Schedule, StepReport};
use crate::text::TextCodec;
use crate::train::eval::{dictionary_rate, load_dictionary, sequence_nll, words, STORY_PROMPTS};

#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub schedule: ScheduleArgs,
    #[arg(
        long,
        default_value = "Once upon a time, there was a little girl named Lily."
    )]
    pub prompt: String,
    /// Untimed generations (or forward passes) first.
    #[arg(long, default_value_t = 1, allow_negative_numbers = true, value_parser = count)]
    pub warmup: usize,
    /// Timed generations (or forward passes), at least 1.
    #[arg(long, default_value_t = 5, allow_negative_numbers = true, value_parser = at_least_one)]
    pub runs: usize,
    /// Time single forward passes over a canvas of exactly `--length` tokens (the prompt's tokens,
    /// then masks), as the PyTorch reference script in benches/reference does.
    #[arg(long, conflicts_with = "against_plain")]
    pub forward_only: bool,
    /// Compare these settings with plain decoding (uniform schedule, one step per token, no
    /// cache) over `--seeds` generations after story prompts: wall time, steps, token agreement,
    /// English-word rate and the output's mean log-likelihood under the model.
    #[arg(long)]
    pub against_plain: bool,
    /// With `--against-plain`: a setting to test, in the TUI's comparison-lane syntax
    /// (`low-confidence:threshold=0.9:cache=dual`, over the schedule flags); repeat it to test
    /// several against one plain run. Without it, the schedule flags are the one setting.
    #[arg(long = "setting", value_name = "SPEC", requires = "against_plain")]
    pub settings: Vec<String>,
    /// Generations per setting for `--against-plain` (seed i uses story prompt i), at least 1.
    #[arg(long, default_value_t = 20, allow_negative_numbers = true, value_parser = at_least_one)]
    pub seeds: usize,
    /// Word list for the English-word rate.
    #[arg(long, default_value = "/usr/share/dict/american-english")]
    pub words: PathBuf,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Keep what the token inspector keeps, as the playground does: every step's canvas and
    /// every scored position with its top-5 candidates (compare peak RSS with and without it).
    #[arg(long)]
    pub inspect: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub model: String,
    pub length: usize,
    pub steps: usize,
    pub block_length: usize,
    pub cache: CacheMode,
    pub parallel: Option<crate::sampler::Parallel>,
    pub runs: usize,
    pub forward_ms_median: f64,
    pub step_ms_median: f64,
    pub generation_ms_median: f64,
    pub tokens_per_s: f64,
    pub nfe: usize,
    /// Share of forward FLOPs the cache saved.
    pub flops_saved: f64,
    pub peak_rss_mb: f64,
    /// With `--inspect`: the bytes one run's step history holds (canvases, commits, scored
    /// positions and their candidates), counted from the data.
    pub inspector_mb: f64,
    /// The canvas's token count and the exact parameters the runs used, as planned
    /// (crate::run::plan, like every front end's).
    pub canvas_tokens: usize,
    pub params: SamplerParams,
}

#[derive(Debug, Clone, Serialize)]
pub struct ForwardReport {
    pub model: String,
    pub parameters: usize,
    pub length: usize,
    pub runs: usize,
    pub threads: usize,
    pub forward_ms_median: f64,
    pub forward_ms_min: f64,
    pub forward_ms_max: f64,
    pub peak_rss_mb: f64,
}

/// One setting's totals over the `--against-plain` generations.
#[derive(Debug, Clone, Serialize)]
pub struct SettingReport {
    pub wall_ms_total: f64,
    pub steps_mean: f64,
    pub nfe_mean: f64,
    pub flops_saved: f64,
    /// Generated positions equal to plain decoding's at the same prompt and seed.
    pub token_agreement: f64,
    pub word_rate: Option<f64>,
    /// Mean over generations of -sequence_nll (nats per generated token; higher is better).
    pub mean_log_likelihood: f64,
    /// Share of word trigrams that repeat an earlier trigram of the same sample (lower is better).
    pub repeated_trigrams: f64,
    pub samples: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ComparisonReport {
    pub model: String,
    pub length: usize,
    pub block_length: usize,
    pub seeds: usize,
    /// The story prompt of each seed (the samples continue them, in the same order).
    pub prompts: Vec<&'static str>,
    pub plain: SettingReport,
    pub tested: Vec<TestedReport>,
}

/// One tested setting against plain decoding.
#[derive(Debug, Clone, Serialize)]
pub struct TestedReport {
    pub name: String,
    pub block_length: usize,
    pub cache: CacheMode,
    pub parallel: Option<crate::sampler::Parallel>,
    #[serde(flatten)]
    pub report: SettingReport,
    /// plain wall time / tested wall time.
    pub speedup: f64,
    /// tested / plain, for the English-word rate and the mean log-likelihood (likelihoods are
    /// negative, so this is plain / tested there: above 1 is better).
    pub word_rate_ratio: Option<f64>,
    pub likelihood_ratio: f64,
}

/// Share of word trigrams (case-folded) that already occurred earlier in the same text.
pub use crate::train::eval::repeated_trigrams;

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => 0.0,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// Peak resident memory of this process (VmHWM), in MiB.
pub fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// A canvas of exactly `length` tokens: the prompt's tokens (cut if needed), then masks.
fn forward_canvas(
    codec: &TextCodec,
    prompt: &str,
    length: usize,
    mask_id: u32,
) -> Result<Vec<u32>> {
    let (mut canvas, _) =
        codec.encode_canvas(&prompt::parse(prompt)?, 0, mask_id, true, usize::MAX)?;
    canvas.truncate(length / 2);
    canvas.resize(length, mask_id);
    Ok(canvas)
}

pub fn run(mut args: BenchArgs) -> Result<()> {
    args.model.fetch_hub_model()?;
    if args.forward_only {
        return run_forward(&args);
    }
    if args.against_plain {
        return run_against_plain(&args);
    }
    let mut loaded = load_model(&args.model).map_err(usage)?;
    let info = loaded.model.info().clone();
    let settings = args.schedule.settings_for(&info).map_err(usage)?;
    let planned = plan::plan(
        &settings,
        Text::Plain(&args.prompt),
        Lanes::One,
        &loaded.codec,
        &info,
    )
    .map_err(usage)?;
    let canvas = planned.canvas;
    let (_, params) = planned
        .lanes
        .into_iter()
        .next()
        .ok_or_else(|| usage(anyhow!("nothing to run")))?;
    let traits = info.traits();
    let (mut forwards, mut steps, mut totals) = (Vec::new(), Vec::new(), Vec::new());
    let (mut nfe, mut saved) = (0, 0.0);
    // One run's step history, kept as the playground keeps its run (the last run's).
    let mut history: Vec<(Vec<u32>, StepReport)> = Vec::new();
    let mut inspector_bytes = 0;
    for run in 0..args.warmup + args.runs {
        let timed = run >= args.warmup;
        let mut sampler =
            Sampler::new(canvas.clone(), params.clone(), traits.clone()).map_err(usage)?;
        sampler.inspect(args.inspect);
        history.clear();
        let mut cache = KvCache::default();
        let start = Instant::now();
        loop {
            let step_start = Instant::now();
            let report = sampler.step(|request| {
                let t = Instant::now();
                let out = loaded.model.denoise(request, &mut cache);
                if timed {
                    forwards.push(t.elapsed().as_secs_f64() * 1e3);
                }
                out
            })?;
            let Some(report) = report else {
                break;
            };
            if timed {
                steps.push(step_start.elapsed().as_secs_f64() * 1e3);
            }
            if args.inspect {
                history.push((sampler.tokens().to_vec(), report));
            }
        }
        inspector_bytes = history_bytes(&history);
        if timed {
            totals.push(start.elapsed().as_secs_f64() * 1e3);
            nfe = sampler.nfe();
            saved = cache.saved();
        }
    }
    let generation_ms = median(&mut totals);
    let report = BenchReport {
        model: info.name,
        length: args.schedule.length,
        steps: params.steps,
        block_length: params.block_length,
        cache: params.cache,
        parallel: params.parallel,
        runs: args.runs,
        forward_ms_median: median(&mut forwards),
        step_ms_median: median(&mut steps),
        generation_ms_median: generation_ms,
        tokens_per_s: args.schedule.length as f64 / (generation_ms / 1e3),
        nfe,
        flops_saved: saved,
        peak_rss_mb: peak_rss_mb(),
        inspector_mb: inspector_bytes as f64 / (1 << 20) as f64,
        canvas_tokens: canvas.len(),
        params: params.clone(),
    };
    if args.json {
        outln!("{}", serde_json::to_string(&report)?);
    } else {
        outln!(
            "{}: length {} steps {} block {} cache {} ({} runs)\n  forward  {:.2} ms (median)\n  step     {:.2} ms (median)\n  total    {:.1} ms (median) = {:.1} tokens/s\n  nfe      {}\n  saved    {:.1}% of forward FLOPs\n  peak RSS {:.0} MiB",
            report.model, report.length, report.steps, report.block_length, report.cache.name(),
            report.runs, report.forward_ms_median, report.step_ms_median,
            report.generation_ms_median, report.tokens_per_s, report.nfe,
            report.flops_saved * 100.0, report.peak_rss_mb
        );
        if args.inspect {
            outln!("  inspector {:.2} MiB of step history", report.inspector_mb);
        }
    }
    Ok(())
}

/// Bytes a step history holds on the heap and inline (allocations counted at their capacity).
fn history_bytes(history: &[(Vec<u32>, StepReport)]) -> usize {
    use std::mem::size_of;
    history
        .iter()
        .map(|(canvas, report)| {
            size_of::<(Vec<u32>, StepReport)>()
                + canvas.capacity() * size_of::<u32>()
                + report.committed.capacity() * size_of::<crate::sampler::Commit>()
                + report.scored.capacity() * size_of::<crate::sampler::Scored>()
                + report
                    .scored
                    .iter()
                    .map(|s| s.top.capacity() * size_of::<(u32, f32)>())
                    .sum::<usize>()
        })
        .sum()
}

/// `--forward-only`: single forward passes at batch 1 over exactly `--length` tokens.
fn run_forward(args: &BenchArgs) -> Result<()> {
    let mut loaded = load_model(&args.model).map_err(usage)?;
    let info = loaded.model.info().clone();
    let length = args.schedule.length;
    if length == 0 || length > info.max_context {
        return Err(usage(anyhow!(
            "--length must be between 1 and {} for this model",
            info.max_context
        )));
    }
    let canvas = forward_canvas(&loaded.codec, &args.prompt, length, info.mask_id)?;
    let mut times = Vec::with_capacity(args.runs);
    for run in 0..args.warmup + args.runs {
        let start = Instant::now();
        std::hint::black_box(loaded.model.forward(&canvas)?);
        if run >= args.warmup {
            times.push(start.elapsed().as_secs_f64() * 1e3);
        }
    }
    let report = ForwardReport {
        model: info.name,
        parameters: info.parameters,
        length,
        runs: args.runs,
        threads: candle_core::utils::get_num_threads(),
        forward_ms_min: times.iter().copied().fold(f64::INFINITY, f64::min),
        forward_ms_max: times.iter().copied().fold(0.0, f64::max),
        forward_ms_median: median(&mut times),
        peak_rss_mb: peak_rss_mb(),
    };
    if args.json {
        outln!("{}", serde_json::to_string(&report)?);
    } else {
        outln!(
            "{}: forward over {} tokens, {} threads ({} runs)\n  median {:.2} ms  min {:.2} ms  max {:.2} ms\n  peak RSS {:.0} MiB",
            report.model, report.length, report.threads, report.runs, report.forward_ms_median,
            report.forward_ms_min, report.forward_ms_max, report.peak_rss_mb
        );
    }
    Ok(())
}

/// One generation's outcome.
struct Generated {
    tokens: Vec<u32>,
    wall_ms: f64,
    steps: usize,
    nfe: usize,
    saved: f64,
}

fn generate_once(
    model: &mut dyn Denoiser,
    canvas: &[u32],
    params: &SamplerParams,
) -> Result<Generated> {
    let traits = model.info().traits();
    let mut sampler = Sampler::new(canvas.to_vec(), params.clone(), traits)?;
    let mut cache = KvCache::default();
    let start = Instant::now();
    let mut steps = 0;
    while sampler
        .step(|request| model.denoise(request, &mut cache))?
        .is_some()
    {
        steps += 1;
    }
    Ok(Generated {
        wall_ms: start.elapsed().as_secs_f64() * 1e3,
        tokens: sampler.tokens().to_vec(),
        steps,
        nfe: sampler.nfe(),
        saved: cache.saved(),
    })
}

/// `--against-plain`: the configured settings and plain decoding on the same prompts and seeds.
fn run_against_plain(args: &BenchArgs) -> Result<()> {
    let mut loaded = load_model(&args.model).map_err(usage)?;
    let info = loaded.model.info().clone();
    let length = args.schedule.length;
    let base = args.schedule.sampler_params(length).map_err(usage)?;
    let plain = SamplerParams {
        steps: length,
        schedule: Schedule::Uniform,
        parallel: None,
        cache: CacheMode::None,
        ..base.clone()
    };
    let mut tested: Vec<(String, SamplerParams)> = Vec::new();
    for spec in &args.settings {
        let lane = LaneSpec::try_from(spec.clone())
            .map_err(|e| usage(anyhow!("--setting {spec:?}: {e}")))?;
        let shared = Settings {
            params: base.clone(),
            length,
            steps: Some(base.steps),
            compare: Vec::new(),
            advance_seed: false,
            sweep: 0,
        };
        let lane_settings = lane
            .apply(&shared)
            .map_err(|e| usage(anyhow!("--setting {spec:?}: {e}")))?;
        let mut params = lane_settings.params;
        params.steps = lane_settings.steps.unwrap_or(length);
        params.validate().map_err(usage)?;
        tested.push((spec.clone(), params));
    }
    if tested.is_empty() {
        tested.push(("given".into(), base.clone()));
    }
    let dictionary = Some(load_dictionary(&args.words).map_err(usage)?);
    let settings: Vec<&SamplerParams> = std::iter::once(&plain)
        .chain(tested.iter().map(|(_, p)| p))
        .collect();
    let mut outcomes: Vec<Vec<(Generated, usize)>> = settings.iter().map(|_| Vec::new()).collect();
    // Seed s continues story prompt s (cycling); the report names them.
    let prompts: Vec<&'static str> = (0..args.seeds)
        .map(|seed| STORY_PROMPTS[seed % STORY_PROMPTS.len()])
        .collect();
    for (seed, &prompt) in prompts.iter().enumerate() {
        let (canvas, prompt_len) = plan::canvas(
            &args.schedule.settings().map_err(usage)?,
            Text::Plain(prompt),
            &loaded.codec,
            &info,
        )
        .map_err(usage)?;
        for (i, params) in settings.iter().enumerate() {
            let params = SamplerParams {
                seed: seed as u64,
                ..(*params).clone()
            };
            if seed == 0 {
                // Warm-up, untimed.
                generate_once(loaded.model.as_mut(), &canvas, &params)?;
            }
            outcomes[i].push((
                generate_once(loaded.model.as_mut(), &canvas, &params)?,
                prompt_len,
            ));
        }
    }
    let codec = &loaded.codec;
    let mut summarise =
        |runs: &[(Generated, usize)], reference: &[(Generated, usize)]| -> Result<SettingReport> {
            let n = runs.len().max(1) as f64;
            let (mut agree, mut total, mut likelihood) = (0usize, 0usize, 0.0);
            let mut all_words = Vec::new();
            let mut samples = Vec::new();
            let mut repeated = 0.0;
            for ((g, prompt_len), (r, _)) in runs.iter().zip(reference) {
                let region = *prompt_len..g.tokens.len();
                agree += region
                    .clone()
                    .filter(|&p| g.tokens[p] == r.tokens[p])
                    .count();
                total += region.len();
                likelihood -= sequence_nll(loaded.model.as_mut(), &g.tokens, region.clone(), 16)?;
                let text = codec.decode(&g.tokens[region], true);
                let sample_words = words(&text);
                repeated += repeated_trigrams(&sample_words);
                all_words.extend(sample_words);
                samples.push(text);
            }
            Ok(SettingReport {
                wall_ms_total: runs.iter().map(|(g, _)| g.wall_ms).sum(),
                steps_mean: runs.iter().map(|(g, _)| g.steps as f64).sum::<f64>() / n,
                nfe_mean: runs.iter().map(|(g, _)| g.nfe as f64).sum::<f64>() / n,
                flops_saved: runs.iter().map(|(g, _)| g.saved).sum::<f64>() / n,
                token_agreement: agree as f64 / total.max(1) as f64,
                word_rate: dictionary.as_ref().map(|d| dictionary_rate(&all_words, d)),
                mean_log_likelihood: likelihood / n,
                repeated_trigrams: repeated / n,
                samples,
            })
        };
    let plain_report = summarise(&outcomes[0], &outcomes[0])?;
    let mut tested_reports = Vec::new();
    for ((name, params), runs) in tested.iter().zip(&outcomes[1..]) {
        let report = summarise(runs, &outcomes[0])?;
        tested_reports.push(TestedReport {
            name: name.clone(),
            block_length: params.block_length,
            cache: params.cache,
            parallel: params.parallel,
            speedup: plain_report.wall_ms_total / report.wall_ms_total,
            word_rate_ratio: plain_report
                .word_rate
                .zip(report.word_rate)
                .map(|(p, t)| t / p),
            likelihood_ratio: plain_report.mean_log_likelihood / report.mean_log_likelihood,
            report,
        });
    }
    let report = ComparisonReport {
        model: info.name,
        length,
        block_length: base.block_length,
        seeds: args.seeds,
        prompts,
        plain: plain_report,
        tested: tested_reports,
    };
    if args.json {
        outln!("{}", serde_json::to_string(&report)?);
    } else {
        let row = |name: &str, s: &SettingReport| {
            format!(
                "  {name:<40} {:>9.0} ms {:>7.1} steps {:>7.1} nfe {:>5.1}% saved  agree {:>5.1}%  words {}  loglik {:.3}  repeats {:.1}%",
                s.wall_ms_total, s.steps_mean, s.nfe_mean, s.flops_saved * 100.0,
                s.token_agreement * 100.0,
                s.word_rate.map_or("n/a".into(), |w| format!("{:.1}%", w * 100.0)),
                s.mean_log_likelihood, s.repeated_trigrams * 100.0
            )
        };
        outln!(
            "{}: length {} block {}, {} prompts\n{}",
            report.model,
            report.length,
            report.block_length,
            report.seeds,
            row("plain", &report.plain)
        );
        for t in &report.tested {
            outln!(
                "{}\n    speed-up {:.2}x  word-rate ratio {}  likelihood ratio {:.3}",
                row(&t.name, &t.report),
                t.speedup,
                t.word_rate_ratio
                    .map_or("n/a".into(), |r| format!("{r:.3}")),
                t.likelihood_ratio
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(&mut []), 0.0);
        let w = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
        assert_eq!(repeated_trigrams(&w("a b c a b c")), 0.25);
        assert_eq!(repeated_trigrams(&w("The cat sat the cat sat")), 0.25);
        assert_eq!(repeated_trigrams(&w("a b")), 0.0);
        assert!(peak_rss_mb() > 1.0);
    }
}
