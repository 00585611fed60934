//! The editor's document: text with masked spans, a cursor, a selection and undo/redo.
//!
//! The document is a sequence of units: characters, and mask spans that stand for N masked tokens.
//! A span made from selected text keeps that text, so unmarking it gives the text back.

use serde::{Deserialize, Serialize};

use crate::prompt::{self, Segment};

mod layout;

pub use layout::{index_at, visual_rows};

/// Most undo steps kept.
const UNDO_LIMIT: usize = 200;
/// Largest token count of one span.
pub const MAX_SPAN: usize = 512;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Unit {
    Char(char),
    Mask { count: usize, original: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(from = "SavedDocument", into = "SavedDocument")]
pub struct Document {
    units: Vec<Unit>,
    cursor: usize,
    anchor: Option<usize>,
    /// Edits, not snapshots: a keystroke in a large document costs what it changed.
    undo: Vec<Edit>,
    redo: Vec<Edit>,
}

/// One undoable change: `removed` at `start` became `inserted`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Edit {
    start: usize,
    removed: Vec<Unit>,
    inserted: Vec<Unit>,
    cursor_before: usize,
    cursor_after: usize,
}

impl Edit {
    /// Whether `next` continues a typed run this edit holds (so one undo removes the word).
    fn continues_typing(&self, next: &Edit) -> bool {
        let typed = |e: &Edit| {
            e.removed.is_empty() && matches!(e.inserted.as_slice(), [Unit::Char(c)] if *c != '\n')
        };
        let word_ended = matches!(self.inserted.last(), Some(Unit::Char(c)) if c.is_whitespace())
            && !matches!(next.inserted.as_slice(), [Unit::Char(c)] if c.is_whitespace());
        self.removed.is_empty()
            && self
                .inserted
                .iter()
                .all(|u| matches!(u, Unit::Char(c) if *c != '\n'))
            && typed(next)
            && next.start == self.start + self.inserted.len()
            && !word_ended
            && self.inserted.len() < 64
    }
}

/// How a document is saved: the text in prompt syntax, plus the text each span replaced (so
/// unmasking still works after a restart).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SavedDocument {
    text: String,
    #[serde(default)]
    span_originals: Vec<String>,
    #[serde(default)]
    cursor: usize,
}

impl From<Document> for SavedDocument {
    fn from(doc: Document) -> Self {
        let span_originals = doc
            .units
            .iter()
            .filter_map(|u| match u {
                Unit::Mask { original, .. } => Some(original.clone()),
                Unit::Char(_) => None,
            })
            .collect();
        Self {
            text: doc.to_prompt(),
            span_originals,
            cursor: doc.cursor,
        }
    }
}

impl From<SavedDocument> for Document {
    fn from(saved: SavedDocument) -> Self {
        let mut doc = Document::from_prompt(&saved.text);
        let mut originals = saved.span_originals.into_iter();
        for unit in &mut doc.units {
            if let Unit::Mask { original, .. } = unit {
                *original = originals.next().unwrap_or_default();
            }
        }
        doc.cursor = saved.cursor.min(doc.units.len());
        doc
    }
}

impl Document {
    /// A document from prompt syntax (`[MASK]`, `[MASK:N]` become spans).
    pub fn from_prompt(text: &str) -> Self {
        let mut doc = Self::default();
        doc.units = parse_units(text);
        doc.cursor = doc.units.len();
        doc
    }

    pub fn units(&self) -> &[Unit] {
        &self.units
    }

    pub fn cursor(&self) -> usize {
        self.cursor
    }

    /// The selected range, if any (start < end).
    pub fn selection(&self) -> Option<(usize, usize)> {
        let anchor = self.anchor?;
        (anchor != self.cursor).then(|| (anchor.min(self.cursor), anchor.max(self.cursor)))
    }

    pub fn is_empty(&self) -> bool {
        self.units.is_empty()
    }

    /// Prompt segments for the sampler.
    pub fn segments(&self) -> Vec<Segment> {
        let mut out: Vec<Segment> = Vec::new();
        for unit in &self.units {
            match (unit, out.last_mut()) {
                (Unit::Char(c), Some(Segment::Text(t))) => t.push(*c),
                (Unit::Char(c), _) => out.push(Segment::Text(c.to_string())),
                (Unit::Mask { count, .. }, Some(Segment::Masks(n))) => *n += count,
                (Unit::Mask { count, .. }, _) => out.push(Segment::Masks(*count)),
            }
        }
        out
    }

    /// The document in prompt syntax (what autosave writes and `generate --prompt` accepts).
    pub fn to_prompt(&self) -> String {
        self.units
            .iter()
            .map(|u| match u {
                Unit::Char(c) => c.to_string(),
                Unit::Mask { count, .. } => prompt::render(&[Segment::Masks(*count)]),
            })
            .collect()
    }

    pub fn mask_count(&self) -> usize {
        self.units
            .iter()
            .map(|u| match u {
                Unit::Mask { count, .. } => *count,
                Unit::Char(_) => 0,
            })
            .sum()
    }

    /// Replaces `start..end` with `with`, leaves the cursor at `cursor_after` and records the
    /// change for undo (merging a typed run into one entry).
    fn edit(&mut self, start: usize, end: usize, with: Vec<Unit>, cursor_after: usize) {
        let removed: Vec<Unit> = self
            .units
            .splice(start..end, with.iter().cloned())
            .collect();
        let edit = Edit {
            start,
            removed,
            inserted: with,
            cursor_before: self.cursor,
            cursor_after,
        };
        self.cursor = cursor_after.min(self.units.len());
        self.anchor = None;
        self.redo.clear();
        match self.undo.last_mut() {
            Some(last) if last.continues_typing(&edit) => {
                last.inserted.extend(edit.inserted);
                last.cursor_after = edit.cursor_after;
            }
            _ => {
                self.undo.push(edit);
                if self.undo.len() > UNDO_LIMIT {
                    self.undo.remove(0);
                }
            }
        }
    }

    pub fn undo(&mut self) -> bool {
        let Some(edit) = self.undo.pop() else {
            return false;
        };
        let end = edit.start + edit.inserted.len();
        self.units
            .splice(edit.start..end, edit.removed.iter().cloned());
        self.cursor = edit.cursor_before.min(self.units.len());
        self.anchor = None;
        self.redo.push(edit);
        true
    }

    pub fn redo(&mut self) -> bool {
        let Some(edit) = self.redo.pop() else {
            return false;
        };
        let end = edit.start + edit.removed.len();
        self.units
            .splice(edit.start..end, edit.inserted.iter().cloned());
        self.cursor = edit.cursor_after.min(self.units.len());
        self.anchor = None;
        self.undo.push(edit);
        true
    }

    /// The range an edit at the cursor replaces: the selection, or the empty range at the cursor.
    fn target(&self) -> (usize, usize) {
        self.selection().unwrap_or((self.cursor, self.cursor))
    }

    /// Types text at the cursor, replacing the selection. A completed `[MASK]` / `[MASK:N]`
    /// marker turns into a span. CR and CRLF (as terminals send inside a paste) become newlines.
    pub fn insert_str(&mut self, text: &str) {
        if text.is_empty() {
            return;
        }
        let text = text.replace("\r\n", "\n").replace('\r', "\n");
        let (start, end) = self.target();
        // A marker may begin in the text before the cursor: look back far enough for one.
        // Only the last few units are searched: a keystroke must not scan the whole document.
        let window = start.saturating_sub(MARKER_LOOKBACK);
        let from = self.units[window..start]
            .iter()
            .rposition(|u| matches!(u, Unit::Char('[')))
            .map_or(start, |i| window + i);
        let mut local: Vec<Unit> = self.units[from..start].to_vec();
        local.extend(parse_units(&text));
        convert_typed_marker(&mut local);
        // Keep the recorded edit minimal: the looked-back prefix that did not change stays.
        let same = local
            .iter()
            .zip(&self.units[from..start])
            .take_while(|(a, b)| a == b)
            .count();
        let local = local.split_off(same);
        let at = from + same;
        let cursor = at + local.len();
        self.edit(at, end, local, cursor);
    }

    /// The first mask marker in pasted `text` that stays text (`[MASK:0]`, `[MASK:x]`), and why.
    pub fn literal_marker_in(text: &str) -> Option<String> {
        text.match_indices("[MASK").find_map(|(at, _)| {
            let rest = &text[at..];
            let end = rest.char_indices().take(24).find(|&(_, c)| c == ']')?.0;
            let marker = &rest[..=end];
            prompt::parse(marker)
                .err()
                .map(|e| format!("{marker} stays text: {e:#}"))
        })
    }

    /// When the text just before the cursor is a mask marker that stayed text (`[MASK:0]`,
    /// `[MASK:x]`), why it did not become a span.
    pub fn literal_marker_before_cursor(&self) -> Option<String> {
        let window = self.cursor.saturating_sub(MARKER_LOOKBACK);
        let before = &self.units[window..self.cursor];
        if !matches!(before.last(), Some(Unit::Char(']'))) {
            return None;
        }
        let open = before.iter().rposition(|u| matches!(u, Unit::Char('[')))?;
        let marker: String = before[open..]
            .iter()
            .map(|u| match u {
                Unit::Char(c) => Some(*c),
                Unit::Mask { .. } => None,
            })
            .collect::<Option<String>>()?;
        if !marker.starts_with("[MASK") {
            return None;
        }
        prompt::parse(&marker)
            .err()
            .map(|e| format!("{marker} stays text: {e:#}"))
    }

    pub fn backspace(&mut self) {
        match self.selection() {
            Some((start, end)) => self.edit(start, end, Vec::new(), start),
            None if self.cursor > 0 => {
                let c = self.cursor;
                self.edit(c - 1, c, Vec::new(), c - 1)
            }
            None => self.anchor = None,
        }
    }

    pub fn delete(&mut self) {
        match self.selection() {
            Some((start, end)) => self.edit(start, end, Vec::new(), start),
            None if self.cursor < self.units.len() => {
                let c = self.cursor;
                self.edit(c, c + 1, Vec::new(), c)
            }
            None => self.anchor = None,
        }
    }

    /// Moves the cursor to `to`; with `select`, extends the selection from where it was.
    pub fn move_to(&mut self, to: usize, select: bool) {
        if select {
            self.anchor.get_or_insert(self.cursor);
        } else {
            self.anchor = None;
        }
        self.cursor = to.min(self.units.len());
    }

    pub fn left(&mut self, select: bool) {
        self.move_to(self.cursor.saturating_sub(1), select);
    }

    pub fn right(&mut self, select: bool) {
        self.move_to(self.cursor + 1, select);
    }

    /// The start of the word before the cursor (a masked span counts as one word).
    fn word_start_before(&self, from: usize) -> usize {
        let mut at = from;
        while at > 0 && !is_word(&self.units[at - 1]) {
            at -= 1;
        }
        if at > 0 && matches!(self.units[at - 1], Unit::Mask { .. }) {
            return at - 1;
        }
        while at > 0
            && is_word(&self.units[at - 1])
            && !matches!(self.units[at - 1], Unit::Mask { .. })
        {
            at -= 1;
        }
        at
    }

    /// The end of the word after the cursor (a masked span counts as one word).
    fn word_end_after(&self, from: usize) -> usize {
        let n = self.units.len();
        let mut at = from;
        while at < n && !is_word(&self.units[at]) {
            at += 1;
        }
        if at < n && matches!(self.units[at], Unit::Mask { .. }) {
            return at + 1;
        }
        while at < n && is_word(&self.units[at]) && !matches!(self.units[at], Unit::Mask { .. }) {
            at += 1;
        }
        at
    }

    /// Ctrl/Alt-Left: to the start of the previous word (Shift: selecting).
    pub fn word_left(&mut self, select: bool) {
        self.move_to(self.word_start_before(self.cursor), select);
    }

    /// Ctrl/Alt-Right: past the end of the next word (Shift: selecting).
    pub fn word_right(&mut self, select: bool) {
        self.move_to(self.word_end_after(self.cursor), select);
    }

    /// Selects the word around unit `at` (a span is a word; elsewhere, the unit alone).
    pub fn select_word_at(&mut self, at: usize) {
        let at = at.min(self.units.len());
        let inside = |i: usize| self.units.get(i).is_some_and(is_word);
        let (start, end) = if inside(at) {
            let start = if matches!(self.units[at], Unit::Mask { .. }) {
                at
            } else {
                self.word_start_before(at + 1)
            };
            (start, self.word_end_after(start))
        } else {
            (at, (at + 1).min(self.units.len()))
        };
        self.move_to(start, false);
        self.move_to(end, true);
    }

    /// Ctrl-W: deletes the word before the cursor (or the selection), as one undo step.
    pub fn delete_word_back(&mut self) {
        match self.selection() {
            Some((start, end)) => self.edit(start, end, Vec::new(), start),
            None => {
                let c = self.cursor;
                let start = self.word_start_before(c);
                if start < c {
                    self.edit(start, c, Vec::new(), start);
                }
            }
        }
    }

    /// (line start, line end) around unit index `at`.
    fn line_bounds(&self, at: usize) -> (usize, usize) {
        let start = self.units[..at]
            .iter()
            .rposition(|u| *u == Unit::Char('\n'))
            .map_or(0, |p| p + 1);
        let end = self.units[at..]
            .iter()
            .position(|u| *u == Unit::Char('\n'))
            .map_or(self.units.len(), |p| at + p);
        (start, end)
    }

    pub fn home(&mut self, select: bool) {
        let (start, _) = self.line_bounds(self.cursor);
        self.move_to(start, select);
    }

    pub fn end(&mut self, select: bool) {
        let (_, end) = self.line_bounds(self.cursor);
        self.move_to(end, select);
    }

    pub fn up(&mut self, select: bool) {
        let (start, _) = self.line_bounds(self.cursor);
        if start == 0 {
            return self.move_to(0, select);
        }
        let column = self.cursor - start;
        let (prev_start, prev_end) = self.line_bounds(start - 1);
        self.move_to((prev_start + column).min(prev_end), select);
    }

    pub fn down(&mut self, select: bool) {
        let (start, end) = self.line_bounds(self.cursor);
        if end >= self.units.len() {
            return self.move_to(self.units.len(), select);
        }
        let column = self.cursor - start;
        let (next_start, next_end) = self.line_bounds(end + 1);
        self.move_to((next_start + column).min(next_end), select);
    }

    pub fn select_all(&mut self) {
        self.anchor = Some(0);
        self.cursor = self.units.len();
    }

    /// The selected text, spans standing for the text they replaced.
    pub fn selected_text(&self) -> Option<String> {
        let (start, end) = self.selection()?;
        Some(
            self.units[start..end]
                .iter()
                .map(|u| match u {
                    Unit::Char(c) => c.to_string(),
                    Unit::Mask { original, .. } => original.clone(),
                })
                .collect(),
        )
    }

    /// Shrinks the selection so it neither starts nor ends with white space (the spaces around
    /// a masked word stay text, so the words beside the span do not run together). Returns
    /// false when nothing but white space was selected.
    pub fn trim_selection(&mut self) -> bool {
        let Some((mut start, mut end)) = self.selection() else {
            return false;
        };
        let space = |u: &Unit| matches!(u, Unit::Char(c) if c.is_whitespace());
        while start < end && space(&self.units[start]) {
            start += 1;
        }
        while end > start && space(&self.units[end - 1]) {
            end -= 1;
        }
        if start == end {
            return false;
        }
        // Keep the direction the user selected in.
        if self.cursor >= self.anchor.unwrap_or(0) {
            self.anchor = Some(start);
            self.cursor = end;
        } else {
            self.anchor = Some(end);
            self.cursor = start;
        }
        true
    }

    /// Whether the selection starts right after a space (a span there takes the space into
    /// its first token, with tokenizers that join spaces to words).
    pub fn space_before_selection(&self) -> bool {
        self.selection()
            .and_then(|(start, _)| start.checked_sub(1))
            .is_some_and(|i| self.units[i] == Unit::Char(' '))
    }

    /// Turns the selection into one masked span of `count` tokens that remembers the text.
    /// Returns false when nothing is selected.
    pub fn mask_selection(&mut self, count: usize) -> bool {
        let Some(original) = self.selected_text() else {
            return false;
        };
        let Some((start, end)) = self.selection() else {
            return false;
        };
        let count = count.clamp(1, MAX_SPAN);
        self.edit(start, end, vec![Unit::Mask { count, original }], start + 1);
        true
    }

    /// Index of the span at or just before the cursor.
    fn span_near_cursor(&self) -> Option<usize> {
        [self.cursor, self.cursor.wrapping_sub(1)]
            .into_iter()
            .find(|&i| matches!(self.units.get(i), Some(Unit::Mask { .. })))
    }

    /// Unmarks the span at the cursor (or every span in the selection), restoring its text.
    pub fn unmask(&mut self) -> bool {
        let (start, end) = match self.selection() {
            Some(range) => range,
            None => match self.span_near_cursor() {
                Some(i) => (i, i + 1),
                None => return false,
            },
        };
        if !self.units[start..end]
            .iter()
            .any(|u| matches!(u, Unit::Mask { .. }))
        {
            return false;
        }
        let restored: Vec<Unit> = self.units[start..end]
            .iter()
            .flat_map(|u| match u {
                Unit::Mask { original, .. } => original.chars().map(Unit::Char).collect(),
                other => vec![other.clone()],
            })
            .collect();
        let n = restored.len();
        self.edit(start, end, restored, start + n);
        true
    }

    /// Changes the token count of the span at the cursor by `delta`.
    pub fn resize_span(&mut self, delta: i64) -> bool {
        let Some(i) = self.span_near_cursor() else {
            return false;
        };
        let Unit::Mask { count, original } = &self.units[i] else {
            return false;
        };
        let new_count = (*count as i64 + delta).clamp(1, MAX_SPAN as i64) as usize;
        if new_count == *count {
            // At a limit: nothing changes, so nothing goes on the undo stack.
            return false;
        }
        let unit = Unit::Mask {
            count: new_count,
            original: original.clone(),
        };
        let cursor = self.cursor;
        self.edit(i, i + 1, vec![unit], cursor);
        true
    }

    /// Replaces the whole document with text in prompt syntax (`[MASK:N]` become spans), as one
    /// undoable edit.
    pub fn replace_all_prompt(&mut self, text: &str) {
        let units = parse_units(text);
        let n = units.len();
        let len = self.units.len();
        self.edit(0, len, units, n);
    }

    /// Replaces the whole document (e.g. with a finished run's text), as one undoable edit.
    pub fn replace_all(&mut self, text: &str) {
        let units: Vec<Unit> = text.chars().map(Unit::Char).collect();
        let n = units.len();
        let len = self.units.len();
        self.edit(0, len, units, n);
    }
}

/// How far back from the cursor a typed `]` looks for the `[` of a mask marker.
const MARKER_LOOKBACK: usize = 48;

/// If `units` end with a complete mask marker, turns it into a span.
fn convert_typed_marker(units: &mut Vec<Unit>) {
    if !matches!(units.last(), Some(Unit::Char(']'))) {
        return;
    }
    let Some(start) = units.iter().rposition(|u| matches!(u, Unit::Char('['))) else {
        return;
    };
    let text: String = units[start..]
        .iter()
        .map(|u| match u {
            Unit::Char(c) => *c,
            Unit::Mask { .. } => '\u{0}',
        })
        .collect();
    if let Ok(segments) = prompt::parse(&text) {
        if let [Segment::Masks(count)] = segments.as_slice() {
            units.truncate(start);
            units.push(Unit::Mask {
                count: (*count).min(MAX_SPAN),
                original: String::new(),
            });
        }
    }
}

/// Whether a unit belongs to a word: letters, digits, apostrophes inside words, and spans.
fn is_word(unit: &Unit) -> bool {
    match unit {
        Unit::Char(c) => c.is_alphanumeric() || *c == '_' || *c == '\'',
        Unit::Mask { .. } => true,
    }
}

fn parse_units(text: &str) -> Vec<Unit> {
    // A marker that is not valid prompt syntax (e.g. "[MASK:x]") is kept literally, each on its
    // own: one bad marker in a paste does not turn the good ones into text.
    let segments = prompt::parse(text).unwrap_or_else(|_| {
        let mut segments = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("[MASK") {
            segments.push(Segment::Text(rest[..start].to_string()));
            let tail = &rest[start..];
            let end = tail.find(']').map_or(tail.len(), |e| e + 1);
            let marker = &tail[..end];
            match prompt::parse(marker) {
                Ok(parsed) => segments.extend(parsed),
                Err(_) => segments.push(Segment::Text(marker.to_string())),
            }
            rest = &tail[end..];
        }
        segments.push(Segment::Text(rest.to_string()));
        segments
    });
    segments
        .into_iter()
        .flat_map(|s| match s {
            Segment::Text(t) => t.chars().map(Unit::Char).collect::<Vec<_>>(),
            // Typed, pasted or restored spans are clamped like Ctrl-K spans.
            Segment::Masks(count) => vec![Unit::Mask {
                count: count.min(MAX_SPAN),
                original: String::new(),
            }],
        })
        .collect()
}

#[cfg(test)]
mod tests;
