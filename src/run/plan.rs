//! Run planning: [`Settings`] plus a text plus a model become the canvas a run denoises and its
//! lanes (one, a comparison, or a seed sweep), each with its sampler parameters. The playground,
//! `generate`, `bench` and `serve` all plan through [`plan`], so "steps auto" (one step per masked
//! position), chat templates and mask counting mean the same thing everywhere.

use anyhow::{anyhow, bail, Result};

use super::Settings;
use crate::chat::{ChatTemplate, Message};
use crate::model::ModelInfo;
use crate::prompt;
use crate::sampler::{SamplerParams, Strategy};
use crate::text::TextCodec;

/// The text a run starts from, in prompt syntax (`[MASK:N]` spans).
#[derive(Clone, Copy)]
pub enum Text<'a> {
    /// The user's text; the tokenizer adds its special tokens (LLaDA's BOS).
    Plain(&'a str),
    /// The user's text as the user message of a chat template (chat mode); the rendered prompt
    /// carries its own special tokens.
    Chat(&'a str, &'a ChatTemplate),
    /// A prompt already rendered from a chat template (`serve`'s messages).
    Rendered(&'a str),
}

/// Which lanes a run has beside the settings' own sweep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lanes {
    /// One lane with the settings (or a seed sweep when `sweep` is 2 to 4).
    One,
    /// One lane per entry of `compare`, each the settings with its own overrides.
    Compare,
}

/// A planned run: its canvas, where the prompt ends, and its lanes (label and parameters).
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub canvas: Vec<u32>,
    pub prompt_len: usize,
    pub lanes: Vec<(String, SamplerParams)>,
}

impl Plan {
    /// How many positions the run denoises.
    pub fn masked(&self, mask_id: u32) -> usize {
        masked(&self.canvas, mask_id)
    }
}

/// The canvas for `text` with the settings' generation region (`length` masks) after it, and the
/// prompt's length; refused past the model's context (counted before anything is allocated).
pub fn canvas(
    settings: &Settings,
    text: Text,
    codec: &TextCodec,
    model: &ModelInfo,
) -> Result<(Vec<u32>, usize)> {
    let (source, add_special) = match text {
        Text::Plain(text) => (text.to_string(), true),
        Text::Chat(text, template) => (template.render(&[Message::user(text)], true)?, false),
        Text::Rendered(text) => (text.to_string(), false),
    };
    let segments = prompt::parse(&source)?;
    codec.encode_canvas(
        &segments,
        settings.length,
        model.mask_id,
        add_special,
        model.max_context,
    )
}

/// Plans a run of `text` with `settings` on `model`: the canvas, and the lanes' parameters.
pub fn plan(
    settings: &Settings,
    text: Text,
    lanes: Lanes,
    codec: &TextCodec,
    model: &ModelInfo,
) -> Result<Plan> {
    let (canvas, prompt_len) = canvas(settings, text, codec, model)?;
    let lanes = lane_params(settings, lanes, masked(&canvas, model.mask_id), model)?;
    Ok(Plan {
        canvas,
        prompt_len,
        lanes,
    })
}

/// The lanes of a run over a canvas with `masked` masked positions (a planned one, or one the
/// playground refines), each validated. A canvas without masks is the front end's to refuse, in
/// its own words (it names its own flags or keys).
pub fn lane_params(
    settings: &Settings,
    lanes: Lanes,
    masked: usize,
    model: &ModelInfo,
) -> Result<Vec<(String, SamplerParams)>> {
    let planned: Vec<(String, SamplerParams)> = if settings.sweep >= 2 {
        // A seed sweep: the same settings, seeds s, s+1, ... (at temperature 0 every seed gives
        // the same text, unless the strategy or the position choice is random).
        let p = settings.sampler_params(masked);
        let random = p.temperature > 0.0
            || p.strategy == Strategy::Random
            || p.alg_temp.is_some_and(|t| t > 0.0);
        if !random {
            bail!(
                "a seed sweep needs randomness: at temperature 0 every seed gives the same text \
                 (raise the temperature, or set seed sweep off)"
            );
        }
        (0..settings.sweep as u64)
            .map(|i| {
                let seed = p.seed.wrapping_add(i);
                (format!("seed {seed}"), SamplerParams { seed, ..p.clone() })
            })
            .collect()
    } else if lanes == Lanes::Compare && settings.compare.len() > 1 {
        settings
            .compare
            .iter()
            .map(|lane| {
                let lane_settings = lane.apply(settings).map_err(|e| anyhow!(e))?;
                Ok((lane.to_string(), lane_settings.sampler_params(masked)))
            })
            .collect::<Result<_>>()?
    } else {
        let p = settings.sampler_params(masked);
        // A text-streaming server's lane is its frames, not a strategy's.
        let label = if model.family == crate::model::Family::Remote {
            "frames".to_string()
        } else {
            p.method()
        };
        vec![(label, p)]
    };
    for (_, p) in &planned {
        p.validate()?;
    }
    Ok(planned)
}

fn masked(canvas: &[u32], mask_id: u32) -> usize {
    canvas.iter().filter(|&&t| t == mask_id).count()
}

impl Settings {
    /// The sampler parameters of a run over `masked` masked positions: the settings'
    /// parameters, with "auto" steps (the default) meaning one step per masked position.
    pub fn sampler_params(&self, masked: usize) -> SamplerParams {
        SamplerParams {
            steps: self.steps.unwrap_or(masked.max(1)),
            ..self.params.clone()
        }
    }
}
