//! The embedded model's quality bars (issue "Embedded model v2"), measured on the committed model
//! the way `dlm-tui eval` measures it, so a later retrain cannot make it worse unnoticed:
//! - the held-out NLL bound in bits per character on the held-out split (the last 5% of the
//!   stories) of `../shared/corpus/tinystories-4m.txt`, stories never trained on;
//! - eval's 20 greedy samples (64 tokens after story prompts, low-confidence, 64 steps, blocks of
//!   32): the share of repeated word trigrams and of dictionary words (Debian's wamerican);
//! - the playground's default parameters (the same 20 prompts and seeds) keep at least 95%
//!   dictionary words and at most 15% repeated word trigrams (the repetition target,
//!   which the defaults were chosen to meet).
//!
//! The bars are the committed model's own figures (models/default/MODEL_CARD.md) rounded
//! against it; the targets are noted beside them.

use std::path::{Path, PathBuf};

use candle_core::Device;
use dlm_tui::model::embedded;
use dlm_tui::model::loader::Precision;
use dlm_tui::run::Settings;
use dlm_tui::sampler::SamplerParams;
use dlm_tui::train::corpus::{read_stories, split, TokenStream};
use dlm_tui::train::eval::{
    dictionary_rate, load_dictionary, repeated_trigrams, sample, words, STORY_PROMPTS,
};
use dlm_tui::train::objective::heldout_nll;

/// Held-out bound, bits/char, on the 24 windows measured here: the committed model gives 1.3266
/// (the previous ones 1.3372, 1.3485, 1.3688 and 1.4109, stage 1 about 1.57); the target is 1.15.
const MAX_BITS_PER_CHAR: f64 = 1.335;
/// Repeated word trigrams in the greedy samples: the committed model gives 27.1% (the previous
/// ones 33.4%, 32.6%, 36.6% and 35.0%, stage 1 26.6%: greedy decoding walks into the model's
/// favourite phrases; the playground's sampled defaults repeat 12.0%); the target is 15%.
const MAX_REPEATED_TRIGRAMS: f64 = 0.28;
/// Dictionary words in the greedy samples: 100.0% now; the target is 99%.
const MIN_WORD_RATE: f64 = 0.99;
/// Repeated word trigrams in the playground defaults' samples: the committed model's defaults give
/// 12.0% (scripts/choose_defaults.py, in the model card; the previous model's 9.0%); the issue's
/// target is 15%.
const MAX_DEFAULTS_REPEATED_TRIGRAMS: f64 = 0.15;

fn corpus() -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus/tinystories-4m.txt");
    assert!(
        path.is_file(),
        "{} is missing: the quality bars are measured on the held-out split of the training corpus \
         in ../shared/corpus/ (beside the checkout)",
        path.display()
    );
    path
}

fn dictionary() -> std::collections::HashSet<String> {
    load_dictionary(Path::new("/usr/share/dict/american-english"))
        .expect("apt-get install wamerican (the .ci/run script does)")
}

/// `length` tokens after each story prompt, seed i for prompt i, with the parameters `params`
/// gives for a seed: the mean share of repeated word trigrams per sample, and all the words.
fn story_samples(length: usize, params: impl Fn(u64) -> SamplerParams) -> (f64, Vec<String>) {
    let (mut model, codec) = embedded::load_llada(Precision::F32, &Device::Cpu).unwrap();
    let mut all = Vec::new();
    let mut repeats = 0.0;
    for (seed, prompt) in STORY_PROMPTS.iter().enumerate() {
        let text = sample(&mut model, &codec, prompt, &params(seed as u64), length).unwrap();
        let w = words(&text);
        repeats += repeated_trigrams(&w);
        all.extend(w);
    }
    (repeats / STORY_PROMPTS.len() as f64, all)
}

#[test]
fn heldout_bound_stays_below_the_bar() {
    let (model, codec) = embedded::load_llada(Precision::F32, &Device::Cpu).unwrap();
    let cfg = model.config().clone();
    let stories = read_stories(&corpus()).unwrap();
    let (_, held_out) = split(&stories, 0.05);
    let eos = cfg.eos_token_id.unwrap_or_default();
    let val = TokenStream::encode(&codec, held_out, eos).unwrap();
    let windows = val.windows(256, 24);
    assert_eq!(windows.len(), 24);
    let chars: usize = windows
        .iter()
        .map(|w| codec.decode(w, false).chars().count())
        .sum();
    let nats = heldout_nll(&model, &windows, cfg.mask_token_id.unwrap(), 8, 8).unwrap();
    let bits_per_char = nats / chars as f64 / std::f64::consts::LN_2;
    eprintln!("held-out bound: {bits_per_char:.4} bits/char");
    assert!(
        bits_per_char <= MAX_BITS_PER_CHAR,
        "held-out bound {bits_per_char:.4} bits/char, bar {MAX_BITS_PER_CHAR}"
    );
}

#[test]
fn greedy_samples_are_words_and_rarely_repeat() {
    let dictionary = dictionary();
    // `dlm-tui eval`'s samples.
    let (repeats, all) = story_samples(64, |seed| SamplerParams {
        steps: 64,
        block_length: 32,
        temperature: 0.0,
        seed,
        ..SamplerParams::default()
    });
    let rate = dictionary_rate(&all, &dictionary);
    eprintln!(
        "greedy samples: {:.2}% repeated trigrams, {:.2}% dictionary words",
        100.0 * repeats,
        100.0 * rate
    );
    assert!(all.len() > 400, "too few words: {}", all.len());
    assert!(
        repeats <= MAX_REPEATED_TRIGRAMS,
        "{:.1}% repeated trigrams, bar {:.0}%",
        100.0 * repeats,
        100.0 * MAX_REPEATED_TRIGRAMS
    );
    assert!(
        rate >= MIN_WORD_RATE,
        "only {:.1}% dictionary words, bar {:.1}%",
        100.0 * rate,
        100.0 * MIN_WORD_RATE
    );
}

#[test]
fn the_playground_defaults_write_dictionary_words_and_rarely_repeat() {
    let dictionary = dictionary();
    let defaults = Settings::default();
    let (repeats, all) = story_samples(defaults.length, |seed| SamplerParams {
        steps: defaults.steps.unwrap_or(defaults.length),
        seed,
        ..defaults.params.clone()
    });
    assert!(all.len() > 400, "too few words: {}", all.len());
    let rate = dictionary_rate(&all, &dictionary);
    eprintln!(
        "default-parameter samples: {:.2}% repeated trigrams, {:.2}% dictionary words",
        100.0 * repeats,
        100.0 * rate
    );
    assert!(rate >= 0.95, "only {:.1}% dictionary words", 100.0 * rate);
    assert!(
        repeats <= MAX_DEFAULTS_REPEATED_TRIGRAMS,
        "{:.1}% repeated trigrams with the defaults, bar {:.0}%",
        100.0 * repeats,
        100.0 * MAX_DEFAULTS_REPEATED_TRIGRAMS
    );
}
