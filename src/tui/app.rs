//! The application state and the only function that changes it, [`update`] (Elm style). Side
//! effects (starting or cancelling a job, writing files) are returned as [`Effect`]s for the
//! runtime to carry out.

use std::sync::Arc;
use std::time::Duration;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers, MouseButton, MouseEvent, MouseEventKind};
use serde::{Deserialize, Serialize};

use super::editor::{index_at, visual_rows, Document, Unit};
use super::flow::Placed;
use super::keymap::{Command, KeyMap};
use super::params::ParamsForm;
use super::theme::Theme;
use crate::chat::ChatTemplate;
use crate::engine::trace::{Ending, Trace};
use crate::engine::{Event, Job, LaneSummary, StepEvent};
use crate::model::ModelInfo;
use crate::run::plan::{Lanes, Text};
use crate::run::{Field, LaneSpec, Settings};
use crate::sampler::{Commit, SamplerParams, Scored};
use crate::text::TextCodec;

/// Which panel receives typing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Focus {
    Editor,
    Params,
    Live,
}

impl Focus {
    const ORDER: [Focus; 3] = [Focus::Editor, Focus::Params, Focus::Live];

    fn step(self, forward: bool) -> Self {
        let i = Self::ORDER.iter().position(|f| *f == self).unwrap_or(0);
        let n = Self::ORDER.len();
        Self::ORDER[if forward {
            (i + 1) % n
        } else {
            (i + n - 1) % n
        }]
    }
}

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

/// Where a lane's text and tokens were drawn, for the mouse and the token cursor.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LaneCells {
    pub area: Rect,
    pub placed: Vec<Placed>,
}

/// Where a model the picker offers comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    Embedded,
    /// A model folder (a hub cache snapshot), shown by its hub id.
    Dir {
        dir: std::path::PathBuf,
        name: String,
    },
}

/// One row of the model picker.
#[derive(Debug, Clone, PartialEq)]
pub struct PickEntry {
    pub name: String,
    pub family: String,
    pub size: String,
    /// Why it cannot be opened (incomplete, unsupported); `None` when it can.
    pub problem: Option<String>,
    pub source: ModelSource,
}

/// The model picker overlay (F10): the embedded model and the hub cache's models, and a field
/// for a hub id to download.
#[derive(Debug, Clone, PartialEq)]
pub struct Picker {
    pub entries: Vec<PickEntry>,
    /// The row chosen; `entries.len()` is the hub id field.
    pub selected: usize,
    /// The hub id typed (ORG/NAME or ORG/NAME@REVISION).
    pub hub_id: String,
}

impl Picker {
    /// The embedded model, then every model repository in `cache_dir`, then the local
    /// `folders` (from `config.toml`).
    pub fn scan(cache_dir: Option<&std::path::Path>, folders: &[std::path::PathBuf]) -> Self {
        use crate::hub::scan::{scan, CachedModel};
        let embedded = PickEntry {
            name: crate::model::embedded::NAME.to_string(),
            family: "llada".into(),
            size: "20 MiB".into(),
            problem: None,
            source: ModelSource::Embedded,
        };
        let found = cache_dir.map(scan).unwrap_or_default().into_iter().chain(
            folders
                .iter()
                .map(|d| CachedModel::inspect(d.display().to_string(), d.clone(), false)),
        );
        let entries = std::iter::once(embedded)
            .chain(found.map(|m| PickEntry {
                problem: m.problem(),
                family: m.family.map_or_else(|_| "-".to_string(), str::to_string),
                size: crate::files::human_bytes(m.bytes),
                source: ModelSource::Dir {
                    dir: m.dir,
                    name: m.id.clone(),
                },
                name: m.id,
            }))
            .collect();
        Self {
            entries,
            selected: 0,
            hub_id: String::new(),
        }
    }

    /// Whether the hub id field is the row chosen.
    pub fn on_hub_id(&self) -> bool {
        self.selected >= self.entries.len()
    }
}

/// Positions of one lane marked for re-masking.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Remask {
    pub lane: usize,
    pub positions: std::collections::BTreeSet<usize>,
}

/// The token cursor of the live panel: a lane and a canvas position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenCursor {
    pub lane: usize,
    pub pos: usize,
}

/// The label of the lane `--beside` adds.
fn beside_label(remote: &str) -> String {
    format!("{remote} frames")
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

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageKind {
    Info,
    Error,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub text: String,
    pub kind: MessageKind,
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

/// Where the panels were last drawn (for mouse hit-testing).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rect {
    pub x: u16,
    pub y: u16,
    pub width: u16,
    pub height: u16,
    /// Rows of content scrolled off the top.
    pub scroll: usize,
    /// Rows of content in all (the most of any lane in the live panel).
    pub rows: usize,
}

impl Rect {
    pub fn contains(&self, x: u16, y: u16) -> bool {
        x >= self.x && x < self.x + self.width && y >= self.y && y < self.y + self.height
    }
}

pub struct App {
    pub doc: Document,
    pub settings: Settings,
    pub form: ParamsForm,
    pub run: Option<RunView>,
    pub focus: Focus,
    pub show_help: bool,
    /// Rows of the help overlay scrolled off its top (a short terminal cannot show it whole).
    pub help_scroll: usize,
    pub confidence_colours: bool,
    /// The per-step charts under the live panel (Ctrl-D).
    pub show_charts: bool,
    /// Colour tokens by the step that committed them (F2's third state).
    pub commit_order: bool,
    pub compare_mode: bool,
    /// Instruct models: the model's chat template, and whether runs wrap the text in it.
    pub chat_template: Option<ChatTemplate>,
    /// The label of the remote lane run beside the model (`--beside`): every run gets it as
    /// its last lane. A model picked in the app runs alone.
    pub beside: Option<String>,
    pub chat_mode: bool,
    pub message: Option<Message>,
    pub model: ModelInfo,
    pub tokens: Arc<TokenTable>,
    pub keymap: KeyMap,
    pub themes: Vec<Theme>,
    pub theme_index: usize,
    pub quit: bool,
    /// Inner area of the editor panel as last drawn.
    pub editor_area: Rect,
    /// Text area of the live panel's first lane as last drawn, with the scroll offset in effect.
    pub live_area: Rect,
    /// Named parameter sets Ctrl-L cycles through, and the one applied last.
    pub presets: Vec<(String, LaneSpec)>,
    pub preset: Option<usize>,
    /// Replay speed in steps per second; 0 shows every step as soon as it arrives.
    pub replay_speed: f64,
    /// The editor holds a cancelled run's partial text (F6), its masks left as spans: the next
    /// run goes on from it, with no new generation region after the text.
    pub continuing: bool,
    /// [`App::canvas_len`]'s last answer and what it was for (text, length, chat mode).
    canvas_len_cache: std::cell::RefCell<Option<CanvasLenKey>>,
    /// The last click in the editor (time and cell), to tell a double click.
    pub last_click: Option<(std::time::Instant, u16, u16)>,
    /// The parameter rows (with the first row shown) and the whole live panel as last drawn:
    /// clicks there pick a row or focus the panel.
    pub params_area: Rect,
    pub live_panel_area: Rect,
    /// The live panel's top row when the user has scrolled it; `None` follows the run (the
    /// newest commits stay in view).
    pub live_scroll: Option<usize>,
    /// The token inspector's cursor (`i` in the live panel, or a click on a token).
    pub inspector: Option<TokenCursor>,
    /// Show the sampler's proposals under masks (ghost text) and its window (`g`).
    pub ghosts: bool,
    /// Where each lane's tokens were last drawn.
    pub live_cells: Vec<LaneCells>,
    /// The step gauge's bar as last drawn.
    pub gauge_area: Rect,
    /// Committed tokens marked to be re-masked by the next refinement (`m`, then `r`).
    pub remask: Remask,
    /// The model picker, while open.
    pub picker: Option<Picker>,
    /// The Hugging Face cache the picker lists (set by the runtime).
    pub hub_cache: Option<std::path::PathBuf>,
    /// A model being loaded for a switch (its name).
    pub loading: Option<String>,
    /// A hub model being downloaded for a switch (the picker's hub id), with its progress.
    pub download: Option<super::download::DownloadView>,
    /// Local model folders the picker offers (`[model] folders`).
    pub model_folders: Vec<std::path::PathBuf>,
    /// The trace file this app replays (`dlm-tui replay`): there is no model to run.
    pub replay_of: Option<String>,
    codec: Arc<TextCodec>,
}

/// A canvas length and the text, generation length and chat mode it was counted for.
type CanvasLenKey = ((String, usize, bool), Option<usize>);

/// Something the runtime must do after an update.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    Submit(Job),
    /// Load this model and switch the app and the engine to it.
    LoadModel(ModelSource),
    /// Fetch this hub model (the download panel shows its progress), then switch to it.
    Download(crate::hub::RepoSpec),
    /// Stop the download under way.
    CancelDownload,
    /// Put this text on the clipboard (the terminal's, through OSC 52).
    Copy(String),
    Cancel,
    Export,
    Save,
}

/// Inputs to [`update`].
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Key(KeyEvent),
    Mouse(MouseEvent),
    Paste(String),
    Engine(Event),
    /// A message from the runtime (export finished, save failed, ...).
    Notify(Message),
    /// A command from outside the keyboard (e.g. SIGTERM asks to quit).
    Command(Command),
    /// Time passed (sent while a replay is behind the engine).
    Tick(Duration),
    /// News of the download the picker started.
    Download(DownloadNews),
}

/// What the runtime reports of a download.
#[derive(Debug, Clone, PartialEq)]
pub enum DownloadNews {
    Progress(crate::hub::DownloadProgress, Duration),
    /// The model's folder, or why there is none.
    Finished(Result<std::path::PathBuf, String>),
}

impl App {
    pub fn new(
        codec: Arc<TextCodec>,
        model: ModelInfo,
        keymap: KeyMap,
        themes: Vec<Theme>,
        theme_index: usize,
    ) -> Self {
        let tokens = Arc::new(TokenTable::new(&codec, &model));
        Self {
            doc: Document::default(),
            settings: Settings::default(),
            form: ParamsForm::default(),
            run: None,
            focus: Focus::Editor,
            show_help: false,
            help_scroll: 0,
            confidence_colours: false,
            commit_order: false,
            show_charts: false,
            compare_mode: false,
            chat_template: None,
            beside: None,
            chat_mode: false,
            message: None,
            model,
            tokens,
            keymap,
            themes,
            theme_index,
            quit: false,
            editor_area: Rect::default(),
            live_area: Rect::default(),
            live_scroll: None,
            inspector: None,
            ghosts: true,
            live_cells: Vec::new(),
            gauge_area: Rect::default(),
            remask: Remask::default(),
            picker: None,
            hub_cache: None,
            loading: None,
            download: None,
            model_folders: Vec::new(),
            replay_of: None,
            params_area: Rect::default(),
            live_panel_area: Rect::default(),
            last_click: None,
            canvas_len_cache: Default::default(),
            replay_speed: 0.0,
            continuing: false,
            presets: crate::run::presets(),
            preset: None,
            codec,
        }
    }

    pub fn theme(&self) -> &Theme {
        &self.themes[self.theme_index % self.themes.len()]
    }

    pub fn running(&self) -> bool {
        matches!(self.run.as_ref().map(|r| &r.state), Some(RunState::Running))
    }

    fn info(&mut self, text: impl Into<String>) {
        self.message = Some(Message {
            text: text.into(),
            kind: MessageKind::Info,
        });
    }

    fn error(&mut self, text: impl Into<String>) {
        self.message = Some(Message {
            text: text.into(),
            kind: MessageKind::Error,
        });
    }

    /// The lanes a run uses: one, or one per comparison lane (each may override parameters).
    pub fn lane_params(&self, masked: usize) -> Result<Vec<(String, SamplerParams)>, String> {
        let mode = if self.compare_mode {
            Lanes::Compare
        } else {
            Lanes::One
        };
        let mut lanes = crate::run::plan::lane_params(&self.settings, mode, masked, &self.model)
            .map_err(|e| format!("{e:#}"))?;
        if let Some(remote) = &self.beside {
            // The engine runs the last lane on the server beside the model (`--beside`).
            lanes.push((beside_label(remote), self.settings.sampler_params(masked)));
        }
        Ok(lanes)
    }

    /// Whether `lane` shows a text-streaming server's frames (the whole model's, or the lane
    /// beside it): no scores, frames rather than sampler steps.
    pub fn streams_text(&self, lane: &LaneView) -> bool {
        self.model.family == "remote"
            || self
                .beside
                .as_ref()
                .is_some_and(|b| lane.label == beside_label(b))
    }

    /// Switches to another model (loaded by the runtime): the editor's text and masks and the
    /// parameters stay; the last run, which belongs to the old model's tokens, goes.
    pub fn switch_model(
        &mut self,
        codec: Arc<TextCodec>,
        model: ModelInfo,
        chat_template: Option<ChatTemplate>,
    ) {
        self.tokens = Arc::new(TokenTable::new(&codec, &model));
        self.codec = codec;
        self.model = model;
        self.chat_mode = self.chat_mode && chat_template.is_some();
        self.chat_template = chat_template;
        self.beside = None;
        self.run = None;
        self.inspector = None;
        self.remask = Remask::default();
        self.live_scroll = None;
        self.loading = None;
        *self.canvas_len_cache.borrow_mut() = None;
        let name = self.model.name.clone();
        self.info(format!("switched to {name}: your text and masks are kept"));
        self.follow_model_blocks();
    }

    /// A block-diffusion model decodes in the blocks it was trained with: the `block length`
    /// parameter follows it (the user can change it again).
    pub fn follow_model_blocks(&mut self) {
        if let Some(blocks) = self.model.blocks {
            if self.settings.params.block_length != blocks.size {
                self.settings.params.block_length = blocks.size;
                self.info(format!(
                    "{} decodes block by block: block length {} (the model's; the parameters \
                     panel changes it)",
                    self.model.name, blocks.size
                ));
            }
        }
    }

    /// A model switch that failed: the current model stays.
    pub fn load_failed(&mut self, why: String) {
        let name = self.loading.take().unwrap_or_default();
        self.error(format!(
            "could not load {name}: {why}; {} stays",
            self.model.name
        ));
    }

    /// Builds the job for the editor's content, or explains why it cannot run.
    pub fn build_job(&self) -> Result<(Job, Vec<String>, usize), String> {
        let (canvas, prompt_len) = self.canvas()?;
        self.build_job_from(canvas, prompt_len)
    }

    /// The job for a given canvas (a refinement of the last run's), with the current settings.
    pub fn build_job_from(
        &self,
        canvas: Vec<u32>,
        prompt_len: usize,
    ) -> Result<(Job, Vec<String>, usize), String> {
        if let Some(source) = &self.replay_of {
            return Err(format!(
                "a replay ({source}) has no model to run: open `dlm-tui` on the model to run again"
            ));
        }
        let masked = canvas.iter().filter(|&&t| t == self.model.mask_id).count();
        if masked == 0 {
            return Err("nothing to denoise: mark a span (select text, then the mask key) or set a generation length".into());
        }
        let lanes = self.lane_params(masked)?;
        let labels = lanes.iter().map(|(l, _)| l.clone()).collect();
        Ok((
            Job {
                canvas,
                lanes: lanes.into_iter().map(|(_, p)| p).collect(),
                inspect: true,
            },
            labels,
            prompt_len,
        ))
    }

    /// How many tokens the next run's canvas holds (text, spans, generation region), whether
    /// or not they fit the model's context (past it, counted without building the canvas, so
    /// `[MASK:9999999999]` costs nothing); `None` when the count overflows.
    pub fn canvas_len(&self) -> Option<usize> {
        // The editor's title asks at every frame: tokenize only when the text, the length or
        // chat mode changed.
        let key = (
            self.doc.to_prompt(),
            self.generation_length(),
            self.chat_mode,
        );
        if let Some((cached, len)) = self.canvas_len_cache.borrow().as_ref() {
            if *cached == key {
                return *len;
            }
        }
        let len = self.count_canvas();
        *self.canvas_len_cache.borrow_mut() = Some((key, len));
        len
    }

    fn count_canvas(&self) -> Option<usize> {
        if let Ok((canvas, _)) = self.canvas() {
            return Some(canvas.len());
        }
        let segments = self.doc.segments();
        let masks = crate::prompt::mask_total(&segments)?.checked_add(self.generation_length())?;
        let text: usize = segments
            .iter()
            .filter_map(|s| match s {
                crate::prompt::Segment::Text(t) => self.codec.encode(t, false).ok(),
                crate::prompt::Segment::Masks(_) => None,
            })
            .map(|ids| ids.len())
            .sum();
        masks.checked_add(text)
    }

    /// How many masks the next run appends after the text: `length`, or none when it continues
    /// a cancelled run whose masks are already spans in the text.
    pub fn generation_length(&self) -> usize {
        if self.continuing && self.doc.mask_count() > 0 {
            0
        } else {
            self.settings.length
        }
    }

    /// The next run's canvas and the length of its prompt, refused past the model's context.
    fn canvas(&self) -> Result<(Vec<u32>, usize), String> {
        let prompt = self.doc.to_prompt();
        let text = match (&self.chat_template, self.chat_mode) {
            // The user's text (masks included, as [MASK:N]) becomes the user message.
            (Some(template), true) => Text::Chat(&prompt, template),
            _ => Text::Plain(&prompt),
        };
        let settings = Settings {
            length: self.generation_length(),
            ..self.settings.clone()
        };
        crate::run::plan::canvas(&settings, text, &self.codec, &self.model)
            .map_err(|e| format!("{e:#}"))
    }

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

    pub fn codec(&self) -> &TextCodec {
        &self.codec
    }
}

/// The only place state changes.
pub fn update(app: &mut App, action: Action) -> Vec<Effect> {
    // A message lasts until the user's next action (a key, a paste, a click or the wheel): what
    // that action says replaces it, so nothing stale stays on screen.
    let user_acts = match &action {
        Action::Key(_) | Action::Paste(_) => true,
        Action::Mouse(m) => !matches!(m.kind, MouseEventKind::Moved | MouseEventKind::Up(_)),
        _ => false,
    };
    if user_acts {
        app.message = None;
    }
    match action {
        Action::Key(key) => on_key(app, key),
        Action::Mouse(mouse) => {
            on_mouse(app, mouse);
            Vec::new()
        }
        Action::Paste(text) => {
            // Into the picker's hub id field while it is open.
            if let Some(picker) = app.picker.as_mut() {
                let first = text.lines().next().unwrap_or_default().trim();
                picker.selected = picker.entries.len();
                picker.hub_id.push_str(first);
                return Vec::new();
            }
            match app.focus {
                Focus::Editor => {
                    // A paste that cannot fit the context is refused before it is laid out
                    // (a 10 MB paste froze the UI); the count is a lower bound.
                    let chars = text.chars().count();
                    let at_least = chars.div_ceil(app.tokens.max_chars);
                    if at_least > app.model.max_context {
                        app.error(format!(
                            "not pasted: {chars} characters are at least {at_least} tokens, and the \
                             model's context holds {}",
                            app.model.max_context
                        ));
                    } else {
                        app.doc.insert_str(&text);
                        // A pasted marker that stayed text says why, as a typed one does.
                        if let Some(why) = Document::literal_marker_in(&text) {
                            app.info(why);
                        }
                    }
                }
                Focus::Params => app.form.type_text(&text),
                Focus::Live => {}
            }
            Vec::new()
        }
        Action::Engine(event) => {
            on_engine(app, event);
            Vec::new()
        }
        Action::Notify(message) => {
            app.message = Some(message);
            Vec::new()
        }
        Action::Command(command) => on_command(app, command),
        Action::Download(news) => on_download(app, news),
        Action::Tick(elapsed) => {
            let speed = app.replay_speed;
            if let Some(run) = app.run.as_mut().filter(|r| r.replaying()) {
                run.head = (run.head + elapsed.as_secs_f64() * speed).min(run.latest_step() as f64);
            }
            Vec::new()
        }
    }
}

fn on_key(app: &mut App, key: KeyEvent) -> Vec<Effect> {
    if app.show_help {
        // Up/Down and PageUp/PageDown scroll the overlay; any other key closes it (its own key
        // and Esc do nothing else).
        match key.code {
            KeyCode::Up => app.help_scroll = app.help_scroll.saturating_sub(1),
            KeyCode::Down => app.help_scroll += 1,
            KeyCode::PageUp => app.help_scroll = app.help_scroll.saturating_sub(10),
            KeyCode::PageDown => app.help_scroll += 10,
            _ => app.show_help = false,
        }
        return Vec::new();
    }
    if app.focus == Focus::Params && app.form.editing() {
        // While a value is typed, keys belong to the form (Esc cancels the edit).
        if let Some(result) = app.form.edit_key(key, &mut app.settings) {
            match result {
                Ok(()) => app.message = None,
                Err(e) => app.error(e),
            }
            return Vec::new();
        }
    }
    if app.download.is_some() {
        return download_key(app, key);
    }
    if app.picker.is_some() {
        return picker_key(app, key);
    }
    // Esc closes the token inspector before it means anything else.
    if app.focus == Focus::Live && app.inspector.is_some() && key.code == KeyCode::Esc {
        app.inspector = None;
        return Vec::new();
    }
    if let Some(command) = app.keymap.command(&key) {
        return on_command(app, command);
    }
    // `?` is help wherever it is not text being typed.
    if key.code == KeyCode::Char('?') && app.focus != Focus::Editor {
        return on_command(app, Command::Help);
    }
    match app.focus {
        Focus::Editor => editor_key(app, key),
        Focus::Params => {
            let auto_steps = app.doc.mask_count() + app.settings.length;
            if let Err(e) = app.form.key(key, &mut app.settings, auto_steps) {
                app.error(e);
            }
        }
        Focus::Live if key.code == KeyCode::Char('r') => return refine(app),
        Focus::Live => live_key(app, key),
    }
    Vec::new()
}

fn on_command(app: &mut App, command: Command) -> Vec<Effect> {
    match command {
        Command::ToggleCharts => {
            app.show_charts = !app.show_charts;
            return Vec::new();
        }
        Command::CyclePreset => {
            if app.presets.is_empty() {
                return Vec::new();
            }
            let next = app.preset.map_or(0, |i| (i + 1) % app.presets.len());
            let (name, spec) = app.presets[next].clone();
            match app.settings.with_preset(&spec) {
                Ok(settings) => {
                    app.settings = settings;
                    app.preset = Some(next);
                    app.info(format!("preset {name}: {spec}"));
                }
                Err(e) => app.error(format!("preset {name}: {e}")),
            }
            return Vec::new();
        }
        Command::CopyResult => {
            return match app.result_text() {
                Some(text) => {
                    app.info(format!(
                        "copied {} characters (OSC 52; if nothing arrives, F9 exports)",
                        text.chars().count()
                    ));
                    vec![Effect::Copy(text)]
                }
                None => {
                    app.info("nothing to copy yet: run first (F5)");
                    Vec::new()
                }
            };
        }
        Command::Reroll => {
            if app.running() {
                app.info("a run is in progress: cancel it first");
                return Vec::new();
            }
            // std's randomly keyed hasher is a source of fresh random bits without a new
            // dependency; small seeds are easier to read and type back.
            use std::hash::BuildHasher;
            let random = std::collections::hash_map::RandomState::new().hash_one(0u8);
            app.settings.params.seed = random % 1_000_000;
            let effects = run_now(app);
            if !effects.is_empty() {
                app.info(format!("re-rolled: seed {}", app.settings.params.seed));
            }
            return effects;
        }
        Command::Run => {
            if app.running() {
                app.info("a run is in progress: cancel it first");
                return Vec::new();
            }
            if app.settings.advance_seed && app.run.is_some() {
                app.settings.params.seed = app.settings.params.seed.wrapping_add(1);
            }
            return run_now(app);
        }
        Command::Cancel => {
            if app.running() {
                return vec![Effect::Cancel];
            }
            if app.doc.selection().is_some() {
                let c = app.doc.cursor();
                app.doc.move_to(c, false);
            }
            app.message = None;
        }
        Command::Quit => {
            app.quit = true;
            let mut effects = vec![Effect::Save];
            if app.running() {
                effects.insert(0, Effect::Cancel);
            }
            return effects;
        }
        Command::Help => {
            app.show_help = true;
            app.help_scroll = 0;
        }
        Command::PickModel => {
            if app.replay_of.is_some() {
                app.info("a replay has no model to switch; open `dlm-tui` to pick one");
            } else if app.loading.is_some() {
                app.info("a model is loading");
            } else {
                let mut picker = Picker::scan(app.hub_cache.as_deref(), &app.model_folders);
                picker.selected = picker
                    .entries
                    .iter()
                    .position(|e| e.name == app.model.name)
                    .unwrap_or(0);
                app.picker = Some(picker);
            }
        }
        Command::FocusNext => app.focus = app.focus.step(true),
        Command::FocusPrev => app.focus = app.focus.step(false),
        Command::MaskSelection => match app
            .doc
            .trim_selection()
            .then(|| app.doc.selected_text())
            .flatten()
        {
            Some(text) => {
                let after_space = app.doc.space_before_selection();
                let count = app.codec.span_tokens(&text, after_space);
                app.doc.mask_selection(count);
                // Short enough for 80 columns with a few words selected.
                let covers = if after_space && app.codec.span_takes_space() {
                    format!("\" {text}\" (a word's token holds the space before it)")
                } else {
                    format!("\"{text}\"")
                };
                app.info(format!(
                    "masked {count} token{}: {covers}",
                    if count == 1 { "" } else { "s" }
                ));
            }
            None if app.doc.selection().is_some() => {
                app.info("only white space is selected: select words to mask them")
            }
            None => app.info("select text first (Shift+arrows or drag), then mask it"),
        },
        Command::Unmask => {
            if !app.doc.unmask() {
                app.info("no masked span at the cursor");
            }
        }
        Command::SpanGrow | Command::SpanShrink => {
            let delta = if command == Command::SpanGrow { 1 } else { -1 };
            if !app.doc.resize_span(delta) {
                app.info("put the cursor on a masked span to change its size");
            }
        }
        Command::Undo => {
            app.doc.undo();
        }
        Command::Redo => {
            app.doc.redo();
        }
        Command::SelectAll => app.doc.select_all(),
        Command::ScrubBack | Command::ScrubForward | Command::ScrubFirst | Command::ScrubLast => {
            scrub(app, command)
        }
        // F2 cycles the colouring: plain, by confidence, by commit order.
        Command::ToggleConfidence => {
            (app.confidence_colours, app.commit_order) =
                match (app.confidence_colours, app.commit_order) {
                    (false, false) => (true, false),
                    (true, _) => (false, true),
                    (false, true) => (false, false),
                };
        }
        Command::ToggleCompare => {
            app.compare_mode = !app.compare_mode;
            let lanes: Vec<String> = app
                .settings
                .compare
                .iter()
                .map(LaneSpec::to_string)
                .collect();
            app.info(if app.settings.sweep >= 2 {
                // The sweep decides the lanes while it is set.
                format!(
                    "compare {}, but seed sweep is set: the next run has {} seed lanes (seed sweep off in the parameters panel to compare strategies)",
                    if app.compare_mode { "on" } else { "off" },
                    app.settings.sweep
                )
            } else if app.compare_mode {
                format!("compare on: next run has lanes {}", lanes.join(" | "))
            } else {
                "compare off".to_string()
            });
        }
        Command::ToggleChat => match app.chat_template {
            None => app.error("this model has no chat template (tokenizer_config.json)"),
            Some(_) => {
                app.chat_mode = !app.chat_mode;
                app.info(if app.chat_mode {
                    "chat on: the text is sent as a user message and the answer is denoised"
                } else {
                    "chat off: the text is the canvas"
                });
            }
        },
        Command::ApplyResult => match (&app.run, app.result_prompt()) {
            (Some(run), Some((text, masks))) if run.state != RunState::Running => {
                app.doc.replace_all_prompt(&text);
                app.continuing = masks > 0;
                if masks > 0 {
                    app.info(format!(
                        "partial result copied into the editor with its {masks} masks left as spans: F5 goes on (no new masks after the text); undo restores the old text"
                    ));
                } else {
                    app.info("result copied into the editor (undo restores the old text)");
                }
            }
            _ => app.info("no finished run to apply"),
        },
        Command::CycleTheme => {
            app.theme_index = (app.theme_index + 1) % app.themes.len();
            let name = app.theme().name.clone();
            app.info(format!("theme: {name}"));
        }
        Command::Export => {
            if app.run.is_some() {
                return vec![Effect::Export];
            }
            app.info("nothing to export yet: run first");
        }
    }
    Vec::new()
}

/// Starts a run of the editor's canvas with the current settings (autosaving first).
fn run_now(app: &mut App) -> Vec<Effect> {
    let prompt = app.doc.to_prompt();
    start(app, app.build_job(), prompt)
}

/// `m` in the live panel (with the inspector open): marks the committed token under the cursor
/// for re-masking, or unmarks it.
fn toggle_remask(app: &mut App) {
    let Some(cursor) = app.inspector else {
        return app
            .info("re-masking: open the inspector (i, or click a token), then m marks tokens");
    };
    let Some(run) = &app.run else { return };
    let Some(lane) = run.lanes.get(cursor.lane) else {
        return;
    };
    let canvas = lane.canvas_at(run.shown_step(), &run.initial);
    let generated = run
        .initial
        .get(cursor.pos)
        .is_some_and(|&t| t == app.model.mask_id);
    let committed = canvas
        .get(cursor.pos)
        .is_some_and(|&t| t != app.model.mask_id);
    if !(generated && committed) {
        return app.info("only committed tokens can be re-masked (not the prompt, not a mask)");
    }
    let marks = &mut app.remask;
    if marks.lane != cursor.lane {
        marks.positions.clear();
        marks.lane = cursor.lane;
    }
    if !marks.positions.remove(&cursor.pos) {
        marks.positions.insert(cursor.pos);
    }
    let n = marks.positions.len();
    app.info(format!(
        "{n} token{} marked to re-mask: r denoises them again with the rest fixed",
        if n == 1 { "" } else { "s" }
    ));
}

/// `r` in the live panel: a new run from the canvas shown, with the marked tokens (and any
/// position still masked) masked again and everything else fixed.
fn refine(app: &mut App) -> Vec<Effect> {
    let Some(run) = &app.run else {
        return Vec::new();
    };
    if run.state == RunState::Running {
        app.error("refine: the run is still going; wait for it or press Esc");
        return Vec::new();
    }
    let marks = &app.remask;
    let Some(lane) = run.lanes.get(marks.lane) else {
        return Vec::new();
    };
    let mut canvas = lane.canvas_at(run.shown_step(), &run.initial).to_vec();
    for &pos in &marks.positions {
        if let Some(t) = canvas.get_mut(pos) {
            *t = app.model.mask_id;
        }
    }
    if !canvas.contains(&app.model.mask_id) {
        app.info("refine: nothing to denoise; mark tokens with m (inspector open) first");
        return Vec::new();
    }
    let prompt = app.codec().canvas_text(&canvas, app.model.mask_id, true);
    let prompt_len = run.prompt_len;
    let job = app.build_job_from(canvas, prompt_len);
    app.remask.positions.clear();
    start(app, job, prompt)
}

/// Shows a new run of `job` (or its error) and asks the runtime to start it.
fn start(
    app: &mut App,
    job: Result<(Job, Vec<String>, usize), String>,
    prompt: String,
) -> Vec<Effect> {
    match job {
        Ok((job, labels, prompt_len)) => {
            app.remask.positions.clear();
            app.continuing = false;
            app.run = Some(RunView {
                recipe: RunRecipe {
                    prompt,
                    chat: app.chat_mode,
                    settings: app.settings.clone(),
                    lanes: labels
                        .iter()
                        .cloned()
                        .zip(job.lanes.iter().cloned())
                        .collect(),
                },
                initial: job.canvas.clone(),
                prompt_len,
                lanes: labels
                    .into_iter()
                    .map(|label| LaneView {
                        label,
                        frames: Vec::new(),
                        summary: None,
                    })
                    .collect(),
                state: RunState::Running,
                cursor: None,
                paced: app.replay_speed > 0.0,
                head: 0.0,
                agreement: Vec::new(),
                elapsed: Duration::ZERO,
            });
            app.message = None;
            app.live_scroll = None;
            // Autosave as well: the text that was run is never lost, even to a crash.
            vec![Effect::Submit(job), Effect::Save]
        }
        Err(e) => {
            app.error(e);
            Vec::new()
        }
    }
}

fn scrub(app: &mut App, command: Command) {
    let Some(run) = app.run.as_mut() else {
        return;
    };
    let latest = run.latest_step();
    let shown = run.shown_step();
    let next = match command {
        Command::ScrubBack => shown.saturating_sub(1),
        Command::ScrubForward => (shown + 1).min(latest),
        Command::ScrubFirst => 0,
        _ => latest,
    };
    // Showing the newest step means following the run as it goes (the replay from there).
    run.cursor = (next < latest).then_some(next);
    if run.cursor.is_none() {
        run.head = latest as f64;
    }
}

fn editor_key(app: &mut App, key: KeyEvent) {
    let shift = key.modifiers.contains(KeyModifiers::SHIFT);
    // Ctrl or Alt with Left/Right moves by words.
    let word = key
        .modifiers
        .intersects(KeyModifiers::CONTROL | KeyModifiers::ALT);
    let doc = &mut app.doc;
    match key.code {
        KeyCode::Char(c)
            if !key
                .modifiers
                .intersects(KeyModifiers::CONTROL | KeyModifiers::ALT) =>
        {
            doc.insert_str(&c.to_string());
            if c == ']' {
                // A marker that stayed text says why ("[MASK:0]": a span needs a token).
                if let Some(why) = app.doc.literal_marker_before_cursor() {
                    app.info(why);
                }
            }
        }
        KeyCode::Char('w') if key.modifiers.contains(KeyModifiers::CONTROL) => {
            doc.delete_word_back()
        }
        KeyCode::Enter => doc.insert_str("\n"),
        KeyCode::Backspace => doc.backspace(),
        KeyCode::Delete => doc.delete(),
        KeyCode::Left if word => doc.word_left(shift),
        KeyCode::Right if word => doc.word_right(shift),
        KeyCode::Left => doc.left(shift),
        KeyCode::Right => doc.right(shift),
        KeyCode::Up => doc.up(shift),
        KeyCode::Down => doc.down(shift),
        KeyCode::Home => doc.home(shift),
        KeyCode::End => doc.end(shift),
        _ => {}
    }
}

fn live_key(app: &mut App, key: KeyEvent) {
    let page = app.live_area.height.saturating_sub(1).max(1) as isize;
    match key.code {
        KeyCode::Char('i') => return toggle_inspector(app),
        KeyCode::Char('m') => return toggle_remask(app),
        KeyCode::Char('g') => {
            app.ghosts = !app.ghosts;
            return app.info(if app.ghosts {
                "sampler view on: proposals under masks (italic; dim from an earlier step), │ marks the window"
            } else {
                "sampler view off: masks shown as ▒▒▒"
            });
        }
        _ => {}
    }
    // With the inspector open, the arrows move its token (PageUp/PageDown still scrub).
    if app.inspector.is_some() {
        let moved = match key.code {
            KeyCode::Left => move_token(app, 0, -1),
            KeyCode::Right => move_token(app, 0, 1),
            KeyCode::Up => move_token(app, -1, 0),
            KeyCode::Down => move_token(app, 1, 0),
            _ => false,
        };
        if moved
            || matches!(
                key.code,
                KeyCode::Left | KeyCode::Right | KeyCode::Up | KeyCode::Down
            )
        {
            return;
        }
    }
    let command = match key.code {
        KeyCode::Left => Command::ScrubBack,
        KeyCode::Right => Command::ScrubForward,
        KeyCode::Home => Command::ScrubFirst,
        KeyCode::End => {
            // The newest step, followed again.
            app.live_scroll = None;
            Command::ScrubLast
        }
        // Up/Down scroll a row, with Shift a page (PageUp/PageDown scrub everywhere).
        KeyCode::Up if key.modifiers.contains(KeyModifiers::SHIFT) => {
            return scroll_live(app, -page)
        }
        KeyCode::Down if key.modifiers.contains(KeyModifiers::SHIFT) => {
            return scroll_live(app, page)
        }
        KeyCode::Char(' ') => return play_pause(app),
        KeyCode::Char('+') | KeyCode::Char('=') => return change_speed(app, true),
        KeyCode::Char('-') => return change_speed(app, false),
        KeyCode::Up => return scroll_live(app, -1),
        KeyCode::Down => return scroll_live(app, 1),
        _ => return,
    };
    scrub(app, command);
}

/// Keys while the model picker is open: Up/Down choose, Enter switches, Esc closes; typing
/// goes to the hub id field, where Enter downloads the model and then switches to it.
fn picker_key(app: &mut App, key: KeyEvent) -> Vec<Effect> {
    // F10 (Alt-m) again closes it.
    if app.keymap.command(&key) == Some(Command::PickModel) {
        app.picker = None;
        return Vec::new();
    }
    let Some(picker) = app.picker.as_mut() else {
        return Vec::new();
    };
    let field = picker.entries.len();
    let plain = !key
        .modifiers
        .intersects(KeyModifiers::CONTROL | KeyModifiers::ALT);
    match key.code {
        KeyCode::Up => picker.selected = picker.selected.saturating_sub(1),
        KeyCode::Down => picker.selected = (picker.selected + 1).min(field),
        KeyCode::Esc => app.picker = None,
        KeyCode::Char(c) if plain => {
            picker.selected = field;
            picker.hub_id.push(c);
        }
        KeyCode::Backspace if picker.on_hub_id() => {
            picker.hub_id.pop();
        }
        KeyCode::Enter if picker.on_hub_id() => {
            let typed = picker.hub_id.trim().to_string();
            if typed.is_empty() {
                app.error("type a hub id, like GSAI-ML/LLaDA-8B-Instruct, then Enter");
                return Vec::new();
            }
            let spec = match crate::hub::RepoSpec::parse(&typed) {
                Ok(spec) => spec,
                Err(e) => {
                    app.error(format!("{e:#}"));
                    return Vec::new();
                }
            };
            if matches!(app.run.as_ref().map(|r| &r.state), Some(RunState::Running)) {
                app.error("a run is going: wait for it or press Esc, then switch");
                return Vec::new();
            }
            app.picker = None;
            app.download = Some(super::download::DownloadView {
                spec: spec.to_string(),
                endpoint: crate::hub::endpoint(),
                cache_dir: app
                    .hub_cache
                    .as_ref()
                    .map_or_else(String::new, |d| d.display().to_string()),
                progress: Default::default(),
                elapsed: Duration::ZERO,
            });
            return vec![Effect::Download(spec)];
        }
        KeyCode::Enter => {
            let entry = picker.entries[picker.selected].clone();
            if let Some(problem) = entry.problem {
                app.error(format!("{}: {problem}", entry.name));
                return Vec::new();
            }
            if matches!(app.run.as_ref().map(|r| &r.state), Some(RunState::Running)) {
                app.error("a run is going: wait for it or press Esc, then switch");
                return Vec::new();
            }
            app.picker = None;
            if entry.name == app.model.name {
                app.info(format!("{} is the model in use", entry.name));
                return Vec::new();
            }
            app.info(format!("loading {}…", entry.name));
            app.loading = Some(entry.name);
            return vec![Effect::LoadModel(entry.source)];
        }
        _ => {}
    }
    Vec::new()
}

/// Keys while a download runs: Esc (or q) cancels it; everything else waits.
fn download_key(app: &mut App, key: KeyEvent) -> Vec<Effect> {
    match key.code {
        KeyCode::Esc | KeyCode::Char('q') => {
            app.info("cancelling the download…");
            vec![Effect::CancelDownload]
        }
        _ => Vec::new(),
    }
}

/// A download's progress, or its end: a finished one loads the model and switches to it.
fn on_download(app: &mut App, news: DownloadNews) -> Vec<Effect> {
    let Some(view) = app.download.as_mut() else {
        return Vec::new();
    };
    match news {
        DownloadNews::Progress(progress, elapsed) => {
            view.progress = progress;
            view.elapsed = elapsed;
            Vec::new()
        }
        DownloadNews::Finished(Err(why)) => {
            app.download = None;
            app.error(why);
            Vec::new()
        }
        DownloadNews::Finished(Ok(dir)) => {
            let name = view.spec.clone();
            app.download = None;
            app.info(format!("loading {name}…"));
            app.loading = Some(name.clone());
            vec![Effect::LoadModel(ModelSource::Dir { dir, name })]
        }
    }
}

/// `i` in the live panel: opens the token inspector on the token in view that the step shown
/// committed (else the first mask, else the first token), or closes it.
fn toggle_inspector(app: &mut App) {
    if app.inspector.take().is_some() {
        return;
    }
    let Some(run) = &app.run else {
        return app.info("the token inspector needs a run: press F5 first");
    };
    let step = run.shown_step();
    let Some(lane) = run.lanes.first() else {
        return;
    };
    let canvas = lane.canvas_at(step, &run.initial);
    let fresh = lane
        .frame_at(step)
        .and_then(|f| f.committed.iter().map(|c| c.pos).min());
    let pos = fresh
        .or_else(|| canvas.iter().position(|&t| t == app.model.mask_id))
        .unwrap_or(run.prompt_len.min(canvas.len().saturating_sub(1)));
    app.inspector = Some(TokenCursor { lane: 0, pos });
    app.live_scroll = None;
    app.info("token inspector: arrows move it, a click picks a token, PageUp/PageDown step, i or Esc closes");
}

/// Moves the inspector's token by `rows` rows (to the token nearest its column) or by `tokens`
/// tokens, over the layout last drawn. Returns whether it moved.
fn move_token(app: &mut App, rows: isize, tokens: isize) -> bool {
    let Some(cursor) = app.inspector else {
        return false;
    };
    let Some(cells) = app.live_cells.get(cursor.lane) else {
        return false;
    };
    let placed = &cells.placed;
    let Some(here) = placed.iter().position(|p| p.pos == cursor.pos) else {
        return false;
    };
    let next = if tokens != 0 {
        // The next or previous piece that starts at another position.
        let mut starts: Vec<usize> = placed.iter().map(|p| p.pos).collect();
        starts.dedup();
        let at = starts.iter().position(|&p| p == cursor.pos).unwrap_or(0) as isize;
        let to = (at + tokens).clamp(0, starts.len() as isize - 1) as usize;
        starts.get(to).copied()
    } else {
        // The next row that holds a token (blank lines between paragraphs hold none).
        let col = placed[here].col;
        let last = placed.last().map_or(0, |p| p.row) as isize;
        let mut row = placed[here].row as isize + rows;
        let mut found = None;
        while (0..=last).contains(&row) && found.is_none() {
            found = super::flow::piece_at(placed, row as usize, col);
            row += rows;
        }
        found
    };
    match next {
        Some(pos) if pos != cursor.pos => {
            app.inspector = Some(TokenCursor { pos, ..cursor });
            // The view keeps the token on screen.
            app.live_scroll = None;
            true
        }
        _ => false,
    }
}

/// Replay speeds `+` and `-` step through (steps per second); 0 is "as fast as the engine".
const REPLAY_SPEEDS: [f64; 8] = [1.0, 2.0, 5.0, 10.0, 20.0, 40.0, 80.0, 0.0];

/// Space in the live panel: pauses the view where it is, or plays on from there.
fn play_pause(app: &mut App) {
    let speed = app.replay_speed;
    let Some(run) = app.run.as_mut() else {
        return;
    };
    match run.cursor {
        Some(step) => {
            // Play on from the step shown, at the replay speed.
            run.paced = speed > 0.0;
            run.head = step as f64;
            run.cursor = None;
            app.info("playing");
        }
        None => {
            run.cursor = Some(run.shown_step());
            app.info("paused: Space plays on, ←→ step, End jumps to the newest step");
        }
    }
}

/// `+` / `-` in the live panel: the next or previous replay speed.
fn change_speed(app: &mut App, faster: bool) {
    let at = REPLAY_SPEEDS
        .iter()
        .position(|&s| s == app.replay_speed)
        .unwrap_or(4);
    let next = if faster {
        (at + 1).min(REPLAY_SPEEDS.len() - 1)
    } else {
        at.saturating_sub(1)
    };
    app.replay_speed = REPLAY_SPEEDS[next];
    if let Some(run) = app.run.as_mut() {
        if run.cursor.is_none() {
            run.head = run.shown_step() as f64;
        }
        run.paced = app.replay_speed > 0.0;
    }
    app.info(match app.replay_speed {
        0.0 => "replay: every step as it arrives".to_string(),
        s => format!("replay: {s} steps per second"),
    });
}

/// Scrolls the live panel by `delta` rows from where it is drawn. The user takes over from
/// following the run; scrolling back to the bottom of a running canvas follows it again.
pub fn scroll_live(app: &mut App, delta: isize) {
    let area = app.live_area;
    let max = area.rows.saturating_sub(area.height as usize);
    let from = app.live_scroll.unwrap_or(area.scroll).min(max);
    let to = from.saturating_add_signed(delta).min(max);
    let running = app
        .run
        .as_ref()
        .is_some_and(|r| r.state == RunState::Running);
    app.live_scroll = if running && to == max && delta > 0 {
        None
    } else {
        Some(to)
    };
    app.live_area.scroll = to;
}

/// Display width of a unit in the editor (mask spans are drawn as a labelled block).
pub fn unit_width(unit: &Unit) -> usize {
    match unit {
        Unit::Char(c) => unicode_width(*c),
        Unit::Mask { count, .. } => span_label(*count).chars().count(),
    }
}

pub fn span_label(count: usize) -> String {
    format!("[▒{count}]")
}

/// Cells a character of the editor takes: its Unicode width (2 for CJK, 0 for combining
/// marks), a tab 4 and a line break 1 (where the cursor shows at the end of a line).
fn unicode_width(c: char) -> usize {
    use unicode_width::UnicodeWidthChar;
    match c {
        '\t' => 4,
        '\n' => 1,
        c => c.width().unwrap_or(1),
    }
}

/// The step a click at column `x` of the step gauge's bar means: the left end is before the
/// first step, the right end the last of `planned`.
pub fn gauge_step(bar: Rect, x: u16, planned: usize) -> usize {
    if bar.width == 0 {
        return 0;
    }
    let offset = x.saturating_sub(bar.x).min(bar.width - 1) as f64;
    let span = (bar.width.max(2) - 1) as f64;
    (offset / span * planned as f64).round() as usize
}

/// Two clicks this close together are a double click.
const DOUBLE_CLICK: Duration = Duration::from_millis(400);

fn on_mouse(app: &mut App, mouse: MouseEvent) {
    let area = app.editor_area;
    let live = app.live_area;
    let (params, live_panel) = (app.params_area, app.live_panel_area);
    let (x, y) = (mouse.column, mouse.row);
    match mouse.kind {
        // A click on the parameters picks that row; on the live panel, focuses it.
        MouseEventKind::Down(MouseButton::Left) if params.contains(x, y) => {
            app.focus = Focus::Params;
            let row = params.scroll + (y - params.y) as usize;
            if row < Field::ALL.len() && !app.form.editing() {
                app.form.row = row;
            }
        }
        // A click or a drag on the step gauge scrubs there (and pauses the replay).
        MouseEventKind::Down(MouseButton::Left) | MouseEventKind::Drag(MouseButton::Left)
            if app.gauge_area.contains(x, y)
                || (matches!(mouse.kind, MouseEventKind::Drag(_))
                    && app.gauge_area.width > 0
                    && y == app.gauge_area.y) =>
        {
            if let Some(run) = app.run.as_mut() {
                let latest = run.latest_step();
                let planned = run.planned_steps();
                let step = gauge_step(app.gauge_area, x, planned).min(latest);
                run.cursor = Some(step);
                app.focus = Focus::Live;
            }
        }
        MouseEventKind::Down(MouseButton::Left) if live_panel.contains(x, y) => {
            app.focus = Focus::Live;
            // A click on a token opens the inspector there.
            let hit = app.live_cells.iter().enumerate().find_map(|(lane, cells)| {
                let area = cells.area;
                area.contains(x, y).then(|| {
                    let row = area.scroll + (y - area.y) as usize;
                    super::flow::piece_at(&cells.placed, row, (x - area.x) as usize)
                        .map(|pos| TokenCursor { lane, pos })
                })?
            });
            if let Some(cursor) = hit {
                app.inspector = Some(cursor);
                app.live_scroll = Some(app.live_area.scroll);
            }
        }
        MouseEventKind::ScrollUp | MouseEventKind::ScrollDown if params.contains(x, y) => {
            let up = mouse.kind == MouseEventKind::ScrollUp;
            app.form.row = if up {
                app.form.row.saturating_sub(1)
            } else {
                (app.form.row + 1).min(Field::ALL.len() - 1)
            };
        }
        MouseEventKind::ScrollUp | MouseEventKind::ScrollDown
            if live.contains(x, y) || live_panel.contains(x, y) =>
        {
            let rows = if mouse.kind == MouseEventKind::ScrollUp {
                -3
            } else {
                3
            };
            scroll_live(app, rows);
        }
        MouseEventKind::Down(MouseButton::Left) | MouseEventKind::Drag(MouseButton::Left) => {
            if !area.contains(mouse.column, mouse.row) {
                return;
            }
            app.focus = Focus::Editor;
            let row = (mouse.row - area.y) as usize + area.scroll;
            let column = (mouse.column - area.x) as usize;
            let units = app.doc.units();
            let rows = visual_rows(units, (area.width as usize).saturating_sub(1), unit_width);
            let index = index_at(units, &rows, row, column, unit_width);
            let drag = matches!(mouse.kind, MouseEventKind::Drag(_));
            app.doc.move_to(index, drag);
            if !drag {
                // A second click on the same cell within the double-click time selects the word.
                let now = std::time::Instant::now();
                let double = app.last_click.is_some_and(|(at, x, y)| {
                    (x, y) == (mouse.column, mouse.row) && now.duration_since(at) < DOUBLE_CLICK
                });
                if double {
                    app.doc.select_word_at(index);
                    app.last_click = None;
                } else {
                    app.last_click = Some((now, mouse.column, mouse.row));
                }
            }
        }
        _ => {}
    }
}

fn on_engine(app: &mut App, event: Event) {
    let Some(run) = app.run.as_mut() else {
        return;
    };
    match event {
        Event::Step(step) => {
            run.elapsed = run.elapsed.max(step.elapsed);
            if let Some(lane) = run.lanes.get_mut(step.lane) {
                lane.frames.push(step);
            }
        }
        Event::LaneDone(summary) => {
            if let Some(lane) = run.lanes.get_mut(summary.lane) {
                lane.summary = Some(summary);
            }
            // Lanes are compared once, when one finishes, not at every frame.
            if run.lanes.len() > 1 {
                run.agreement = run.agreements(app.model.mask_id);
            }
        }
        Event::Finished { elapsed } => {
            run.state = RunState::Done;
            run.elapsed = elapsed;
        }
        Event::Cancelled => {
            run.state = RunState::Cancelled;
            app.info("cancelled: the partial canvas stays visible");
        }
        Event::Failed(message) => {
            run.state = RunState::Failed(message.clone());
            app.error(format!("the model failed: {message}"));
        }
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
