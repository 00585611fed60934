//! Dream (Dream-org/Dream-v0-Base-7B, Dream-v0-Instruct-7B): the Qwen2 architecture with
//! bidirectional attention, whose output at position i predicts token i + 1 (the sampler shifts
//! the logits). Dream's `modeling_dream.py` is a Llama-style block with biases on q/k/v only,
//! RMSNorm normalised in f32 and cast back before the weight, non-interleaved rotary embeddings
//! and a SwiGLU MLP: exactly the transformer of [`super::llada`], loaded from Qwen2's tensor names.

use anyhow::{bail, Result};
use serde::Deserialize;

use super::llada::{LladaConfig, Naming};

/// The keys of Dream's `config.json` that change the computation.
#[derive(Debug, Clone, Deserialize)]
pub struct DreamConfig {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
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
    pub use_sliding_window: bool,
    pub mask_token_id: Option<u32>,
    #[serde(default)]
    pub eos_token_id: Option<u32>,
}

fn default_eps() -> f64 {
    1e-6
}
fn default_theta() -> f64 {
    10_000.0
}
fn default_positions() -> usize {
    32_768
}
fn default_act() -> String {
    "silu".into()
}

/// Dream's published context is 2048 tokens; rotary tables beyond this are not built.
pub const MAX_CONTEXT: usize = 4096;

impl DreamConfig {
    /// The equivalent transformer configuration, refusing what this implementation does not
    /// reproduce (naming the key).
    pub fn to_transformer(&self) -> Result<LladaConfig> {
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
        let Some(mask) = self.mask_token_id else {
            bail!("mask_token_id is missing: Dream models name their mask token in config.json");
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
            include_qkv_bias: Some(true),
            bias_for_layer_norm: Some(false),
            vocab_size: self.vocab_size,
            embedding_size: Some(self.vocab_size),
            weight_tying: self.tie_word_embeddings,
            eos_token_id: self.eos_token_id,
            mask_token_id: Some(mask),
            naming: Naming::Qwen2,
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
