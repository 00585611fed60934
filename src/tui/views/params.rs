//! The parameters panel.

use ratatui::layout::Rect;
use ratatui::text::Line;
use ratatui::widgets::Paragraph;
use ratatui::Frame;

use super::{inner, panel, styled};
use crate::tui::app::{App, Focus};
use crate::tui::params::Field;

pub fn render(app: &App, frame: &mut Frame, area: Rect) {
    let theme = app.theme();
    let block = panel(app, " Parameters ", Some(Focus::Params));
    let body = inner(&block, area);
    frame.render_widget(block, area);
    let focused = app.focus == Focus::Params;
    let label_width = 13;
    let mut lines: Vec<Line> = Field::ALL
        .iter()
        .enumerate()
        .map(|(i, field)| {
            let selected = focused && i == app.form.row;
            let value = match (&app.form.buffer, selected) {
                (Some(text), true) => format!("{text}▏"),
                _ => field.value(&app.settings),
            };
            let marker = if selected { "›" } else { " " };
            let value_style = if selected {
                theme.selection.patch(theme.value)
            } else {
                theme.value
            };
            Line::from(vec![
                styled(theme.key, marker.to_string()),
                styled(theme.label, format!("{:<label_width$}", field.label())),
                styled(value_style, value),
            ])
        })
        .collect();
    lines.push(Line::default());
    let lanes = if app.compare_mode {
        format!("compare on · {} lanes", app.settings.compare.len())
    } else {
        "compare off".to_string()
    };
    lines.push(Line::from(styled(theme.label, lanes)));
    if focused {
        lines.push(Line::from(styled(
            theme.label,
            "←/→ adjust · Enter types a value",
        )));
    }
    frame.render_widget(Paragraph::new(lines), body);
}
