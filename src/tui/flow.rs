//! Word-wrapped layout of the live panel's canvas pieces, with where each piece lands: the token
//! cursor, the inspector box and mouse clicks need the cell of every token, which a wrapped
//! `Paragraph` does not tell.

use std::ops::Range;

use ratatui::style::Style;
use ratatui::text::{Line, Span};
use unicode_width::UnicodeWidthStr;

/// A piece of the canvas to lay out: the positions it covers, its text (may hold line breaks)
/// and its style.
pub struct Piece {
    pub range: Range<usize>,
    pub text: String,
    pub style: Style,
    /// A row may break before and after it even without white space (a mask glyph, a marker).
    pub alone: bool,
}

/// Where a piece (or one part of it, when it is broken across rows) was placed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placed {
    /// First canvas position of the piece.
    pub pos: usize,
    pub row: usize,
    pub col: usize,
    /// Cells it takes (at least 1, so that an empty piece can still be pointed at).
    pub width: usize,
}

/// One unbroken stretch of a piece's text (no line break inside).
struct Atom<'a> {
    piece: usize,
    text: &'a str,
    /// A line break follows this atom.
    breaks: bool,
}

/// Lays `pieces` out in rows of `width` cells. Words (runs of pieces between white space) move
/// whole to the next row when they do not fit; white space that starts a wrapped row is not
/// drawn; a word wider than a row is broken between pieces, and a piece wider than a row
/// between characters. Returns the lines and the placement of every piece.
pub fn layout(pieces: &[Piece], width: usize) -> (Vec<Line<'static>>, Vec<Placed>) {
    let width = width.max(1);
    let mut atoms: Vec<Atom> = Vec::new();
    for (i, piece) in pieces.iter().enumerate() {
        let mut parts = piece.text.split('\n').peekable();
        while let Some(text) = parts.next() {
            atoms.push(Atom {
                piece: i,
                text,
                breaks: parts.peek().is_some(),
            });
        }
    }
    let mut lines: Vec<Line<'static>> = vec![Line::default()];
    let mut placed: Vec<Placed> = Vec::new();
    let mut col = 0;
    // The current row began at a wrap (not at a line break or the start).
    let mut wrapped = false;
    let mut start = 0;
    while start < atoms.len() {
        // A word: atoms up to (not including) one that starts with white space, ending after
        // one that ends with white space or a line break.
        let mut end = start + 1;
        while end < atoms.len()
            && !atoms[end - 1].breaks
            && !atoms[end - 1].text.is_empty()
            && !atoms[end - 1].text.ends_with(char::is_whitespace)
            && !atoms[end].text.starts_with(char::is_whitespace)
            && !pieces[atoms[end - 1].piece].alone
            && !pieces[atoms[end].piece].alone
        {
            end += 1;
        }
        let word_width: usize = atoms[start..end].iter().map(|a| a.text.width()).sum();
        if col > 0 && col + word_width.min(width) > width {
            lines.push(Line::default());
            col = 0;
            wrapped = true;
        }
        for atom in &atoms[start..end] {
            let piece = &pieces[atom.piece];
            let mut text = atom.text;
            if col == 0 && wrapped {
                text = text.trim_start();
            }
            let placed_before = placed.len();
            loop {
                if col >= width {
                    lines.push(Line::default());
                    col = 0;
                    wrapped = true;
                }
                let (head, rest) = split_at_width(text, width - col);
                let w = head.width();
                if !head.is_empty() {
                    if let Some(line) = lines.last_mut() {
                        line.spans.push(Span::styled(head.to_string(), piece.style));
                    }
                    placed.push(Placed {
                        pos: piece.range.start,
                        row: lines.len() - 1,
                        col,
                        width: w,
                    });
                }
                col += w;
                if rest.is_empty() {
                    break;
                }
                text = rest;
                lines.push(Line::default());
                col = 0;
                wrapped = true;
            }
            // A piece that draws nothing (a bare line break, trimmed space) can still be
            // pointed at where it would be.
            if placed.len() == placed_before
                && placed.last().is_none_or(|p| p.pos != piece.range.start)
            {
                placed.push(Placed {
                    pos: piece.range.start,
                    row: lines.len() - 1,
                    col: col.min(width - 1),
                    width: 1,
                });
            }
            if atom.breaks {
                lines.push(Line::default());
                col = 0;
                wrapped = false;
            }
        }
        start = end;
    }
    (lines, placed)
}

/// White space drawn visibly: `·` for a space, `→` for a tab, `↵` before each line break.
pub fn visible_whitespace(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            ' ' => "·".to_string(),
            '\t' => "→".to_string(),
            '\n' => "↵\n".to_string(),
            c => c.to_string(),
        })
        .collect()
}

/// The longest prefix of `text` at most `cells` wide (at least one character, so a row always
/// makes progress), and the rest.
fn split_at_width(text: &str, cells: usize) -> (&str, &str) {
    if text.width() <= cells {
        return (text, "");
    }
    let mut used = 0;
    for (i, c) in text.char_indices() {
        let w = c.to_string().width();
        if used + w > cells && i > 0 {
            return text.split_at(i);
        }
        used += w;
    }
    (text, "")
}

/// The piece at a cell (row, column), or the nearest piece on that row before it.
pub fn piece_at(placed: &[Placed], row: usize, col: usize) -> Option<usize> {
    placed
        .iter()
        .filter(|p| p.row == row && p.col <= col)
        .max_by_key(|p| p.col)
        .or_else(|| placed.iter().filter(|p| p.row == row).min_by_key(|p| p.col))
        .map(|p| p.pos)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces(texts: &[&str]) -> Vec<Piece> {
        texts
            .iter()
            .enumerate()
            .map(|(i, t)| Piece {
                range: i..i + 1,
                text: t.to_string(),
                style: Style::default(),
                alone: t.starts_with('▒'),
            })
            .collect()
    }

    fn rows(lines: &[Line]) -> Vec<String> {
        lines.iter().map(|l| l.to_string()).collect()
    }

    #[test]
    fn words_wrap_whole_and_keep_their_cells() {
        let p = pieces(&[
            "Once", " upon", " a", " time", " the", " sun", "shine", " came",
        ]);
        let (lines, placed) = layout(&p, 12);
        assert_eq!(
            rows(&lines),
            vec!["Once upon a", "time the", "sunshine", "came"]
        );
        // "sun" and "shine" are one word: wrapped together.
        let at = |pos: usize| placed.iter().find(|p| p.pos == pos).copied().unwrap();
        assert_eq!((at(5).row, at(5).col), (2, 0));
        assert_eq!((at(6).row, at(6).col, at(6).width), (2, 3, 5));
        // The wrapped space of " time" is not drawn, and the token starts the row.
        assert_eq!((at(3).row, at(3).col, at(3).width), (1, 0, 4));
        assert_eq!(piece_at(&placed, 2, 4), Some(6));
        assert_eq!(piece_at(&placed, 0, 11), Some(2));
    }

    #[test]
    fn line_breaks_and_overlong_pieces() {
        let p = pieces(&["Hi", "\n\n", "  indented", " abcdefghijklmnop"]);
        let (lines, placed) = layout(&p, 8);
        assert_eq!(
            rows(&lines),
            vec!["Hi", "", "  indent", "ed", "abcdefgh", "ijklmnop"]
        );
        // Every piece has a placement, in order.
        let order: Vec<usize> = placed.iter().map(|p| p.pos).collect();
        let mut firsts = order.clone();
        firsts.dedup();
        assert_eq!(firsts, vec![0, 1, 2, 3]);
    }

    /// Masks are words of their own: a run of them wraps between masks, not with the word
    /// before it.
    #[test]
    fn masks_break_anywhere() {
        let p = pieces(&["The", " dog", "▒▒▒", "▒▒▒", "▒▒▒", "▒▒▒"]);
        let (lines, _) = layout(&p, 10);
        assert_eq!(rows(&lines), vec!["The dog▒▒▒", "▒▒▒▒▒▒▒▒▒"]);
    }

    #[test]
    fn wide_characters_take_two_cells() {
        let p = pieces(&["\u{65e5}\u{672c}", "\u{8a9e}"]);
        let (lines, placed) = layout(&p, 4);
        assert_eq!(rows(&lines), vec!["\u{65e5}\u{672c}", "\u{8a9e}"]);
        assert_eq!(placed[1].row, 1);
    }
}
