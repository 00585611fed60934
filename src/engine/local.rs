//! The local backend: a lane that runs the sampler over the worker's own model.

use std::time::{Duration, Instant};

use anyhow::Result;

use super::{LaneBackend, LaneSummary, Progress, StepEvent};
use crate::model::{Denoiser, KvCache};
use crate::sampler::{ModelTraits, Sampler, SamplerParams};

/// A lane denoised here: its sampler, its key/value cache and its running totals.
pub struct LocalLane {
    sampler: Sampler,
    cache: KvCache,
    elapsed: Duration,
    score_sum: f64,
    committed: usize,
    initial_masks: usize,
}

impl LocalLane {
    pub fn new(canvas: Vec<u32>, params: SamplerParams, traits: ModelTraits) -> Result<Self> {
        let sampler = Sampler::new(canvas, params, traits)?;
        Ok(Self {
            initial_masks: sampler.masked(),
            sampler,
            cache: KvCache::default(),
            elapsed: Duration::ZERO,
            score_sum: 0.0,
            committed: 0,
        })
    }

    /// Keeps what each step scored in its events (see [`Job::inspect`](super::Job::inspect)).
    pub fn inspect(&mut self, on: bool) {
        self.sampler.inspect(on);
    }

    /// See [`StepEvent::speedup`].
    fn speedup(&self) -> f64 {
        let work = self.sampler.nfe() as f64 * (1.0 - self.cache.saved());
        if work == 0.0 || self.initial_masks == 0 {
            return 1.0;
        }
        // Plain decoding spends min(steps, masks) full passes (a step that commits nothing is
        // skipped).
        let plain_passes = self.sampler.params().steps.min(self.initial_masks) as f64;
        (self.committed as f64 / work) / (self.initial_masks as f64 / plain_passes)
    }
}

impl LaneBackend for LocalLane {
    fn advance(&mut self, lane: usize, model: &mut dyn Denoiser) -> Result<Progress> {
        let step_start = Instant::now();
        let cache = &mut self.cache;
        let report = self.sampler.step(|request| model.denoise(request, cache))?;
        self.elapsed += step_start.elapsed();
        Ok(match report {
            Some(report) => {
                self.score_sum += report.committed.iter().map(|c| c.score).sum::<f64>();
                self.committed += report.committed.len();
                Progress::Step(StepEvent {
                    lane,
                    step: report.step,
                    steps: report.steps,
                    canvas: self.sampler.tokens().to_vec(),
                    committed: report.committed,
                    masked: report.masked,
                    nfe: report.nfe,
                    elapsed: self.elapsed,
                    speedup: self.speedup(),
                    window: report.window,
                    scored: report.scored,
                    remasked: report.remasked,
                })
            }
            None => Progress::Done(LaneSummary {
                lane,
                canvas: self.sampler.tokens().to_vec(),
                steps: self.sampler.planned_steps(),
                nfe: self.sampler.nfe(),
                elapsed: self.elapsed,
                mean_score: if self.committed == 0 {
                    0.0
                } else {
                    self.score_sum / self.committed as f64
                },
                speedup: self.speedup(),
                completion_tokens: None,
            }),
        })
    }
}
