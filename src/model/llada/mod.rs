//! The LLaDA architecture (GSAI-ML/LLaDA-8B-*, and our embedded default model): a Llama-style
//! transformer with bidirectional attention, loaded from LLaDA's own `config.json` keys and tensor
//! names. Every detail follows the reference `modeling_llada.py` (`LLaDALlamaBlock`):
//! - RMSNorm computed in f32 and cast back before the (optional) affine weight and bias;
//! - rotary embeddings of the non-interleaved (`rotate_half`) kind, in full precision;
//! - grouped KV heads expanded with `repeat_interleave` (query head h reads KV head h / n_rep);
//! - SwiGLU MLP where `ff_proj` is the gated projection: `ff_out(silu(ff_proj(x)) * up_proj(x))`;
//! - output head tied to `wte` or a separate `ff_out`, logits over the full `embedding_size`.
//!
//! [`config`] holds the configuration and tensor names, [`block`] the layer stack, and `cached`
//! the inference forward over a window with the key/value cache.

mod block;
mod cached;
mod config;

pub use block::{Kernels, MAX_CONTEXT};
pub use config::{LladaConfig, Naming};

use anyhow::{Context, Result};
use candle_core::quantized::QTensor;
use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{Embedding, Init, Linear, VarBuilder};

use super::layers::{linear, Dense, INIT_STD, TIED_HEAD_COPY_MAX};
use super::{AttentionKernel, Family, ModelInfo};
use block::{Block, RmsNorm, Rotary};

/// Linear layers that come as quantized blocks (a GGUF file's): the weight named `name` (the
/// tensor name the float loader would read), or `None` where it is stored in float.
pub trait QuantizedSource {
    fn quantized(&self, name: &str, device: &Device) -> Result<Option<QTensor>>;
}

/// The token embedding: float rows, or quantized blocks decoded row by row as they are looked up
/// (a GGUF file's).
enum TokenEmbedding {
    Float(Embedding),
    Quantized(QTensor),
}

impl TokenEmbedding {
    fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        Ok(match self {
            TokenEmbedding::Float(e) => e.forward(ids)?,
            TokenEmbedding::Quantized(q) => q.embedding(ids)?,
        })
    }

    /// Bytes of the table.
    fn bytes(&self) -> usize {
        match self {
            TokenEmbedding::Float(e) => {
                let w = e.embeddings();
                w.elem_count() * w.dtype().size_in_bytes()
            }
            TokenEmbedding::Quantized(q) => q.storage_size_in_bytes(),
        }
    }
}

/// A loaded LLaDA model.
pub struct Llada {
    wte: TokenEmbedding,
    blocks: Vec<Block>,
    ln_f: RmsNorm,
    head: Dense,
    rotary: Rotary,
    cfg: LladaConfig,
    device: Device,
    info: ModelInfo,
    kernels: Kernels,
    attention: AttentionKernel,
}

impl Llada {
    /// The end-of-turn ids of the tokenizer that goes with these weights.
    pub fn set_eot_ids(&mut self, ids: Vec<u32>) {
        self.info.eot_ids = ids;
    }

    /// The format the linear layers are stored in, when they came quantized (a GGUF file's).
    pub fn set_quantization(&mut self, quantization: Option<crate::kernels::quant::Quantization>) {
        self.info.quantization = quantization;
    }

    pub fn new(cfg: LladaConfig, vb: VarBuilder, name: String) -> Result<Self> {
        Self::build(cfg, vb, name, None)
    }

    /// As [`Self::new`], taking every linear layer that `source` holds in quantized blocks as
    /// those blocks (a GGUF file's): such layers are never built in float, nor read twice.
    pub fn with_quantized(
        cfg: LladaConfig,
        vb: VarBuilder,
        name: String,
        source: &dyn QuantizedSource,
    ) -> Result<Self> {
        Self::build(cfg, vb, name, Some(source))
    }

    fn build(
        cfg: LladaConfig,
        vb: VarBuilder,
        name: String,
        source: Option<&dyn QuantizedSource>,
    ) -> Result<Self> {
        cfg.validate()?;
        let device = vb.device().clone();
        let names = cfg.naming.top();
        let root = vb.clone();
        let vb = vb.pp(names.prefix);
        let rows = cfg.embedding_rows();
        // A quantized embedding stays quantized (rows are decoded as they are looked up): LLaDA-
        // 8B's would take 2 GiB in f32. A tied one is also the head's weight and is loaded in
        // float.
        let quantized_embedding = match source.filter(|_| !cfg.weight_tying) {
            Some(source) => {
                source.quantized(&format!("{}.{}", names.prefix, names.embedding), &device)?
            }
            None => None,
        };
        let (wte, wte_weight) = match quantized_embedding {
            Some(q) => (TokenEmbedding::Quantized(q), None),
            None => {
                let weight = vb
                    .get_with_hints(
                        (rows, cfg.d_model),
                        names.embedding,
                        Init::Randn {
                            mean: 0.0,
                            stdev: INIT_STD,
                        },
                    )
                    .context("loading the token embedding")?;
                (
                    TokenEmbedding::Float(Embedding::new(weight.clone(), cfg.d_model)),
                    Some(weight),
                )
            }
        };
        let weight_dtype = wte_weight.as_ref().map_or(vb.dtype(), Tensor::dtype);
        let blocks = (0..cfg.n_layers)
            .map(|i| {
                Block::new(&cfg, vb.pp(format!("{}.{i}", names.blocks)), source)
                    .with_context(|| format!("loading block {i}"))
            })
            .collect::<Result<Vec<_>>>()?;
        let ln_f = RmsNorm::new(&cfg, vb.pp(names.final_norm)).context("loading the final norm")?;
        // A quantized head is taken as it is, never built in float first: LLaDA-8B's is 126k
        // rows, 2 GiB in f32.
        let quantized_head = match source.filter(|_| !cfg.weight_tying) {
            Some(source) => source.quantized(&format!("{}.weight", names.head), &device)?,
            None => None,
        };
        let head = match quantized_head {
            Some(q) => {
                let bias = if cfg.include_bias {
                    Some(root.pp(names.head).get(rows, "bias")?)
                } else {
                    None
                };
                Dense::from_qtensor(q, bias)?
            }
            None => Dense::Stored(
                if let (true, Some(weight)) = (cfg.weight_tying, &wte_weight) {
                    Linear::new(weight.clone(), None)
                } else {
                    linear(
                        cfg.d_model,
                        rows,
                        cfg.include_bias,
                        INIT_STD,
                        root.pp(names.head),
                    )
                    .context("loading the output head")?
                },
            ),
        };
        let rotary = Rotary::new(&cfg, &device)?;
        let mut info = ModelInfo {
            name,
            family: Family::Local(cfg.family.unwrap_or(cfg.naming.family())),
            mask_id: cfg.mask_token_id.unwrap_or_default(),
            logits_width: rows,
            max_context: cfg.max_sequence_length,
            // Dream still predicts position i from the output at i - 1 (A2D conversions do not).
            shift_logits: cfg.naming == Naming::Qwen2 && cfg.family != Some("a2d-qwen2"),
            eos_ids: cfg.eos_token_id.into_iter().collect(),
            eot_ids: Vec::new(),
            parameters: cfg.parameter_count(),
            weight_bytes: cfg.parameter_count() * weight_dtype.size_in_bytes(),
            quantization: None,
            blocks: cfg.blocks,
        };
        if source.is_some() {
            // Float parts at their dtype, quantized layers at their blocks' size.
            let mut bytes = wte.bytes();
            if !cfg.weight_tying {
                bytes += head.weight_bytes()?;
            }
            for block in &blocks {
                bytes += block.weight_bytes(weight_dtype)?;
            }
            info.weight_bytes = bytes;
        }
        Ok(Self {
            wte,
            blocks,
            ln_f,
            head,
            rotary,
            cfg,
            device,
            info,
            kernels: Kernels::Fused,
            attention: AttentionKernel::default(),
        })
    }

    /// Chooses fused (inference) or differentiable (training) kernels.
    pub fn set_kernels(&mut self, kernels: Kernels) {
        self.kernels = kernels;
    }

    /// Prepares the weights for inference: fuses the q/k/v and gate/up projections and packs (or
    /// transposes) every linear weight ([`Dense::prepare`]). A model that will be trained must not
    /// call this: the optimizer holds the separate, stored variables. A tied head shares the
    /// embedding's matrix, and a prepared copy would add a second one: it is prepared only while
    /// that copy is small ([`TIED_HEAD_COPY_MAX`] bytes), so a large vocabulary costs no extra
    /// memory.
    pub fn fuse_projections(&mut self) -> Result<()> {
        for block in &mut self.blocks {
            block.attn_in.fuse()?;
            block.ff_in.fuse()?;
            block.attn_out.prepare()?;
            block.ff_out.prepare()?;
        }
        let head_bytes = self.wte.bytes();
        if !self.cfg.weight_tying || head_bytes <= TIED_HEAD_COPY_MAX {
            self.head.prepare()?;
        }
        Ok(())
    }

    /// Token ids (B, T) to logits (B, T, embedding_size) in f32.
    pub fn forward_ids(&self, ids: &Tensor) -> Result<Tensor> {
        if self.kernels == Kernels::Fused {
            return super::in_pool(|| self.logits(&self.layers(ids, 0, None, None)?.0));
        }
        let mut x = self.embed(ids)?;
        for block in &self.blocks {
            x = block.forward_train(&x, &self.rotary)?;
        }
        self.logits(&x)
    }

    fn embed(&self, ids: &Tensor) -> Result<Tensor> {
        let x = self.wte.forward(ids)?;
        Ok(if self.cfg.input_emb_norm {
            (x * (self.cfg.d_model as f64).sqrt())?
        } else {
            x
        })
    }

    fn logits(&self, x: &Tensor) -> Result<Tensor> {
        let x = self.ln_f.forward(x, self.kernels == Kernels::Fused)?;
        let mut logits = self.head.forward(&x)?;
        if self.cfg.scale_logits {
            logits = (logits * (1.0 / (self.cfg.d_model as f64).sqrt()))?;
        }
        Ok(logits.to_dtype(DType::F32)?)
    }

    /// Forward FLOPs (multiply-adds counted as 2) for `rows` query positions attending over
    /// `keys` positions, per sequence.
    pub fn flops(&self, rows: usize, keys: usize) -> f64 {
        let cfg = &self.cfg;
        let d = cfg.d_model as f64;
        let kv = (cfg.effective_n_kv_heads().unwrap_or(cfg.n_heads) * cfg.head_dim()) as f64;
        let hidden = cfg.hidden_size() as f64;
        let q = cfg.q_dim() as f64;
        let per_row = 2.0 * (2.0 * d * q + 2.0 * d * kv + 3.0 * d * hidden) * cfg.n_layers as f64
            + 2.0 * d * cfg.embedding_rows() as f64;
        let attention = 4.0 * q * keys as f64 * cfg.n_layers as f64;
        rows as f64 * (per_row + attention)
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn config(&self) -> &LladaConfig {
        &self.cfg
    }
}
