//! The editor panel: text, masked spans, cursor and selection.

use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use ratatui::Frame;

use super::{inner, panel, styled};
use crate::tui::app::{span_label, unit_width, App, Focus};
use crate::tui::editor::{visual_rows, Unit};
use crate::tui::keymap::Command;

/// Draws the editor; returns its text area and how many rows are scrolled off the top.
pub fn render(app: &App, frame: &mut Frame, area: Rect) -> (Rect, usize) {
    let theme = app.theme();
    let doc = &app.doc;
    let mut title = vec![styled(
        theme.title,
        format!(
            " Editor · {} masked token{} · ",
            doc.mask_count(),
            if doc.mask_count() == 1 { "" } else { "s" }
        ),
    )];
    // The next run's size against the context, so an oversized span shows before F5.
    let max = app.model.max_context;
    match app.canvas_len() {
        Some(n) if n <= max => title.push(styled(theme.title, format!("{n}/{max} tokens "))),
        Some(n) => title.push(styled(theme.error, format!("{n}/{max} tokens: too long "))),
        None => title.push(styled(theme.error, "too many tokens ")),
    }
    if app.chat_mode {
        title.push(styled(theme.title, "· chat "));
    }
    if app.continuing && doc.mask_count() > 0 {
        title.push(styled(
            theme.title,
            format!("· {} continues ", app.key_name(Command::Run)),
        ));
    }
    let block = panel(app, Line::from(title), Some(Focus::Editor));
    let text_area = inner(&block, area);
    frame.render_widget(block, area);

    let selection = doc.selection();
    let show_cursor = app.focus == Focus::Editor;
    let units = doc.units();
    // One column is kept free for the cursor at the end of a row.
    let rows = visual_rows(
        units,
        (text_area.width as usize).saturating_sub(1),
        unit_width,
    );
    // Only the rows on screen are built: the cursor's row is kept visible.
    let cursor = doc.cursor();
    let mut cursor_line = rows
        .partition_point(|&(_, end)| end < cursor)
        .min(rows.len().saturating_sub(1));
    // At a soft wrap the cursor is drawn at the start of the next row.
    if rows[cursor_line].1 == cursor && rows.get(cursor_line + 1).is_some_and(|r| r.0 == cursor) {
        cursor_line += 1;
    }
    let height = text_area.height as usize;
    let scroll = cursor_line.saturating_sub(height.saturating_sub(1));
    let mut lines: Vec<Line> = Vec::with_capacity(height);
    for (row_index, &(start, end)) in rows.iter().enumerate().skip(scroll).take(height) {
        let mut spans: Vec<Span> = Vec::new();
        for (i, unit) in units.iter().enumerate().take(end).skip(start) {
            let (text, mut style) = match unit {
                Unit::Char(c) => (c.to_string(), theme.base),
                Unit::Mask { count, .. } => (span_label(*count), theme.span),
            };
            if selection.is_some_and(|(s, e)| i >= s && i < e) {
                style = style.patch(theme.selection);
            }
            if show_cursor && i == cursor {
                style = theme.cursor;
            }
            spans.push(styled(style, text));
        }
        // The cursor after the last unit of a row (end of a line or of the text).
        let next_row_starts_here = rows.get(row_index + 1).is_some_and(|r| r.0 == end);
        if show_cursor
            && doc.cursor() == end
            && !next_row_starts_here
            && (end == units.len() || units[end] == Unit::Char('\n'))
        {
            spans.push(styled(theme.cursor, " "));
        }
        lines.push(Line::from(spans));
    }
    if doc.is_empty() && !show_cursor {
        lines = vec![Line::from(styled(
            theme.label,
            format!(
                "Type a prompt; select text and press {} to mask it; {} runs.",
                app.key_name(Command::MaskSelection),
                app.key_name(Command::Run)
            ),
        ))];
    }
    frame.render_widget(Paragraph::new(lines), text_area);
    // The terminal's own cursor too, where the drawn one is: screen readers, and terminals
    // without colour (NO_COLOR), follow it.
    if show_cursor && app.overlay.is_none() && !rows.is_empty() {
        let (start, _) = rows[cursor_line];
        let column: usize = units[start..cursor.min(units.len())]
            .iter()
            .map(unit_width)
            .sum();
        let row = cursor_line - scroll;
        if column < text_area.width as usize && row < text_area.height as usize {
            frame.set_cursor_position((text_area.x + column as u16, text_area.y + row as u16));
        }
    }
    (text_area, scroll)
}
