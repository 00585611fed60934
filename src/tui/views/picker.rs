//! The model picker (F10): the embedded model and every model in the Hugging Face cache, with
//! family, size and whether it can be opened; Enter switches, keeping the editor's text. A field
//! under them takes a hub id to download (under the download panel) and switch to.

use ratatui::layout::Rect;
use ratatui::text::Line;
use ratatui::widgets::{Clear, Paragraph, Wrap};
use ratatui::Frame;

use super::{centered, inner, panel, styled};
use crate::tui::app::{App, Picker};
use crate::tui::keymap::Command;

pub fn render(app: &App, picker: &Picker, frame: &mut Frame, area: Rect) {
    let theme = app.theme();
    let close = app.key_name(Command::PickerClose);
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
    // The hub id field: typing anywhere in the picker goes there.
    let on_field = picker.on_hub_id();
    let typed: String = {
        let room = (width as usize).saturating_sub(16);
        let chars: Vec<char> = picker.hub_id.chars().collect();
        chars[chars.len().saturating_sub(room)..].iter().collect()
    };
    lines.push(Line::from(vec![
        styled(theme.key, if on_field { "› " } else { "  " }),
        styled(theme.label, "hub id  "),
        if typed.is_empty() && !on_field {
            styled(theme.label, "type ORG/NAME to download")
        } else {
            styled(
                if on_field { theme.cursor } else { theme.value },
                format!("{typed}▏"),
            )
        },
    ]));
    if picker.scanning {
        lines.insert(
            0,
            Line::from(styled(
                theme.label,
                "  looking for models in the hub cache…",
            )),
        );
    }
    lines.push(Line::default());
    let note = match picker.entries.get(picker.selected) {
        Some(entry) => match &entry.problem {
            Some(problem) => problem.clone(),
            None => format!(
                "{} switches to it (your text and masks stay); {close} closes.",
                app.key_name(Command::PickerChoose)
            ),
        },
        None => format!(
            "{} downloads it from the hub (ORG/NAME or ORG/NAME@REVISION; a complete one opens \
             from the cache) and switches to it; {close} closes.",
            app.key_name(Command::PickerChoose)
        ),
    };
    lines.push(Line::from(styled(theme.label, note)));
    lines.push(Line::from(styled(
        theme.label,
        "`dlm-tui models` lists the models here; `dlm-tui download ORG/NAME` fetches one.",
    )));
    let paragraph = Paragraph::new(lines).wrap(Wrap { trim: false });
    let rows = paragraph.line_count(width.saturating_sub(2)) as u16;
    let height = (rows + 2).min(area.height);
    let popup = centered(area, width, height);
    frame.render_widget(Clear, popup);
    let title = format!(
        " Models ({}) · {}/{} · {} switches · {close} ",
        app.key_name(Command::PickModel),
        app.key_name(Command::PickerUp),
        app.key_name(Command::PickerDown),
        app.key_name(Command::PickerChoose),
    );
    let block = panel(app, title, None);
    frame.render_widget(paragraph, inner(&block, popup));
    frame.render_widget(block, popup);
}
