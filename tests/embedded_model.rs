//! The embedded default model: works from any directory with an empty HOME, and a fixed seed
//! gives the same complete text every time.

use std::process::Command;

use candle_core::Device;
use dlm_tui::model::embedded;
use dlm_tui::model::loader::Precision;
use dlm_tui::sampler::{Sampler, SamplerParams};

fn generate_in_empty_home(seed: &str) -> serde_json::Value {
    let home = std::env::temp_dir().join(format!("dlm-empty-home-{}-{seed}", std::process::id()));
    std::fs::create_dir_all(&home).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_dlm-tui"))
        .args([
            "generate",
            "--prompt",
            "Once upon a time, there was a little dog",
            "--length",
            "32",
        ])
        .args(["--temperature", "0.8", "--seed", seed, "--json"])
        .current_dir(&home)
        .env("HOME", &home)
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("XDG_DATA_HOME")
        .env_remove("XDG_CACHE_HOME")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    std::fs::remove_dir_all(&home).ok();
    serde_json::from_str(stdout.lines().last().unwrap()).unwrap()
}

#[test]
fn generates_offline_from_anywhere_deterministically() {
    let a = generate_in_empty_home("11");
    let b = generate_in_empty_home("11");
    assert_eq!(a["tokens"], b["tokens"]);
    let mask_id = embedded::config().unwrap().mask_token_id.unwrap() as u64;
    let tokens: Vec<u64> = a["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_u64().unwrap())
        .collect();
    assert!(!tokens.contains(&mask_id), "the canvas was left with masks");
    let text = a["text"].as_str().unwrap();
    let continuation = text.trim_start_matches("Once upon a time, there was a little dog");
    assert!(continuation.trim().len() > 10, "too little text: {text:?}");
    let c = generate_in_empty_home("12");
    assert_ne!(
        a["tokens"], c["tokens"],
        "another seed should sample differently"
    );
}

#[test]
fn embedded_model_loads_and_fills_every_mask() {
    let mut loaded = embedded::load(Precision::Auto, &Device::Cpu).unwrap();
    let info = loaded.model.info().clone();
    let mut canvas = loaded
        .codec
        .encode("Lily went to the park.", false)
        .unwrap();
    canvas.extend([info.mask_id; 24]);
    let params = SamplerParams {
        steps: 24,
        block_length: 8,
        ..SamplerParams::default()
    };
    let traits = info.traits();
    let mut sampler = Sampler::new(canvas, params, traits).unwrap();
    sampler
        .run_to_end(|request| loaded.model.forward_batch(&request.canvases))
        .unwrap();
    assert_eq!(sampler.masked(), 0);
    assert_eq!(info.logits_width, loaded.codec.vocab_size());
}
