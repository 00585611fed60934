//! Comparison lanes: a strategy with its own parameter overrides, written the same way in the
//! config file, the parameters panel and `bench --setting`.

use serde::{Deserialize, Serialize};

use super::field::{parse_strategy, Field};
use super::Settings;
use crate::sampler::Strategy;

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
            let field = Field::ALL
                .into_iter()
                .filter(|f| !matches!(f, Field::Length | Field::Compare | Field::Strategy))
                .find(|f| f.label() == key)
                .ok_or_else(|| {
                    format!(
                        "compare: a lane cannot set {key:?} (the length and the lanes are shared)"
                    )
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
