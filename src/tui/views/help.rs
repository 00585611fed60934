//! The help overlay, generated from the key map that translates keys: a section per scope, the
//! keys that work everywhere first, then the panel the help was opened from, then the rest.

use ratatui::layout::Rect;
use ratatui::text::Line;
use ratatui::widgets::{Clear, Paragraph};
use ratatui::Frame;

use super::{centered, inner, panel, styled};
use crate::tui::app::App;
use crate::tui::keymap::{self, Command, Scope};

/// The widest the keys' column gets (in cells).
const KEY_COLUMN: usize = 20;

/// The scopes in the order the help lists them when opened with `from` innermost.
pub fn sections(from: Scope) -> Vec<Scope> {
    let mut order = vec![Scope::Global];
    order.extend(keymap::stack(from).iter().filter(|&&s| s != Scope::Global));
    for scope in Scope::ALL {
        if !order.contains(&scope) {
            order.push(scope);
        }
    }
    order
}

pub fn render(app: &App, scroll: usize, frame: &mut Frame, area: Rect) {
    let theme = app.theme();
    let order = sections(app.panel_scope());
    let rows: Vec<(Scope, Vec<(String, &'static str)>)> = order
        .into_iter()
        .map(|s| (s, app.keymap.help_rows(s)))
        .filter(|(_, rows)| !rows.is_empty())
        .collect();
    // Keys longer than the column take a row of their own, the description under them.
    let key_width = rows
        .iter()
        .flat_map(|(_, r)| r.iter().map(|(k, _)| k.chars().count()))
        .max()
        .unwrap_or(4)
        .min(KEY_COLUMN)
        + 2;
    let width = 96.min(area.width);
    // Descriptions wrap under themselves (an 80-column terminal cuts none).
    let room = (width as usize).saturating_sub(4 + key_width).max(12);
    let mut lines: Vec<Line> = Vec::new();
    for (i, (scope, rows)) in rows.into_iter().enumerate() {
        if i > 0 {
            lines.push(Line::default());
        }
        lines.push(Line::from(styled(
            theme.title,
            format!(" {}", scope.title()),
        )));
        for (keys, what) in rows {
            let mut first = format!(" {keys:<key_width$}");
            if keys.chars().count() + 2 > key_width {
                lines.push(Line::from(styled(theme.key, format!(" {keys}"))));
                first = format!(" {:<key_width$}", "");
            }
            for (n, part) in wrap(what, room).into_iter().enumerate() {
                let lead = if n == 0 {
                    std::mem::take(&mut first)
                } else {
                    format!(" {:<key_width$}", "")
                };
                lines.push(Line::from(vec![
                    styled(theme.key, lead),
                    styled(theme.base, part),
                ]));
            }
        }
    }
    let height = (lines.len() as u16 + 2).min(area.height);
    // A short terminal scrolls the overlay; its bottom border says how much is hidden.
    let visible = height.saturating_sub(2) as usize;
    let hidden = lines.len().saturating_sub(visible);
    let scroll = scroll.min(hidden);
    let popup = centered(area, width, height);
    frame.render_widget(Clear, popup);
    let keys: Vec<String> = app
        .keymap
        .working_keys(Command::Help)
        .iter()
        .map(|k| k.to_string())
        .collect();
    let title = format!(" Keys ({}) ", keys.join(" or "));
    let mut block = panel(app, title, None);
    if hidden > 0 {
        block = block.title_bottom(
            Line::from(format!(
                " ↑{scroll} ↓{} rows · {}/{} scroll ",
                hidden - scroll,
                app.key_name(Command::HelpUp),
                app.key_name(Command::HelpDown)
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

/// `text` in lines of at most `width` characters, broken between words.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = vec![String::new()];
    for word in text.split(' ') {
        let Some(line) = lines.last_mut() else { break };
        let len = line.chars().count();
        if len > 0 && len + 1 + word.chars().count() > width {
            lines.push(word.to_string());
        } else {
            if len > 0 {
                line.push(' ');
            }
            line.push_str(word);
        }
    }
    lines
}
