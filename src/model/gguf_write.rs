//! Writing a model folder as a GGUF file that llama.cpp reads (`dlm-tui quantize`): the names,
//! metadata and row order of llama.cpp's own converter (`convert_hf_to_gguf.py`, architectures
//! `llada` and `dream`), the linear layers and the embedding quantized with candle's GGML
//! quantizers, norms and biases in f32.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Tensor};

use super::llada::LladaConfig;
use super::loader::{read_config, transformer_config, weight_files};
use crate::kernels::quant::{ggml_name, Quantization};

/// What was written.
#[derive(Debug, Clone)]
pub struct Written {
    pub architecture: &'static str,
    pub tensors: usize,
    /// Tensors per GGML format.
    pub formats: BTreeMap<String, usize>,
    pub bytes: u64,
}

impl std::fmt::Display for Written {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} tensors of a {} model ({}), {}",
            self.tensors,
            self.architecture,
            super::counts(&self.formats),
            crate::files::human_bytes(self.bytes)
        )
    }
}

/// llama.cpp's `general.file_type` for a file mostly in `to` (`LLAMA_FTYPE_MOSTLY_*`; a
/// uniform k-quant is its "_S" variant).
fn file_type(to: Quantization) -> u32 {
    match to {
        Quantization::Q4_0 => 2,
        Quantization::Q8_0 => 7,
        Quantization::Q5_0 => 8,
        Quantization::Q4K => 14,
        Quantization::Q5K => 16,
        Quantization::Q6K => 18,
    }
}

/// Writes the LLaDA or Dream model in `dir` to `out` as GGUF, its matrices in `to` (rows that
/// do not fit its blocks fall back as `--quantize` does, else stay f32). The file is written
/// through a temporary file and renamed, so a failure leaves no half-written model.
pub fn write_gguf(dir: &Path, to: Quantization, out: &Path) -> Result<Written> {
    let (files, json) = read_config(dir)?;
    let (cfg, family, codec) = transformer_config(dir, &files, json)?;
    let architecture = match family {
        "llada" => "llada",
        "dream" => "dream",
        other => bail!(
            "{} is a {other} model: llama.cpp runs llada and dream diffusion models from GGUF, \
             so only those are written",
            dir.display()
        ),
    };
    let rows = cfg.embedding_rows();
    let vocab = codec
        .gguf_vocab(rows)
        .with_context(|| format!("{}: its tokenizer cannot be written to GGUF", dir.display()))?;
    let weights = unsafe { MmapedSafetensors::multi(&weight_files(dir)?) }
        .with_context(|| format!("reading safetensors in {}", dir.display()))?;

    let mut tensors: Vec<(String, QTensor)> = Vec::new();
    let mut formats = BTreeMap::new();
    let mut add = |name: String, tensor: Tensor, dtype: GgmlDType| -> Result<()> {
        let q = QTensor::quantize(&tensor.to_dtype(DType::F32)?, dtype)?;
        *formats.entry(ggml_name(dtype)).or_insert(0) += 1;
        tensors.push((name, q));
        Ok(())
    };
    let load = |name: &str| -> Result<Tensor> {
        weights
            .load(name, &Device::Cpu)
            .with_context(|| format!("{}: reading {name}", dir.display()))
    };
    let matrix = |tensor: &Tensor| -> Result<GgmlDType> {
        let cols = tensor.dim(1)?;
        Ok(to.for_row(cols).unwrap_or(GgmlDType::F32))
    };
    let top = cfg.naming.top();
    let embedding = load(&format!("{}.{}", top.prefix, top.embedding))?;
    let dtype = matrix(&embedding)?;
    add("token_embd.weight".into(), embedding, dtype)?;
    add(
        "output_norm.weight".into(),
        load(&format!("{}.{}.weight", top.prefix, top.final_norm))?,
        GgmlDType::F32,
    )?;
    if !cfg.weight_tying {
        let head = load(&format!("{}.weight", top.head))?;
        let dtype = matrix(&head)?;
        add("output.weight".into(), head, dtype)?;
    }
    let kv_heads = cfg.effective_n_kv_heads()?;
    for i in 0..cfg.n_layers {
        for (k, (ours, theirs)) in cfg
            .naming
            .block()
            .iter()
            .zip(super::gguf::BLOCK_TENSORS)
            .enumerate()
        {
            let base = format!("{}.{}.{i}.{ours}", top.prefix, top.blocks);
            for kind in ["weight", "bias"] {
                let name = format!("{base}.{kind}");
                if kind == "bias" && weights.get(&name).is_err() {
                    continue;
                }
                let mut tensor = load(&name)?;
                // llama.cpp's LLaDA converter reorders q and k rows for GGML's rotary kernel.
                if architecture == "llada" && (k == 2 || k == 3) {
                    let heads = if k == 2 { cfg.n_heads } else { kv_heads };
                    tensor = permute_for_ggml(&tensor, heads)?;
                }
                let dtype = if k >= 2 && kind == "weight" {
                    matrix(&tensor)?
                } else {
                    GgmlDType::F32
                };
                add(format!("blk.{i}.{theirs}.{kind}"), tensor, dtype)?;
            }
        }
    }

    let template = super::loader::chat_template(dir)?.map(|t| t.source().to_string());
    let metadata = metadata(&cfg, architecture, to, dir, &vocab, &template)?;
    let metadata_refs: Vec<(&str, &Value)> =
        metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let tensor_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    crate::files::write_atomically_with(out, false, |file| {
        gguf_file::write(file, &metadata_refs, &tensor_refs).map_err(std::io::Error::other)
    })?;
    Ok(Written {
        architecture,
        tensors: tensors.len(),
        formats,
        bytes: std::fs::metadata(out)?.len(),
    })
}

/// LLaDA's `permute` in llama.cpp's converter: within each head, the first half's row i goes to
/// 2i and the second half's to 2i + 1.
fn permute_for_ggml(w: &Tensor, heads: usize) -> Result<Tensor> {
    let dims = w.dims().to_vec();
    let rows = dims[0];
    if heads == 0 || !rows.is_multiple_of(2 * heads) {
        bail!("{rows} rows do not split into {heads} heads of even size");
    }
    let rest: usize = dims[1..].iter().product();
    Ok(w.reshape((heads, 2, rows / heads / 2, rest))?
        .transpose(1, 2)?
        .contiguous()?
        .reshape(dims)?)
}

fn metadata(
    cfg: &LladaConfig,
    arch: &str,
    to: Quantization,
    dir: &Path,
    vocab: &crate::text::GgufVocab,
    chat_template: &Option<String>,
) -> Result<Vec<(String, Value)>> {
    let u32_of = |n: usize| -> Result<Value> {
        Ok(Value::U32(
            u32::try_from(n).map_err(|_| anyhow!("{n} does not fit GGUF's u32"))?,
        ))
    };
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| arch.to_string());
    let mut m: Vec<(String, Value)> = vec![
        ("general.architecture".into(), Value::String(arch.into())),
        ("general.type".into(), Value::String("model".into())),
        ("general.name".into(), Value::String(name)),
        ("general.file_type".into(), Value::U32(file_type(to))),
        ("general.quantization_version".into(), Value::U32(2)),
    ];
    let mut put = |key: &str, value: Value| m.push((format!("{arch}.{key}"), value));
    put("block_count", u32_of(cfg.n_layers)?);
    put("context_length", u32_of(cfg.max_sequence_length)?);
    put("embedding_length", u32_of(cfg.d_model)?);
    put("feed_forward_length", u32_of(cfg.hidden_size())?);
    put("attention.head_count", u32_of(cfg.n_heads)?);
    put(
        "attention.head_count_kv",
        u32_of(cfg.effective_n_kv_heads()?)?,
    );
    put("rope.freq_base", Value::F32(cfg.rope_theta as f32));
    put(
        "attention.layer_norm_rms_epsilon",
        Value::F32(cfg.rms_norm_eps as f32),
    );
    put("attention.causal", Value::Bool(false));
    if arch == "llada" {
        put("vocab_size", u32_of(cfg.embedding_rows())?);
        put("rope.dimension_count", u32_of(cfg.head_dim())?);
    }
    if arch == "llada" {
        m.push(("diffusion.shift_logits".into(), Value::Bool(false)));
    }
    let strings =
        |list: &[String]| Value::Array(list.iter().map(|s| Value::String(s.clone())).collect());
    m.push(("tokenizer.ggml.model".into(), Value::String("gpt2".into())));
    m.push(("tokenizer.ggml.pre".into(), Value::String(vocab.pre.into())));
    m.push(("tokenizer.ggml.tokens".into(), strings(&vocab.tokens)));
    m.push((
        "tokenizer.ggml.token_type".into(),
        Value::Array(vocab.types.iter().map(|&t| Value::I32(t)).collect()),
    ));
    m.push(("tokenizer.ggml.merges".into(), strings(&vocab.merges)));
    if let Some(eos) = cfg.eos_token_id {
        m.push(("tokenizer.ggml.eos_token_id".into(), Value::U32(eos)));
        m.push(("tokenizer.ggml.padding_token_id".into(), Value::U32(eos)));
    }
    if let Some(mask) = cfg.mask_token_id {
        m.push(("tokenizer.ggml.mask_token_id".into(), Value::U32(mask)));
    }
    if let Some(bos) = vocab.bos {
        m.push(("tokenizer.ggml.bos_token_id".into(), Value::U32(bos)));
    }
    m.push((
        "tokenizer.ggml.add_bos_token".into(),
        Value::Bool(vocab.bos.is_some()),
    ));
    if let Some(template) = chat_template {
        m.push((
            "tokenizer.chat_template".into(),
            Value::String(template.clone()),
        ));
    }
    Ok(m)
}
