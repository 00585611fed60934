//! Golden tests for ModernBERT masked LMs (the architecture of dLLM's ModernBERT chat DLMs),
//! against tiny models built by transformers' `ModernBertForMaskedLM`
//! (tests/fixtures/make_modernbert_fixtures.py): logits within 1e-4, with sliding-window layers
//! that matter on these canvases, and LLaDA's `generate.py` on them token for token.

mod common;

use common::{fixtures, golden, ids, model_and_canvas};

use candle_core::Device;
use dlm_tui::model::loader::{load_dir, Precision};
use dlm_tui::sampler::{Sampler, SamplerParams};

#[test]
fn modernbert_folders_load_unshifted_with_the_tokenizers_mask() {
    for name in ["modernbert-tiny-a", "modernbert-tiny-b"] {
        let loaded = load_dir(&fixtures().join(name), Precision::F32, &Device::Cpu).unwrap();
        let info = loaded.model.info();
        assert_eq!(info.family, "modernbert");
        assert!(!info.shift_logits);
        assert_eq!(info.mask_id, loaded.codec.token_id("<|mask|>").unwrap());
    }
}

#[test]
fn logits_match_transformers_modernbert_within_1e_4() {
    let cases = golden("modernbert_logits.json");
    assert_eq!(cases.len(), 4);
    for case in cases {
        let name = case["model"].as_str().unwrap();
        let input = ids(&case["input_ids"]);
        let mut loaded = load_dir(&fixtures().join(name), Precision::F32, &Device::Cpu).unwrap();
        let logits = loaded
            .model
            .forward_batch(std::slice::from_ref(&input))
            .unwrap();
        let mut worst = 0f32;
        for (pos, row) in case["logits"].as_array().unwrap().iter().enumerate() {
            let row = row.as_array().unwrap();
            assert_eq!(row.len(), logits[0].width(), "{name}: logits width");
            for (want, got) in row.iter().zip(logits[0].row(pos)) {
                worst = worst.max((want.as_f64().unwrap() as f32 - got).abs());
            }
        }
        assert!(
            worst < 1e-4,
            "{name} ({} tokens): max |logit diff| = {worst}",
            input.len()
        );
    }
}

#[test]
fn generate_matches_llada_generate_py_on_modernbert() {
    for case in golden("modernbert_generate.json") {
        let (mut loaded, canvas) = model_and_canvas(&case, &case["prompt_ids"], "gen_length");
        let params = SamplerParams {
            steps: case["steps"].as_u64().unwrap() as usize,
            block_length: case["block_length"].as_u64().unwrap() as usize,
            ..SamplerParams::default()
        };
        let traits = loaded.model.info().traits();
        let mut sampler = Sampler::new(canvas, params, traits).unwrap();
        sampler
            .run_to_end(|request| loaded.model.forward_batch(&request.canvases))
            .unwrap();
        assert_eq!(
            sampler.tokens(),
            ids(&case["output"]).as_slice(),
            "case {case}"
        );
    }
}
