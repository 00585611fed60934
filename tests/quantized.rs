//! Quantized weights (`--quantize`) against f32 on the embedded model and the LLaDA and Dream
//! fixtures: the logits' error, the argmax agreement of every row, and the tokens of a greedy
//! run (temperature 0, low-confidence, blocks of 32). `--nocapture` prints the table the README
//! quotes; the bars keep a later change from making quantization worse unnoticed.

use candle_core::Device;
use dlm_tui::kernels::quant::Quantization;
use dlm_tui::model::loader::{load_dir, LoadedModel, Precision};
use dlm_tui::model::Denoiser;
use dlm_tui::sampler::{Sampler, SamplerParams};

fn fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn load(name: &str) -> LoadedModel {
    match name {
        "embedded" => dlm_tui::model::embedded::load(Precision::F32, &Device::Cpu).unwrap(),
        dir if std::path::Path::new(dir).is_absolute() => {
            load_dir(std::path::Path::new(dir), Precision::F32, &Device::Cpu).unwrap()
        }
        dir => load_dir(&fixture(dir), Precision::F32, &Device::Cpu).unwrap(),
    }
}

/// A prompt and 64 masks.
fn canvas(loaded: &LoadedModel) -> Vec<u32> {
    let mut ids = loaded
        .codec
        .encode(
            "Once upon a time, there was a little girl named Lily.",
            false,
        )
        .unwrap();
    let mask = loaded.model.info().mask_id;
    ids.extend(std::iter::repeat_n(mask, 64));
    ids
}

fn greedy(model: &mut dyn Denoiser, canvas: &[u32]) -> Vec<u32> {
    let params = SamplerParams {
        steps: 64,
        block_length: 32,
        ..SamplerParams::default()
    };
    let mut sampler = Sampler::new(canvas.to_vec(), params, model.info().traits()).unwrap();
    sampler
        .run_to_end(|request| model.forward_batch(&request.canvases))
        .unwrap();
    sampler.tokens().to_vec()
}

struct Figures {
    /// RMS of (quantized - f32) over the RMS of f32, all logits of the canvas.
    relative_error: f64,
    /// Rows whose argmax is the same.
    top1: f64,
    /// Generated tokens that are the same in the greedy run.
    tokens: f64,
    bytes: (usize, usize),
}

impl Figures {
    /// The README table's row for `name` at `to`.
    fn row(&self, name: &str, to: Quantization) -> String {
        format!(
            "| {name} | {} | {} -> {} | {:.4} | {:.1}% | {:.1}% |",
            to.name(),
            dlm_tui::files::human_bytes(self.bytes.0 as u64),
            dlm_tui::files::human_bytes(self.bytes.1 as u64),
            self.relative_error,
            self.top1 * 100.0,
            self.tokens * 100.0
        )
    }
}

fn measure(name: &str, to: Quantization) -> Figures {
    let mut reference = load(name);
    let mut quantized = load(name);
    let before = quantized.model.info().weight_bytes;
    let summary = quantized.model.quantize(to).unwrap();
    assert!(summary.after < summary.before, "{summary}");
    let after = quantized.model.info().weight_bytes;
    assert_eq!(quantized.model.info().quantization, Some(to));
    let canvas = canvas(&reference);
    let f = reference.model.forward(&canvas).unwrap();
    let q = quantized.model.forward(&canvas).unwrap();
    let (mut err, mut norm, mut same) = (0f64, 0f64, 0usize);
    for row in 0..f.positions() {
        let (a, b) = (f.row(row), q.row(row));
        for (x, y) in a.iter().zip(b) {
            err += ((x - y) as f64).powi(2);
            norm += (*x as f64).powi(2);
        }
        let argmax = |r: &[f32]| dlm_tui::sampler::proposal::argmax(r);
        same += usize::from(argmax(a) == argmax(b));
    }
    let prompt = canvas
        .iter()
        .take_while(|&&t| t != reference.model.info().mask_id)
        .count();
    let want = greedy(reference.model.as_mut(), &canvas);
    let got = greedy(quantized.model.as_mut(), &canvas);
    let agree = want[prompt..]
        .iter()
        .zip(&got[prompt..])
        .filter(|(a, b)| a == b)
        .count();
    Figures {
        relative_error: (err / norm).sqrt(),
        top1: same as f64 / f.positions() as f64,
        tokens: agree as f64 / (want.len() - prompt) as f64,
        bytes: (before, after),
    }
}

#[test]
fn quantized_models_stay_close_to_f32() {
    println!("| model | format | weights | logits error (RMS, relative) | argmax agreement | greedy tokens agreeing |");
    println!("| --- | --- | --- | --- | --- | --- |");
    // The trained embedded model has the figures that matter; the fixtures' random weights give
    // small, flat logits, on which the same absolute error is a larger share.
    let bars = [
        ("embedded", Quantization::Q8_0, 0.01, 0.97),
        ("embedded", Quantization::Q4K, 0.05, 0.93),
        ("llada-tiny-gqa", Quantization::Q8_0, 0.08, 0.9),
        ("llada-tiny-gqa", Quantization::Q4K, 0.3, 0.6),
        ("dream-tiny-gqa", Quantization::Q8_0, 0.08, 0.9),
        ("dream-tiny-gqa", Quantization::Q4K, 0.3, 0.6),
    ];
    for (name, to, max_error, min_top1) in bars {
        let f = measure(name, to);
        println!("{}", f.row(name, to));
        assert!(
            f.relative_error < max_error,
            "{name} {}: error {}",
            to.name(),
            f.relative_error
        );
        assert!(
            f.top1 >= min_top1,
            "{name} {}: argmax agreement {}",
            to.name(),
            f.top1
        );
        assert!(f.bytes.1 < f.bytes.0);
    }
}

/// Families without quantized layers say so, naming the flag and the family.
#[test]
fn unsupported_families_say_so() {
    let mut loaded = load("modernbert-tiny-a");
    let err = loaded
        .model
        .quantize(Quantization::Q8_0)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("--quantize q8_0") && err.contains("modernbert"),
        "{err}"
    );
}

/// The same figures for a bigger model named by `DLM_TUI_QUANT_DIR` (an absolute folder path,
/// e.g. the 1-block LLaDA-8B slice of benches/reference/make_llada8b_slice.py; 5 GB in f32):
/// `DLM_TUI_QUANT_DIR=~/.cache/dlm-tui/llada8b-1 cargo test --release --test quantized -- --ignored --nocapture`.
#[test]
#[ignore = "needs a model folder in DLM_TUI_QUANT_DIR"]
fn a_bigger_model_named_by_the_environment() {
    let dir = std::env::var("DLM_TUI_QUANT_DIR").expect("DLM_TUI_QUANT_DIR");
    for to in [Quantization::Q8_0, Quantization::Q4K] {
        let f = measure(&dir, to);
        println!("{}", f.row(&dir, to));
    }
}
