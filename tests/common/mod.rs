//! Helpers shared by the golden tests: fixture paths, golden case files, and the model plus
//! starting canvas of a generation case.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use candle_core::Device;
use dlm_tui::model::loader::{load_dir, LoadedModel, Precision};
use serde_json::Value;

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
    let loaded = load_dir(&fixtures().join(name), Precision::F32, &Device::Cpu).unwrap();
    let mut canvas = ids(prompt);
    canvas.extend(std::iter::repeat_n(
        loaded.model.info().mask_id,
        case[new_tokens].as_u64().unwrap() as usize,
    ));
    (loaded, canvas)
}
