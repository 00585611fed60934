//! The live denoising panel (one lane) and the comparison view (several lanes side by side).

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Wrap};
use ratatui::Frame;

use super::{inner, panel, styled};
use crate::tui::app::{App, Focus, LaneView, RunState, RunView};

/// How one masked position is drawn.
pub const MASK_GLYPH: &str = "░░░";

pub fn render(app: &App, frame: &mut Frame, area: Rect) {
    let Some(run) = &app.run else {
        let block = panel(app, " Live ", Some(Focus::Live));
        let text = Paragraph::new(
            "Nothing has run yet. Press F5 to denoise the masked spans and the generation region; \
             each step appears here as it arrives.",
        )
        .style(app.theme().label)
        .wrap(Wrap { trim: true });
        frame.render_widget(text, inner(&block, area));
        frame.render_widget(block, area);
        return;
    };
    let n = run.lanes.len().max(1);
    let areas = Layout::horizontal(vec![Constraint::Ratio(1, n as u32); n]).split(area);
    let disagree = if n > 1 && run.state == RunState::Done {
        run.disagreements()
    } else {
        Vec::new()
    };
    for (lane, lane_area) in run.lanes.iter().zip(areas.iter()) {
        render_lane(app, run, lane, &disagree, frame, *lane_area);
    }
}

fn render_lane(
    app: &App,
    run: &RunView,
    lane: &LaneView,
    disagree: &[bool],
    frame: &mut Frame,
    area: Rect,
) {
    let theme = app.theme();
    let step = run.shown_step();
    let frame_event = lane.frame_at(step);
    let canvas = lane.canvas_at(step, &run.initial);
    let fresh: Vec<usize> = frame_event
        .map(|f| f.committed.iter().map(|c| c.pos).collect())
        .unwrap_or_default();
    let scores = if app.confidence_colours {
        lane.scores_until(step, canvas.len())
    } else {
        Vec::new()
    };
    let shown = step.min(lane.frames.len());
    let planned =
        frame_event.map_or_else(|| lane.frames.first().map_or(0, |f| f.steps), |f| f.steps);
    let state = match (&run.state, run.cursor) {
        (RunState::Running, None) => "running",
        (RunState::Running, Some(_)) => "running · scrubbing",
        (RunState::Done, _) => "done",
        (RunState::Cancelled, _) => "cancelled",
        (RunState::Failed(_), _) => "failed",
    };
    let title = format!(" {} · step {shown}/{planned} · {state} ", lane.label);
    let block = panel(app, title, Some(Focus::Live));
    let body = inner(&block, area);
    frame.render_widget(block, area);

    let tokens = &app.tokens;
    let mut lines: Vec<Line> = vec![Line::default()];
    for (pos, &id) in canvas.iter().enumerate() {
        let is_context = run.initial.get(pos).is_some_and(|&t| t != tokens.mask_id);
        let (text, style): (String, Style) = if id == tokens.mask_id {
            (MASK_GLYPH.to_string(), theme.mask)
        } else if tokens.is_eos(id) {
            ("∅".to_string(), theme.eos)
        } else {
            let style = if is_context {
                theme.context
            } else if fresh.contains(&pos) {
                theme.fresh
            } else if let Some(Some(score)) = scores.get(pos) {
                theme.confidence(*score)
            } else {
                theme.committed
            };
            (tokens.text(id).to_string(), style)
        };
        let style = if disagree.get(pos).copied().unwrap_or(false) && !is_context {
            style.patch(theme.disagree)
        } else {
            style
        };
        let mut parts = text.split('\n').peekable();
        while let Some(part) = parts.next() {
            if !part.is_empty() {
                if let Some(line) = lines.last_mut() {
                    line.spans.push(Span::styled(part.to_string(), style));
                }
            }
            if parts.peek().is_some() {
                lines.push(Line::default());
            }
        }
    }
    let [text_area, stats_area] =
        Layout::vertical([Constraint::Min(1), Constraint::Length(1)]).areas(body);
    frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), text_area);
    frame.render_widget(Paragraph::new(stats_line(app, lane, shown)), stats_area);
}

/// Per-lane numbers: masks left, forward passes, time, mean confidence of committed tokens.
fn stats_line(app: &App, lane: &LaneView, shown: usize) -> Line<'static> {
    let theme = app.theme();
    let mut spans = Vec::new();
    let mut stat = |label: &str, value: String| {
        if !label.is_empty() {
            spans.push(styled(theme.label, format!("{label} ")));
        }
        spans.push(styled(theme.value, format!("{value} ")));
    };
    if let Some(f) = lane.frame_at(shown) {
        stat("masks", f.masked.to_string());
        stat("nfe", f.nfe.to_string());
        stat("", format!("{:.2}s", f.elapsed.as_secs_f64()));
        // Work saved by parallel decoding and caching, against plain decoding.
        stat("", format!("{:.1}x", f.speedup));
    }
    if let Some(s) = &lane.summary {
        // Mean score of the committed tokens (their confidence for probability-like strategies).
        stat("conf", format!("{:.3}", s.mean_score));
    }
    Line::from(spans)
}
