//! GGUF files as llama.cpp's `convert_hf_to_gguf.py` writes them for the DLM families we run
//! (architectures `llada` and `dream`): the configuration, the mask token and the tokenizer come
//! from the file's metadata, the weights from its tensors. Float tensors load as the safetensors
//! would; block-quantized linear layers (q8_0, q4_K, ...) stay quantized and run on candle's
//! quantized kernels, while the embedding and the norms are dequantized to float.
//!
//! Names follow llama.cpp's `gguf-py/gguf/constants.py` (`token_embd`, `blk.N.attn_q`, ...). Its
//! converter reorders the rows of LLaDA's query and key projections for GGML's interleaved rotary
//! embedding (`LLaDAModel.permute`); they are put back in the reference's order here, because our
//! rotary embedding is the reference's (`rotate_half`).

use std::collections::HashMap;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{anyhow, bail, Context, Result};
use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::VarBuilder;

use super::llada::{LladaConfig, QuantizedSource};
use crate::chat::ChatTemplate;
use crate::kernels::quant::{permute_rows, Quantization};
use crate::text::TextCodec;

/// The architectures (`general.architecture`) dlm-tui loads from GGUF.
pub const GGUF_ARCHITECTURES: &[&str] = &["llada", "dream"];

/// llama.cpp's names of a block's tensors (`blk.N.NAME.weight`), in the order of our
/// `Naming::block()`: the two norms, q, k, v, the attention output, gate, up, down.
pub const BLOCK_TENSORS: [&str; 9] = [
    "attn_norm",
    "ffn_norm",
    "attn_q",
    "attn_k",
    "attn_v",
    "attn_output",
    "ffn_gate",
    "ffn_up",
    "ffn_down",
];

/// LLaDA's mask token, for files whose metadata does not name one (LLaDA-8B's tokenizer_config
/// has no `mask_token`, so llama.cpp's converter writes none; its diffusion example uses this id).
const LLADA_MASK_ID: u32 = 126_336;

/// An open GGUF file: its metadata and tensor directory, and a reader for its tensors.
pub struct GgufFile {
    path: PathBuf,
    content: Content,
    reader: Mutex<BufReader<File>>,
    arch: String,
}

/// The `.gguf` a model folder holds, if it holds exactly one (more is an error that names them).
pub fn gguf_in(dir: &Path) -> Result<Option<PathBuf>> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "gguf"))
        .collect();
    found.sort();
    match found.len() {
        0 => Ok(None),
        1 => Ok(found.pop()),
        _ => bail!(
            "{} holds {} .gguf files ({}): name one with --gguf FILE",
            dir.display(),
            found.len(),
            found
                .iter()
                .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

impl GgufFile {
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let mut reader = BufReader::new(file);
        let content = Content::read(&mut reader)
            .map_err(|e| anyhow!("{}: not a GGUF file: {e}", path.display()))?;
        let arch = match content.metadata.get("general.architecture") {
            Some(Value::String(arch)) => arch.clone(),
            _ => bail!(
                "{}: no general.architecture in its metadata",
                path.display()
            ),
        };
        if !GGUF_ARCHITECTURES.contains(&arch.as_str()) {
            bail!(
                "{}: architecture \"{arch}\" is not one dlm-tui runs from GGUF (it runs {})",
                path.display(),
                GGUF_ARCHITECTURES.join(", ")
            );
        }
        Ok(Self {
            path: path.to_path_buf(),
            content,
            reader: Mutex::new(reader),
            arch,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn architecture(&self) -> &str {
        &self.arch
    }

    fn value(&self, key: &str) -> Option<&Value> {
        self.content.metadata.get(key)
    }

    fn arch_value(&self, key: &str) -> Option<&Value> {
        self.value(&format!("{}.{key}", self.arch))
    }

    fn required_u64(&self, key: &str) -> Result<u64> {
        let full = format!("{}.{key}", self.arch);
        let value = self
            .value(&full)
            .ok_or_else(|| anyhow!("{}: no {full} in its metadata", self.path.display()))?;
        as_u64(value).with_context(|| format!("{}: {full}", self.path.display()))
    }

    fn optional_u64(&self, key: &str) -> Result<Option<u64>> {
        self.value(key).map(as_u64).transpose()
    }

    fn has_tensor(&self, name: &str) -> bool {
        self.content.tensor_infos.contains_key(name)
    }

    /// Rows of a 2-D tensor (GGUF lists dimensions innermost first; candle reverses them).
    fn rows(&self, name: &str) -> Result<usize> {
        let info = self
            .content
            .tensor_infos
            .get(name)
            .ok_or_else(|| anyhow!("{}: no tensor {name}", self.path.display()))?;
        Ok(info.shape.dims()[0])
    }

    /// The configuration, in the keys of the family's own `config.json` (parsed there as a
    /// folder's would be).
    pub fn config(&self) -> Result<LladaConfig> {
        let layers = self.required_u64("block_count")?;
        let d_model = self.required_u64("embedding_length")?;
        let hidden = self.required_u64("feed_forward_length")?;
        let heads = self.required_u64("attention.head_count")?;
        let kv_heads = match self.arch_value("attention.head_count_kv") {
            Some(v) => as_u64(v)?,
            None => heads,
        };
        let context = self.required_u64("context_length")?;
        let theta = match self.arch_value("rope.freq_base") {
            Some(v) => as_f64(v)?,
            None => 10_000.0,
        };
        let eps = match self.arch_value("attention.layer_norm_rms_epsilon") {
            Some(v) => as_f64(v)?,
            None => 1e-5,
        };
        let rows = self.rows("token_embd.weight")?;
        let tokens = self.token_count()?;
        let tied = !self.has_tensor("output.weight");
        let eos = self.optional_u64("tokenizer.ggml.eos_token_id")?;
        let mask = self.optional_u64("tokenizer.ggml.mask_token_id")?;
        let qkv_bias = self.has_tensor("blk.0.attn_q.bias");
        let head_dim = match self.arch_value("rope.dimension_count") {
            Some(v) => Some(as_u64(v)? as usize),
            None => None,
        };
        let mut cfg = match self.arch.as_str() {
            "llada" => {
                let json = serde_json::json!({
                    "d_model": d_model, "n_heads": heads, "n_kv_heads": kv_heads,
                    "n_layers": layers, "mlp_hidden_size": hidden,
                    "activation_type": "silu", "block_type": "llama", "rope": true,
                    "rope_theta": theta, "layer_norm_type": "rms", "rms_norm_eps": eps,
                    "max_sequence_length": context,
                    "include_bias": self.has_tensor("blk.0.attn_output.bias"),
                    "include_qkv_bias": qkv_bias,
                    "vocab_size": tokens.min(rows), "embedding_size": rows,
                    "weight_tying": tied, "eos_token_id": eos,
                    "mask_token_id": mask.unwrap_or(LLADA_MASK_ID as u64),
                });
                let mut cfg: LladaConfig = serde_json::from_value(json)?;
                if head_dim.is_some_and(|d| d != cfg.d_model / cfg.n_heads) {
                    cfg.head_dim_override = head_dim;
                }
                cfg
            }
            "dream" => {
                let Some(mask) = mask else {
                    bail!(
                        "{}: no tokenizer.ggml.mask_token_id in its metadata (Dream files name \
                         their mask token)",
                        self.path.display()
                    );
                };
                let json = serde_json::json!({
                    "architectures": ["DreamModel"], "model_type": "Dream",
                    "hidden_size": d_model, "intermediate_size": hidden,
                    "num_attention_heads": heads, "num_key_value_heads": kv_heads,
                    "num_hidden_layers": layers, "vocab_size": rows,
                    "max_position_embeddings": context, "rope_theta": theta,
                    "rms_norm_eps": eps, "mask_token_id": mask,
                    "tie_word_embeddings": tied, "eos_token_id": eos,
                });
                serde_json::from_value::<super::dream::DreamConfig>(json)?.to_transformer()?
            }
            other => bail!("architecture {other} is not supported"),
        };
        cfg.validate()
            .with_context(|| format!("in {}", self.path.display()))?;
        cfg.max_sequence_length = cfg.max_sequence_length.min(super::llada::MAX_CONTEXT);
        Ok(cfg)
    }

    /// Entries of the file's token list (unused padding included).
    pub fn token_count(&self) -> Result<usize> {
        match self.value("tokenizer.ggml.tokens") {
            Some(Value::Array(tokens)) => Ok(tokens.len()),
            _ => Ok(0),
        }
    }

    fn tokens(&self) -> Result<Vec<String>> {
        match self.value("tokenizer.ggml.tokens") {
            Some(Value::Array(tokens)) => tokens
                .iter()
                .map(|t| Ok(t.to_string()?.clone()))
                .collect::<candle_core::Result<Vec<_>>>()
                .map_err(Into::into),
            _ => bail!(
                "{}: no tokenizer.ggml.tokens in its metadata",
                self.path.display()
            ),
        }
    }

    /// The tokenizer the metadata describes (llama.cpp's "gpt2" byte-level BPE).
    pub fn tokenizer(&self) -> Result<TextCodec> {
        let context = || format!("{}: the tokenizer in its metadata", self.path.display());
        match self.value("tokenizer.ggml.model") {
            Some(Value::String(model)) if model == "gpt2" => {}
            Some(Value::String(model)) => bail!(
                "{}: its tokenizer is llama.cpp's \"{model}\" kind, which dlm-tui does not build \
                 (it builds \"gpt2\", the byte-level BPE of LLaDA and Dream): put the model's \
                 tokenizer.json beside the .gguf and it is used instead",
                self.path.display()
            ),
            _ => bail!("{}: no tokenizer.ggml.model", self.path.display()),
        }
        let tokens = self.tokens()?;
        let types = match self.value("tokenizer.ggml.token_type") {
            Some(Value::Array(types)) => types.iter().map(as_i64).collect::<Result<Vec<_>>>()?,
            _ => Vec::new(),
        };
        let merges = match self.value("tokenizer.ggml.merges") {
            Some(Value::Array(merges)) => merges
                .iter()
                .map(|m| Ok(m.to_string()?.clone()))
                .collect::<candle_core::Result<Vec<_>>>()?,
            _ => Vec::new(),
        };
        let pre = match self.value("tokenizer.ggml.pre") {
            Some(Value::String(pre)) => pre.clone(),
            _ => "default".to_string(),
        };
        let add_bos = matches!(
            self.value("tokenizer.ggml.add_bos_token"),
            Some(Value::Bool(true))
        );
        let bos = if add_bos {
            self.optional_u64("tokenizer.ggml.bos_token_id")?
                .map(|id| id as u32)
        } else {
            None
        };
        TextCodec::from_gguf_vocab(&tokens, &types, merges, &pre, bos).with_context(context)
    }

    /// The chat template the file carries (`tokenizer.chat_template`), with the texts of its
    /// BOS and EOS tokens.
    pub fn chat_template(&self) -> Result<Option<ChatTemplate>> {
        let Some(Value::String(source)) = self.value("tokenizer.chat_template") else {
            return Ok(None);
        };
        let tokens = self.tokens()?;
        let text = |key: &str| -> Result<String> {
            Ok(self
                .optional_u64(key)?
                .and_then(|id| tokens.get(id as usize).cloned())
                .unwrap_or_default())
        };
        Ok(Some(ChatTemplate::new(
            source.clone(),
            text("tokenizer.ggml.bos_token_id")?,
            text("tokenizer.ggml.eos_token_id")?,
        )))
    }

    /// The format most of the linear layers' weights are in (the embedding and 1-D tensors not
    /// counted), when it is a quantized one we name (`q4_k` for a "Q4_K_M" file).
    pub fn quantization(&self) -> Option<Quantization> {
        let mut counts: HashMap<String, (usize, GgmlDType)> = HashMap::new();
        for (name, info) in &self.content.tensor_infos {
            if name.starts_with("blk.") && name.ends_with(".weight") && info.shape.rank() == 2 {
                counts
                    .entry(format!("{:?}", info.ggml_dtype))
                    .or_insert((0, info.ggml_dtype))
                    .0 += 1;
            }
        }
        let (_, dtype) = counts.into_values().max_by_key(|(n, _)| *n)?;
        Quantization::from_ggml(dtype)
    }

    fn read(&self, name: &str, device: &Device) -> Result<QTensor> {
        let mut reader = self.reader.lock().map_err(|_| anyhow!("reader poisoned"))?;
        self.content
            .tensor(&mut *reader, name, device)
            .with_context(|| format!("{}: reading {name}", self.path.display()))
    }
}

fn as_u64(v: &Value) -> Result<u64> {
    Ok(match v {
        Value::U8(x) => *x as u64,
        Value::U16(x) => *x as u64,
        Value::U32(x) => *x as u64,
        Value::U64(x) => *x,
        Value::I8(x) if *x >= 0 => *x as u64,
        Value::I16(x) if *x >= 0 => *x as u64,
        Value::I32(x) if *x >= 0 => *x as u64,
        Value::I64(x) if *x >= 0 => *x as u64,
        other => bail!("expected an unsigned integer, found {other:?}"),
    })
}

fn as_i64(v: &Value) -> Result<i64> {
    Ok(match v {
        Value::I32(x) => *x as i64,
        Value::I64(x) => *x,
        other => as_u64(other)? as i64,
    })
}

fn as_f64(v: &Value) -> Result<f64> {
    Ok(match v {
        Value::F32(x) => *x as f64,
        Value::F64(x) => *x,
        other => as_u64(other)? as f64,
    })
}

/// The tensors of a GGUF file under the names the transformer asks for (its `Naming`).
pub struct GgufWeights {
    file: GgufFile,
    /// Our name -> (GGUF name, heads to un-permute the rows by).
    names: HashMap<String, (String, Option<usize>)>,
}

impl GgufWeights {
    pub fn new(file: GgufFile, cfg: &LladaConfig) -> Result<Self> {
        let mut names = HashMap::new();
        let top = cfg.naming.top();
        let ours = |parts: &[&str]| parts.join(".");
        names.insert(
            ours(&[top.prefix, top.embedding]),
            ("token_embd.weight".to_string(), None),
        );
        names.insert(
            ours(&[top.prefix, top.final_norm, "weight"]),
            ("output_norm.weight".to_string(), None),
        );
        names.insert(
            ours(&[top.head, "weight"]),
            ("output.weight".to_string(), None),
        );

        // LLaDA's converter permutes q by the query heads and k by the key heads.
        let permuted = file.arch == "llada";
        let kv_heads = cfg.effective_n_kv_heads()?;
        for i in 0..cfg.n_layers {
            for (k, (ours_name, theirs)) in cfg.naming.block().iter().zip(BLOCK_TENSORS).enumerate()
            {
                let heads = match k {
                    2 if permuted => Some(cfg.n_heads),
                    3 if permuted => Some(kv_heads),
                    _ => None,
                };
                for kind in ["weight", "bias"] {
                    names.insert(
                        format!("{}.{}.{i}.{ours_name}.{kind}", top.prefix, top.blocks),
                        (format!("blk.{i}.{theirs}.{kind}"), heads),
                    );
                }
            }
        }
        Ok(Self { file, names })
    }

    fn lookup(&self, name: &str) -> candle_core::Result<&(String, Option<usize>)> {
        self.names.get(name).ok_or_else(|| {
            candle_core::Error::Msg(format!(
                "{}: no GGUF tensor corresponds to {name}",
                self.file.path.display()
            ))
        })
    }

    /// The tensor `name` in the file's own format, rows in the reference's order.
    fn qtensor(&self, name: &str, device: &Device) -> candle_core::Result<QTensor> {
        let (theirs, heads) = self.lookup(name)?;
        let q = self
            .file
            .read(theirs, device)
            .map_err(|e| candle_core::Error::Msg(format!("{e:#}")))?;
        match heads {
            Some(heads) => unpermute(q, *heads),
            None => Ok(q),
        }
    }

    /// A VarBuilder over this file: every tensor dequantized to `dtype`.
    pub fn var_builder(
        self: &std::sync::Arc<Self>,
        dtype: DType,
        device: &Device,
    ) -> VarBuilder<'static> {
        VarBuilder::from_backend(Box::new(Shared(self.clone())), dtype, device.clone())
    }
}

/// LLaDA's rows back in the reference's order: the converter wrote, within each head, the first
/// half's row i at 2i and the second half's at 2i + 1.
fn unpermute(q: QTensor, heads: usize) -> candle_core::Result<QTensor> {
    let rows = q.shape().dims()[0];
    if heads == 0 || !rows.is_multiple_of(2 * heads) {
        return Err(candle_core::Error::Msg(format!(
            "{rows} rows do not split into {heads} heads of even size"
        )));
    }
    let head_dim = rows / heads;
    let half = head_dim / 2;
    // Reference row (h, j, i) = h * head_dim + j * half + i sits at GGUF row h * head_dim + 2i + j.
    let order: Vec<usize> = (0..rows)
        .map(|r| {
            let (h, within) = (r / head_dim, r % head_dim);
            let (j, i) = (within / half, within % half);
            h * head_dim + 2 * i + j
        })
        .collect();
    permute_rows(&q, &order)
}

struct Shared(std::sync::Arc<GgufWeights>);

impl SimpleBackend for Shared {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let tensor = self.get_unchecked(name, dtype, dev)?;
        if tensor.shape() != &s {
            return Err(candle_core::Error::Msg(format!(
                "{}: {name} has shape {:?}, the configuration asks for {:?}",
                self.0.file.path.display(),
                tensor.dims(),
                s.dims()
            )));
        }
        Ok(tensor)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        self.0.qtensor(name, dev)?.dequantize(dev)?.to_dtype(dtype)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.0
            .names
            .get(name)
            .is_some_and(|(theirs, _)| self.0.file.has_tensor(theirs))
    }
}

impl QuantizedSource for GgufWeights {
    fn quantized(&self, name: &str, device: &Device) -> Result<Option<QTensor>> {
        let Ok((theirs, _)) = self.lookup(name) else {
            return Ok(None);
        };
        let Some(info) = self.file.content.tensor_infos.get(theirs) else {
            return Ok(None);
        };
        if matches!(
            info.ggml_dtype,
            GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16
        ) {
            return Ok(None);
        }
        Ok(Some(self.qtensor(name, device)?))
    }
}
