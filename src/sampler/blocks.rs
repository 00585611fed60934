//! Block diffusion: the decode loop of models whose attention is bidirectional inside a block and
//! causal across blocks (SDAR / TraDo; dLLM's BD3LM conversions and Fast-dLLM v2 follow the same
//! shape). Finished blocks are cached exactly, like an autoregressive key/value cache, and each
//! denoising step forwards only the block being denoised.
//!
//! SDAR's loop (JetAstra/SDAR `generate.py`, `block_diffusion_generate`), which this follows
//! step for step:
//! - the canvas is the prompt then masks, cut into blocks of `block_length` from position 0 and
//!   rounded up to whole blocks (the output can be up to `block_length - 1` tokens longer than
//!   asked), so the prompt's last partial block is the first block denoised;
//! - the prompt's whole blocks are prefilled into the cache in one (block-causal) forward;
//! - each step forwards the current block against the cache, proposes the argmax of every masked
//!   position with its softmax probability as confidence (SDAR's evaluation sampler: greedy),
//!   and commits by the [`CommitRule`], `n` tokens as the per-block schedule says (the block's
//!   `steps_per_block` steps share `block_length` tokens, the first `block_length % steps` one
//!   more; computed for a whole block, so a partial first block finishes early);
//! - once the block has no mask left, one more forward of the finished block writes its keys and
//!   values into the cache, and the run stops there if a stop id appears among the generated
//!   tokens; the masks of the blocks after it are dropped (no finished text holds a mask).
//!
//! dLLM's BD3LM sampler (ZHZisZZ/dllm `dllm/core/samplers/bd3lm.py`, `BD3LMSampler.sample`)
//! differs as data ([`Layout::Bd3lm`]):
//! - the prompt never shares a block with generated tokens: it is left-padded to a block multiple
//!   (the pads are invisible), so its first block is short and the generated blocks start right
//!   after it; the canvas is not rounded up (the last block may be short);
//! - the pad id is invisible wherever it is (positions count visible tokens only): a pad the
//!   model commits stays visible for the rest of its block and leaves the cache at the block's
//!   write;
//! - each block's counts come from its linear alpha schedule in float32, rounded half to even,
//!   with zero counts dropped ([`linear_counts`]), over `ceil(steps / blocks)` steps;
//! - the reference recomputes the prefix at each block's start (one forward, before the block's
//!   first step): the finished block's write is that forward, and none follows the last block;
//! - the run stops after a block that holds the end-of-sequence id; classifier-free guidance
//!   masks the prompt in the unconditional pass.
//!
//! Fast-dLLM v2's `generate` (NVlabs/Fast-dLLM `v2/`, the model's `generate`) is
//! [`Layout::FastDllmV2`]: blocks from position 0; whole prompt blocks prefilled only when the
//! prompt is longer than a block (an aligned prompt's next token is the argmax of the prefill's
//! last row); logits shifted by one inside a block (its first row keeps its own); sub-blocks of
//! `sub_block` decoded in order, each step committing every mask above the threshold and the
//! most confident one ([`CommitRule::Threshold`]); a finished block's write gives, from its last
//! row, the next block's first token (the autoregressive bridge); a stop token ends the run at a
//! block's start, or within a block once no mask precedes it, and the text is cut after it.

use std::ops::Range;

use anyhow::{bail, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::{
    BlockState, CacheMode, Commit, Logits, ModelTraits, Parallel, Proposal, Remdm, SamplerParams,
    Schedule, Scored, StepReport, Strategy, TOP_CANDIDATES,
};

/// How a block-diffusion step chooses which masked positions to commit (SDAR's
/// `remasking_strategy`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "rule", content = "threshold")]
pub enum CommitRule {
    /// `low_confidence_static`: the `n` most confident masks.
    Static,
    /// `low_confidence_dynamic`: every mask whose confidence is above the threshold when there
    /// are at least `n` of them, else the `n` most confident.
    Dynamic(f64),
    /// `sequential`: the first `n` masks, left to right.
    Sequential,
    /// Fast-dLLM v2: every mask whose confidence is above the threshold, and the most confident
    /// one in any case.
    Threshold(f64),
}

/// What a block-diffusion forward pass does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    /// The prompt's whole blocks, block-causally (block i sees blocks up to i), written to the
    /// cache. Its logits are not read.
    Prefill,
    /// The current block against the cache; nothing is written.
    Denoise,
    /// The finished block against the cache, its keys and values written. Its logits are not
    /// read.
    Write,
}

/// One block-diffusion forward pass over the canvas positions `range`: their visible tokens,
/// one row per sequence (the canvas, and with classifier-free guidance the unconditional one),
/// at the model positions right after the cached ones.
#[derive(Debug, Clone, PartialEq)]
pub struct BlockRequest {
    pub pass: Pass,
    pub range: Range<usize>,
    pub tokens: Vec<Vec<u32>>,
    /// How many of the tokens each block has: a prefill's rows attend block-causally (block i
    /// sees blocks up to i); one entry for a denoising or write pass.
    pub chunks: Vec<usize>,
}

/// How a model decodes block by block: its family's layout, its trained block length, and the
/// token its loop makes invisible (BD3LM's pad id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockDecoding {
    pub layout: Layout,
    pub size: usize,
    pub invisible: Option<u32>,
}

/// How a family lays its canvas out in blocks and runs its loop ([module docs](self)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Layout {
    /// SDAR / TraDo: blocks from position 0, the prompt's partial block denoised.
    Sdar,
    /// dLLM's BD3LM sampler: the prompt in blocks of its own (left-padded), invisible pads.
    Bd3lm,
    /// Fast-dLLM v2's `generate`: blocks from position 0, logits shifted by one inside a block,
    /// sub-blocks decoded in order by a threshold, and an autoregressive token after each block.
    FastDllmV2,
}

/// The parameters of a block-diffusion run.
#[derive(Debug, Clone, PartialEq)]
pub struct BlockParams {
    pub block_length: usize,
    pub steps_per_block: usize,
    pub rule: CommitRule,
    /// The run ends after the block in which one of these appears (empty: no stop).
    pub stop_ids: Vec<u32>,
    /// 0: the argmax with its softmax probability (SDAR's evaluation sampler, exact); above,
    /// a seeded draw from the filtered distribution, scored by its probability there.
    pub temperature: f64,
    pub top_k: Option<usize>,
    pub top_p: Option<f64>,
    pub seed: u64,
    pub layout: Layout,
    /// A token that takes no part in attention wherever it is (BD3LM's pad id).
    pub invisible: Option<u32>,
    /// Classifier-free guidance (BD3LM): logits = un + (scale + 1)(cond - un), the unconditional
    /// pass with every prompt token masked except these.
    pub cfg_scale: f64,
    pub cfg_keep: Vec<u32>,
    /// Fast-dLLM v2's `small_block_size`: sub-blocks decoded one after the other.
    pub sub_block: usize,
}

impl Default for BlockParams {
    /// SDAR's loop, greedy (exact), one token a step in blocks of 32, no stop, no guidance.
    fn default() -> Self {
        Self {
            block_length: 32,
            steps_per_block: 32,
            rule: CommitRule::Static,
            stop_ids: Vec::new(),
            temperature: 0.0,
            top_k: None,
            top_p: None,
            seed: 0,
            layout: Layout::Sdar,
            invisible: None,
            cfg_scale: 0.0,
            cfg_keep: Vec::new(),
            sub_block: FAST_DLLM_V2_SUB_BLOCK,
        }
    }
}

impl BlockParams {
    /// What `params` ask of a block-diffusion model over `canvas` (prompt, infill spans, then the
    /// generation region): `low-confidence` is SDAR's static rule (BD3LM's top-k),
    /// `left-to-right` SDAR's sequential one and `--threshold` its dynamic one; `steps` are
    /// shared among the blocks to decode unless `steps_per_block` is given; `stop_at_eos` stops
    /// where the family's reference stops (end-of-text and end-of-turn ids); `cfg` is BD3LM's
    /// guidance. What the family's loop has no meaning for is refused, naming the setting.
    pub fn from_sampler(
        params: &SamplerParams,
        traits: &ModelTraits,
        canvas: &[u32],
    ) -> Result<Self> {
        let decoding = traits.blocks.unwrap_or(BlockDecoding {
            layout: Layout::Sdar,
            size: params.block_length,
            invisible: None,
        });
        let family = match decoding.layout {
            Layout::Sdar => "block-diffusion models (SDAR)",
            Layout::Bd3lm => "BD3LM block decoding (dLLM's BD3LMSampler)",
            Layout::FastDllmV2 => "Fast-dLLM v2",
        };
        let rule = match (decoding.layout, params.parallel, params.strategy) {
            (Layout::Bd3lm, None, Strategy::LowConfidence) => CommitRule::Static,
            (Layout::Bd3lm, ..) => {
                bail!("{family} commits the most confident masks (low-confidence) by its schedule")
            }
            (Layout::FastDllmV2, None, Strategy::LowConfidence) => CommitRule::Threshold(1.0),
            (Layout::FastDllmV2, Some(Parallel::Threshold(t)), Strategy::LowConfidence) => {
                CommitRule::Threshold(t)
            }
            (Layout::FastDllmV2, ..) => bail!(
                "{family} commits the masks above --threshold and the most confident one \
                 (low-confidence; without --threshold, one a step)"
            ),
            (_, None, Strategy::LowConfidence) => CommitRule::Static,
            (_, None, Strategy::LeftToRight) => CommitRule::Sequential,
            (_, Some(Parallel::Threshold(t)), Strategy::LowConfidence) => CommitRule::Dynamic(t),
            (_, Some(Parallel::Factor(_)), _) => {
                bail!("{family} have no factor rule: use --threshold (SDAR's dynamic rule)")
            }
            (_, _, other) => bail!(
                "{family} commit by low-confidence (static, or dynamic with a threshold) or \
                 left-to-right (sequential); {} is not one of their rules",
                other.name()
            ),
        };
        let refuse = |what: &str| -> Result<()> {
            bail!("{family} do not take {what}: their decode loop has no such setting")
        };
        if params.cfg_scale > 0.0 && decoding.layout != Layout::Bd3lm {
            refuse("classifier-free guidance (cfg)")?;
        }
        if params.remdm != Remdm::Off {
            refuse("ReMDM remasking")?;
        }
        if params.cache != CacheMode::None {
            refuse("--cache (finished blocks are always cached, exactly)")?;
        }
        if params.schedule != Schedule::Uniform {
            refuse("a schedule other than uniform (each block's steps share its tokens)")?;
        }
        if params.alg_temp.is_some_and(|t| t > 0.0) {
            refuse("alg temp")?;
        }
        if params.suppress_eos || params.defer_eos {
            refuse("no-eos or defer-eos")?;
        }
        let block_length = params.block_length;
        if block_length == 0 {
            bail!("block length must be at least 1");
        }
        let prompt_len = prompt_end(canvas, traits.mask_id);
        let (_, blocks, _) = lay_out(decoding.layout, canvas.len(), prompt_len, block_length);
        let to_decode = blocks.len().max(1);
        let stop_ids = if params.stop_at_eos {
            traits
                .eos_ids
                .iter()
                .chain(&traits.eot_ids)
                .copied()
                .collect()
        } else {
            Vec::new()
        };
        let block = Self {
            block_length,
            steps_per_block: params
                .steps_per_block
                .unwrap_or(params.steps.div_ceil(to_decode).max(1)),
            rule,
            stop_ids,
            temperature: params.temperature,
            top_k: params.top_k,
            top_p: params.top_p,
            seed: params.seed,
            layout: decoding.layout,
            invisible: decoding.invisible,
            cfg_scale: params.cfg_scale,
            cfg_keep: Vec::new(),
            sub_block: params.sub_block_length.unwrap_or(FAST_DLLM_V2_SUB_BLOCK),
        };
        block.validate()?;
        Ok(block)
    }

    pub fn validate(&self) -> Result<()> {
        if self.block_length == 0 {
            bail!("block length must be at least 1");
        }
        if self.steps_per_block == 0 {
            bail!("steps per block must be at least 1");
        }
        if let CommitRule::Dynamic(t) | CommitRule::Threshold(t) = self.rule {
            if !(0.0..=1.0).contains(&t) {
                bail!("threshold must be between 0 and 1, got {t}");
            }
        }
        if self.layout == Layout::FastDllmV2
            && (self.sub_block == 0 || !self.block_length.is_multiple_of(self.sub_block))
        {
            // The reference loops forever on such a size (its app offers some).
            bail!(
                "the sub-block length {} must divide the block length {}",
                self.sub_block,
                self.block_length
            );
        }
        Ok(())
    }
}

/// How `layout` cuts a canvas of `len` tokens whose prompt is `prompt_len` long into blocks of
/// `b`: the prompt's blocks the prefill caches, the blocks to denoise, and the canvas's length
/// (SDAR rounds it up to whole blocks; Fast-dLLM v2 has `floor(new / b)` blocks and one
/// autoregressive token after them).
fn lay_out(
    layout: Layout,
    len: usize,
    prompt_len: usize,
    b: usize,
) -> (Vec<Range<usize>>, Vec<Range<usize>>, usize) {
    // Blocks from `from` to `to`, the first `first` long and the rest `b`.
    let cut = |from: usize, to: usize, first: usize| -> Vec<Range<usize>> {
        let mut out = Vec::new();
        let (mut at, mut size) = (from, first.max(1));
        while at < to {
            let end = (at + size).min(to);
            out.push(at..end);
            at = end;
            size = b;
        }
        out
    };
    match layout {
        Layout::Sdar => {
            let total = len.div_ceil(b) * b;
            let whole = prompt_len / b * b;
            (cut(0, whole, b), cut(whole, total, b), total)
        }
        Layout::Bd3lm => {
            // Left-padding to a block multiple makes the prompt's first block short.
            let first = match prompt_len % b {
                0 => b,
                short => short,
            };
            (cut(0, prompt_len, first), cut(prompt_len, len, b), len)
        }
        Layout::FastDllmV2 => {
            // `generate`: whole prompt blocks are prefilled only past one block (its test is
            // `>`); an aligned prompt's next token comes from the prefill's last row. Each of
            // the floor(new / b) blocks is the grid block of the text so far, masks to its end;
            // after it, the write's last row gives one more token.
            let blocks = (len - prompt_len) / b;
            let whole = if prompt_len > b {
                prompt_len / b * b
            } else {
                0
            };
            let first_token = usize::from(whole > 0 && whole == prompt_len);
            let text = prompt_len + first_token;
            let start = text - text % b;
            let end = if blocks == 0 {
                text
            } else {
                start + blocks * b + 1
            };
            (cut(0, whole, b), cut(start, start + blocks * b, b), end)
        }
    }
}

/// Fast-dLLM v2's default `small_block_size`.
pub const FAST_DLLM_V2_SUB_BLOCK: usize = 8;

/// Where the prompt ends in `canvas`: after its last unmasked token (masks before it are infill
/// spans, those after it the generation region).
fn prompt_end(canvas: &[u32], mask_id: u32) -> usize {
    canvas
        .iter()
        .rposition(|&t| t != mask_id)
        .map_or(0, |p| p + 1)
}

/// dLLM's per-step counts for `n` masks over `steps` steps (`get_num_transfer_tokens` with its
/// `LinearAlphaScheduler`): at step j, with s = (S-j-1)/S and t = (S-j)/S cast to float32, the
/// share `1 - (1 - (1 - s)) / (1 - (1 - t))` (float32) of the masks left, rounded half to even;
/// zero counts are dropped (they run no forward). The last step takes what is left.
pub fn linear_counts(n: usize, steps: usize) -> Vec<usize> {
    let mut remaining = n;
    let mut counts = Vec::new();
    for j in 0..steps {
        if remaining == 0 {
            break;
        }
        let s = ((steps - j - 1) as f64 / steps as f64) as f32;
        let t = ((steps - j) as f64 / steps as f64) as f32;
        let ratio = (1.0f32 - (1.0f32 - s)) / (1.0f32 - (1.0f32 - t));
        let share = 1.0 - ratio as f64;
        let k = ((remaining as f64 * share).round_ties_even() as usize).min(remaining);
        remaining -= k;
        counts.push(k);
    }
    counts.retain(|&k| k > 0);
    counts
}

/// SDAR's `get_num_transfer_tokens`: `steps` shares of `block_length` tokens, the first
/// `block_length % steps` one more.
pub fn transfer_counts(block_length: usize, steps: usize) -> Vec<usize> {
    let (base, extra) = (block_length / steps, block_length % steps);
    (0..steps).map(|i| base + usize::from(i < extra)).collect()
}

/// A block-diffusion run over one canvas.
pub struct BlockSampler {
    params: BlockParams,
    mask_id: u32,
    tokens: Vec<u32>,
    prompt_len: usize,
    /// Positions of the prompt (masked in the unconditional pass of classifier-free guidance).
    context: Vec<bool>,
    /// The prompt's blocks the prefill pass caches, and the blocks to denoise.
    prompt_blocks: Vec<Range<usize>>,
    blocks: Vec<Range<usize>>,
    /// The block being denoised; `blocks.len()` when the run is over.
    block: usize,
    /// Whether the prefill pass is still due.
    prefill: bool,
    /// BD3LM: the finished block whose keys and values the next block's first pass writes.
    unwritten: Option<Range<usize>>,
    /// Fast-dLLM v2: positions filled by the argmax of the last row of the pass before them
    /// (the prefill's, a finished block's write), not denoised.
    autoregressive: Vec<usize>,
    step_in_block: usize,
    counts: Vec<usize>,
    steps_done: usize,
    nfe: usize,
    inspect: bool,
    rng: ChaCha8Rng,
}

impl BlockSampler {
    /// Starts a run over `canvas` (the prompt, with any infill spans, then the masks to
    /// generate), laid out in blocks by the family's [`Layout`] (SDAR adds masks up to the last
    /// block's end).
    pub fn new(canvas: Vec<u32>, params: BlockParams, mask_id: u32) -> Result<Self> {
        params.validate()?;
        let b = params.block_length;
        let prompt_len = prompt_end(&canvas, mask_id);
        let (prompt_blocks, blocks, len) = lay_out(params.layout, canvas.len(), prompt_len, b);
        let asked = canvas.len().saturating_sub(prompt_len);
        if params.layout == Layout::FastDllmV2 && blocks.is_empty() && asked > 0 {
            // Its `generate` runs floor(new / block) blocks: it would return the prompt alone.
            bail!(
                "Fast-dLLM v2 generates whole blocks of {b} tokens, and {asked} masks make none \
                 (its generate runs floor({asked} / {b}) blocks): ask for at least {b}, or set a \
                 shorter block length"
            );
        }
        // Everything after the prompt is masked: the canvas grows or shrinks by masks.
        let mut tokens = canvas;
        tokens.resize(len, mask_id);
        let autoregressive = match params.layout {
            Layout::FastDllmV2 => {
                let mut slots: Vec<usize> = blocks.iter().map(|r| r.end).collect();
                if let Some(first) = blocks.first() {
                    if first.start == prompt_len {
                        slots.insert(0, prompt_len);
                    }
                }
                if prompt_blocks.last().is_some_and(|r| r.end == prompt_len) && blocks.is_empty() {
                    slots.push(prompt_len);
                }
                slots.retain(|&p| p < tokens.len());
                slots
            }
            _ => Vec::new(),
        };
        let context = (0..tokens.len()).map(|p| p < prompt_len).collect();
        let counts = transfer_counts(b, params.steps_per_block);
        Ok(Self {
            mask_id,
            rng: ChaCha8Rng::seed_from_u64(params.seed),
            prompt_len,
            context,
            prefill: !prompt_blocks.is_empty()
                && (!blocks.is_empty() || params.layout == Layout::FastDllmV2),
            prompt_blocks,
            blocks,
            block: 0,
            unwritten: None,
            autoregressive,
            step_in_block: 0,
            counts,
            steps_done: 0,
            nfe: 0,
            inspect: false,
            tokens,
            params,
        })
    }

    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    pub fn prompt_len(&self) -> usize {
        self.prompt_len
    }

    pub fn params(&self) -> &BlockParams {
        &self.params
    }

    pub fn nfe(&self) -> usize {
        self.nfe
    }

    pub fn inspect(&mut self, on: bool) {
        self.inspect = on;
    }

    pub fn masked(&self) -> usize {
        self.tokens.iter().filter(|&&t| t == self.mask_id).count()
    }

    pub fn is_done(&self) -> bool {
        self.block >= self.blocks.len()
    }

    /// The block being denoised (canvas positions), if any.
    pub fn current_block(&self) -> Option<Range<usize>> {
        self.blocks.get(self.block).cloned()
    }

    /// Planned steps: the steps taken, plus each remaining block's (an upper bound: a block
    /// may finish early).
    pub fn planned_steps(&self) -> usize {
        if self.is_done() {
            return self.steps_done;
        }
        let per_block = self.params.steps_per_block;
        let left_here = per_block.saturating_sub(self.step_in_block);
        self.steps_done + left_here + (self.blocks.len() - self.block - 1) * per_block
    }

    fn masks_in(&self, range: &Range<usize>) -> Vec<usize> {
        range
            .clone()
            .filter(|&p| self.tokens[p] == self.mask_id)
            .collect()
    }

    /// Forward evaluations one pass costs: two with classifier-free guidance (the conditional
    /// and the unconditional sequence, which run as one batch here and as two forwards in dLLM's
    /// sampler, whose count this is).
    fn passes(&self) -> usize {
        if self.params.cfg_scale > 0.0 {
            2
        } else {
            1
        }
    }

    /// A token of a pass's sequence: in the unconditional sequence of classifier-free guidance
    /// the prompt is masked (but for masks and the tokens guidance keeps).
    fn token(&self, p: usize, unconditional: bool) -> u32 {
        let t = self.tokens[p];
        let hide = unconditional
            && self.context[p]
            && t != self.mask_id
            && !self.params.cfg_keep.contains(&t);
        if hide {
            self.mask_id
        } else {
            t
        }
    }

    /// A pass over `blocks` (the prompt's for a prefill, else one): per sequence the visible
    /// tokens, and how many each block holds. The current block's denoising pass keeps every
    /// token (nothing in it was invisible when the block started, which is when the reference
    /// builds its mask).
    fn request(&self, pass: Pass, blocks: &[Range<usize>]) -> BlockRequest {
        let range = blocks.first().map_or(0, |b| b.start)..blocks.last().map_or(0, |b| b.end);
        let sequences = if self.params.cfg_scale > 0.0 { 2 } else { 1 };
        let keep = |t: u32| pass == Pass::Denoise || Some(t) != self.params.invisible;
        let chunks = blocks
            .iter()
            .map(|b| b.clone().filter(|&p| keep(self.tokens[p])).count())
            .collect();
        let tokens = (0..sequences)
            .map(|i| {
                blocks
                    .iter()
                    .flat_map(|b| b.clone())
                    .filter(|&p| keep(self.tokens[p]))
                    .map(|p| self.token(p, i == 1))
                    .collect()
            })
            .collect();
        BlockRequest {
            pass,
            range,
            tokens,
            chunks,
        }
    }

    /// The logits row that scores `position`, with guidance applied: un + (s + 1)(cond - un).
    fn row(&self, logits: &[Logits], position: usize) -> Vec<f32> {
        let cond = logits[0].row(position);
        match logits.get(1) {
            Some(uncond) if self.params.cfg_scale > 0.0 => {
                let scale = (self.params.cfg_scale + 1.0) as f32;
                cond.iter()
                    .zip(uncond.row(position))
                    .map(|(&c, &u)| u + scale * (c - u))
                    .collect()
            }
            _ => cond.to_vec(),
        }
    }

    /// One denoising step: the passes that are due first (the prefill; BD3LM's write of the
    /// block before), then the current block's pass and its commits; a finished block is written
    /// to the cache at once (SDAR) or by the next block's first pass (BD3LM), and the run stops
    /// after it when the family's stop rule says so. `None` once the run is over.
    pub fn step<F>(&mut self, mut forward: F) -> Result<Option<StepReport>>
    where
        F: FnMut(&BlockRequest) -> Result<Vec<Logits>>,
    {
        let Some(block) = self.current_block() else {
            return Ok(None);
        };
        let mut committed = Vec::new();
        let mut bridged = Vec::new();
        if self.prefill {
            let logits = forward(&self.request(Pass::Prefill, &self.prompt_blocks))?;
            self.nfe += self.passes();
            self.prefill = false;
            if let Some(c) = self.fill_autoregressive(&logits, self.prompt_len) {
                bridged.push(c.pos);
                committed.push(c);
            }
        }
        if let Some(done) = self.unwritten.take() {
            forward(&self.request(Pass::Write, std::slice::from_ref(&done)))?;
            self.nfe += self.passes();
        }
        if self.params.layout == Layout::FastDllmV2 && self.fast_dllm_v2_stops(&block) {
            return Ok(None);
        }
        // Fast-dLLM v2 decodes the block's sub-blocks one after the other.
        let sub_block = match self.params.layout {
            Layout::FastDllmV2 => {
                let k = self.params.sub_block;
                let first = self.masks_in(&block).first().copied();
                first.map(|p| {
                    let start = block.start + (p - block.start) / k * k;
                    start..(start + k).min(block.end)
                })
            }
            _ => None,
        };
        let masks = match (&sub_block, self.params.layout) {
            (Some(sub), _) => self.masks_in(sub),
            (None, Layout::FastDllmV2) => Vec::new(),
            (None, _) => self.masks_in(&block),
        };
        if self.step_in_block == 0 && self.params.layout == Layout::Bd3lm {
            self.counts = linear_counts(masks.len(), self.params.steps_per_block);
        }
        let mut scored = Vec::new();
        if !masks.is_empty() {
            let logits = forward(&self.request(Pass::Denoise, std::slice::from_ref(&block)))?;
            self.nfe += self.passes();
            // Past the schedule (only when a proposal was the mask token itself, which leaves
            // its position masked), every mask left is committed to its best real token.
            // Fast-dLLM v2 never commits the mask token: its loop would repeat the same step
            // forever where the best guess is the mask (it commits at least one a step).
            let spent =
                self.step_in_block >= self.counts.len() || self.params.layout == Layout::FastDllmV2;
            let n = self
                .counts
                .get(self.step_in_block)
                .copied()
                .unwrap_or(usize::MAX);
            let never = spent.then_some(self.mask_id);
            let proposal = Proposal::Categorical {
                temperature: self.params.temperature,
                top_k: self.params.top_k,
                top_p: self.params.top_p,
            };
            let mut rng = ChaCha8Rng::seed_from_u64(self.rng.random());
            // Fast-dLLM v2 shifts logits by one inside the block (its first row keeps its own).
            let source = |pos: usize| match self.params.layout {
                Layout::FastDllmV2 if pos > block.start => pos - 1,
                _ => pos,
            };
            let rows: Vec<Vec<f32>> = masks
                .iter()
                .map(|&pos| self.row(&logits, source(pos)))
                .collect();
            let candidates: Vec<Commit> = masks
                .iter()
                .zip(&rows)
                .map(|(&pos, row)| {
                    let (id, p) = if self.params.temperature > 0.0 {
                        let (id, dist) = proposal.propose(row, &mut rng, &[], never);
                        (id, dist.proposed as f64)
                    } else {
                        argmax_probability(row, never)
                    };
                    if p.is_nan() {
                        bail!(
                            "the model produced non-finite logits (NaN) at position {pos}: its \
                             weights or config.json are broken"
                        );
                    }
                    Ok(Commit { pos, id, score: p })
                })
                .collect::<Result<_>>()?;
            if self.inspect {
                scored = candidates
                    .iter()
                    .zip(&rows)
                    .map(|(c, row)| Scored {
                        pos: c.pos,
                        id: c.id,
                        score: c.score,
                        top: super::top_probabilities(row, TOP_CANDIDATES),
                    })
                    .collect();
            }
            let mut chosen = choose(self.params.rule, candidates, n);
            for c in &chosen {
                self.tokens[c.pos] = c.id;
            }
            // A proposal of the mask token leaves its position masked (as in the reference).
            chosen.retain(|c| c.id != self.mask_id);
            committed.extend(chosen);
            self.step_in_block += 1;
            self.steps_done += 1;
        }
        if self.masks_in(&block).is_empty() {
            let filled = self.finish_block(block.clone(), &mut forward)?;
            bridged.extend(filled.iter().map(|c| c.pos));
            committed.extend(filled);
        }
        // Fast-dLLM v2 checks its stop rules before the next step: checked now, the canvas this
        // step reports is already the cut one (no pass comes in between).
        if self.params.layout == Layout::FastDllmV2 {
            if let Some(next) = self.current_block() {
                self.fast_dllm_v2_stops(&next);
            }
        }
        let steps = self.planned_steps();
        Ok(Some(StepReport {
            step: self.steps_done,
            steps,
            committed,
            masked: self.masked(),
            nfe: self.nfe,
            window: block,
            scored,
            remasked: Vec::new(),
            held: 0,
            finishing: false,
            blocks: Some(self.block_state(sub_block, bridged)),
        }))
    }

    /// Where the run stands for the block view: the blocks, what the cache holds now, the
    /// sub-block decoded and the positions filled autoregressively.
    fn block_state(&self, sub_block: Option<Range<usize>>, bridged: Vec<usize>) -> BlockState {
        let len = self.tokens.len();
        let blocks: Vec<Range<usize>> = self
            .prompt_blocks
            .iter()
            .chain(&self.blocks)
            .filter(|r| r.start < len)
            .map(|r| r.start..r.end.min(len))
            .collect();
        // Everything before the block being denoised is written, but for a finished block
        // whose write comes with the next block's first pass (BD3LM).
        let next = self.current_block().map_or(len, |b| b.start);
        let cached = self.unwritten.as_ref().map_or(next, |r| r.start.min(next));
        BlockState {
            blocks,
            cached,
            sub_block,
            bridged,
        }
    }

    /// A block without masks: written to the cache (SDAR: now; BD3LM: by the next block's first
    /// pass), then the stop rule; the blocks after a stop are never denoised and leave the canvas.
    fn finish_block<F>(&mut self, block: Range<usize>, forward: &mut F) -> Result<Vec<Commit>>
    where
        F: FnMut(&BlockRequest) -> Result<Vec<Logits>>,
    {
        self.block += 1;
        self.step_in_block = 0;
        let mut filled = Vec::new();
        let stopped = match self.params.layout {
            Layout::FastDllmV2 => {
                // The write's last row gives the token after the block; the stop rule runs at
                // the next block's start.
                let logits = forward(&self.request(Pass::Write, std::slice::from_ref(&block)))?;
                self.nfe += self.passes();
                filled.extend(self.fill_autoregressive(&logits, block.end));
                if self.is_done() {
                    self.cut_after_stop();
                }
                false
            }
            Layout::Sdar => {
                forward(&self.request(Pass::Write, std::slice::from_ref(&block)))?;
                self.nfe += self.passes();
                // Any stop id among the generated tokens so far.
                self.tokens[self.prompt_len.min(block.end)..block.end]
                    .iter()
                    .any(|t| self.params.stop_ids.contains(t))
            }
            Layout::Bd3lm => {
                let stop = self.tokens[block.clone()]
                    .iter()
                    .any(|t| self.params.stop_ids.contains(t));
                if !stop && !self.is_done() {
                    self.unwritten = Some(block.clone());
                }
                stop
            }
        };
        if stopped {
            self.tokens.truncate(block.end);
            self.block = self.blocks.len();
        }
        Ok(filled)
    }

    /// Fast-dLLM v2: when `position` is a slot filled autoregressively, it takes the argmax of
    /// `logits`' last row (whatever the temperature, as `generate` does).
    fn fill_autoregressive(&mut self, logits: &[Logits], position: usize) -> Option<Commit> {
        if !self.autoregressive.contains(&position) {
            return None;
        }
        let rows = logits.first()?;
        let last = rows.span().end.checked_sub(1)?;
        let (id, score) = argmax_probability(rows.row(last), None);
        self.tokens[position] = id;
        Some(Commit {
            pos: position,
            id,
            score,
        })
    }

    /// Fast-dLLM v2's stop rules before a step: a stop token anywhere after the prompt ends the
    /// run at a block's start; within the block, a stop with no mask before it ends it before
    /// the next step. The text is cut right after the first stop.
    fn fast_dllm_v2_stops(&mut self, block: &Range<usize>) -> bool {
        let stop = |t: &u32| self.params.stop_ids.contains(t);
        let at_start = self.step_in_block == 0
            && self.tokens[self.prompt_len.min(self.tokens.len())..]
                .iter()
                .any(stop);
        let from = block.start.max(self.prompt_len);
        let settled = self.tokens[from..block.end]
            .iter()
            .position(stop)
            .is_some_and(|i| !self.tokens[from..from + i].contains(&self.mask_id));
        if !(at_start || settled) {
            return false;
        }
        self.cut_after_stop();
        self.block = self.blocks.len();
        true
    }

    /// Cuts the canvas right after the first stop token after the prompt, if there is one.
    fn cut_after_stop(&mut self) {
        let from = self.prompt_len.min(self.tokens.len());
        if let Some(i) = self.tokens[from..]
            .iter()
            .position(|t| self.params.stop_ids.contains(t))
        {
            self.tokens.truncate(from + i + 1);
        }
    }

    /// Steps until the run is over.
    pub fn run_to_end<F>(&mut self, mut forward: F) -> Result<()>
    where
        F: FnMut(&BlockRequest) -> Result<Vec<Logits>>,
    {
        while self.step(&mut forward)?.is_some() {}
        Ok(())
    }
}

/// The argmax of a logits row (the first maximum; never `never`) and its softmax probability.
fn argmax_probability(row: &[f32], never: Option<u32>) -> (u32, f64) {
    let best = match never {
        Some(id) => super::proposal::argmax_except(row, id as usize),
        None => super::proposal::argmax(row),
    };
    let max = row[best];
    let sum: f64 = row.iter().map(|&l| ((l - max) as f64).exp()).sum();
    (best as u32, 1.0 / sum)
}

/// The commits of one step among `candidates` (the block's masks, left to right), `n` as the
/// schedule says; when `n` is at least the masks left, all of them (SDAR's top-k would also pick
/// positions that are not masks there and overwrite them: a bug of `generate.py` that its own
/// evaluation code avoids).
fn choose(rule: CommitRule, mut candidates: Vec<Commit>, n: usize) -> Vec<Commit> {
    if n >= candidates.len() && !matches!(rule, CommitRule::Threshold(_)) {
        return candidates;
    }
    let by_confidence = |c: &mut Vec<Commit>| {
        c.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.pos.cmp(&b.pos)));
    };
    let mut chosen = match rule {
        CommitRule::Sequential => {
            candidates.truncate(n);
            candidates
        }
        CommitRule::Static => {
            by_confidence(&mut candidates);
            candidates.truncate(n);
            candidates
        }
        CommitRule::Threshold(threshold) => {
            // The most confident (first on ties), and every other above the threshold.
            let best = candidates.iter().enumerate().fold(0, |b, (i, c)| {
                if c.score > candidates[b].score {
                    i
                } else {
                    b
                }
            });
            let best = candidates[best].pos;
            candidates.retain(|c| c.pos == best || c.score > threshold);
            candidates
        }
        CommitRule::Dynamic(threshold) => {
            let above = candidates.iter().filter(|c| c.score > threshold).count();
            if above >= n {
                candidates.retain(|c| c.score > threshold);
            } else {
                by_confidence(&mut candidates);
                candidates.truncate(n);
            }
            candidates
        }
    };
    chosen.sort_by_key(|c| c.pos);
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake model over 6 tokens whose best guess at position 5 is the mask (id 5): the
    /// schedule's steps leave it masked, as the reference does, and a step past the schedule
    /// commits its best real token, so the run ends with nothing masked.
    #[test]
    fn a_mask_proposal_does_not_stall_a_block() {
        let params = BlockParams {
            block_length: 4,
            steps_per_block: 4,
            ..BlockParams::default()
        };
        let mut sampler = BlockSampler::new(vec![0, 1, 5, 5, 5, 5, 5, 5], params, 5).unwrap();
        let mut passes = Vec::new();
        sampler
            .run_to_end(|request| {
                passes.push(request.pass);
                let mut data = vec![0f32; request.range.len() * 6];
                for (i, pos) in request.range.clone().enumerate() {
                    data[i * 6 + pos % 5] = 1.0;
                    if pos == 5 {
                        data[i * 6 + 5] = 3.0;
                    }
                }
                Ok(vec![Logits::at(data, 6, request.range.start)])
            })
            .unwrap();
        assert_eq!(sampler.masked(), 0);
        assert_eq!(sampler.tokens(), &[0, 1, 2, 3, 4, 0, 1, 2]);
        assert_eq!(passes.iter().filter(|p| **p == Pass::Write).count(), 2);
        assert!(!passes.contains(&Pass::Prefill));
    }

    /// Every step of `params` over `canvas` (a fake model whose best guess at each position
    /// is `pos % 5`, ids 0-4, with mask id 5).
    fn block_states(canvas: Vec<u32>, params: BlockParams) -> (Vec<BlockState>, Vec<Range<usize>>) {
        let mut sampler = BlockSampler::new(canvas, params, 5).unwrap();
        let (mut states, mut windows) = (Vec::new(), Vec::new());
        let forward = |request: &BlockRequest| {
            let rows = request.range.clone();
            let mut data = vec![0f32; rows.len() * 6];
            for (i, pos) in rows.clone().enumerate() {
                data[i * 6 + pos % 5] = 1.0;
            }
            Ok(vec![Logits::at(data, 6, rows.start)])
        };
        while let Some(report) = sampler.step(forward).unwrap() {
            states.push(report.blocks.expect("a block run reports its blocks"));
            windows.push(report.window);
        }
        (states, windows)
    }

    /// The block view's facts: SDAR caches each block as it finishes; the cache never runs
    /// ahead of the block being denoised and ends holding the canvas; block starts are fixed.
    #[test]
    fn block_states_follow_the_cache() {
        let params = BlockParams {
            block_length: 4,
            steps_per_block: 2,
            ..BlockParams::default()
        };
        let (states, windows) = block_states(vec![0, 1, 2, 3, 4, 5, 5, 5, 5, 5, 5, 5], params);
        assert_eq!(states[0].blocks, vec![0..4, 4..8, 8..12]);
        for (state, window) in states.iter().zip(&windows) {
            assert!(state.cached <= window.end, "{state:?} {window:?}");
            assert!(state.sub_block.is_none() && state.bridged.is_empty());
        }
        let cached: Vec<usize> = states.iter().map(|s| s.cached).collect();
        assert!(cached.windows(2).all(|w| w[0] <= w[1]), "{cached:?}");
        assert_eq!(cached.last(), Some(&12));
        // BD3LM writes a finished block with the next block's first pass: one block behind.
        let params = BlockParams {
            block_length: 4,
            steps_per_block: 4,
            layout: Layout::Bd3lm,
            ..BlockParams::default()
        };
        let (states, windows) = block_states(vec![0, 1, 2, 3, 5, 5, 5, 5, 5, 5, 5, 5], params);
        let first_of_block_3 = windows.iter().position(|w| w.start == 8).unwrap();
        assert_eq!(
            states[first_of_block_3 - 1].cached,
            4,
            "block 2 awaits its write"
        );
        assert_eq!(
            states[first_of_block_3].cached, 8,
            "written by block 3's first pass"
        );
    }

    /// Fast-dLLM v2: each step names its sub-block, and a finished block's write fills the next
    /// block's first token autoregressively (the bridge).
    #[test]
    fn fast_dllm_v2_reports_sub_blocks_and_bridges() {
        let params = BlockParams {
            block_length: 4,
            sub_block: 2,
            layout: Layout::FastDllmV2,
            rule: CommitRule::Threshold(1.0),
            ..BlockParams::default()
        };
        let (states, windows) = block_states(vec![0, 1, 5, 5, 5, 5, 5, 5, 5, 5], params);
        for (state, window) in states.iter().zip(&windows) {
            if let Some(sub) = &state.sub_block {
                assert!(sub.start >= window.start && sub.end <= window.end && sub.len() == 2);
            }
        }
        assert!(states.iter().any(|s| s.sub_block.is_some()));
        let bridges: Vec<usize> = states.iter().flat_map(|s| s.bridged.clone()).collect();
        assert!(
            bridges.contains(&4),
            "block 2's first token bridges: {bridges:?}"
        );
        assert!(bridges.iter().all(|p| p % 4 == 0), "{bridges:?}");
    }

    #[test]
    fn transfer_counts_follow_sdar() {
        assert_eq!(transfer_counts(4, 4), vec![1, 1, 1, 1]);
        assert_eq!(transfer_counts(8, 3), vec![3, 3, 2]);
        assert_eq!(transfer_counts(4, 8), vec![1, 1, 1, 1, 0, 0, 0, 0]);
    }

    fn commit(pos: usize, score: f64) -> Commit {
        Commit { pos, id: 0, score }
    }

    #[test]
    fn rules_choose_like_sdar() {
        let c = vec![
            commit(4, 0.2),
            commit(5, 0.9),
            commit(6, 0.95),
            commit(7, 0.5),
        ];
        let pos = |v: Vec<Commit>| v.iter().map(|c| c.pos).collect::<Vec<_>>();
        assert_eq!(pos(choose(CommitRule::Static, c.clone(), 2)), vec![5, 6]);
        assert_eq!(
            pos(choose(CommitRule::Sequential, c.clone(), 2)),
            vec![4, 5]
        );
        // Three above 0.4 (at least n = 2): all three.
        assert_eq!(
            pos(choose(CommitRule::Dynamic(0.4), c.clone(), 2)),
            vec![5, 6, 7]
        );
        // One above 0.92, fewer than n: the top two.
        assert_eq!(
            pos(choose(CommitRule::Dynamic(0.92), c.clone(), 2)),
            vec![5, 6]
        );
        // n past the masks left: every mask, nothing else.
        assert_eq!(pos(choose(CommitRule::Static, c, 9)), vec![4, 5, 6, 7]);
    }
}
