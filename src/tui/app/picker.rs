//! The models room: the picker (its list scanned off the UI thread), switching to a model
//! once its engine has loaded, and downloads from the hub.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{App, Command, Effect, Overlay, Remask, TokenTable};
use crate::chat::ChatTemplate;
use crate::engine::Engine;
use crate::model::ModelInfo;
use crate::text::TextCodec;
use crate::tui::download::{DownloadNews, DownloadView};

/// Where a model the picker offers comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    Embedded,
    /// A model folder (a hub cache snapshot), shown by its hub id.
    Dir {
        dir: std::path::PathBuf,
        name: String,
    },
}

/// One row of the model picker.
#[derive(Debug, Clone, PartialEq)]
pub struct PickEntry {
    pub name: String,
    pub family: String,
    pub size: String,
    /// Why it cannot be opened (incomplete, unsupported); `None` when it can.
    pub problem: Option<String>,
    pub source: ModelSource,
}

/// The model picker overlay (F10): the embedded model and the hub cache's models, and a field
/// for a hub id to download.
#[derive(Debug, Clone, PartialEq)]
pub struct Picker {
    pub entries: Vec<PickEntry>,
    /// The row chosen; `entries.len()` is the hub id field.
    pub selected: usize,
    /// The hub id typed (ORG/NAME or ORG/NAME@REVISION).
    pub hub_id: String,
    /// The models are still being listed.
    pub scanning: bool,
}

impl Picker {
    /// The embedded model, then every model repository in `cache_dir`, then the local
    /// `folders` (from `config.toml`). It reads the disk: the runtime calls it off the UI
    /// thread for [`Effect::ScanModels`].
    pub fn scan(
        cache_dir: Option<&std::path::Path>,
        folders: &[std::path::PathBuf],
    ) -> Vec<PickEntry> {
        use crate::hub::scan::{scan, CachedModel};
        let embedded = PickEntry {
            name: crate::model::embedded::NAME.to_string(),
            family: "llada".into(),
            size: "20 MiB".into(),
            problem: None,
            source: ModelSource::Embedded,
        };
        let found = cache_dir.map(scan).unwrap_or_default().into_iter().chain(
            folders
                .iter()
                .map(|d| CachedModel::inspect(d.display().to_string(), d.clone(), false)),
        );
        std::iter::once(embedded)
            .chain(found.map(|m| PickEntry {
                problem: m.problem(),
                family: m.family.map_or_else(|_| "-".to_string(), str::to_string),
                size: crate::files::human_bytes(m.bytes),
                source: ModelSource::Dir {
                    dir: m.dir,
                    name: m.id.clone(),
                },
                name: m.id,
            }))
            .collect()
    }

    /// The picker as it opens, before the scan has answered.
    fn listing() -> Self {
        Self {
            entries: Vec::new(),
            scanning: true,
            selected: 0,
            hub_id: String::new(),
        }
    }

    /// Whether the hub id field is the row chosen.
    pub fn on_hub_id(&self) -> bool {
        self.selected >= self.entries.len()
    }

    /// A character typed: into the hub id field (which becomes the row chosen).
    pub(super) fn type_char(&mut self, c: char) {
        self.selected = self.entries.len();
        self.hub_id.push(c);
    }

    /// A paste: its first line into the hub id field.
    pub(super) fn paste(&mut self, text: &str) {
        let first = text.lines().next().unwrap_or_default().trim();
        self.selected = self.entries.len();
        self.hub_id.push_str(first);
    }
}

/// An engine handed from the loading thread to the runtime through an [`Action`]: taken once.
#[derive(Clone, Default)]
pub struct EngineSlot(Arc<Mutex<Option<Engine>>>);

impl EngineSlot {
    pub fn new(engine: Engine) -> Self {
        Self(Arc::new(Mutex::new(Some(engine))))
    }

    /// The engine, the first time.
    pub fn take(&self) -> Option<Engine> {
        self.0.lock().ok()?.take()
    }
}

impl PartialEq for EngineSlot {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl std::fmt::Debug for EngineSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EngineSlot")
    }
}

/// A model loaded for a switch: what the app needs of it, and its engine for the runtime.
#[derive(Clone)]
pub struct ModelSwitch {
    pub codec: Arc<TextCodec>,
    pub info: ModelInfo,
    pub chat_template: Option<ChatTemplate>,
    pub engine: EngineSlot,
}

impl PartialEq for ModelSwitch {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.codec, &other.codec) && self.info == other.info
    }
}

impl std::fmt::Debug for ModelSwitch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelSwitch")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

/// The picker's commands (and F10, which opens and closes it) and the download panel's.
pub(super) fn command(app: &mut App, command: Command) -> Vec<Effect> {
    match command {
        Command::PickModel => return toggle(app),
        Command::CancelDownload => {
            app.info("cancelling the download…");
            return vec![Effect::CancelDownload];
        }
        _ => {}
    }
    let Some(Overlay::Picker(picker)) = app.overlay.as_mut() else {
        return Vec::new();
    };
    let field = picker.entries.len();
    match command {
        Command::PickerUp => picker.selected = picker.selected.saturating_sub(1),
        Command::PickerDown => picker.selected = (picker.selected + 1).min(field),
        Command::PickerClose => app.overlay = None,
        Command::PickerBackspace if picker.on_hub_id() => {
            picker.hub_id.pop();
        }
        Command::PickerChoose if picker.on_hub_id() => {
            let typed = picker.hub_id.trim().to_string();
            return download(app, &typed);
        }
        Command::PickerChoose => {
            let entry = picker.entries[picker.selected].clone();
            if let Some(problem) = entry.problem {
                app.error(format!("{}: {problem}", entry.name));
                return Vec::new();
            }
            if app.running() {
                app.error("a run is going: wait for it or press Esc, then switch");
                return Vec::new();
            }
            app.overlay = None;
            if entry.name == app.model.name {
                app.info(format!("{} is the model in use", entry.name));
                return Vec::new();
            }
            app.info(format!("loading {}…", entry.name));
            app.loading = Some(entry.name);
            return vec![Effect::LoadModel(entry.source)];
        }
        _ => {}
    }
    Vec::new()
}

/// F10: opens the picker (its list comes from the runtime's scan), or closes it.
fn toggle(app: &mut App) -> Vec<Effect> {
    if matches!(app.overlay, Some(Overlay::Picker(_))) {
        app.overlay = None;
    } else if app.replay_of.is_some() {
        app.info("a replay has no model to switch; open `dlm-tui` to pick one");
    } else if app.loading.is_some() {
        app.info("a model is loading");
    } else {
        app.overlay = Some(Overlay::Picker(Picker::listing()));
        return vec![Effect::ScanModels {
            cache: app.hub_cache.clone(),
            folders: app.model_folders.clone(),
        }];
    }
    Vec::new()
}

/// The scan's answer: the picker shows it, the model in use chosen.
pub(super) fn listed(app: &mut App, entries: Vec<PickEntry>) {
    let current = app.model.name.clone();
    if let Some(Overlay::Picker(picker)) = app.overlay.as_mut() {
        picker.selected = entries.iter().position(|e| e.name == current).unwrap_or(0);
        picker.entries = entries;
        picker.scanning = false;
        // A hub id typed while the list was coming stays the row chosen.
        if !picker.hub_id.is_empty() {
            picker.selected = picker.entries.len();
        }
    }
}

/// Enter on the hub id field: the download panel replaces the picker, and the runtime fetches
/// the model (then loads it).
fn download(app: &mut App, typed: &str) -> Vec<Effect> {
    if typed.is_empty() {
        app.error("type a hub id, like GSAI-ML/LLaDA-8B-Instruct, then Enter");
        return Vec::new();
    }
    let spec = match crate::hub::RepoSpec::parse(typed) {
        Ok(spec) => spec,
        Err(e) => {
            app.error(format!("{e:#}"));
            return Vec::new();
        }
    };
    if app.running() {
        app.error("a run is going: wait for it or press Esc, then switch");
        return Vec::new();
    }
    app.overlay = Some(Overlay::Download(DownloadView {
        spec: spec.to_string(),
        endpoint: crate::hub::endpoint(),
        cache_dir: app
            .hub_cache
            .as_ref()
            .map_or_else(String::new, |d| d.display().to_string()),
        progress: Default::default(),
        elapsed: Duration::ZERO,
    }));
    vec![Effect::Download(spec)]
}

/// A download's progress, or its end: a finished one loads the model and switches to it.
pub(super) fn on_download(app: &mut App, news: DownloadNews) -> Vec<Effect> {
    let Some(Overlay::Download(view)) = app.overlay.as_mut() else {
        return Vec::new();
    };
    match news {
        DownloadNews::Progress(progress, elapsed) => {
            view.progress = progress;
            view.elapsed = elapsed;
            Vec::new()
        }
        DownloadNews::Finished(Err(why)) => {
            app.overlay = None;
            app.error(why);
            Vec::new()
        }
        DownloadNews::Finished(Ok(dir)) => {
            let name = view.spec.clone();
            app.overlay = None;
            app.info(format!("loading {name}…"));
            app.loading = Some(name.clone());
            vec![Effect::LoadModel(ModelSource::Dir { dir, name })]
        }
    }
}

/// A model loaded (the runtime is to run its engine from now on), or why it did not.
pub(super) fn loaded(app: &mut App, loaded: Result<ModelSwitch, String>) -> Vec<Effect> {
    match loaded {
        Ok(switch) => {
            let engine = switch.engine.clone();
            app.switch_model(switch.codec, switch.info, switch.chat_template);
            vec![Effect::UseEngine(engine)]
        }
        Err(why) => {
            app.load_failed(why);
            Vec::new()
        }
    }
}

impl App {
    /// Switches to another model: the editor's text and masks and the parameters stay; the
    /// last run, which belongs to the old model's tokens, goes.
    pub fn switch_model(
        &mut self,
        codec: Arc<TextCodec>,
        model: ModelInfo,
        chat_template: Option<ChatTemplate>,
    ) {
        self.tokens = Arc::new(TokenTable::new(&codec, &model));
        self.codec = codec;
        self.model = model;
        self.chat_mode = self.chat_mode && chat_template.is_some();
        self.chat_template = chat_template;
        self.beside = None;
        self.run = None;
        self.inspector = None;
        self.remask = Remask::default();
        self.live_scroll = None;
        self.loading = None;
        *self.canvas_len_cache.borrow_mut() = None;
        let name = self.model.name.clone();
        self.info(format!("switched to {name}: your text and masks are kept"));
        self.follow_model_blocks();
    }

    /// A block-diffusion model decodes in the blocks it was trained with: the `block length`
    /// parameter follows it (the user can change it again).
    pub fn follow_model_blocks(&mut self) {
        if let Some(blocks) = self.model.blocks {
            if self.settings.params.block_length != blocks.size {
                self.settings.params.block_length = blocks.size;
                self.info(format!(
                    "{} decodes block by block: block length {} (the model's; the parameters \
                     panel changes it)",
                    self.model.name, blocks.size
                ));
            }
        }
    }

    /// A model switch that failed: the current model stays.
    pub fn load_failed(&mut self, why: String) {
        let name = self.loading.take().unwrap_or_default();
        self.error(format!(
            "could not load {name}: {why}; {} stays",
            self.model.name
        ));
    }
}
