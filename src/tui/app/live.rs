//! The live room: planning and starting runs (and refinements), the engine's steps, the
//! step shown (scrubbing, replay), the token inspector and re-masking, the live panel's
//! scrolling, and what a run's result becomes (copy, apply, export).

use std::time::Duration;

use super::run_view::LaneView;
use super::{App, Command, Effect, RunRecipe, RunState, RunView};
use crate::engine::{Event, Job};
use crate::run::plan::{Lanes, Text};
use crate::run::Settings;
use crate::sampler::SamplerParams;

/// A canvas length and the text, generation length and chat mode it was counted for.
pub(super) type CanvasLenKey = ((String, usize, bool), Option<usize>);

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

impl App {
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
        self.model.family == crate::model::Family::Remote
            || self
                .beside
                .as_ref()
                .is_some_and(|b| lane.label == beside_label(b))
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
            // The same text, settings and seed as the run before give the same result: say so,
            // and how to get another.
            let again = app.run.as_ref().is_some_and(|r| {
                r.recipe.prompt == prompt
                    && r.recipe.chat == app.chat_mode
                    && r.recipe.settings == app.settings
                    && r.initial == job.canvas
            });
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
            if again {
                let seed = app.settings.params.seed;
                let reroll = app.key_name(Command::Reroll);
                app.info(format!(
                    "seed {seed} again with the same text and settings: the same result as the \
                     last run ({reroll} re-rolls the seed; advance seed in the parameters moves \
                     it on at every run)"
                ));
            }
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

/// The live panel's and the inspector's commands, and the global ones about runs.
pub(super) fn command(app: &mut App, command: Command) -> Vec<Effect> {
    let page = app.drawn.live.height.saturating_sub(1).max(1) as isize;
    match command {
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
        Command::Reroll => return reroll(app),
        Command::Refine => return refine(app),
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
        Command::ApplyResult => apply_result(app),
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
        Command::Export => {
            if app.run.is_some() {
                return vec![Effect::Export];
            }
            app.info("nothing to export yet: run first");
        }
        Command::ScrubBack | Command::StepBack => scrub(app, Command::ScrubBack),
        Command::ScrubForward | Command::StepForward => scrub(app, Command::ScrubForward),
        Command::ScrubFirst | Command::StepFirst => scrub(app, Command::ScrubFirst),
        Command::ScrubLast => scrub(app, Command::ScrubLast),
        Command::StepLast => {
            // The newest step, followed again.
            app.live_scroll = None;
            scrub(app, Command::ScrubLast)
        }
        Command::ScrollUp => scroll_live(app, -1),
        Command::ScrollDown => scroll_live(app, 1),
        Command::PageUp => scroll_live(app, -page),
        Command::PageDown => scroll_live(app, page),
        Command::PlayPause => play_pause(app),
        Command::Faster => change_speed(app, true),
        Command::Slower => change_speed(app, false),
        Command::Inspect => toggle_inspector(app),
        Command::Remask => toggle_remask(app),
        Command::Ghosts => {
            app.ghosts = !app.ghosts;
            app.info(if app.ghosts {
                "sampler view on: proposals under masks (italic; dim from an earlier step), │ marks the window"
            } else {
                "sampler view off: masks shown as ▒▒▒"
            });
        }
        // The arrows move the inspector's token; at an edge they do nothing (not a scrub).
        Command::TokenLeft => {
            move_token(app, 0, -1);
        }
        Command::TokenRight => {
            move_token(app, 0, 1);
        }
        Command::TokenUp => {
            move_token(app, -1, 0);
        }
        Command::TokenDown => {
            move_token(app, 1, 0);
        }
        Command::CloseInspector => app.inspector = None,
        _ => {}
    }
    Vec::new()
}

/// Runs again with a fresh random seed.
fn reroll(app: &mut App) -> Vec<Effect> {
    if app.running() {
        app.info("a run is in progress: cancel it first");
        return Vec::new();
    }
    // std's randomly keyed hasher is a source of fresh random bits without a new dependency;
    // small seeds are easier to read and type back.
    use std::hash::BuildHasher;
    let random = std::collections::hash_map::RandomState::new().hash_one(0u8);
    app.settings.params.seed = random % 1_000_000;
    let effects = run_now(app);
    if !effects.is_empty() {
        app.info(format!("re-rolled: seed {}", app.settings.params.seed));
    }
    effects
}

/// F6: the finished (or cancelled) run's text into the editor, its open masks as spans.
fn apply_result(app: &mut App) {
    match (&app.run, app.result_prompt()) {
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
    }
}

/// Time passed: a replay behind the engine moves on at its speed.
pub(super) fn tick(app: &mut App, elapsed: Duration) {
    let speed = app.replay_speed;
    if let Some(run) = app.run.as_mut().filter(|r| r.replaying()) {
        run.head = (run.head + elapsed.as_secs_f64() * speed).min(run.latest_step() as f64);
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
    let Some(cells) = app.drawn.lanes.get(cursor.lane) else {
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
            found = crate::tui::flow::piece_at(placed, row as usize, col);
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
    let area = app.drawn.live;
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
    app.drawn.live.scroll = to;
}

pub(super) fn on_engine(app: &mut App, event: Event) {
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
mod tests;
