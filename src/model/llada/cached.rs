//! The inference forward: a window of the canvas through the layer stack with the other
//! positions' keys and values from the [`KvCache`] (Fast-dLLM's prefix and dual caches), the
//! logits only of the rows the sampler reads, and the [`Denoiser`] entry points.

use std::ops::Range;

use anyhow::Result;
use candle_core::Tensor;

use super::block::Kernels;
use super::Llada;
use crate::kernels::attention::PackedPast;
use crate::model::layers::Dense;
use crate::model::{AttentionKernel, BlockCache, Denoiser, Family, KvCache, ModelInfo};
use crate::sampler::blocks::{BlockRequest, Pass};
use crate::sampler::{CacheMode, ForwardRequest, Logits};

/// Each layer's keys and values, (B, kv_heads, T, head_dim) each.
pub(super) type LayersKv = Vec<(Tensor, Tensor)>;

/// Keys and values of the positions a pass does not recompute, per layer (whole canvas, the
/// pass's window replaced by its fresh ones), and where the tiled kernel keeps them packed.
pub(super) type Past<'a> = (&'a [(Tensor, Tensor)], &'a [std::sync::Mutex<PackedPast>]);

impl Llada {
    /// Inference over the canvas positions `offset..offset + T` held in `ids` (B, T), reading the
    /// keys and values of all other positions from `past` (whole canvas). Returns the window's
    /// logits as the sampler's rows, one [`Logits`] per sequence: every row of the window, or
    /// with `keep` only those (window-relative) rows, and the window's keys and values per layer.
    /// The last layer skips the other rows' attention output, MLP and logits; keys and values
    /// stay whole.
    pub(super) fn window_rows(
        &self,
        ids: &Tensor,
        offset: usize,
        past: Option<Past>,
        keep: Option<Range<usize>>,
    ) -> anyhow::Result<(Vec<Logits>, LayersKv)> {
        crate::model::in_pool(|| {
            let first = keep.as_ref().map_or(0, |rows| rows.start);
            let (x, kv) = self.layers(ids, offset, past, keep)?;
            Ok((self.logit_rows(&x, offset + first)?, kv))
        })
    }

    /// The blocks' inference pass: the final hidden states (B, T, d_model) and each layer's keys
    /// and values.
    pub(super) fn layers(
        &self,
        ids: &Tensor,
        offset: usize,
        past: Option<Past>,
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
                past.map(|(layers, packed)| (&layers[i], &packed[i])),
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
    pub(super) fn logit_rows(&self, x: &Tensor, offset: usize) -> anyhow::Result<Vec<Logits>> {
        match &self.head {
            Dense::Packed(head) if !self.cfg.scale_logits => {
                let (b, t, _) = x.dims3()?;
                let normed = self.ln_f.forward(x, true)?;
                let rows = head.forward_rows(&normed)?;
                Ok(crate::model::split_rows(rows, b, t, head.out_dim(), offset))
            }
            _ => crate::model::split_logits(&self.logits(x)?, offset),
        }
    }

    /// FLOPs a pass saves for each row whose output it does not keep (over `keys` positions):
    /// the last layer's attention, output projection and MLP, and the head.
    pub(super) fn skipped_per_row(&self, keys: usize) -> f64 {
        let cfg = &self.cfg;
        let d = cfg.d_model as f64;
        let q = cfg.q_dim() as f64;
        let mlp = 3.0 * d * cfg.hidden_size() as f64;
        2.0 * (d * q + mlp + d * cfg.embedding_rows() as f64) + 4.0 * q * keys as f64
    }

    /// Token ids of `window` in every sequence of the batch, as (B, window length).
    pub(super) fn window_ids(&self, batch: &[Vec<u32>], window: Range<usize>) -> Result<Tensor> {
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

impl Llada {
    /// One block-diffusion pass over `ids` (one row of tokens per sequence of the batch), at the
    /// positions right after the cached ones, attending to every cached position and to all of
    /// `ids` (bidirectionally); with `write`, their keys and values join the cache.
    fn block_pass(
        &self,
        batch: &[Vec<u32>],
        cache: &mut BlockCache,
        write: bool,
    ) -> anyhow::Result<Vec<Logits>> {
        let rows = batch.first().map_or(0, Vec::len);
        let start = cache.len;
        if start + rows > self.info.max_context {
            anyhow::bail!(
                "the canvas needs {} tokens but the model accepts at most {}",
                start + rows,
                self.info.max_context
            );
        }
        let ids = self.window_ids(batch, 0..rows)?;
        if start > 0 && cache.frame.as_ref().is_none_or(|(r, _)| *r != rows) {
            // The cached keys and values with room for this block after them (the tiled kernel
            // reads the block's fresh ones there; others splice them in).
            let frame = cache
                .layers
                .iter()
                .map(|(k, v)| {
                    let room = |x: &Tensor| -> Result<Tensor> {
                        let (b, h, _, d) = x.dims4()?;
                        let zeros = Tensor::zeros((b, h, rows, d), x.dtype(), x.device())?;
                        Ok(Tensor::cat(&[x, &zeros], 2)?)
                    };
                    Ok((room(k)?, room(v)?))
                })
                .collect::<Result<Vec<_>>>()?;
            cache.packed = frame.iter().map(|_| Default::default()).collect();
            cache.frame = Some((rows, frame));
        }
        let past = match (&cache.frame, start) {
            (Some((_, frame)), 1..) => Some((&frame[..], &cache.packed[..])),
            _ => None,
        };
        let (logits, kv) = self.window_rows(&ids, start, past, None)?;
        if write {
            cache.layers = if cache.layers.is_empty() {
                kv
            } else {
                cache
                    .layers
                    .iter()
                    .zip(kv)
                    .map(|((k, v), (nk, nv))| {
                        Ok((Tensor::cat(&[k, &nk], 2)?, Tensor::cat(&[v, &nv], 2)?))
                    })
                    .collect::<Result<Vec<_>>>()?
            };
            cache.len += rows;
            cache.frame = None;
        }
        Ok(logits)
    }
}

impl Denoiser for Llada {
    fn block_forward(
        &mut self,
        request: &BlockRequest,
        cache: &mut BlockCache,
    ) -> anyhow::Result<Vec<Logits>> {
        if self.kernels != Kernels::Fused {
            anyhow::bail!("block diffusion runs on the inference kernels only");
        }
        let rows = request.tokens.first().map_or(0, Vec::len);
        if rows == 0
            || request.tokens.iter().any(|t| t.len() != rows)
            || request.chunks.iter().sum::<usize>() != rows
        {
            anyhow::bail!(
                "a block pass needs as many tokens in every sequence as its blocks hold ({:?})",
                request.chunks
            );
        }
        let write = match request.pass {
            Pass::Prefill | Pass::Write => true,
            Pass::Denoise => false,
        };
        // A prefill's blocks are block-causal: block by block against the cache is the same
        // attention (block i sees blocks up to i), one pass of the model's.
        let mut out: Option<Vec<Logits>> = None;
        let mut at = 0;
        for &chunk in request.chunks.iter().filter(|&&c| c > 0) {
            let batch: Vec<Vec<u32>> = request
                .tokens
                .iter()
                .map(|t| t[at..at + chunk].to_vec())
                .collect();
            at += chunk;
            let rows = self.block_pass(&batch, cache, write)?;
            out = Some(match out {
                Some(so_far) => so_far
                    .into_iter()
                    .zip(rows)
                    .map(|(a, b)| a.extended(b))
                    .collect(),
                None => rows,
            });
        }
        let logits = out.ok_or_else(|| anyhow::anyhow!("an empty block pass"))?;
        Ok(logits
            .into_iter()
            .map(|l| l.moved_to(request.range.start))
            .collect())
    }

    fn quantize(
        &mut self,
        to: crate::kernels::quant::Quantization,
    ) -> Result<crate::model::QuantSummary> {
        let mut summary = crate::model::QuantSummary::new(to);
        for block in &mut self.blocks {
            block.attn_in.fuse()?;
            block.ff_in.fuse()?;
            for dense in [
                block.attn_in.dense_mut(),
                block.ff_in.dense_mut(),
                Some(&mut block.attn_out),
                Some(&mut block.ff_out),
            ]
            .into_iter()
            .flatten()
            {
                summary.add(dense.quantize(to)?);
            }
        }
        let head = self.head.quantize(to)?;
        summary.add(head);
        // A tied head was the embedding's matrix, which stays: its quantized copy is extra.
        let freed = summary.before
            - if self.cfg.weight_tying {
                head.before
            } else {
                0
            };
        self.info.weight_bytes = self.info.weight_bytes.saturating_sub(freed) + summary.after;
        self.info.quantization = Some(to);
        Ok(summary)
    }

    fn forward_batch(&mut self, batch: &[Vec<u32>]) -> Result<Vec<Logits>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let len = crate::model::batch_len(batch, self.info.max_context)?;
        let ids = self.window_ids(batch, 0..len)?;
        if self.kernels == Kernels::Fused {
            return Ok(self.window_rows(&ids, 0, None, None)?.0);
        }
        crate::model::split_logits(&self.forward_ids(&ids)?, 0)
    }

    fn denoise(&mut self, request: &ForwardRequest, cache: &mut KvCache) -> Result<Vec<Logits>> {
        let batch = &request.canvases;
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let len = crate::model::batch_len(batch, self.info.max_context)?;
        let sequences = batch.len() as f64;
        let full = sequences * self.flops(len, len);
        if request.cache == CacheMode::None || self.kernels != Kernels::Fused {
            cache.count(full, full);
            return self.forward_batch(batch);
        }
        // A cached pass recomputes its window; a recording pass, the whole canvas.
        let (window, past) = match cache.window(request) {
            Some(window) => (window, Some((&cache.layers[..], &cache.packed[..]))),
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

    fn decode_by_blocks(&mut self, size: usize) -> Result<()> {
        if !matches!(self.info.family, Family::Local("a2d-qwen3" | "a2d-qwen2")) {
            return Err(crate::model::no_block_diffusion(&self.info));
        }
        if size == 0 {
            anyhow::bail!("block length must be at least 1");
        }
        self.info.blocks = Some(crate::sampler::blocks::BlockDecoding {
            layout: crate::sampler::blocks::Layout::Bd3lm,
            size,
            invisible: self.cfg.pad_id,
        });
        Ok(())
    }

    fn set_attention(&mut self, kernel: AttentionKernel) {
        self.attention = kernel;
    }
}
