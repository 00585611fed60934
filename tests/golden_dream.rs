//! Golden tests against Dream's reference code (tests/fixtures/make_dream_fixtures.py): raw logits
//! of the tiny Dream-format fixtures, and whole generations of Dream's `diffusion_generate` at
//! temperature 0 (maskgit_plus, topk_margin, entropy, with top-k / top-p, infilling, uneven step
//! counts), token for token, with the per-step transfer counts of its timestep schedule.
//!
//! Left-padded batches (the cases with an attention mask) are Dream's batching of prompts of
//! different lengths; dlm-tui runs one canvas per lane, so those cases are skipped here.

mod common;

use common::{fixtures, golden, ids, model_and_canvas};

use dlm_tui::model::loader::{load_dir, Precision};
use dlm_tui::model::KvCache;
use dlm_tui::sampler::{Sampler, SamplerParams, Schedule, Strategy};

#[test]
fn dream_folders_load_as_the_dream_family() {
    for name in ["dream-tiny-gqa", "dream-tiny-tied"] {
        let loaded = load_dir(&fixtures().join(name), Precision::F32, &common::device()).unwrap();
        let info = loaded.model.info();
        assert_eq!(info.family, "dream");
        assert!(
            info.shift_logits,
            "Dream predicts position i from the output at i - 1"
        );
        assert_eq!(info.mask_id, 304);
    }
}

#[test]
fn logits_match_dream_modeling_within_1e_4() {
    let mut checked = 0;
    for case in golden("dream_logits.json") {
        if !case["attention_mask"].is_null() {
            continue; // left-padded batch: see the module comment
        }
        let name = case["model"].as_str().unwrap();
        let mut loaded =
            load_dir(&fixtures().join(name), Precision::F32, &common::device()).unwrap();
        let batch: Vec<Vec<u32>> = case["input_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(ids)
            .collect();
        let logits = loaded.model.forward_batch(&batch).unwrap();
        for (rows, expected) in logits.iter().zip(case["logits"].as_array().unwrap()) {
            let mut worst = 0f32;
            for (pos, row) in expected.as_array().unwrap().iter().enumerate() {
                let row = row.as_array().unwrap();
                assert_eq!(row.len(), rows.width(), "{name}: logits width");
                for (want, got) in row.iter().zip(rows.row(pos)) {
                    worst = worst.max((want.as_f64().unwrap() as f32 - got).abs());
                }
            }
            assert!(worst < 1e-4, "{name}: max |logit diff| = {worst}");
            checked += 1;
        }
    }
    assert!(checked >= 4);
}

fn strategy(alg: &str) -> Strategy {
    match alg {
        "maskgit_plus" => Strategy::LowConfidence,
        "topk_margin" => Strategy::Margin,
        "entropy" => Strategy::Entropy,
        // Only golden with steps = 1, where every mask is filled on the one (last) step.
        "origin" => Strategy::LowConfidence,
        other => panic!("unknown alg {other}"),
    }
}

/// A `diffusion_generate` case's parameters over a canvas of `len` tokens: its steps, alg,
/// top-k / top-p and eps, with Dream's timestep schedule over the whole canvas as one block.
fn diffusion_generate_params(case: &serde_json::Value, len: usize) -> SamplerParams {
    SamplerParams {
        steps: case["steps"].as_u64().unwrap() as usize,
        // Dream denoises the whole canvas at once: one block.
        block_length: len,
        schedule: Schedule::Timestep,
        strategy: strategy(case["alg"].as_str().unwrap()),
        top_k: case["top_k"].as_u64().map(|k| k as usize),
        top_p: case["top_p"].as_f64(),
        eps: case["eps"].as_f64().unwrap(),
        ..SamplerParams::default()
    }
}

#[test]
fn generation_matches_dream_diffusion_generate_token_for_token() {
    let mut checked = 0;
    for case in golden("dream_generate.json") {
        if !case["attention_mask"].is_null() {
            continue; // left-padded batch: see the module comment
        }
        let (mut loaded, canvas) = model_and_canvas(&case, &case["input_ids"][0], "max_new_tokens");
        let info = loaded.model.info().clone();
        let params = diffusion_generate_params(&case, canvas.len());
        let traits = info.traits();
        let mut sampler = Sampler::new(canvas, params, traits).unwrap();
        let mut cache = KvCache::default();
        let mut transfers = Vec::new();
        while let Some(report) = sampler
            .step(|request| loaded.model.denoise(request, &mut cache))
            .unwrap()
        {
            transfers.push(report.committed.len() as u64);
        }
        let expected: Vec<u64> = case["schedule"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["transfer"].as_u64().unwrap())
            .collect();
        assert_eq!(transfers, expected, "per-step transfers, case {case}");
        assert_eq!(
            sampler.tokens(),
            ids(&case["output"][0]).as_slice(),
            "case {case}"
        );
        checked += 1;
    }
    assert!(checked >= 18);
}

/// Dream's hub repos ship vocab.json + merges.txt and no tokenizer.json: the tokenizer built from
/// them must encode and decode exactly like the fixtures' tokenizer.json (which the fixture script
/// checked against Dream's own DreamTokenizer).
#[test]
fn vocab_and_merges_make_the_same_tokenizer() {
    use dlm_tui::text::TextCodec;
    let src = fixtures().join("dream-tiny-tied");
    let dir = std::env::temp_dir().join(format!("dlm-tui-dream-tok-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().unwrap() != "tokenizer.json" {
            std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
        }
    }
    let reference = TextCodec::from_file(&src.join("tokenizer.json")).unwrap();
    let built = TextCodec::from_vocab_and_merges(&dir).unwrap();
    for text in [
        "Once upon a time, there was a little girl named Lily.",
        "<|im_start|>user\nWhat's 2+2?<|im_end|>\n<|im_start|>assistant\n",
        "  spaces   and\ttabs\n\nnew lines, ÄÖÜ café 日本 123456!!",
        "The dog's ball<|mask|><|mask|> fell.<|endoftext|>",
    ] {
        let want = reference.encode(text, false).unwrap();
        let got = built.encode(text, false).unwrap();
        assert_eq!(got, want, "{text:?}");
        assert_eq!(built.decode(&got, false), reference.decode(&want, false));
    }
    // And the whole folder loads and runs without tokenizer.json.
    let mut loaded = load_dir(&dir, Precision::F32, &common::device()).unwrap();
    let ids = loaded.codec.encode("Once upon a time", false).unwrap();
    assert!(loaded.model.forward(&ids).is_ok());
    std::fs::remove_dir_all(&dir).ok();
}

/// Issue 32, item 5: where the model's argmax is the mask token, Dream's diffusion_generate
/// commits the mask id (the position stays masked, and the pick counts in the step's transfers,
/// which the timestep rule recomputes from the masks left). The schedule's steps give the
/// reference's output exactly; one finishing step then fills the masks left.
#[test]
fn a_mask_argmax_is_committed_as_diffusion_generate_does() {
    let cases = golden("dream_maskpeak_generate.json");
    assert!(cases.len() >= 6);
    for case in cases {
        let (mut loaded, canvas) = model_and_canvas(&case, &case["input_ids"][0], "max_new_tokens");
        let info = loaded.model.info().clone();
        let params = diffusion_generate_params(&case, canvas.len());
        let mut sampler = Sampler::new(canvas, params, info.traits()).unwrap();
        let mut cache = KvCache::default();
        let mut transfers = Vec::new();
        while !sampler.schedule_done() {
            let report = sampler
                .step(|request| loaded.model.denoise(request, &mut cache))
                .unwrap()
                .unwrap();
            transfers.push((report.committed.len() + report.held) as u64);
        }
        let expected: Vec<u64> = case["schedule"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["transfer"].as_u64().unwrap())
            .collect();
        assert_eq!(transfers, expected, "per-step transfers, case {case}");
        let output = ids(&case["output"][0]);
        assert_eq!(sampler.tokens(), output.as_slice(), "case {case}");
        sampler
            .run_to_end(|request| loaded.model.denoise(request, &mut cache))
            .unwrap();
        assert_eq!(
            sampler.masked(),
            0,
            "the finishing step leaves no mask, case {case}"
        );
        for (got, want) in sampler.tokens().iter().zip(&output) {
            assert!(*want == info.mask_id || got == want, "case {case}");
        }
    }
}
