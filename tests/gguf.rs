//! GGUF files written by llama.cpp's own converter (`tests/fixtures/make_gguf_fixtures.py` runs
//! `convert_hf_to_gguf.py` on the LLaDA and Dream fixtures): the f32 files must give exactly the
//! logits and tokens of the safetensors folders they came from, with the tokenizer rebuilt from
//! the GGUF metadata alone; the q8_0 files must load as quantized layers and stay close.

use std::path::{Path, PathBuf};

use candle_core::Device;
use dlm_tui::kernels::quant::Quantization;
use dlm_tui::model::loader::{load_dir, LoadedModel, Precision};
use dlm_tui::sampler::{Sampler, SamplerParams};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn load(path: &Path) -> LoadedModel {
    load_dir(path, Precision::F32, &Device::Cpu)
        .unwrap_or_else(|e| panic!("{}: {e:#}", path.display()))
}

fn canvas(loaded: &LoadedModel, prompt: &str, masks: usize) -> Vec<u32> {
    let mut ids = loaded.codec.encode(prompt, true).unwrap();
    ids.extend(std::iter::repeat_n(loaded.model.info().mask_id, masks));
    ids
}

fn greedy(loaded: &mut LoadedModel, canvas: &[u32], block_length: usize) -> Vec<u32> {
    let params = SamplerParams {
        steps: canvas.len() / 2,
        block_length,
        ..SamplerParams::default()
    };
    let model = loaded.model.as_mut();
    let mut sampler = Sampler::new(canvas.to_vec(), params, model.info().traits()).unwrap();
    sampler
        .run_to_end(|request| model.forward_batch(&request.canvases))
        .unwrap();
    sampler.tokens().to_vec()
}

/// Texts that exercise the pre-tokenizer: contractions, digits, punctuation runs, newlines,
/// several spaces, non-ASCII letters and the special tokens written out.
const TEXTS: [&str; 6] = [
    "the cat sat on the mat",
    "She's 12345 years old; isn't it?  Yes!!\n\nNo.",
    "  leading spaces and trailing   ",
    "caf\u{e9} na\u{ef}ve \u{fc}ber 3.14",
    "<|endoftext|>hello<|im_start|>",
    "Once upon a time, there was a little girl named Lily. She loved to play.",
];

#[test]
fn llama_cpp_f32_files_are_the_folders_they_came_from() {
    for (folder, file) in [
        ("llada-tiny-gqa", "gguf/llada-tiny-gqa-f32.gguf"),
        ("dream-tiny-gqa", "gguf/dream-tiny-gqa-f32.gguf"),
    ] {
        let mut want = load(&fixture(folder));
        let mut got = load(&fixture(file));
        let (w, g) = (want.model.info(), got.model.info());
        assert_eq!(w.family, g.family, "{file}");
        assert_eq!(w.mask_id, g.mask_id, "{file}");
        assert_eq!(w.logits_width, g.logits_width, "{file}");
        assert_eq!(w.shift_logits, g.shift_logits, "{file}");
        assert_eq!(w.eos_ids, g.eos_ids, "{file}");
        assert_eq!(w.eot_ids, g.eot_ids, "{file}");
        assert_eq!(w.parameters, g.parameters, "{file}");
        assert_eq!(g.quantization, None, "{file}");
        // The tokenizer rebuilt from the metadata splits and merges as tokenizer.json does.
        for text in TEXTS {
            for special in [false, true] {
                assert_eq!(
                    want.codec.encode(text, special).unwrap(),
                    got.codec.encode(text, special).unwrap(),
                    "{file}: {text:?} (special tokens added: {special})"
                );
            }
            let ids = want.codec.encode(text, false).unwrap();
            assert_eq!(
                want.codec.decode(&ids, false),
                got.codec.decode(&ids, false)
            );
        }
        // Same weights: the same logits to the last bit, and so the same greedy run.
        let canvas = canvas(&want, TEXTS[5], 32);
        let (a, b) = (
            want.model.forward(&canvas).unwrap(),
            got.model.forward(&canvas).unwrap(),
        );
        for row in 0..a.positions() {
            assert_eq!(a.row(row), b.row(row), "{file}: logits of row {row}");
        }
        for block_length in [8, 32] {
            assert_eq!(
                greedy(&mut want, &canvas, block_length),
                greedy(&mut got, &canvas, block_length),
                "{file}: blocks of {block_length}"
            );
        }
    }
}

#[test]
fn llama_cpp_q8_0_files_load_as_quantized_layers() {
    for (folder, file) in [
        ("llada-tiny-gqa", "gguf/llada-tiny-gqa-q8_0.gguf"),
        ("dream-tiny-gqa", "gguf/dream-tiny-gqa-q8_0.gguf"),
    ] {
        let mut f32 = load(&fixture(folder));
        let mut q8 = load(&fixture(file));
        assert_eq!(q8.model.info().quantization, Some(Quantization::Q8_0));
        // The embedding is dequantized to f32; every linear layer keeps its 8.5-bit blocks.
        assert!(
            q8.model.info().weight_bytes * 2 < f32.model.info().weight_bytes,
            "{file}: {} vs {} bytes",
            q8.model.info().weight_bytes,
            f32.model.info().weight_bytes
        );
        let canvas = canvas(&f32, TEXTS[5], 32);
        let (a, b) = (
            f32.model.forward(&canvas).unwrap(),
            q8.model.forward(&canvas).unwrap(),
        );
        let (mut err, mut norm, mut same) = (0f64, 0f64, 0usize);
        for row in 0..a.positions() {
            for (x, y) in a.row(row).iter().zip(b.row(row)) {
                err += ((x - y) as f64).powi(2);
                norm += (*x as f64).powi(2);
            }
            let argmax = dlm_tui::sampler::proposal::argmax;
            same += usize::from(argmax(a.row(row)) == argmax(b.row(row)));
        }
        let relative = (err / norm).sqrt();
        let top1 = same as f64 / a.positions() as f64;
        println!("{file}: logits error {relative:.4}, argmax agreement {top1:.3}");
        // The same bars as quantize-on-load (tests/quantized.rs) on these random-weight models;
        // here the embedding is q8_0 as well, as llama.cpp's converter writes it.
        assert!(relative < 0.08, "{file}: error {relative}");
        assert!(top1 >= 0.9, "{file}: argmax agreement {top1}");
        assert!(relative > 0.0, "{file}: the layers were not quantized");
        greedy(&mut q8, &canvas, 32);
    }
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("dlm-tui-gguf-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// GGUF repositories on the hub hold the .gguf and nothing else: such a folder is a model.
#[test]
fn a_folder_with_only_a_gguf_is_a_model_and_two_are_named() {
    let dir = scratch("folder");
    let one = dir.join("tiny-Q8_0.gguf");
    std::fs::copy(fixture("gguf/dream-tiny-gqa-q8_0.gguf"), &one).unwrap();
    let loaded = load(&dir);
    assert_eq!(loaded.model.info().name, "tiny-Q8_0");
    assert_eq!(loaded.model.info().family, "dream");
    std::fs::copy(
        fixture("gguf/dream-tiny-gqa-f32.gguf"),
        dir.join("tiny-F32.gguf"),
    )
    .unwrap();
    let err = format!(
        "{:#}",
        load_dir(&dir, Precision::F32, &Device::Cpu).err().unwrap()
    );
    assert!(
        err.contains("2 .gguf files") && err.contains("tiny-F32.gguf") && err.contains("--gguf"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A tokenizer.json beside the file is used instead of the metadata's vocabulary.
#[test]
fn a_tokenizer_json_beside_the_file_wins() {
    let dir = scratch("beside");
    let file = dir.join("m.gguf");
    std::fs::copy(fixture("gguf/llada-tiny-gqa-f32.gguf"), &file).unwrap();
    // The Dream fixture's tokenizer splits digits one by one; the LLaDA one keeps runs together.
    std::fs::copy(
        fixture("dream-tiny-gqa/tokenizer.json"),
        dir.join("tokenizer.json"),
    )
    .unwrap();
    let beside = load(&file);
    let dream = load(&fixture("dream-tiny-gqa"));
    let text = "abc 12345";
    assert_eq!(
        beside.codec.encode(text, false).unwrap(),
        dream.codec.encode(text, false).unwrap()
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Files of other architectures, and files that are not GGUF, are refused with their name.
#[test]
fn other_files_are_refused_by_name() {
    use candle_core::quantized::gguf_file::{self, Value};
    use candle_core::quantized::{GgmlDType, QTensor};
    let dir = scratch("refused");
    let llama = dir.join("llama.gguf");
    let weight = QTensor::quantize(
        &candle_core::Tensor::zeros((4, 32), candle_core::DType::F32, &Device::Cpu).unwrap(),
        GgmlDType::F32,
    )
    .unwrap();
    let mut out = std::fs::File::create(&llama).unwrap();
    gguf_file::write(
        &mut out,
        &[("general.architecture", &Value::String("llama".into()))],
        &[("token_embd.weight", &weight)],
    )
    .unwrap();
    drop(out);
    let err = format!(
        "{:#}",
        load_dir(&llama, Precision::F32, &Device::Cpu)
            .err()
            .unwrap()
    );
    assert!(
        err.contains("llama.gguf") && err.contains("\"llama\"") && err.contains("llada, dream"),
        "{err}"
    );
    let junk = dir.join("junk.gguf");
    std::fs::write(&junk, b"not a gguf at all").unwrap();
    let err = format!(
        "{:#}",
        load_dir(&junk, Precision::F32, &Device::Cpu).err().unwrap()
    );
    assert!(
        err.contains("junk.gguf") && err.contains("not a GGUF file"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `dlm-tui quantize` writes what llama.cpp's converter writes: the same tensor names and shapes
/// (LLaDA's q/k rows in GGML's order), the same metadata, and weights equal up to one q8_0
/// rounding step, so that the two files give the same logits.
#[test]
fn quantize_writes_what_llama_cpp_writes() {
    use candle_core::quantized::gguf_file::{Content, Value};
    let dir = scratch("quantize");
    for (folder, theirs) in [
        ("llada-tiny-gqa", "gguf/llada-tiny-gqa-q8_0.gguf"),
        ("dream-tiny-gqa", "gguf/dream-tiny-gqa-q8_0.gguf"),
    ] {
        let ours = dir.join(format!("{folder}.gguf"));
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_dlm-tui"))
            .args([
                "quantize",
                fixture(folder).to_str().unwrap(),
                "--to",
                "q8_0",
                "--out",
            ])
            .arg(&ours)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains("q8_0") && stdout.contains("wrote"),
            "{stdout}"
        );
        let read = |path: &Path| {
            let mut f = std::fs::File::open(path).unwrap();
            let content = Content::read(&mut f).unwrap();
            (content, f)
        };
        let (a, mut fa) = read(&ours);
        let (b, mut fb) = read(&fixture(theirs));
        let arch = match &b.metadata["general.architecture"] {
            Value::String(s) => s.clone(),
            _ => unreachable!(),
        };
        let same_keys = [
            "block_count",
            "context_length",
            "embedding_length",
            "feed_forward_length",
            "attention.head_count",
            "attention.head_count_kv",
            "rope.freq_base",
            "attention.layer_norm_rms_epsilon",
            "rope.dimension_count",
            "attention.causal",
        ]
        .map(|k| format!("{arch}.{k}"));
        let shared = [
            "general.architecture",
            "diffusion.shift_logits",
            "tokenizer.ggml.model",
            "tokenizer.ggml.pre",
            "tokenizer.ggml.merges",
            "tokenizer.ggml.eos_token_id",
            "tokenizer.ggml.mask_token_id",
            "tokenizer.ggml.add_bos_token",
        ];
        for key in same_keys.iter().map(String::as_str).chain(shared) {
            match (a.metadata.get(key), b.metadata.get(key)) {
                (None, None) => {}
                (x, y) => assert_eq!(format!("{x:?}"), format!("{y:?}"), "{folder}: {key}"),
            }
        }
        // The token list is theirs, padded to one token per embedding row (llama.cpp refuses a
        // list shorter than the embedding, which its converter writes for the LLaDA fixture).
        let tokens = |c: &Content| match &c.metadata["tokenizer.ggml.tokens"] {
            Value::Array(t) => t
                .iter()
                .map(|v| v.to_string().unwrap().clone())
                .collect::<Vec<_>>(),
            _ => unreachable!(),
        };
        let (ta, tb) = (tokens(&a), tokens(&b));
        assert_eq!(ta[..tb.len()], tb[..], "{folder}");
        assert_eq!(
            ta.len(),
            a.tensor_infos["token_embd.weight"].shape.dims()[0]
        );
        let mut names_a: Vec<_> = a.tensor_infos.keys().cloned().collect();
        let mut names_b: Vec<_> = b.tensor_infos.keys().cloned().collect();
        names_a.sort();
        names_b.sort();
        assert_eq!(names_a, names_b, "{folder}");
        for name in &names_a {
            let (ia, ib) = (&a.tensor_infos[name], &b.tensor_infos[name]);
            assert_eq!(ia.shape, ib.shape, "{folder}: {name}");
            assert_eq!(ia.ggml_dtype, ib.ggml_dtype, "{folder}: {name}");
            let x = a.tensor(&mut fa, name, &Device::Cpu).unwrap();
            let y = b.tensor(&mut fb, name, &Device::Cpu).unwrap();
            let x = x.dequantize(&Device::Cpu).unwrap().flatten_all().unwrap();
            let y = y.dequantize(&Device::Cpu).unwrap().flatten_all().unwrap();
            let max = y.abs().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
            let diff = (x - y)
                .unwrap()
                .abs()
                .unwrap()
                .max(0)
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            // One rounding step of a q8_0 block is its max / 127.
            assert!(
                diff <= max / 127.0 + 1e-6,
                "{folder}: {name} differs by {diff}"
            );
        }
        let mut mine = load(&ours);
        let mut reference = load(&fixture(theirs));
        assert_eq!(mine.model.info().quantization, Some(Quantization::Q8_0));
        let canvas = canvas(&reference, TEXTS[5], 16);
        assert_eq!(
            canvas,
            self::canvas(&mine, TEXTS[5], 16),
            "{folder}: tokenizers"
        );
        let (x, y) = (
            mine.model.forward(&canvas).unwrap(),
            reference.model.forward(&canvas).unwrap(),
        );
        let (mut err, mut norm) = (0f64, 0f64);
        for row in 0..x.positions() {
            for (p, q) in x.row(row).iter().zip(y.row(row)) {
                err += ((p - q) as f64).powi(2);
                norm += (*q as f64).powi(2);
            }
        }
        let relative = (err / norm).sqrt();
        assert!(relative < 0.01, "{folder}: logits differ by {relative}");
        greedy(&mut mine, &canvas, 16);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
