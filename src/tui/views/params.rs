//! The parameters panel.

use ratatui::layout::Rect;
use ratatui::text::Line;
use ratatui::widgets::Paragraph;
use ratatui::Frame;

use super::{inner, panel, styled};
use crate::run::Field;
use crate::tui::app::{App, Area as HitRect, Focus};

/// Draws the panel; returns its body with the index of the first row shown (for clicks).
pub fn render(app: &App, frame: &mut Frame, area: Rect) -> HitRect {
    let theme = app.theme();
    let block = panel(app, " Parameters ", Some(Focus::Params));
    let body = inner(&block, area);
    frame.render_widget(block, area);
    let focused = app.focus == Focus::Params;
    let label_width = 13;
    // Room for a value after the marker and the label.
    let value_width = (body.width as usize).saturating_sub(1 + label_width).max(4);
    let rows: Vec<Line> = Field::ALL
        .iter()
        .enumerate()
        .map(|(i, field)| {
            let selected = focused && i == app.form.row;
            let value = match (&app.form.buffer, selected) {
                // Typing: the end of the text and the cursor stay in view (scrolled).
                (Some(text), true) => {
                    let chars: Vec<char> = text.chars().collect();
                    let room = value_width - 1;
                    if app.form.replacing {
                        // The old value, selected: typing replaces it.
                        format!("[{text}]")
                    } else if chars.len() > room {
                        let tail: String = chars[chars.len() - (room - 1)..].iter().collect();
                        format!("…{tail}▏")
                    } else {
                        format!("{text}▏")
                    }
                }
                _ => {
                    let value = field.value(&app.settings);
                    if value.chars().count() > value_width {
                        let head: String = value.chars().take(value_width - 1).collect();
                        format!("{head}…")
                    } else {
                        value
                    }
                }
            };
            let marker = if selected { "›" } else { " " };
            let value_style = if selected {
                theme.selection.patch(theme.value)
            } else {
                theme.value
            };
            Line::from(vec![
                // Only the selected row's marker is drawn in the key style (a blank one in
                // it paints a stripe down the panel in themes with a key background).
                styled(
                    if selected { theme.key } else { theme.base },
                    marker.to_string(),
                ),
                styled(theme.label, format!("{:<label_width$}", field.label())),
                styled(value_style, value),
            ])
        })
        .collect();
    let lanes = if app.settings.sweep >= 2 {
        format!(
            "seed sweep · {} lanes, seeds {}-{}",
            app.settings.sweep,
            app.settings.params.seed,
            app.settings
                .params
                .seed
                .wrapping_add(app.settings.sweep as u64 - 1)
        )
    } else if app.compare_mode {
        format!("compare on · {} lanes", app.settings.compare.len())
    } else {
        "compare off".to_string()
    };
    let mut footer = vec![Line::default(), Line::from(styled(theme.label, lanes))];
    if focused {
        // What the selected parameter does, word-wrapped to the panel, and a value too long
        // for its row in full.
        let selected = app.form.selected();
        for line in wrap_words(selected.description(), body.width as usize) {
            footer.push(Line::from(styled(theme.label, line)));
        }
        let value = selected.value(&app.settings);
        if value.chars().count() > value_width && !app.form.editing() {
            for line in wrap_words(&value.replace(',', ", "), body.width as usize) {
                footer.push(Line::from(styled(theme.value, line)));
            }
        }
        footer.push(Line::from(styled(theme.label, "←→ adjust · Enter edits")));
    }
    // The footer stays; the rows scroll to keep the selected one in view, and say when some are
    // out of sight.
    let height = body.height as usize;
    if rows.len() + footer.len() > height {
        // Tight: the spacer line goes first.
        footer.remove(0);
    }
    let room = height.saturating_sub(footer.len()).max(1);
    let mut first = 0;
    let mut lines: Vec<Line> = if rows.len() <= room {
        rows
    } else {
        // The selected row stays off the lines the "more" indicators take: one row is kept
        // below it while rows are hidden there, and it is never the first of a scrolled list.
        let selected = app.form.row;
        first = selected
            .saturating_sub(room.saturating_sub(2))
            .min(rows.len() - room);
        if first > 0 && selected <= first {
            first = selected.saturating_sub(1);
        }
        let hidden_below = rows.len() - first - room;
        let mut shown: Vec<Line> = rows.into_iter().skip(first).take(room).collect();
        // An indicator takes the place of a row, which then counts as hidden too.
        if hidden_below > 0 {
            if let Some(last) = shown.last_mut() {
                *last = Line::from(styled(theme.label, format!(" ↓ {} more", hidden_below + 1)));
            }
        }
        if first > 0 {
            shown[0] = Line::from(styled(theme.label, format!(" ↑ {} more", first + 1)));
        }
        shown
    };
    lines.extend(footer);
    frame.render_widget(Paragraph::new(lines), body);
    HitRect {
        x: body.x,
        y: body.y,
        width: body.width,
        height: room.min(Field::ALL.len()) as u16,
        scroll: first,
        rows: Field::ALL.len(),
    }
}

/// `text` broken into lines of at most `width` characters at spaces (a longer word is cut).
fn wrap_words(text: &str, width: usize) -> Vec<String> {
    let width = width.max(1);
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    for word in text.split(' ') {
        let needed = line.chars().count() + usize::from(!line.is_empty()) + word.chars().count();
        if !line.is_empty() && needed > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
        while line.chars().count() > width {
            let rest: String = line.chars().skip(width).collect();
            lines.push(line.chars().take(width).collect());
            line = rest;
        }
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}
