//! The local backend: a lane that runs the sampler over the worker's own model: the
//! whole-canvas [`Sampler`], or for block-diffusion models the [`BlockSampler`] against its cache
//! of finished blocks.

use std::time::{Duration, Instant};

use anyhow::Result;

use super::{LaneBackend, LaneSummary, Progress, StepEvent};
use crate::model::{BlockCache, Denoiser, KvCache};
use crate::sampler::blocks::{BlockParams, BlockSampler};
use crate::sampler::{ModelTraits, Sampler, SamplerParams, StepReport};

/// The decode loop of a lane: the model family's contract (DESIGN.md section 5).
enum Decoder {
    /// Every step denoises the whole canvas (LLaDA, Dream, A2D, ModernBERT), with Fast-dLLM's
    /// approximate cache when asked.
    Canvas(Box<Sampler>, KvCache),
    /// Block by block against an exact cache of finished blocks (SDAR).
    Blocks(Box<BlockSampler>, BlockCache),
}

impl Decoder {
    fn tokens(&self) -> &[u32] {
        match self {
            Decoder::Canvas(s, _) => s.tokens(),
            Decoder::Blocks(s, _) => s.tokens(),
        }
    }

    fn nfe(&self) -> usize {
        match self {
            Decoder::Canvas(s, _) => s.nfe(),
            Decoder::Blocks(s, _) => s.nfe(),
        }
    }

    fn masked(&self) -> usize {
        match self {
            Decoder::Canvas(s, _) => s.masked(),
            Decoder::Blocks(s, _) => s.masked(),
        }
    }

    fn planned_steps(&self) -> usize {
        match self {
            Decoder::Canvas(s, _) => s.planned_steps(),
            Decoder::Blocks(s, _) => s.planned_steps(),
        }
    }

    /// Share of forward FLOPs a cache saved (the block cache is the loop itself: none counted).
    fn saved(&self) -> f64 {
        match self {
            Decoder::Canvas(_, cache) => cache.saved(),
            Decoder::Blocks(..) => 0.0,
        }
    }

    fn step(&mut self, model: &mut dyn Denoiser) -> Result<Option<StepReport>> {
        match self {
            Decoder::Canvas(s, cache) => s.step(|request| model.denoise(request, cache)),
            Decoder::Blocks(s, cache) => s.step(|request| model.block_forward(request, cache)),
        }
    }
}

/// A lane denoised here: its decode loop and its running totals.
pub struct LocalLane {
    decoder: Decoder,
    /// What plain decoding of the canvas would cost: one pass per step, `steps` of them.
    plain_steps: usize,
    elapsed: Duration,
    score_sum: f64,
    committed: usize,
    initial_masks: usize,
}

impl LocalLane {
    pub fn new(canvas: Vec<u32>, params: SamplerParams, traits: ModelTraits) -> Result<Self> {
        let plain_steps = params.steps;
        let decoder = match traits.blocks {
            Some(_) => {
                let block = BlockParams::from_sampler(&params, &traits, &canvas)?;
                Decoder::Blocks(
                    Box::new(BlockSampler::new(canvas, block, traits.mask_id)?),
                    BlockCache::default(),
                )
            }
            None => Decoder::Canvas(
                Box::new(Sampler::new(canvas, params, traits)?),
                KvCache::default(),
            ),
        };
        Ok(Self {
            initial_masks: decoder.masked(),
            decoder,
            plain_steps,
            elapsed: Duration::ZERO,
            score_sum: 0.0,
            committed: 0,
        })
    }

    /// Keeps what each step scored in its events (see [`Job::inspect`](super::Job::inspect)).
    pub fn inspect(&mut self, on: bool) {
        match &mut self.decoder {
            Decoder::Canvas(s, _) => s.inspect(on),
            Decoder::Blocks(s, _) => s.inspect(on),
        }
    }

    /// See [`StepEvent::speedup`].
    fn speedup(&self) -> f64 {
        let work = self.decoder.nfe() as f64 * (1.0 - self.decoder.saved());
        if work == 0.0 || self.initial_masks == 0 {
            return 1.0;
        }
        // Plain decoding spends min(steps, masks) full passes (a step that commits nothing is
        // skipped).
        let plain_passes = self.plain_steps.min(self.initial_masks) as f64;
        (self.committed as f64 / work) / (self.initial_masks as f64 / plain_passes)
    }
}

impl LaneBackend for LocalLane {
    fn advance(&mut self, lane: usize, model: &mut dyn Denoiser) -> Result<Progress> {
        let step_start = Instant::now();
        let report = self.decoder.step(model)?;
        self.elapsed += step_start.elapsed();
        Ok(match report {
            Some(report) => {
                self.score_sum += report.committed.iter().map(|c| c.score).sum::<f64>();
                self.committed += report.committed.len();
                Progress::Step(StepEvent {
                    lane,
                    step: report.step,
                    steps: report.steps,
                    canvas: self.decoder.tokens().to_vec(),
                    committed: report.committed,
                    masked: report.masked,
                    nfe: report.nfe,
                    elapsed: self.elapsed,
                    speedup: self.speedup(),
                    window: report.window,
                    scored: report.scored,
                    remasked: report.remasked,
                    blocks: report.blocks,
                })
            }
            None => Progress::Done(LaneSummary {
                lane,
                canvas: self.decoder.tokens().to_vec(),
                steps: self.decoder.planned_steps(),
                nfe: self.decoder.nfe(),
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
