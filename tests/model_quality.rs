//! The embedded model's quality bar: at least 95% of the words in 20 samples (64 tokens after
//! story prompts, the playground's default parameters, seeds 0-19) are in Debian's wamerican word
//! list.

use std::path::Path;

use candle_core::Device;
use dlm_tui::model::embedded;
use dlm_tui::model::loader::Precision;
use dlm_tui::sampler::SamplerParams;
use dlm_tui::train::eval::{dictionary_rate, load_dictionary, sample, words, STORY_PROMPTS};
use dlm_tui::tui::app::Settings;

#[test]
fn samples_are_dictionary_words() {
    let dictionary = load_dictionary(Path::new("/usr/share/dict/american-english"))
        .expect("apt-get install wamerican (the .ci/run script does)");
    let (mut model, codec) = embedded::load_llada(Precision::F32, &Device::Cpu).unwrap();
    let mut all = Vec::new();
    for (seed, prompt) in STORY_PROMPTS.iter().enumerate() {
        // The defaults chosen in models/default/MODEL_CARD.md, one step per token.
        let defaults = Settings::default();
        assert_eq!(defaults.length, 64);
        let params = SamplerParams {
            steps: defaults.steps.unwrap_or(64),
            seed: seed as u64,
            ..defaults.params
        };
        let text = sample(&mut model, &codec, prompt, &params, 64).unwrap();
        all.extend(words(&text));
    }
    assert!(all.len() > 400, "too few words: {}", all.len());
    let rate = dictionary_rate(&all, &dictionary);
    assert!(rate >= 0.95, "only {:.1}% dictionary words", 100.0 * rate);
}
