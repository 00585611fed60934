//! The mouse room: where the panels were drawn, and what a click, a drag or the wheel there
//! does.

use std::time::Duration;

use crossterm::event::{MouseButton, MouseEvent, MouseEventKind};

use super::editing::unit_width;
use super::live::scroll_live;
use super::{App, Focus, TokenCursor};
use crate::run::Field;
use crate::tui::editor::{index_at, visual_rows};
use crate::tui::flow::Placed;

/// Where the panels went as drawn (the views return it; clicks and scrolling read it).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Drawn {
    /// The editor's text area, with its scroll.
    pub editor: Area,
    /// The live panel's first lane, with its scroll offset and rows.
    pub live: Area,
    /// The live panel as a whole (every lane), for clicks.
    pub live_panel: Area,
    /// The parameter rows, with the first row shown.
    pub params: Area,
    /// Where each lane's tokens were drawn (the token cursor and clicks).
    pub lanes: Vec<LaneCells>,
    /// The step gauge's bar.
    pub gauge: Area,
}

/// Where a panel was last drawn (for mouse hit-testing), with its scroll.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Area {
    pub x: u16,
    pub y: u16,
    pub width: u16,
    pub height: u16,
    /// Rows of content scrolled off the top.
    pub scroll: usize,
    /// Rows of content in all (the most of any lane in the live panel).
    pub rows: usize,
}

impl Area {
    pub fn contains(&self, x: u16, y: u16) -> bool {
        x >= self.x && x < self.x + self.width && y >= self.y && y < self.y + self.height
    }
}

/// Where a lane's text and tokens were drawn, for the mouse and the token cursor.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LaneCells {
    pub area: Area,
    pub placed: Vec<Placed>,
}

/// The step a click at column `x` of the step gauge's bar means: the left end is before the
/// first step, the right end the last of `planned`.
pub fn gauge_step(bar: Area, x: u16, planned: usize) -> usize {
    if bar.width == 0 {
        return 0;
    }
    let offset = x.saturating_sub(bar.x).min(bar.width - 1) as f64;
    let span = (bar.width.max(2) - 1) as f64;
    (offset / span * planned as f64).round() as usize
}

/// Two clicks this close together are a double click.
const DOUBLE_CLICK: Duration = Duration::from_millis(400);

pub(super) fn on_mouse(app: &mut App, mouse: MouseEvent) {
    let area = app.drawn.editor;
    let live = app.drawn.live;
    let (params, live_panel, gauge) = (app.drawn.params, app.drawn.live_panel, app.drawn.gauge);
    let (x, y) = (mouse.column, mouse.row);
    match mouse.kind {
        // A click on the parameters picks that row; on the live panel, focuses it.
        MouseEventKind::Down(MouseButton::Left) if params.contains(x, y) => {
            app.focus = Focus::Params;
            let row = params.scroll + (y - params.y) as usize;
            if row < Field::ALL.len() && !app.form.editing() {
                app.form.row = row;
            }
        }
        // A click or a drag on the step gauge scrubs there (and pauses the replay).
        MouseEventKind::Down(MouseButton::Left) | MouseEventKind::Drag(MouseButton::Left)
            if gauge.contains(x, y)
                || (matches!(mouse.kind, MouseEventKind::Drag(_))
                    && gauge.width > 0
                    && y == gauge.y) =>
        {
            if let Some(run) = app.run.as_mut() {
                let latest = run.latest_step();
                let planned = run.planned_steps();
                let step = gauge_step(gauge, x, planned).min(latest);
                run.cursor = Some(step);
                app.focus = Focus::Live;
            }
        }
        MouseEventKind::Down(MouseButton::Left) if live_panel.contains(x, y) => {
            app.focus = Focus::Live;
            // A click on a token opens the inspector there.
            let hit = app
                .drawn
                .lanes
                .iter()
                .enumerate()
                .find_map(|(lane, cells)| {
                    let area = cells.area;
                    area.contains(x, y).then(|| {
                        let row = area.scroll + (y - area.y) as usize;
                        crate::tui::flow::piece_at(&cells.placed, row, (x - area.x) as usize)
                            .map(|pos| TokenCursor { lane, pos })
                    })?
                });
            if let Some(cursor) = hit {
                app.inspector = Some(cursor);
                app.live_scroll = Some(app.drawn.live.scroll);
            }
        }
        MouseEventKind::ScrollUp | MouseEventKind::ScrollDown if params.contains(x, y) => {
            let up = mouse.kind == MouseEventKind::ScrollUp;
            app.form.row = if up {
                app.form.row.saturating_sub(1)
            } else {
                (app.form.row + 1).min(Field::ALL.len() - 1)
            };
        }
        MouseEventKind::ScrollUp | MouseEventKind::ScrollDown
            if live.contains(x, y) || live_panel.contains(x, y) =>
        {
            let rows = if mouse.kind == MouseEventKind::ScrollUp {
                -3
            } else {
                3
            };
            scroll_live(app, rows);
        }
        MouseEventKind::Down(MouseButton::Left) | MouseEventKind::Drag(MouseButton::Left) => {
            if !area.contains(mouse.column, mouse.row) {
                return;
            }
            app.focus = Focus::Editor;
            let row = (mouse.row - area.y) as usize + area.scroll;
            let column = (mouse.column - area.x) as usize;
            let units = app.doc.units();
            let rows = visual_rows(units, (area.width as usize).saturating_sub(1), unit_width);
            let index = index_at(units, &rows, row, column, unit_width);
            let drag = matches!(mouse.kind, MouseEventKind::Drag(_));
            app.doc.move_to(index, drag);
            if !drag {
                // A second click on the same cell within the double-click time selects the word.
                let now = std::time::Instant::now();
                let double = app.last_click.is_some_and(|(at, x, y)| {
                    (x, y) == (mouse.column, mouse.row) && now.duration_since(at) < DOUBLE_CLICK
                });
                if double {
                    app.doc.select_word_at(index);
                    app.last_click = None;
                } else {
                    app.last_click = Some((now, mouse.column, mouse.row));
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The gauge's ends are the first and the last step; clicks past it clamp.
    #[test]
    fn a_click_on_the_gauge_means_a_step() {
        let bar = Area {
            x: 10,
            width: 21,
            ..Area::default()
        };
        assert_eq!(gauge_step(bar, 10, 40), 0);
        assert_eq!(gauge_step(bar, 20, 40), 20);
        assert_eq!(gauge_step(bar, 30, 40), 40);
        assert_eq!(gauge_step(bar, 99, 40), 40);
        assert_eq!(gauge_step(Area::default(), 5, 40), 0);
    }
}
