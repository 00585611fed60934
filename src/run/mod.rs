//! The run settings, shared by both front ends (the playground and the command line) and below
//! them: what a run denoises and how ([`Settings`]), each setting by name ([`Field`]) and the
//! comparison lanes ([`LaneSpec`]), with their parsing and validation in one place.

mod field;
pub mod plan;

pub use field::Field;

use serde::{Deserialize, Serialize};

use field::{closest, parse_strategy};

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
    /// Seed sweep: 2 to 4 runs the same settings in that many lanes with seeds s, s+1, ...
    /// side by side (0: off).
    pub sweep: usize,
}

impl Default for Settings {
    /// The embedded model's defaults, chosen by measurement (models/default/MODEL_CARD.md:
    /// scripts/choose_defaults.py): 64 tokens, one step per token, blocks of 16, low-confidence
    /// remasking at temperature 0.7 (the fewest repeated phrases with at least 97% English words,
    /// and within a point of those, the most likely text).
    fn default() -> Self {
        Self {
            params: SamplerParams {
                block_length: 16,
                temperature: 0.7,
                strategy: Strategy::LowConfidence,
                ..SamplerParams::default()
            },
            length: 64,
            steps: None,
            compare: vec![
                LaneSpec::new(Strategy::LowConfidence),
                LaneSpec::new(Strategy::Margin),
            ],
            advance_seed: false,
            sweep: 0,
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
        if self.sweep > 4 {
            anyhow::bail!("seed_sweep: {} lanes; give 2 to 4 (or 0: off)", self.sweep);
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

/// Named parameter sets a key cycles through after "playground" (the defaults, see
/// [`presets`]); the config file adds its own. Each is a lane spec applied over the default
/// parameters, so nothing of the previous preset stays.
const PRESETS: &[(&str, &str)] = &[
    ("LLaDA", "low-confidence:temperature=0:block-length=32"),
    (
        "Fast-dLLM",
        "low-confidence:temperature=0:block-length=32:threshold=0.9:cache=dual",
    ),
    // Dream denoises the whole canvas at once: a block longer than any canvas.
    (
        "Dream",
        "entropy:temperature=0.2:top-p=0.95:schedule=timestep:block-length=32768",
    ),
    // The reference's remdm-loop script: nucleus 0.9 at temperature 1 over the whole canvas
    // (kuleshov-group/remdm scripts/remdm-loop.sh).
    (
        "ReMDM",
        "low-confidence:remdm=loop:eta=0.02:t-on=0.55:t-off=0.05:alpha-on=0.9:temperature=1:top-p=0.9:block-length=32768",
    ),
];

/// The built-in presets, in the order a key cycles through them: first "playground", which is
/// [`Settings::default`]'s parameters themselves (its strategy and nothing overridden), so one
/// cycle always comes back to the defaults the playground starts with.
pub fn presets() -> Vec<(String, LaneSpec)> {
    let playground = LaneSpec::new(Settings::default().params.strategy);
    std::iter::once(("playground".to_string(), playground))
        .chain(PRESETS.iter().filter_map(|(name, spec)| {
            Some((name.to_string(), LaneSpec::try_from(spec.to_string()).ok()?))
        }))
        .collect()
}

impl Settings {
    /// These settings with `preset`'s parameters: the defaults with the preset applied, the
    /// length, steps, seed, lanes and seed advance kept.
    pub fn with_preset(&self, preset: &LaneSpec) -> Result<Settings, String> {
        let mut base = Settings {
            length: self.length,
            steps: self.steps,
            compare: self.compare.clone(),
            advance_seed: self.advance_seed,
            sweep: self.sweep,
            ..Settings::default()
        };
        base.params.seed = self.params.seed;
        preset.apply(&base)
    }
}

/// One comparison lane: a strategy, optionally with its own parameters, written like
/// `margin` or `random:temperature=0.7:block-length=8`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct LaneSpec {
    pub strategy: Strategy,
    pub overrides: Vec<(Field, String)>,
}

impl LaneSpec {
    pub fn new(strategy: Strategy) -> Self {
        Self {
            strategy,
            overrides: Vec::new(),
        }
    }

    /// The settings of this lane: the shared ones with the strategy and overrides applied.
    pub fn apply(&self, base: &Settings) -> Result<Settings, String> {
        let mut s = base.clone();
        s.params.strategy = self.strategy;
        for (field, value) in &self.overrides {
            field.set(&mut s, value)?;
        }
        Ok(s)
    }
}

impl TryFrom<String> for LaneSpec {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        let mut parts = text.split(':').map(str::trim);
        let strategy = parse_strategy(parts.next().unwrap_or_default())?;
        let mut overrides = Vec::new();
        for part in parts {
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| format!("compare: {part:?} should look like temperature=0.7"))?;
            let key = key.trim().replace(['-', '_'], " ");
            let settable = Field::ALL
                .into_iter()
                .filter(|f| !matches!(f, Field::Length | Field::Compare | Field::Strategy));
            // Labels are compared with '-' and '_' read as spaces ("top-p" is written so).
            let same = |f: &Field| f.label().replace(['-', '_'], " ") == key;
            let field = settable.clone().find(same).ok_or_else(|| {
                if Field::ALL.iter().any(same) {
                    format!(
                        "compare: a lane cannot set {key:?} (its strategy comes first; the \
                         length and the lanes are shared)"
                    )
                } else {
                    let labels: Vec<&str> = settable.clone().map(|f| f.label()).collect();
                    match closest(&key, labels.iter().copied()) {
                        Some(near) => format!(
                            "compare: unknown parameter {key:?}, did you mean {}?",
                            near.replace(' ', "-")
                        ),
                        None => format!(
                            "compare: unknown parameter {key:?}: a lane can set {}",
                            labels
                                .iter()
                                .map(|l| l.replace(' ', "-"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    }
                }
            })?;
            overrides.push((field, value.trim().to_string()));
        }
        let spec = Self {
            strategy,
            overrides,
        };
        spec.apply(&Settings::default())?;
        Ok(spec)
    }
}

impl From<LaneSpec> for String {
    fn from(spec: LaneSpec) -> String {
        spec.to_string()
    }
}

impl std::fmt::Display for LaneSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.strategy.name())?;
        for (field, value) in &self.overrides {
            write!(f, ":{}={value}", field.label().replace(' ', "-"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 29, item 3: the "playground" preset is the defaults, whatever they are, and every
    /// built-in preset parses.
    #[test]
    fn the_playground_preset_is_the_defaults() {
        let all = presets();
        assert_eq!(
            all.len(),
            PRESETS.len() + 1,
            "a built-in preset failed to parse"
        );
        let (name, playground) = &all[0];
        assert_eq!(name, "playground");
        let mut changed = Settings::default();
        changed.params.strategy = Strategy::Margin;
        changed.params.temperature = 0.1;
        changed.params.block_length = 4;
        changed.params.seed = 9;
        let back = changed.with_preset(playground).unwrap();
        let mut expected = Settings::default();
        expected.params.seed = 9;
        assert_eq!(back, expected);
    }
}
