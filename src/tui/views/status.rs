//! The status bar: run progress and speed, the model, the parameters of the next run, and a
//! one-line key legend (or the latest message).

use ratatui::layout::Rect;
use ratatui::text::Line;
use ratatui::widgets::Paragraph;
use ratatui::Frame;

use super::styled;
use crate::tui::app::{App, MessageKind};
use crate::tui::keymap::Command;

pub fn render(app: &App, frame: &mut Frame, area: Rect) {
    let theme = app.theme();
    let mut top = Vec::new();
    if let Some(run) = &app.run {
        let step = run.shown_step();
        if let Some(f) = run.lanes.first().and_then(|l| l.frame_at(step)) {
            let secs = f.elapsed.as_secs_f64();
            let committed = run
                .initial
                .iter()
                .filter(|&&t| t == app.tokens.mask_id)
                .count()
                - f.masked;
            let rate = if secs > 0.0 {
                committed as f64 / secs
            } else {
                0.0
            };
            // The step, masks and passes are in the live panel; the speed is said here.
            top.push(styled(
                theme.status,
                format!(
                    " step {}/{} · {:.1} tok/s · {:.2}s │",
                    f.step, f.steps, rate, secs
                ),
            ));
        }
    }
    let p = &app.settings.params;
    // A replay has no weights to count, and says what it replays.
    let size = if let Some(source) = &app.replay_of {
        format!(" · replay of {source}")
    } else if app.model.parameters == 0 {
        String::new()
    } else {
        // Quantized weights say their format beside the memory they take.
        let format = app
            .model
            .quantization
            .map_or(String::new(), |q| format!(" {}", q.name()));
        format!(
            " ({:.1}M, {}{format})",
            app.model.parameters as f64 / 1e6,
            crate::files::human_bytes(app.model.weight_bytes as u64)
        )
    };
    // Under ReMDM the schedule decides the commits, not the strategy.
    let method = match p.remdm {
        crate::sampler::Remdm::Off => format!("{} {}", p.strategy.name(), p.schedule.name()),
        crate::sampler::Remdm::Loop => format!(
            "{} η={} on={} off={} α={}",
            p.method(),
            p.eta,
            p.t_on,
            p.t_off,
            p.alpha_on
        ),
        _ => format!("{} η={}", p.method(), p.eta),
    };
    let line = |size: &str, method: &str| {
        format!(
            " {}{size} · L={} S={} B={} T={} {method} ",
            app.model.name,
            app.settings.length,
            app.settings.steps.map_or("auto".into(), |s| s.to_string()),
            p.block_length,
            p.temperature,
        )
    };
    let mut extras = Vec::new();
    if let Some(k) = p.top_k {
        extras.push(format!("top-k={k}"));
    }
    if let Some(tp) = p.top_p {
        extras.push(format!("top-p={tp}"));
    }
    match p.parallel {
        Some(crate::sampler::Parallel::Threshold(t)) => extras.push(format!("τ={t}")),
        Some(crate::sampler::Parallel::Factor(f)) => extras.push(format!("factor={f}")),
        None => {}
    }
    if app.chat_mode {
        extras.push("chat".to_string());
    }
    if p.cache != crate::sampler::CacheMode::None {
        extras.push(format!("cache={}", p.cache.name()));
    }
    if let Some(a) = p.alg_temp {
        extras.push(format!("alg-temp={a}"));
    }
    if p.cfg_scale > 0.0 {
        extras.push(format!("cfg={}", p.cfg_scale));
    }
    extras.push(format!("seed={}", p.seed));
    if app.settings.sweep >= 2 {
        extras.push(format!("sweep={}", app.settings.sweep));
    }
    // A message takes the first line (until the next key), so the key legend below stays in
    // view.
    match &app.message {
        // The whole line: the run's numbers are in the live panel too.
        Some(m) => {
            top = vec![styled(
                if m.kind == MessageKind::Error {
                    theme.error
                } else {
                    theme.ok
                },
                format!(" {} ", m.text),
            )]
        }
        None => {
            // A narrow terminal drops the weights' size, then the method, before the numbers
            // and the seed at the end are cut.
            let used: usize = top.iter().map(|s| s.content.chars().count()).sum();
            let room = (area.width as usize).saturating_sub(used);
            let extras = extras.join(" ");
            let text = [line(&size, &method), line("", &method), line("", "")]
                .into_iter()
                .map(|params| format!("{} {extras} ", params.trim_end()))
                .find(|t| t.chars().count() <= room)
                .unwrap_or_else(|| format!("{} {extras} ", line("", "").trim_end()));
            top.push(styled(theme.status, text));
        }
    }
    let bottom = {
        let legend = app.keymap.legend(&[
            (Command::Run, "run"),
            (Command::Cancel, "cancel"),
            (Command::MaskSelection, "mask"),
            (Command::Unmask, "unmask"),
            (Command::ToggleCompare, "compare"),
            (Command::FocusNext, "focus"),
            (Command::Help, "help"),
            (Command::Quit, "quit"),
        ]);
        let mut spans = vec![styled(theme.label, " ")];
        for (key, label) in legend {
            spans.push(styled(theme.key, key));
            spans.push(styled(theme.label, format!(" {label}  ")));
        }
        Line::from(spans)
    };
    // A message longer than the line takes the legend's row too, wrapped, so it is read
    // whole (a broken config's file, line and column; a failed download's reason).
    let long = app
        .message
        .as_ref()
        .is_some_and(|m| m.text.chars().count() + 2 > area.width as usize && area.height >= 2);
    if long {
        frame.render_widget(
            Paragraph::new(Line::from(top).style(theme.status))
                .wrap(ratatui::widgets::Wrap { trim: true }),
            area,
        );
        return;
    }
    frame.render_widget(
        Paragraph::new(vec![Line::from(top).style(theme.status), bottom]),
        area,
    );
}
