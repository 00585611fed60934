//! The training path of the default model: gradients reach every weight, the differentiable
//! kernels agree with the fused ones, and a few steps on a tiny corpus reduce the loss.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use clap::Parser;
use dlm_tui::model::llada::{Kernels, Llada, LladaConfig};
use dlm_tui::train::objective::{loss, mask_batch, Weighting};
use dlm_tui::train::{Progress, TrainArgs};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn tiny_config() -> LladaConfig {
    LladaConfig {
        d_model: 32,
        n_heads: 4,
        n_kv_heads: Some(2),
        n_layers: 2,
        mlp_hidden_size: Some(48),
        activation_type: "silu".into(),
        block_type: "llama".into(),
        rope: true,
        layer_norm_type: "rms".into(),
        max_sequence_length: 16,
        vocab_size: 50,
        embedding_size: Some(64),
        weight_tying: false,
        mask_token_id: Some(49),
        bias_for_layer_norm: Some(false),
        ..LladaConfig::default()
    }
}

#[test]
fn every_parameter_receives_a_gradient() {
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let mut model = Llada::new(tiny_config(), vb, "tiny".into()).unwrap();
    model.set_kernels(Kernels::Differentiable);
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let windows: Vec<Vec<u32>> = (0..3)
        .map(|i| (0..16).map(|j| (i * 7 + j * 3) % 48).collect())
        .collect();
    let batch = mask_batch(&windows, 49, 0.3, None, &mut rng, &Device::Cpu).unwrap();
    let grads = loss(&model, &batch, Weighting::Elbo)
        .unwrap()
        .backward()
        .unwrap();
    let data = varmap.data().lock().unwrap();
    assert_eq!(data.len(), 2 * 9 + 3);
    for (name, var) in data.iter() {
        let g = grads
            .get(var.as_tensor())
            .unwrap_or_else(|| panic!("{name} has no gradient"));
        let norm = g
            .abs()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(norm > 0.0, "{name} has a zero gradient");
    }
}

#[test]
fn differentiable_and_fused_kernels_give_the_same_logits() {
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let mut model = Llada::new(tiny_config(), vb, "tiny".into()).unwrap();
    let ids = Tensor::new(&[[1u32, 5, 49, 7, 49, 49, 30, 2]], &Device::Cpu).unwrap();
    let fused = model.forward_ids(&ids).unwrap();
    model.set_kernels(Kernels::Differentiable);
    let slow = model.forward_ids(&ids).unwrap();
    let diff = (fused - slow)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(diff < 1e-5, "max diff {diff}");
}

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("dlm-train-{tag}-{}", std::process::id()));
    std::fs::remove_dir_all(&dir).ok();
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn tiny_corpus(dir: &Path) -> PathBuf {
    let names = ["Lily", "Tom", "Sam", "Mia", "Ben"];
    let things = ["ball", "cat", "tree", "cake", "boat"];
    let mut text = String::new();
    for i in 0..60 {
        let (n, t) = (names[i % 5], things[(i / 5) % 5]);
        text.push_str(&format!(
            "Once upon a time, {n} had a {t}. {n} loved the {t} very much.\n\nOne day, {n} played with the {t} all day.\n"
        ));
    }
    let path = dir.join("corpus.txt");
    std::fs::write(&path, text).unwrap();
    path
}

fn train_args(dir: &Path, corpus: &Path, extra: &[&str]) -> TrainArgs {
    #[derive(Parser)]
    struct Wrap {
        #[command(flatten)]
        args: TrainArgs,
    }
    let mut argv = vec![
        "train".to_string(),
        "--corpus".into(),
        corpus.display().to_string(),
        "--out".into(),
        dir.join("out").display().to_string(),
        "--checkpoint-dir".into(),
        dir.join("ckpt").display().to_string(),
    ];
    for a in [
        "--vocab-size",
        "300",
        "--d-model",
        "32",
        "--n-layers",
        "2",
        "--n-heads",
        "2",
        "--mlp-hidden",
        "64",
        "--seq-len",
        "32",
        "--batch-size",
        "8",
        "--lr",
        "3e-3",
        "--warmup",
        "2",
        "--eval-every",
        "10",
        "--eval-windows",
        "4",
        "--checkpoint-every",
        "5",
    ] {
        argv.push(a.to_string());
    }
    argv.extend(extra.iter().map(|s| s.to_string()));
    Wrap::parse_from(argv).args
}

fn progress(dir: &Path) -> Progress {
    serde_json::from_str(&std::fs::read_to_string(dir.join("ckpt/progress.json")).unwrap()).unwrap()
}

#[test]
fn a_few_steps_reduce_the_loss_and_export_a_loadable_model() {
    let dir = temp_dir("loss");
    let corpus = tiny_corpus(&dir);
    dlm_tui::train::run(train_args(
        &dir,
        &corpus,
        &["--steps", "40", "--weighting", "uniform"],
    ))
    .unwrap();
    let p = progress(&dir);
    assert_eq!(p.step, 40);
    let first: f64 = p.log[..5].iter().map(|e| e.loss).sum::<f64>() / 5.0;
    let last: f64 = p.log[35..].iter().map(|e| e.loss).sum::<f64>() / 5.0;
    assert!(last < first * 0.8, "loss {first:.3} -> {last:.3}");
    let evals: Vec<f64> = p.log.iter().filter_map(|e| e.val_nll_per_token).collect();
    assert_eq!(evals.len(), 4);
    assert!(evals[3] < evals[0], "held-out NLL {evals:?}");

    // The exported folder is an ordinary LLaDA model folder that generate can run.
    let out = dir.join("out");
    let mut loaded = dlm_tui::model::loader::load_dir(
        &out,
        dlm_tui::model::loader::Precision::F32,
        &Device::Cpu,
    )
    .unwrap();
    let logits = loaded.model.forward(&[3, 4, 5]).unwrap();
    assert_eq!(logits.width(), loaded.codec.vocab_size());
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn resume_continues_where_training_stopped() {
    let dir = temp_dir("resume");
    let corpus = tiny_corpus(&dir);
    // --max-minutes 0 stops right after the first step, with a checkpoint.
    dlm_tui::train::run(train_args(
        &dir,
        &corpus,
        &["--steps", "12", "--max-minutes", "0"],
    ))
    .unwrap();
    assert_eq!(progress(&dir).step, 1);
    let before = std::fs::read(dir.join("ckpt/weights.safetensors")).unwrap();
    dlm_tui::train::run(train_args(&dir, &corpus, &["--steps", "12", "--resume"])).unwrap();
    let p = progress(&dir);
    assert_eq!(p.step, 12);
    assert_eq!(p.log.len(), 12);
    assert_eq!(
        p.log.iter().map(|e| e.step).collect::<Vec<_>>(),
        (1..=12).collect::<Vec<_>>()
    );
    assert_ne!(
        before,
        std::fs::read(dir.join("ckpt/weights.safetensors")).unwrap()
    );
    std::fs::remove_dir_all(dir).ok();
}
