//! The `config.json` keys that Qwen2-style checkpoints (Dream, and Qwen3's A2D conversions)
//! share, and their translation into the shared transformer of [`super::llada`].

use anyhow::{bail, Result};
use serde::Deserialize;

use super::llada::{LladaConfig, Naming};

/// Rotary tables beyond this many positions are not built (the published models use 2-4k).
pub const MAX_CONTEXT: usize = 4096;

/// Keys common to Qwen2 and Qwen3 configs, with transformers' defaults.
#[derive(Debug, Clone, Deserialize)]
pub struct QwenConfig {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    #[serde(default = "default_eps")]
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    #[serde(default)]
    pub rope_scaling: Option<serde_json::Value>,
    pub vocab_size: usize,
    #[serde(default)]
    pub tie_word_embeddings: bool,
    pub max_position_embeddings: usize,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    #[serde(default)]
    pub use_sliding_window: bool,
    /// Not in every published config (A2D models name the mask in tokenizer_config.json).
    #[serde(default)]
    pub mask_token_id: Option<u32>,
    /// One id, or a list of which the first is taken.
    #[serde(default)]
    pub eos_token_id: Option<serde_json::Value>,
    /// The pad id (dLLM's BD3LM sampler makes it invisible).
    #[serde(default)]
    pub pad_token_id: Option<u32>,
}

fn default_eps() -> f64 {
    1e-6
}
fn default_act() -> String {
    "silu".into()
}

/// What differs between the families built on [`QwenConfig`].
pub struct Variant {
    pub naming: Naming,
    pub qkv_bias: bool,
    pub head_dim: Option<usize>,
    pub mask_id: u32,
}

impl QwenConfig {
    /// The first end-of-text id.
    pub fn eos_id(&self) -> Option<u32> {
        match &self.eos_token_id {
            Some(serde_json::Value::Number(n)) => n.as_u64().map(|n| n as u32),
            Some(serde_json::Value::Array(a)) => a.first()?.as_u64().map(|n| n as u32),
            _ => None,
        }
    }

    /// The equivalent transformer configuration, refusing what this implementation does not
    /// reproduce (naming the key).
    pub fn to_transformer(&self, variant: Variant) -> Result<LladaConfig> {
        if self.rope_scaling.as_ref().is_some_and(|v| !v.is_null()) {
            bail!("rope_scaling is not supported (only plain rotary embeddings)");
        }
        if self.hidden_act != "silu" {
            bail!(
                "hidden_act {:?} is not supported (only silu)",
                self.hidden_act
            );
        }
        if self.use_sliding_window {
            bail!("use_sliding_window is not supported");
        }
        let cfg = LladaConfig {
            d_model: self.hidden_size,
            n_heads: self.num_attention_heads,
            n_kv_heads: Some(self.num_key_value_heads.unwrap_or(self.num_attention_heads)),
            n_layers: self.num_hidden_layers,
            mlp_hidden_size: Some(self.intermediate_size),
            rope_theta: self.rope_theta,
            rms_norm_eps: self.rms_norm_eps,
            max_sequence_length: self.max_position_embeddings.min(MAX_CONTEXT),
            include_bias: false,
            include_qkv_bias: Some(variant.qkv_bias),
            bias_for_layer_norm: Some(false),
            vocab_size: self.vocab_size,
            embedding_size: Some(self.vocab_size),
            weight_tying: self.tie_word_embeddings,
            eos_token_id: self.eos_id(),
            mask_token_id: Some(variant.mask_id),
            pad_id: self.pad_token_id,
            naming: variant.naming,
            head_dim_override: variant.head_dim,
            block_type: "llama".into(),
            layer_norm_type: "rms".into(),
            activation_type: "silu".into(),
            layer_norm_with_affine: true,
            rope: true,
            alibi: false,
            attention_layer_norm: false,
            input_emb_norm: false,
            scale_logits: false,
            block_group_size: 1,
            ..LladaConfig::default()
        };
        cfg.validate()?;
        Ok(cfg)
    }
}

/// dLLM's A2D conversions of Qwen2 / Qwen2.5 (e.g. the BD3LM conversion of Qwen2.5-Coder-0.5B-
/// Instruct): Qwen2's weights and names with q/k/v biases, bidirectional attention and no logit
/// shift; the mask is the tokenizer's mask token when the config names none.
pub fn a2d_qwen2_transformer(
    config: &QwenConfig,
    tokenizer_mask: Option<u32>,
) -> Result<LladaConfig> {
    let Some(mask_id) = config.mask_token_id.or(tokenizer_mask) else {
        bail!(
            "no mask token: neither config.json's mask_token_id nor tokenizer_config.json's \
             mask_token names one"
        );
    };
    qwen2_family(config, mask_id, "a2d-qwen2")
}

/// The Qwen2 layout (q/k/v biases, Qwen2's tensor names) under a family name of its own.
fn qwen2_family(config: &QwenConfig, mask_id: u32, family: &'static str) -> Result<LladaConfig> {
    let mut cfg = config.to_transformer(Variant {
        naming: Naming::Qwen2,
        qkv_bias: true,
        head_dim: None,
        mask_id,
    })?;
    cfg.family = Some(family);
    Ok(cfg)
}

/// Fast-dLLM v2 (Efficient-Large-Model/Fast_dLLM_v2_1.5B, _7B): Qwen2.5's weights and names with
/// q/k/v biases, decoded block by block as its `generate` does ([`crate::sampler::blocks`]), in
/// blocks of 32 (`generate`'s default; `bd_size` in config.json is its training block).
pub fn fast_dllm_v2_transformer(config: &QwenConfig, mask: Option<u32>) -> Result<LladaConfig> {
    let Some(mask_id) = config.mask_token_id.or(mask) else {
        bail!("no mask token: the tokenizer has no |<MASK>| and config.json names none");
    };
    let mut cfg = qwen2_family(config, mask_id, "fast-dllm-v2")?;
    cfg.blocks = Some(crate::sampler::blocks::BlockDecoding {
        layout: crate::sampler::blocks::Layout::FastDllmV2,
        size: FAST_DLLM_V2_BLOCK,
        invisible: None,
    });
    Ok(cfg)
}

/// dLLM's default block length for its BD3LM conversions (its examples' `block_size`).
pub const BD3LM_BLOCK: usize = 32;

/// The block length of Fast-dLLM v2's `generate` (its default `block_size`).
pub const FAST_DLLM_V2_BLOCK: usize = 32;
