//! The run settings one by one: each [`Field`]'s name, how it is shown, typed, stepped with the
//! arrows and validated (with a message that names it). The parameters panel, the config file's
//! comparison lanes and `bench --setting` all go through these.

use serde::{Deserialize, Serialize};

use super::{LaneSpec, Settings};
use crate::sampler::{CacheMode, Parallel, Remdm, Schedule, Strategy};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Field {
    Length,
    Steps,
    BlockLength,
    BlockSteps,
    SubBlock,
    Temperature,
    TopK,
    TopP,
    Strategy,
    Schedule,
    Threshold,
    Factor,
    Cache,
    StopAtEos,
    SuppressEos,
    DeferEos,
    AlgTemp,
    Cfg,
    Remdm,
    Eta,
    TOn,
    TOff,
    AlphaOn,
    Seed,
    AdvanceSeed,
    Sweep,
    Compare,
}

/// A block length no canvas reaches: the whole canvas is one block (the presets' Dream and
/// ReMDM settings), shown as "whole canvas".
pub const WHOLE_CANVAS: usize = 32768;

fn on_off(value: bool) -> String {
    if value { "on" } else { "off" }.into()
}

fn parse_on_off(field: Field, text: &str) -> Result<bool, String> {
    match text {
        "on" | "true" | "yes" => Ok(true),
        "off" | "false" | "no" => Ok(false),
        _ => Err(format!("{}: {text:?} is not on or off", field.label())),
    }
}

impl Field {
    pub const ALL: [Field; 27] = [
        Field::Length,
        Field::Steps,
        Field::BlockLength,
        Field::Temperature,
        Field::TopK,
        Field::TopP,
        Field::Strategy,
        Field::Schedule,
        Field::Threshold,
        Field::Factor,
        Field::Cache,
        Field::BlockSteps,
        Field::SubBlock,
        Field::StopAtEos,
        Field::SuppressEos,
        Field::DeferEos,
        Field::AlgTemp,
        Field::Cfg,
        Field::Remdm,
        Field::Eta,
        Field::TOn,
        Field::TOff,
        Field::AlphaOn,
        Field::Seed,
        Field::AdvanceSeed,
        Field::Sweep,
        Field::Compare,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Field::Length => "length",
            Field::Steps => "steps",
            Field::BlockLength => "block length",
            Field::BlockSteps => "block steps",
            Field::SubBlock => "sub-block",
            Field::Temperature => "temperature",
            Field::TopK => "top-k",
            Field::TopP => "top-p",
            Field::Strategy => "strategy",
            Field::Schedule => "schedule",
            Field::Threshold => "threshold",
            Field::Factor => "factor",
            Field::Cache => "cache",
            Field::StopAtEos => "stop at eos",
            Field::SuppressEos => "no eos",
            Field::DeferEos => "defer eos",
            Field::AlgTemp => "alg temp",
            Field::Cfg => "cfg scale",
            Field::Remdm => "remdm",
            Field::Eta => "eta",
            Field::TOn => "t on",
            Field::TOff => "t off",
            Field::AlphaOn => "alpha on",
            Field::Seed => "seed",
            Field::AdvanceSeed => "advance seed",
            Field::Sweep => "seed sweep",
            Field::Compare => "compare",
        }
    }

    /// What the setting does, in one line (the parameters panel shows it for the selected row).
    pub fn description(self) -> &'static str {
        match self {
            Field::Length => "masks appended after the text (0: fill only the spans)",
            Field::Steps => "denoising steps in all (auto: one per masked token)",
            Field::BlockLength => "blocks denoised left to right, this many tokens each",
            Field::BlockSteps => {
                "block-diffusion models: steps per block (auto: from steps, else the block)"
            }
            Field::SubBlock => "Fast-dLLM v2: sub-blocks decoded in order in a block (auto: 8)",
            Field::Temperature => "randomness of the proposed tokens (0: the most likely)",
            Field::TopK => "propose only among the k most likely tokens",
            Field::TopP => "propose among the fewest tokens reaching probability p",
            Field::Strategy => "which masked positions are committed first",
            Field::Schedule => "how many positions each step commits",
            Field::Threshold => "parallel: also commit every position scoring at least this",
            Field::Factor => "parallel: accept the n-th best while its score >= 1 - F/(n+1)",
            Field::Cache => "reuse keys and values across a block's steps (none is exact)",
            Field::StopAtEos => "once the answer has ended, fill the rest with end-of-text",
            Field::SuppressEos => "never propose end-of-text",
            Field::DeferEos => "commit end-of-text and end-of-turn last",
            Field::AlgTemp => "sample the positions to commit from softmax(score / T)",
            Field::Cfg => "classifier-free guidance (a second pass with the prompt masked)",
            Field::Remdm => "ReMDM: committed tokens may be masked again (off, cap, rescale, loop)",
            Field::Eta => "ReMDM: remasking rate (cap, loop) or share of the most (rescale)",
            Field::TOn => "ReMDM loop: the time the loop starts (1 is the first step, 0 the end)",
            Field::TOff => "ReMDM loop: the time the loop ends",
            Field::AlphaOn => "ReMDM loop: the share of tokens committed during the loop",
            Field::Seed => "random seed of the next run (F4 re-rolls it)",
            Field::AdvanceSeed => "add 1 to the seed before every run after the first",
            Field::Sweep => "2-4: that many lanes, seeds s, s+1, ... side by side",
            Field::Compare => "F7's lanes: strategies, each with optional overrides",
        }
    }

    pub fn value(self, s: &Settings) -> String {
        let opt = |v: Option<f64>| v.map_or("off".to_string(), |v| format!("{v}"));
        match self {
            Field::Length => s.length.to_string(),
            Field::Steps => s.steps.map_or("auto".into(), |n| n.to_string()),
            // The presets' "a block longer than any canvas" (Dream, ReMDM).
            Field::BlockLength if s.params.block_length >= WHOLE_CANVAS => "whole canvas".into(),
            Field::BlockLength => s.params.block_length.to_string(),
            Field::BlockSteps => s
                .params
                .steps_per_block
                .map_or("auto".into(), |n| n.to_string()),
            Field::SubBlock => s
                .params
                .sub_block_length
                .map_or("auto".into(), |n| n.to_string()),
            Field::Temperature => format!("{}", s.params.temperature),
            Field::TopK => s.params.top_k.map_or("off".into(), |k| k.to_string()),
            Field::TopP => opt(s.params.top_p),
            Field::Strategy => s.params.strategy.name().into(),
            Field::Schedule => s.params.schedule.name().into(),
            Field::Threshold => opt(match s.params.parallel {
                Some(Parallel::Threshold(t)) => Some(t),
                _ => None,
            }),
            Field::Factor => opt(match s.params.parallel {
                Some(Parallel::Factor(f)) => Some(f),
                _ => None,
            }),
            Field::Cache => s.params.cache.name().into(),
            Field::StopAtEos => on_off(s.params.stop_at_eos),
            Field::SuppressEos => on_off(s.params.suppress_eos),
            Field::DeferEos => on_off(s.params.defer_eos),
            Field::AlgTemp => opt(s.params.alg_temp),
            Field::Cfg => format!("{}", s.params.cfg_scale),
            Field::Remdm => s.params.remdm.name().into(),
            Field::Eta => format!("{}", s.params.eta),
            Field::TOn => format!("{}", s.params.t_on),
            Field::TOff => format!("{}", s.params.t_off),
            Field::AlphaOn => format!("{}", s.params.alpha_on),
            Field::Seed => s.params.seed.to_string(),
            Field::AdvanceSeed => on_off(s.advance_seed),
            Field::Sweep => match s.sweep {
                0 | 1 => "off".into(),
                n => format!("{n} seeds"),
            },
            Field::Compare => s
                .compare
                .iter()
                .map(LaneSpec::to_string)
                .collect::<Vec<_>>()
                .join(","),
        }
    }

    /// Whether `c` can be typed into this field's value: whole-number fields without an "off"
    /// or "auto" take digits only; the others any character (their names and words).
    pub fn accepts(self, c: char) -> bool {
        match self {
            Field::Length | Field::BlockLength | Field::Seed => c.is_ascii_digit(),
            _ => true,
        }
    }

    /// Sets the field from typed text.
    pub fn set(self, s: &mut Settings, text: &str) -> Result<(), String> {
        let text = text.trim();
        // "0" is off (or auto) where config.toml says so.
        let zero_is_off = matches!(
            self,
            Field::Steps
                | Field::BlockSteps
                | Field::SubBlock
                | Field::TopK
                | Field::Threshold
                | Field::Factor
                | Field::AlgTemp
        );
        let off = matches!(text, "" | "off" | "none" | "auto")
            || (zero_is_off && text.parse::<f64>() == Ok(0.0))
            || (self == Field::TopP && text.parse::<f64>() == Ok(1.0));
        let num = |what: &str| -> Result<f64, String> {
            text.parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| format!("{what}: {text:?} is not a number"))
        };
        let int = |what: &str| -> Result<usize, String> {
            text.parse::<usize>()
                .map_err(|_| whole_number_error(what, text))
        };
        let mut next = s.clone();
        match self {
            Field::Length => next.length = int("length")?,
            Field::Steps => next.steps = if off { None } else { Some(int("steps")?) },
            Field::BlockLength if matches!(text, "whole canvas" | "whole" | "all") => {
                next.params.block_length = WHOLE_CANVAS
            }
            Field::BlockLength => next.params.block_length = int("block length")?,
            Field::BlockSteps => {
                next.params.steps_per_block = if off { None } else { Some(int("block steps")?) }
            }
            Field::SubBlock => {
                next.params.sub_block_length = if off { None } else { Some(int("sub-block")?) }
            }
            Field::Temperature => next.params.temperature = num("temperature")?,
            Field::TopK => next.params.top_k = if off { None } else { Some(int("top-k")?) },
            Field::TopP => next.params.top_p = if off { None } else { Some(num("top-p")?) },
            Field::Strategy => next.params.strategy = parse_strategy(text)?,
            Field::Schedule => {
                next.params.schedule = Schedule::ALL
                    .into_iter()
                    .find(|x| x.name() == text)
                    .ok_or_else(|| {
                        format!(
                            "schedule: {text:?} is not one of uniform, timestep, linear, cosine"
                        )
                    })?
            }
            Field::Threshold => {
                next.params.parallel = if off {
                    None
                } else {
                    Some(Parallel::Threshold(num("threshold")?))
                }
            }
            Field::Factor => {
                next.params.parallel = if off {
                    None
                } else {
                    Some(Parallel::Factor(num("factor")?))
                }
            }
            Field::Cache => {
                next.params.cache = CacheMode::ALL
                    .into_iter()
                    .find(|m| m.name() == text)
                    .ok_or_else(|| format!("cache: {text:?} is not one of none, prefix, dual"))?
            }
            Field::StopAtEos => next.params.stop_at_eos = parse_on_off(self, text)?,
            Field::SuppressEos => next.params.suppress_eos = parse_on_off(self, text)?,
            Field::DeferEos => next.params.defer_eos = parse_on_off(self, text)?,
            Field::AlgTemp => {
                next.params.alg_temp = if off { None } else { Some(num("alg temp")?) }
            }
            Field::Cfg => next.params.cfg_scale = num("cfg scale")?,
            Field::Remdm => {
                next.params.remdm = Remdm::ALL
                    .into_iter()
                    .find(|r| r.name() == text)
                    .ok_or_else(|| {
                        format!("remdm: {text:?} is not one of off, cap, rescale, loop")
                    })?
            }
            Field::Eta => next.params.eta = num("eta")?,
            Field::TOn => next.params.t_on = num("t on")?,
            Field::TOff => next.params.t_off = num("t off")?,
            Field::AlphaOn => next.params.alpha_on = num("alpha on")?,
            Field::Seed => {
                next.params.seed = text.parse().map_err(|_| whole_number_error("seed", text))?
            }
            Field::AdvanceSeed => next.advance_seed = parse_on_off(self, text)?,
            Field::Sweep => {
                let text = text.trim_end_matches("seeds").trim();
                next.sweep = if matches!(text, "" | "off" | "0" | "1") {
                    0
                } else {
                    let n = text
                        .parse::<usize>()
                        .map_err(|_| whole_number_error("seed sweep", text))?;
                    if !(2..=4).contains(&n) {
                        return Err(format!("seed sweep: {n} lanes; give 2 to 4 (or off)"));
                    }
                    n
                }
            }
            Field::Compare => {
                let lanes = text
                    .split(',')
                    .map(|t| LaneSpec::try_from(t.trim().to_string()))
                    .collect::<Result<Vec<_>, _>>()?;
                if !(2..=4).contains(&lanes.len()) {
                    return Err(format!(
                        "compare: give 2 to 4 strategies, got {}",
                        lanes.len()
                    ));
                }
                next.compare = lanes;
            }
        }
        validate(&next)?;
        *s = next;
        Ok(())
    }

    /// Nudges the field up or down ("auto" steps count as one per generated token).
    pub fn adjust(self, s: &mut Settings, up: bool) -> Result<(), String> {
        let auto = s.length;
        self.adjust_from(s, up, auto)
    }

    /// Nudges the field up or down; `auto_steps` is what "auto" steps mean for the next run
    /// (one per masked token), so a nudge moves from the value in effect.
    pub fn adjust_from(self, s: &mut Settings, up: bool, auto_steps: usize) -> Result<(), String> {
        let step_int = |v: usize, by: usize| if up { v + by } else { v.saturating_sub(by) };
        let mut next = s.clone();
        let p = &mut next.params;
        match self {
            Field::Length => next.length = step_int(next.length, 8),
            Field::Steps => {
                let current = next.steps.unwrap_or(auto_steps.max(1));
                next.steps = Some(step_int(current, 1).max(1));
            }
            Field::BlockLength => p.block_length = step_int(p.block_length, 8).max(1),
            Field::BlockSteps => {
                p.steps_per_block = match p.steps_per_block {
                    None if up => Some(1),
                    Some(1) if !up => None,
                    Some(n) => Some(step_int(n, 1)),
                    None => None,
                }
            }
            Field::SubBlock => {
                p.sub_block_length = match p.sub_block_length {
                    None if up => Some(1),
                    Some(1) if !up => None,
                    Some(n) => Some(step_int(n, 1)),
                    None => None,
                }
            }
            Field::Temperature => {
                p.temperature = round2((p.temperature + if up { 0.1 } else { -0.1 }).max(0.0))
            }
            Field::TopK => {
                p.top_k = match p.top_k {
                    None if up => Some(1),
                    Some(1) if !up => None,
                    Some(k) => Some(step_int(k, 1)),
                    None => None,
                }
            }
            Field::TopP => {
                p.top_p = match p.top_p {
                    None if !up => Some(0.95),
                    Some(v) if up && v >= 0.99 => None,
                    Some(v) => Some(round2((v + if up { 0.05 } else { -0.05 }).clamp(0.05, 1.0))),
                    None => None,
                }
            }
            Field::Strategy => p.strategy = cycle(&Strategy::ALL, p.strategy, up),
            Field::Schedule => p.schedule = cycle(&Schedule::ALL, p.schedule, up),
            Field::Threshold => {
                p.parallel = match p.parallel {
                    Some(Parallel::Threshold(t)) => {
                        let v = round2(t + if up { 0.05 } else { -0.05 });
                        (v > 0.0 && v <= 1.0).then_some(Parallel::Threshold(v))
                    }
                    _ => Some(Parallel::Threshold(0.9)),
                }
            }
            Field::Factor => {
                p.parallel = match p.parallel {
                    Some(Parallel::Factor(f)) => {
                        let v = round2(f + if up { 0.25 } else { -0.25 });
                        (v > 0.0).then_some(Parallel::Factor(v))
                    }
                    _ => Some(Parallel::Factor(1.0)),
                }
            }
            Field::Cache => p.cache = cycle(&CacheMode::ALL, p.cache, up),
            Field::StopAtEos => p.stop_at_eos = !p.stop_at_eos,
            Field::SuppressEos => p.suppress_eos = !p.suppress_eos,
            Field::DeferEos => p.defer_eos = !p.defer_eos,
            Field::AlgTemp => {
                p.alg_temp = match p.alg_temp {
                    None if up => Some(0.1),
                    Some(v) => {
                        let v = round2(v + if up { 0.1 } else { -0.1 });
                        (v > 0.0).then_some(v)
                    }
                    None => None,
                }
            }
            Field::Cfg => {
                p.cfg_scale = round2((p.cfg_scale + if up { 0.5 } else { -0.5 }).max(0.0))
            }
            Field::Remdm => p.remdm = cycle(&Remdm::ALL, p.remdm, up),
            // eta is small (the reference's scripts use 0.008 to 0.02): steps of 0.01.
            Field::Eta => {
                let v = (p.eta + if up { 0.01 } else { -0.01 }).clamp(0.0, 1.0);
                p.eta = (v * 1000.0).round() / 1000.0
            }
            Field::TOn => {
                p.t_on = round2((p.t_on + if up { 0.05 } else { -0.05 }).clamp(0.05, 0.95))
            }
            Field::TOff => {
                p.t_off = round2((p.t_off + if up { 0.05 } else { -0.05 }).clamp(0.0, 0.9))
            }
            Field::AlphaOn => {
                p.alpha_on = round2((p.alpha_on + if up { 0.05 } else { -0.05 }).clamp(0.05, 0.95))
            }
            Field::Seed => {
                p.seed = if up {
                    p.seed.wrapping_add(1)
                } else {
                    p.seed.saturating_sub(1)
                }
            }
            Field::AdvanceSeed => next.advance_seed = !next.advance_seed,
            Field::Sweep => {
                next.sweep = match (next.sweep, up) {
                    (0 | 1, true) => 2,
                    (n, true) => (n + 1).min(4),
                    (n, false) if n <= 2 => 0,
                    (n, false) => n - 1,
                }
            }
            Field::Compare => {
                let n = next.compare.len();
                if up && n < 4 {
                    let unused = Strategy::ALL
                        .into_iter()
                        .find(|s| next.compare.iter().all(|l| l.strategy != *s));
                    next.compare.extend(unused.map(LaneSpec::new));
                } else if !up && n > 2 {
                    next.compare.pop();
                }
            }
        }
        validate(&next)?;
        *s = next;
        Ok(())
    }
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

fn cycle<T: Copy + PartialEq>(all: &[T], current: T, forward: bool) -> T {
    let i = all.iter().position(|x| *x == current).unwrap_or(0);
    let n = all.len();
    all[if forward {
        (i + 1) % n
    } else {
        (i + n - 1) % n
    }]
}

/// Why `text` is not a whole number for `what`: too large, negative, or not a number at all.
fn whole_number_error(what: &str, text: &str) -> String {
    let digits = text.strip_prefix('-').unwrap_or(text);
    if !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit()) {
        if text.starts_with('-') {
            format!("{what}: {text} is negative: it must be at least 0")
        } else {
            format!("{what}: {text} is too large (at most {})", u64::MAX)
        }
    } else {
        format!("{what}: {text:?} is not a whole number")
    }
}

/// The candidate closest to `word` by edit distance, if it is close enough to be a typo.
pub(super) fn closest<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    fn distance(a: &str, b: &str) -> usize {
        let b: Vec<char> = b.chars().collect();
        let mut row: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.chars().enumerate() {
            let mut diagonal = row[0];
            row[0] = i + 1;
            for (j, &cb) in b.iter().enumerate() {
                let substitution = diagonal + usize::from(ca != cb);
                diagonal = row[j + 1];
                row[j + 1] = substitution.min(row[j] + 1).min(row[j + 1] + 1);
            }
        }
        row[b.len()]
    }
    candidates
        .into_iter()
        .map(|c| (distance(word, c), c))
        .filter(|&(d, c)| d <= 2.max(c.chars().count() / 3))
        .min_by_key(|&(d, _)| d)
        .map(|(_, c)| c)
}

pub(super) fn parse_strategy(text: &str) -> Result<Strategy, String> {
    Strategy::ALL
        .into_iter()
        .find(|s| s.name() == text)
        .ok_or_else(|| {
            let names: Vec<&str> = Strategy::ALL.iter().map(|s| s.name()).collect();
            format!("strategy: {text:?} is not one of {}", names.join(", "))
        })
}

/// The same checks a run makes, so a bad value is refused where it is typed.
fn validate(s: &Settings) -> Result<(), String> {
    s.validate_run().map_err(|e| format!("{e:#}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 29, item 18: the presets' whole-canvas block reads "whole canvas", and typing it
    /// back (Enter, Enter) keeps it.
    #[test]
    fn a_whole_canvas_block_is_named_so() {
        let mut s = Settings::default();
        s.params.block_length = WHOLE_CANVAS;
        assert_eq!(Field::BlockLength.value(&s), "whole canvas");
        s.params.block_length = 8;
        Field::BlockLength.set(&mut s, "whole canvas").unwrap();
        assert_eq!(s.params.block_length, WHOLE_CANVAS);
        Field::BlockLength.set(&mut s, "32").unwrap();
        assert_eq!(Field::BlockLength.value(&s), "32");
    }

    #[test]
    fn typos_and_overflows_get_a_helpful_error() {
        let mut s = Settings::default();
        let err = Field::Compare
            .set(&mut s, "margin, random:temprature=0.7")
            .unwrap_err();
        assert!(err.contains("did you mean temperature?"), "{err}");
        let err = Field::Compare
            .set(&mut s, "margin, random:blocklen=4")
            .unwrap_err();
        assert!(err.contains("did you mean block-length?"), "{err}");
        let err = Field::Compare
            .set(&mut s, "margin, random:zzz=4")
            .unwrap_err();
        assert!(err.contains("a lane can set"), "{err}");
        let err = Field::Seed
            .set(&mut s, "99999999999999999999999")
            .unwrap_err();
        assert!(err.contains("too large"), "{err}");
        let err = Field::Length.set(&mut s, "-3").unwrap_err();
        assert!(err.contains("negative"), "{err}");
    }
    #[test]
    fn typed_values_are_validated_with_their_name() {
        let mut s = Settings::default();
        assert!(Field::Temperature.set(&mut s, "0.7").is_ok());
        assert_eq!(s.params.temperature, 0.7);
        let err = Field::Temperature.set(&mut s, "-1").unwrap_err();
        assert!(err.contains("temperature"), "{err}");
        assert_eq!(
            s.params.temperature, 0.7,
            "a refused value leaves the old one"
        );
        assert!(Field::BlockLength
            .set(&mut s, "0")
            .unwrap_err()
            .contains("block length"));
        assert!(Field::Strategy.set(&mut s, "margin").is_ok());
        assert!(Field::Strategy
            .set(&mut s, "bogus")
            .unwrap_err()
            .contains("low-confidence"));
        assert!(Field::Compare.set(&mut s, "random,entropy,margin").is_ok());
        assert_eq!(s.compare.len(), 3);
        assert!(Field::Compare.set(&mut s, "random").is_err());
        // Lanes with their own parameters.
        assert!(Field::Compare
            .set(
                &mut s,
                "low-confidence, random:temperature=0.7:block-length=8"
            )
            .is_ok());
        assert_eq!(
            Field::Compare.value(&s),
            "low-confidence,random:temperature=0.7:block-length=8"
        );
        let lane = s.compare[1].apply(&s).unwrap();
        assert_eq!(
            (lane.params.temperature, lane.params.block_length),
            (0.7, 8)
        );
        assert_eq!(lane.params.strategy, Strategy::Random);
        let err = Field::Compare
            .set(&mut s, "margin, random:length=3")
            .unwrap_err();
        assert!(err.contains("length"), "{err}");
        let err = Field::Compare
            .set(&mut s, "margin, random:temperature=-2")
            .unwrap_err();
        assert!(err.contains("temperature"), "{err}");
        assert!(Field::Steps.set(&mut s, "auto").is_ok());
        // "0" means off / auto, as in config.toml.
        for field in [
            Field::Steps,
            Field::TopK,
            Field::Threshold,
            Field::Factor,
            Field::AlgTemp,
        ] {
            assert!(field.set(&mut s, "0").is_ok(), "{field:?}");
            assert!(
                matches!(field.value(&s).as_str(), "off" | "auto"),
                "{field:?}"
            );
        }
        assert!(Field::TopP.set(&mut s, "1").is_ok());
        assert_eq!(Field::TopP.value(&s), "off");
        assert_eq!(s.steps, None);
        assert!(Field::Threshold.set(&mut s, "0.9").is_ok());
        assert_eq!(Field::Threshold.value(&s), "0.9");
        assert_eq!(Field::Factor.value(&s), "off");
    }

    /// Right on "auto" steps moves up from the steps in effect, Left down from them.
    #[test]
    fn steps_move_from_the_value_in_effect() {
        let mut s = Settings::default();
        assert_eq!(s.steps, None);
        Field::Steps.adjust_from(&mut s, true, 64).unwrap();
        assert_eq!(s.steps, Some(65));
        s.steps = None;
        Field::Steps.adjust_from(&mut s, false, 64).unwrap();
        assert_eq!(s.steps, Some(63));
        s.steps = Some(1);
        Field::Steps.adjust_from(&mut s, false, 64).unwrap();
        assert_eq!(s.steps, Some(1));
    }

    #[test]
    fn arrows_adjust_within_bounds() {
        let mut s = Settings::default();
        s.params.temperature = 0.0;
        Field::Temperature.adjust(&mut s, false).unwrap();
        assert_eq!(s.params.temperature, 0.0);
        Field::Temperature.adjust(&mut s, true).unwrap();
        assert_eq!(s.params.temperature, 0.1);
        s.params.strategy = Strategy::LowConfidence;
        Field::Strategy.adjust(&mut s, true).unwrap();
        assert_eq!(s.params.strategy, Strategy::Random);
        for _ in 0..5 {
            Field::Compare.adjust(&mut s, true).unwrap();
        }
        assert_eq!(s.compare.len(), 4);
        Field::TopP.adjust(&mut s, false).unwrap();
        assert_eq!(s.params.top_p, Some(0.95));
    }
}

#[cfg(test)]
mod block_field_tests {
    use super::*;

    /// The block-diffusion flags are parameters and lane settings too: `--steps-per-block` is
    /// "block steps", `--sub-block-length` "sub-block"; auto (off) leaves them to the model.
    #[test]
    fn block_steps_and_sub_blocks_are_settable() {
        let mut s = Settings::default();
        assert_eq!(Field::BlockSteps.value(&s), "auto");
        Field::BlockSteps.set(&mut s, "4").unwrap();
        Field::SubBlock.set(&mut s, "8").unwrap();
        assert_eq!(s.params.steps_per_block, Some(4));
        assert_eq!(s.params.sub_block_length, Some(8));
        Field::BlockSteps.adjust(&mut s, true).unwrap();
        assert_eq!(Field::BlockSteps.value(&s), "5");
        Field::SubBlock.set(&mut s, "0").unwrap();
        assert_eq!(s.params.sub_block_length, None);
        assert!(Field::BlockSteps.set(&mut s, "x").is_err());
        let lane =
            LaneSpec::try_from("left-to-right:block-length=8:block-steps=2".to_string()).unwrap();
        let applied = lane.apply(&Settings::default()).unwrap();
        assert_eq!(applied.params.block_length, 8);
        assert_eq!(applied.params.steps_per_block, Some(2));
    }
}
