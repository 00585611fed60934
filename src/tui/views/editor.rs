//! The editor panel: text, masked spans, cursor and selection.

use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

use super::{inner, panel, styled};
use crate::tui::app::{span_label, App, Focus};
use crate::tui::editor::Unit;

pub fn render(app: &App, frame: &mut Frame, area: Rect) -> Rect {
    let theme = app.theme();
    let doc = &app.doc;
    let title = format!(
        " Editor · {} masked token{} ",
        doc.mask_count(),
        if doc.mask_count() == 1 { "" } else { "s" }
    );
    let block = panel(app, title, Some(Focus::Editor));
    let text_area = inner(&block, area);
    frame.render_widget(block, area);

    let selection = doc.selection();
    let show_cursor = app.focus == Focus::Editor;
    let mut lines: Vec<Line> = vec![Line::default()];
    let mut cursor_line = 0;
    for (i, unit) in doc.units().iter().enumerate() {
        let selected = selection.is_some_and(|(s, e)| i >= s && i < e);
        let at_cursor = show_cursor && i == doc.cursor();
        if at_cursor {
            cursor_line = lines.len() - 1;
        }
        let (text, mut style) = match unit {
            Unit::Char('\n') => {
                if at_cursor {
                    push(&mut lines, styled(theme.cursor, " "));
                }
                lines.push(Line::default());
                continue;
            }
            Unit::Char(c) => (c.to_string(), theme.base),
            Unit::Mask { count, .. } => (span_label(*count), theme.span),
        };
        if selected {
            style = style.patch(theme.selection);
        }
        if at_cursor {
            style = theme.cursor;
        }
        push(&mut lines, styled(style, text));
    }
    if show_cursor && doc.cursor() >= doc.units().len() {
        cursor_line = lines.len() - 1;
        push(&mut lines, styled(theme.cursor, " "));
    }
    if doc.is_empty() && !show_cursor {
        lines = vec![Line::from(styled(
            theme.label,
            "Type a prompt; select text and press Ctrl-K to mask it; F5 runs.",
        ))];
    }
    // Keep the cursor line visible.
    let height = text_area.height as usize;
    let scroll = cursor_line.saturating_sub(height.saturating_sub(1));
    frame.render_widget(Paragraph::new(lines).scroll((scroll as u16, 0)), text_area);
    Rect {
        y: text_area.y.saturating_sub(scroll as u16),
        ..text_area
    }
}

fn push(lines: &mut [Line<'static>], span: Span<'static>) {
    if let Some(line) = lines.last_mut() {
        line.spans.push(span);
    }
}
