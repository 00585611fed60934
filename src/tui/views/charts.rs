//! The per-step charts (Ctrl-D): masks left, tokens committed and their mean score at every
//! step, one line per lane, up to the step shown.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Axis, Chart, Dataset, GraphType};
use ratatui::Frame;

use super::{inner, panel};
use crate::tui::app::{App, LaneView};

/// Rows the chart pane takes under the live panel.
pub const HEIGHT: u16 = 9;

/// A measure of a lane at a step (1-based).
type Measure = fn(&LaneView, usize) -> f64;

/// One measure per step of a lane, as (step, value) points.
fn series(lane: &LaneView, shown: usize, measure: Measure) -> Vec<(f64, f64)> {
    (1..=shown.min(lane.frames.len()))
        .map(|step| (step as f64, measure(lane, step)))
        .collect()
}

fn masks_left(lane: &LaneView, step: usize) -> f64 {
    lane.frames[step - 1].masked as f64
}

fn committed(lane: &LaneView, step: usize) -> f64 {
    lane.frames[step - 1].committed.len() as f64
}

fn mean_score(lane: &LaneView, step: usize) -> f64 {
    let c = &lane.frames[step - 1].committed;
    if c.is_empty() {
        0.0
    } else {
        c.iter().map(|c| c.score).sum::<f64>() / c.len() as f64
    }
}

pub fn render(app: &App, frame: &mut Frame, area: Rect) {
    let theme = app.theme();
    let Some(run) = &app.run else {
        let block = panel(app, " Per step (Ctrl-D hides) ", None);
        frame.render_widget(block, area);
        return;
    };
    let shown = run.shown_step();
    let steps = run
        .lanes
        .iter()
        .filter_map(|l| l.frames.first().map(|f| f.steps))
        .max()
        .unwrap_or(1)
        .max(1);
    // A colour per lane, from the theme's confidence palette.
    let lane_styles: Vec<Style> = (0..run.lanes.len())
        .map(|i| theme.confidence([0.9, 0.6, 0.3, 0.1][i % 4]))
        .collect();
    // The title names each lane's colour.
    let mut title = vec![Span::styled(" Per step: ", theme.title)];
    for (lane, style) in run.lanes.iter().zip(&lane_styles) {
        title.push(Span::styled("━━ ", *style));
        title.push(Span::styled(format!("{}  ", lane.label), theme.label));
    }
    title.push(Span::styled("(Ctrl-D hides) ", theme.label));
    let block = panel(app, Line::from(title), None);
    let body = inner(&block, area);
    frame.render_widget(block, area);
    let charts: [(&str, Measure); 3] = [
        ("masks left", masks_left),
        ("committed", committed),
        ("mean score", mean_score),
    ];
    let areas = Layout::horizontal([Constraint::Ratio(1, 3); 3]).split(body);
    for ((title, measure), chart_area) in charts.into_iter().zip(areas.iter()) {
        let data: Vec<Vec<(f64, f64)>> = run
            .lanes
            .iter()
            .map(|lane| series(lane, shown, measure))
            .collect();
        let (low, high) = data
            .iter()
            .flatten()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &(_, y)| {
                (lo.min(y), hi.max(y))
            });
        let (low, high) = if low.is_finite() {
            (low.min(0.0), high.max(low + 1e-9))
        } else {
            (0.0, 1.0)
        };
        let datasets: Vec<Dataset> = data
            .iter()
            .zip(&run.lanes)
            .zip(&lane_styles)
            .map(|((points, lane), style)| {
                Dataset::default()
                    .name(lane.label.clone())
                    .marker(Marker::HalfBlock)
                    .graph_type(GraphType::Line)
                    .style(*style)
                    .data(points)
            })
            .collect();
        // Counts are whole numbers; scores are not.
        let format = |v: f64| {
            if title == "mean score" {
                format!("{v:.2}")
            } else {
                format!("{v:.0}")
            }
        };
        let chart = Chart::new(datasets)
            .style(theme.base)
            .x_axis(
                Axis::default()
                    .title(Line::styled(title, theme.label))
                    .style(theme.label)
                    .bounds([1.0, steps as f64])
                    .labels(["1".to_string(), steps.to_string()]),
            )
            .y_axis(
                Axis::default()
                    .style(theme.label)
                    .bounds([low, high])
                    .labels([format(low), format(high)]),
            )
            .hidden_legend_constraints((Constraint::Ratio(0, 1), Constraint::Ratio(0, 1)));
        frame.render_widget(chart, *chart_area);
    }
}
