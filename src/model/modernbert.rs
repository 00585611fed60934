//! ModernBERT masked-LM encoders fine-tuned as chat DLMs (dllm-hub/ModernBERT-base-chat-v0.1,
//! -large-chat-v0.1): the smallest real chat DLMs. The architecture is transformers'
//! `ModernBertForMaskedLM`: LayerNorm after the embedding, pre-norm blocks (the first without an
//! attention norm) with a fused Wqkv, rotary embeddings, attention that is global every
//! `global_attn_every_n_layers` layers and limited to a window of `local_attention / 2` positions
//! either side in the others (each with its own rotary theta), a GeGLU MLP, a final norm, and a
//! prediction head (dense, activation, norm) before a decoder tied to the embeddings. Attention is
//! bidirectional and logits are not shifted. Every step runs the whole canvas. The linear layers
//! are prepared once at load like LLaDA's ([`super::layers::Dense`]: packed for our kernel on
//! AVX2/FMA CPUs in f32); the tied decoder only while its copy is small.

use anyhow::{anyhow, bail, Context, Result};
use candle_core::{DType, Device, Module, Tensor, D};
use candle_nn::{Embedding, Linear, VarBuilder};
use serde::Deserialize;

use super::layers::{linear, Dense, INIT_STD, TIED_HEAD_COPY_MAX};
use super::{Denoiser, Family, ModelInfo};
use crate::sampler::Logits;

/// The keys of ModernBERT's `config.json` that change the computation (transformers' defaults).
#[derive(Debug, Clone, Deserialize)]
pub struct ModernBertConfig {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub vocab_size: usize,
    #[serde(default = "default_eps")]
    pub norm_eps: f64,
    #[serde(default)]
    pub norm_bias: bool,
    #[serde(default)]
    pub attention_bias: bool,
    #[serde(default)]
    pub mlp_bias: bool,
    #[serde(default)]
    pub classifier_bias: bool,
    #[serde(default = "yes")]
    pub decoder_bias: bool,
    #[serde(default = "default_every")]
    pub global_attn_every_n_layers: usize,
    #[serde(default = "default_window")]
    pub local_attention: usize,
    #[serde(default = "default_global_theta")]
    pub global_rope_theta: f64,
    #[serde(default)]
    pub local_rope_theta: Option<f64>,
    #[serde(default = "default_positions")]
    pub max_position_embeddings: usize,
    #[serde(default = "default_act")]
    pub hidden_activation: String,
    #[serde(default = "default_act")]
    pub classifier_activation: String,
    #[serde(default)]
    pub rope_scaling: Option<serde_json::Value>,
    #[serde(default)]
    pub mask_token_id: Option<u32>,
    #[serde(default)]
    pub eos_token_id: Option<u32>,
    #[serde(default)]
    pub sep_token_id: Option<u32>,
}

fn default_eps() -> f64 {
    1e-5
}
fn yes() -> bool {
    true
}
fn default_every() -> usize {
    3
}
fn default_window() -> usize {
    128
}
fn default_global_theta() -> f64 {
    160_000.0
}
fn default_positions() -> usize {
    8192
}
fn default_act() -> String {
    "gelu".into()
}

/// Rotary tables beyond this many positions are not built.
pub const MAX_CONTEXT: usize = 8192;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Activation {
    /// transformers' "gelu": the exact, erf-based GELU.
    GeluErf,
    /// "gelu_pytorch_tanh" / "gelu_new": the tanh approximation.
    GeluTanh,
}

impl Activation {
    fn parse(key: &str, name: &str) -> Result<Self> {
        match name {
            "gelu" => Ok(Activation::GeluErf),
            "gelu_pytorch_tanh" | "gelu_new" => Ok(Activation::GeluTanh),
            other => bail!("{key} {other:?} is not supported (gelu, gelu_pytorch_tanh)"),
        }
    }

    fn apply(self, x: &Tensor) -> Result<Tensor> {
        Ok(match self {
            Activation::GeluErf => x.gelu_erf()?,
            Activation::GeluTanh => x.gelu()?,
        })
    }
}

impl ModernBertConfig {
    fn validate(&self) -> Result<()> {
        if self.rope_scaling.as_ref().is_some_and(|v| !v.is_null()) {
            bail!("rope_scaling is not supported (only plain rotary embeddings)");
        }
        if self.num_attention_heads == 0
            || !self.hidden_size.is_multiple_of(self.num_attention_heads)
        {
            bail!(
                "hidden_size = {} is not divisible by num_attention_heads = {}",
                self.hidden_size,
                self.num_attention_heads
            );
        }
        if !(self.hidden_size / self.num_attention_heads).is_multiple_of(2) {
            bail!("the head size must be even for rotary embeddings");
        }
        if self.global_attn_every_n_layers == 0 {
            bail!("global_attn_every_n_layers must be at least 1");
        }
        Activation::parse("hidden_activation", &self.hidden_activation)?;
        Activation::parse("classifier_activation", &self.classifier_activation)?;
        Ok(())
    }

    pub fn parameter_count(&self) -> usize {
        let d = self.hidden_size;
        let per_layer = 4 * d * d + 3 * d * self.intermediate_size + 4 * d;
        self.vocab_size * d + self.num_hidden_layers * per_layer + d * d + 4 * d + self.vocab_size
    }
}

/// LayerNorm as PyTorch computes it (biased variance), optionally without a bias.
#[derive(Debug, Clone)]
struct LayerNorm {
    weight: Tensor,
    bias: Option<Tensor>,
    eps: f64,
}

impl LayerNorm {
    fn new(cfg: &ModernBertConfig, vb: VarBuilder) -> Result<Self> {
        let d = cfg.hidden_size;
        Ok(Self {
            weight: vb.get(d, "weight")?,
            bias: if cfg.norm_bias {
                Some(vb.get(d, "bias")?)
            } else {
                None
            },
            eps: cfg.norm_eps,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dtype = x.dtype();
        let xf = x.to_dtype(DType::F32)?;
        let mean = xf.mean_keepdim(D::Minus1)?;
        let centred = xf.broadcast_sub(&mean)?;
        let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
        let normed = centred
            .broadcast_div(&(var + self.eps)?.sqrt()?)?
            .to_dtype(dtype)?
            .broadcast_mul(&self.weight)?;
        Ok(match &self.bias {
            Some(b) => normed.broadcast_add(b)?,
            None => normed,
        })
    }
}

/// cos and sin tables (positions, head_dim / 2) for one rotary theta, in f32.
#[derive(Debug, Clone)]
struct Rotary {
    cos: Tensor,
    sin: Tensor,
}

impl Rotary {
    fn new(head_dim: usize, theta: f64, positions: usize, device: &Device) -> Result<Self> {
        let inv: Vec<f32> = (0..head_dim / 2)
            .map(|i| 1.0 / theta.powf(2.0 * i as f64 / head_dim as f64) as f32)
            .collect();
        let inv = Tensor::from_vec(inv, (1, head_dim / 2), device)?;
        let pos = Tensor::arange(0u32, positions as u32, device)?
            .to_dtype(DType::F32)?
            .reshape((positions, 1))?;
        let freqs = pos.broadcast_mul(&inv)?;
        Ok(Self {
            cos: freqs.cos()?,
            sin: freqs.sin()?,
        })
    }

    /// Rotates (B, H, T, D) by halves (transformers' `rotate_half`), computed in f32.
    fn apply(&self, x: &Tensor) -> Result<Tensor> {
        let t = x.dim(2)?;
        let dtype = x.dtype();
        let cos = self.cos.narrow(0, 0, t)?;
        let sin = self.sin.narrow(0, 0, t)?;
        let rotated =
            candle_nn::rotary_emb::rope(&x.to_dtype(DType::F32)?.contiguous()?, &cos, &sin)?;
        Ok(rotated.to_dtype(dtype)?)
    }
}

/// A stored linear layer (out, in), prepared for inference.
fn dense(in_dim: usize, out_dim: usize, bias: bool, vb: VarBuilder) -> Result<Dense> {
    Dense::prepared(linear(in_dim, out_dim, bias, INIT_STD, vb)?)
}

#[derive(Debug, Clone)]
struct Layer {
    attn_norm: Option<LayerNorm>,
    wqkv: Dense,
    wo: Dense,
    mlp_norm: LayerNorm,
    wi: Dense,
    mlp_out: Dense,
    /// `Some(w)`: attention reaches `w` positions either side; `None`: global.
    window: Option<usize>,
    global: bool,
}

/// A loaded ModernBERT masked LM.
pub struct ModernBert {
    embeddings: Embedding,
    embed_norm: LayerNorm,
    layers: Vec<Layer>,
    final_norm: LayerNorm,
    head_dense: Dense,
    head_norm: LayerNorm,
    decoder: Dense,
    device: Device,
    global_rotary: Rotary,
    local_rotary: Rotary,
    heads: usize,
    head_dim: usize,
    hidden_act: Activation,
    head_act: Activation,
    info: ModelInfo,
}

impl ModernBert {
    pub fn new(
        cfg: ModernBertConfig,
        vb: VarBuilder,
        name: String,
        mask_id: u32,
        eot_ids: Vec<u32>,
    ) -> Result<Self> {
        cfg.validate()?;
        let device = vb.device().clone();
        let d = cfg.hidden_size;
        let m = vb.pp("model");
        let wte = m
            .get((cfg.vocab_size, d), "embeddings.tok_embeddings.weight")
            .context("loading the token embedding")?;
        let weight_dtype = wte.dtype();
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| {
                let l = m.pp(format!("layers.{i}"));
                let global = i % cfg.global_attn_every_n_layers == 0;
                Ok::<Layer, anyhow::Error>(Layer {
                    attn_norm: if i == 0 {
                        None
                    } else {
                        Some(LayerNorm::new(&cfg, l.pp("attn_norm"))?)
                    },
                    wqkv: dense(d, 3 * d, cfg.attention_bias, l.pp("attn.Wqkv"))?,
                    wo: dense(d, d, cfg.attention_bias, l.pp("attn.Wo"))?,
                    mlp_norm: LayerNorm::new(&cfg, l.pp("mlp_norm"))?,
                    wi: dense(d, 2 * cfg.intermediate_size, cfg.mlp_bias, l.pp("mlp.Wi"))?,
                    mlp_out: dense(cfg.intermediate_size, d, cfg.mlp_bias, l.pp("mlp.Wo"))?,
                    window: (!global).then_some(cfg.local_attention / 2),
                    global,
                })
                .with_context(|| format!("loading layer {i}"))
            })
            .collect::<Result<Vec<_>>>()?;
        let untied = vb.contains_tensor("decoder.weight");
        let decoder_weight = if untied {
            vb.get((cfg.vocab_size, d), "decoder.weight")?
        } else {
            wte.clone()
        };
        let decoder_bias = if cfg.decoder_bias {
            Some(vb.get(cfg.vocab_size, "decoder.bias")?)
        } else {
            None
        };
        // A tied decoder shares the embedding's matrix; a prepared copy would be a second one
        // (ModernBERT-base's: 155 MB in f32), so it is prepared only while that copy is small.
        let decoder_bytes = decoder_weight.elem_count() * decoder_weight.dtype().size_in_bytes();
        let decoder = Linear::new(decoder_weight, decoder_bias);
        let decoder = if untied || decoder_bytes <= TIED_HEAD_COPY_MAX {
            Dense::prepared(decoder)?
        } else {
            Dense::Stored(decoder)
        };
        let head_dim = d / cfg.num_attention_heads;
        let positions = cfg.max_position_embeddings.min(MAX_CONTEXT);
        let info = ModelInfo {
            name,
            family: Family::Local("modernbert"),
            mask_id,
            logits_width: cfg.vocab_size,
            max_context: positions,
            shift_logits: false,
            eos_ids: cfg.eos_token_id.or(cfg.sep_token_id).into_iter().collect(),
            eot_ids,
            parameters: cfg.parameter_count(),
            weight_bytes: cfg.parameter_count() * weight_dtype.size_in_bytes(),
            quantization: None,
            blocks: None,
        };
        Ok(Self {
            embeddings: Embedding::new(wte, d),
            embed_norm: LayerNorm::new(&cfg, m.pp("embeddings.norm"))?,
            layers,
            final_norm: LayerNorm::new(&cfg, m.pp("final_norm"))?,
            head_dense: dense(d, d, cfg.classifier_bias, vb.pp("head.dense"))?,
            head_norm: LayerNorm::new(&cfg, vb.pp("head.norm"))?,
            decoder,
            device: device.clone(),
            global_rotary: Rotary::new(head_dim, cfg.global_rope_theta, positions, &device)?,
            local_rotary: Rotary::new(
                head_dim,
                cfg.local_rope_theta.unwrap_or(cfg.global_rope_theta),
                positions,
                &device,
            )?,
            heads: cfg.num_attention_heads,
            head_dim,
            hidden_act: Activation::parse("hidden_activation", &cfg.hidden_activation)?,
            head_act: Activation::parse("classifier_activation", &cfg.classifier_activation)?,
            info,
        })
    }

    /// Additive mask (T, T): 0 within `window` positions either side, -inf beyond.
    fn window_mask(t: usize, window: usize, device: &Device) -> Result<Tensor> {
        let data: Vec<f32> = (0..t)
            .flat_map(|i| {
                (0..t).map(move |j| {
                    if i.abs_diff(j) <= window {
                        0.0
                    } else {
                        f32::NEG_INFINITY
                    }
                })
            })
            .collect();
        Ok(Tensor::from_vec(data, (t, t), device)?)
    }

    fn attention(&self, layer: &Layer, x: &Tensor, masks: &[(usize, Tensor)]) -> Result<Tensor> {
        let (b, t, d) = x.dims3()?;
        let qkv = layer
            .wqkv
            .forward(x)?
            .reshape((b, t, 3, self.heads, self.head_dim))?;
        let part = |i: usize| -> Result<Tensor> {
            Ok(qkv
                .narrow(2, i, 1)?
                .squeeze(2)?
                .transpose(1, 2)?
                .contiguous()?)
        };
        let rotary = if layer.global {
            &self.global_rotary
        } else {
            &self.local_rotary
        };
        let q = rotary.apply(&part(0)?)?;
        let k = rotary.apply(&part(1)?)?;
        let v = part(2)?;
        let scale = 1.0 / (self.head_dim as f64).sqrt();
        let mut scores = (q.matmul(&k.t()?)? * scale)?;
        if let Some(window) = layer.window {
            if let Some((_, mask)) = masks.iter().find(|(w, _)| *w == window) {
                scores = scores.broadcast_add(&mask.to_dtype(scores.dtype())?)?;
            }
        }
        let dtype = scores.dtype();
        let probs =
            candle_nn::ops::softmax_last_dim(&scores.to_dtype(DType::F32)?)?.to_dtype(dtype)?;
        let out = probs.matmul(&v)?.transpose(1, 2)?.reshape((b, t, d))?;
        layer.wo.forward(&out)
    }

    /// Token ids (B, T) to logits (B, T, vocab) in f32.
    pub fn forward_ids(&self, ids: &Tensor) -> Result<Tensor> {
        let (_, t) = ids.dims2()?;
        let device = ids.device();
        // Local windows wider than the canvas are global in effect: no mask needed.
        let mut masks: Vec<(usize, Tensor)> = Vec::new();
        for layer in &self.layers {
            if let Some(w) = layer.window {
                if w + 1 < t && !masks.iter().any(|(m, _)| *m == w) {
                    masks.push((w, Self::window_mask(t, w, device)?));
                }
            }
        }
        let mut x = self.embed_norm.forward(&self.embeddings.forward(ids)?)?;
        for layer in &self.layers {
            let normed = match &layer.attn_norm {
                Some(norm) => norm.forward(&x)?,
                None => x.clone(),
            };
            x = (&x + self.attention(layer, &normed, &masks)?)?;
            let h = layer.wi.forward(&layer.mlp_norm.forward(&x)?)?;
            let half = h.dim(D::Minus1)? / 2;
            let input = h.narrow(D::Minus1, 0, half)?;
            let gate = h.narrow(D::Minus1, half, half)?;
            let mlp = layer
                .mlp_out
                .forward(&(self.hidden_act.apply(&input)? * gate)?)?;
            x = (&x + mlp)?;
        }
        let x = self.final_norm.forward(&x)?;
        let h = self
            .head_norm
            .forward(&self.head_act.apply(&self.head_dense.forward(&x)?)?)?;
        Ok(self.decoder.forward(&h)?.to_dtype(DType::F32)?)
    }
}

impl Denoiser for ModernBert {
    fn forward_batch(&mut self, batch: &[Vec<u32>]) -> Result<Vec<Logits>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let t = super::batch_len(batch, self.info.max_context)?;
        let device = self.device.clone();
        let flat: Vec<u32> = batch.iter().flatten().copied().collect();
        let ids = Tensor::from_vec(flat, (batch.len(), t), &device)?;
        let logits = super::in_pool(|| self.forward_ids(&ids))?;
        super::split_logits(&logits, 0)
    }

    fn info(&self) -> &ModelInfo {
        &self.info
    }
}

/// The mask token a ModernBERT folder uses: config.json's `mask_token_id`, else the tokenizer's.
pub fn mask_id(cfg: &ModernBertConfig, tokenizer_mask: Option<u32>) -> Result<u32> {
    cfg.mask_token_id.or(tokenizer_mask).ok_or_else(|| {
        anyhow!(
            "no mask token: neither config.json's mask_token_id nor tokenizer_config.json's \
             mask_token names one"
        )
    })
}
