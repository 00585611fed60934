//! The LLaDA architecture (GSAI-ML/LLaDA-8B-*, and our embedded default model): a Llama-style
//! transformer with bidirectional attention, loaded from LLaDA's own `config.json` keys and tensor
//! names. Every detail follows the reference `modeling_llada.py` (`LLaDALlamaBlock`):
//! - RMSNorm computed in f32 and cast back before the (optional) affine weight and bias;
//! - rotary embeddings of the non-interleaved (`rotate_half`) kind, in full precision;
//! - grouped KV heads expanded with `repeat_interleave` (query head h reads KV head h / n_rep);
//! - SwiGLU MLP where `ff_proj` is the gated projection: `ff_out(silu(ff_proj(x)) * up_proj(x))`;
//! - output head tied to `wte` or a separate `ff_out`, logits over the full `embedding_size`.

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Module, Tensor, D};
use candle_nn::{Embedding, Init, Linear, VarBuilder};
use serde::Deserialize;

use std::ops::Range;
use std::sync::Mutex;

use super::{AttentionKernel, Denoiser, KvCache, ModelInfo};
use crate::kernels::attention::{KeysValues, PackedPast};
use crate::kernels::packed::PackedWeight;
use crate::sampler::{CacheMode, ForwardRequest, Logits};

/// LLaDA's `config.json`, with the defaults of the reference `ModelConfig`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct LladaConfig {
    pub d_model: usize,
    pub n_heads: usize,
    pub n_kv_heads: Option<usize>,
    pub n_layers: usize,
    pub mlp_ratio: usize,
    pub mlp_hidden_size: Option<usize>,
    pub activation_type: String,
    pub block_type: String,
    pub block_group_size: usize,
    pub alibi: bool,
    pub rope: bool,
    pub rope_theta: f64,
    pub multi_query_attention: Option<bool>,
    pub attention_layer_norm: bool,
    pub input_emb_norm: bool,
    pub layer_norm_type: String,
    pub layer_norm_with_affine: bool,
    pub rms_norm_eps: f64,
    pub max_sequence_length: usize,
    pub include_bias: bool,
    pub include_qkv_bias: Option<bool>,
    pub bias_for_layer_norm: Option<bool>,
    pub scale_logits: bool,
    pub vocab_size: usize,
    pub embedding_size: Option<usize>,
    pub weight_tying: bool,
    pub eos_token_id: Option<u32>,
    pub mask_token_id: Option<u32>,
    /// Not a LLaDA key: how tensors are named (Dream's Qwen2 layout reuses this transformer).
    #[serde(skip)]
    pub naming: Naming,
    /// Not a LLaDA key: a head width other than d_model / n_heads (Qwen3's `head_dim`).
    #[serde(skip)]
    pub head_dim_override: Option<usize>,
}

/// Tensor names of the two layouts this transformer loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Naming {
    /// LLaDA's OLMo-style names: `model.transformer.blocks.N.q_proj`, `ff_proj` (gated), `ln_f`.
    #[default]
    Llada,
    /// Qwen2's names (Dream): `model.layers.N.self_attn.q_proj`, `mlp.gate_proj`, `model.norm`,
    /// `lm_head`; logits are shifted by one.
    Qwen2,
    /// Qwen3's names (dLLM's A2D conversions): Qwen2's plus per-head RMSNorm of queries and keys
    /// (`self_attn.q_norm`, `self_attn.k_norm`); logits are not shifted.
    Qwen3,
}

/// Where the non-block tensors live: (transformer prefix, embedding, block list, final norm,
/// output head from the checkpoint root).
struct TopNames {
    prefix: &'static str,
    embedding: &'static str,
    blocks: &'static str,
    final_norm: &'static str,
    head: &'static str,
}

impl Naming {
    fn top(self) -> TopNames {
        match self {
            Naming::Llada => TopNames {
                prefix: "model.transformer",
                embedding: "wte.weight",
                blocks: "blocks",
                final_norm: "ln_f",
                head: "model.transformer.ff_out",
            },
            Naming::Qwen2 | Naming::Qwen3 => TopNames {
                prefix: "model",
                embedding: "embed_tokens.weight",
                blocks: "layers",
                final_norm: "norm",
                head: "lm_head",
            },
        }
    }

    /// The model family this layout belongs to, as ModelInfo reports it.
    fn family(self) -> &'static str {
        match self {
            Naming::Llada => "llada",
            Naming::Qwen2 => "dream",
            Naming::Qwen3 => "a2d-qwen3",
        }
    }

    /// (attn_norm, ff_norm, q, k, v, attn_out, gate, up, ff_out) under a block's prefix.
    fn block(self) -> [&'static str; 9] {
        match self {
            Naming::Llada => [
                "attn_norm",
                "ff_norm",
                "q_proj",
                "k_proj",
                "v_proj",
                "attn_out",
                "ff_proj",
                "up_proj",
                "ff_out",
            ],
            Naming::Qwen2 | Naming::Qwen3 => [
                "input_layernorm",
                "post_attention_layernorm",
                "self_attn.q_proj",
                "self_attn.k_proj",
                "self_attn.v_proj",
                "self_attn.o_proj",
                "mlp.gate_proj",
                "mlp.up_proj",
                "mlp.down_proj",
            ],
        }
    }
}

impl Default for LladaConfig {
    fn default() -> Self {
        Self {
            d_model: 768,
            n_heads: 12,
            n_kv_heads: None,
            n_layers: 12,
            mlp_ratio: 4,
            mlp_hidden_size: None,
            activation_type: "swiglu".into(),
            block_type: "sequential".into(),
            block_group_size: 1,
            alibi: false,
            rope: false,
            rope_theta: 10_000.0,
            multi_query_attention: None,
            attention_layer_norm: false,
            input_emb_norm: false,
            layer_norm_type: "default".into(),
            layer_norm_with_affine: true,
            rms_norm_eps: 1e-5,
            max_sequence_length: 1024,
            include_bias: false,
            include_qkv_bias: Some(false),
            bias_for_layer_norm: None,
            scale_logits: false,
            vocab_size: 50257,
            embedding_size: Some(50304),
            weight_tying: true,
            eos_token_id: Some(50256),
            mask_token_id: Some(50256),
            naming: Naming::Llada,
            head_dim_override: None,
        }
    }
}

impl LladaConfig {
    /// Rejects every setting this implementation does not reproduce, naming the key.
    pub fn validate(&self) -> Result<()> {
        let refuse = |key: &str, value: String, supported: &str| -> Result<()> {
            bail!("config.json: unsupported {key} = {value} (dlm-tui supports {supported})")
        };
        if self.block_type != "llama" {
            refuse("block_type", format!("{:?}", self.block_type), "\"llama\"")?;
        }
        if self.layer_norm_type != "rms" && self.layer_norm_type != "gemma_rms" {
            refuse(
                "layer_norm_type",
                format!("{:?}", self.layer_norm_type),
                "\"rms\" and \"gemma_rms\"",
            )?;
        }
        if self.activation_type != "silu" {
            refuse(
                "activation_type",
                format!("{:?}", self.activation_type),
                "\"silu\" in a llama block",
            )?;
        }
        if self.alibi {
            refuse(
                "alibi",
                "true".into(),
                "false: LLaDA uses rotary embeddings",
            )?;
        }
        if !self.rope {
            refuse("rope", "false".into(), "true")?;
        }
        if self.block_group_size != 1 {
            refuse("block_group_size", self.block_group_size.to_string(), "1")?;
        }
        if self.attention_layer_norm {
            refuse("attention_layer_norm", "true".into(), "false")?;
        }
        if self.n_heads == 0
            || (self.head_dim_override.is_none() && !self.d_model.is_multiple_of(self.n_heads))
        {
            bail!(
                "config.json: d_model = {} is not divisible by n_heads = {}",
                self.d_model,
                self.n_heads
            );
        }
        if !self.head_dim().is_multiple_of(2) {
            bail!("config.json: the head size must be even for rotary embeddings");
        }
        let kv = self.effective_n_kv_heads()?;
        if kv == 0 || !self.n_heads.is_multiple_of(kv) {
            bail!(
                "config.json: n_heads = {} is not a multiple of n_kv_heads = {kv}",
                self.n_heads
            );
        }
        if self.embedding_rows() < self.vocab_size {
            bail!("config.json: embedding_size is smaller than vocab_size");
        }
        // Values that turn every activation into NaN (and so every output into end-of-text).
        if !(self.rms_norm_eps.is_finite() && self.rms_norm_eps > 0.0) {
            bail!(
                "config.json: rms_norm_eps = {} must be a small positive number (e.g. 1e-5)",
                self.rms_norm_eps
            );
        }
        if !(self.rope_theta.is_finite() && self.rope_theta > 1.0) {
            bail!(
                "config.json: rope_theta = {} must be a number above 1 (e.g. 10000)",
                self.rope_theta
            );
        }
        if self.max_sequence_length == 0 {
            bail!("config.json: max_sequence_length must be at least 1");
        }
        match self.mask_token_id {
            None => bail!("config.json: mask_token_id is missing"),
            Some(id) if id as usize >= self.embedding_rows() => {
                bail!("config.json: mask_token_id = {id} is outside the embedding table")
            }
            Some(_) => {}
        }
        Ok(())
    }

    /// Mirrors `ModelConfig.effective_n_kv_heads`.
    pub fn effective_n_kv_heads(&self) -> Result<usize> {
        match (self.n_kv_heads, self.multi_query_attention) {
            (None, Some(true)) => Ok(1),
            (None, _) => Ok(self.n_heads),
            (Some(n), None) => Ok(n),
            (Some(n), Some(mqa)) => {
                let expected = if mqa { 1 } else { self.n_heads };
                if n == expected {
                    Ok(n)
                } else {
                    bail!("config.json: n_kv_heads and multi_query_attention disagree")
                }
            }
        }
    }

    pub fn embedding_rows(&self) -> usize {
        self.embedding_size.unwrap_or(self.vocab_size)
    }

    pub fn hidden_size(&self) -> usize {
        self.mlp_hidden_size
            .unwrap_or(self.mlp_ratio * self.d_model)
    }

    pub fn head_dim(&self) -> usize {
        self.head_dim_override
            .unwrap_or(self.d_model / self.n_heads)
    }

    /// Width of all query heads together (d_model unless `head_dim` says otherwise).
    pub fn q_dim(&self) -> usize {
        self.n_heads * self.head_dim()
    }

    /// Number of weights, from the shapes the config implies.
    pub fn parameter_count(&self) -> usize {
        let d = self.d_model;
        let kv = self.effective_n_kv_heads().unwrap_or(self.n_heads) * self.head_dim();
        let h = self.hidden_size();
        let qk_norms = if self.naming == Naming::Qwen3 {
            2 * self.head_dim()
        } else {
            0
        };
        let per_block = 2 * d * self.q_dim() + 2 * d * kv + 3 * d * h + 2 * d + qk_norms;
        let embed = self.embedding_rows() * d;
        let head = if self.weight_tying { 0 } else { embed };
        embed + head + self.n_layers * per_block + d
    }

    fn norm_has_bias(&self) -> bool {
        self.bias_for_layer_norm.unwrap_or(self.include_bias)
    }

    fn qkv_bias(&self) -> bool {
        self.include_bias | self.include_qkv_bias.unwrap_or(false)
    }
}

/// RMSNorm as LLaDA computes it: normalise in f32, cast back, then scale (and shift).
#[derive(Debug, Clone)]
struct RmsNorm {
    weight: Option<Tensor>,
    bias: Option<Tensor>,
    eps: f64,
    /// Gemma's variant scales by `1 + weight`.
    gemma: bool,
}

impl RmsNorm {
    fn new(cfg: &LladaConfig, vb: VarBuilder) -> Result<Self> {
        Self::with_size(cfg, cfg.d_model, vb)
    }

    fn with_size(cfg: &LladaConfig, size: usize, vb: VarBuilder) -> Result<Self> {
        let (weight, bias) = if cfg.layer_norm_with_affine {
            let w = vb.get_with_hints(size, "weight", Init::Const(1.0))?;
            let b = if cfg.norm_has_bias() {
                Some(vb.get_with_hints(size, "bias", Init::Const(0.0))?)
            } else {
                None
            };
            (Some(w), b)
        } else {
            (None, None)
        };
        Ok(Self {
            weight,
            bias,
            eps: cfg.rms_norm_eps,
            gemma: cfg.layer_norm_type == "gemma_rms",
        })
    }

    /// `fused`: use candle's one-pass kernel where it computes the same thing (f32, affine weight
    /// without bias; it has no backward pass, so training passes false).
    fn forward(&self, x: &Tensor, fused: bool) -> Result<Tensor> {
        if let (true, Some(weight), None, false, DType::F32) =
            (fused, &self.weight, &self.bias, self.gemma, x.dtype())
        {
            if x.is_contiguous() {
                return Ok(candle_nn::ops::rms_norm(x, weight, self.eps as f32)?);
            }
        }
        let dtype = x.dtype();
        let xf = x.to_dtype(DType::F32)?;
        let variance = xf.sqr()?.mean_keepdim(D::Minus1)?;
        let normed = xf
            .broadcast_mul(&(variance + self.eps)?.sqrt()?.recip()?)?
            .to_dtype(dtype)?;
        let Some(weight) = &self.weight else {
            return Ok(normed);
        };
        let scaled = if self.gemma {
            normed.broadcast_mul(&(weight + 1.0)?)?
        } else {
            normed.broadcast_mul(weight)?
        };
        Ok(match &self.bias {
            Some(bias) => scaled.broadcast_add(bias)?,
            None => scaled,
        })
    }
}

/// The longest context a LLaDA-format model is run with, whatever its config claims (the
/// rotary tables are precomputed for every position).
pub const MAX_CONTEXT: usize = 32_768;

/// Precomputed rotary tables, shape (max_sequence_length, head_dim / 2), in f32.
#[derive(Debug, Clone)]
struct Rotary {
    cos: Tensor,
    sin: Tensor,
}

impl Rotary {
    fn new(cfg: &LladaConfig, device: &Device) -> Result<Self> {
        let dim = cfg.head_dim();
        let theta = cfg.rope_theta as f32;
        // Same arithmetic as the reference: inv_freq and positions in f32.
        let inv_freq: Vec<f32> = (0..dim)
            .step_by(2)
            .map(|i| 1.0 / theta.powf(i as f32 / dim as f32))
            .collect();
        let len = cfg.max_sequence_length;
        let mut cos = Vec::with_capacity(len * dim / 2);
        let mut sin = Vec::with_capacity(len * dim / 2);
        for t in 0..len {
            for f in &inv_freq {
                let angle = (t as f32 * f) as f64;
                cos.push(angle.cos() as f32);
                sin.push(angle.sin() as f32);
            }
        }
        Ok(Self {
            cos: Tensor::from_vec(cos, (len, dim / 2), device)?,
            sin: Tensor::from_vec(sin, (len, dim / 2), device)?,
        })
    }

    /// Applies the rotation to (B, heads, T, head_dim) in f32 with the differentiable kernel.
    fn apply(&self, x: &Tensor) -> Result<Tensor> {
        let (_, _, seq_len, _) = x.dims4()?;
        let cos = self.cos.narrow(0, 0, seq_len)?;
        let sin = self.sin.narrow(0, 0, seq_len)?;
        let xf = x.to_dtype(DType::F32)?.contiguous()?;
        let rotated = candle_nn::rotary_emb::rope_slow(&xf, &cos, &sin)?;
        Ok(rotated.to_dtype(x.dtype())?)
    }

    /// The cos and sin rows (T, head_dim / 2) of positions `offset..offset + T`.
    fn tables(&self, offset: usize, len: usize) -> Result<(Tensor, Tensor)> {
        Ok((
            self.cos.narrow(0, offset, len)?,
            self.sin.narrow(0, offset, len)?,
        ))
    }

    /// Applies the rotation to (B, T, heads, head_dim) holding positions `offset..offset + T`.
    fn apply_thd(&self, x: &Tensor, offset: usize) -> Result<Tensor> {
        let (_, seq_len, _, _) = x.dims4()?;
        let (cos, sin) = self.tables(offset, seq_len)?;
        let xf = x.to_dtype(DType::F32)?.contiguous()?;
        let rotated = candle_nn::rotary_emb::rope_thd(&xf, &cos, &sin)?;
        Ok(rotated.to_dtype(x.dtype())?)
    }
}

/// candle's fused rope and softmax kernels have no backward pass; training needs the composed ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernels {
    Fused,
    Differentiable,
}

/// A linear layer initialised N(0, std) when created for training (hints are ignored when the
/// weights come from a file).
pub(super) fn linear(
    in_dim: usize,
    out_dim: usize,
    bias: bool,
    std: f64,
    vb: VarBuilder,
) -> Result<Linear> {
    let weight = vb.get_with_hints(
        (out_dim, in_dim),
        "weight",
        Init::Randn {
            mean: 0.0,
            stdev: std,
        },
    )?;
    let bias = if bias {
        Some(vb.get_with_hints(out_dim, "bias", Init::Const(0.0))?)
    } else {
        None
    };
    Ok(Linear::new(weight, bias))
}

/// Initial standard deviation of weights (OLMo/LLaDA's normal init), and of the projections that
/// write into the residual stream, scaled down by depth (GPT-2).
pub(super) const INIT_STD: f64 = 0.02;

#[derive(Debug, Clone)]
struct Block {
    attn_norm: RmsNorm,
    ff_norm: RmsNorm,
    /// q_proj, k_proj, v_proj.
    attn_in: Projections,
    attn_out: Dense,
    /// ff_proj (gated), up_proj.
    ff_in: Projections,
    ff_out: Dense,
    /// Qwen3's per-head RMSNorm of queries and keys, before the rotation.
    qk_norm: Option<(RmsNorm, RmsNorm)>,
    n_heads: usize,
    n_kv_heads: usize,
    head_dim: usize,
}

impl Block {
    fn new(cfg: &LladaConfig, vb: VarBuilder) -> Result<Self> {
        let d = cfg.d_model;
        let kv_dim = cfg.effective_n_kv_heads()? * cfg.head_dim();
        let hidden = cfg.hidden_size();
        let qkv_bias = cfg.qkv_bias();
        let bias = cfg.include_bias;
        let std = INIT_STD;
        let out_std = INIT_STD / (2.0 * cfg.n_layers as f64).sqrt();
        let [attn_norm, ff_norm, q, k, v, attn_out, gate, up, ff_out] = cfg.naming.block();
        let q_dim = cfg.q_dim();
        let qk_norm = if cfg.naming == Naming::Qwen3 {
            let size = cfg.head_dim();
            Some((
                RmsNorm::with_size(cfg, size, vb.pp("self_attn.q_norm"))?,
                RmsNorm::with_size(cfg, size, vb.pp("self_attn.k_norm"))?,
            ))
        } else {
            None
        };
        Ok(Self {
            qk_norm,
            attn_norm: RmsNorm::new(cfg, vb.pp(attn_norm))?,
            ff_norm: RmsNorm::new(cfg, vb.pp(ff_norm))?,
            attn_in: Projections::Separate(vec![
                linear(d, q_dim, qkv_bias, std, vb.pp(q))?,
                linear(d, kv_dim, qkv_bias, std, vb.pp(k))?,
                linear(d, kv_dim, qkv_bias, std, vb.pp(v))?,
            ]),
            attn_out: Dense::Stored(linear(q_dim, d, bias, out_std, vb.pp(attn_out))?),
            ff_in: Projections::Separate(vec![
                linear(d, hidden, bias, std, vb.pp(gate))?,
                linear(d, hidden, bias, std, vb.pp(up))?,
            ]),
            ff_out: Dense::Stored(linear(hidden, d, bias, out_std, vb.pp(ff_out))?),
            n_heads: cfg.n_heads,
            n_kv_heads: cfg.effective_n_kv_heads()?,
            head_dim: cfg.head_dim(),
        })
    }

    /// Training pass over a whole canvas, built only from ops that propagate gradients (candle's
    /// fused rope, softmax and attention kernels have no backward pass).
    fn forward_train(&self, x: &Tensor, rotary: &Rotary) -> Result<Tensor> {
        let (b, t, _) = x.dims3()?;
        let normed = self.attn_norm.forward(x, false)?;
        let [q, k, v] = self.attn_in.forward::<3>(&normed)?;
        let heads = |y: Tensor, n: usize| -> Result<Tensor> {
            Ok(y.reshape((b, t, n, self.head_dim))?
                .transpose(1, 2)?
                .contiguous()?)
        };
        let (q, k) = self.norm_qk(heads(q, self.n_heads)?, heads(k, self.n_kv_heads)?, false)?;
        let q = rotary.apply(&q)?;
        let k = rotary.apply(&k)?;
        let v = heads(v, self.n_kv_heads)?;
        let k = repeat_kv(k, self.n_heads / self.n_kv_heads)?;
        let v = repeat_kv(v, self.n_heads / self.n_kv_heads)?;

        // Bidirectional attention: no mask at all (the reference calls SDPA with is_causal=False).
        let scale = 1.0 / (self.head_dim as f64).sqrt();
        let scores = (q.matmul(&k.t()?)? * scale)?;
        let probs = candle_nn::ops::softmax(&scores, D::Minus1)?;
        let att =
            probs
                .matmul(&v)?
                .transpose(1, 2)?
                .reshape((b, t, self.n_heads * self.head_dim))?;
        let x = (x + self.attn_out.forward(&att)?)?;

        let normed = self.ff_norm.forward(&x, false)?;
        let [gate, up] = self.ff_in.forward::<2>(&normed)?;
        let gate = candle_nn::ops::silu(&gate)?;
        Ok((&x + self.ff_out.forward(&(gate * up)?)?)?)
    }
}

impl Block {
    /// Qwen3's RMSNorm of each query and key head over its width (identity elsewhere).
    fn norm_qk(&self, q: Tensor, k: Tensor, fused: bool) -> Result<(Tensor, Tensor)> {
        match &self.qk_norm {
            None => Ok((q, k)),
            Some((q_norm, k_norm)) => Ok((
                q_norm.forward(&q.contiguous()?, fused)?,
                k_norm.forward(&k.contiguous()?, fused)?,
            )),
        }
    }

    /// Inference pass over canvas positions `offset..offset + T` of `x` (B, T, C). Keys and values
    /// of the positions outside that window come from `past` (whole-canvas keys and values of an
    /// earlier pass, and where the tiled kernel keeps them packed); returns the output and this
    /// window's keys and values (B, kv_heads, T, D). With `keep`, the output only of those rows
    /// of the window (keys and values are still every row's).
    fn forward_infer(
        &self,
        x: &Tensor,
        rotary: &Rotary,
        offset: usize,
        past: Option<(&(Tensor, Tensor), &Mutex<PackedPast>)>,
        kernel: AttentionKernel,
        keep: Option<Range<usize>>,
    ) -> Result<(Tensor, (Tensor, Tensor))> {
        let (b, t, _) = x.dims3()?;
        let normed = self.attn_norm.forward(x, true)?;
        let scale = 1.0 / (self.head_dim as f64).sqrt();
        // Queries (B, H, T, D), keys and values (B, kv_heads, T, D): the layout attention reads,
        // and the one the cache keeps. On the CPU (f32) one kernel splits, rotates and scales
        // them out of the fused projection. `q_scale` is what attention still has to multiply by.
        let (q, k, v, q_scale) = match self.attn_in.fused(&normed)? {
            Some(qkv) if self.qk_norm.is_none() && crate::kernels::ops::fast_path(&qkv) => {
                let op = crate::kernels::ops::RotaryHeads {
                    n_heads: self.n_heads,
                    n_kv_heads: self.n_kv_heads,
                    head_dim: self.head_dim,
                    q_scale: scale as f32,
                };
                let (cos, sin) = rotary.tables(offset, t)?;
                let planes = op.apply(&qkv, &cos, &sin)?;
                let (h, kv) = (self.n_heads, self.n_kv_heads);
                let q = planes.narrow(1, 0, h)?;
                let k = planes.narrow(1, h, kv)?;
                let v = planes.narrow(1, h + kv, kv)?;
                (q, k, v, 1.0)
            }
            _ => {
                let [q, k, v] = self.attn_in.forward::<3>(&normed)?;
                let heads = |y: Tensor, n: usize| -> Result<Tensor> {
                    Ok(y.reshape((b, t, n, self.head_dim))?)
                };
                let (q, k) =
                    self.norm_qk(heads(q, self.n_heads)?, heads(k, self.n_kv_heads)?, true)?;
                let q = rotary.apply_thd(&q, offset)?.transpose(1, 2)?;
                let k = rotary
                    .apply_thd(&k, offset)?
                    .transpose(1, 2)?
                    .contiguous()?;
                let v = heads(v, self.n_kv_heads)?.transpose(1, 2)?.contiguous()?;
                (q, k, v, scale)
            }
        };
        let kv = KeysValues {
            past: past.map_or((&k, &v), |((pk, pv), _)| (pk, pv)),
            fresh: past.map(|_| (&k, &v, offset)),
            packed: past.map(|(_, packed)| packed),
        };
        // Rows not kept need no queries: every row's output depends only on its own query.
        let (q, x) = match keep {
            Some(rows) => (
                q.narrow(2, rows.start, rows.len())?,
                x.narrow(1, rows.start, rows.len())?,
            ),
            None => (q, x.clone()),
        };
        let att = attend(&q, &kv, q_scale, kernel)?;
        let x = (x + self.attn_out.forward(&att)?)?;

        let normed = self.ff_norm.forward(&x, true)?;
        let hidden = match self.ff_in.fused(&normed)? {
            Some(gate_up) => crate::kernels::ops::swiglu(&gate_up)?,
            None => {
                let [gate, up] = self.ff_in.forward::<2>(&normed)?;
                (crate::kernels::ops::silu(&gate.contiguous()?)? * up)?
            }
        };
        Ok(((&x + self.ff_out.forward(&hidden)?)?, (k, v)))
    }
}

/// A linear layer: as stored, (out, in) (training's variables), or prepared once at load for
/// inference on the CPU.
///
/// candle hands `x @ W^T` to the `gemm` crate, which computes the row-major product transposed
/// and so treats W as its left operand: stored as (out, in), that operand is not column-major and
/// gemm packs all of W into a scratch buffer on every call. A cached pass multiplies only 32 rows,
/// so the packing cost about as much as the arithmetic (a quarter of a dual-cached pass's time in
/// `perf`). With AVX2 and FMA the weight is packed once for our own kernel ([`PackedWeight`]);
/// elsewhere it is transposed, which gemm reads in place for short inputs. BENCHMARKS.md has the
/// timings.
#[derive(Debug, Clone)]
pub(super) enum Dense {
    Stored(Linear),
    Packed(PackedWeight),
    Transposed {
        weight_t: Tensor,
        bias: Option<Tensor>,
    },
}

impl Dense {
    /// `linear` prepared for inference ([`Self::prepare`]).
    pub(super) fn prepared(linear: Linear) -> Result<Self> {
        let mut dense = Dense::Stored(linear);
        dense.prepare()?;
        Ok(dense)
    }

    pub(super) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Dense::Stored(linear) => Ok(linear.forward(x)?),
            Dense::Packed(packed) => Ok(packed.forward(x)?),
            Dense::Transposed { weight_t, bias } => {
                let (rows, width) = weight_t.dims2()?;
                let dims = x.dims();
                let batch: usize = dims[..dims.len() - 1].iter().product();
                let mut out_dims = dims.to_vec();
                *out_dims.last_mut().expect("x has a last dimension") = width;
                let y = x.reshape((batch, rows))?.matmul(weight_t)?;
                let y = match bias {
                    Some(bias) => y.broadcast_add(bias)?,
                    None => y,
                };
                Ok(y.reshape(out_dims)?)
            }
        }
    }

    /// Packs (or transposes) a stored weight for inference (a no-op once done). Only f32 weights
    /// on the CPU: elsewhere the layout does not reach `gemm` (CUDA's cuBLAS takes either layout
    /// as it is, and half-precision CPU weights are left as they were measured).
    pub(super) fn prepare(&mut self) -> Result<()> {
        if let Dense::Stored(linear) = self {
            let weight = linear.weight();
            if weight.device().is_cpu() && weight.dtype() == DType::F32 {
                *self = if PackedWeight::supported() {
                    Dense::Packed(PackedWeight::new(weight, linear.bias())?)
                } else {
                    Dense::Transposed {
                        weight_t: transpose_f32(weight)?,
                        bias: linear.bias().cloned(),
                    }
                };
            }
        }
        Ok(())
    }
}

/// The transpose of a 2-D f32 CPU matrix, contiguous. candle's strided copy moves one element at a
/// time (6 ns each: a third of a second for the 58M-parameter bench model); copying 32 x 32 tiles
/// keeps reads and writes in cache.
fn transpose_f32(w: &Tensor) -> Result<Tensor> {
    const TILE: usize = 32;
    let (rows, cols) = w.dims2()?;
    let src = w.flatten_all()?.to_vec1::<f32>()?;
    let mut dst = vec![0f32; rows * cols];
    for r0 in (0..rows).step_by(TILE) {
        for c0 in (0..cols).step_by(TILE) {
            for r in r0..(r0 + TILE).min(rows) {
                for c in c0..(c0 + TILE).min(cols) {
                    dst[c * rows + r] = src[r * cols + c];
                }
            }
        }
    }
    Ok(Tensor::from_vec(dst, (cols, rows), w.device())?)
}

/// Linear layers that read the same input: separate (as stored, and for training), or fused into
/// one prepared matrix for inference so each block runs two input matmuls instead of five.
#[derive(Debug, Clone)]
enum Projections {
    Separate(Vec<Linear>),
    Fused { dense: Dense, widths: Vec<usize> },
}

impl Projections {
    fn forward<const N: usize>(&self, x: &Tensor) -> Result<[Tensor; N]> {
        let outputs = match self {
            Projections::Separate(layers) => layers
                .iter()
                .map(|l| Ok(l.forward(x)?))
                .collect::<Result<Vec<_>>>()?,
            Projections::Fused { dense, widths } => {
                let y = dense.forward(x)?;
                let mut offset = 0;
                widths
                    .iter()
                    .map(|&w| {
                        let part = y.narrow(D::Minus1, offset, w)?;
                        offset += w;
                        Ok(part)
                    })
                    .collect::<Result<Vec<_>>>()?
            }
        };
        outputs
            .try_into()
            .map_err(|_| anyhow::anyhow!("expected {N} projections"))
    }

    /// The fused projections' outputs side by side (B, T, sum of widths); `None` while separate.
    fn fused(&self, x: &Tensor) -> Result<Option<Tensor>> {
        match self {
            Projections::Separate(_) => Ok(None),
            Projections::Fused { dense, .. } => Ok(Some(dense.forward(x)?)),
        }
    }

    /// Concatenates the weights (and biases) along the output dimension, and transposes them.
    fn fuse(&mut self) -> Result<()> {
        let Projections::Separate(layers) = self else {
            return Ok(());
        };
        let weights: Vec<Tensor> = layers.iter().map(|l| l.weight().clone()).collect();
        let widths = weights
            .iter()
            .map(|w| w.dim(0))
            .collect::<Result<Vec<_>, _>>()?;
        let biases: Option<Vec<Tensor>> = layers.iter().map(|l| l.bias().cloned()).collect();
        let mut dense = Dense::Stored(Linear::new(
            Tensor::cat(&weights, 0)?,
            biases.map(|b| Tensor::cat(&b, 0)).transpose()?,
        ));
        dense.prepare()?;
        *self = Projections::Fused { dense, widths };
        Ok(())
    }
}

/// `past` (B, H, L, D) with positions `offset..offset + T` replaced by `fresh` (B, H, T, D).
fn splice(past: &Tensor, fresh: &Tensor, offset: usize) -> Result<Tensor> {
    let len = past.dim(2)?;
    let t = fresh.dim(2)?;
    let mut parts = Vec::with_capacity(3);
    if offset > 0 {
        parts.push(past.narrow(2, 0, offset)?);
    }
    parts.push(fresh.clone());
    if offset + t < len {
        parts.push(past.narrow(2, offset + t, len - offset - t)?);
    }
    Ok(Tensor::cat(&parts, 2)?)
}

/// Bidirectional attention (no mask, as the reference's SDPA with is_causal=False) of q
/// (B, H, T, D) over the keys and values `kv` (B, KV, S, D, the cached canvas with the fresh window
/// spliced in), KV head h / (H / KV) serving query head h, the scores
/// multiplied by `q_scale` (1 where the queries come scaled). Returns (B, T, H * D). On the CPU
/// (f32) our tiled kernel ([`super::attention`]) or candle's fused one never materialise the
/// whole T x S score matrix; matmul + softmax does (BENCHMARKS.md compares them).
fn attend(q: &Tensor, kv: &KeysValues, q_scale: f64, kernel: AttentionKernel) -> Result<Tensor> {
    let (b, h, t, d) = q.dims4()?;
    let (_, n_kv, s, _) = kv.past.0.dims4()?;
    // The score matrix a matmul pass materialises, in bytes.
    let scores_bytes = b * h * t * s * 4;
    let cpu_f32 = q.device().is_cpu() && q.dtype() == DType::F32;
    let kernel = kernel.resolve(cpu_f32, scores_bytes);
    if kernel == AttentionKernel::Tiled {
        // It reads the cached canvas and the fresh window as they are.
        return Ok(crate::kernels::attention::attention(q, kv, q_scale as f32)?);
    }
    let (k, v) = match kv.fresh {
        None => (kv.past.0.clone(), kv.past.1.clone()),
        Some((k, v, offset)) => (splice(kv.past.0, k, offset)?, splice(kv.past.1, v, offset)?),
    };
    let out = match kernel {
        // It takes (B, S, heads, D), reads strides (the transposes are views) and returns
        // (B, H, T, D).
        AttentionKernel::Fused => candle_nn::attention::flash_attn::<f32>(
            &q.transpose(1, 2)?,
            &k.transpose(1, 2)?,
            &v.transpose(1, 2)?,
            q_scale as f32,
            candle_nn::attention::AttnMask::None,
            None,
            None,
        )?,
        _ => {
            // Scaling q (T x D) costs less than scaling the scores (T x S).
            let q = if q_scale == 1.0 {
                q.contiguous()?
            } else {
                (q * q_scale)?
            };
            let k = repeat_kv(k.contiguous()?, h / n_kv)?;
            let v = repeat_kv(v.contiguous()?, h / n_kv)?;
            let scores = q.matmul(&k.t()?)?;
            crate::kernels::ops::softmax_last_dim(&scores)?.matmul(&v)?
        }
    };
    // (B, H, T, D) -> (B, T, H * D)
    Ok(out.transpose(1, 2)?.reshape((b, t, h * d))?)
}

/// (B, kv_heads, T, D) -> (B, kv_heads * n_rep, T, D), each KV head repeated n_rep times in place.
fn repeat_kv(x: Tensor, n_rep: usize) -> Result<Tensor> {
    if n_rep == 1 {
        return Ok(x);
    }
    let (b, kv, t, d) = x.dims4()?;
    Ok(x.unsqueeze(2)?
        .expand((b, kv, n_rep, t, d))?
        .reshape((b, kv * n_rep, t, d))?)
}

/// The largest tied head [`Llada::fuse_projections`] copies into a transposed matrix (the
/// embedded model's is 2 MiB; Qwen3-0.6B's, 600 MiB in f32, stays shared).
pub(super) const TIED_HEAD_COPY_MAX: usize = 64 << 20;

/// Each layer's keys and values, (B, kv_heads, T, head_dim) each.
type LayersKv = Vec<(Tensor, Tensor)>;

/// A loaded LLaDA model.
pub struct Llada {
    wte: Embedding,
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

    pub fn new(cfg: LladaConfig, vb: VarBuilder, name: String) -> Result<Self> {
        cfg.validate()?;
        let device = vb.device().clone();
        let names = cfg.naming.top();
        let root = vb.clone();
        let vb = vb.pp(names.prefix);
        let rows = cfg.embedding_rows();
        let wte_weight = vb
            .get_with_hints(
                (rows, cfg.d_model),
                names.embedding,
                Init::Randn {
                    mean: 0.0,
                    stdev: INIT_STD,
                },
            )
            .context("loading the token embedding")?;
        let weight_dtype = wte_weight.dtype();
        let wte = Embedding::new(wte_weight.clone(), cfg.d_model);
        let blocks = (0..cfg.n_layers)
            .map(|i| {
                Block::new(&cfg, vb.pp(format!("{}.{i}", names.blocks)))
                    .with_context(|| format!("loading block {i}"))
            })
            .collect::<Result<Vec<_>>>()?;
        let ln_f = RmsNorm::new(&cfg, vb.pp(names.final_norm)).context("loading the final norm")?;
        let head = Dense::Stored(if cfg.weight_tying {
            Linear::new(wte_weight, None)
        } else {
            linear(
                cfg.d_model,
                rows,
                cfg.include_bias,
                INIT_STD,
                root.pp(names.head),
            )
            .context("loading the output head")?
        });
        let rotary = Rotary::new(&cfg, &device)?;
        let info = ModelInfo {
            name,
            family: cfg.naming.family(),
            mask_id: cfg.mask_token_id.unwrap_or_default(),
            logits_width: rows,
            max_context: cfg.max_sequence_length,
            // Dream still predicts position i from the output at i - 1 (A2D conversions do not).
            shift_logits: cfg.naming == Naming::Qwen2,
            eos_ids: cfg.eos_token_id.into_iter().collect(),
            eot_ids: Vec::new(),
            parameters: cfg.parameter_count(),
            weight_bytes: cfg.parameter_count() * weight_dtype.size_in_bytes(),
        };
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
        let embedding = self.wte.embeddings();
        let head_bytes = embedding.elem_count() * embedding.dtype().size_in_bytes();
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

    /// Inference over the canvas positions `offset..offset + T` held in `ids` (B, T), reading the
    /// keys and values of all other positions from `past` (whole canvas). Returns the window's
    /// logits as the sampler's rows, one [`Logits`] per sequence: every row of the window, or
    /// with `keep` only those (window-relative) rows, and the window's keys and values per layer.
    /// The last layer skips the other rows' attention output, MLP and logits; keys and values
    /// stay whole.
    fn window_rows(
        &self,
        ids: &Tensor,
        offset: usize,
        past: Option<&KvCache>,
        keep: Option<Range<usize>>,
    ) -> anyhow::Result<(Vec<Logits>, LayersKv)> {
        super::in_pool(|| {
            let first = keep.as_ref().map_or(0, |rows| rows.start);
            let (x, kv) = self.layers(ids, offset, past, keep)?;
            Ok((self.logit_rows(&x, offset + first)?, kv))
        })
    }

    /// The blocks' inference pass: the final hidden states (B, T, d_model) and each layer's keys
    /// and values.
    fn layers(
        &self,
        ids: &Tensor,
        offset: usize,
        past: Option<&KvCache>,
        keep: Option<Range<usize>>,
    ) -> Result<(Tensor, LayersKv)> {
        let mut x = self.embed(ids)?;
        let mut kv = Vec::with_capacity(self.blocks.len());
        let last = self.blocks.len().saturating_sub(1);
        for (i, block) in self.blocks.iter().enumerate() {
            let (y, layer_kv) = block.forward_infer(
                &x,
                &self.rotary,
                offset,
                past.map(|cache| (&cache.layers[i], &cache.packed[i])),
                self.attention,
                keep.clone().filter(|_| i == last),
            )?;
            x = y;
            kv.push(layer_kv);
        }
        Ok((x, kv))
    }

    /// The logits of hidden states `x` (B, T, d_model) for canvas positions from `offset`, one
    /// [`Logits`] per sequence. A packed head writes them straight into the rows the sampler
    /// reads; through a tensor they would be copied out once more (32 MB for a 32000-wide head
    /// at 256 tokens).
    fn logit_rows(&self, x: &Tensor, offset: usize) -> anyhow::Result<Vec<Logits>> {
        match &self.head {
            Dense::Packed(head) if !self.cfg.scale_logits => {
                let (b, t, _) = x.dims3()?;
                let normed = self.ln_f.forward(x, true)?;
                let rows = head.forward_rows(&normed)?;
                Ok(super::split_rows(rows, b, t, head.out_dim(), offset))
            }
            _ => super::split_logits(&self.logits(x)?, offset),
        }
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

    /// FLOPs a pass saves for each row whose output it does not keep (over `keys` positions):
    /// the last layer's attention, output projection and MLP, and the head.
    fn skipped_per_row(&self, keys: usize) -> f64 {
        let cfg = &self.cfg;
        let d = cfg.d_model as f64;
        let q = cfg.q_dim() as f64;
        let mlp = 3.0 * d * cfg.hidden_size() as f64;
        2.0 * (d * q + mlp + d * cfg.embedding_rows() as f64) + 4.0 * q * keys as f64
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn config(&self) -> &LladaConfig {
        &self.cfg
    }
}

impl Llada {
    /// Token ids of `window` in every sequence of the batch, as (B, window length).
    fn window_ids(&self, batch: &[Vec<u32>], window: Range<usize>) -> Result<Tensor> {
        let flat: Vec<u32> = batch
            .iter()
            .flat_map(|seq| seq[window.clone()].iter().copied())
            .collect();
        Ok(Tensor::from_vec(
            flat,
            (batch.len(), window.len()),
            &self.device,
        )?)
    }
}

impl Denoiser for Llada {
    fn forward_batch(&mut self, batch: &[Vec<u32>]) -> Result<Vec<Logits>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let len = super::batch_len(batch, self.info.max_context)?;
        let ids = self.window_ids(batch, 0..len)?;
        if self.kernels == Kernels::Fused {
            return Ok(self.window_rows(&ids, 0, None, None)?.0);
        }
        super::split_logits(&self.forward_ids(&ids)?, 0)
    }

    fn denoise(&mut self, request: &ForwardRequest, cache: &mut KvCache) -> Result<Vec<Logits>> {
        let batch = &request.canvases;
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let len = super::batch_len(batch, self.info.max_context)?;
        let sequences = batch.len() as f64;
        let full = sequences * self.flops(len, len);
        if request.cache == CacheMode::None || self.kernels != Kernels::Fused {
            cache.count(full, full);
            return self.forward_batch(batch);
        }
        // A cached pass recomputes its window; a recording pass, the whole canvas.
        let (window, past) = match cache.window(request) {
            Some(window) => (window, Some(&*cache)),
            None => (0..len, None),
        };
        // Keys and values come from the whole window, the last layer's output and the logits
        // only from the rows the sampler reads (window-relative).
        let start = request.rows.start.clamp(window.start, window.end);
        let end = request.rows.end.clamp(start, window.end);
        let kept = start - window.start..end - window.start;
        let skipped_rows = if kept.is_empty() {
            0
        } else {
            window.len() - kept.len()
        };
        let kept = Some(kept).filter(|rows| !rows.is_empty());
        let ids = self.window_ids(batch, window.clone())?;
        let (logits, kv) = self.window_rows(&ids, window.start, past, kept)?;
        let recording = past.is_none();
        let skipped = sequences * skipped_rows as f64 * self.skipped_per_row(len);
        cache.count(sequences * self.flops(window.len(), len) - skipped, full);
        if recording {
            cache.record(request, kv);
        }
        Ok(logits)
    }

    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn set_attention(&mut self, kernel: AttentionKernel) {
        self.attention = kernel;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiled_transpose_equals_candles_strided_copy() {
        // Shapes on, under and across the tile size.
        for (rows, cols) in [(1, 1), (7, 45), (32, 32), (33, 64), (100, 37)] {
            let w = Tensor::randn(0f32, 1.0, (rows, cols), &Device::Cpu).unwrap();
            let want = w
                .t()
                .unwrap()
                .contiguous()
                .unwrap()
                .to_vec2::<f32>()
                .unwrap();
            let got = transpose_f32(&w).unwrap();
            assert_eq!(got.dims2().unwrap(), (cols, rows));
            assert_eq!(got.to_vec2::<f32>().unwrap(), want, "{rows} x {cols}");
        }
    }

    #[test]
    fn transposed_dense_layers_compute_what_stored_ones_do() {
        let w = Tensor::randn(0f32, 1.0, (24, 40), &Device::Cpu).unwrap();
        let b = Tensor::randn(0f32, 1.0, 24, &Device::Cpu).unwrap();
        let x = Tensor::randn(0f32, 1.0, (2, 5, 40), &Device::Cpu).unwrap();
        for bias in [None, Some(&b)] {
            let stored = Dense::Stored(Linear::new(w.clone(), bias.cloned()));
            let mut prepared = stored.clone();
            prepared.prepare().unwrap();
            assert!(!matches!(prepared, Dense::Stored(_)));
            // Both inference forms, whichever this CPU prepares.
            let transposed = Dense::Transposed {
                weight_t: transpose_f32(&w).unwrap(),
                bias: bias.cloned(),
            };
            let want = stored.forward(&x).unwrap();
            for layer in [prepared, transposed] {
                let got = layer.forward(&x).unwrap();
                assert_eq!(got.dims(), &[2, 5, 24]);
                let diff = (&want - got).unwrap().abs().unwrap().max_all().unwrap();
                assert!(diff.to_scalar::<f32>().unwrap() < 1e-5);
            }
        }
    }
}
