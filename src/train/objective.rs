//! The masked-diffusion objective of LLaDA / MDLM: draw t ~ U(eps, 1) per sequence, mask each token
//! with probability t, and score the model's cross-entropy on the masked positions.

use anyhow::Result;
use candle_core::{DType, Device, Tensor, D};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::model::llada::Llada;

/// How masked-token losses are weighted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Weighting {
    /// w(t) = 1/t: the ELBO (LLaDA eq. 3), summed and divided by B * L.
    Elbo,
    /// w(t) = 1: the mean cross-entropy over masked positions.
    Uniform,
}

/// A batch with its masks drawn.
pub struct MaskedBatch {
    pub inputs: Tensor,
    pub targets: Tensor,
    /// Per position: 1/t where masked, 0 elsewhere.
    pub inv_t: Tensor,
    /// Per position: 1 where masked, 0 elsewhere.
    pub masked: Tensor,
    pub masked_count: usize,
    pub tokens: usize,
}

/// Masks each sequence at its own level t (or `fixed_t` for every sequence, used in evaluation).
pub fn mask_batch(
    windows: &[Vec<u32>],
    mask_id: u32,
    eps: f64,
    fixed_t: Option<f64>,
    rng: &mut ChaCha8Rng,
    device: &Device,
) -> Result<MaskedBatch> {
    let (b, l) = (windows.len(), windows[0].len());
    let mut inputs = Vec::with_capacity(b * l);
    let mut inv_t = Vec::with_capacity(b * l);
    let mut masked = Vec::with_capacity(b * l);
    let mut count = 0;
    for window in windows {
        let t = fixed_t.unwrap_or_else(|| eps + (1.0 - eps) * rng.random::<f64>());
        for &id in window {
            let m = rng.random::<f64>() < t;
            count += usize::from(m);
            inputs.push(if m { mask_id } else { id });
            inv_t.push(if m { (1.0 / t) as f32 } else { 0.0 });
            masked.push(if m { 1.0f32 } else { 0.0 });
        }
    }
    let targets: Vec<u32> = windows.iter().flatten().copied().collect();
    Ok(MaskedBatch {
        inputs: Tensor::from_vec(inputs, (b, l), device)?,
        targets: Tensor::from_vec(targets, (b, l, 1), device)?,
        inv_t: Tensor::from_vec(inv_t, (b, l), device)?,
        masked: Tensor::from_vec(masked, (b, l), device)?,
        masked_count: count,
        tokens: b * l,
    })
}

/// Cross-entropy of the clean token at every position, shape (B, L).
pub fn token_ce(model: &Llada, batch: &MaskedBatch) -> Result<Tensor> {
    let logits = model.forward_ids(&batch.inputs)?;
    let logp = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
    Ok(logp
        .gather(&batch.targets, D::Minus1)?
        .squeeze(D::Minus1)?
        .neg()?)
}

/// The training loss under `weighting`.
pub fn loss(model: &Llada, batch: &MaskedBatch, weighting: Weighting) -> Result<Tensor> {
    let ce = token_ce(model, batch)?;
    Ok(match weighting {
        Weighting::Elbo => ((ce * &batch.inv_t)?.sum_all()? / batch.tokens as f64)?,
        Weighting::Uniform => {
            ((ce * &batch.masked)?.sum_all()? / batch.masked_count.max(1) as f64)?
        }
    })
}

/// Held-out negative ELBO in nats: sum over windows of E_t[(1/t) sum_masked CE], with t
/// stratified over `strata` midpoints and masks from a fixed seed, so evaluations are comparable.
pub fn heldout_nll(
    model: &Llada,
    windows: &[Vec<u32>],
    mask_id: u32,
    strata: usize,
    batch: usize,
) -> Result<f64> {
    let device = model.device().clone();
    let mut total = 0.0f64;
    for (chunk_index, chunk) in windows.chunks(batch).enumerate() {
        for k in 0..strata {
            let t = (k as f64 + 0.5) / strata as f64;
            let mut rng = <ChaCha8Rng as rand::SeedableRng>::seed_from_u64(
                0x5eed ^ ((chunk_index as u64) << 16) ^ k as u64,
            );
            let masked = mask_batch(chunk, mask_id, 0.0, Some(t), &mut rng, &device)?;
            let ce = token_ce(model, &masked)?.detach();
            let nats = (ce * &masked.inv_t)?
                .sum_all()?
                .to_dtype(DType::F64)?
                .to_scalar::<f64>()?;
            total += nats / strata as f64;
        }
    }
    Ok(total)
}
