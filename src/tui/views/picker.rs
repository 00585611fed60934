//! The model picker (F10): the embedded model and every model in the Hugging Face cache, with
//! family, size and whether it can be opened; Enter switches, keeping the editor's text.

use ratatui::layout::Rect;
use ratatui::text::Line;
use ratatui::widgets::{Clear, Paragraph, Wrap};
use ratatui::Frame;

use super::{centered, inner, panel, styled};
use crate::tui::app::App;

pub fn render(app: &App, frame: &mut Frame, area: Rect) {
    let Some(picker) = &app.picker else { return };
    let theme = app.theme();
    let width = 100.min(area.width);
    // Borders, marker, family, size and state take 37 cells; the name gets the rest.
    let name_width = (width as usize).saturating_sub(37).clamp(12, 56);
    let mut lines: Vec<Line> = picker
        .entries
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let chosen = i == picker.selected;
            let current = e.name == app.model.name;
            let name: String = e.name.chars().take(name_width).collect();
            let state = match (&e.problem, current) {
                (_, true) => "in use",
                (None, false) => "ready",
                (Some(p), false) if p.starts_with("incomplete") => "incomplete",
                (Some(_), false) => "unsupported",
            };
            let style = if chosen {
                theme.cursor
            } else if e.problem.is_some() {
                theme.label
            } else {
                theme.base
            };
            Line::from(vec![
                styled(theme.key, if chosen { "› " } else { "  " }),
                styled(style, format!("{name:<name_width$}")),
                styled(theme.value, format!(" {:<10}", e.family)),
                styled(theme.value, format!("{:>9} ", e.size)),
                styled(theme.label, state.to_string()),
            ])
        })
        .collect();
    lines.push(Line::default());
    let selected = &picker.entries[picker.selected];
    let note = match &selected.problem {
        Some(problem) => problem.clone(),
        None => "Enter switches to it (your text and masks stay); Esc closes.".to_string(),
    };
    lines.push(Line::from(styled(theme.label, note)));
    lines.push(Line::from(styled(
        theme.label,
        "Others: `dlm-tui --model ORG/NAME` downloads one; `dlm-tui models` lists these.",
    )));
    let paragraph = Paragraph::new(lines).wrap(Wrap { trim: false });
    let rows = paragraph.line_count(width.saturating_sub(2)) as u16;
    let height = (rows + 2).min(area.height);
    let popup = centered(area, width, height);
    frame.render_widget(Clear, popup);
    let block = panel(app, " Models (F10) · Up/Down · Enter switches · Esc ", None);
    frame.render_widget(paragraph, inner(&block, popup));
    frame.render_widget(block, popup);
}
