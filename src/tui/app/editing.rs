//! The editor room: typing, cursor moves and selections, masked spans, undo, pastes.

use super::{App, Command};
use crate::tui::editor::{Document, Unit};

/// A printable key typed into the editor.
pub(super) fn type_char(app: &mut App, c: char) {
    app.doc.insert_str(&c.to_string());
    if c == ']' {
        // A marker that stayed text says why ("[MASK:0]": a span needs a token).
        if let Some(why) = app.doc.literal_marker_before_cursor() {
            app.info(why);
        }
    }
}

/// A paste into the editor. One that cannot fit the context is refused before it is laid out
/// (a 10 MB paste froze the UI); the count is a lower bound.
pub(super) fn paste(app: &mut App, text: &str) {
    let chars = text.chars().count();
    let at_least = chars.div_ceil(app.tokens.max_chars);
    if at_least > app.model.max_context {
        app.error(format!(
            "not pasted: {chars} characters are at least {at_least} tokens, and the model's \
             context holds {}",
            app.model.max_context
        ));
    } else {
        app.doc.insert_str(text);
        // A pasted marker that stayed text says why, as a typed one does.
        if let Some(why) = Document::literal_marker_in(text) {
            app.info(why);
        }
    }
}

/// The editor's commands, and the global ones that edit the text (masking, undo).
pub(super) fn command(app: &mut App, command: Command) {
    let doc = &mut app.doc;
    match command {
        Command::Newline => doc.insert_str("\n"),
        Command::DeleteBack => doc.backspace(),
        Command::DeleteForward => doc.delete(),
        Command::DeleteWordBack => doc.delete_word_back(),
        Command::CursorLeft => doc.left(false),
        Command::CursorRight => doc.right(false),
        Command::CursorUp => doc.up(false),
        Command::CursorDown => doc.down(false),
        Command::LineStart => doc.home(false),
        Command::LineEnd => doc.end(false),
        Command::WordLeft => doc.word_left(false),
        Command::WordRight => doc.word_right(false),
        Command::SelectLeft => doc.left(true),
        Command::SelectRight => doc.right(true),
        Command::SelectUp => doc.up(true),
        Command::SelectDown => doc.down(true),
        Command::SelectLineStart => doc.home(true),
        Command::SelectLineEnd => doc.end(true),
        Command::SelectWordLeft => doc.word_left(true),
        Command::SelectWordRight => doc.word_right(true),
        Command::MaskSelection => mask_selection(app),
        Command::Unmask if !doc.unmask() => app.info("no masked span at the cursor"),
        Command::SpanGrow | Command::SpanShrink => {
            let delta = if command == Command::SpanGrow { 1 } else { -1 };
            if !doc.resize_span(delta) {
                app.info("put the cursor on a masked span to change its size");
            }
        }
        Command::Undo => {
            doc.undo();
        }
        Command::Redo => {
            doc.redo();
        }
        Command::SelectAll => doc.select_all(),
        _ => {}
    }
}

/// Masks the selection as a span of the tokens it holds, and says what the span covers.
fn mask_selection(app: &mut App) {
    match app
        .doc
        .trim_selection()
        .then(|| app.doc.selected_text())
        .flatten()
    {
        Some(text) => {
            let after_space = app.doc.space_before_selection();
            let count = app.codec.span_tokens(&text, after_space);
            app.doc.mask_selection(count);
            // Short enough for 80 columns with a few words selected.
            let covers = if after_space && app.codec.span_takes_space() {
                format!("\" {text}\" (a word's token holds the space before it)")
            } else {
                format!("\"{text}\"")
            };
            // A block-causal model fills a span from what is left of it and its own block.
            let sees = if app.model.blocks.is_some() {
                "; block-causal: it sees only the text before it and its own block"
            } else {
                ""
            };
            app.info(format!(
                "masked {count} token{}: {covers}{sees}",
                if count == 1 { "" } else { "s" }
            ));
        }
        None if app.doc.selection().is_some() => {
            app.info("only white space is selected: select words to mask them")
        }
        None => app.info("select text first (Shift+arrows or drag), then mask it"),
    }
}

/// Display width of a unit in the editor (mask spans are drawn as a labelled block).
pub fn unit_width(unit: &Unit) -> usize {
    match unit {
        Unit::Char(c) => unicode_width(*c),
        Unit::Mask { count, .. } => span_label(*count).chars().count(),
    }
}

pub fn span_label(count: usize) -> String {
    format!("[▒{count}]")
}

/// Cells a character of the editor takes: its Unicode width (2 for CJK, 0 for combining
/// marks), a tab 4 and a line break 1 (where the cursor shows at the end of a line).
fn unicode_width(c: char) -> usize {
    use unicode_width::UnicodeWidthChar;
    match c {
        '\t' => 4,
        '\n' => 1,
        c => c.width().unwrap_or(1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tui::app::test_app;

    /// Ctrl-K on words after a space masks the words' tokens and says the span holds the space.
    #[test]
    fn masking_a_selection_counts_its_tokens_and_says_what_it_covers() {
        let mut app = test_app();
        app.doc = Document::from_prompt("The dog ran to the park and played.");
        let start = "The dog ran ".chars().count();
        app.doc.move_to(start, false);
        app.doc.move_to(start + "to the park".len(), true);
        command(&mut app, Command::MaskSelection);
        assert_eq!(app.doc.mask_count(), 3);
        let said = &app.message.as_ref().unwrap().text;
        assert!(
            said.starts_with("masked 3 tokens: \" to the park\""),
            "{said}"
        );
        // Nothing selected: it says how.
        command(&mut app, Command::MaskSelection);
        assert!(app
            .message
            .as_ref()
            .unwrap()
            .text
            .contains("select text first"));
    }

    /// Shift moves select, plain moves do not, and word moves jump words.
    #[test]
    fn moves_and_selections() {
        let mut app = test_app();
        app.doc = Document::from_prompt("one two");
        command(&mut app, Command::SelectWordLeft);
        assert_eq!(app.doc.selected_text().as_deref(), Some("two"));
        command(&mut app, Command::LineStart);
        assert!(app.doc.selection().is_none());
        command(&mut app, Command::WordRight);
        command(&mut app, Command::SelectLineEnd);
        assert_eq!(app.doc.selected_text().as_deref(), Some(" two"));
    }

    /// A paste too long for the model's context is refused before it is laid out.
    #[test]
    fn an_oversized_paste_is_refused() {
        let mut app = test_app();
        let text = "x".repeat(app.tokens.max_chars * 300);
        paste(&mut app, &text);
        assert!(app.doc.is_empty());
        assert!(app.message.as_ref().unwrap().text.starts_with("not pasted"));
    }
}
