//! The run settings, shared by both front ends (the playground and the command line) and below
//! them: what a run denoises and how ([`Settings`]), each setting by name ([`Field`]) and the
//! comparison lanes ([`LaneSpec`]), with their parsing and validation in one place.

mod field;
mod lane;

pub use field::Field;
pub use lane::LaneSpec;

use serde::{Deserialize, Serialize};

use crate::sampler::{SamplerParams, Strategy};

/// What a run denoises and how: everything the parameters panel edits (autosaved).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub params: SamplerParams,
    /// Masked tokens appended after the editor text (0: fill only the spans).
    pub length: usize,
    /// Steps: `None` means one per masked token.
    pub steps: Option<usize>,
    /// The comparison lanes: a strategy each, optionally with its own parameters.
    pub compare: Vec<LaneSpec>,
    /// Add one to the seed before every run after the first, so each run samples anew.
    pub advance_seed: bool,
}

impl Default for Settings {
    /// The embedded model's defaults, chosen by measurement (models/default/MODEL_CARD.md:
    /// scripts/choose_defaults.py): 64 tokens, one step per token, blocks of 16, margin
    /// remasking at temperature 0.5 (the fewest repeated phrases with at least 97% English words).
    fn default() -> Self {
        Self {
            params: SamplerParams {
                block_length: 16,
                temperature: 0.5,
                strategy: Strategy::Margin,
                ..SamplerParams::default()
            },
            length: 64,
            steps: None,
            compare: vec![
                LaneSpec::new(Strategy::LowConfidence),
                LaneSpec::new(Strategy::Margin),
            ],
            advance_seed: false,
        }
    }
}

impl Settings {
    /// The checks the config file and the parameters panel apply, for settings from anywhere
    /// (a restored session included).
    pub fn validate(&self) -> anyhow::Result<()> {
        self.validate_run()?;
        if !(2..=4).contains(&self.compare.len()) {
            anyhow::bail!("compare needs 2 to 4 lanes, got {}", self.compare.len());
        }
        Ok(())
    }

    /// The checks one run's settings need (a comparison lane's too, which has no lane list).
    pub fn validate_run(&self) -> anyhow::Result<()> {
        if self.steps == Some(0) {
            anyhow::bail!("steps must be at least 1 (or auto)");
        }
        self.params.validate()
    }
}
