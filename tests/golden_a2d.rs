//! Golden tests for dLLM's autoregressive-to-diffusion Qwen3 conversions (model_type a2d-qwen3),
//! against tiny models built by dLLM's own `A2DQwen3LMHeadModel`
//! (tests/fixtures/make_a2d_fixtures.py): raw logits within 1e-4, whole generations of LLaDA's
//! `generate.py` on them token for token, and the fused/cached inference paths agreeing.

mod common;

use common::{assert_generate_case, assert_logits_case, fixtures, golden};

use dlm_tui::model::loader::{load_dir, Precision};
use dlm_tui::model::{AttentionKernel, KvCache};
use dlm_tui::sampler::{CacheMode, ForwardRequest};

const MODELS: [&str; 2] = ["a2d-qwen3-tiny-gqa", "a2d-qwen3-tiny-tied"];

#[test]
fn a2d_folders_load_unshifted_with_the_tokenizers_mask() {
    for name in MODELS {
        let loaded = load_dir(&fixtures().join(name), Precision::F32, &common::device()).unwrap();
        let info = loaded.model.info();
        assert_eq!(info.family, "a2d-qwen3");
        assert!(
            !info.shift_logits,
            "A2D models predict each position from its own output"
        );
        // config.json names no mask token: it comes from tokenizer_config.json's mask_token.
        assert_eq!(info.mask_id, loaded.codec.token_id("<|mask|>").unwrap());
        assert_eq!(
            info.eot_ids,
            vec![loaded.codec.token_id("<|im_end|>").unwrap()]
        );
    }
}

#[test]
fn logits_match_dllm_a2d_modeling_within_1e_4() {
    let cases = golden("a2d_qwen3_logits.json");
    assert_eq!(cases.len(), 4);
    cases.iter().for_each(assert_logits_case);
}

#[test]
fn generate_matches_llada_generate_py_on_a2d_models() {
    for case in golden("a2d_qwen3_generate.json") {
        assert_generate_case(&case, |_, _| {});
    }
}

#[test]
fn cached_passes_over_an_unchanged_canvas_equal_the_full_pass() {
    // The q/k norms sit inside the attention that the caches splice: a cached block pass over an
    // unchanged canvas must give the full pass's logits, with either attention kernel.
    for name in MODELS {
        let mut loaded =
            load_dir(&fixtures().join(name), Precision::F32, &common::device()).unwrap();
        let mask = loaded.model.info().mask_id;
        let mut canvas: Vec<u32> = (3..19).collect();
        canvas.extend([mask; 24]);
        for kernel in [
            AttentionKernel::Tiled,
            AttentionKernel::Fused,
            AttentionKernel::Matmul,
        ] {
            loaded.model.set_attention(kernel);
            let full = loaded.model.forward_batch(&[canvas.clone()]).unwrap();
            for cache in [CacheMode::Prefix, CacheMode::Dual] {
                let request = ForwardRequest {
                    canvases: vec![canvas.clone()],
                    block: 24..32,
                    rows: 24..32,
                    cache,
                };
                let mut kv = KvCache::default();
                loaded.model.denoise(&request, &mut kv).unwrap();
                assert!(kv.window(&request).is_some(), "{cache:?}: nothing recorded");
                let recorded = kv.saved();
                let cached = loaded.model.denoise(&request, &mut kv).unwrap();
                assert!(kv.saved() > recorded, "{cache:?} pass was not cached");
                assert_eq!(cached[0].span(), 24..32);
                for pos in cached[0].span() {
                    let worst = cached[0]
                        .row(pos)
                        .iter()
                        .zip(full[0].row(pos))
                        .map(|(a, b)| (a - b).abs())
                        .fold(0f32, f32::max);
                    assert!(
                        worst < 1e-4,
                        "{name} {kernel:?} {cache:?} position {pos}: {worst}"
                    );
                }
            }
        }
    }
}
