//! Autoregressive-to-diffusion conversions of Qwen3 (dLLM's A2D models, e.g.
//! dllm-hub/Qwen3-0.6B-diffusion-mdlm-v0.1): stock Qwen3 weights and tensor names, run with
//! bidirectional attention and no logit shift. Qwen3 is Qwen2 without q/k/v biases, with a per-head
//! RMSNorm of queries and keys before the rotation and a head width (`head_dim`) of its own: the
//! transformer of [`super::llada`] with [`Naming::Qwen3`].

use anyhow::{bail, Result};
use serde::Deserialize;

use super::llada::{LladaConfig, Naming};

/// The keys of an A2D Qwen3 `config.json` that change the computation.
#[derive(Debug, Clone, Deserialize)]
pub struct Qwen3Config {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    /// transformers' Qwen3Config defaults to 128 whatever the hidden size.
    #[serde(default = "default_head_dim")]
    pub head_dim: usize,
    #[serde(default = "default_eps")]
    pub rms_norm_eps: f64,
    #[serde(default = "default_theta")]
    pub rope_theta: f64,
    #[serde(default)]
    pub rope_scaling: Option<serde_json::Value>,
    pub vocab_size: usize,
    #[serde(default)]
    pub tie_word_embeddings: bool,
    #[serde(default = "default_positions")]
    pub max_position_embeddings: usize,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    #[serde(default)]
    pub attention_bias: bool,
    #[serde(default)]
    pub use_sliding_window: bool,
    #[serde(default)]
    pub layer_types: Option<Vec<String>>,
    /// Not in published configs (the mask token comes from the tokenizer), but honoured.
    #[serde(default)]
    pub mask_token_id: Option<u32>,
    #[serde(default)]
    pub eos_token_id: Option<serde_json::Value>,
}

fn default_head_dim() -> usize {
    128
}
fn default_eps() -> f64 {
    1e-6
}
fn default_theta() -> f64 {
    1_000_000.0
}
fn default_positions() -> usize {
    40_960
}
fn default_act() -> String {
    "silu".into()
}

/// Rotary tables beyond this many positions are not built (the conversions train on 1-2k).
pub const MAX_CONTEXT: usize = 4096;

impl Qwen3Config {
    /// The equivalent transformer configuration; `mask_token_id` is the tokenizer's mask token
    /// when the config does not name one. Refuses what this implementation does not reproduce.
    pub fn to_transformer(&self, tokenizer_mask: Option<u32>) -> Result<LladaConfig> {
        if self.rope_scaling.as_ref().is_some_and(|v| !v.is_null()) {
            bail!("rope_scaling is not supported (only plain rotary embeddings)");
        }
        if self.hidden_act != "silu" {
            bail!(
                "hidden_act {:?} is not supported (only silu)",
                self.hidden_act
            );
        }
        if self.attention_bias {
            bail!("attention_bias = true is not supported (Qwen3 has none)");
        }
        let sliding = self
            .layer_types
            .as_ref()
            .is_some_and(|t| t.iter().any(|l| l != "full_attention"));
        if self.use_sliding_window || sliding {
            bail!("sliding-window attention layers are not supported");
        }
        let Some(mask) = self.mask_token_id.or(tokenizer_mask) else {
            bail!(
                "no mask token: neither config.json's mask_token_id nor tokenizer_config.json's \
                 mask_token names one"
            );
        };
        // One id, or the first of a list (instruct models list several).
        let eos = match &self.eos_token_id {
            Some(serde_json::Value::Number(n)) => n.as_u64().map(|n| n as u32),
            Some(serde_json::Value::Array(a)) => {
                a.first().and_then(|n| n.as_u64()).map(|n| n as u32)
            }
            _ => None,
        };
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
            include_qkv_bias: Some(false),
            bias_for_layer_norm: Some(false),
            vocab_size: self.vocab_size,
            embedding_size: Some(self.vocab_size),
            weight_tying: self.tie_word_embeddings,
            eos_token_id: eos,
            mask_token_id: Some(mask),
            naming: Naming::Qwen3,
            head_dim_override: Some(self.head_dim),
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
