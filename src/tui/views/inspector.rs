//! The token inspector: a box beside the live panel's token cursor with the token's text and id,
//! the step that committed it and its score then, and the model's most likely tokens at that
//! step (for a masked position: at the latest step that scored it).

use ratatui::layout::Rect;
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Clear, Paragraph};
use ratatui::Frame;

use super::styled;
use crate::tui::app::{App, LaneView};
use crate::tui::flow::visible_whitespace;
use crate::tui::keymap::Command;

/// How a token's text is shown in the box: quoted, white space made visible, cut to `max` cells.
fn quoted(text: &str, max: usize) -> String {
    let shown = visible_whitespace(text).replace('\n', "");
    let cut: String = shown.chars().take(max).collect();
    let more = if shown.chars().count() > max {
        "…"
    } else {
        ""
    };
    format!("\"{cut}{more}\"")
}

/// The box's lines for position `pos` of `lane` at `step`.
pub fn lines(
    app: &App,
    lane: &LaneView,
    step: usize,
    pos: usize,
    canvas: &[u32],
) -> Vec<Line<'static>> {
    let theme = app.theme();
    let tokens = &app.tokens;
    let id = canvas.get(pos).copied().unwrap_or(tokens.mask_id);
    let record = lane.inspect(step, pos);
    let is_context = app
        .run
        .as_ref()
        .and_then(|r| r.initial.get(pos))
        .is_some_and(|&t| t != tokens.mask_id);
    let mut out = Vec::new();
    if id == tokens.mask_id {
        out.push(Line::from(vec![
            styled(theme.mask, "masked"),
            styled(theme.label, format!(" · position {pos}")),
        ]));
    } else {
        out.push(Line::from(vec![
            styled(theme.value, quoted(tokens.text(id), 18)),
            styled(theme.label, format!(" id {id} · position {pos}")),
        ]));
    }
    if is_context {
        out.push(Line::from(styled(
            theme.label,
            "prompt token: given, not denoised",
        )));
        return out;
    }
    match (record.committed_at, record.commit) {
        (Some(k), Some(c)) => out.push(Line::from(vec![
            styled(theme.label, "committed at step "),
            styled(theme.value, k.to_string()),
            styled(theme.label, " · score "),
            styled(theme.value, format!("{:.3}", c.score)),
        ])),
        _ => match record.scored {
            Some((k, s)) => out.push(Line::from(vec![
                styled(theme.label, format!("step {k} proposed ")),
                styled(theme.value, quoted(tokens.text(s.id), 12)),
                styled(theme.label, " · score "),
                styled(theme.value, format!("{:.3}", s.score)),
            ])),
            None if record.recorded => out.push(Line::from(styled(
                theme.label,
                "not scored yet: outside the window so far",
            ))),
            None => {}
        },
    }
    if let Some(&last) = record.remasked_at.last() {
        let times = record.remasked_at.len();
        let text = match times {
            1 => format!("remasked at step {last} (ReMDM)"),
            n => format!("remasked {n} times, last at step {last} (ReMDM)"),
        };
        out.push(Line::from(styled(theme.mask, text)));
    }
    match record.scored {
        Some((k, s)) if !s.top.is_empty() => {
            out.push(Line::from(styled(
                theme.label,
                format!("most likely at step {k}:"),
            )));
            for &(candidate, p) in &s.top {
                let bar = "█".repeat(((p * 10.0).round() as usize).min(10));
                let style = if candidate == s.id {
                    theme.fresh
                } else {
                    theme.value
                };
                out.push(Line::from(vec![
                    styled(
                        style,
                        format!(" {:<16}", quoted(tokens.text(candidate), 14)),
                    ),
                    styled(theme.value, format!("{:>6.1}% ", p * 100.0)),
                    styled(theme.conf_top, bar),
                ]));
            }
        }
        _ if !record.recorded => out.push(Line::from(styled(
            theme.label,
            "no candidates in this run (a trace written without --inspect)",
        ))),
        _ => {}
    }
    out
}

/// Draws the box's `content` in `area`, under the lane's text, with a rule above it.
pub fn render(app: &App, content: Vec<Line<'static>>, frame: &mut Frame, area: Rect) {
    let theme = app.theme();
    let block = Block::default()
        .borders(Borders::TOP)
        .border_style(theme.border_focus)
        .title(
            Line::from(format!(
                " token inspector · arrows move · {} closes ",
                app.key_name(Command::Inspect)
            ))
            .style(theme.title),
        )
        .style(theme.base);
    frame.render_widget(Clear, area);
    frame.render_widget(Paragraph::new(content).block(block), area);
}
