//! `dlm-tui eval`: the numbers of the default model's card. Held-out NLL bound against a unigram
//! baseline, samples after story prompts with their dictionary-word rate, and per-step latency.

use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use candle_core::Device;
use clap::Args;
use serde::Serialize;

use super::corpus::{read_stories, split, TokenStream};
use super::objective::heldout_nll;
use crate::model::llada::Llada;
use crate::model::loader::Precision;
use crate::model::Denoiser;
use crate::sampler::{Sampler, SamplerParams};
use crate::text::TextCodec;

/// Prompts the quality bar is measured on: openings in the style of the corpus.
pub const STORY_PROMPTS: [&str; 20] = [
    "Once upon a time, there was a little girl named Lily.",
    "One day, Tom went to the park with his mom.",
    "Once upon a time, there was a big dog.",
    "Sara had a red ball. She",
    "The sun was shining and the birds were singing.",
    "Once upon a time, in a small house, there lived a cat.",
    "Ben and Mia were best friends.",
    "One day, a little bird fell from a tree.",
    "Lily wanted to bake a cake for her mom.",
    "There was a boy who loved to play with his toys.",
    "Once upon a time, there was a kind old man.",
    "The little fish swam in the big blue sea.",
    "Max found a shiny rock in the garden.",
    "It was a rainy day, and Sue was sad.",
    "Once upon a time, a bunny lived in the woods.",
    "Tim and his dad went to the store.",
    "Anna saw a big box in her room.",
    "One morning, a little frog woke up early.",
    "The king had a beautiful garden.",
    "Once upon a time, there was a girl who liked to sing.",
];

#[derive(Debug, Clone, Args)]
pub struct EvalArgs {
    /// The model folder to evaluate (default: the embedded model).
    #[arg(long)]
    pub model_dir: Option<PathBuf>,
    /// The corpus it was trained on (the held-out split is evaluated).
    #[arg(long)]
    pub corpus: PathBuf,
    #[arg(long, default_value_t = 0.05)]
    pub val_fraction: f64,
    /// Held-out windows of this many tokens.
    #[arg(long, default_value_t = 256)]
    pub seq_len: usize,
    #[arg(long, default_value_t = 48)]
    pub eval_windows: usize,
    /// Tokens generated after each prompt.
    #[arg(long, default_value_t = 64)]
    pub length: usize,
    #[arg(long, default_value_t = 64)]
    pub steps: usize,
    #[arg(long, default_value_t = 32)]
    pub block_length: usize,
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f64,
    /// A word list, one word per line (Debian's wamerican).
    #[arg(long, default_value = "/usr/share/dict/american-english")]
    pub words: PathBuf,
    /// Write the report as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Only the samples and their word rate (to compare generation settings quickly).
    #[arg(long)]
    pub samples_only: bool,
    /// Held-out spans masked and filled for the infilling figure (0: skip it).
    #[arg(long, default_value_t = 64)]
    pub infill_spans: usize,
    /// Tokens per infilled span.
    #[arg(long, default_value_t = 8)]
    pub infill_span: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub parameters: usize,
    #[serde(serialize_with = "nan_as_null")]
    pub heldout_nll_per_token: f64,
    #[serde(serialize_with = "nan_as_null")]
    pub heldout_bits_per_char: f64,
    pub unigram_nll_per_token: f64,
    pub word_rate: f64,
    pub words_checked: usize,
    /// Mean over the samples of the share of word trigrams that repeat within a sample.
    pub repeated_trigrams: f64,
    pub samples: Vec<String>,
    pub step_ms_len128_median: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub infill: Option<InfillReport>,
}

/// Infilling on held-out text: spans of `span` tokens are masked in windows of `context`
/// tokens and filled greedily; how many of the original tokens come back exactly.
#[derive(Debug, Clone, Serialize)]
pub struct InfillReport {
    pub spans: usize,
    pub span: usize,
    pub context: usize,
    /// Confidence-ordered filling (low-confidence remasking, one block, one token per step).
    pub exact_rate: f64,
    /// The same model filling strictly left to right (blocks of one token).
    pub left_to_right_rate: f64,
    /// Every masked token guessed as the training split's most frequent token.
    pub unigram_rate: f64,
}

/// The share of word trigrams of `words` (lower-cased) seen earlier in the same text.
pub fn repeated_trigrams(words: &[String]) -> f64 {
    let lower: Vec<String> = words.iter().map(|w| w.to_lowercase()).collect();
    let trigrams: Vec<&[String]> = lower.windows(3).collect();
    if trigrams.is_empty() {
        return 0.0;
    }
    let mut seen = HashSet::new();
    let repeats = trigrams.iter().filter(|t| !seen.insert(**t)).count();
    repeats as f64 / trigrams.len() as f64
}

/// Masks `span` tokens in the middle part of each held-out window of `context` tokens (at a
/// seeded position) and fills them greedily in confidence order and left to right.
pub fn infill(
    model: &mut Llada,
    heldout: &[u32],
    train: &[u32],
    spans: usize,
    span: usize,
    context: usize,
) -> Result<InfillReport> {
    use rand::{Rng, SeedableRng};
    let info = model.info().clone();
    let mut counts: HashMap<u32, usize> = HashMap::new();
    for &t in train {
        *counts.entry(t).or_default() += 1;
    }
    let most_common = counts
        .into_iter()
        .max_by_key(|&(t, n)| (n, std::cmp::Reverse(t)))
        .map_or(0, |(t, _)| t);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0x1f11);
    let (mut exact, mut l2r, mut unigram, mut total) = (0usize, 0usize, 0usize, 0usize);
    let windows: Vec<&[u32]> = heldout.chunks_exact(context).take(spans).collect();
    for window in &windows {
        let start = rng.random_range(context / 4..context * 3 / 4 - span);
        let truth = &window[start..start + span];
        let mut canvas = window.to_vec();
        canvas[start..start + span].fill(info.mask_id);
        for (block_length, hits) in [(span, &mut exact), (1, &mut l2r)] {
            let params = SamplerParams {
                steps: span,
                block_length,
                temperature: 0.0,
                ..SamplerParams::default()
            };
            let mut sampler = Sampler::new(canvas.clone(), params, info.traits())?;
            let mut cache = crate::model::KvCache::default();
            sampler.run_to_end(|request| model.denoise(request, &mut cache))?;
            *hits += sampler.tokens()[start..start + span]
                .iter()
                .zip(truth)
                .filter(|(a, b)| a == b)
                .count();
        }
        unigram += truth.iter().filter(|&&t| t == most_common).count();
        total += span;
    }
    let rate = |n: usize| n as f64 / total.max(1) as f64;
    Ok(InfillReport {
        spans: windows.len(),
        span,
        context,
        exact_rate: rate(exact),
        left_to_right_rate: rate(l2r),
        unigram_rate: rate(unigram),
    })
}

fn nan_as_null<S: serde::Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
    if v.is_nan() {
        s.serialize_none()
    } else {
        s.serialize_f64(*v)
    }
}

/// Words of a text as the dictionary check sees them: letters and apostrophes.
pub fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !(c.is_alphabetic() || c == '\''))
        .map(|w| w.trim_matches('\''))
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect()
}

/// The share of `words` found in the dictionary (case-insensitively; possessives allowed).
pub fn dictionary_rate(words: &[String], dictionary: &HashSet<String>) -> f64 {
    if words.is_empty() {
        return 0.0;
    }
    let known = words
        .iter()
        .filter(|w| {
            let lower = w.to_lowercase();
            dictionary.contains(&lower)
                || lower
                    .strip_suffix("'s")
                    .is_some_and(|stem| dictionary.contains(stem))
        })
        .count();
    known as f64 / words.len() as f64
}

pub fn load_dictionary(path: &Path) -> Result<HashSet<String>> {
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "reading the word list {} (apt-get install wamerican)",
            path.display()
        )
    })?;
    Ok(text.lines().map(|w| w.trim().to_lowercase()).collect())
}

/// Negative ELBO per token of `tokens[region]` given the rest of the canvas: for `strata` mask
/// levels t = (k + 1/2) / strata, each region token is masked with probability t (fixed seed) and
/// the masked tokens' cross-entropy is weighted by 1/t; averaged over the levels and divided by
/// the region's length. It bounds -log p(region | rest) / len from above, so a lower value means
/// the model finds the text more likely: comparable between samples of one model. One batched
/// forward pass per call.
pub fn sequence_nll(
    model: &mut dyn Denoiser,
    tokens: &[u32],
    region: Range<usize>,
    strata: usize,
) -> Result<f64> {
    use rand::{Rng, SeedableRng};
    if region.is_empty() || strata == 0 {
        return Ok(0.0);
    }
    let mask_id = model.info().mask_id;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0x11e1);
    let mut canvases = Vec::with_capacity(strata);
    let mut levels = Vec::with_capacity(strata);
    for k in 0..strata {
        let t = (k as f64 + 0.5) / strata as f64;
        let mut canvas = tokens.to_vec();
        for pos in region.clone() {
            if rng.random::<f64>() < t {
                canvas[pos] = mask_id;
            }
        }
        canvases.push(canvas);
        levels.push(t);
    }
    let logits = model.forward_batch(&canvases)?;
    let mut total = 0.0;
    for ((canvas, t), rows) in canvases.iter().zip(&levels).zip(&logits) {
        for pos in region.clone().filter(|&p| canvas[p] == mask_id) {
            let row = rows.row(pos);
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
            let log_z = max
                + row
                    .iter()
                    .map(|&v| (v as f64 - max).exp())
                    .sum::<f64>()
                    .ln();
            total += (log_z - row[tokens[pos] as usize] as f64) / t;
        }
    }
    Ok(total / strata as f64 / region.len() as f64)
}

/// Cross-entropy per token of a unigram model fitted on `train` (add-one smoothing).
pub fn unigram_nll(train: &[u32], heldout: &[u32], vocab: usize) -> f64 {
    let mut counts: HashMap<u32, f64> = HashMap::new();
    for &t in train {
        *counts.entry(t).or_default() += 1.0;
    }
    let total = train.len() as f64 + vocab as f64;
    let nll: f64 = heldout
        .iter()
        .map(|t| -((counts.get(t).copied().unwrap_or(0.0) + 1.0) / total).ln())
        .sum();
    nll / heldout.len() as f64
}

/// Generates after `prompt` with the given parameters; returns the generated text only.
pub fn sample(
    model: &mut Llada,
    codec: &TextCodec,
    prompt: &str,
    params: &SamplerParams,
    length: usize,
) -> Result<String> {
    let info = model.info().clone();
    let mut canvas = codec.encode(prompt, false)?;
    let prompt_len = canvas.len();
    canvas.extend(std::iter::repeat_n(info.mask_id, length));
    let mut sampler = Sampler::new(canvas, params.clone(), info.traits())?;
    let mut cache = crate::model::KvCache::default();
    sampler.run_to_end(|request| model.denoise(request, &mut cache))?;
    Ok(codec.decode(&sampler.tokens()[prompt_len..], true))
}

pub fn run(args: EvalArgs) -> Result<()> {
    let device = Device::Cpu;
    let (mut model, codec) = match &args.model_dir {
        Some(dir) => crate::model::loader::load_llada_dir(dir, Precision::F32, &device)?,
        None => crate::model::embedded::load_llada(Precision::F32, &device)?,
    };
    let cfg = model.config().clone();
    let mask_id = cfg.mask_token_id.unwrap_or_default();
    let eos = cfg.eos_token_id.unwrap_or_default();

    let stories = read_stories(&args.corpus)?;
    let (train_stories, val_stories) = split(&stories, args.val_fraction);
    let train = TokenStream::encode(&codec, train_stories, eos)?;
    let val = TokenStream::encode(&codec, val_stories, eos)?;
    let windows = val.windows(args.seq_len, args.eval_windows);
    let chars: usize = windows
        .iter()
        .map(|w| codec.decode(w, false).chars().count())
        .sum();
    let nats = if args.samples_only {
        f64::NAN
    } else {
        heldout_nll(&model, &windows, mask_id, 8, 8)?
    };
    let eval_tokens: Vec<u32> = windows.iter().flatten().copied().collect();
    let report_nll = nats / eval_tokens.len() as f64;
    let unigram = unigram_nll(&train.ids, &eval_tokens, codec.vocab_size());

    let dictionary = load_dictionary(&args.words)?;
    let mut samples = Vec::new();
    let mut all_words = Vec::new();
    for (seed, prompt) in STORY_PROMPTS.iter().enumerate() {
        let params = SamplerParams {
            steps: args.steps,
            block_length: args.block_length,
            temperature: args.temperature,
            seed: seed as u64,
            ..SamplerParams::default()
        };
        let text = sample(&mut model, &codec, prompt, &params, args.length)?;
        all_words.extend(words(&text));
        samples.push(format!("{prompt}{text}"));
    }
    let word_rate = dictionary_rate(&all_words, &dictionary);
    let repeats = samples
        .iter()
        .zip(STORY_PROMPTS)
        .map(|(s, p)| repeated_trigrams(&words(&s[p.len()..])))
        .sum::<f64>()
        / samples.len() as f64;
    let infill_report = if args.samples_only || args.infill_spans == 0 {
        None
    } else {
        Some(infill(
            &mut model,
            &val.ids,
            &train.ids,
            args.infill_spans,
            args.infill_span,
            128,
        )?)
    };

    // Per-step latency at length 128 (prompt + masks), median of 16 forward passes.
    let step_ms = {
        use crate::model::Denoiser;
        let canvas: Vec<u32> = (0..128)
            .map(|i| if i < 16 { 100 + i } else { mask_id })
            .collect();
        let mut times = Vec::new();
        for _ in 0..18 {
            let start = Instant::now();
            model.forward(&canvas)?;
            times.push(start.elapsed().as_secs_f64() * 1e3);
        }
        times.drain(..2);
        times.sort_by(f64::total_cmp);
        times[times.len() / 2]
    };

    let report = Report {
        parameters: cfg.parameter_count(),
        heldout_nll_per_token: report_nll,
        heldout_bits_per_char: nats / chars as f64 / std::f64::consts::LN_2,
        unigram_nll_per_token: unigram,
        word_rate,
        words_checked: all_words.len(),
        repeated_trigrams: repeats,
        samples,
        step_ms_len128_median: step_ms,
        infill: infill_report,
    };
    println!(
        "held-out NLL bound: {:.4} nats/token ({:.4} bits/char); unigram baseline {:.4} nats/token",
        report.heldout_nll_per_token, report.heldout_bits_per_char, report.unigram_nll_per_token
    );
    println!(
        "dictionary words: {:.1}% of {} words in 20 samples",
        100.0 * word_rate,
        all_words.len()
    );
    println!(
        "repeated word trigrams: {:.1}% (mean over the samples)",
        100.0 * repeats
    );
    if let Some(i) = &report.infill {
        println!(
            "infilling ({} spans of {} tokens in {}-token held-out windows): {:.1}% exact \
             (confidence order), {:.1}% left to right, {:.1}% unigram baseline",
            i.spans,
            i.span,
            i.context,
            100.0 * i.exact_rate,
            100.0 * i.left_to_right_rate,
            100.0 * i.unigram_rate
        );
    }
    println!("forward pass at length 128: {:.2} ms (median)", step_ms);
    for s in report.samples.iter().take(5) {
        println!("---\n{s}");
    }
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_and_dictionary_rate() {
        let w = words("Lily's dog ran, \"fast!\" xqzt and 'ok'");
        assert_eq!(w, vec!["Lily's", "dog", "ran", "fast", "xqzt", "and", "ok"]);
        let dict: HashSet<String> = ["lily", "dog", "ran", "fast", "and", "ok"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert!((dictionary_rate(&w, &dict) - 6.0 / 7.0).abs() < 1e-9);
    }

    #[test]
    fn repeated_trigrams_count_repeats_within_a_text() {
        let w = |t: &str| words(t);
        assert_eq!(repeated_trigrams(&w("one two three four")), 0.0);
        // "they are happy" x3: 7 trigrams, the last 5 seen before... count them.
        let r = repeated_trigrams(&w("They are happy. They are happy. They are happy."));
        assert!((r - 4.0 / 7.0).abs() < 1e-12, "{r}");
        assert_eq!(repeated_trigrams(&w("too short")), 0.0);
    }

    #[test]
    fn unigram_baseline_is_the_smoothed_cross_entropy() {
        let nll = unigram_nll(&[1, 1, 2], &[1], 3);
        // p(1) = (2 + 1) / (3 + 3)
        assert!((nll - (6.0f64 / 3.0).ln()).abs() < 1e-12);
    }
}
