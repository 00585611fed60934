//! Settings: defaults built in (documented, key for key, by the repository's `config.toml`),
//! overridden by the user's `config.toml` in the platform config directory, overridden by flags.
//! A broken file stops the app with an error naming the file, line and key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Result};
use serde::{Deserialize, Serialize};

use super::keymap::{default_table, Command};
use crate::model::loader::Precision;
use crate::model::DeviceKind;
use crate::run::LaneSpec;
use crate::run::Settings;
use crate::sampler::{CacheMode, Parallel, Remdm, SamplerParams, Schedule, Strategy};

/// The documented defaults (the repository's config.toml), compiled in.
pub const DOCUMENTED: &str = include_str!("../../config.toml");

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub model: ModelSection,
    pub sampler: SamplerSection,
    pub ui: UiSection,
    pub keys: BTreeMap<Command, Vec<String>>,
    /// `[remote.NAME]`: servers `--remote NAME` names (see `crate::remote::RemoteTable`); none
    /// by default (config.toml shows commented examples).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub remote: BTreeMap<String, crate::remote::RemoteTable>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            model: ModelSection::default(),
            sampler: SamplerSection::default(),
            ui: UiSection::default(),
            keys: default_table(),
            remote: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelSection {
    /// A hub model, ORG/NAME[@REVISION] (empty: none).
    pub repo: String,
    pub dir: String,
    /// More local model folders the model picker (F10) offers.
    pub folders: Vec<String>,
    pub dtype: Precision,
    pub device: DeviceKind,
}

impl Default for ModelSection {
    fn default() -> Self {
        Self {
            repo: String::new(),
            dir: String::new(),
            folders: Vec::new(),
            dtype: Precision::Auto,
            device: DeviceKind::Cpu,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SamplerSection {
    pub length: usize,
    pub steps: usize,
    pub block_length: usize,
    pub temperature: f64,
    pub top_k: usize,
    pub top_p: f64,
    pub strategy: Strategy,
    pub schedule: Schedule,
    pub threshold: f64,
    pub factor: f64,
    pub cache: CacheMode,
    pub stop_at_eos: bool,
    pub suppress_eos: bool,
    pub defer_eos: bool,
    pub alg_temp: f64,
    pub cfg: f64,
    pub remdm: Remdm,
    pub eta: f64,
    pub t_on: f64,
    pub t_off: f64,
    pub alpha_on: f64,
    pub seed: u64,
    pub advance_seed: bool,
    pub seed_sweep: usize,
    pub compare: Vec<LaneSpec>,
    /// Named parameter sets beside the built-in ones (a name of a built-in replaces it).
    pub presets: BTreeMap<String, LaneSpec>,
}

impl Default for SamplerSection {
    fn default() -> Self {
        let s = Settings::default();
        Self {
            length: s.length,
            steps: 0,
            block_length: s.params.block_length,
            temperature: s.params.temperature,
            top_k: 0,
            top_p: 1.0,
            strategy: s.params.strategy,
            schedule: s.params.schedule,
            threshold: 0.0,
            factor: 0.0,
            cache: s.params.cache,
            stop_at_eos: s.params.stop_at_eos,
            suppress_eos: s.params.suppress_eos,
            defer_eos: s.params.defer_eos,
            alg_temp: 0.0,
            cfg: s.params.cfg_scale,
            remdm: s.params.remdm,
            eta: s.params.eta,
            t_on: s.params.t_on,
            t_off: s.params.t_off,
            alpha_on: s.params.alpha_on,
            seed: s.params.seed,
            advance_seed: s.advance_seed,
            seed_sweep: s.sweep,
            compare: s.compare,
            presets: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UiSection {
    pub theme: String,
    pub autosave: bool,
    /// Where F9 writes runs (empty: the data directory's `dlm-tui/exports`).
    pub export_dir: String,
    /// Steps per second the live panel replays (0: every step as it arrives).
    pub replay_speed: f64,
}

impl Default for UiSection {
    fn default() -> Self {
        Self {
            theme: "dark".into(),
            autosave: true,
            export_dir: String::new(),
            replay_speed: 20.0,
        }
    }
}

impl SamplerSection {
    /// The run settings these values describe, validated.
    pub fn settings(&self) -> Result<Settings> {
        // 0 turns these off; anything else out of range is an error, as on the command line.
        for (name, value) in [
            ("threshold", self.threshold),
            ("factor", self.factor),
            ("alg_temp", self.alg_temp),
        ] {
            if !(value.is_finite() && value >= 0.0) {
                return Err(anyhow!(
                    "{name} must be a number >= 0 (0 turns it off), got {value}"
                ));
            }
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(anyhow!(
                "top_p must be in (0, 1] (1 turns it off), got {}",
                self.top_p
            ));
        }
        let off = |v: f64| (v > 0.0).then_some(v);
        let params = SamplerParams {
            steps: self.steps.max(1),
            block_length: self.block_length,
            temperature: self.temperature,
            top_k: (self.top_k > 0).then_some(self.top_k),
            top_p: (self.top_p < 1.0).then_some(self.top_p),
            strategy: self.strategy,
            schedule: self.schedule,
            parallel: match (off(self.threshold), off(self.factor)) {
                (Some(t), _) => Some(Parallel::Threshold(t)),
                (None, Some(f)) => Some(Parallel::Factor(f)),
                _ => None,
            },
            cache: self.cache,
            stop_at_eos: self.stop_at_eos,
            suppress_eos: self.suppress_eos,
            defer_eos: self.defer_eos,
            alg_temp: off(self.alg_temp),
            cfg_scale: self.cfg,
            seed: self.seed,
            remdm: self.remdm,
            eta: self.eta,
            t_on: self.t_on,
            t_off: self.t_off,
            alpha_on: self.alpha_on,
            ..SamplerParams::default()
        };
        let settings = Settings {
            params,
            length: self.length,
            steps: (self.steps > 0).then_some(self.steps),
            compare: self.compare.clone(),
            advance_seed: self.advance_seed,
            sweep: self.seed_sweep,
        };
        settings.validate()?;
        Ok(settings)
    }
}

impl SamplerSection {
    /// The presets a key cycles through: the built-in ones, then this file's (same names
    /// replace them).
    pub fn presets(&self) -> Vec<(String, LaneSpec)> {
        let mut all: Vec<(String, LaneSpec)> = crate::run::presets()
            .into_iter()
            .filter(|(name, _)| !self.presets.contains_key(name))
            .collect();
        all.extend(self.presets.iter().map(|(n, s)| (n.clone(), s.clone())));
        all
    }
}

impl Config {
    /// Parses one config file's text; errors name `origin`, the line and the key.
    pub fn parse(text: &str, origin: &str) -> Result<Self> {
        let config: Config = toml::from_str(text).map_err(|e| anyhow!("{origin}: {e}"))?;
        config
            .sampler
            .settings()
            .map_err(|e| anyhow!("{origin}: [sampler] {e:#}"))?;
        Ok(config)
    }

    /// The user's config file, if it exists.
    pub fn user_path() -> Option<PathBuf> {
        dirs::config_dir().map(|d| d.join("dlm-tui").join("config.toml"))
    }

    /// Built-in defaults overridden by the file at `path` (if it exists).
    pub fn load(path: Option<&Path>) -> Result<Self> {
        match path {
            Some(p) if p.exists() => {
                let text =
                    std::fs::read_to_string(p).map_err(|e| anyhow!("{}: {e}", p.display()))?;
                Self::parse(&text, &p.display().to_string())
            }
            _ => Ok(Self::default()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_from_the_file_join_the_built_in_ones() {
        let config = Config::parse(
            "[sampler]\npresets = { mine = \"random:temperature=0.8\", LLaDA = \"margin\" }\n",
            "config.toml",
        )
        .unwrap();
        let presets = config.sampler.presets();
        let names: Vec<&str> = presets.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            ["playground", "Fast-dLLM", "Dream", "ReMDM", "LLaDA", "mine"]
        );
        assert_eq!(presets[4].1.to_string(), "margin");
        let err = Config::parse(
            "[sampler]\npresets = { bad = \"random:temprature=1\" }\n",
            "c.toml",
        )
        .unwrap_err();
        assert!(
            format!("{err:#}").contains("did you mean temperature"),
            "{err:#}"
        );
    }

    #[test]
    fn documented_file_equals_the_built_in_defaults_key_for_key() {
        let parsed = Config::parse(DOCUMENTED, "config.toml").unwrap();
        assert_eq!(parsed, Config::default());
        // Every key of the defaults is written out in the documented file.
        let full = toml::Table::try_from(Config::default()).unwrap();
        let documented: toml::Table = toml::from_str(DOCUMENTED).unwrap();
        for (section, table) in &full {
            let doc = documented.get(section).and_then(|t| t.as_table()).unwrap();
            for key in table.as_table().unwrap().keys() {
                assert!(
                    doc.contains_key(key),
                    "config.toml does not document [{section}] {key}"
                );
            }
        }
    }

    #[test]
    fn user_values_override_and_the_rest_stay_default() {
        let c = Config::parse(
            "[sampler]\ntemperature = 0.7\n[ui]\ntheme = \"light\"\n",
            "user.toml",
        )
        .unwrap();
        assert_eq!(c.sampler.temperature, 0.7);
        assert_eq!(c.sampler.length, 64);
        assert_eq!(c.ui.theme, "light");
        assert_eq!(c.keys, default_table());
    }

    #[test]
    fn broken_files_name_file_line_and_key() {
        let err = Config::parse(
            "[sampler]\nlength = 64\ntemprature = 0.5\n",
            "/home/u/config.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("/home/u/config.toml")
                && err.contains("line 3")
                && err.contains("temprature"),
            "{err}"
        );
        let err = Config::parse("[sampler]\nstrategy = \"fastest\"\n", "c.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2") && err.contains("fastest"), "{err}");
        for bad in [
            "top_p = 1.5",
            "top_p = 0",
            "threshold = -1",
            "alg_temp = -3",
            "factor = -0.5",
        ] {
            let err = Config::parse(&format!("[sampler]\n{bad}\n"), "c.toml").unwrap_err();
            let key = bad.split(' ').next().unwrap();
            assert!(format!("{err:#}").contains(key), "{bad}: {err:#}");
        }
        let err = Config::parse("[sampler]\nblock_length = 0\n", "c.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("block length"), "{err}");
        let err = Config::parse("[keys]\nlaunch = [\"F5\"]\n", "c.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("launch"), "{err}");
    }
}
