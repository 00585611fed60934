//! The help overlay, generated from the key map that handles keys.

use ratatui::layout::Rect;
use ratatui::text::Line;
use ratatui::widgets::{Clear, Paragraph};
use ratatui::Frame;

use super::{centered, inner, panel, styled};
use crate::tui::app::App;

pub fn render(app: &App, frame: &mut Frame, area: Rect) {
    let theme = app.theme();
    let rows = app.keymap.help_rows();
    let key_width = rows
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(4)
        + 2;
    let mut lines: Vec<Line> = rows
        .into_iter()
        .map(|(keys, what)| {
            Line::from(vec![
                styled(theme.key, format!(" {keys:<key_width$}")),
                styled(theme.base, what.to_string()),
            ])
        })
        .collect();
    lines.push(Line::default());
    for note in [
        " Editor: arrows move, Shift+arrows or mouse drag select, typing [MASK:N] makes a span.",
        " Live panel: Left/Right/Home/End scrub steps; Up/Down (Shift: a page) and the wheel scroll.",
        " Live panel: Space plays/pauses, +/- replay speed, i (or a click) inspects a token, g ghosts.",
        " Inspector open: m marks the token to re-mask, r refines (denoises the marked tokens again).",
        " Parameters: Up/Down pick, Left/Right adjust, Enter types a value.",
        " ? shows this help outside the editor; Up/Down scroll it, other keys close it.",
    ] {
        lines.push(Line::from(styled(theme.label, note)));
    }
    let height = (lines.len() as u16 + 2).min(area.height);
    // A short terminal scrolls the overlay; its bottom border says how much is hidden.
    let visible = height.saturating_sub(2) as usize;
    let hidden = lines.len().saturating_sub(visible);
    let scroll = app.help_scroll.min(hidden);
    let width = 96.min(area.width);
    let popup = centered(area, width, height);
    frame.render_widget(Clear, popup);
    let mut block = panel(app, " Keys (F1 or ?) ", None);
    if hidden > 0 {
        block = block.title_bottom(
            Line::from(format!(
                " ↑{scroll} ↓{} rows · Up/Down scroll ",
                hidden - scroll
            ))
            .right_aligned(),
        );
    }
    frame.render_widget(
        Paragraph::new(lines).scroll((scroll as u16, 0)),
        inner(&block, popup),
    );
    frame.render_widget(block, popup);
}
