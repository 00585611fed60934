//! `dlm-tui bench`: warm-up runs, then timed generations on one model; medians of forward
//! latency and step time, tokens per second, forward passes and peak memory.

use std::time::Instant;

use anyhow::Result;
use clap::Args;
use serde::Serialize;

use super::generate::{build_canvas, load_model};
use super::{usage, ModelArgs};
use crate::sampler::{ModelTraits, Sampler, SamplerParams, Strategy};

#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Masked tokens generated after the prompt.
    #[arg(long, default_value_t = 128)]
    pub length: usize,
    /// Denoising steps (default: one per masked token).
    #[arg(long)]
    pub steps: Option<usize>,
    #[arg(long, default_value_t = 32)]
    pub block_length: usize,
    #[arg(long, value_enum, default_value_t = Strategy::LowConfidence)]
    pub strategy: Strategy,
    #[arg(
        long,
        default_value = "Once upon a time, there was a little girl named Lily."
    )]
    pub prompt: String,
    /// Untimed generations first.
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,
    /// Timed generations.
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub model: String,
    pub length: usize,
    pub steps: usize,
    pub block_length: usize,
    pub runs: usize,
    pub forward_ms_median: f64,
    pub step_ms_median: f64,
    pub generation_ms_median: f64,
    pub tokens_per_s: f64,
    pub nfe: usize,
    pub peak_rss_mb: f64,
}

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

pub fn run(args: BenchArgs) -> Result<()> {
    let mut loaded = load_model(&args.model).map_err(usage)?;
    let info = loaded.model.info().clone();
    let (canvas, _) =
        build_canvas(&loaded.codec, &args.prompt, args.length, info.mask_id).map_err(usage)?;
    let params = SamplerParams {
        steps: args.steps.unwrap_or(args.length.max(1)),
        block_length: args.block_length,
        strategy: args.strategy,
        ..SamplerParams::default()
    };
    params.validate().map_err(usage)?;
    let traits = ModelTraits {
        mask_id: info.mask_id,
        shift_logits: info.shift_logits,
    };
    let (mut forwards, mut steps, mut totals) = (Vec::new(), Vec::new(), Vec::new());
    let mut nfe = 0;
    for run in 0..args.warmup + args.runs {
        let timed = run >= args.warmup;
        let mut sampler =
            Sampler::new(canvas.clone(), params.clone(), traits.clone()).map_err(usage)?;
        let start = Instant::now();
        loop {
            let step_start = Instant::now();
            let report = sampler.step(|inputs| {
                let t = Instant::now();
                let out = loaded.model.forward_batch(inputs);
                if timed {
                    forwards.push(t.elapsed().as_secs_f64() * 1e3);
                }
                out
            })?;
            if report.is_none() {
                break;
            }
            if timed {
                steps.push(step_start.elapsed().as_secs_f64() * 1e3);
            }
        }
        if timed {
            totals.push(start.elapsed().as_secs_f64() * 1e3);
            nfe = sampler.nfe();
        }
    }
    let generation_ms = median(&mut totals);
    let report = BenchReport {
        model: info.name,
        length: args.length,
        steps: params.steps,
        block_length: params.block_length,
        runs: args.runs,
        forward_ms_median: median(&mut forwards),
        step_ms_median: median(&mut steps),
        generation_ms_median: generation_ms,
        tokens_per_s: args.length as f64 / (generation_ms / 1e3),
        nfe,
        peak_rss_mb: peak_rss_mb(),
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "{}: length {} steps {} block {} ({} runs)\n  forward  {:.2} ms (median)\n  step     {:.2} ms (median)\n  total    {:.1} ms (median) = {:.1} tokens/s\n  nfe      {}\n  peak RSS {:.0} MiB",
            report.model, report.length, report.steps, report.block_length, report.runs,
            report.forward_ms_median, report.step_ms_median, report.generation_ms_median,
            report.tokens_per_s, report.nfe, report.peak_rss_mb
        );
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
        assert!(peak_rss_mb() > 1.0);
    }
}
