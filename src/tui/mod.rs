//! The interactive playground: a ratatui app over the engine. The UI thread only draws and
//! handles input; the model runs on the engine's own thread and streams step events back.

pub mod app;
pub mod config;
pub mod download;
pub mod editor;
pub mod flow;
pub mod keymap;
pub mod params;
pub mod session;
pub mod theme;
pub mod views;

use std::io::{stdout, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use crossterm::event::{
    DisableBracketedPaste, DisableMouseCapture, EnableBracketedPaste, EnableMouseCapture,
    Event as TermEvent, EventStream, KeyEventKind,
};
use crossterm::execute;
use futures_util::StreamExt;
use ratatui::DefaultTerminal;
use tokio::signal::unix::{signal, SignalKind};

use crate::engine::trace::Trace;
use crate::engine::{Canceller, Engine, JobHandle};
use crate::model::loader::LoadedModel;
use crate::model::ModelInfo;
use crate::text::TextCodec;
use app::{update, Action, App, Effect, Message, MessageKind, RunView};
use download::DownloadNews;
use keymap::{Command, KeyMap};
use theme::Theme;

/// Frames are drawn at most this often while a run streams (keys are answered at once).
const FRAME_INTERVAL: Duration = Duration::from_millis(33);

/// The session is saved this often when it has changed (and on every run and at quit), so a
/// crash loses at most this much typing.
const AUTOSAVE_INTERVAL: Duration = Duration::from_secs(2);

/// Autosave's state: what was last written, and the error of the last attempt if it failed.
#[derive(Default)]
struct Autosave {
    written: Option<String>,
    failed: Option<String>,
}

impl Autosave {
    /// Saves `app` if it changed since the last successful save (always when `force`). A failure
    /// is shown in the status bar (once per distinct error) and remembered for the exit code.
    fn save(&mut self, app: &mut App, path: Option<&std::path::Path>, force: bool) {
        let Some(path) = path else { return };
        let contents = match session::serialize(app) {
            Ok(c) => c,
            Err(e) => return self.fail(app, e.context(format!("writing {}", path.display()))),
        };
        if !force && self.failed.is_none() && self.written.as_deref() == Some(contents.as_str()) {
            return;
        }
        match session::write_atomically(path, contents.as_bytes()) {
            Ok(()) => {
                if self.failed.take().is_some() {
                    update(
                        app,
                        Action::Notify(Message {
                            text: format!("session saved to {} again", path.display()),
                            kind: MessageKind::Info,
                        }),
                    );
                }
                self.written = Some(contents);
            }
            Err(e) => self.fail(app, e),
        }
    }

    fn fail(&mut self, app: &mut App, e: anyhow::Error) {
        let text = format!("could not save the session: {e:#}; your text is still here");
        if self.failed.as_deref() != Some(text.as_str()) {
            update(
                app,
                Action::Notify(Message {
                    text: text.clone(),
                    kind: MessageKind::Error,
                }),
            );
        }
        self.failed = Some(text);
    }
}

/// The app was asked to stop by a signal: the session was saved and the terminal restored, and
/// the process should exit with 128 + the signal's number, as shells expect.
#[derive(Debug, thiserror::Error)]
#[error("stopped by signal {0}")]
pub struct Signalled(pub i32);

/// Everything the app needs besides the model.
pub struct Options {
    pub keymap: KeyMap,
    pub themes: Vec<Theme>,
    pub theme_index: usize,
    /// `--theme` was given: a restored session's theme does not replace it.
    pub theme_forced: bool,
    /// Run settings from the configuration (a restored session replaces them).
    pub settings: crate::run::Settings,
    /// Where the session (text, masks, parameters) is saved; `None` disables autosave.
    pub session_path: Option<PathBuf>,
    /// The model's chat template, if it is an instruct model (enables chat mode).
    pub chat_template: Option<crate::chat::ChatTemplate>,
    /// Where F9 writes runs (created on the first export).
    pub export_dir: PathBuf,
    /// Steps per second the live panel shows (0: every step as it arrives).
    pub replay_speed: f64,
    /// The parameter presets Ctrl-L cycles through.
    pub presets: Vec<(String, crate::run::LaneSpec)>,
    /// Local model folders the picker (F10) offers.
    pub model_folders: Vec<PathBuf>,
    /// The remote lane's label when the engine runs one beside the model (`--beside`).
    pub beside: Option<String>,
    /// How models picked in the app (F10) are loaded.
    pub load: ModelLoad,
    /// What could not be used of the config or theme files (the app started on defaults for
    /// it): shown as an error when the app opens.
    pub warning: Option<String>,
}

/// How the playground loads a model it switches to: as the first one was.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModelLoad {
    pub precision: crate::model::loader::Precision,
    pub device: crate::model::DeviceKind,
    /// `--quantize`: the linear layers' format.
    pub quantize: Option<crate::kernels::quant::Quantization>,
}

/// Runs the app until the user quits. The terminal is restored on every exit path.
pub fn run(loaded: LoadedModel, options: Options) -> Result<()> {
    let LoadedModel { model, codec } = loaded;
    let info = model.info().clone();
    let engine = Engine::new(model)?;
    run_with(engine, codec, info, options)
}

/// [`run`] on an engine of any kind: a local model's, or a `dlm-tui serve`'s
/// ([`Engine::remote`]) with the served model's facts and tokenizer.
pub fn run_with(engine: Engine, codec: TextCodec, info: ModelInfo, options: Options) -> Result<()> {
    let mut app = new_app(codec, info, &options);
    app.chat_template = options.chat_template;
    app.settings = options.settings;
    app.model_folders = options.model_folders.clone();
    app.beside = options.beside.clone();
    app.hub_cache = crate::hub::Hub::from_env()
        .ok()
        .map(|h| h.cache_dir().to_path_buf());
    let load = options.load;
    let mut session_path = options.session_path;
    let export_dir = options.export_dir;
    if let Some(path) = session_path.clone() {
        match session::load(&path) {
            Ok(Some(restored)) => {
                if let Some(warning) = restored.warning.clone() {
                    app.message = Some(Message {
                        text: warning,
                        kind: MessageKind::Error,
                    });
                }
                let mut restored = restored;
                if options.theme_forced {
                    restored.theme = None;
                }
                restored.apply(&mut app);
            }
            Ok(None) => {}
            Err(e) => {
                // Neither read nor moved aside: never write over it.
                session_path = None;
                app.message = Some(Message {
                    text: format!("could not restore the last session: {e:#}; autosave is off"),
                    kind: MessageKind::Error,
                })
            }
        }
    }
    app.follow_model_blocks();
    if let Some(warning) = options.warning {
        app.message = Some(Message {
            text: warning,
            kind: MessageKind::Error,
        });
    }
    drive(
        &mut app,
        Some(engine),
        load,
        session_path.as_deref(),
        &export_dir,
    )
}

/// A model the picker chose, with its chat template, loaded off the UI thread.
type Loaded = std::result::Result<(LoadedModel, Option<crate::chat::ChatTemplate>), String>;

/// Loads `source` as the playground loads its first model.
pub fn load_source(source: &app::ModelSource, load: ModelLoad) -> Loaded {
    let run = || -> Result<(LoadedModel, Option<crate::chat::ChatTemplate>)> {
        let device = load.device.open()?;
        let precision = load.precision;
        let (mut loaded, template) = match source {
            app::ModelSource::Embedded => (crate::model::embedded::load(precision, &device)?, None),
            app::ModelSource::Dir { dir, name } => (
                crate::model::loader::load_dir_as(dir, Some(name), precision, &device)?,
                crate::model::loader::chat_template(dir)?,
            ),
        };
        if let Some(to) = load.quantize {
            loaded.model.quantize(to)?;
        }
        Ok((loaded, template))
    };
    run().map_err(|e| format!("{e:#}"))
}

/// Opens a saved trace in the playground without a model (`dlm-tui replay FILE`): the run
/// replays from its first step with every instrument (scrubbing, inspector, charts, export);
/// `codec` is the tokenizer of the model that made it. The user's session is neither restored
/// nor overwritten.
pub fn replay(codec: TextCodec, trace: Trace, source: &str, options: Options) -> Result<()> {
    let export_dir = options.export_dir.clone();
    let load = options.load;
    let mut app = replay_app(codec, &trace, source, options);
    drive(&mut app, None, load, None, &export_dir)
}

/// The app [`replay`] runs: the trace's text in the editor, its settings in the panel, and its
/// run in the live panel, replaying from the first step.
pub fn replay_app(codec: TextCodec, trace: &Trace, source: &str, options: Options) -> App {
    let info = ModelInfo {
        eos_ids: trace.eos_ids.clone(),
        ..ModelInfo::stand_in(
            trace.model.clone(),
            crate::model::Family::Replay,
            trace.mask_id,
            codec.vocab_size(),
            trace.canvas.len().max(1),
        )
    };
    let mut app = new_app(codec, info, &options);
    app.doc = editor::Document::from_prompt(&trace.prompt);
    app.chat_mode = trace.chat;
    let run = RunView::from_trace(trace, app.replay_speed);
    app.settings = run.recipe.settings.clone();
    app.compare_mode = run.lanes.len() > 1;
    app.run = Some(run);
    app.replay_of = Some(source.to_string());
    app.focus = app::Focus::Live;
    app.message = Some(Message {
        text: format!(
            "replaying {source}: Space pauses, ←→ step, i inspects a token; no model is loaded"
        ),
        kind: MessageKind::Info,
    });
    app
}

/// An app on `codec` and `info` with the options' keys, themes, replay speed and presets.
fn new_app(codec: TextCodec, info: ModelInfo, options: &Options) -> App {
    let mut app = App::new(
        Arc::new(codec),
        info,
        options.keymap.clone(),
        options.themes.clone(),
        options.theme_index,
    );
    app.replay_speed = options.replay_speed;
    app.presets = options.presets.clone();
    app
}

/// Sets up the terminal, runs the event loop and restores the terminal.
fn drive(
    app: &mut App,
    engine: Option<Engine>,
    load: ModelLoad,
    session_path: Option<&std::path::Path>,
    export_dir: &std::path::Path,
) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let mut terminal = ratatui::try_init().context("setting up the terminal")?;
    // After ratatui's own hook is in place, so that ours decides for both (see TerminalGuard).
    let _guard = TerminalGuard::enter()?;
    let result = runtime.block_on(event_loop(
        &mut terminal,
        app,
        engine,
        load,
        session_path,
        export_dir,
    ));
    drop(_guard);
    result
}

/// Mouse and bracketed paste on (ratatui has set up raw mode and the alternate screen); all off
/// again on drop and on a panic of the UI thread. Panics of the engine thread are caught by the
/// engine and shown in the UI instead, so they must leave the terminal alone: the hook skips
/// the previous hooks (ratatui's restores the terminal) for that thread.
struct TerminalGuard;

impl TerminalGuard {
    fn enter() -> Result<Self> {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if std::thread::current().name() == Some(crate::engine::WORKER_NAME) {
                return;
            }
            restore_terminal();
            previous(info);
        }));
        execute!(stdout(), EnableMouseCapture, EnableBracketedPaste)
            .context("enabling mouse input")?;
        Ok(Self)
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore_terminal();
    }
}

fn restore_terminal() {
    let _ = execute!(stdout(), DisableBracketedPaste, DisableMouseCapture);
    ratatui::restore();
    let _ = stdout().flush();
}

/// Where background work reports to the loop: the engine's steps, the model loader, the
/// picker's scan and the download all send [`Action`]s here, and only `update` reads them.
/// Bounded, so an engine faster than the screen waits rather than piling up steps.
type Inbox = tokio::sync::mpsc::Sender<Action>;

const INBOX_SIZE: usize = 256;

/// Forwards a job's events to the inbox until its last one.
fn relay(mut job: JobHandle, inbox: Inbox) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(event) = job.events.recv().await {
            let last = event.is_last();
            if inbox.send(Action::Engine(event)).await.is_err() || last {
                break;
            }
        }
    })
}

/// Loads `source` and starts its engine on a thread of its own; the inbox hears how it went.
fn load_in_background(source: app::ModelSource, load: ModelLoad, inbox: Inbox) {
    std::thread::spawn(move || {
        let loaded =
            load_source(&source, load).and_then(|(LoadedModel { model, codec }, template)| {
                let info = model.info().clone();
                let engine = Engine::new(model).map_err(|e| format!("{e:#}"))?;
                Ok(app::ModelSwitch {
                    codec: Arc::new(codec),
                    info,
                    chat_template: template,
                    engine: app::EngineSlot::new(engine),
                })
            });
        let _ = inbox.blocking_send(Action::ModelLoaded(loaded));
    });
}

async fn event_loop(
    terminal: &mut DefaultTerminal,
    app: &mut App,
    mut engine: Option<Engine>,
    load: ModelLoad,
    session_path: Option<&std::path::Path>,
    export_dir: &std::path::Path,
) -> Result<()> {
    let mut input = EventStream::new();
    let (inbox, mut news) = tokio::sync::mpsc::channel::<Action>(INBOX_SIZE);
    // A hub model the picker asked for, downloading on its own thread.
    let mut download: Option<download::DownloadTask> = None;
    let mut relaying: Option<tokio::task::JoinHandle<()>> = None;
    let mut canceller: Option<Canceller> = None;
    let mut terminate = signal(SignalKind::terminate())?;
    let mut hangup = signal(SignalKind::hangup())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut ticker = tokio::time::interval(FRAME_INTERVAL);
    let mut autosave_timer = tokio::time::interval(AUTOSAVE_INTERVAL);
    let mut autosave = Autosave::default();
    let mut last_tick = Instant::now();
    // What was restored counts as saved.
    if session_path.is_some() {
        autosave.written = session::serialize(app).ok();
    }
    let mut signalled: Option<i32> = None;
    let mut needs_draw = true;
    let mut last_draw = Instant::now() - FRAME_INTERVAL;
    loop {
        if needs_draw && last_draw.elapsed() >= FRAME_INTERVAL {
            terminal.draw(|frame| {
                app.drawn = views::render(app, frame);
            })?;
            needs_draw = false;
            last_draw = Instant::now();
        }
        let action = tokio::select! {
            term = input.next() => match term {
                Some(Ok(TermEvent::Key(key))) if key.kind != KeyEventKind::Release => Some(Action::Key(key)),
                Some(Ok(TermEvent::Mouse(mouse))) => Some(Action::Mouse(mouse)),
                Some(Ok(TermEvent::Paste(text))) => Some(Action::Paste(text)),
                Some(Ok(TermEvent::Resize(_, _))) => { needs_draw = true; last_draw -= FRAME_INTERVAL; None }
                Some(Ok(_)) => None,
                Some(Err(e)) => return Err(e).context("reading terminal input"),
                None => Some(Action::Command(Command::Quit)),
            },
            action = news.recv() => {
                if let Some(Action::Engine(event)) = &action {
                    if event.is_last() {
                        canceller = None;
                    }
                }
                if matches!(action, Some(Action::Download(DownloadNews::Finished(_)))) {
                    download = None;
                }
                action
            }
            _ = ticker.tick() => {
                // The replay moves on with the time that passed since the last tick.
                let now = Instant::now();
                let elapsed = now.duration_since(last_tick);
                last_tick = now;
                app.run.as_ref().is_some_and(|r| r.replaying()).then_some(Action::Tick(elapsed))
            }
            _ = autosave_timer.tick() => {
                let failed = autosave.failed.is_some();
                autosave.save(app, session_path, false);
                needs_draw |= failed != autosave.failed.is_some();
                None
            }
            _ = terminate.recv() => { signalled = Some(libc::SIGTERM); Some(Action::Command(Command::Quit)) }
            _ = hangup.recv() => { signalled = Some(libc::SIGHUP); Some(Action::Command(Command::Quit)) }
            _ = interrupt.recv() => { signalled = Some(libc::SIGINT); Some(Action::Command(Command::Quit)) }
        };
        let Some(action) = action else { continue };
        let from_input = !matches!(action, Action::Engine(_) | Action::Tick(_));
        for effect in update(app, action) {
            match effect {
                Effect::ScanModels { cache, folders } => {
                    let inbox = inbox.clone();
                    std::thread::spawn(move || {
                        let entries = app::Picker::scan(cache.as_deref(), &folders);
                        let _ = inbox.blocking_send(Action::Models(entries));
                    });
                }
                Effect::LoadModel(source) => load_in_background(source, load, inbox.clone()),
                Effect::UseEngine(slot) => {
                    // The old engine's thread is idle (no switch during a run): dropping it
                    // joins it and frees its weights.
                    drop(engine.take());
                    engine = slot.take();
                }
                Effect::Download(spec) => {
                    let (progress, finished) = (inbox.clone(), inbox.clone());
                    download = Some(download::DownloadTask::start(
                        spec,
                        // Progress may be dropped when the inbox is full (the next one says
                        // more); the end never is.
                        move |news| {
                            let _ = progress.try_send(Action::Download(news));
                        },
                        move |news| {
                            let _ = finished.blocking_send(Action::Download(news));
                        },
                    ));
                }
                Effect::CancelDownload => {
                    if let Some(task) = download.as_mut() {
                        task.cancel();
                    }
                }
                Effect::Submit(new_job) => {
                    // (A replay has no engine, and its app never asks for a run.)
                    if let Some(engine) = &engine {
                        let handle = engine.submit(new_job);
                        canceller = Some(handle.canceller());
                        // A new run starts only after the last one's final event, so nothing
                        // of it is still on the way.
                        if let Some(old) = relaying.take() {
                            old.abort();
                        }
                        relaying = Some(relay(handle, inbox.clone()));
                    }
                }
                Effect::Cancel => {
                    if let Some(c) = &canceller {
                        c.cancel();
                    }
                }
                Effect::Export => {
                    let message = match session::export(app, export_dir) {
                        Ok(paths) => Message {
                            // The home folder as ~, so the paths fit the status line.
                            text: format!("exported {}", crate::files::shorten_home(&paths)),
                            kind: MessageKind::Info,
                        },
                        Err(e) => Message {
                            text: format!("export failed: {e:#}"),
                            kind: MessageKind::Error,
                        },
                    };
                    update(app, Action::Notify(message));
                }
                Effect::Save => autosave.save(app, session_path, true),
                Effect::Copy(text) => {
                    // OSC 52: the terminal (and tmux with set-clipboard on) puts it on the
                    // system clipboard; no clipboard library or display server needed.
                    use base64::Engine as _;
                    let encoded = base64::engine::general_purpose::STANDARD.encode(text);
                    let mut out = stdout();
                    let _ = write!(out, "\x1b]52;c;{encoded}\x07");
                    let _ = out.flush();
                }
            }
        }
        if app.quit {
            return match (autosave.failed, signalled) {
                (Some(failed), _) => Err(anyhow::anyhow!(failed)),
                (None, Some(signal)) => Err(Signalled(signal).into()),
                (None, None) => Ok(()),
            };
        }
        needs_draw = true;
        if from_input {
            // Answer keys at once rather than at the next frame tick.
            last_draw -= FRAME_INTERVAL;
        }
    }
}
