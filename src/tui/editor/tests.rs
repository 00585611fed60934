//! The editor's tests.

use super::*;

#[test]
fn rows_break_between_words() {
    let d = Document::from_prompt("the cat sat on a mat");
    let width = |_: &Unit| 1;
    let rows = visual_rows(d.units(), 10, width);
    let text = |(a, b): (usize, usize)| -> String {
        d.units()[a..b]
            .iter()
            .map(|u| match u {
                Unit::Char(c) => *c,
                Unit::Mask { .. } => '#',
            })
            .collect()
    };
    let lines: Vec<String> = rows.into_iter().map(text).collect();
    assert_eq!(lines, ["the cat ", "sat on a ", "mat"]);
    // A word longer than the row is cut.
    let long = Document::from_prompt("abcdefghijkl mn");
    let rows = visual_rows(long.units(), 5, width);
    assert_eq!(rows, [(0, 5), (5, 10), (10, 15)]);
}

#[test]
fn a_word_is_selected_around_a_unit() {
    let mut d = Document::from_prompt("a girl named Lily.");
    d.select_word_at(9);
    assert_eq!(d.selected_text().as_deref(), Some("named"));
    d.select_word_at(0);
    assert_eq!(d.selected_text().as_deref(), Some("a"));
    d.select_word_at(17);
    assert_eq!(d.selected_text().as_deref(), Some("."));
}

#[test]
fn spaces_around_a_masked_selection_stay_text() {
    let mut d = Document::from_prompt("a girl named Lily");
    // " named " selected, spaces included.
    d.move_to(6, false);
    d.move_to(13, true);
    assert!(d.trim_selection());
    assert_eq!(d.selected_text().as_deref(), Some("named"));
    d.mask_selection(1);
    assert_eq!(d.to_prompt(), "a girl [MASK] Lily");
    let mut blank = Document::from_prompt("a  b");
    blank.move_to(1, false);
    blank.move_to(3, true);
    assert!(!blank.trim_selection());
}

#[test]
fn words_move_select_and_delete() {
    let mut d = Document::from_prompt("Tom's dog [MASK:2] ran, fast.");
    d.move_to(d.units().len(), false);
    d.word_left(false);
    assert_eq!(d.cursor, "Tom's dog ".len() + 1 + " ran, ".len());
    d.word_left(false);
    d.word_left(false);
    // The span is one word.
    assert_eq!(d.cursor, "Tom's dog ".len());
    d.word_left(true);
    d.word_left(true);
    assert_eq!(d.selected_text().as_deref(), Some("Tom's dog "));
    d.move_to(0, false);
    d.word_right(false);
    assert_eq!(d.cursor, "Tom's".len());
    d.move_to(d.units().len(), false);
    // Ctrl-W takes the word and what follows it up to the cursor.
    d.delete_word_back();
    assert_eq!(d.to_prompt(), "Tom's dog [MASK:2] ran, ");
    d.delete_word_back();
    assert_eq!(d.to_prompt(), "Tom's dog [MASK:2] ");
    d.undo();
    assert_eq!(d.to_prompt(), "Tom's dog [MASK:2] ran, ");
}

fn typed(text: &str) -> Document {
    let mut d = Document::default();
    for c in text.chars() {
        d.insert_str(&c.to_string());
    }
    d
}

#[test]
fn huge_typed_spans_are_clamped() {
    let d = Document::from_prompt("a [MASK:99999999] b [MASK:18446744073709551615]");
    assert_eq!(d.mask_count(), 2 * MAX_SPAN);
}

#[test]
fn typing_a_marker_makes_a_span() {
    let d = typed("The [MASK:3] sat.");
    assert_eq!(d.to_prompt(), "The [MASK:3] sat.");
    assert_eq!(d.mask_count(), 3);
    assert_eq!(
        d.segments(),
        vec![
            Segment::Text("The ".into()),
            Segment::Masks(3),
            Segment::Text(" sat.".into())
        ]
    );
}

#[test]
fn masking_a_selection_keeps_the_text_for_unmasking() {
    let mut d = Document::from_prompt("Tom has a red ball.");
    d.move_to(10, false);
    for _ in 0..3 {
        d.right(true);
    }
    assert_eq!(d.selection(), Some((10, 13)));
    assert_eq!(d.selected_text().as_deref(), Some("red"));
    assert!(d.mask_selection(2));
    assert_eq!(d.to_prompt(), "Tom has a [MASK:2] ball.");
    assert!(d.resize_span(3));
    assert_eq!(d.to_prompt(), "Tom has a [MASK:5] ball.");
    assert!(d.resize_span(-10));
    assert_eq!(d.to_prompt(), "Tom has a [MASK] ball.");
    assert!(d.unmask());
    assert_eq!(d.to_prompt(), "Tom has a red ball.");
}

#[test]
fn undo_and_redo_walk_the_history() {
    let mut d = typed("ab");
    d.backspace();
    assert_eq!(d.to_prompt(), "a");
    assert!(d.undo());
    assert_eq!(d.to_prompt(), "ab");
    // A typed run is one undo step.
    assert!(d.undo());
    assert_eq!(d.to_prompt(), "");
    assert!(d.redo());
    assert_eq!(d.to_prompt(), "ab");
    d.insert_str("c");
    assert!(!d.redo(), "a new edit clears the redo stack");
}

#[test]
fn typed_runs_group_by_word_and_markers_undo_whole() {
    let mut d = typed("the cat sat");
    assert!(d.undo());
    assert_eq!(d.to_prompt(), "the cat ");
    assert!(d.undo());
    assert_eq!(d.to_prompt(), "the ");
    let mut d = typed("a [MASK:2]");
    assert_eq!(d.to_prompt(), "a [MASK:2]");
    assert!(d.undo(), "the marker's conversion");
    assert_eq!(d.to_prompt(), "a [MASK:2");
    assert!(d.redo());
    assert_eq!(d.to_prompt(), "a [MASK:2]");
}

/// Undo stores what changed, not the document: keystrokes in a large document stay cheap.
#[test]
fn undo_memory_grows_with_the_edits_not_the_document() {
    let mut d = Document::default();
    d.insert_str(&"x".repeat(1 << 20));
    for _ in 0..90 {
        d.insert_str("y");
        d.backspace();
    }
    let stored: usize = d
        .undo
        .iter()
        .map(|e| e.removed.len() + e.inserted.len())
        .sum();
    assert!(stored < (1 << 20) + 1000, "{stored} units kept for undo");
    while d.undo() {}
    assert!(d.is_empty());
}

#[test]
fn carriage_returns_in_a_paste_are_newlines() {
    let mut d = Document::default();
    d.insert_str("park.\rThen he\r\nran.");
    assert_eq!(d.to_prompt(), "park.\nThen he\nran.");
}

#[test]
fn shrinking_a_one_token_span_adds_no_undo_step() {
    let mut d = Document::from_prompt("a [MASK] b");
    d.move_to(3, false);
    assert!(!d.resize_span(-1));
    assert!(!d.undo());
}

#[test]
fn cursor_moves_by_lines() {
    let mut d = Document::from_prompt("abc\nde\nfghi");
    d.move_to(2, false);
    d.down(false);
    assert_eq!(d.cursor(), 6); // end of "de"
    d.down(false);
    assert_eq!(d.cursor(), 9);
    d.home(false);
    assert_eq!(d.cursor(), 7);
    d.up(true);
    assert_eq!(d.selection(), Some((4, 7)));
    d.end(false);
    assert_eq!(d.cursor(), 6);
}

#[test]
fn paste_replaces_the_selection_and_parses_markers() {
    let mut d = Document::from_prompt("hello world");
    d.move_to(6, false);
    d.move_to(11, true);
    d.insert_str("[MASK:4] there");
    assert_eq!(d.to_prompt(), "hello [MASK:4] there");
}

#[test]
fn saved_documents_keep_spans_and_their_text() {
    let mut d = Document::from_prompt("Tom has a red ball.");
    d.move_to(10, false);
    d.move_to(13, true);
    d.mask_selection(2);
    let json = serde_json::to_string(&d).unwrap();
    assert!(json.contains("Tom has a [MASK:2] ball."), "{json}");
    let mut back: Document = serde_json::from_str(&json).unwrap();
    assert_eq!(back.to_prompt(), d.to_prompt());
    back.move_to(11, false);
    assert!(back.unmask());
    assert_eq!(back.to_prompt(), "Tom has a red ball.");
}

#[test]
fn rows_wrap_and_clicks_map_to_units() {
    let d = Document::from_prompt("ab[MASK:2]c\nxyz");
    let width = |u: &Unit| match u {
        Unit::Char(_) => 1,
        Unit::Mask { .. } => 4,
    };
    let rows = visual_rows(d.units(), 80, width);
    assert_eq!(rows, vec![(0, 4), (5, 8)]);
    assert_eq!(index_at(d.units(), &rows, 0, 0, width), 0);
    assert_eq!(index_at(d.units(), &rows, 0, 3, width), 2);
    assert_eq!(index_at(d.units(), &rows, 0, 6, width), 3);
    assert_eq!(index_at(d.units(), &rows, 0, 60, width), 4);
    assert_eq!(index_at(d.units(), &rows, 1, 1, width), 6);
    assert_eq!(index_at(d.units(), &rows, 5, 0, width), d.units().len());
    // Narrow: "ab" + span (4) do not fit in 5 columns.
    let rows = visual_rows(d.units(), 5, width);
    assert_eq!(rows, vec![(0, 2), (2, 4), (5, 8)]);
}
