//! Dream (Dream-org/Dream-v0-Base-7B, Dream-v0-Instruct-7B): the Qwen2 architecture with
//! bidirectional attention, whose output at position i predicts token i + 1 (the sampler shifts
//! the logits). Dream's `modeling_dream.py` is a Llama-style block with biases on q/k/v only,
//! RMSNorm normalised in f32 and cast back before the weight, non-interleaved rotary embeddings
//! and a SwiGLU MLP: exactly the transformer of [`super::llada`], loaded from Qwen2's tensor names.

use anyhow::{bail, Result};
use serde::Deserialize;

use super::llada::{LladaConfig, Naming};
use super::qwen::{QwenConfig, Variant};

/// Dream's `config.json`: Qwen2's keys (Dream names its mask token there).
#[derive(Debug, Clone, Deserialize)]
pub struct DreamConfig {
    #[serde(flatten)]
    pub qwen: QwenConfig,
}

impl DreamConfig {
    /// The equivalent transformer configuration, refusing what this implementation does not
    /// reproduce (naming the key).
    pub fn to_transformer(&self) -> Result<LladaConfig> {
        let Some(mask_id) = self.qwen.mask_token_id else {
            bail!("mask_token_id is missing: Dream models name their mask token in config.json");
        };
        self.qwen.to_transformer(Variant {
            naming: Naming::Qwen2,
            qkv_bias: true,
            head_dim: None,
            mask_id,
        })
    }
}
