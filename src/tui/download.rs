//! The download panel shown while `--model ORG/NAME` is fetched from the hub, before the
//! playground opens. A model already complete in the cache opens at once, with no request.

use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use crossterm::event::{Event as TermEvent, EventStream, KeyEventKind};
use futures_util::StreamExt;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Modifier;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Gauge, Paragraph};
use ratatui::Frame;

use super::keymap::{Command, Input, KeyMap, Scope};
use super::theme::Theme;
use crate::hub::{DownloadProgress, Fetched, Hub, ProgressSink, RepoSpec};

/// What the runtime reports of a download started in the playground.
#[derive(Debug, Clone, PartialEq)]
pub enum DownloadNews {
    Progress(DownloadProgress, Duration),
    /// The model's folder, or why there is none.
    Finished(Result<std::path::PathBuf, String>),
}

/// What the panel shows.
#[derive(Debug, Clone, PartialEq)]
pub struct DownloadView {
    pub spec: String,
    pub endpoint: String,
    pub cache_dir: String,
    pub progress: DownloadProgress,
    pub elapsed: Duration,
}

fn size(bytes: u64) -> String {
    if bytes >= 1 << 30 {
        format!("{:.2} GiB", bytes as f64 / (1u64 << 30) as f64)
    } else {
        format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
    }
}

/// Draws the panel in the middle of `area`.
pub fn render(view: &DownloadView, theme: &Theme, frame: &mut Frame, area: Rect) {
    frame.render_widget(Block::default().style(theme.base), area);
    let width = area.width.min(76);
    let height = area.height.min(12);
    let panel = Rect {
        x: area.x + (area.width - width) / 2,
        y: area.y + (area.height - height) / 2,
        width,
        height,
    };
    frame.render_widget(Clear, panel);
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(theme.border_focus)
        .title(Span::styled(
            format!(" Downloading {} ", view.spec),
            theme.title,
        ))
        .style(theme.base);
    let inner = block.inner(panel);
    frame.render_widget(block, panel);
    let rows = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Min(0),
        Constraint::Length(1),
    ])
    .split(inner);
    let p = &view.progress;
    let seconds = view.elapsed.as_secs_f64();
    let rate = if seconds > 0.0 {
        p.done_bytes as f64 / seconds
    } else {
        0.0
    };
    let ratio = if p.total_bytes > 0 {
        (p.done_bytes as f64 / p.total_bytes as f64).clamp(0.0, 1.0)
    } else {
        0.0
    };
    let label = |text: &str| Span::styled(format!("{text:<9}"), theme.label);
    let value = |text: String| Span::styled(text, theme.value);
    let line = |name: &str, text: String| Line::from(vec![label(name), value(text)]);
    frame.render_widget(Paragraph::new(line("from", view.endpoint.clone())), rows[0]);
    frame.render_widget(
        Paragraph::new(line("into", view.cache_dir.clone())),
        rows[1],
    );
    let files = if p.total_files == 0 {
        "listing the repository...".to_string()
    } else {
        format!("{} of {} done", p.done_files, p.total_files)
    };
    frame.render_widget(Paragraph::new(line("files", files)), rows[3]);
    frame.render_widget(
        Paragraph::new(line(
            "file",
            p.current.clone().unwrap_or_else(|| "-".to_string()),
        )),
        rows[4],
    );
    let eta = if rate > 0.0 && p.total_bytes > p.done_bytes {
        format!(
            ", about {:.0} s left",
            (p.total_bytes - p.done_bytes) as f64 / rate
        )
    } else {
        String::new()
    };
    frame.render_widget(
        Paragraph::new(line("speed", format!("{}/s{eta}", size(rate as u64)))),
        rows[5],
    );
    frame.render_widget(
        Gauge::default()
            .gauge_style(theme.fresh)
            .ratio(ratio)
            .label(format!(
                "{} / {}  {:.0}%",
                size(p.done_bytes),
                size(p.total_bytes),
                ratio * 100.0
            )),
        rows[6],
    );
    frame.render_widget(
        Paragraph::new(Line::from(vec![
            Span::styled("Esc", theme.key.add_modifier(Modifier::BOLD)),
            Span::styled(" cancel (finished files stay in the cache)", theme.label),
        ])),
        rows[8],
    );
}

/// The model's folder: from the cache at once when it is complete there, else downloaded under
/// the panel. Esc, q or Ctrl-C cancel the download and return an error.
pub fn fetch(spec: &RepoSpec, theme: &Theme) -> Result<Fetched> {
    crate::hub::runtime()?.block_on(async {
        let hub = Hub::from_env()?;
        if let Some(dir) = hub.cached(spec).await {
            return Ok(Fetched {
                dir,
                origin: crate::hub::Origin::Cache,
            });
        }
        if hub.offline() {
            // Fails with the message that names the missing files.
            return hub
                .fetch(spec, std::sync::Arc::new(|_: &DownloadProgress| {}))
                .await;
        }
        let mut terminal = ratatui::try_init().context("setting up the terminal")?;
        let result = download_under_panel(&mut terminal, hub, spec, theme).await;
        ratatui::restore();
        result
    })
}

async fn download_under_panel(
    terminal: &mut ratatui::DefaultTerminal,
    hub: Hub,
    spec: &RepoSpec,
    theme: &Theme,
) -> Result<Fetched> {
    let (tx, mut rx) = tokio::sync::watch::channel(DownloadProgress::default());
    let sink: ProgressSink = std::sync::Arc::new(move |p: &DownloadProgress| {
        tx.send_replace(p.clone());
    });
    let mut view = DownloadView {
        spec: spec.to_string(),
        endpoint: crate::hub::endpoint(),
        cache_dir: hub.cache_dir().display().to_string(),
        progress: DownloadProgress::default(),
        elapsed: Duration::ZERO,
    };
    let owned_spec = spec.clone();
    let mut task = tokio::spawn(async move { hub.fetch(&owned_spec, sink).await });
    let mut input = EventStream::new();
    let mut ticker = tokio::time::interval(Duration::from_millis(100));
    let started = Instant::now();
    loop {
        view.elapsed = started.elapsed();
        terminal.draw(|frame| render(&view, theme, frame, frame.area()))?;
        tokio::select! {
            done = &mut task => {
                return done.map_err(|e| anyhow!("the download task failed: {e}"))?;
            }
            changed = rx.changed() => {
                if changed.is_ok() {
                    view.progress = rx.borrow_and_update().clone();
                }
            }
            event = input.next() => {
                if let Some(Ok(TermEvent::Key(key))) = event {
                    // The panel's keys, as the playground's download panel has them.
                    let cancel = matches!(
                        KeyMap::defaults().translate(Scope::Download, &key),
                        Input::Command(Command::CancelDownload | Command::Quit)
                    );
                    if key.kind != KeyEventKind::Release && cancel {
                        task.abort();
                        return Err(anyhow!(
                            "download of {spec} cancelled; the files finished so far stay in the cache"
                        ));
                    }
                }
            }
            _ = ticker.tick() => {}
        }
    }
}

/// A download started from inside the playground (the model picker's hub id): it runs on a
/// thread with a runtime of its own, so the interface stays responsive, and reports through
/// the callbacks: `progress` now and then (from inside the download's runtime: it must not
/// block), `finished` once at the end.
pub struct DownloadTask {
    cancel: Option<tokio::sync::oneshot::Sender<()>>,
}

/// Progress is reported at most this often.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(50);

impl DownloadTask {
    /// Fetches `spec` (at once from the cache when it is complete there).
    pub fn start(
        spec: RepoSpec,
        progress: impl Fn(DownloadNews) + Send + Sync + 'static,
        finished: impl FnOnce(DownloadNews) + Send + 'static,
    ) -> Self {
        let (cancel, cancelled) = tokio::sync::oneshot::channel::<()>();
        let started = Instant::now();
        let last = std::sync::Mutex::new(None::<Instant>);
        let sink: ProgressSink = std::sync::Arc::new(move |p: &DownloadProgress| {
            let Ok(mut last) = last.lock() else { return };
            if last.is_some_and(|at| at.elapsed() < PROGRESS_INTERVAL) {
                return;
            }
            *last = Some(Instant::now());
            progress(DownloadNews::Progress(p.clone(), started.elapsed()));
        });
        std::thread::spawn(move || {
            let result = crate::hub::runtime().and_then(|runtime| {
                runtime.block_on(async {
                    let hub = Hub::from_env()?;
                    tokio::select! {
                        fetched = hub.fetch(&spec, sink) => fetched,
                        _ = cancelled => Err(anyhow!(
                            "download of {spec} cancelled; the files finished so far stay in \
                             the cache"
                        )),
                    }
                })
            });
            finished(DownloadNews::Finished(
                result.map(|f| f.dir).map_err(|e| format!("{e:#}")),
            ));
        });
        Self {
            cancel: Some(cancel),
        }
    }

    /// Stops the download; `finished` then reports the cancellation.
    pub fn cancel(&mut self) {
        if let Some(cancel) = self.cancel.take() {
            let _ = cancel.send(());
        }
    }
}
