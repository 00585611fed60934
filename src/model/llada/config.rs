//! LLaDA's `config.json` (with the reference `ModelConfig`'s defaults and the checks that refuse
//! what this implementation does not reproduce), and the tensor names of the three layouts the
//! transformer loads: LLaDA's own, Qwen2's (Dream) and Qwen3's (A2D conversions).

use anyhow::{bail, Result};
use serde::Deserialize;

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
    /// Block-diffusion models: how they decode (see [`super::super::ModelInfo`]).
    #[serde(skip)]
    pub blocks: Option<crate::sampler::blocks::BlockDecoding>,
    /// The pad id, which dLLM's BD3LM sampler makes invisible (A2D conversions).
    #[serde(skip)]
    pub pad_id: Option<u32>,
    /// The family's name where it is not the naming's (SDAR has Qwen3's names).
    #[serde(skip)]
    pub family: Option<&'static str>,
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
pub(crate) struct TopNames {
    pub(crate) prefix: &'static str,
    pub(crate) embedding: &'static str,
    pub(crate) blocks: &'static str,
    pub(crate) final_norm: &'static str,
    pub(crate) head: &'static str,
}

impl Naming {
    pub(crate) fn top(self) -> TopNames {
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
    pub(super) fn family(self) -> &'static str {
        match self {
            Naming::Llada => "llada",
            Naming::Qwen2 => "dream",
            Naming::Qwen3 => "a2d-qwen3",
        }
    }

    /// (attn_norm, ff_norm, q, k, v, attn_out, gate, up, ff_out) under a block's prefix.
    pub(crate) fn block(self) -> [&'static str; 9] {
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
            blocks: None,
            pad_id: None,
            family: None,
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

    pub(super) fn norm_has_bias(&self) -> bool {
        self.bias_for_layer_norm.unwrap_or(self.include_bias)
    }

    pub(super) fn qkv_bias(&self) -> bool {
        self.include_bias | self.include_qkv_bias.unwrap_or(false)
    }
}
