//! Laying the document out in rows, and finding the unit under a click.

use super::Unit;

/// Soft-wrapped rows of the document at `width` columns: each row is a range of unit indices
/// (a newline ends a row and belongs to none). Rendering and mouse hit-testing share it.
pub fn visual_rows(
    units: &[Unit],
    width: usize,
    unit_width: impl Fn(&Unit) -> usize,
) -> Vec<(usize, usize)> {
    let width = width.max(1);
    let mut rows = Vec::new();
    let mut start = 0;
    let mut col = 0;
    // The last space in the row being laid out: rows break after it, not inside a word.
    let mut last_space: Option<usize> = None;
    for (i, unit) in units.iter().enumerate() {
        if *unit == Unit::Char('\n') {
            rows.push((start, i));
            start = i + 1;
            col = 0;
            last_space = None;
            continue;
        }
        let w = unit_width(unit);
        if col + w > width && i > start {
            match last_space.take() {
                // The word being written moves down whole (the space ends the row).
                Some(space) => {
                    rows.push((start, space + 1));
                    start = space + 1;
                    col = units[start..i].iter().map(&unit_width).sum();
                }
                None => {
                    rows.push((start, i));
                    start = i;
                    col = 0;
                }
            }
            // A word wider than the row is cut where it reaches the edge.
            if col + w > width && i > start {
                rows.push((start, i));
                start = i;
                col = 0;
            }
        }
        if *unit == Unit::Char(' ') {
            last_space = Some(i);
        }
        col += w;
    }
    rows.push((start, units.len()));
    rows
}

/// Unit index under a click at visual (row, column).
pub fn index_at(
    units: &[Unit],
    rows: &[(usize, usize)],
    row: usize,
    column: usize,
    unit_width: impl Fn(&Unit) -> usize,
) -> usize {
    let Some(&(start, end)) = rows.get(row) else {
        return units.len();
    };
    let mut col = 0;
    for (i, unit) in units.iter().enumerate().take(end).skip(start) {
        let w = unit_width(unit);
        if column < col + w {
            return i;
        }
        col += w;
    }
    end
}
