//! Golden tests against LLaDA's reference code: logits of the tiny fixture models, and full token
//! sequences from LLaDA's `generate.py` at temperature 0 (see tests/fixtures/make_llada_fixtures.py).

mod common;

use common::{assert_generate_case, fixtures, golden, ids, model_and_canvas};

use candle_core::Device;
use dlm_tui::model::llada::{Llada, LladaConfig};
use dlm_tui::model::loader::{load_dir, Precision};
use dlm_tui::model::{AttentionKernel, KvCache};
use dlm_tui::sampler::{CacheMode, ForwardRequest, Parallel, Sampler, SamplerParams};
use serde_json::Value;

#[test]
fn logits_match_the_reference_model_within_1e_4() {
    for kernel in [
        AttentionKernel::Auto,
        AttentionKernel::Tiled,
        AttentionKernel::Fused,
        AttentionKernel::Matmul,
    ] {
        for case in golden("llada_logits.json") {
            let name = case["model"].as_str().unwrap();
            let mut loaded =
                load_dir(&fixtures().join(name), Precision::F32, &common::device()).unwrap();
            loaded.model.set_attention(kernel);
            let input = ids(&case["input_ids"]);
            let logits = loaded.model.forward(&input).unwrap();
            let expected = case["logits"].as_array().unwrap();
            assert_eq!(expected.len(), input.len());
            let mut worst = 0f32;
            for (pos, row) in expected.iter().enumerate() {
                let row = row.as_array().unwrap();
                assert_eq!(row.len(), logits.width(), "{name}: logits width");
                for (want, got) in row.iter().zip(logits.row(pos)) {
                    worst = worst.max((want.as_f64().unwrap() as f32 - got).abs());
                }
            }
            assert!(
                worst < 1e-4,
                "{name} {kernel:?}: max |logit diff| = {worst}"
            );
        }
    }
}

#[test]
fn generate_matches_llada_generate_py_token_for_token() {
    for case in golden("llada_generate.json") {
        assert_generate_case(&case, |_, _| {});
    }
}

#[test]
fn bf16_weights_run_and_stay_close_to_f32() {
    let dir = fixtures().join("llada-tiny-gqa");
    let input: Vec<u32> = (1..40).collect();
    let exact = load_dir(&dir, Precision::F32, &common::device())
        .unwrap()
        .model
        .forward(&input)
        .unwrap();
    let half = load_dir(&dir, Precision::Bf16, &common::device())
        .unwrap()
        .model
        .forward(&input)
        .unwrap();
    let mut agree = 0;
    for pos in 0..input.len() {
        let a = dlm_tui::sampler::proposal::argmax(exact.row(pos));
        let b = dlm_tui::sampler::proposal::argmax(half.row(pos));
        agree += usize::from(a == b);
    }
    assert!(
        agree * 10 >= input.len() * 8,
        "bf16 argmax agrees at only {agree}/{} positions",
        input.len()
    );
}

#[test]
fn unsupported_configs_are_refused_naming_the_key() {
    let base: Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("llada-tiny-gqa/config.json")).unwrap(),
    )
    .unwrap();
    for (key, value) in [
        ("block_type", Value::from("sequential")),
        ("layer_norm_type", Value::from("default")),
        ("activation_type", Value::from("gelu")),
        ("alibi", Value::from(true)),
        ("block_group_size", Value::from(2)),
        ("attention_layer_norm", Value::from(true)),
    ] {
        let mut cfg = base.clone();
        cfg[key] = value;
        let cfg: LladaConfig = serde_json::from_value(cfg).unwrap();
        let vb = candle_nn::VarBuilder::zeros(candle_core::DType::F32, &Device::Cpu);
        let err = Llada::new(cfg, vb, "x".into())
            .err()
            .expect(key)
            .to_string();
        assert!(err.contains(key), "{key}: {err}");
    }
}

#[test]
fn sharded_and_single_file_models_load_the_same_tensors() {
    // The GQA fixture is split over two shards with an index; the tied one is a single file.
    let gqa = fixtures().join("llada-tiny-gqa");
    assert!(gqa.join("model.safetensors.index.json").is_file());
    let tensors =
        candle_core::safetensors::load(gqa.join("model-00001-of-00002.safetensors"), &Device::Cpu)
            .unwrap();
    assert!(!tensors.is_empty());
    let total: usize = [1, 2]
        .iter()
        .map(|i| {
            candle_core::safetensors::load(
                gqa.join(format!("model-0000{i}-of-00002.safetensors")),
                &Device::Cpu,
            )
            .unwrap()
            .len()
        })
        .sum();
    // 2 layers x 9 tensors + wte + ln_f + ff_out
    assert_eq!(total, 2 * 9 + 3);
    let single = load_dir(
        &fixtures().join("llada-tiny-tied"),
        Precision::F32,
        &Device::Cpu,
    )
    .unwrap();
    assert_eq!(single.model.info().logits_width, 320);
}

/// Fast-dLLM's `generate` with a confidence threshold, `generate_with_prefix_cache` and
/// `generate_with_dual_cache` (tests/fixtures/make_cache_fixtures.py), token for token.
#[test]
fn cached_and_threshold_decoding_match_fast_dllm() {
    let cases = golden("llada_cache_generate.json");
    assert!(cases.len() >= 9);
    let mut approximate = 0;
    for case in cases {
        let (mut loaded, canvas) = model_and_canvas(&case, &case["prompt_ids"], "gen_length");
        let info = loaded.model.info().clone();
        let cache = match case["cache"].as_str().unwrap() {
            "none" => CacheMode::None,
            "prefix" => CacheMode::Prefix,
            "dual" => CacheMode::Dual,
            other => panic!("unknown cache mode {other}"),
        };
        let params = SamplerParams {
            steps: case["steps"].as_u64().unwrap() as usize,
            block_length: case["block_length"].as_u64().unwrap() as usize,
            parallel: case["threshold"].as_f64().map(Parallel::Threshold),
            cache,
            ..SamplerParams::default()
        };
        let traits = info.traits();
        let exact = {
            let params = SamplerParams {
                cache: CacheMode::None,
                ..params.clone()
            };
            let mut sampler = Sampler::new(canvas.clone(), params, traits.clone()).unwrap();
            sampler
                .run_to_end(|request| loaded.model.forward_batch(&request.canvases))
                .unwrap();
            sampler.tokens().to_vec()
        };
        let mut sampler = Sampler::new(canvas, params, traits).unwrap();
        let mut kv = KvCache::default();
        sampler
            .run_to_end(|request| loaded.model.denoise(request, &mut kv))
            .unwrap();
        assert_eq!(
            sampler.tokens(),
            ids(&case["output"]).as_slice(),
            "case {case}"
        );
        if cache != CacheMode::None {
            assert!(kv.saved() > 0.2, "the cache saved only {:.3}", kv.saved());
        }
        approximate += usize::from(sampler.tokens() != exact.as_slice());
    }
    // Caching is an approximation: some cases must differ from uncached decoding, or these
    // fixtures would not tell a real cache from none at all.
    assert!(
        approximate >= 2,
        "only {approximate} cases differ from uncached decoding"
    );
}

/// With an unchanged canvas a cached pass sees exactly the keys and values a full pass would
/// compute, so its rows must equal the full pass's rows (also for a CFG batch of two).
#[test]
fn cached_passes_over_an_unchanged_canvas_equal_the_full_pass() {
    let mut loaded = load_dir(
        &fixtures().join("llada-tiny-gqa"),
        Precision::F32,
        &common::device(),
    )
    .unwrap();
    let mask = loaded.model.info().mask_id;
    let mut canvas: Vec<u32> = (3..19).collect();
    canvas.extend([mask; 32]);
    let mut uncond = canvas.clone();
    uncond[..16].fill(mask);
    let batches = [vec![canvas.clone()], vec![canvas.clone(), uncond]];
    let kernels = [
        AttentionKernel::Tiled,
        AttentionKernel::Fused,
        AttentionKernel::Matmul,
    ];
    for (kernel, canvases) in kernels
        .into_iter()
        .flat_map(|k| batches.iter().map(move |b| (k, b.clone())))
    {
        loaded.model.set_attention(kernel);
        let full = loaded.model.forward_batch(&canvases).unwrap();
        for cache in [CacheMode::Prefix, CacheMode::Dual] {
            let request = ForwardRequest {
                canvases: canvases.clone(),
                block: 24..32,
                rows: 24..32,
                cache,
            };
            let mut kv = KvCache::default();
            assert_eq!(kv.window(&request), None, "nothing recorded yet");
            // The first pass of a block runs the whole canvas and records it, but returns only
            // the rows the sampler reads.
            // A cached pass recomputes the block (prefix: and everything after it), but every
            // pass returns only the rows the sampler reads.
            let recomputed = if cache == CacheMode::Prefix {
                24..48
            } else {
                24..32
            };
            let recorded = loaded.model.denoise(&request, &mut kv).unwrap();
            assert_eq!(kv.window(&request), Some(recomputed));
            let cached = loaded.model.denoise(&request, &mut kv).unwrap();
            for (pass, logits, span) in [
                ("recording", &recorded, 24..32),
                ("cached", &cached, 24..32),
            ] {
                for (c, f) in logits.iter().zip(&full) {
                    assert_eq!(c.span(), span, "{pass} pass");
                    for pos in c.span() {
                        let worst = c
                            .row(pos)
                            .iter()
                            .zip(f.row(pos))
                            .map(|(a, b)| (a - b).abs())
                            .fold(0f32, f32::max);
                        assert!(
                            worst < 1e-4,
                            "{kernel:?} {cache:?} {pass} pass, position {pos}: {worst}"
                        );
                    }
                }
            }
            // A new block invalidates the record; its first pass records anew.
            let next = ForwardRequest {
                block: 32..40,
                rows: 32..40,
                ..request.clone()
            };
            assert_eq!(kv.window(&next), None);
            assert_eq!(
                loaded.model.denoise(&next, &mut kv).unwrap()[0].span(),
                32..40
            );
            assert!(kv.window(&next).is_some());
        }
    }
}

#[test]
fn end_of_text_options_match_llada_generate_py() {
    // generate.py's logits_eos_inf / confidence_eos_eot_inf, with stand-in ids for LLaDA-8B's
    // <|endoftext|> and <|eot_id|> (tests/fixtures/make_eos_fixtures.py).
    for case in golden("llada_eos_generate.json") {
        assert_generate_case(&case, |params, traits| {
            params.suppress_eos = case["logits_eos_inf"].as_bool().unwrap();
            params.defer_eos = case["confidence_eos_eot_inf"].as_bool().unwrap();
            traits.eos_ids = vec![case["eos_id"].as_u64().unwrap() as u32];
            traits.eot_ids = vec![case["eot_id"].as_u64().unwrap() as u32];
        });
        assert_ne!(
            case["output"], case["plain_output"],
            "the option changes the output"
        );
    }
}

/// Issue 32, item 5: where the model's argmax is the mask token, LLaDA's generate.py commits
/// the mask id (the position stays masked and the step's transfer is used up). The schedule's
/// steps must give the reference's output exactly, masks included; one finishing step then fills
/// what is left so no finished text holds a mask (tests/fixtures/make_maskpeak_fixtures.py).
#[test]
fn a_mask_argmax_is_committed_as_generate_py_does() {
    let cases = golden("llada_maskpeak_generate.json");
    assert!(cases.len() >= 6);
    for case in cases {
        let (mut loaded, canvas) = model_and_canvas(&case, &case["prompt_ids"], "gen_length");
        let params = SamplerParams {
            steps: case["steps"].as_u64().unwrap() as usize,
            block_length: case["block_length"].as_u64().unwrap() as usize,
            cfg_scale: case["cfg_scale"].as_f64().unwrap_or(0.0),
            ..SamplerParams::default()
        };
        let mask = loaded.model.info().mask_id;
        let mut sampler = Sampler::new(canvas, params, loaded.model.info().traits()).unwrap();
        let mut held = Vec::new();
        while !sampler.schedule_done() {
            let report = sampler
                .step(|request| loaded.model.forward_batch(&request.canvases))
                .unwrap()
                .unwrap();
            held.push(report.held as u64);
        }
        let expected = ids(&case["output"]);
        assert_eq!(sampler.tokens(), expected.as_slice(), "case {case}");
        let per_step: Vec<u64> = case["mask_commits_per_step"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_u64().unwrap())
            .collect();
        assert_eq!(held, per_step, "mask picks per step, case {case}");
        let report = sampler
            .step(|request| loaded.model.forward_batch(&request.canvases))
            .unwrap()
            .unwrap();
        assert!(report.finishing);
        assert!(sampler.is_done());
        for (got, want) in sampler.tokens().iter().zip(&expected) {
            assert_ne!(*got, mask);
            assert!(*want == mask || got == want, "case {case}");
        }
    }
}
