//! The denoising sampler: pure Rust over token ids and logits, deterministic for a seed.
//!
//! Every published sampler is a combination of independent choices (DESIGN.md section 2): a token
//! [`Proposal`], a confidence [`Strategy`], a commit-count rule ([`Schedule`], or a dynamic
//! [`Parallel`] rule), semi-autoregressive [`window`] blocks, a position choice (top-k or sampled
//! with `alg_temp`), classifier-free guidance and a logit shift.

pub mod blocks;
pub mod proposal;
pub mod remdm;
pub mod schedule;
pub mod strategy;
pub mod window;

use std::ops::Range;

use anyhow::{bail, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

pub use proposal::Proposal;
pub use remdm::Remdm;
pub use schedule::Schedule;
pub use strategy::Strategy;
use strategy::{score, Distribution};
use window::{plan_blocks, Block};

/// Logits for a run of canvas positions: one row of `width` values per position, starting at
/// `offset` (0 for a whole canvas; a cached forward pass returns only the rows it recomputed).
#[derive(Debug, Clone, PartialEq)]
pub struct Logits {
    data: Vec<f32>,
    width: usize,
    offset: usize,
}

impl Logits {
    /// Rows for positions `0..data.len() / width`.
    pub fn new(data: Vec<f32>, width: usize) -> Self {
        Self::at(data, width, 0)
    }

    /// Rows for positions `offset..offset + data.len() / width`.
    pub fn at(data: Vec<f32>, width: usize, offset: usize) -> Self {
        assert!(
            width > 0 && data.len().is_multiple_of(width),
            "ragged logits"
        );
        Self {
            data,
            width,
            offset,
        }
    }

    /// The row that belongs to canvas `position`.
    pub fn row(&self, position: usize) -> &[f32] {
        let i = position - self.offset;
        &self.data[i * self.width..(i + 1) * self.width]
    }

    /// Number of rows.
    pub fn positions(&self) -> usize {
        self.data.len() / self.width
    }

    pub fn width(&self) -> usize {
        self.width
    }

    /// The canvas positions these rows belong to.
    pub fn span(&self) -> Range<usize> {
        self.offset..self.offset + self.positions()
    }

    /// The same rows, for the canvas positions from `offset` (a model that counts positions
    /// its own way, e.g. without a block-diffusion canvas's invisible pads).
    pub fn moved_to(self, offset: usize) -> Self {
        Self { offset, ..self }
    }

    /// These rows followed by `next`'s (which must start where these end).
    pub fn extended(mut self, next: Logits) -> Self {
        assert_eq!(next.width, self.width, "logits widths differ");
        self.data.extend(next.data);
        self
    }
}

/// Fast-dLLM's key/value caching for block decoding. The first forward pass of every block runs
/// over the whole canvas and records each layer's keys and values; the block's later steps only
/// recompute part of the canvas and read the rest from that record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum CacheMode {
    /// Every step recomputes the whole canvas (exact).
    #[default]
    None,
    /// Reuse everything before the current block; recompute the block and all that follows it.
    Prefix,
    /// Also reuse the (stale) suffix after the block: only the block itself is recomputed.
    Dual,
}

impl CacheMode {
    pub const ALL: [CacheMode; 3] = [CacheMode::None, CacheMode::Prefix, CacheMode::Dual];

    pub fn name(self) -> &'static str {
        match self {
            CacheMode::None => "none",
            CacheMode::Prefix => "prefix",
            CacheMode::Dual => "dual",
        }
    }
}

/// What the sampler asks of the model in one step.
#[derive(Debug, Clone, PartialEq)]
pub struct ForwardRequest {
    /// The canvas, and with CFG also the unconditional canvas (all the same length).
    pub canvases: Vec<Vec<u32>>,
    /// The block being denoised: a cache recorded for another block is stale.
    pub block: Range<usize>,
    /// The logits rows the sampler will read (already shifted for Dream-style models).
    pub rows: Range<usize>,
    pub cache: CacheMode,
}

/// Dynamic parallel decoding rules from Fast-dLLM; they replace the fixed schedule when set.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "rule", content = "value")]
pub enum Parallel {
    /// Commit the best position and every other one whose score is at least tau.
    Threshold(f64),
    /// Commit the n-th best position while its score is at least 1 - f / (n + 1) (n = 1 always).
    Factor(f64),
}

/// Every knob of a denoising run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SamplerParams {
    /// Total denoising steps over all blocks (a budget for fixed schedules).
    pub steps: usize,
    /// Semi-autoregressive block length.
    pub block_length: usize,
    pub temperature: f64,
    pub top_k: Option<usize>,
    pub top_p: Option<f64>,
    pub strategy: Strategy,
    pub schedule: Schedule,
    pub parallel: Option<Parallel>,
    /// Sample positions from softmax(score / alg_temp) instead of taking the top k (Dream).
    pub alg_temp: Option<f64>,
    /// Classifier-free guidance scale (0 = off).
    pub cfg_scale: f64,
    /// Key/value caching across the steps of a block (approximate unless `none`).
    pub cache: CacheMode,
    /// Instruct models: once a committed end-of-text token has only masks after it, fill them all
    /// with end-of-text and stop (the model would spend its remaining steps writing padding).
    pub stop_at_eos: bool,
    /// Never propose end-of-text: its logit is -inf before sampling (LLaDA's `logits_eos_inf`).
    pub suppress_eos: bool,
    /// Score positions from a softmax with the end-of-text and end-of-turn logits at -inf, so a
    /// position that proposes one of them scores 0 and is committed last (LLaDA's
    /// `confidence_eos_eot_inf` at temperature 0).
    pub defer_eos: bool,
    /// Dream's final timestep for the `timestep` schedule.
    pub eps: f64,
    pub seed: u64,
    /// ReMDM remasking ([`remdm`]): committed tokens may be masked again. When on, it decides
    /// how many positions each step commits, in place of the strategy and schedule.
    pub remdm: Remdm,
    /// ReMDM's eta: the remasking rate (cap, loop) or its share of the largest (rescale).
    pub eta: f64,
    /// ReMDM loop: the time the loop starts (alpha reaches `alpha_on`) and ends.
    pub t_on: f64,
    pub t_off: f64,
    /// ReMDM loop: the share of committed tokens held during the loop.
    pub alpha_on: f64,
    /// Block-diffusion models: denoising steps in each block (SDAR's `denoising_steps`); `None`
    /// shares `steps` among the blocks to decode.
    pub steps_per_block: Option<usize>,
    /// Fast-dLLM v2: its `small_block_size` (sub-blocks decoded in order); `None` is its 8.
    pub sub_block_length: Option<usize>,
}

impl Default for SamplerParams {
    /// LLaDA's `generate.py` defaults with a block length of 32.
    fn default() -> Self {
        Self {
            steps: 128,
            block_length: 32,
            temperature: 0.0,
            top_k: None,
            top_p: None,
            strategy: Strategy::LowConfidence,
            schedule: Schedule::Uniform,
            parallel: None,
            alg_temp: None,
            cfg_scale: 0.0,
            cache: CacheMode::None,
            stop_at_eos: false,
            suppress_eos: false,
            defer_eos: false,
            eps: 1e-3,
            seed: 0,
            remdm: Remdm::Off,
            // The reference's remdm-loop script (eta, t_on, t_off, alpha_on).
            eta: 0.02,
            t_on: 0.55,
            t_off: 0.05,
            alpha_on: 0.9,
            steps_per_block: None,
            sub_block_length: None,
        }
    }
}

impl SamplerParams {
    /// Checks every value, with a message that names the parameter.
    pub fn validate(&self) -> Result<()> {
        if self.steps == 0 {
            bail!("steps must be at least 1");
        }
        if self.block_length == 0 {
            bail!("block length must be at least 1");
        }
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            bail!(
                "temperature must be a number >= 0, got {}",
                self.temperature
            );
        }
        if self.top_k == Some(0) {
            bail!("top-k must be at least 1");
        }
        if let Some(p) = self.top_p {
            if !(p > 0.0 && p <= 1.0) {
                bail!("top-p must be in (0, 1], got {p}");
            }
        }
        match self.parallel {
            Some(Parallel::Threshold(t)) if !(t > 0.0 && t <= 1.0) && self.strategy.bounded() => {
                bail!("threshold must be in (0, 1], got {t}")
            }
            Some(Parallel::Threshold(t)) if !t.is_finite() => bail!("threshold must be finite"),
            Some(Parallel::Factor(f)) if !(f.is_finite() && f > 0.0) => {
                bail!("factor must be a number > 0, got {f}")
            }
            _ => {}
        }
        if let Some(t) = self.alg_temp {
            if !(t.is_finite() && t >= 0.0) {
                bail!("alg-temp must be a number >= 0, got {t}");
            }
        }
        if !(self.cfg_scale.is_finite() && self.cfg_scale >= 0.0) {
            bail!("cfg scale must be a number >= 0, got {}", self.cfg_scale);
        }
        if !(self.eps > 0.0 && self.eps < 1.0) {
            bail!("eps must be in (0, 1), got {}", self.eps);
        }
        if self.remdm != Remdm::Off {
            if self.parallel.is_some() {
                bail!(
                    "ReMDM draws how many tokens each step commits: turn threshold and factor \
                     off, or remdm off"
                );
            }
            if self.alg_temp.is_some() {
                bail!("ReMDM draws the positions it commits: turn alg temp off, or remdm off");
            }
        }
        remdm::RemdmParams {
            schedule: self.remdm,
            eta: self.eta,
            t_on: self.t_on,
            t_off: self.t_off,
            alpha_on: self.alpha_on,
        }
        .validate()
    }

    /// What decides the commits, for labels: the strategy, or the ReMDM schedule when on.
    pub fn method(&self) -> String {
        match self.remdm {
            Remdm::Off => self.strategy.name().to_string(),
            schedule => format!("remdm-{}", schedule.name()),
        }
    }

    /// LLaDA's Gumbel-max unless top-k/top-p ask for Dream-style filtered sampling.
    pub fn proposal(&self) -> Proposal {
        if self.top_k.is_some() || self.top_p.is_some() {
            Proposal::Categorical {
                temperature: self.temperature,
                top_k: self.top_k,
                top_p: self.top_p,
            }
        } else if self.temperature > 0.0 {
            Proposal::Gumbel {
                temperature: self.temperature,
            }
        } else {
            Proposal::Argmax
        }
    }
}

impl Strategy {
    /// Whether scores live in [0, 1] (so a probability threshold makes sense).
    fn bounded(self) -> bool {
        matches!(
            self,
            Strategy::LowConfidence | Strategy::Random | Strategy::Margin
        )
    }
}

/// What the model needs to tell the sampler.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelTraits {
    pub mask_id: u32,
    pub shift_logits: bool,
    /// Block-diffusion models: how they decode ([`blocks::BlockSampler`]); `None` for models
    /// that denoise the whole canvas.
    pub blocks: Option<blocks::BlockDecoding>,
    /// End-of-text ids (what `stop_at_eos` looks for and `suppress_eos` forbids).
    pub eos_ids: Vec<u32>,
    /// End-of-turn ids of chat templates (deferred by `defer_eos` along with end-of-text).
    pub eot_ids: Vec<u32>,
}

/// One token committed in a step.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Commit {
    pub pos: usize,
    pub id: u32,
    pub score: f64,
}

/// How many candidates the inspector keeps per scored position.
pub const TOP_CANDIDATES: usize = 5;

/// What the sampler saw at one masked position in one step (kept only when inspecting): the
/// token it proposed and that token's score, and the model's most likely tokens there with
/// their probabilities (softmax of the logits after guidance and end-of-text suppression, before
/// temperature), most likely first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scored {
    pub pos: usize,
    pub id: u32,
    pub score: f64,
    pub top: Vec<(u32, f32)>,
}

/// The result of one denoising step.
#[derive(Debug, Clone, PartialEq)]
pub struct StepReport {
    /// 1-based index of this step.
    pub step: usize,
    /// Planned number of steps (for dynamic rules: an upper bound that tightens as the run goes).
    pub steps: usize,
    pub committed: Vec<Commit>,
    /// Positions still masked after this step.
    pub masked: usize,
    /// Model forward calls so far.
    pub nfe: usize,
    /// The semi-autoregressive window of this step: the block whose masks it could commit
    /// (masks before it that a schedule left behind are eligible too).
    pub window: Range<usize>,
    /// Every masked position the step scored, committed or not, when inspecting
    /// ([`Sampler::inspect`]); empty otherwise.
    pub scored: Vec<Scored>,
    /// Committed positions this step masked again (ReMDM); they hold the mask afterwards.
    pub remasked: Vec<usize>,
    /// Positions the step picked whose best guess was the mask token itself: as in the
    /// references, each used up one of the step's commits and stays masked.
    pub held: usize,
    /// Whether this is the step after the schedule that fills what such picks left masked.
    pub finishing: bool,
    /// Where a block-diffusion run stands after the step ([`blocks`]); `None` for a canvas
    /// decoded whole.
    pub blocks: Option<BlockState>,
}

/// Where a block-diffusion step stands in its canvas: what the live panel's block view draws.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockState {
    /// The canvas's blocks: the prompt's whole blocks, then the blocks decoded.
    pub blocks: Vec<Range<usize>>,
    /// The positions before this one hold keys and values in the cache after the step: exact,
    /// never computed again.
    pub cached: usize,
    /// The sub-block the step decoded (Fast-dLLM v2), inside the step's block.
    pub sub_block: Option<Range<usize>>,
    /// Positions the step filled autoregressively, from the last row of the pass before them
    /// (Fast-dLLM v2's bridge token into the next block), not by denoising.
    pub bridged: Vec<usize>,
}

/// A position's most likely tokens with their probabilities, most likely first.
type TopCandidates = Vec<(u32, f32)>;

/// A denoising run over one canvas.
pub struct Sampler {
    params: SamplerParams,
    traits: ModelTraits,
    proposal: Proposal,
    tokens: Vec<u32>,
    /// Positions that were not masked at the start: the prompt (and infill context). Masked in
    /// the unconditional CFG pass, as in LLaDA.
    context: Vec<bool>,
    blocks: Vec<Block>,
    block: usize,
    step_in_block: usize,
    block_initial_masks: usize,
    steps_done: usize,
    nfe: usize,
    rng: ChaCha8Rng,
    inspect: bool,
    /// ReMDM: the canvas the model last saw and its answer (reused while the canvas stands).
    remdm_cache: Option<(Vec<u32>, Vec<Logits>)>,
    /// ReMDM: uniforms to use instead of the seeded ones, `[step][position][token]`.
    recorded_uniforms: Option<Vec<Vec<Vec<f64>>>>,
}

impl Sampler {
    /// Starts a run. Every position of `tokens` equal to the mask id is denoised; the region from
    /// the first mask to the end is cut into blocks. For a prompt followed by `length` masks this
    /// is exactly LLaDA's generation region.
    pub fn new(tokens: Vec<u32>, params: SamplerParams, traits: ModelTraits) -> Result<Self> {
        params.validate()?;
        let Some(first_mask) = tokens.iter().position(|&t| t == traits.mask_id) else {
            bail!("nothing to denoise: the canvas has no masked positions");
        };
        let blocks = plan_blocks(
            first_mask,
            tokens.len(),
            params.block_length,
            params.steps,
            |p| tokens[p] == traits.mask_id,
        );
        let context = tokens.iter().map(|&t| t != traits.mask_id).collect();
        let mut sampler = Self {
            proposal: params.proposal(),
            rng: ChaCha8Rng::seed_from_u64(params.seed),
            params,
            traits,
            tokens,
            context,
            blocks,
            block: 0,
            step_in_block: 0,
            block_initial_masks: 0,
            steps_done: 0,
            nfe: 0,
            inspect: false,
            remdm_cache: None,
            recorded_uniforms: None,
        };
        sampler.block_initial_masks = sampler.masks_in_block();
        // Skip leading blocks that have nothing to denoise.
        sampler.advance_block();
        Ok(sampler)
    }

    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    /// Keeps what each step scored ([`StepReport::scored`]) for the token inspector and the
    /// ghost text. It changes no token: the extra work only reads the logits.
    pub fn inspect(&mut self, on: bool) {
        self.inspect = on;
    }

    /// Takes ReMDM's uniforms from a recording, one `[position][token]` table per step, instead
    /// of the seeded generator: how the golden tests replay the reference implementation's own
    /// random draws.
    pub fn replay_uniforms(&mut self, uniforms: Vec<Vec<Vec<f64>>>) {
        self.recorded_uniforms = Some(uniforms);
    }

    pub fn params(&self) -> &SamplerParams {
        &self.params
    }

    pub fn nfe(&self) -> usize {
        self.nfe
    }

    pub fn masked(&self) -> usize {
        self.tokens
            .iter()
            .filter(|&&t| t == self.traits.mask_id)
            .count()
    }

    /// Whether the run is over: every block's schedule spent and nothing masked.
    pub fn is_done(&self) -> bool {
        self.schedule_done() && self.masked() == 0
    }

    /// Whether every block's schedule is spent. Masks may remain where the model's best guess
    /// was the mask token itself (the references commit it, and the position stays masked);
    /// [`Self::finish_masks`] fills them.
    pub fn schedule_done(&self) -> bool {
        self.block >= self.blocks.len()
    }

    /// Planned total steps; for dynamic rules an upper bound (each step commits at least one).
    pub fn planned_steps(&self) -> usize {
        if self.is_done() {
            return self.steps_done;
        }
        if self.schedule_done() {
            // One finishing step is left (finish_masks).
            return self.steps_done + 1;
        }
        if self.params.remdm != Remdm::Off {
            return self.steps_done + self.remdm_steps_left();
        }
        match self.params.parallel {
            None => self.blocks.iter().map(|b| b.steps).sum(),
            Some(_) => self.steps_done + self.masked(),
        }
    }

    fn current_block(&self) -> Block {
        self.blocks[self.block]
    }

    fn masks_in_block(&self) -> usize {
        match self.blocks.get(self.block) {
            Some(b) => self.tokens[b.start..b.end]
                .iter()
                .filter(|&&t| t == self.traits.mask_id)
                .count(),
            None => 0,
        }
    }

    /// The canvases the model must see this step: the canvas itself, and with CFG also the
    /// unconditional canvas with every context position masked.
    pub fn model_inputs(&self) -> Vec<Vec<u32>> {
        let mut inputs = vec![self.tokens.clone()];
        if self.params.cfg_scale > 0.0 {
            let uncond = self
                .tokens
                .iter()
                .zip(&self.context)
                .map(|(&t, &ctx)| if ctx { self.traits.mask_id } else { t })
                .collect();
            inputs.push(uncond);
        }
        inputs
    }

    /// The forward pass this step needs: the canvases, and the rows the sampler will read (from
    /// the first masked position before the block's end, which is the block's start unless a
    /// schedule left masks behind, up to the block's end).
    fn request(&self, block: Block) -> ForwardRequest {
        let first = (0..block.end)
            .find(|&p| self.tokens[p] == self.traits.mask_id)
            .unwrap_or(block.start)
            .min(block.start);
        let source = |p: usize| self.source_row(p);
        ForwardRequest {
            canvases: self.model_inputs(),
            block: block.start..block.end,
            rows: source(first)..source(block.end - 1) + 1,
            cache: self.params.cache,
        }
    }

    /// The logits row that predicts `position` (the previous one for Dream-style models).
    fn source_row(&self, position: usize) -> usize {
        if self.traits.shift_logits {
            position.saturating_sub(1)
        } else {
            position
        }
    }

    /// Runs one step, calling `forward` (model inputs -> logits) unless the step commits nothing.
    /// Returns `None` once every block is finished.
    pub fn step<F>(&mut self, mut forward: F) -> Result<Option<StepReport>>
    where
        F: FnMut(&ForwardRequest) -> Result<Vec<Logits>>,
    {
        if self.is_done() {
            return Ok(None);
        }
        if self.schedule_done() {
            return self.finish_masks(forward).map(Some);
        }
        if self.params.remdm != Remdm::Off {
            return self.remdm_step(forward).map(Some);
        }
        let block = self.current_block();
        let remaining = self.masks_in_block();
        let fixed_count = match self.params.parallel {
            None => Some(self.params.schedule.count(
                self.step_in_block,
                block.steps,
                self.block_initial_masks,
                remaining,
                self.params.eps,
            )),
            Some(_) => None,
        };
        let mut scored = Vec::new();
        let mut held = 0;
        let committed = if fixed_count == Some(0) || remaining == 0 {
            Vec::new()
        } else {
            let logits = self.forward_block(block, &mut forward)?;
            // As LLaDA's generate.py and Dream's diffusion_generate: the proposal may be the
            // mask token itself; committing it uses up one of the step's transfers and leaves
            // the position masked, to be predicted again.
            let (candidates, tops) = self.score_candidates(&logits, block.end, None)?;
            let mut chosen = self.choose(candidates.clone(), fixed_count);
            if fixed_count.is_none() && chosen.iter().all(|c| c.id == self.traits.mask_id) {
                // A dynamic rule whose every pick is the mask would change nothing, and the
                // reference (Fast-dLLM's loop) would repeat the same step forever: this step
                // picks among real tokens instead.
                let (real, _) =
                    self.score_candidates(&logits, block.end, Some(self.traits.mask_id))?;
                chosen = self.choose(real, fixed_count);
            }
            if self.inspect {
                scored = self.scored(candidates, tops);
            }
            let picked = chosen.len();
            chosen.retain(|c| c.id != self.traits.mask_id);
            held = picked - chosen.len();
            for c in &chosen {
                self.tokens[c.pos] = c.id;
            }
            if self.params.stop_at_eos {
                chosen.extend(self.fill_after_eos());
            }
            chosen
        };
        let mut report = self.finish_step(committed, Vec::new(), block.start..block.end, scored);
        report.held = held;
        Ok(Some(report))
    }

    /// After the schedule's last step, the masks whose best guess stayed the mask token (the
    /// references end with them still masked): one more pass commits each to its most likely
    /// real token, so that no finished text holds a mask.
    fn finish_masks<F>(&mut self, mut forward: F) -> Result<StepReport>
    where
        F: FnMut(&ForwardRequest) -> Result<Vec<Logits>>,
    {
        let start = self
            .tokens
            .iter()
            .position(|&t| t == self.traits.mask_id)
            .unwrap_or(0);
        let block = Block {
            start,
            end: self.tokens.len(),
            steps: 1,
        };
        let logits = self.forward_block(block, &mut forward)?;
        let (candidates, tops) =
            self.score_candidates(&logits, block.end, Some(self.traits.mask_id))?;
        let scored = if self.inspect {
            self.scored(candidates.clone(), tops)
        } else {
            Vec::new()
        };
        for c in &candidates {
            self.tokens[c.pos] = c.id;
        }
        let mut report = self.finish_step(candidates, Vec::new(), block.start..block.end, scored);
        report.finishing = true;
        Ok(report)
    }

    /// What a step scored, for the inspector.
    fn scored(&self, candidates: Vec<Commit>, tops: Vec<TopCandidates>) -> Vec<Scored> {
        candidates
            .into_iter()
            .zip(tops)
            .map(|(c, top)| Scored {
                pos: c.pos,
                id: c.id,
                score: c.score,
                top,
            })
            .collect()
    }

    /// The model's logits for this step's request over `block`, checked to cover the rows the
    /// sampler reads (one forward pass counted).
    fn forward_block<F>(&mut self, block: Block, forward: &mut F) -> Result<Vec<Logits>>
    where
        F: FnMut(&ForwardRequest) -> Result<Vec<Logits>>,
    {
        let request = self.request(block);
        let logits = forward(&request)?;
        self.nfe += 1;
        if logits.len() != request.canvases.len()
            || logits
                .iter()
                .any(|l| l.span().start > request.rows.start || l.span().end < request.rows.end)
        {
            bail!("the model returned logits of the wrong shape");
        }
        Ok(logits)
    }

    /// Counts the step, moves on to the next block if this one is over, and reports.
    fn finish_step(
        &mut self,
        committed: Vec<Commit>,
        remasked: Vec<usize>,
        window: Range<usize>,
        scored: Vec<Scored>,
    ) -> StepReport {
        self.steps_done += 1;
        self.step_in_block += 1;
        self.advance_block();
        StepReport {
            step: self.steps_done,
            steps: self.planned_steps(),
            committed,
            masked: self.masked(),
            nfe: self.nfe,
            window,
            scored,
            remasked,
            held: 0,
            finishing: false,
            blocks: None,
        }
    }

    /// Steps until every block is finished.
    pub fn run_to_end<F>(&mut self, mut forward: F) -> Result<()>
    where
        F: FnMut(&ForwardRequest) -> Result<Vec<Logits>>,
    {
        while self.step(&mut forward)?.is_some() {}
        Ok(())
    }

    /// `stop_at_eos`: when the first remaining mask follows a generated end-of-text token and
    /// nothing after it but masks and end-of-text remains, those masks become end-of-text too and
    /// every block is finished.
    fn fill_after_eos(&mut self) -> Vec<Commit> {
        let Some(&eos) = self.traits.eos_ids.first() else {
            return Vec::new();
        };
        let Some(first_mask) = self.tokens.iter().position(|&t| t == self.traits.mask_id) else {
            return Vec::new();
        };
        let is_eos = |t: u32| self.traits.eos_ids.contains(&t);
        let after_eos =
            first_mask > 0 && !self.context[first_mask - 1] && is_eos(self.tokens[first_mask - 1]);
        let rest_is_padding = self.tokens[first_mask..]
            .iter()
            .all(|&t| t == self.traits.mask_id || is_eos(t));
        if !(after_eos && rest_is_padding) {
            return Vec::new();
        }
        let fills: Vec<Commit> = (first_mask..self.tokens.len())
            .filter(|&p| self.tokens[p] == self.traits.mask_id)
            .map(|pos| Commit {
                pos,
                id: eos,
                score: 0.0,
            })
            .collect();
        for c in &fills {
            self.tokens[c.pos] = eos;
        }
        self.block = self.blocks.len();
        fills
    }

    /// Moves to the next block once the current one is finished (its step budget is spent, or,
    /// for dynamic rules, it has no masks left).
    fn advance_block(&mut self) {
        while let Some(block) = self.blocks.get(self.block) {
            // A fixed schedule's block also ends once nothing is left to commit anywhere: the
            // steps after that could only be empty.
            let finished = match self.params.parallel {
                _ if self.params.remdm != Remdm::Off => self.remdm_block_finished(block.steps),
                None => self.step_in_block >= block.steps || self.masked() == 0,
                Some(_) => self.masks_in_block() == 0,
            };
            if !finished {
                break;
            }
            self.block += 1;
            self.step_in_block = 0;
            self.remdm_cache = None;
            self.block_initial_masks = self.masks_in_block();
        }
    }

    /// The logits row that predicts `position` (shifted by one for Dream-style models), with
    /// classifier-free guidance applied: un + (s + 1)(cond - un).
    fn row(&self, logits: &[Logits], position: usize) -> Vec<f32> {
        let source = self.source_row(position);
        let cond = logits[0].row(source);
        match logits.get(1) {
            Some(uncond) if self.params.cfg_scale > 0.0 => {
                let scale = (self.params.cfg_scale + 1.0) as f32;
                cond.iter()
                    .zip(uncond.row(source))
                    .map(|(&c, &u)| u + scale * (c - u))
                    .collect()
            }
            _ => cond.to_vec(),
        }
    }

    /// Token ids whose probability is taken out of the scoring distribution (`defer_eos`).
    fn hidden_from_scores(&self) -> Vec<u32> {
        if !self.params.defer_eos {
            return Vec::new();
        }
        self.traits
            .eos_ids
            .iter()
            .chain(&self.traits.eot_ids)
            .copied()
            .collect()
    }

    /// Proposes and scores every masked position before `window_end` (LLaDA sets the score of
    /// later positions to -inf; masks before the block are still eligible).
    ///
    /// Rows are independent, so they are scored in parallel (a 126k-entry vocabulary makes each
    /// row expensive). Randomness stays reproducible for a seed whatever the thread count: each
    /// step draws one base seed from the run's generator, and position p uses stream p of it.
    ///
    /// When inspecting, each position also gets its [`TOP_CANDIDATES`] most likely tokens.
    /// `never` is a token not to propose (the mask, when finishing). A NaN in the logits is an
    /// error naming the position.
    fn score_candidates(
        &mut self,
        logits: &[Logits],
        window_end: usize,
        never: Option<u32>,
    ) -> Result<(Vec<Commit>, Vec<TopCandidates>)> {
        use rayon::prelude::*;
        let positions: Vec<usize> = (0..window_end)
            .filter(|&p| self.tokens[p] == self.traits.mask_id)
            .collect();
        let random = self.params.strategy == Strategy::Random;
        let needs_rng = random || !matches!(self.proposal, Proposal::Argmax);
        let base: u64 = if needs_rng { self.rng.random() } else { 0 };
        let hidden = self.hidden_from_scores();
        let this = &*self;
        let inspect = self.inspect;
        let (candidates, tops): (Vec<Commit>, Vec<TopCandidates>) = positions
            .into_par_iter()
            .map(|pos| {
                let mut rng = ChaCha8Rng::seed_from_u64(base);
                rng.set_stream(pos as u64);
                let mut row = this.row(logits, pos);
                if this.params.suppress_eos {
                    for &eos in &this.traits.eos_ids {
                        if let Some(l) = row.get_mut(eos as usize) {
                            *l = f32::NEG_INFINITY;
                        }
                    }
                }
                let (id, dist): (u32, Distribution) =
                    this.proposal.propose(&row, &mut rng, &hidden, never);
                let uniform = if random { rng.random::<f64>() } else { 0.0 };
                // A NaN anywhere in the row marks the position (checked by the caller).
                let broken = row.iter().any(|v| v.is_nan());
                let top = if inspect {
                    top_probabilities(&row, TOP_CANDIDATES)
                } else {
                    Vec::new()
                };
                let commit = Commit {
                    pos,
                    id,
                    score: if broken {
                        f64::NAN
                    } else {
                        score(this.params.strategy, &dist, pos, uniform)
                    },
                };
                (commit, top)
            })
            .unzip();
        if let Some(bad) = candidates.iter().find(|c| c.score.is_nan()) {
            bail!(
                "the model produced non-finite logits (NaN) at position {}: its weights or \
                 config.json are broken (e.g. NaN weights, rms_norm_eps <= 0, rope_theta 0)",
                bad.pos
            );
        }
        Ok((candidates, tops))
    }

    /// Picks the positions to commit: top-k by score (ties to the left), k sampled without
    /// replacement from softmax(score / alg_temp), or a dynamic parallel rule.
    fn choose(&mut self, mut candidates: Vec<Commit>, fixed_count: Option<usize>) -> Vec<Commit> {
        candidates.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.pos.cmp(&b.pos)));
        let keep = match (self.params.parallel, fixed_count) {
            (Some(Parallel::Threshold(tau)), _) => {
                1 + candidates[1..]
                    .iter()
                    .take_while(|c| c.score >= tau)
                    .count()
            }
            (Some(Parallel::Factor(f)), _) => {
                1 + candidates
                    .iter()
                    .enumerate()
                    .skip(1)
                    .take_while(|(i, c)| c.score >= 1.0 - f / (*i as f64 + 2.0))
                    .count()
            }
            (None, Some(k)) => {
                if let Some(t) = self.params.alg_temp.filter(|&t| t > 0.0) {
                    return self.sample_positions(candidates, k, t);
                }
                k
            }
            (None, None) => 0,
        };
        candidates.truncate(keep.min(candidates.len()));
        candidates.sort_by_key(|c| c.pos);
        candidates
    }

    /// Dream's `alg_temp`: draw `k` positions without replacement with probability proportional
    /// to exp(score / temp).
    fn sample_positions(&mut self, mut pool: Vec<Commit>, k: usize, temp: f64) -> Vec<Commit> {
        let mut chosen = Vec::with_capacity(k);
        while chosen.len() < k && !pool.is_empty() {
            let max = pool
                .iter()
                .map(|c| c.score)
                .fold(f64::NEG_INFINITY, f64::max);
            let weights: Vec<f64> = pool
                .iter()
                .map(|c| ((c.score - max) / temp).exp())
                .collect();
            let total: f64 = weights.iter().sum();
            let mut target = self.rng.random::<f64>() * total;
            let mut pick = pool.len() - 1;
            for (i, w) in weights.iter().enumerate() {
                if target < *w {
                    pick = i;
                    break;
                }
                target -= w;
            }
            chosen.push(pool.swap_remove(pick));
        }
        chosen.sort_by_key(|c| c.pos);
        chosen
    }
}

/// The `k` most likely entries of softmax(`row`) with their probabilities, most likely first
/// (ties to the lower id). One pass for the normaliser, one for the selection.
pub fn top_probabilities(row: &[f32], k: usize) -> Vec<(u32, f32)> {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if !max.is_finite() {
        return Vec::new();
    }
    let sum: f64 = row.iter().map(|&l| ((l - max) as f64).exp()).sum();
    let mut best: Vec<(u32, f32)> = Vec::with_capacity(k + 1);
    for (i, &l) in row.iter().enumerate() {
        if best.len() == k && best.last().is_some_and(|&(_, b)| l <= b) {
            continue;
        }
        let at = best.partition_point(|&(_, b)| b >= l);
        best.insert(at, (i as u32, l));
        best.truncate(k);
    }
    best.into_iter()
        .map(|(id, l)| (id, (((l - max) as f64).exp() / sum) as f32))
        .collect()
}

#[cfg(test)]
mod tests;
