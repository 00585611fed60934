//! The run history and its queries: what the live panel, the inspector, the charts, the
//! export and the session read of a run. Pure: nothing here changes the app.

use std::time::Duration;

use crate::engine::trace::{Ending, Trace};
use crate::engine::{LaneSummary, StepEvent};
use crate::model::ModelInfo;
use crate::run::Settings;
use crate::sampler::{Commit, SamplerParams, Scored};
use crate::text::TextCodec;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunState {
    Running,
    Done,
    Cancelled,
    Failed(String),
}

/// How a finished comparison lane agrees with the others ([`RunView::agreements`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Agreement {
    /// Per canvas position: a generated token the other lanes do not have there.
    pub disagree: Vec<bool>,
    /// Share of this lane's generated tokens matched in the other lanes (their mean).
    pub rate: f64,
}

/// Which elements of `a` a longest common subsequence of `a` and `b` uses.
pub fn common_subsequence(a: &[u32], b: &[u32]) -> Vec<bool> {
    let (n, m) = (a.len(), b.len());
    // lengths[i][j]: the longest common subsequence of a[i..] and b[j..].
    let mut lengths = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lengths[i][j] = if a[i] == b[j] {
                lengths[i + 1][j + 1] + 1
            } else {
                lengths[i + 1][j].max(lengths[i][j + 1])
            };
        }
    }
    let mut used = vec![false; n];
    let (mut i, mut j) = (0, 0);
    while i < n && j < m {
        if a[i] == b[j] {
            used[i] = true;
            i += 1;
            j += 1;
        } else if lengths[i + 1][j] >= lengths[i][j + 1] {
            i += 1;
        } else {
            j += 1;
        }
    }
    used
}

/// What a run was started with, kept for the export so it can be reproduced.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunRecipe {
    pub prompt: String,
    pub chat: bool,
    pub settings: Settings,
    /// Each lane's label and sampler parameters.
    pub lanes: Vec<(String, SamplerParams)>,
}

/// The token inspector's facts about one position of a lane (see [`LaneView::inspect`]).
#[derive(Debug, Clone, PartialEq)]
pub struct TokenRecord<'a> {
    /// The step that committed it, if it was committed by the step shown.
    pub committed_at: Option<usize>,
    pub commit: Option<Commit>,
    /// The step whose scoring is shown, and what the sampler recorded there.
    pub scored: Option<(usize, &'a Scored)>,
    /// Whether the run kept candidates at all (runs read from a trace may not have).
    pub recorded: bool,
    /// Steps (up to the one shown) that masked it again (ReMDM), the latest last.
    pub remasked_at: Vec<usize>,
}

/// One lane of the current run, with its full history.
#[derive(Debug, Clone)]
pub struct LaneView {
    pub label: String,
    pub frames: Vec<StepEvent>,
    pub summary: Option<LaneSummary>,
}

impl LaneView {
    /// The canvas after `step` steps (0 = before the first), clamped to what has arrived.
    pub fn canvas_at<'a>(&'a self, step: usize, initial: &'a [u32]) -> &'a [u32] {
        match step.min(self.frames.len()) {
            0 => initial,
            k => &self.frames[k - 1].canvas,
        }
    }

    pub fn frame_at(&self, step: usize) -> Option<&StepEvent> {
        match step.min(self.frames.len()) {
            0 => None,
            k => Some(&self.frames[k - 1]),
        }
    }

    /// Mean score of the tokens committed in steps 1 to `step` (their confidence, for
    /// probability-like strategies); `None` before anything is committed.
    pub fn mean_score_until(&self, step: usize) -> Option<f64> {
        let (sum, n) = self
            .frames
            .iter()
            .take(step)
            .flat_map(|f| &f.committed)
            .fold((0.0, 0usize), |(sum, n), c| (sum + c.score, n + 1));
        (n > 0).then(|| sum / n as f64)
    }

    /// The step (1-based) that committed each position, up to `step` (none for a position
    /// masked again since).
    pub fn commit_steps_until(&self, step: usize, len: usize) -> Vec<Option<usize>> {
        let mut steps = vec![None; len];
        for (k, frame) in self.frames.iter().take(step).enumerate() {
            for c in &frame.committed {
                if let Some(slot) = steps.get_mut(c.pos) {
                    *slot = Some(k + 1);
                }
            }
            for &pos in &frame.remasked {
                if let Some(slot) = steps.get_mut(pos) {
                    *slot = None;
                }
            }
        }
        steps
    }

    /// Positions the frame at `step` masked again (ReMDM), with the token each held before.
    pub fn remasked_at(&self, step: usize) -> Vec<(usize, u32)> {
        // A lane that finished in fewer steps than the one scrubbed to remasked nothing there.
        if step > self.frames.len() {
            return Vec::new();
        }
        let Some(frame) = self.frame_at(step) else {
            return Vec::new();
        };
        frame
            .remasked
            .iter()
            .filter_map(|&pos| {
                // The token it held: the last commit there before this step.
                let held = self.frames[..step - 1]
                    .iter()
                    .rev()
                    .find_map(|f| f.committed.iter().find(|c| c.pos == pos))?;
                Some((pos, held.id))
            })
            .collect()
    }

    /// The sampler's latest proposal under each position up to `step`, and whether it was made
    /// in that step itself (a position scored then and kept masked) rather than earlier.
    pub fn ghosts_until(&self, step: usize, len: usize) -> Vec<Option<(u32, bool)>> {
        let mut ghosts = vec![None; len];
        let shown = step.min(self.frames.len());
        for (k, frame) in self.frames.iter().take(shown).enumerate() {
            for s in &frame.scored {
                if let Some(slot) = ghosts.get_mut(s.pos) {
                    *slot = Some((s.id, k + 1 == shown));
                }
            }
        }
        ghosts
    }

    /// What the inspector shows for `pos` at `step`: the step that committed it (if it was
    /// committed by then) and the sampler's record of the position in that step, else its latest
    /// record up to `step` for a position still masked.
    pub fn inspect(&self, step: usize, pos: usize) -> TokenRecord<'_> {
        let shown = step.min(self.frames.len());
        // The latest commit, unless a later step masked the position again (ReMDM).
        let mut committed = None;
        let mut remasked_at = Vec::new();
        for (k, f) in self.frames[..shown].iter().enumerate() {
            if f.committed.iter().any(|c| c.pos == pos) {
                committed = Some(k + 1);
            }
            if f.remasked.contains(&pos) {
                committed = None;
                remasked_at.push(k + 1);
            }
        }
        let scored_in = |k: usize| self.frames[k - 1].scored.iter().find(|s| s.pos == pos);
        let scored = match committed {
            Some(k) => scored_in(k).map(|s| (k, s)),
            None => (1..=shown).rev().find_map(|k| scored_in(k).map(|s| (k, s))),
        };
        TokenRecord {
            committed_at: committed,
            commit: committed.and_then(|k| {
                self.frames[k - 1]
                    .committed
                    .iter()
                    .find(|c| c.pos == pos)
                    .copied()
            }),
            scored,
            recorded: self.frames[..shown].iter().any(|f| !f.scored.is_empty()),
            remasked_at,
        }
    }

    /// Score each position got when it was committed, up to `step`.
    pub fn scores_until(&self, step: usize, len: usize) -> Vec<Option<f64>> {
        let mut scores = vec![None; len];
        for frame in self.frames.iter().take(step) {
            for c in &frame.committed {
                if let Some(slot) = scores.get_mut(c.pos) {
                    *slot = Some(c.score);
                }
            }
            for &pos in &frame.remasked {
                if let Some(slot) = scores.get_mut(pos) {
                    *slot = None;
                }
            }
        }
        scores
    }
}

/// The last (or current) run.
#[derive(Debug, Clone)]
pub struct RunView {
    /// What was run: the text, the settings and each lane's parameters (for the export).
    pub recipe: RunRecipe,
    pub initial: Vec<u32>,
    pub prompt_len: usize,
    pub lanes: Vec<LaneView>,
    pub state: RunState,
    /// Step shown; `None` follows the newest step (or the replay).
    pub cursor: Option<usize>,
    /// Whether steps are shown at the replay speed rather than as they arrive.
    pub paced: bool,
    /// Where the replay is, in steps (fractions accumulate between frames).
    pub head: f64,
    /// How the finished lanes agree ([`RunView::agreements`], kept from the last lane to finish).
    pub agreement: Vec<Option<Agreement>>,
    pub elapsed: Duration,
}

impl RunView {
    /// A run read back from a trace, ready to replay from its first step at `speed` steps per
    /// second (0: shown whole).
    pub fn from_trace(trace: &Trace, speed: f64) -> Self {
        // The playground's settings when it wrote the trace; from `generate`, the lane's
        // parameters and the generation length.
        let settings: Settings =
            serde_json::from_value(trace.settings.clone()).unwrap_or_else(|_| Settings {
                params: trace
                    .lanes
                    .first()
                    .and_then(|l| l.params.clone())
                    .unwrap_or_default(),
                length: trace.canvas.len().saturating_sub(trace.prompt_len),
                steps: trace
                    .lanes
                    .first()
                    .and_then(|l| l.params.as_ref())
                    .map(|p| p.steps),
                ..Settings::default()
            });
        let lanes: Vec<LaneView> = trace
            .lanes
            .iter()
            .enumerate()
            .map(|(index, lane)| {
                let summary = (lane.ending == Some(Ending::Done))
                    .then(|| lane.steps.last())
                    .flatten()
                    .map(|last| {
                        let commits: Vec<f64> = lane
                            .steps
                            .iter()
                            .flat_map(|s| s.committed.iter().map(|c| c.score))
                            .collect();
                        LaneSummary {
                            lane: index,
                            canvas: last.canvas.clone(),
                            steps: last.steps,
                            nfe: last.nfe,
                            elapsed: last.elapsed,
                            mean_score: commits.iter().sum::<f64>() / commits.len().max(1) as f64,
                            speedup: last.speedup,
                            completion_tokens: None,
                        }
                    });
                LaneView {
                    label: lane.label.clone(),
                    frames: lane.steps.clone(),
                    summary,
                }
            })
            .collect();
        let state = if lanes.iter().all(|l| l.summary.is_some()) {
            RunState::Done
        } else if trace.lanes.iter().any(|l| l.ending == Some(Ending::Failed)) {
            RunState::Failed("the run failed (see the trace)".into())
        } else {
            RunState::Cancelled
        };
        let mut run = RunView {
            recipe: RunRecipe {
                prompt: trace.prompt.clone(),
                chat: trace.chat,
                settings,
                lanes: trace
                    .lanes
                    .iter()
                    .map(|l| (l.label.clone(), l.params.clone().unwrap_or_default()))
                    .collect(),
            },
            initial: trace.canvas.clone(),
            prompt_len: trace.prompt_len,
            lanes,
            state,
            cursor: None,
            paced: speed > 0.0,
            head: 0.0,
            agreement: Vec::new(),
            elapsed: trace
                .lanes
                .iter()
                .filter_map(|l| l.steps.last().map(|s| s.elapsed))
                .max()
                .unwrap_or_default(),
        };
        run.agreement = run.agreements(trace.mask_id);
        run
    }

    /// The run's planned steps: the most any lane plans (its newest step says; before the first
    /// step, its parameters), never fewer than have arrived, and at least 1 (the step gauge's
    /// scale).
    pub fn planned_steps(&self) -> usize {
        self.lanes
            .iter()
            .enumerate()
            .map(|(i, lane)| match lane.frames.last() {
                Some(f) => f.steps,
                None => self.recipe.lanes.get(i).map_or(0, |(_, p)| p.steps),
            })
            .max()
            .unwrap_or(0)
            .max(self.latest_step())
            .max(1)
    }

    pub fn latest_step(&self) -> usize {
        self.lanes.iter().map(|l| l.frames.len()).max().unwrap_or(0)
    }

    /// The step on screen: the one scrubbed to, else the replay's (which trails the engine at
    /// the replay speed), else the newest.
    pub fn shown_step(&self) -> usize {
        let latest = self.latest_step();
        match self.cursor {
            Some(step) => step,
            None if self.paced => (self.head as usize).min(latest),
            None => latest,
        }
    }

    /// Whether the replay is behind the engine (and moving).
    pub fn replaying(&self) -> bool {
        self.paced && self.cursor.is_none() && (self.head as usize) < self.latest_step()
    }

    /// How each finished lane's generated tokens agree with the other finished lanes'. Lanes
    /// are aligned token by token (a longest common subsequence of the generated positions), so
    /// one inserted or shifted word does not make everything after it differ. A position
    /// disagrees when the alignments with more than half of the other lanes leave it unmatched.
    /// `None` for a lane that has not finished, or when fewer than two have.
    pub fn agreements(&self, mask_id: u32) -> Vec<Option<Agreement>> {
        let generated: Vec<usize> = (0..self.initial.len())
            .filter(|&p| self.initial[p] == mask_id)
            .collect();
        let finals: Vec<Option<Vec<u32>>> = self
            .lanes
            .iter()
            .map(|l| {
                l.summary.as_ref().map(|s| {
                    generated
                        .iter()
                        .filter_map(|&p| s.canvas.get(p).copied())
                        .collect()
                })
            })
            .collect();
        let finished = finals.iter().flatten().count();
        finals
            .iter()
            .enumerate()
            .map(|(i, mine)| {
                let mine = mine.as_ref().filter(|_| finished > 1)?;
                let mut unmatched = vec![0usize; mine.len()];
                let mut matched_share = 0.0;
                for (_, theirs) in finals
                    .iter()
                    .enumerate()
                    .filter_map(|(j, f)| f.as_ref().filter(|_| j != i).map(|f| (j, f)))
                {
                    let matched = common_subsequence(mine, theirs);
                    matched_share +=
                        matched.iter().filter(|&&m| m).count() as f64 / mine.len().max(1) as f64;
                    for (count, m) in unmatched.iter_mut().zip(&matched) {
                        *count += usize::from(!m);
                    }
                }
                let others = finished - 1;
                let mut disagree = vec![false; self.initial.len()];
                for (k, &p) in generated.iter().enumerate() {
                    disagree[p] = unmatched.get(k).is_some_and(|&u| 2 * u > others);
                }
                Some(Agreement {
                    disagree,
                    rate: matched_share / others as f64,
                })
            })
            .collect()
    }
}

/// Token id -> display text, precomputed once per model.
#[derive(Debug, Clone)]
pub struct TokenTable {
    texts: Vec<String>,
    pub mask_id: u32,
    pub eos_ids: Vec<u32>,
    /// The most characters one token stands for (a paste of N characters needs at least
    /// N / this many tokens).
    pub max_chars: usize,
}

impl TokenTable {
    pub fn new(codec: &TextCodec, info: &ModelInfo) -> Self {
        let texts: Vec<String> = (0..info.logits_width as u32)
            .map(|id| codec.token_text(id))
            .collect();
        let max_chars = texts
            .iter()
            .map(|t| t.chars().count())
            .max()
            .unwrap_or(1)
            .max(1);
        Self {
            texts,
            max_chars,
            mask_id: info.mask_id,
            eos_ids: info.eos_ids.clone(),
        }
    }

    pub fn text(&self, id: u32) -> &str {
        self.texts
            .get(id as usize)
            .map_or("\u{fffd}", String::as_str)
    }

    pub fn is_eos(&self, id: u32) -> bool {
        self.eos_ids.contains(&id)
    }
}

impl super::App {
    /// The latest text of every lane (under a `== label ==` line each when comparing), masks
    /// still open shown as `[MASK]`; `None` before a run.
    pub fn result_text(&self) -> Option<String> {
        let run = self.run.as_ref()?;
        let step = run.latest_step();
        let mut out = String::new();
        for lane in &run.lanes {
            if run.lanes.len() > 1 {
                out.push_str(&format!("== {} ==\n", lane.label));
            }
            let canvas = lane.canvas_at(step, &run.initial);
            let text = self.codec.canvas_text(canvas, self.model.mask_id, true);
            out.push_str(text.trim_end());
            out.push('\n');
        }
        Some(out)
    }

    /// The first lane's latest canvas in prompt syntax: text, with the positions still masked
    /// (a cancelled run) as `[MASK:N]` spans so the run can be continued; and how many are left.
    pub fn result_prompt(&self) -> Option<(String, usize)> {
        let run = self.run.as_ref()?;
        let lane = run.lanes.first()?;
        let canvas = lane.canvas_at(run.latest_step(), &run.initial);
        let mask = self.model.mask_id;
        let mut text = String::new();
        let mut masks = 0;
        for group in canvas.chunk_by(|a, b| (*a == mask) == (*b == mask)) {
            if group[0] == mask {
                masks += group.len();
                // Written `word [MASK:N]`, as a user would type it: the space goes back into
                // the span when encoded (TextCodec::span_takes_space), so the canvas is the same.
                if self.codec.span_takes_space()
                    && text.chars().last().is_some_and(|c| !c.is_whitespace())
                {
                    text.push(' ');
                }
                text.push_str(&crate::prompt::render(&[crate::prompt::Segment::Masks(
                    group.len(),
                )]));
            } else {
                text.push_str(&self.codec.decode(group, true));
            }
        }
        Some((text, masks))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lanes of one run may take different numbers of steps (a remote lane's frames beside a
    /// local sampler's): scrubbing past a short lane's end shows no remasks there, and never
    /// reads past its frames.
    #[test]
    fn a_short_lane_scrubbed_past_its_end_remasked_nothing() {
        let frame = |step: usize, remasked: Vec<usize>| StepEvent {
            lane: 1,
            step,
            steps: 2,
            canvas: vec![7, 8],
            committed: vec![crate::sampler::Commit {
                pos: 0,
                id: 7,
                score: 0.0,
            }],
            masked: 0,
            nfe: step,
            elapsed: std::time::Duration::ZERO,
            speedup: 1.0,
            window: 0..2,
            scored: Vec::new(),
            remasked,
            blocks: None,
        };
        let lane = LaneView {
            label: "mercury frames".into(),
            frames: vec![frame(1, Vec::new()), frame(2, vec![0])],
            summary: None,
        };
        assert_eq!(lane.remasked_at(2), [(0, 7)]);
        assert!(lane.remasked_at(5).is_empty());
        assert!(lane.remasked_at(0).is_empty());
    }
}
