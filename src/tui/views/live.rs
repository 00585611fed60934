//! The live denoising panel (one lane) and the comparison view (several lanes side by side).

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Paragraph, Wrap};
use ratatui::Frame;

use super::{inner, inspector, panel, styled};
use crate::sampler::Strategy;
use crate::tui::app::{
    Agreement, App, Area as HitRect, Colouring, Focus, LaneCells, LaneView, RunState, RunView,
};
use crate::tui::flow::{self, visible_whitespace, Piece};
use crate::tui::keymap::Command;

/// How one masked position is drawn when the sampler has not proposed a token for it yet (the
/// width of an average token of the embedded model, so that text moves little as it fills in).
/// The editor's spans use the same glyph.
pub const MASK_GLYPH: &str = "▒▒▒";

/// Marks the edges of the step's semi-autoregressive window.
pub const WINDOW_MARK: &str = "│";

/// Draws the panel; returns the first lane's text area with the scroll offset in effect and
/// its rows (for scrolling and the mouse), and where every lane's tokens went.
pub fn render(app: &App, frame: &mut Frame, area: Rect) -> (HitRect, Vec<LaneCells>) {
    let Some(run) = &app.run else {
        let block = panel(app, " Live ", Some(Focus::Live));
        let text = Paragraph::new(format!(
            "Nothing has run yet. Press {} to denoise the masked spans and the generation region; \
             each step appears here as it arrives.",
            app.key_name(Command::Run)
        ))
        .style(app.theme().label)
        .wrap(Wrap { trim: true });
        frame.render_widget(text, inner(&block, area));
        frame.render_widget(block, area);
        return (HitRect::default(), Vec::new());
    };
    let n = run.lanes.len().max(1);
    let areas = Layout::horizontal(vec![Constraint::Ratio(1, n as u32); n]).split(area);
    let mut cells = Vec::with_capacity(run.lanes.len());
    for (i, lane_area) in areas.iter().enumerate().take(run.lanes.len()) {
        let agreement = run.agreement.get(i).and_then(Option::as_ref);
        cells.push(render_lane(app, run, i, agreement, frame, *lane_area));
    }
    let rows = cells.iter().map(|c| c.area.rows).max().unwrap_or(0);
    let first = HitRect {
        rows,
        ..cells.first().map(|c| c.area).unwrap_or_default()
    };
    (first, cells)
}

/// Draws lane `index` of the run.
fn render_lane(
    app: &App,
    run: &RunView,
    index: usize,
    agreement: Option<&Agreement>,
    frame: &mut Frame,
    area: Rect,
) -> LaneCells {
    let lane = &run.lanes[index];
    let theme = app.theme();
    let step = run.shown_step();
    let frame_event = lane.frame_at(step);
    let canvas = lane.canvas_at(step, &run.initial);
    let fresh: Vec<usize> = frame_event
        .map(|f| f.committed.iter().map(|c| c.pos).collect())
        .unwrap_or_default();
    let shown = step.min(lane.frames.len());
    // Before the first step arrives, the plan is the lane's own step count.
    let recipe = run.recipe.lanes.get(index).map(|(_, params)| params);
    let recipe_steps = recipe.map_or(0, |params| params.steps);
    let planned = frame_event.map_or_else(
        || lane.frames.first().map_or(recipe_steps, |f| f.steps),
        |f| f.steps,
    );
    // By commit order, a token's place in the run (0 first step, 1 last) takes the confidence
    // palette's place; the legend gives the step ranges.
    let scores = if app.colouring == Colouring::Confidence {
        lane.scores_until(step, canvas.len())
    } else if app.colouring == Colouring::CommitOrder {
        let last = planned.max(2) - 1;
        lane.commit_steps_until(step, canvas.len())
            .into_iter()
            .map(|s| s.map(|s| (s - 1) as f64 / last as f64))
            .collect()
    } else {
        Vec::new()
    };
    // Scrubbing shows an earlier step: the title says so, and how the run itself stands.
    // A replay trailing the engine says so, and a paused one too.
    let scrubbing = run.cursor.is_some();
    let behind = step < run.latest_step();
    let state = match (&run.state, scrubbing, behind) {
        (RunState::Running, false, false) => "running",
        (RunState::Running, false, true) => "replaying, still running",
        (RunState::Running, true, _) => "paused, still running",
        (RunState::Done, false, false) => "done",
        (RunState::Done, false, true) => "replaying",
        (RunState::Done, true, _) => "run finished",
        (RunState::Cancelled, false, false) => "cancelled",
        (RunState::Cancelled, false, true) => "replaying",
        (RunState::Cancelled, true, _) => "run cancelled",
        (RunState::Failed(_), false, false) => "failed",
        (RunState::Failed(_), _, _) => "run failed",
    };
    // Narrow lanes (four side by side) get shorter forms rather than a cut title.
    let room = area.width.saturating_sub(2) as usize;
    let title = [
        format!(" {} · step {shown} of {planned} · {state} ", lane.label),
        format!(" {} · {shown}/{planned} · {state} ", lane.label),
        format!(" {} · {shown}/{planned} ", lane.label),
    ]
    .into_iter()
    .find(|t| t.chars().count() <= room)
    .unwrap_or_else(|| format!(" {} ", lane.label));
    let block = panel(app, title, Some(Focus::Live));
    let body = inner(&block, area);

    let tokens = &app.tokens;
    // The view follows the newest commits (else the first mask); with the inspector open, its
    // token.
    let cursor = app.inspector.filter(|c| c.lane == index).map(|c| c.pos);
    let target = cursor.or_else(|| {
        fresh
            .iter()
            .min()
            .copied()
            .or_else(|| canvas.iter().position(|&id| id == tokens.mask_id))
    });
    // The sampler's view of the step shown: its window, and its proposal under each mask
    // (ghost text), from this step or the last one that scored the position.
    let window = frame_event.map(|f| f.window.clone()).filter(|_| app.ghosts);
    let ghosts = if app.ghosts {
        lane.ghosts_until(step, canvas.len())
    } else {
        Vec::new()
    };
    let bridged: Vec<usize> = frame_event
        .and_then(|f| f.blocks.as_ref())
        .map(|b| b.bridged.clone())
        .unwrap_or_default();
    // Tokens this step masked again (ReMDM) show struck through, as they were.
    let remasked_now: std::collections::HashMap<usize, u32> =
        lane.remasked_at(step).into_iter().collect();
    let plain = |id: u32| id != tokens.mask_id && !tokens.is_eos(id);
    let token_pieces = token_pieces(
        canvas,
        plain,
        |id| tokens.text(id),
        |ids| app.codec().decode(ids, false),
    );
    let mut pieces: Vec<Piece> = Vec::with_capacity(token_pieces.len() + 2);
    let marker = |pos: usize| Piece {
        range: pos..pos,
        text: WINDOW_MARK.to_string(),
        style: theme.label,
        alone: true,
    };
    for (range, piece) in token_pieces {
        let pos = range.start;
        if window.as_ref().is_some_and(|w| w.start == pos && pos > 0) {
            pieces.push(marker(pos));
        }
        let id = canvas[pos];
        let is_context = run.initial.get(pos).is_some_and(|&t| t != tokens.mask_id);
        let fresh_here = range.clone().any(|p| fresh.contains(&p));
        let mut alone = false;
        let (text, style): (String, Style) = if let Some(&held) = remasked_now.get(&pos) {
            (
                ghost_text(tokens.text(held)),
                theme.mask.add_modifier(Modifier::CROSSED_OUT),
            )
        } else if id == tokens.mask_id {
            match ghosts.get(pos).copied().flatten() {
                Some((ghost, now)) => {
                    let style = theme.mask.add_modifier(Modifier::ITALIC);
                    let style = if now {
                        style
                    } else {
                        style.add_modifier(Modifier::DIM)
                    };
                    (ghost_text(tokens.text(ghost)), style)
                }
                None => {
                    alone = true;
                    (MASK_GLYPH.to_string(), theme.mask)
                }
            }
        } else if tokens.is_eos(id) {
            ("∅".to_string(), theme.eos)
        } else {
            // A piece of several tokens (one character split across them) takes the most
            // telling style of its tokens: fresh over confidence over committed.
            let style = if is_context {
                theme.context
            } else if fresh_here {
                theme.fresh
            } else if let Some(Some(score)) = scores.get(pos) {
                theme.confidence(*score)
            } else {
                theme.committed
            };
            (piece, style)
        };
        // Where finished lanes differ (token-aligned), marked on tokens that already hold
        // their final value; a token committed in the step shown keeps its highlight.
        let differs = agreement.is_some_and(|a| {
            range.clone().any(|p| {
                a.disagree.get(p).copied().unwrap_or(false)
                    && lane.summary.as_ref().and_then(|s| s.canvas.get(p)) == Some(&canvas[p])
            })
        });
        let style = if differs && !is_context && !fresh_here {
            style.patch(theme.disagree)
        } else {
            style
        };
        // A token committed in this step that is only white space (a space, a line break)
        // would look like nothing happened: it gets visible glyphs on the highlight. So does
        // the token under the inspector's cursor.
        let under_cursor = cursor.is_some_and(|c| range.contains(&c));
        let text = if (fresh_here || under_cursor) && !text.is_empty() && text.trim().is_empty() {
            visible_whitespace(&text)
        } else {
            text
        };
        // Tokens marked for re-masking (m) are struck through in the mask's colour.
        let marked =
            app.remask.lane == index && range.clone().any(|p| app.remask.positions.contains(&p));
        let style = if marked {
            style
                .patch(theme.mask)
                .add_modifier(Modifier::CROSSED_OUT | Modifier::UNDERLINED)
        } else {
            style
        };
        let style = if under_cursor {
            style.patch(theme.cursor)
        } else {
            style
        };
        // Fast-dLLM v2's bridge token (filled autoregressively into the next block) is
        // underlined; the block view names it.
        let style = if range.clone().any(|p| bridged.contains(&p)) {
            style.add_modifier(Modifier::UNDERLINED)
        } else {
            style
        };
        let end = range.end;
        pieces.push(Piece {
            range,
            text,
            style,
            alone,
        });
        if window
            .as_ref()
            .is_some_and(|w| w.end == end && end < canvas.len())
        {
            pieces.push(marker(end));
        }
    }
    // The stats take a second row rather than being cut in a narrow lane.
    // Low-confidence scores are probabilities ("conf"); margin, entropy and random scores are
    // not, and say "score".
    let probability = recipe.is_none_or(|p| {
        p.strategy == Strategy::LowConfidence || p.remdm != crate::sampler::Remdm::Off
    });
    let stats = Paragraph::new(stats_line(app, lane, shown, agreement, probability))
        .wrap(Wrap { trim: true });
    let stats_rows = stats.line_count(body.width).clamp(1, 2) as u16;
    // A block-diffusion lane gets its block view on the first row when there is room.
    let blocks = frame_event
        .and_then(|f| f.blocks.as_ref().map(|b| (b, f.window.clone())))
        .filter(|_| body.height >= 5);
    let [strip_area, text_area, stats_area] = Layout::vertical([
        Constraint::Length(u16::from(blocks.is_some())),
        Constraint::Min(1),
        Constraint::Length(stats_rows),
    ])
    .areas(body);
    if let Some((state, window)) = blocks {
        let strip = super::blocks::strip(app, state, &window, canvas, strip_area.width as usize);
        frame.render_widget(Paragraph::new(strip), strip_area);
    }
    // The token inspector takes the bottom of the text area (the text scrolls to keep its token
    // in view above it).
    let inspector_lines = cursor.map(|pos| inspector::lines(app, lane, step, pos, canvas));
    let (text_area, inspector_area) = match &inspector_lines {
        Some(content) if text_area.height >= 4 => {
            let box_height = (content.len() as u16 + 1).min(text_area.height - 2);
            let [text, boxed] =
                Layout::vertical([Constraint::Min(2), Constraint::Length(box_height)])
                    .areas(text_area);
            (text, Some(boxed))
        }
        _ => (text_area, None),
    };
    let width = text_area.width;
    let height = text_area.height as usize;
    let (lines, placed) = flow::layout(&pieces, width as usize);
    let rows = lines.len();
    let max = rows.saturating_sub(height);
    // The row of a position: that of the last piece starting at or before it.
    let row_of = |pos: usize| {
        placed
            .iter()
            .take_while(|p| p.pos <= pos)
            .last()
            .map_or(0, |p| p.row)
    };
    let offset = match (app.live_scroll, cursor) {
        (Some(offset), None) => offset.min(max),
        // The inspector's token stays on screen.
        (Some(offset), Some(c)) => {
            let row = row_of(c);
            offset
                .min(row)
                .max((row + 1).saturating_sub(height))
                .min(max)
        }
        (None, _) => {
            // Keep the target a third of the way down, so what was just committed shows
            // with the text leading to it.
            let row = target.map_or(0, row_of);
            row.saturating_sub(height / 3).min(max)
        }
    };
    let paragraph = Paragraph::new(lines);
    let below = max - offset;
    let first_lane = index == 0;
    // F2's colours get their legend on the first lane's border; the right-aligned marks and
    // hints below take only the room it leaves (they drew over it).
    let mut legend_width = 0;
    let block = if app.colouring == Colouring::Confidence && first_lane {
        let legend = Line::from(vec![
            styled(theme.label, " confidence "),
            styled(theme.confidence(0.1), "<.25"),
            styled(theme.label, " "),
            styled(theme.confidence(0.3), "<.5"),
            styled(theme.label, " "),
            styled(theme.confidence(0.6), "<.8"),
            styled(theme.label, " "),
            styled(theme.confidence(0.9), "≥.8"),
            styled(theme.label, " "),
        ]);
        legend_width = legend.width();
        block.title_bottom(legend)
    } else if app.colouring == Colouring::CommitOrder && first_lane {
        // The steps each band of the palette covers (its thresholds: 0.25, 0.5, 0.8).
        let last = planned.max(2) - 1;
        let at = |f: f64| 1 + (f * last as f64).ceil() as usize;
        let bands = [(0.0, 0.25), (0.25, 0.5), (0.5, 0.8), (0.8, 1.0)];
        let mut spans = vec![styled(theme.label, " committed at step ")];
        for (i, (from, to)) in bands.into_iter().enumerate() {
            let first = at(from);
            let end = if i == 3 { planned.max(1) } else { at(to) - 1 };
            spans.push(styled(
                theme.confidence((from + to) / 2.0),
                format!("{first}-{end}"),
            ));
            spans.push(styled(theme.label, " "));
        }
        let legend = Line::from(spans);
        legend_width = legend.width();
        block.title_bottom(legend)
    } else {
        block
    };
    // Border cells left for the right-aligned marks (a gap of one after the legend).
    let room_right = (area.width as usize)
        .saturating_sub(2)
        .saturating_sub(legend_width + usize::from(legend_width > 0));
    let block = if (offset > 0 || below > 0) && room_right > 0 {
        let mut marks = Vec::new();
        if offset > 0 {
            marks.push(format!("↑{offset}"));
        }
        if below > 0 {
            marks.push(format!("↓{below}"));
        }
        let how = if app.live_scroll.is_some() {
            "scrolled · End follows"
        } else {
            "following"
        };
        let forms = [
            format!(" {} rows · {how} ", marks.join(" ")),
            format!(" {} ", marks.join(" ")),
        ];
        match forms.iter().find(|f| f.chars().count() <= room_right) {
            Some(marks) => block.title_bottom(Line::from(marks.clone()).right_aligned()),
            None => block,
        }
    } else if app.focus == Focus::Live && first_lane {
        let speed = match app.replay_speed {
            0.0 => "every step".to_string(),
            s => format!("{s} steps/s"),
        };
        // The longest form that fits the border.
        let k = |c: Command| app.key_name(c);
        let (inspect, remask, refine) =
            (k(Command::Inspect), k(Command::Remask), k(Command::Refine));
        let (back, forward) = (k(Command::ScrubBack), k(Command::ScrubForward));
        let hints = if app.inspector.is_some() {
            vec![
                format!(" {back}/{forward} step · {remask} marks to re-mask · {refine} refines · {inspect} closes "),
                format!(" {remask} re-mask · {refine} refine · {inspect} closes "),
                format!(" {back}/{forward} step · {inspect} closes "),
            ]
        } else {
            // Space pauses what is playing (or following the run) and plays what is paused.
            let space = if run.cursor.is_none() {
                "pause"
            } else {
                "play"
            };
            let play = k(Command::PlayPause);
            let speeds = format!("{}{}", k(Command::Faster), k(Command::Slower));
            let ghosts = k(Command::Ghosts);
            vec![
                format!(" {play} {space} · {speeds} speed ({speed}) · ←→ step · ↑↓ scroll · {inspect} inspect · {ghosts} ghosts "),
                format!(" {play} {space} · {speeds} speed ({speed}) · ←→ step · {inspect} inspect "),
                format!(" {play} {space} · ←→ step · {inspect} inspect "),
            ]
        };
        let room = room_right.saturating_sub(2);
        match hints.iter().find(|h| h.chars().count() <= room) {
            Some(hint) => block.title_bottom(Line::from(hint.clone()).right_aligned()),
            // No room beside the legend: the help (F1) lists these keys.
            None if legend_width > 0 => block,
            None => block.title_bottom(Line::from(hints[hints.len() - 1].clone()).right_aligned()),
        }
    } else {
        block
    };
    frame.render_widget(block, area);
    frame.render_widget(paragraph.scroll((offset as u16, 0)), text_area);
    frame.render_widget(stats, stats_area);
    let drawn = HitRect {
        x: text_area.x,
        y: text_area.y,
        width: text_area.width,
        height: text_area.height,
        scroll: offset,
        rows,
    };
    if let (Some(content), Some(boxed)) = (inspector_lines, inspector_area) {
        inspector::render(app, content, frame, boxed);
    }
    LaneCells {
        area: drawn,
        placed,
    }
}

/// A ghost (the proposal under a mask) on one row: line breaks and tabs shown as glyphs, an
/// empty token as the mask glyph's first cell.
fn ghost_text(text: &str) -> String {
    if text.is_empty() {
        return MASK_GLYPH.chars().next().unwrap_or('▒').to_string();
    }
    text.replace('\n', "↵").replace('\t', "→")
}

/// The canvas as display pieces: one per position, except that a token holding part of a
/// character (byte-level tokenizers split curly quotes, dashes and CJK across tokens, and each
/// alone decodes to U+FFFD) is joined with the following plain tokens until the run decodes
/// whole (at most 4 tokens). `plain` says which ids are text (not masks or end-of-text).
pub fn token_pieces<'a>(
    canvas: &[u32],
    plain: impl Fn(u32) -> bool,
    solo: impl Fn(u32) -> &'a str,
    decode: impl Fn(&[u32]) -> String,
) -> Vec<(std::ops::Range<usize>, String)> {
    const REPLACEMENT: char = '\u{fffd}';
    let mut pieces = Vec::with_capacity(canvas.len());
    let mut pos = 0;
    while pos < canvas.len() {
        let id = canvas[pos];
        let text = solo(id);
        if !plain(id) || !text.contains(REPLACEMENT) {
            pieces.push((pos..pos + 1, text.to_string()));
            pos += 1;
            continue;
        }
        let mut end = pos + 1;
        let mut joined = text.to_string();
        while joined.contains(REPLACEMENT)
            && end < canvas.len()
            && end - pos < 4
            && plain(canvas[end])
        {
            end += 1;
            joined = decode(&canvas[pos..end]);
        }
        if joined.contains(REPLACEMENT) {
            // Nothing completes it (a masked neighbour, or a broken sequence): show it alone.
            pieces.push((pos..pos + 1, text.to_string()));
            pos += 1;
        } else {
            pieces.push((pos..end, joined));
            pos = end;
        }
    }
    pieces
}

/// Per-lane numbers: masks left, forward passes, time, mean confidence of committed tokens.
fn stats_line(
    app: &App,
    lane: &LaneView,
    shown: usize,
    agreement: Option<&Agreement>,
    probability: bool,
) -> Line<'static> {
    let theme = app.theme();
    let mut spans = Vec::new();
    // A failed run's reason stays on its lane until the next run (the message line forgets it
    // at the next key).
    if let Some(RunState::Failed(why)) = app.run.as_ref().map(|r| &r.state) {
        spans.push(styled(theme.error, format!("failed: {why} ")));
    }
    let mut stat = |label: &str, value: String| {
        if !label.is_empty() {
            spans.push(styled(theme.label, format!("{label} ")));
        }
        spans.push(styled(theme.value, format!("{value} ")));
    };
    // A text-streaming server's lane (the whole model, or the lane beside it): frames, not
    // sampler steps, and no scores.
    let frames_lane = app.streams_text(lane);
    if let Some(f) = lane.frame_at(shown) {
        stat("masks", f.masked.to_string());
        if frames_lane {
            stat("frames", f.nfe.to_string());
            stat("", format!("{:.2}s", f.elapsed.as_secs_f64()));
            if let Some(first) = lane.frames.first() {
                stat("first", format!("{:.2}s", first.elapsed.as_secs_f64()));
            }
            // Tokens per second from the server's own count, once it has sent it.
            if let Some(tokens) = lane.summary.as_ref().and_then(|s| s.completion_tokens) {
                let seconds = lane
                    .summary
                    .as_ref()
                    .map_or(0.0, |s| s.elapsed.as_secs_f64());
                if seconds > 0.0 && shown >= lane.frames.len() {
                    stat("tok/s", format!("{:.0}", tokens as f64 / seconds));
                }
            }
        } else {
            stat("nfe", f.nfe.to_string());
            stat("", format!("{:.2}s", f.elapsed.as_secs_f64()));
            // Tokens per unit of forward work against plain decoding (what parallel decoding
            // and caching buy).
            stat("speedup", format!("{:.1}x", f.speedup));
            // Block diffusion: tokens per forward pass, and the positions before the block
            // being denoised, which the exact cache holds.
            if app.model.blocks.is_some() {
                let committed: usize = lane.frames[..shown.min(lane.frames.len())]
                    .iter()
                    .map(|f| f.committed.len())
                    .sum();
                stat(
                    "tpf",
                    format!("{:.2}", committed as f64 / f.nfe.max(1) as f64),
                );
                stat("cached", f.window.start.to_string());
            }
        }
        // ReMDM: tokens masked again so far (a server's frame that got shorter, too).
        let remasked: usize = lane.frames[..shown].iter().map(|f| f.remasked.len()).sum();
        if remasked > 0 {
            stat("remasked", remasked.to_string());
        }
    }
    // Mean score of the tokens committed up to the step shown (their confidence for
    // probability-like strategies).
    let scored = !frames_lane;
    if let Some(mean) = lane.mean_score_until(shown).filter(|_| scored) {
        stat(
            if probability { "conf" } else { "score" },
            format!("{mean:.3}"),
        );
    }
    // Share of this lane's generated tokens the other lanes have too (token-aligned).
    if let Some(a) = agreement {
        stat("agree", format!("{:.0}%", a.rate * 100.0));
    }
    Line::from(spans)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Curly quotes, dashes, accents and CJK split across byte-level tokens show whole, and the
    /// pieces put together are the decoded text (they showed as U+FFFD in the live panel).
    #[test]
    fn characters_split_across_tokens_show_whole() {
        let codec = crate::model::embedded::codec().unwrap();
        let text = "She said \u{201c}hi\u{201d} \u{2014} caf\u{e9}, \u{65e5}\u{672c}!";
        let ids = codec.encode(text, false).unwrap();
        let solos: Vec<String> = ids.iter().map(|&id| codec.token_text(id)).collect();
        assert!(
            solos.iter().any(|t| t.contains('\u{fffd}')),
            "the test needs a split character: {solos:?}"
        );
        let solo = |id: u32| -> &str { &solos[ids.iter().position(|&i| i == id).unwrap()] };
        let pieces = token_pieces(&ids, |_| true, solo, |run| codec.decode(run, false));
        let shown: String = pieces.iter().map(|(_, t)| t.as_str()).collect();
        assert_eq!(shown, codec.decode(&ids, false));
        assert!(!shown.contains('\u{fffd}'), "{shown}");
        // Every position is covered once, in order.
        let mut next = 0;
        for (range, _) in &pieces {
            assert_eq!(range.start, next);
            next = range.end;
        }
        assert_eq!(next, ids.len());
    }

    #[test]
    fn committed_white_space_gets_glyphs() {
        assert_eq!(visible_whitespace(" "), "·");
        assert_eq!(visible_whitespace("\n\n"), "↵\n↵\n");
        assert_eq!(visible_whitespace("\t "), "→·");
    }

    /// A split character whose other half is still masked is shown alone (as U+FFFD) rather
    /// than swallowing the mask.
    #[test]
    fn a_masked_neighbour_is_never_joined() {
        let codec = crate::model::embedded::codec().unwrap();
        let ids = codec.encode("\u{65e5}", false).unwrap();
        assert!(ids.len() >= 2, "{ids:?}");
        let mask = u32::MAX;
        let canvas = [ids[0], mask];
        let solo = codec.token_text(ids[0]);
        let pieces = token_pieces(
            &canvas,
            |id| id != mask,
            |_| solo.as_str(),
            |run| codec.decode(run, false),
        );
        assert_eq!(pieces.len(), 2);
        assert_eq!(pieces[1].0, 1..2);
    }
}
