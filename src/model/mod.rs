//! Everything candle: architectures (one per file) behind the [`Denoiser`] trait, and loading.

pub mod embedded;
pub mod llada;
pub mod loader;

use crate::sampler::Logits;

/// What the sampler and the UI need to know about a loaded model.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelInfo {
    /// Human-readable name (folder name or hub id).
    pub name: String,
    /// Architecture family, e.g. `llada`.
    pub family: &'static str,
    /// Token id of `[MASK]`.
    pub mask_id: u32,
    /// Width of a logits row (the embedding size, which may exceed the tokenizer's vocabulary).
    pub logits_width: usize,
    /// Longest canvas the model accepts.
    pub max_context: usize,
    /// Dream-style models predict position i from the output at i - 1.
    pub shift_logits: bool,
    /// End-of-text ids (shown dimmed, optionally suppressed).
    pub eos_ids: Vec<u32>,
    /// Number of parameters, for the status bar.
    pub parameters: usize,
}

/// A masked-token predictor: all positions in, one logits row per position out.
///
/// `forward_batch` exists so classifier-free guidance can run its conditional and unconditional
/// canvases in one pass; every sequence in a batch has the same length.
pub trait Denoiser: Send {
    fn forward_batch(&mut self, batch: &[Vec<u32>]) -> anyhow::Result<Vec<Logits>>;
    fn info(&self) -> &ModelInfo;

    fn forward(&mut self, tokens: &[u32]) -> anyhow::Result<Logits> {
        let mut out = self.forward_batch(&[tokens.to_vec()])?;
        out.pop()
            .ok_or_else(|| anyhow::anyhow!("the model returned no logits"))
    }
}
