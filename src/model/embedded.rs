//! The default model, compiled into the binary from `models/default/` so that `dlm-tui` works
//! offline, from any directory, with an empty HOME.

use anyhow::{Context, Result};
use candle_core::{DType, Device};
use candle_nn::VarBuilder;

use super::llada::{Llada, LladaConfig};
use super::loader::{LoadedModel, Precision};
use crate::text::TextCodec;

const CONFIG: &str = include_str!("../../models/default/config.json");
const TOKENIZER: &[u8] = include_bytes!("../../models/default/tokenizer.json");
const WEIGHTS: &[u8] = include_bytes!("../../models/default/model.safetensors");

/// Name shown for the embedded model.
pub const NAME: &str = "dlm-tui default (TinyStories)";

pub fn config() -> Result<LladaConfig> {
    serde_json::from_str(CONFIG).context("the embedded config.json")
}

/// The embedded model's tokenizer alone.
pub fn codec() -> Result<TextCodec> {
    TextCodec::from_bytes(TOKENIZER).context("the embedded tokenizer")
}

/// Loads the embedded model. Its f16 weights are widened to f32 unless asked otherwise.
pub fn load(precision: Precision, device: &Device) -> Result<LoadedModel> {
    let (mut model, codec) = load_llada(precision, device)?;
    model.fuse_projections()?;
    Ok(LoadedModel {
        model: Box::new(model),
        codec,
    })
}

/// The embedded model as the concrete LLaDA type.
pub fn load_llada(precision: Precision, device: &Device) -> Result<(Llada, TextCodec)> {
    let dtype = match precision {
        Precision::Auto | Precision::F32 => DType::F32,
        Precision::Bf16 => DType::BF16,
        Precision::F16 => DType::F16,
    };
    let vb = VarBuilder::from_slice_safetensors(WEIGHTS, dtype, device)
        .context("reading the embedded weights")?;
    let model = Llada::new(config()?, vb, NAME.to_string())?;
    Ok((
        model,
        TextCodec::from_bytes(TOKENIZER).context("the embedded tokenizer")?,
    ))
}
