//! Helpers shared by the golden tests: fixture paths, golden case files, and the model plus
//! starting canvas of a generation case.
#![allow(dead_code)]

pub mod pane;

use std::path::{Path, PathBuf};

use candle_core::Device;
use dlm_tui::model::loader::{load_dir, LoadedModel, Precision};
use serde_json::Value;

/// The device the golden tests run their models on: the CPU, or the first CUDA GPU when
/// `DLM_TUI_TEST_DEVICE=cuda` (in a build with `--features cuda`), so that the same golden
/// fixtures check the GPU path: `DLM_TUI_TEST_DEVICE=cuda cargo test --release --features cuda
/// --test golden_llada`. An unknown value or a device this build lacks fails the test.
pub fn device() -> Device {
    match std::env::var("DLM_TUI_TEST_DEVICE").as_deref() {
        Err(_) | Ok("") | Ok("cpu") => Device::Cpu,
        Ok("cuda") => dlm_tui::model::DeviceKind::Cuda.open().unwrap(),
        Ok("metal") => dlm_tui::model::DeviceKind::Metal.open().unwrap(),
        Ok(other) => panic!("DLM_TUI_TEST_DEVICE={other}: expected cpu, cuda or metal"),
    }
}

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// The `cases` of a file in tests/fixtures/golden.
pub fn golden(name: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(fixtures().join("golden").join(name)).unwrap();
    let json: Value = serde_json::from_str(&text).unwrap();
    json["cases"].as_array().unwrap().clone()
}

pub fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

/// Loads the case's fixture model (f32) and builds its canvas: the prompt ids followed by
/// `new_tokens` masks.
pub fn model_and_canvas(case: &Value, prompt: &Value, new_tokens: &str) -> (LoadedModel, Vec<u32>) {
    let name = case["model"].as_str().unwrap();
    let loaded = load_dir(&fixtures().join(name), Precision::F32, &device()).unwrap();
    let mut canvas = ids(prompt);
    canvas.extend(std::iter::repeat_n(
        loaded.model.info().mask_id,
        case[new_tokens].as_u64().unwrap() as usize,
    ));
    (loaded, canvas)
}

/// Runs a golden generation case (its prompt ids, `gen_length` masks, `steps`, `block_length`
/// and `cfg_scale` if given) through the sampler with full forward passes, after `adjust` has
/// changed the parameters or traits, and asserts the reference's `output`.
pub fn assert_generate_case(
    case: &Value,
    adjust: impl FnOnce(&mut dlm_tui::sampler::SamplerParams, &mut dlm_tui::sampler::ModelTraits),
) {
    use dlm_tui::sampler::{Sampler, SamplerParams};
    let (mut loaded, canvas) = model_and_canvas(case, &case["prompt_ids"], "gen_length");
    let mut params = SamplerParams {
        steps: case["steps"].as_u64().unwrap() as usize,
        block_length: case["block_length"].as_u64().unwrap() as usize,
        cfg_scale: case["cfg_scale"].as_f64().unwrap_or(0.0),
        ..SamplerParams::default()
    };
    let mut traits = loaded.model.info().traits();
    adjust(&mut params, &mut traits);
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

/// How far a logit may be from the reference's: 1e-4 on the CPU. On a GPU, cuBLAS and candle's
/// CUDA kernels sum in another order: an H100 ran the LLaDA, Dream and A2D cases within 1e-4 but
/// ModernBERT's (LayerNorm, GeGLU) at 1.43e-4, while generating the same tokens; 5e-4 there.
pub fn logits_tolerance(device: &Device) -> f32 {
    if device.is_cpu() {
        1e-4
    } else {
        5e-4
    }
}

/// Loads the case's fixture model (f32), runs its `input_ids` and asserts every logit within
/// [`logits_tolerance`] (1e-4 on the CPU) of the reference's.
pub fn assert_logits_case(case: &Value) {
    let name = case["model"].as_str().unwrap();
    let input = ids(&case["input_ids"]);
    let device = device();
    let tolerance = logits_tolerance(&device);
    let mut loaded = load_dir(&fixtures().join(name), Precision::F32, &device).unwrap();
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
        worst < tolerance,
        "{name} ({} tokens): max |logit diff| = {worst}",
        input.len()
    );
}
