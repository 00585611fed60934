//! ReMDM remasking (Wang et al., 2025, "Remasking Discrete Diffusion Models with Inference-Time
//! Scaling"; reference code: `kuleshov-group/remdm`, `Diffusion._ddpm_caching_update`).
//!
//! Unlike the count-based strategies, ReMDM draws every position's fate from a categorical: a
//! masked position is unmasked to a token drawn from the model's distribution `p` with
//! probability `unmask`, and a committed position is masked again with probability `sigma`, so
//! the model can revise a token it committed too early. A step with time `t`, the next time
//! `s = t - dt` and `alpha = 1 - t` (the linear schedule the reference uses) builds, unnormalised:
//!
//! - committed position holding `x`: keep `1 - sigma`, mask `sigma`;
//! - masked position: each token `v` weighs `p_v (alpha_s - (1 - sigma) alpha_t) / (1 - alpha_t)`,
//!   staying masked `(1 - alpha_s - sigma alpha_t) / (1 - alpha_t)`.
//!
//! `sigma` is what the schedules define: **cap** `min(eta, (1 - alpha_s) / alpha_t)`, **rescale**
//! `eta min(1, (1 - alpha_s) / alpha_t)`, and **loop**: MDLM (no remasking) while `t > t_on`, with
//! alpha rising from 0 to `alpha_on`; then alpha held at `alpha_on` with `sigma = eta` (tokens
//! are remasked and refilled at the same rate); then MDLM again below `t_off`. With `eta = 0`,
//! cap and rescale are MDLM's ancestral sampler. After the last step one greedy pass fills any
//! mask left (the reference's "noise removal").
//!
//! Here each semi-autoregressive block runs this over its own steps (a block as long as the
//! canvas is the reference's setting); only generated positions of the block are ever remasked,
//! never the prompt or infill context. Times are float32 as in the reference, so the phase
//! boundaries fall on the same steps.

use anyhow::{bail, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::proposal::{argmax, argmax_except};
use super::schedule::linspace_f32;
use super::{top_probabilities, Commit, ForwardRequest, Logits, Sampler, Scored, StepReport};

/// The reference's final time: steps run over `linspace(1, EPS, steps + 1)`.
pub const EPS: f64 = 1e-5;

/// ReMDM's remasking schedules; `off` keeps the count-based strategies.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Remdm {
    /// No remasking: the strategy and schedule commit tokens for good.
    #[default]
    Off,
    /// sigma = min(eta, (1 - alpha_s) / alpha_t).
    Cap,
    /// sigma = eta * min(1, (1 - alpha_s) / alpha_t).
    Rescale,
    /// MDLM to alpha_on by t_on, remask and refill at rate eta until t_off, then MDLM.
    Loop,
}

impl Remdm {
    pub const ALL: [Remdm; 4] = [Remdm::Off, Remdm::Cap, Remdm::Rescale, Remdm::Loop];

    pub fn name(self) -> &'static str {
        match self {
            Remdm::Off => "off",
            Remdm::Cap => "cap",
            Remdm::Rescale => "rescale",
            Remdm::Loop => "loop",
        }
    }
}

/// ReMDM's knobs (the schedule, eta, and the loop's window).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RemdmParams {
    pub schedule: Remdm,
    pub eta: f64,
    pub t_on: f64,
    pub t_off: f64,
    pub alpha_on: f64,
}

impl RemdmParams {
    pub fn validate(&self) -> Result<()> {
        if !(self.eta.is_finite() && (0.0..=1.0).contains(&self.eta)) {
            bail!("eta must be in [0, 1], got {}", self.eta);
        }
        if self.schedule == Remdm::Loop {
            if !(self.t_on > 0.0 && self.t_on < 1.0) {
                bail!("t on must be in (0, 1), got {}", self.t_on);
            }
            if !(self.t_off >= 0.0 && self.t_off < self.t_on) {
                bail!(
                    "t off must be in [0, t on) = [0, {}), got {}",
                    self.t_on,
                    self.t_off
                );
            }
            if !(self.alpha_on > 0.0 && self.alpha_on < 1.0) {
                bail!("alpha on must be in (0, 1), got {}", self.alpha_on);
            }
            let most = (1.0 - self.alpha_on) / self.alpha_on;
            if self.eta > most {
                bail!(
                    "eta {} is too large for the loop with alpha on {}: at most (1 - alpha on) / \
                     alpha on = {most:.4}, or masks could not be refilled as fast as they are made",
                    self.eta,
                    self.alpha_on
                );
            }
        }
        Ok(())
    }

    /// The weights of step `step` (0-based) of `steps`, as the reference builds them.
    pub fn odds(&self, step: usize, steps: usize) -> Odds {
        let t = linspace_f32(1.0, EPS as f32, steps + 1, step);
        let dt = (1.0 - EPS) / steps as f64;
        // The reference's tensor arithmetic is float32 (a Python scalar joins a float tensor as
        // a float); its `.item()` values are exact float32s read as doubles.
        let dt32 = dt as f32;
        let with_sigma = |alpha_t: f64, alpha_s: f64, sigma: f64| Odds {
            unmask: (alpha_s - (1.0 - sigma) * alpha_t) / (1.0 - alpha_t),
            stay: (1.0 - alpha_s - sigma * alpha_t) / (1.0 - alpha_t),
            keep: 1.0 - sigma,
            remask: sigma,
        };
        let mdlm = |move_t: f32, move_s: f32| Odds {
            unmask: (move_t - move_s) as f64,
            stay: move_s as f64,
            keep: 1.0,
            remask: 0.0,
        };
        let alphas = || {
            let move_s = t - dt32;
            ((1.0 - t) as f64, (1.0 - move_s) as f64)
        };
        match self.schedule {
            Remdm::Off => mdlm(t, t - dt32),
            Remdm::Cap => {
                let (alpha_t, alpha_s) = alphas();
                let sigma = if alpha_t > 0.0 {
                    self.eta.min((1.0 - alpha_s) / alpha_t)
                } else {
                    self.eta
                };
                with_sigma(alpha_t, alpha_s, sigma)
            }
            Remdm::Rescale => {
                let (alpha_t, alpha_s) = alphas();
                let most = if alpha_t > 0.0 {
                    1f64.min((1.0 - alpha_s) / alpha_t)
                } else {
                    1.0
                };
                with_sigma(alpha_t, alpha_s, self.eta * most)
            }
            Remdm::Loop => {
                let time = t as f64;
                let alpha_on = self.alpha_on as f32;
                if time > self.t_on {
                    let rate = |x: f32| x * alpha_on / (1.0 - self.t_on) as f32;
                    mdlm(1.0 - rate(1.0 - t), 1.0 - rate(1.0 - t + dt32))
                } else if time <= self.t_off {
                    let rate = |x: f32| x * (1.0 - self.alpha_on) as f32 / self.t_off as f32;
                    mdlm(rate(t), rate(t - dt32))
                } else {
                    let (a, sigma) = (self.alpha_on, self.eta);
                    Odds {
                        unmask: (a - (1.0 - sigma) * a) / (1.0 - a),
                        stay: (1.0 - a - a * sigma) / (1.0 - a),
                        keep: 1.0 - sigma,
                        remask: sigma,
                    }
                }
            }
        }
    }
}

/// One step's unnormalised weights: a masked position unmasks to token `v` with weight
/// `unmask * p_v` and stays masked with weight `stay`; a committed one is kept with weight `keep`
/// and masked again with weight `remask`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Odds {
    pub unmask: f64,
    pub stay: f64,
    pub keep: f64,
    pub remask: f64,
}

/// Where a step's uniforms come from: one in [0, 1) per (position, token) the step draws for.
pub trait Uniforms: Sync {
    /// A uniform for each of `ids` at canvas position `pos`.
    fn draw(&self, pos: usize, ids: &[u32]) -> Vec<f64>;
}

/// The run's own randomness: a base seed per step, stream `pos` for position `pos` (so the
/// positions can be drawn in parallel and a seed gives the same run on any thread count).
struct Seeded(u64);

impl Uniforms for Seeded {
    fn draw(&self, pos: usize, ids: &[u32]) -> Vec<f64> {
        let mut rng = ChaCha8Rng::seed_from_u64(self.0);
        rng.set_stream(pos as u64);
        ids.iter().map(|_| rng.random()).collect()
    }
}

/// Uniforms recorded elsewhere, laid out `[position][token]` for one step.
struct Recorded<'a>(&'a [Vec<f64>]);

impl Uniforms for Recorded<'_> {
    fn draw(&self, pos: usize, ids: &[u32]) -> Vec<f64> {
        ids.iter().map(|&id| self.0[pos][id as usize]).collect()
    }
}

/// The reference's categorical draw, an exponential race: the id maximising
/// `w / (1e-10 - ln(u + 1e-10))` (the first on ties). `weights` are (id, weight) by ascending id;
/// zero weights never win and need no uniform.
pub fn race(weights: &[(u32, f64)], uniforms: &[f64]) -> u32 {
    let mut best = (weights.first().map_or(0, |w| w.0), f64::NEG_INFINITY);
    for (&(id, w), &u) in weights.iter().zip(uniforms) {
        let v = w / (1e-10 - (u + 1e-10).ln());
        if v > best.1 {
            best = (id, v);
        }
    }
    best.0
}

/// The model's distribution at a masked position as ReMDM samples from it, sparse by ascending
/// id: softmax(logits / T) without the mask token (argmax when T = 0), then top-k, then the
/// reference's nucleus rule (keep tokens whose cumulative probability, largest first, is at most
/// `p`, and always the largest; then renormalise; this keeps fewer than the usual
/// smallest-set-reaching-p rule).
pub fn probabilities(
    row: &[f32],
    mask_id: u32,
    temperature: f64,
    top_k: Option<usize>,
    top_p: Option<f64>,
) -> Vec<(u32, f64)> {
    let allowed = |i: usize| i != mask_id as usize && row[i] > f32::NEG_INFINITY;
    if temperature <= 0.0 {
        let best = argmax_except(row, mask_id as usize);
        return if best < row.len() && allowed(best) {
            vec![(best as u32, 1.0)]
        } else {
            Vec::new()
        };
    }
    let max = (0..row.len())
        .filter(|&i| allowed(i))
        .map(|i| row[i] as f64 / temperature)
        .fold(f64::NEG_INFINITY, f64::max);
    let mut p: Vec<(u32, f64)> = (0..row.len())
        .filter(|&i| allowed(i))
        .map(|i| (i as u32, (row[i] as f64 / temperature - max).exp()))
        .collect();
    let sum: f64 = p.iter().map(|e| e.1).sum();
    p.iter_mut().for_each(|e| e.1 /= sum);
    if top_k.is_some() || top_p.is_some_and(|p| p < 1.0) {
        let mut order: Vec<usize> = (0..p.len()).collect();
        order.sort_by(|&a, &b| p[b].1.total_cmp(&p[a].1).then(a.cmp(&b)));
        let mut keep = order.len().min(top_k.unwrap_or(usize::MAX)).max(1);
        if let Some(limit) = top_p.filter(|&v| v < 1.0) {
            let mut cumulative = 0.0;
            let within = order[..keep]
                .iter()
                .take_while(|&&i| {
                    cumulative += p[i].1;
                    cumulative <= limit
                })
                .count();
            keep = within.max(1);
        }
        let mut kept: Vec<(u32, f64)> = order[..keep].iter().map(|&i| p[i]).collect();
        let total: f64 = kept.iter().map(|e| e.1).sum();
        kept.iter_mut().for_each(|e| e.1 /= total);
        kept.sort_by_key(|e| e.0);
        p = kept;
    }
    p.retain(|e| e.1 > 0.0);
    p
}

/// What one masked position became in a step.
struct Outcome {
    pos: usize,
    /// The token it was unmasked to, if any.
    commit: Option<(u32, f64)>,
    /// The most likely token and its probability (the ghost of a position left masked).
    best: (u32, f64),
    top: Vec<(u32, f32)>,
    broken: bool,
}

impl Sampler {
    /// This run's ReMDM parameters.
    pub(super) fn remdm(&self) -> RemdmParams {
        RemdmParams {
            schedule: self.params.remdm,
            eta: self.params.eta,
            t_on: self.params.t_on,
            t_off: self.params.t_off,
            alpha_on: self.params.alpha_on,
        }
    }

    /// One ReMDM step over the current block: every masked position may unmask, every generated
    /// position may be masked again; after the block's steps, a greedy pass fills what is left.
    pub(super) fn remdm_step<F>(&mut self, mut forward: F) -> Result<StepReport>
    where
        F: FnMut(&ForwardRequest) -> Result<Vec<Logits>>,
    {
        use rayon::prelude::*;
        let block = self.current_block();
        let mask = self.traits.mask_id;
        let finishing = self.step_in_block >= block.steps;
        let remdm = self.remdm();
        let odds = remdm.odds(self.step_in_block, block.steps);
        let masked: Vec<usize> = (block.start..block.end)
            .filter(|&p| self.tokens[p] == mask)
            .collect();
        let generated: Vec<usize> = (block.start..block.end)
            .filter(|&p| self.tokens[p] != mask && !self.context[p])
            .collect();
        // The model is asked only when the canvas changed since its last answer (the
        // reference's cache) and something is masked.
        if !masked.is_empty() && self.remdm_cache.as_ref().is_none_or(|c| c.0 != self.tokens) {
            let logits = self.forward_block(block, &mut forward)?;
            self.remdm_cache = Some((self.tokens.clone(), logits));
        }
        // One base seed per step, drawn whether or not it is used, so a run's randomness does
        // not depend on which steps needed the model.
        let base: u64 = self.rng.random();
        let recorded = self.recorded_uniforms.as_ref().map(|r| {
            r.get(self.steps_done)
                .map(Vec::as_slice)
                .unwrap_or_default()
        });
        let uniforms: Box<dyn Uniforms> = match recorded {
            Some(r) => Box::new(Recorded(r)),
            None => Box::new(Seeded(base)),
        };
        let this = &*self;
        let inspect = self.inspect;
        let params = &self.params;
        let outcomes: Vec<Outcome> = match &self.remdm_cache {
            Some((_, logits)) if !masked.is_empty() => masked
                .par_iter()
                .map(|&pos| {
                    let mut row = this.row(logits, pos);
                    if params.suppress_eos {
                        for &eos in &this.traits.eos_ids {
                            if let Some(l) = row.get_mut(eos as usize) {
                                *l = f32::NEG_INFINITY;
                            }
                        }
                    }
                    let broken = row.iter().any(|v| v.is_nan());
                    let top = if inspect {
                        top_probabilities(&row, super::TOP_CANDIDATES)
                    } else {
                        Vec::new()
                    };
                    // The last pass is greedy on the model's own distribution.
                    let p = if finishing {
                        probabilities(&row, mask, 1.0, None, None)
                    } else {
                        probabilities(&row, mask, params.temperature, params.top_k, params.top_p)
                    };
                    let best = p
                        .iter()
                        .copied()
                        .max_by(|a, b| a.1.total_cmp(&b.1).then(b.0.cmp(&a.0)))
                        .unwrap_or((argmax(&row) as u32, 0.0));
                    let commit = if finishing {
                        Some(best)
                    } else {
                        let mut weights: Vec<(u32, f64)> =
                            p.iter().map(|&(id, q)| (id, q * odds.unmask)).collect();
                        let at = weights.partition_point(|w| w.0 < mask);
                        weights.insert(at, (mask, odds.stay));
                        weights.retain(|w| w.1 > 0.0);
                        let ids: Vec<u32> = weights.iter().map(|w| w.0).collect();
                        let id = race(&weights, &uniforms.draw(pos, &ids));
                        (id != mask).then(|| {
                            let q = p.iter().find(|e| e.0 == id).map_or(0.0, |e| e.1);
                            (id, q)
                        })
                    };
                    Outcome {
                        pos,
                        commit,
                        best,
                        top,
                        broken,
                    }
                })
                .collect(),
            _ => Vec::new(),
        };
        if let Some(bad) = outcomes.iter().find(|o| o.broken) {
            bail!(
                "the model produced non-finite logits (NaN) at position {}: its weights or \
                 config.json are broken (e.g. NaN weights, rms_norm_eps <= 0, rope_theta 0)",
                bad.pos
            );
        }
        let remasked: Vec<usize> = if finishing || odds.remask <= 0.0 {
            Vec::new()
        } else {
            generated
                .par_iter()
                .filter(|&&pos| {
                    let current = self.tokens[pos];
                    let mut weights = [(current, odds.keep), (mask, odds.remask)];
                    weights.sort_by_key(|w| w.0);
                    let ids = [weights[0].0, weights[1].0];
                    race(&weights, &uniforms.draw(pos, &ids)) == mask
                })
                .copied()
                .collect()
        };
        drop(uniforms);
        let mut scored = Vec::new();
        let mut committed = Vec::new();
        for o in outcomes {
            if let Some((id, q)) = o.commit {
                committed.push(Commit {
                    pos: o.pos,
                    id,
                    score: q,
                });
            }
            if inspect {
                let (id, score) = o.commit.unwrap_or(o.best);
                scored.push(Scored {
                    pos: o.pos,
                    id,
                    score,
                    top: o.top,
                });
            }
        }
        for c in &committed {
            self.tokens[c.pos] = c.id;
        }
        for &pos in &remasked {
            self.tokens[pos] = mask;
        }
        if self.params.stop_at_eos {
            committed.extend(self.fill_after_eos());
        }
        Ok(self.finish_step(committed, remasked, block.start..block.end, scored))
    }

    /// Steps left in the current block and the later ones, counting the greedy pass that ends
    /// a block with masks left (an upper bound).
    pub(super) fn remdm_steps_left(&self) -> usize {
        let current = self.blocks.get(self.block).map_or(0, |b| {
            b.steps.saturating_sub(self.step_in_block) + usize::from(self.masks_in_block() > 0)
        });
        let later: usize = self.blocks[(self.block + 1).min(self.blocks.len())..]
            .iter()
            .filter(|b| b.steps > 0)
            .map(|b| b.steps + 1)
            .sum();
        current + later
    }

    /// Whether the current ReMDM block is over: its steps are spent and nothing is masked, or
    /// nothing is masked and nothing can be remasked.
    pub(super) fn remdm_block_finished(&self, steps: usize) -> bool {
        let masks = self.masks_in_block();
        masks == 0 && (self.step_in_block >= steps || self.params.eta <= 0.0)
    }
}
