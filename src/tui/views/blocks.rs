//! The block view of a block-diffusion lane: one row of cells per block (cached and exact,
//! being denoised, finished awaiting its write, still masked) and the same in words.

use ratatui::text::Line;

use super::styled;
use crate::sampler::BlockState;
use crate::tui::app::App;

/// The block view's row: a cell per block (cached and exact, being denoised, still masked)
/// and what it means in words, the sub-block decoded and a bridge token; shorter forms for
/// narrow lanes.
pub fn strip(
    app: &App,
    state: &BlockState,
    window: &std::ops::Range<usize>,
    canvas: &[u32],
    room: usize,
) -> Line<'static> {
    let theme = app.theme();
    let len = canvas.len();
    // A hostile trace's blocks past the canvas (or backwards) are dropped.
    let blocks: Vec<std::ops::Range<usize>> = state
        .blocks
        .iter()
        .filter(|b| b.start < b.end && b.end <= len)
        .cloned()
        .collect();
    let cached = state.cached.min(len);
    let done = window.end <= cached;
    let current = blocks
        .iter()
        .position(|b| b.start <= window.start && window.start < b.end.max(b.start + 1));
    let cached_blocks = blocks.iter().filter(|b| b.end <= cached).count();
    let to_go = blocks
        .iter()
        .filter(|b| b.start >= window.end && b.end > cached)
        .count();
    let n = blocks.len();
    let bridge = state
        .bridged
        .first()
        .and_then(|&pos| canvas.get(pos))
        .map_or_else(String::new, |&id| {
            format!(" · ↳ {:?} autoregressive", app.tokens.text(id))
        });
    // The longest form that leaves room for a few cells: a narrow lane (80 columns, or lanes
    // side by side) drops what is to go, then the sub-block, then the bridge token's words.
    let forms: Vec<String> = if done {
        let all = format!(" {cached_blocks} of {n} blocks cached");
        vec![format!("{all}{bridge}"), all]
    } else {
        let at = current.map_or(0, |c| c + 1);
        let sub = state.sub_block.as_ref().map_or_else(String::new, |sub| {
            let size = sub.len().max(1);
            let k = (sub.start.saturating_sub(window.start)) / size + 1;
            let of = window.len().div_ceil(size);
            format!(" (sub-block {k}/{of})")
        });
        let core = format!(" {cached_blocks} cached · block {at}/{n} denoising");
        vec![
            format!("{core}{sub} · {to_go} to go{bridge}"),
            format!("{core}{sub}{bridge}"),
            format!("{core}{bridge}"),
            core,
        ]
    };
    let cells_wanted = n.clamp(1, 4) + 2;
    let words = forms
        .iter()
        .find(|w| w.chars().count() + cells_wanted <= room)
        .or(forms.last())
        .cloned()
        .unwrap_or_default();
    // The cells take what the words leave, at most one per block.
    let cells_room = room.saturating_sub(words.chars().count() + 1);
    let mut spans = vec![styled(theme.label, " ")];
    if cells_room >= 4 {
        let skip = n.saturating_sub(cells_room);
        if skip > 0 {
            spans.push(styled(theme.label, "…"));
        }
        for (i, b) in blocks.iter().enumerate().skip(skip + usize::from(skip > 0)) {
            let (glyph, style) = if b.end <= cached {
                ("█", theme.context)
            } else if Some(i) == current && !done {
                ("▓", theme.fresh)
            } else if b.end <= window.start {
                // Finished, written to the cache by the next block's first pass (BD3LM).
                ("▇", theme.committed)
            } else {
                ("░", theme.mask)
            };
            spans.push(styled(style, glyph));
        }
    }
    spans.push(styled(theme.label, words));
    Line::from(spans)
}
