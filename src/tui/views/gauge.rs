//! The step gauge under the live panel: where the view is in the run (filled), what the engine
//! has sent beyond it (shaded) and what is still to come (empty). A click or a drag on it
//! scrubs to that step.

use ratatui::layout::Rect;
use ratatui::text::Line;
use ratatui::widgets::Paragraph;
use ratatui::Frame;

use super::styled;
use crate::tui::app::{App, Area as HitRect};

/// Draws the gauge in the one-row `area`; returns the bar's cells (for the mouse).
pub fn render(app: &App, frame: &mut Frame, area: Rect) -> HitRect {
    let Some(run) = &app.run else {
        return HitRect::default();
    };
    let theme = app.theme();
    let shown = run.shown_step();
    let latest = run.latest_step();
    let planned = run.planned_steps();
    let label = format!(" step {shown:>3} of {planned:<3} ");
    let bar_width = (area.width as usize).saturating_sub(label.chars().count() + 1);
    let cells = |steps: usize| (steps * bar_width).div_ceil(planned).min(bar_width);
    let (view, sent) = (cells(shown), cells(latest));
    let line = Line::from(vec![
        styled(theme.label, label.clone()),
        styled(theme.value, "█".repeat(view)),
        styled(theme.label, "▓".repeat(sent - view)),
        styled(theme.mask, "░".repeat(bar_width - sent)),
    ]);
    frame.render_widget(Paragraph::new(line).style(theme.base), area);
    HitRect {
        x: area.x + label.chars().count() as u16,
        y: area.y,
        width: bar_width as u16,
        height: 1,
        scroll: 0,
        rows: 0,
    }
}
