//! The layer stack: RMSNorm, rotary embeddings, and the transformer block with its two passes,
//! the differentiable one training uses and the inference one that reads the other positions'
//! keys and values from a cache.

use std::ops::Range;
use std::sync::Mutex;

use anyhow::Result;
use candle_core::quantized::QTensor;
use candle_core::{DType, Device, Module, Tensor, D};
use candle_nn::{Init, Linear, VarBuilder};

use super::{LladaConfig, Naming};
use crate::kernels::attention::{KeysValues, PackedPast};
use crate::model::layers::{linear, Dense, INIT_STD};
use crate::model::AttentionKernel;

/// RMSNorm as LLaDA computes it: normalise in f32, cast back, then scale (and shift).
#[derive(Debug, Clone)]
pub(super) struct RmsNorm {
    pub(super) weight: Option<Tensor>,
    pub(super) bias: Option<Tensor>,
    pub(super) eps: f64,
    /// Gemma's variant scales by `1 + weight`.
    pub(super) gemma: bool,
}

impl RmsNorm {
    pub(super) fn new(cfg: &LladaConfig, vb: VarBuilder) -> Result<Self> {
        Self::with_size(cfg, cfg.d_model, vb)
    }

    pub(super) fn with_size(cfg: &LladaConfig, size: usize, vb: VarBuilder) -> Result<Self> {
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
    pub(super) fn forward(&self, x: &Tensor, fused: bool) -> Result<Tensor> {
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
pub(super) struct Rotary {
    pub(super) cos: Tensor,
    pub(super) sin: Tensor,
}

impl Rotary {
    pub(super) fn new(cfg: &LladaConfig, device: &Device) -> Result<Self> {
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
    pub(super) fn apply(&self, x: &Tensor) -> Result<Tensor> {
        let (_, _, seq_len, _) = x.dims4()?;
        let cos = self.cos.narrow(0, 0, seq_len)?;
        let sin = self.sin.narrow(0, 0, seq_len)?;
        let xf = x.to_dtype(DType::F32)?.contiguous()?;
        let rotated = candle_nn::rotary_emb::rope_slow(&xf, &cos, &sin)?;
        Ok(rotated.to_dtype(x.dtype())?)
    }

    /// The cos and sin rows (T, head_dim / 2) of positions `offset..offset + T`.
    pub(super) fn tables(&self, offset: usize, len: usize) -> Result<(Tensor, Tensor)> {
        Ok((
            self.cos.narrow(0, offset, len)?,
            self.sin.narrow(0, offset, len)?,
        ))
    }

    /// Applies the rotation to (B, T, heads, head_dim) holding positions `offset..offset + T`.
    pub(super) fn apply_thd(&self, x: &Tensor, offset: usize) -> Result<Tensor> {
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

#[derive(Debug, Clone)]
pub(super) struct Block {
    pub(super) attn_norm: RmsNorm,
    pub(super) ff_norm: RmsNorm,
    /// q_proj, k_proj, v_proj.
    pub(super) attn_in: Projections,
    pub(super) attn_out: Dense,
    /// ff_proj (gated), up_proj.
    pub(super) ff_in: Projections,
    pub(super) ff_out: Dense,
    /// Qwen3's per-head RMSNorm of queries and keys, before the rotation.
    pub(super) qk_norm: Option<(RmsNorm, RmsNorm)>,
    pub(super) n_heads: usize,
    pub(super) n_kv_heads: usize,
    pub(super) head_dim: usize,
}

impl Block {
    /// A block whose linear layers come from `vb`, except those `source` holds as quantized
    /// blocks (a GGUF file's), which are taken as they are and never built in float; their
    /// biases stay float. Fused projections whose parts share a format become one layer, else a
    /// [`Dense::Stack`].
    pub(super) fn new(
        cfg: &LladaConfig,
        vb: VarBuilder,
        source: Option<&dyn super::QuantizedSource>,
    ) -> Result<Self> {
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
            attn_in: Projections::of(vec![
                Part::load(d, q_dim, qkv_bias, std, vb.pp(q), source)?,
                Part::load(d, kv_dim, qkv_bias, std, vb.pp(k), source)?,
                Part::load(d, kv_dim, qkv_bias, std, vb.pp(v), source)?,
            ])?,
            attn_out: Part::load(q_dim, d, bias, out_std, vb.pp(attn_out), source)?.dense()?,
            ff_in: Projections::of(vec![
                Part::load(d, hidden, bias, std, vb.pp(gate), source)?,
                Part::load(d, hidden, bias, std, vb.pp(up), source)?,
            ])?,
            ff_out: Part::load(hidden, d, bias, out_std, vb.pp(ff_out), source)?.dense()?,
            n_heads: cfg.n_heads,
            n_kv_heads: cfg.effective_n_kv_heads()?,
            head_dim: cfg.head_dim(),
        })
    }

    /// Bytes of this block's weights, its float parts counted at `float` (the norms, and layers
    /// not quantized).
    pub(super) fn weight_bytes(&self, float: DType) -> Result<usize> {
        let mut bytes = 0;
        for projections in [&self.attn_in, &self.ff_in] {
            bytes += match projections {
                Projections::Separate(layers) => layers
                    .iter()
                    .map(|l| l.weight().elem_count() * float.size_in_bytes())
                    .sum(),
                Projections::Fused { dense, .. } => dense.weight_bytes()?,
            };
        }
        bytes += self.attn_out.weight_bytes()? + self.ff_out.weight_bytes()?;
        Ok(bytes)
    }

    /// Training pass over a whole canvas, built only from ops that propagate gradients (candle's
    /// fused rope, softmax and attention kernels have no backward pass).
    pub(super) fn forward_train(&self, x: &Tensor, rotary: &Rotary) -> Result<Tensor> {
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
    pub(super) fn norm_qk(&self, q: Tensor, k: Tensor, fused: bool) -> Result<(Tensor, Tensor)> {
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
    pub(super) fn forward_infer(
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

/// Linear layers that read the same input: separate (as stored, and for training), or fused into
/// one prepared matrix for inference so each block runs two input matmuls instead of five.
#[derive(Debug, Clone)]
pub(super) enum Projections {
    Separate(Vec<Linear>),
    Fused { dense: Dense, widths: Vec<usize> },
}

impl Projections {
    pub(super) fn forward<const N: usize>(&self, x: &Tensor) -> Result<[Tensor; N]> {
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

    /// The fused layer (`None` while separate).
    pub(super) fn dense_mut(&mut self) -> Option<&mut Dense> {
        match self {
            Projections::Separate(_) => None,
            Projections::Fused { dense, .. } => Some(dense),
        }
    }

    /// The fused projections' outputs side by side (B, T, sum of widths); `None` while separate.
    pub(super) fn fused(&self, x: &Tensor) -> Result<Option<Tensor>> {
        match self {
            Projections::Separate(_) => Ok(None),
            Projections::Fused { dense, .. } => Ok(Some(dense.forward(x)?)),
        }
    }

    /// Concatenates the weights (and biases) along the output dimension, and transposes them.
    pub(super) fn fuse(&mut self) -> Result<()> {
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

/// One linear layer as loaded: float (`vb`'s), or the quantized blocks a source holds, with
/// its float bias.
enum Part {
    Float(Linear),
    Quantized(QTensor, Option<Tensor>),
}

impl Part {
    /// The layer at `vb`'s prefix: the source's quantized blocks if it has them (the bias read
    /// from `vb`), else a float layer.
    fn load(
        in_dim: usize,
        out_dim: usize,
        bias: bool,
        std: f64,
        vb: VarBuilder,
        source: Option<&dyn super::QuantizedSource>,
    ) -> Result<Self> {
        let quantized = match source {
            Some(source) => source.quantized(&format!("{}.weight", vb.prefix()), vb.device())?,
            None => None,
        };
        Ok(match quantized {
            Some(q) => Part::Quantized(q, bias.then(|| vb.get(out_dim, "bias")).transpose()?),
            None => Part::Float(linear(in_dim, out_dim, bias, std, vb)?),
        })
    }

    fn rows(&self) -> Result<usize> {
        Ok(match self {
            Part::Float(linear) => linear.weight().dim(0)?,
            Part::Quantized(q, _) => q.shape().dims2()?.0,
        })
    }

    /// The layer as it runs ([`Dense::Stored`] until prepared).
    fn dense(self) -> Result<Dense> {
        match self {
            Part::Float(linear) => Ok(Dense::Stored(linear)),
            Part::Quantized(q, bias) => Dense::from_qtensor(q, bias),
        }
    }
}

impl Projections {
    /// Projections from their loaded parts: separate float layers (fused later, at
    /// [`Projections::fuse`]); with quantized parts, one fused layer now, its parts' blocks
    /// stacked when they share a format and all or none have a bias, else a [`Dense::Stack`].
    fn of(parts: Vec<Part>) -> Result<Self> {
        if parts.iter().all(|p| matches!(p, Part::Float(_))) {
            return Ok(Projections::Separate(
                parts
                    .into_iter()
                    .filter_map(|p| match p {
                        Part::Float(linear) => Some(linear),
                        Part::Quantized(..) => None,
                    })
                    .collect(),
            ));
        }
        let widths = parts.iter().map(Part::rows).collect::<Result<Vec<_>>>()?;
        let has_bias = |p: &Part| match p {
            Part::Float(linear) => linear.bias().is_some(),
            Part::Quantized(_, bias) => bias.is_some(),
        };
        let uniform_bias = parts.iter().all(has_bias) || !parts.iter().any(has_bias);
        let dense = if uniform_bias && parts.iter().all(|p| matches!(p, Part::Quantized(..))) {
            let (blocks, biases): (Vec<QTensor>, Vec<Option<Tensor>>) = parts
                .into_iter()
                .filter_map(|p| match p {
                    Part::Quantized(q, bias) => Some((q, bias)),
                    Part::Float(_) => None,
                })
                .unzip();
            match crate::kernels::quant::concat_rows(&blocks)? {
                Some(all) => {
                    let bias = biases
                        .into_iter()
                        .collect::<Option<Vec<_>>>()
                        .map(|b| Tensor::cat(&b, 0))
                        .transpose()?;
                    Dense::from_qtensor(all, bias)?
                }
                None => Dense::Stack(
                    blocks
                        .into_iter()
                        .zip(biases)
                        .map(|(q, bias)| Dense::from_qtensor(q, bias))
                        .collect::<Result<_>>()?,
                ),
            }
        } else {
            Dense::Stack(
                parts
                    .into_iter()
                    .map(|p| match p {
                        Part::Float(linear) => Dense::prepared(linear),
                        quantized => quantized.dense(),
                    })
                    .collect::<Result<_>>()?,
            )
        };
        Ok(Projections::Fused { dense, widths })
    }
}

/// `past` (B, H, L, D) with positions `offset..offset + T` replaced by `fresh` (B, H, T, D).
pub(super) fn splice(past: &Tensor, fresh: &Tensor, offset: usize) -> Result<Tensor> {
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
pub(super) fn attend(
    q: &Tensor,
    kv: &KeysValues,
    q_scale: f64,
    kernel: AttentionKernel,
) -> Result<Tensor> {
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
pub(super) fn repeat_kv(x: Tensor, n_rep: usize) -> Result<Tensor> {
    if n_rep == 1 {
        return Ok(x);
    }
    let (b, kv, t, d) = x.dims4()?;
    Ok(x.unsqueeze(2)?
        .expand((b, kv, n_rep, t, d))?
        .reshape((b, kv * n_rep, t, d))?)
}
