//! Autoregressive-to-diffusion conversions of Qwen3 (dLLM's A2D models, e.g.
//! dllm-hub/Qwen3-0.6B-diffusion-mdlm-v0.1): stock Qwen3 weights and tensor names, run with
//! bidirectional attention and no logit shift. Qwen3 is Qwen2 without q/k/v biases, with a per-head
//! RMSNorm of queries and keys before the rotation and a head width (`head_dim`) of its own: the
//! transformer of [`super::llada`] with [`Naming::Qwen3`].

use anyhow::{anyhow, bail, Result};
use serde::Deserialize;

use super::llada::{LladaConfig, Naming};
use super::qwen::{QwenConfig, Variant};
use crate::sampler::blocks::{BlockDecoding, Layout};

/// An A2D Qwen3 `config.json`: Qwen2's keys plus Qwen3's own.
#[derive(Debug, Clone, Deserialize)]
pub struct Qwen3Config {
    #[serde(flatten)]
    pub qwen: QwenConfig,
    /// transformers' Qwen3Config defaults to 128 whatever the hidden size.
    #[serde(default = "default_head_dim")]
    pub head_dim: usize,
    #[serde(default)]
    pub attention_bias: bool,
    #[serde(default)]
    pub layer_types: Option<Vec<String>>,
    /// SDAR's trained block length (block diffusion).
    #[serde(default)]
    pub block_size: Option<usize>,
}

fn default_head_dim() -> usize {
    128
}

impl Qwen3Config {
    /// The equivalent transformer configuration; the mask is the tokenizer's mask token when the
    /// config does not name one. Refuses what this implementation does not reproduce.
    pub fn to_transformer(&self, tokenizer_mask: Option<u32>) -> Result<LladaConfig> {
        if self.attention_bias {
            bail!("attention_bias = true is not supported (Qwen3 has none)");
        }
        if self
            .layer_types
            .as_ref()
            .is_some_and(|t| t.iter().any(|l| l != "full_attention"))
        {
            bail!("sliding-window attention layers are not supported");
        }
        let mask_id = self.qwen.mask_token_id.or(tokenizer_mask).ok_or_else(|| {
            anyhow!(
                "no mask token: neither config.json's mask_token_id nor tokenizer_config.json's \
                 mask_token names one"
            )
        })?;
        self.qwen.to_transformer(Variant {
            naming: Naming::Qwen3,
            qkv_bias: false,
            head_dim: Some(self.head_dim),
            mask_id,
        })
    }
}

/// SDAR and TraDo (JetLM/SDAR-1.7B-Chat, Gen-Verse/TraDo-8B): Qwen3's layout and tensor names,
/// decoded by block diffusion ([`crate::sampler::blocks`]) in blocks of `block_size`.
pub fn sdar_transformer(config: &Qwen3Config, tokenizer_mask: Option<u32>) -> Result<LladaConfig> {
    let block_size = match config.block_size {
        Some(0) => bail!("block_size 0: SDAR models decode in blocks of at least one token"),
        Some(b) => b,
        None => bail!("block_size is missing: SDAR models name their block length in config.json"),
    };
    let mut cfg = config.to_transformer(tokenizer_mask)?;
    cfg.blocks = Some(BlockDecoding {
        layout: Layout::Sdar,
        size: block_size,
        invisible: None,
    });
    cfg.family = Some("sdar");
    Ok(cfg)
}
