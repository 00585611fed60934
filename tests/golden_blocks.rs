//! Golden tests of block diffusion against the reference code (tests/fixtures/make_*_fixtures.py):
//! the logits of block-causal passes against the cache of finished blocks, and whole generations
//! token for token with the reference's forward count.
//!
//! SDAR: JetAstra/SDAR `generate.py` `block_diffusion_generate` with SDAR's evaluation sampler
//! (argmax, confidence its softmax probability), on tiny random models built by SDAR's own
//! modeling code (tests/fixtures/make_sdar_fixtures.py).

mod common;

use common::{fixtures, golden, ids};

use dlm_tui::model::loader::{load_dir, Precision};
use dlm_tui::model::BlockCache;
use dlm_tui::sampler::blocks::{
    linear_counts, BlockParams, BlockRequest, BlockSampler, CommitRule, Layout, Pass,
};
use serde_json::Value;

fn load(case: &Value) -> dlm_tui::model::loader::LoadedModel {
    let name = case["model"].as_str().unwrap();
    load_dir(&fixtures().join(name), Precision::F32, &common::device()).unwrap()
}

/// A pass over `tokens` from canvas position `start`, in blocks of `block_length` (a prefill's).
fn request(pass: Pass, start: usize, tokens: Vec<u32>, block_length: usize) -> BlockRequest {
    let mut chunks = vec![block_length; tokens.len() / block_length];
    if !tokens.len().is_multiple_of(block_length) {
        chunks.push(tokens.len() % block_length);
    }
    BlockRequest {
        pass,
        range: start..start + tokens.len(),
        tokens: vec![tokens],
        chunks,
    }
}

/// The text of a case's prompt ids, when typing it gives those ids back (a prompt cut mid-word,
/// or holding masks or special tokens, which typed text never makes, is not reachable).
fn typed_prompt(dir: &std::path::Path, case: &Value) -> Option<String> {
    let codec = dlm_tui::text::TextCodec::from_file(&dir.join("tokenizer.json")).unwrap();
    let prompt_ids = ids(&case["prompt_ids"]);
    let text = codec.decode(&prompt_ids, false);
    let same = codec.encode(&text, true).unwrap() == prompt_ids;
    (same && !text.contains("[MASK") && !text.contains("<|")).then_some(text)
}

/// `dlm-tui` with `flags` (a `generate --json` run): its done line.
fn generate_done(flags: &[String]) -> Value {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dlm-tui"))
        .args(flags)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.lines().last().unwrap()).unwrap()
}

fn assert_rows(got: &dlm_tui::sampler::Logits, want: &Value, first: usize, what: &str) {
    let mut worst = 0f32;
    for (i, row) in want.as_array().unwrap().iter().enumerate() {
        let row = row.as_array().unwrap();
        assert_eq!(row.len(), got.width(), "{what}: logits width");
        for (w, g) in row.iter().zip(got.row(first + i)) {
            worst = worst.max((w.as_f64().unwrap() as f32 - g).abs());
        }
    }
    let tolerance = common::logits_tolerance(&common::device());
    assert!(worst < tolerance, "{what}: max |logit diff| = {worst}");
}

#[test]
fn sdar_folders_load_as_block_diffusion_models() {
    for (name, block) in [("sdar-tiny", 4), ("sdar-tiny-tied", 8)] {
        let loaded = load_dir(&fixtures().join(name), Precision::F32, &common::device()).unwrap();
        let info = loaded.model.info();
        assert_eq!(info.family, "sdar");
        assert_eq!(info.blocks.map(|b| b.size), Some(block));
        assert_eq!(info.mask_id, 304);
        assert!(!info.shift_logits);
    }
}

/// Block-causal logits: a whole input (block i sees blocks up to i), and a block against a cache
/// written by a prefill and a finished block's pass.
#[test]
fn sdar_block_passes_match_the_reference_logits() {
    let cases = golden("sdar_logits.json");
    assert!(cases.len() >= 4);
    for case in cases {
        let mut loaded = load(&case);
        let block = case["block_size"].as_u64().unwrap() as usize;
        let mut cache = BlockCache::default();
        let what = format!("{} {}", case["model"], case["mode"]);
        match case["mode"].as_str().unwrap() {
            "full" => {
                let input = ids(&case["input_ids"]);
                let logits = loaded
                    .model
                    .block_forward(&request(Pass::Prefill, 0, input, block), &mut cache)
                    .unwrap();
                assert_rows(&logits[0], &case["logits"], 0, &what);
            }
            "cached_block" => {
                let mut start = 0;
                for (pass, key) in [
                    (Pass::Prefill, "prefill_ids"),
                    (Pass::Write, "cache_write_ids"),
                ] {
                    if case[key].as_array().is_none_or(|a| a.is_empty()) {
                        continue;
                    }
                    let tokens = ids(&case[key]);
                    let n = tokens.len();
                    loaded
                        .model
                        .block_forward(&request(pass, start, tokens, block), &mut cache)
                        .unwrap();
                    start += n;
                }
                let logits = loaded
                    .model
                    .block_forward(
                        &request(Pass::Denoise, start, ids(&case["input_ids"]), block),
                        &mut cache,
                    )
                    .unwrap();
                assert_eq!(cache.len(), start, "a denoising pass writes nothing");
                assert_rows(&logits[0], &case["logits"], start, &what);
            }
            other => panic!("unknown mode {other}"),
        }
    }
}

fn rule(case: &Value) -> CommitRule {
    match case["remasking_strategy"].as_str().unwrap() {
        "low_confidence_static" => CommitRule::Static,
        "low_confidence_dynamic" => {
            CommitRule::Dynamic(case["confidence_threshold"].as_f64().unwrap())
        }
        "sequential" => CommitRule::Sequential,
        other => panic!("unknown strategy {other}"),
    }
}

/// Whole generations: the reference's tokens, and its forward count (prefill, denoising passes
/// and cache writes). A run that stops drops the blocks after the stop, which the reference
/// leaves masked.
#[test]
fn sdar_generation_matches_block_diffusion_generate() {
    let cases = golden("sdar_generate.json");
    assert!(cases.len() >= 12);
    for case in cases {
        let mut loaded = load(&case);
        let mask = loaded.model.info().mask_id;
        let params = BlockParams {
            block_length: case["block_length"].as_u64().unwrap() as usize,
            steps_per_block: case["denoising_steps"].as_u64().unwrap() as usize,
            rule: rule(&case),
            stop_ids: if case["stopping_criteria_idx"].is_null() {
                Vec::new()
            } else {
                ids(&case["stopping_criteria_idx"])
            },
            ..BlockParams::default()
        };
        let mut canvas = ids(&case["prompt_ids"]);
        let length = case["gen_length"].as_u64().unwrap() as usize;
        canvas.extend(std::iter::repeat_n(mask, length));
        let mut sampler = BlockSampler::new(canvas, params, mask).unwrap();
        let mut cache = BlockCache::default();
        sampler
            .run_to_end(|request| loaded.model.block_forward(request, &mut cache))
            .unwrap();
        let output = ids(&case["output"]);
        let name = case["name"].as_str().unwrap_or_default();
        let got = sampler.tokens();
        assert_eq!(got, &output[..got.len()], "{name}");
        assert!(
            output[got.len()..].iter().all(|&t| t == mask),
            "{name}: only never-denoised blocks are dropped"
        );
        assert_eq!(
            sampler.nfe(),
            case["nfe"].as_u64().unwrap() as usize,
            "{name}: nfe"
        );
    }
}

/// `dlm-tui generate` on an SDAR folder: the block length defaults to the model's, and the
/// flags (`--block-length`, `--steps-per-block`, `--strategy`, `--threshold`, `--stop-at-eos`)
/// reproduce the reference's tokens and forward count from the prompt text.
#[test]
fn sdar_generate_from_the_command_line() {
    let mut ran = 0;
    for case in golden("sdar_generate.json") {
        let model = case["model"].as_str().unwrap();
        let dir = fixtures().join(model);
        let Some(text) = typed_prompt(&dir, &case) else {
            continue;
        };
        let stop = !case["stopping_criteria_idx"].is_null();
        if stop && ids(&case["stopping_criteria_idx"]) != [302, 300] {
            continue;
        }
        let block = case["block_length"].as_u64().unwrap().to_string();
        let steps = case["denoising_steps"].as_u64().unwrap().to_string();
        let length = case["gen_length"].as_u64().unwrap().to_string();
        let mut args = vec![
            "generate".to_string(),
            "--model-dir".into(),
            dir.to_str().unwrap().into(),
            "--prompt".into(),
            text,
            "--length".into(),
            length,
            "--steps-per-block".into(),
            steps,
            "--temperature".into(),
            "0".into(),
            "--json".into(),
        ];
        // The fixture's own block size is the default.
        let trained = if model == "sdar-tiny" { "4" } else { "8" };
        if block != trained {
            args.extend(["--block-length".into(), block]);
        }
        match case["remasking_strategy"].as_str().unwrap() {
            "low_confidence_static" => {}
            "low_confidence_dynamic" => args.extend([
                "--threshold".into(),
                case["confidence_threshold"].as_f64().unwrap().to_string(),
            ]),
            _ => args.extend(["--strategy".into(), "left-to-right".into()]),
        }
        if stop {
            args.push("--stop-at-eos".into());
        }
        let done = generate_done(&args);
        let tokens = ids(&done["tokens"]);
        let output = ids(&case["output"]);
        let name = case["name"].as_str().unwrap_or_default();
        assert_eq!(tokens, output[..tokens.len()], "{name}: {args:?}");
        assert_eq!(done["nfe"], case["nfe"], "{name}");
        ran += 1;
    }
    assert!(ran >= 6, "only {ran} cases reachable from text");
}

/// dLLM's per-step counts (its linear alpha schedule in float32, rounded half to even, zero
/// counts dropped) for every n and steps up to 64, as the reference computes them.
#[test]
fn bd3lm_counts_match_the_reference_schedule() {
    let text = std::fs::read_to_string(fixtures().join("golden/bd3lm_schedule.json")).unwrap();
    let json: Value = serde_json::from_str(&text).unwrap();
    let schedules = json["schedules"].as_object().unwrap();
    assert!(schedules.len() > 2000);
    for (key, counts) in schedules {
        let (n, steps) = key.split_once('/').unwrap();
        let (n, steps): (usize, usize) = (n.parse().unwrap(), steps.parse().unwrap());
        let want: Vec<usize> = counts
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(linear_counts(n, steps), want, "{key}");
    }
}

/// dLLM's BD3LM sampler (BD3LMSampler.sample) on the A2D fixtures: the prompt in blocks of its
/// own (left-padded, pads invisible), per-block linear counts, CFG, the end-of-sequence stop,
/// token for token with its forward count (prefix forwards and block steps).
#[test]
fn bd3lm_generation_matches_the_bd3lm_sampler() {
    let cases = golden("bd3lm_generate.json");
    let mut ran = 0;
    for case in cases {
        let args = &case["args"];
        let name = case["name"].as_str().unwrap_or_default();
        if args["right_shift_logits"].as_bool() == Some(true) {
            continue; // not the conversions' setting (dLLM's default and examples: off)
        }
        let mut loaded = load(&case);
        let mask = case["mask_id"].as_u64().unwrap() as u32;
        let block = args["block_size"].as_u64().unwrap() as usize;
        let new_tokens = args["max_new_tokens"].as_u64().unwrap() as usize;
        let steps = args["steps"].as_u64().unwrap() as usize;
        let per_block = args["steps_per_block"]
            .as_u64()
            .map_or(steps.div_ceil(new_tokens.div_ceil(block)), |s| s as usize);
        let params = BlockParams {
            block_length: block,
            steps_per_block: per_block,
            stop_ids: vec![case["eos_id"].as_u64().unwrap() as u32],
            layout: Layout::Bd3lm,
            invisible: Some(case["pad_id"].as_u64().unwrap() as u32),
            cfg_scale: args["cfg_scale"].as_f64().unwrap_or(0.0),
            cfg_keep: if args["cfg_keep_tokens"].is_null() {
                Vec::new()
            } else {
                ids(&args["cfg_keep_tokens"])
            },
            ..BlockParams::default()
        };
        let mut canvas = ids(&case["prompt_ids"]);
        canvas.extend(std::iter::repeat_n(mask, new_tokens));
        let mut sampler = BlockSampler::new(canvas, params, mask).unwrap();
        let mut cache = BlockCache::default();
        sampler
            .run_to_end(|request| loaded.model.block_forward(request, &mut cache))
            .unwrap();
        assert_eq!(
            sampler.tokens(),
            ids(&case["output_unpadded"]).as_slice(),
            "{name}"
        );
        assert_eq!(
            sampler.nfe(),
            case["nfe"].as_u64().unwrap() as usize,
            "{name}: nfe"
        );
        ran += 1;
    }
    assert!(ran >= 14, "{ran}");
}

/// `dlm-tui generate --block-diffusion` on the A2D folders: the BD3LM sampler's tokens and
/// forward count from the prompt text (`--steps` shared among the blocks, `--cfg`,
/// `--stop-at-eos` where the reference stops).
#[test]
fn bd3lm_generate_from_the_command_line() {
    let mut ran = 0;
    for case in golden("bd3lm_generate.json") {
        let args = &case["args"];
        if args["right_shift_logits"].as_bool() == Some(true) || !args["cfg_keep_tokens"].is_null()
        {
            continue; // neither is a command-line setting
        }
        let dir = fixtures().join(case["model"].as_str().unwrap());
        let Some(text) = typed_prompt(&dir, &case) else {
            continue;
        };
        let number = |key: &str| args[key].as_u64().unwrap().to_string();
        let mut flags: Vec<String> = vec![
            "generate".into(),
            "--model-dir".into(),
            dir.to_str().unwrap().into(),
            "--block-diffusion".into(),
            "--prompt".into(),
            text,
            "--length".into(),
            number("max_new_tokens"),
            "--steps".into(),
            number("steps"),
            "--block-length".into(),
            number("block_size"),
            "--temperature".into(),
            "0".into(),
            "--stop-at-eos".into(),
            "--json".into(),
        ];
        let cfg = args["cfg_scale"].as_f64().unwrap_or(0.0);
        if cfg > 0.0 {
            flags.extend(["--cfg".into(), cfg.to_string()]);
        }
        let done = generate_done(&flags);
        let name = case["name"].as_str().unwrap_or_default();
        assert_eq!(done["tokens"], case["output_unpadded"], "{name}");
        assert_eq!(done["nfe"], case["nfe"], "{name}");
        ran += 1;
    }
    assert!(ran >= 8, "only {ran} cases reachable from text");
}

/// Fast-dLLM v2's own `generate` (NVlabs/Fast-dLLM v2, the hub's modeling.py): its prefill and
/// autoregressive tokens, logits shifted inside a block, sub-blocks by a threshold, its stop and
/// cut, token for token with its forward count. Not compared: `use_block_cache` (its sub-block
/// passes reuse stale keys, an approximation dlm-tui does not make), and the reference's two
/// quirks its fixture flags (a prompt exactly one block long is never seen; blocks over 32 are
/// split by the denoising passes' default mask).
#[test]
fn fast_dllm_v2_generation_matches_its_generate() {
    let mut ran = 0;
    for case in golden("fast_dllm_v2_generate.json") {
        let name = case["name"].as_str().unwrap_or_default();
        let quirks = case["quirks"].as_array().is_some_and(|q| !q.is_empty());
        if case["use_block_cache"].as_bool() == Some(true) || quirks {
            continue;
        }
        let mut loaded = load(&case);
        let mask = case["mask_id"].as_u64().unwrap() as u32;
        assert_eq!(loaded.model.info().mask_id, mask);
        let params = BlockParams {
            block_length: case["block_size"].as_u64().unwrap() as usize,
            steps_per_block: 1,
            rule: CommitRule::Threshold(case["threshold"].as_f64().unwrap()),
            stop_ids: vec![case["stop_token"].as_u64().unwrap() as u32],
            layout: Layout::FastDllmV2,
            sub_block: case["small_block_size"].as_u64().unwrap() as usize,
            ..BlockParams::default()
        };
        let mut canvas = ids(&case["prompt_ids"]);
        let new_tokens = case["max_new_tokens"].as_u64().unwrap() as usize;
        canvas.extend(std::iter::repeat_n(mask, new_tokens));
        let mut sampler = BlockSampler::new(canvas, params, mask).unwrap();
        let mut cache = BlockCache::default();
        sampler
            .run_to_end(|request| loaded.model.block_forward(request, &mut cache))
            .unwrap();
        assert_eq!(sampler.tokens(), ids(&case["output"]).as_slice(), "{name}");
        assert_eq!(
            sampler.nfe(),
            case["nfe"].as_u64().unwrap() as usize,
            "{name}: nfe"
        );
        ran += 1;
    }
    assert!(ran >= 10, "{ran}");
}

/// `dlm-tui generate` on a Fast-dLLM v2 folder: blocks of 32 by default, `--block-length`,
/// `--sub-block-length`, `--threshold` (one token a step without it) and `--stop-at-eos` give the
/// reference's tokens and forward count from the prompt text.
#[test]
fn fast_dllm_v2_generate_from_the_command_line() {
    let mut ran = 0;
    for case in golden("fast_dllm_v2_generate.json") {
        let quirks = case["quirks"].as_array().is_some_and(|q| !q.is_empty());
        if case["use_block_cache"].as_bool() == Some(true) || quirks {
            continue;
        }
        let dir = fixtures().join(case["model"].as_str().unwrap());
        let Some(text) = typed_prompt(&dir, &case) else {
            continue;
        };
        let number = |key: &str| case[key].as_u64().unwrap().to_string();
        let mut flags: Vec<String> = vec![
            "generate".into(),
            "--model-dir".into(),
            dir.to_str().unwrap().into(),
            "--prompt".into(),
            text,
            "--length".into(),
            number("max_new_tokens"),
            "--sub-block-length".into(),
            number("small_block_size"),
            "--temperature".into(),
            "0".into(),
            "--stop-at-eos".into(),
            "--json".into(),
        ];
        if number("block_size") != "32" {
            flags.extend(["--block-length".into(), number("block_size")]);
        }
        let threshold = case["threshold"].as_f64().unwrap();
        if threshold < 1.0 {
            flags.extend(["--threshold".into(), threshold.to_string()]);
        }
        let done = generate_done(&flags);
        let name = case["name"].as_str().unwrap_or_default();
        assert_eq!(done["tokens"], case["output"], "{name}: {flags:?}");
        assert_eq!(done["nfe"], case["nfe"], "{name}");
        ran += 1;
    }
    assert!(ran >= 6, "only {ran} cases reachable from text");
}

/// dLLM's BD3LM conversions say so in their name, not their config: the loader decodes an A2D
/// folder as BD3LM when its path or its hub id says `bd3lm`, so the playground's picker gets it
/// too (not only the command line); any other A2D folder denoises the whole canvas.
#[test]
fn a_folder_named_bd3lm_loads_as_block_diffusion() {
    use dlm_tui::model::loader::load_dir_as;
    let source = fixtures().join("a2d-qwen3-tiny-gqa");
    let device = common::device();
    let plain = load_dir_as(&source, None, Precision::F32, &device).unwrap();
    assert_eq!(plain.model.info().blocks, None);
    let by_id = load_dir_as(
        &source,
        Some("dllm-hub/x-bd3lm-v0.1"),
        Precision::F32,
        &device,
    )
    .unwrap();
    let blocks = by_id.model.info().blocks.unwrap();
    assert_eq!((blocks.layout, blocks.size), (Layout::Bd3lm, 32));
    let dir = std::env::temp_dir().join(format!("dlm-tui-qwen3-bd3lm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(&source).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
    }
    let by_path = load_dir_as(&dir, None, Precision::F32, &device).unwrap();
    assert_eq!(
        by_path.model.info().blocks.map(|b| b.layout),
        Some(Layout::Bd3lm)
    );
    std::fs::remove_dir_all(&dir).ok();
}
