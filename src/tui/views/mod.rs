//! Views: pure functions of [`App`] that draw into a frame. Colours come only from the theme.

mod blocks;
mod charts;
mod editor;
mod gauge;
mod help;
pub use help::sections as help_sections;
mod inspector;
pub mod live;
mod params;
mod picker;
mod status;

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Paragraph, Wrap};
use ratatui::Frame;

use super::app::{App, Area as HitRect, Drawn, Focus, Overlay};

/// Smallest terminal the layout works in.
pub const MIN_WIDTH: u16 = 60;
pub const MIN_HEIGHT: u16 = 16;

/// Draws the whole screen. Returns where the panels went.
pub fn render(app: &App, frame: &mut Frame) -> Drawn {
    let area = frame.area();
    let theme = app.theme();
    frame.render_widget(Block::default().style(theme.base), area);
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        let text = format!(
            "Terminal too small: dlm-tui needs {MIN_WIDTH}x{MIN_HEIGHT}, this one is {}x{}. Enlarge it, or Ctrl-Q to quit.",
            area.width, area.height
        );
        frame.render_widget(
            Paragraph::new(text)
                .style(theme.error)
                .wrap(Wrap { trim: true }),
            area,
        );
        return Drawn::default();
    }
    let [main, status_area] =
        Layout::vertical([Constraint::Min(8), Constraint::Length(2)]).areas(area);
    // A comparison gives the parameters panel's width to its lanes; the panel comes back
    // while it has focus (Tab).
    let comparing = app.run.as_ref().is_some_and(|r| r.lanes.len() > 1);
    let params_width = if comparing && app.focus != Focus::Params {
        0
    } else if area.width >= 100 {
        34
    } else {
        28
    };
    let [left, right] =
        Layout::horizontal([Constraint::Min(30), Constraint::Length(params_width)]).areas(main);
    let editor_height = (left.height / 3).clamp(5, 14);
    let [editor_area, live_area] =
        Layout::vertical([Constraint::Length(editor_height), Constraint::Min(4)]).areas(left);

    let (editor_inner, scroll) = editor::render(app, frame, editor_area);
    // Ctrl-D puts the per-step charts under the live panel when there is room.
    let live_area = if app.show_charts && live_area.height >= charts::HEIGHT + 6 {
        let [lanes, charts_area] =
            Layout::vertical([Constraint::Min(6), Constraint::Length(charts::HEIGHT)])
                .areas(live_area);
        charts::render(app, frame, charts_area);
        lanes
    } else {
        live_area
    };
    // The step gauge takes the row under the lanes once something has run.
    let (live_area, gauge) = if app.run.is_some() && live_area.height >= 8 {
        let [lanes, gauge_row] =
            Layout::vertical([Constraint::Min(6), Constraint::Length(1)]).areas(live_area);
        (lanes, gauge::render(app, frame, gauge_row))
    } else {
        (live_area, HitRect::default())
    };
    let (live, lanes) = live::render(app, frame, live_area);
    let params = if params_width > 0 {
        params::render(app, frame, right)
    } else {
        HitRect::default()
    };
    status::render(app, frame, status_area);
    match &app.overlay {
        Some(Overlay::Help { scroll }) => help::render(app, *scroll, frame, area),
        Some(Overlay::Picker(p)) => picker::render(app, p, frame, area),
        Some(Overlay::Download(view)) => {
            crate::tui::download::render(view, app.theme(), frame, area)
        }
        None => {}
    }
    Drawn {
        editor: HitRect {
            x: editor_inner.x,
            y: editor_inner.y,
            width: editor_inner.width,
            height: editor_inner.height,
            scroll,
            rows: 0,
        },
        live,
        live_panel: hit(live_area),
        params,
        lanes,
        gauge,
    }
}

/// A `width` x `height` box in the middle of `area` (the overlays).
fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let [_, middle, _] = Layout::vertical([
        Constraint::Fill(1),
        Constraint::Length(height),
        Constraint::Fill(1),
    ])
    .areas(area);
    let [_, popup, _] = Layout::horizontal([
        Constraint::Fill(1),
        Constraint::Length(width),
        Constraint::Fill(1),
    ])
    .areas(middle);
    popup
}

fn hit(area: Rect) -> HitRect {
    HitRect {
        x: area.x,
        y: area.y,
        width: area.width,
        height: area.height,
        scroll: 0,
        rows: 0,
    }
}

/// A bordered panel whose border shows focus.
fn panel<'a>(app: &App, title: impl Into<Line<'a>>, focus: Option<Focus>) -> Block<'a> {
    let theme = app.theme();
    let focused = focus.is_some_and(|f| f == app.focus);
    Block::default()
        .borders(Borders::ALL)
        .border_style(if focused {
            theme.border_focus
        } else {
            theme.border
        })
        .title(title.into().style(theme.title))
        .style(theme.base)
}

fn inner(block: &Block, area: Rect) -> Rect {
    block.inner(area)
}

fn styled(style: Style, text: impl Into<String>) -> ratatui::text::Span<'static> {
    ratatui::text::Span::styled(text.into(), style)
}
