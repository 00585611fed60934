//! The application state and the only function that changes it, [`update`] (Elm style). Side
//! effects (starting or cancelling a job, loading a model, writing files) are returned as
//! [`Effect`]s for the runtime to carry out; what the runtime learns (engine steps, a loaded
//! model, a download's progress) comes back as [`Action`]s through one inbox.
//!
//! `update` is the router: keys are translated once by the key map (the scopes in effect
//! come from [`App::scope`]), and each command goes to the room that owns it:
//! [`editing`] (the editor), [`live`] (runs, the live panel, the inspector, replay),
//! [`picker`] (models, downloads), [`mouse`] (clicks and the wheel), with [`run_view`]'s pure
//! queries of the run history beside them.

mod editing;
mod live;
mod mouse;
mod picker;
mod run_view;

use std::sync::Arc;
use std::time::Duration;

use crossterm::event::{KeyEvent, MouseEvent, MouseEventKind};
use serde::{Deserialize, Serialize};

use super::download::{DownloadNews, DownloadView};
use super::editor::Document;
use super::keymap::{Command, Input, KeyMap, Scope};
use super::params::ParamsForm;
use super::theme::Theme;
use crate::chat::ChatTemplate;
use crate::engine::{Event, Job};
use crate::model::ModelInfo;
use crate::run::{LaneSpec, Settings};
use crate::text::TextCodec;

pub use editing::{span_label, unit_width};
pub use live::{scroll_live, Remask, TokenCursor};
pub use mouse::{gauge_step, Area, Drawn, LaneCells};
pub use picker::{EngineSlot, ModelSource, ModelSwitch, PickEntry, Picker};
pub use run_view::{
    common_subsequence, Agreement, LaneView, RunRecipe, RunState, RunView, TokenRecord, TokenTable,
};

/// Which panel receives typing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Focus {
    Editor,
    Params,
    Live,
}

impl Focus {
    const ORDER: [Focus; 3] = [Focus::Editor, Focus::Params, Focus::Live];

    fn step(self, forward: bool) -> Self {
        let i = Self::ORDER.iter().position(|f| *f == self).unwrap_or(0);
        let n = Self::ORDER.len();
        Self::ORDER[if forward {
            (i + 1) % n
        } else {
            (i + n - 1) % n
        }]
    }
}

/// The panel open over the others: one at a time, and it takes the keys.
#[derive(Debug, Clone, PartialEq)]
pub enum Overlay {
    /// The keys, with the rows scrolled off its top (a short terminal cannot show it whole).
    Help { scroll: usize },
    /// The model picker (F10).
    Picker(Picker),
    /// A hub model being downloaded for a switch (the picker's hub id), with its progress.
    Download(DownloadView),
}

/// How the live panel colours committed tokens (F2 cycles them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Colouring {
    #[default]
    Plain,
    /// By the sampler's score when it committed the token.
    Confidence,
    /// By the step that committed the token.
    CommitOrder,
}

impl Colouring {
    fn next(self) -> Self {
        match self {
            Colouring::Plain => Colouring::Confidence,
            Colouring::Confidence => Colouring::CommitOrder,
            Colouring::CommitOrder => Colouring::Plain,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageKind {
    Info,
    Error,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub text: String,
    pub kind: MessageKind,
}

pub struct App {
    pub doc: Document,
    pub settings: Settings,
    pub form: ParamsForm,
    pub run: Option<RunView>,
    pub focus: Focus,
    /// The help, the model picker or a download, when one is open.
    pub overlay: Option<Overlay>,
    pub colouring: Colouring,
    /// The per-step charts under the live panel (Ctrl-D).
    pub show_charts: bool,
    pub compare_mode: bool,
    /// Instruct models: the model's chat template, and whether runs wrap the text in it.
    pub chat_template: Option<ChatTemplate>,
    /// The label of the remote lane run beside the model (`--beside`): every run gets it as
    /// its last lane. A model picked in the app runs alone.
    pub beside: Option<String>,
    pub chat_mode: bool,
    pub message: Option<Message>,
    pub model: ModelInfo,
    pub tokens: Arc<TokenTable>,
    pub keymap: KeyMap,
    pub themes: Vec<Theme>,
    pub theme_index: usize,
    pub quit: bool,
    /// Where the panels went as last drawn (clicks, scrolling, the token cursor).
    pub drawn: Drawn,
    /// Named parameter sets Ctrl-L cycles through, and the one applied last.
    pub presets: Vec<(String, LaneSpec)>,
    pub preset: Option<usize>,
    /// Replay speed in steps per second; 0 shows every step as soon as it arrives.
    pub replay_speed: f64,
    /// The editor holds a cancelled run's partial text (F6), its masks left as spans: the next
    /// run goes on from it, with no new generation region after the text.
    pub continuing: bool,
    /// [`App::canvas_len`]'s last answer and what it was for (text, length, chat mode).
    canvas_len_cache: std::cell::RefCell<Option<live::CanvasLenKey>>,
    /// The last click in the editor (time and cell), to tell a double click.
    pub last_click: Option<(std::time::Instant, u16, u16)>,
    /// The live panel's top row when the user has scrolled it; `None` follows the run (the
    /// newest commits stay in view).
    pub live_scroll: Option<usize>,
    /// The token inspector's cursor (`i` in the live panel, or a click on a token).
    pub inspector: Option<TokenCursor>,
    /// Show the sampler's proposals under masks (ghost text) and its window (`g`).
    pub ghosts: bool,
    /// Committed tokens marked to be re-masked by the next refinement (`m`, then `r`).
    pub remask: Remask,
    /// The Hugging Face cache the picker lists (set by the runtime).
    pub hub_cache: Option<std::path::PathBuf>,
    /// A model being loaded for a switch (its name).
    pub loading: Option<String>,
    /// Local model folders the picker offers (`[model] folders`).
    pub model_folders: Vec<std::path::PathBuf>,
    /// The trace file this app replays (`dlm-tui replay`): there is no model to run.
    pub replay_of: Option<String>,
    codec: Arc<TextCodec>,
}

/// Something the runtime must do after an update.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    Submit(Job),
    /// List the models the picker offers (the hub cache and these folders) off the UI
    /// thread; the list comes back as [`Action::Models`].
    ScanModels {
        cache: Option<std::path::PathBuf>,
        folders: Vec<std::path::PathBuf>,
    },
    /// Load this model (and its engine); [`Action::ModelLoaded`] says how it went.
    LoadModel(ModelSource),
    /// Run the model [`Action::ModelLoaded`] brought from now on (its engine is in the slot).
    UseEngine(EngineSlot),
    /// Fetch this hub model (the download panel shows its progress), then switch to it.
    Download(crate::hub::RepoSpec),
    /// Stop the download under way.
    CancelDownload,
    /// Put this text on the clipboard (the terminal's, through OSC 52).
    Copy(String),
    Cancel,
    Export,
    Save,
}

/// Inputs to [`update`]: the user's, and what the runtime's inbox brings.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Key(KeyEvent),
    Mouse(MouseEvent),
    Paste(String),
    Engine(Event),
    /// A message from the runtime (export finished, save failed, ...).
    Notify(Message),
    /// A command from outside the keyboard (e.g. SIGTERM asks to quit).
    Command(Command),
    /// Time passed (sent while a replay is behind the engine).
    Tick(Duration),
    /// The picker's list of models, scanned off the UI thread.
    Models(Vec<PickEntry>),
    /// A model picked or downloaded has loaded, with its engine; or why it did not.
    ModelLoaded(Result<ModelSwitch, String>),
    /// News of the download the picker started.
    Download(DownloadNews),
}

impl App {
    pub fn new(
        codec: Arc<TextCodec>,
        model: ModelInfo,
        keymap: KeyMap,
        themes: Vec<Theme>,
        theme_index: usize,
    ) -> Self {
        let tokens = Arc::new(TokenTable::new(&codec, &model));
        Self {
            doc: Document::default(),
            settings: Settings::default(),
            form: ParamsForm::default(),
            run: None,
            focus: Focus::Editor,
            overlay: None,
            colouring: Colouring::Plain,
            show_charts: false,
            compare_mode: false,
            chat_template: None,
            beside: None,
            chat_mode: false,
            message: None,
            model,
            tokens,
            keymap,
            themes,
            theme_index,
            quit: false,
            drawn: Drawn::default(),
            live_scroll: None,
            inspector: None,
            ghosts: true,
            remask: Remask::default(),
            hub_cache: None,
            loading: None,
            model_folders: Vec::new(),
            replay_of: None,
            last_click: None,
            canvas_len_cache: Default::default(),
            replay_speed: 0.0,
            continuing: false,
            presets: crate::run::presets(),
            preset: None,
            codec,
        }
    }

    pub fn theme(&self) -> &Theme {
        &self.themes[self.theme_index % self.themes.len()]
    }

    pub fn running(&self) -> bool {
        matches!(self.run.as_ref().map(|r| &r.state), Some(RunState::Running))
    }

    /// Whether the help overlay is open.
    pub fn help_open(&self) -> bool {
        matches!(self.overlay, Some(Overlay::Help { .. }))
    }

    /// The picker, while it is open.
    pub fn picker(&self) -> Option<&Picker> {
        match &self.overlay {
            Some(Overlay::Picker(p)) => Some(p),
            _ => None,
        }
    }

    /// The download panel, while a download runs.
    pub fn download(&self) -> Option<&DownloadView> {
        match &self.overlay {
            Some(Overlay::Download(d)) => Some(d),
            _ => None,
        }
    }

    /// The innermost scope keys are translated in: an overlay's, else the panel's.
    pub fn scope(&self) -> Scope {
        match &self.overlay {
            Some(Overlay::Help { .. }) => Scope::Help,
            Some(Overlay::Download(_)) => Scope::Download,
            Some(Overlay::Picker(_)) => Scope::Picker,
            None => self.panel_scope(),
        }
    }

    /// The focused panel's scope, under any overlay: a value being typed, the token
    /// inspector, else the panel's own.
    pub fn panel_scope(&self) -> Scope {
        match self.focus {
            Focus::Params if self.form.editing() => Scope::Value,
            Focus::Params => Scope::Params,
            Focus::Live if self.inspector.is_some() => Scope::Inspector,
            Focus::Live => Scope::Live,
            Focus::Editor => Scope::Editor,
        }
    }

    /// The key that runs `command` now, as hints name it.
    pub fn key_name(&self, command: Command) -> String {
        self.keymap.key_name(command)
    }

    fn info(&mut self, text: impl Into<String>) {
        self.message = Some(Message {
            text: text.into(),
            kind: MessageKind::Info,
        });
    }

    fn error(&mut self, text: impl Into<String>) {
        self.message = Some(Message {
            text: text.into(),
            kind: MessageKind::Error,
        });
    }

    pub fn codec(&self) -> &TextCodec {
        &self.codec
    }
}

/// The only place state changes.
pub fn update(app: &mut App, action: Action) -> Vec<Effect> {
    // A message lasts until the user's next action (a key, a paste, a click or the wheel): what
    // that action says replaces it, so nothing stale stays on screen.
    let user_acts = match &action {
        Action::Key(_) | Action::Paste(_) => true,
        Action::Mouse(m) => !matches!(m.kind, MouseEventKind::Moved | MouseEventKind::Up(_)),
        _ => false,
    };
    if user_acts {
        app.message = None;
    }
    match action {
        Action::Key(key) => on_key(app, key),
        Action::Mouse(mouse) => {
            mouse::on_mouse(app, mouse);
            Vec::new()
        }
        Action::Paste(text) => {
            match (&mut app.overlay, app.focus) {
                (Some(Overlay::Picker(picker)), _) => picker.paste(&text),
                (Some(_), _) => {}
                (None, Focus::Editor) => editing::paste(app, &text),
                (None, Focus::Params) => app.form.type_text(&text),
                (None, Focus::Live) => {}
            }
            Vec::new()
        }
        Action::Engine(event) => {
            live::on_engine(app, event);
            Vec::new()
        }
        Action::Notify(message) => {
            app.message = Some(message);
            Vec::new()
        }
        Action::Command(command) => on_command(app, command),
        Action::Models(entries) => {
            picker::listed(app, entries);
            Vec::new()
        }
        Action::ModelLoaded(loaded) => picker::loaded(app, loaded),
        Action::Download(news) => picker::on_download(app, news),
        Action::Tick(elapsed) => {
            live::tick(app, elapsed);
            Vec::new()
        }
    }
}

/// A key: translated once, in the scopes in effect, then routed like any command.
fn on_key(app: &mut App, key: KeyEvent) -> Vec<Effect> {
    let scope = app.scope();
    let input = app.keymap.translate(scope, &key);
    match input {
        Input::Command(command) => on_command(app, command),
        // The help closes on any key it does not scroll with (its own key too).
        _ if scope == Scope::Help => {
            app.overlay = None;
            Vec::new()
        }
        Input::Text(c) => {
            match (&mut app.overlay, app.focus) {
                (Some(Overlay::Picker(picker)), _) => picker.type_char(c),
                (Some(_), _) => {}
                (None, Focus::Editor) => editing::type_char(app, c),
                (None, Focus::Params) => {
                    if let Err(e) = app.form.type_char(c) {
                        app.error(e);
                    }
                }
                (None, Focus::Live) => {}
            }
            Vec::new()
        }
        Input::Unbound => Vec::new(),
    }
}

/// Runs a command: the router. Each scope's commands go to the room that owns them; the
/// global ones that belong to no room are answered here.
fn on_command(app: &mut App, command: Command) -> Vec<Effect> {
    match command.scope() {
        Scope::Editor => editing::command(app, command),
        Scope::Params | Scope::Value => {
            let auto_steps = app.doc.mask_count() + app.settings.length;
            if let Err(e) = app.form.command(command, &mut app.settings, auto_steps) {
                app.error(e);
            }
        }
        Scope::Live | Scope::Inspector => return live::command(app, command),
        Scope::Picker | Scope::Download => return picker::command(app, command),
        Scope::Help => help_command(app, command),
        Scope::Global => return global(app, command),
    }
    Vec::new()
}

/// The help's own keys: scrolling.
fn help_command(app: &mut App, command: Command) {
    if let Some(Overlay::Help { scroll }) = &mut app.overlay {
        *scroll = match command {
            Command::HelpUp => scroll.saturating_sub(1),
            Command::HelpDown => *scroll + 1,
            Command::HelpPageUp => scroll.saturating_sub(10),
            _ => *scroll + 10,
        };
    }
}

/// The global commands.
fn global(app: &mut App, command: Command) -> Vec<Effect> {
    match command {
        Command::Run
        | Command::Reroll
        | Command::Cancel
        | Command::ScrubBack
        | Command::ScrubForward
        | Command::ScrubFirst
        | Command::ScrubLast
        | Command::ApplyResult
        | Command::CopyResult
        | Command::Export => return live::command(app, command),
        Command::MaskSelection
        | Command::Unmask
        | Command::SpanGrow
        | Command::SpanShrink
        | Command::Undo
        | Command::Redo
        | Command::SelectAll => editing::command(app, command),
        Command::PickModel => return picker::command(app, command),
        Command::ToggleCharts => app.show_charts = !app.show_charts,
        Command::CyclePreset => cycle_preset(app),
        Command::Quit => {
            app.quit = true;
            let mut effects = vec![Effect::Save];
            if app.running() {
                effects.insert(0, Effect::Cancel);
            }
            return effects;
        }
        Command::Help => app.overlay = Some(Overlay::Help { scroll: 0 }),
        Command::FocusNext => app.focus = app.focus.step(true),
        Command::FocusPrev => app.focus = app.focus.step(false),
        // F2 cycles the colouring: plain, by confidence, by commit order.
        Command::ToggleConfidence => app.colouring = app.colouring.next(),
        Command::ToggleCompare => toggle_compare(app),
        Command::ToggleChat => match app.chat_template {
            None => app.error("this model has no chat template (tokenizer_config.json)"),
            Some(_) => {
                app.chat_mode = !app.chat_mode;
                app.info(if app.chat_mode {
                    "chat on: the text is sent as a user message and the answer is denoised"
                } else {
                    "chat off: the text is the canvas"
                });
            }
        },
        Command::CycleTheme => {
            app.theme_index = (app.theme_index + 1) % app.themes.len();
            let name = app.theme().name.clone();
            app.info(format!("theme: {name}"));
        }
        // Panel commands are routed by their scope before this.
        _ => {}
    }
    Vec::new()
}

fn cycle_preset(app: &mut App) {
    if app.presets.is_empty() {
        return;
    }
    let next = app.preset.map_or(0, |i| (i + 1) % app.presets.len());
    let (name, spec) = app.presets[next].clone();
    match app.settings.with_preset(&spec) {
        Ok(settings) => {
            app.settings = settings;
            app.preset = Some(next);
            app.info(format!("preset {name}: {spec}"));
        }
        Err(e) => app.error(format!("preset {name}: {e}")),
    }
}

fn toggle_compare(app: &mut App) {
    app.compare_mode = !app.compare_mode;
    let lanes: Vec<String> = app
        .settings
        .compare
        .iter()
        .map(LaneSpec::to_string)
        .collect();
    app.info(if app.settings.sweep >= 2 {
        // The sweep decides the lanes while it is set.
        format!(
            "compare {}, but seed sweep is set: the next run has {} seed lanes (seed sweep off in the parameters panel to compare strategies)",
            if app.compare_mode { "on" } else { "off" },
            app.settings.sweep
        )
    } else if app.compare_mode {
        format!("compare on: next run has lanes {}", lanes.join(" | "))
    } else {
        "compare off".to_string()
    });
}

/// An app on the embedded model's tokenizer, for the rooms' tests (no engine: runs are
/// effects, and events are fed by hand).
#[cfg(test)]
pub(crate) fn test_app() -> App {
    let codec = crate::model::embedded::codec().unwrap();
    let config = crate::model::embedded::config().unwrap();
    let model = ModelInfo::stand_in(
        crate::model::embedded::NAME.to_string(),
        crate::model::Family::Local("llada"),
        config.mask_token_id.unwrap(),
        codec.vocab_size(),
        256,
    );
    let themes = vec![Theme::builtin("dark").unwrap()];
    App::new(Arc::new(codec), model, KeyMap::defaults(), themes, 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tui::keymap::event;

    fn press(app: &mut App, key: &str) -> Vec<Effect> {
        update(app, Action::Key(event(key).unwrap()))
    }

    /// The router sends a key to the room of the scope in effect: one key, four meanings.
    #[test]
    fn a_key_goes_to_the_room_of_the_focused_panel() {
        let mut app = test_app();
        app.doc = Document::from_prompt("ab");
        press(&mut app, "Left");
        assert_eq!(app.doc.cursor(), 1, "the editor moved its cursor");
        app.focus = Focus::Params;
        press(&mut app, "Down");
        assert_eq!(app.form.row, 1, "the parameters panel moved its row");
        press(&mut app, "Enter");
        assert_eq!(app.scope(), Scope::Value);
        press(&mut app, "Esc");
        assert!(!app.form.editing(), "Esc left the value, not the run");
        app.focus = Focus::Live;
        press(&mut app, "-");
        assert_eq!(app.replay_speed, 80.0, "the live panel changed the speed");
        press(&mut app, "F1");
        assert!(app.help_open());
        press(&mut app, "x");
        assert!(!app.help_open(), "any other key closes the help");
    }

    /// The overlays are exclusive: the picker takes the keys while it is open, and F10 closes it.
    #[test]
    fn the_picker_is_modal_and_its_scan_is_an_effect() {
        let mut app = test_app();
        let effects = press(&mut app, "F10");
        assert!(
            matches!(effects.as_slice(), [Effect::ScanModels { .. }]),
            "{effects:?}"
        );
        assert!(app.picker().is_some_and(|p| p.scanning));
        assert!(
            press(&mut app, "F5").is_empty(),
            "F5 waits under the picker"
        );
        assert!(app.run.is_none());
        let entries = Picker::scan(None, &[]);
        update(&mut app, Action::Models(entries));
        let picker = app.picker().unwrap();
        assert!(!picker.scanning && picker.entries.len() == 1);
        assert_eq!(picker.selected, 0, "the model in use is chosen");
        press(&mut app, "F10");
        assert!(app.overlay.is_none());
    }

    /// Quit saves, and cancels a run first; a signal's quit does the same.
    #[test]
    fn quitting_saves_and_cancels_the_run() {
        let mut app = test_app();
        app.doc = Document::from_prompt("Once [MASK:2] time");
        let effects = press(&mut app, "F5");
        assert!(matches!(
            effects.as_slice(),
            [Effect::Submit(_), Effect::Save]
        ));
        assert!(app.running());
        let effects = update(&mut app, Action::Command(Command::Quit));
        assert_eq!(effects, vec![Effect::Cancel, Effect::Save]);
        assert!(app.quit);
    }

    /// F2 cycles the colourings in order and comes back to plain.
    #[test]
    fn f2_cycles_the_colourings() {
        let mut app = test_app();
        let seen: Vec<Colouring> = (0..3)
            .map(|_| {
                press(&mut app, "F2");
                app.colouring
            })
            .collect();
        assert_eq!(
            seen,
            [
                Colouring::Confidence,
                Colouring::CommitOrder,
                Colouring::Plain
            ]
        );
    }
}
