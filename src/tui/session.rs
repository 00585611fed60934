//! Keeping the user's work: the session (text, masks, parameters) autosaves and comes back on the
//! next launch; the last run exports as JSON lines (the `generate --json` schema) and as text.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::app::{App, Settings};
use super::editor::Document;
use crate::cli::generate::step_json;

/// What autosave writes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Saved {
    pub doc: Document,
    pub settings: Settings,
    #[serde(default)]
    pub compare_mode: bool,
    #[serde(default)]
    pub theme: Option<String>,
}

impl Saved {
    pub fn apply(self, app: &mut App) {
        app.doc = self.doc;
        app.settings = self.settings;
        app.compare_mode = self.compare_mode;
        if let Some(i) = self
            .theme
            .and_then(|name| app.themes.iter().position(|t| t.name == name))
        {
            app.theme_index = i;
        }
    }
}

/// Default place of the session file.
pub fn default_path() -> Option<PathBuf> {
    dirs::data_dir().map(|d| d.join("dlm-tui").join("session.json"))
}

pub fn load(path: &Path) -> Result<Option<Saved>> {
    if !path.exists() {
        return Ok(None);
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let saved = serde_json::from_str(&text).map_err(|e| anyhow!("{}: {e}", path.display()))?;
    Ok(Some(saved))
}

/// Writes the session atomically (a crash mid-write never leaves half a file).
pub fn save(app: &App, path: &Path) -> Result<()> {
    let saved = Saved {
        doc: app.doc.clone(),
        settings: app.settings.clone(),
        compare_mode: app.compare_mode,
        theme: Some(app.theme().name.clone()),
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_string_pretty(&saved)?)?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

/// Writes `dlm-tui-run-N.jsonl` and `dlm-tui-run-N.txt` into `dir`; returns the paths written.
pub fn export(app: &App, dir: &Path) -> Result<String> {
    let run = app
        .run
        .as_ref()
        .ok_or_else(|| anyhow!("nothing has run yet"))?;
    let n = (1..)
        .find(|n| !dir.join(format!("dlm-tui-run-{n}.jsonl")).exists())
        .unwrap_or(1);
    let jsonl = dir.join(format!("dlm-tui-run-{n}.jsonl"));
    let txt = dir.join(format!("dlm-tui-run-{n}.txt"));
    let codec = app.codec();
    let mut lines = Vec::new();
    let mut text = String::new();
    for lane in &run.lanes {
        for frame in &lane.frames {
            lines.push(step_json(frame, codec, app.model.mask_id).to_string());
        }
        let last = lane.canvas_at(lane.frames.len(), &run.initial);
        let nfe = lane.frames.last().map_or(0, |f| f.nfe);
        let elapsed = lane
            .frames
            .last()
            .map_or(0.0, |f| f.elapsed.as_secs_f64() * 1e3);
        let final_text = codec.decode(last, true);
        lines.push(
            json!({
                "type": "done",
                "lane": lane.frames.first().map_or(0, |f| f.lane),
                "strategy": lane.label,
                "tokens": last,
                "prompt_len": run.prompt_len,
                "text": final_text,
                "nfe": nfe,
                "elapsed_ms": elapsed,
            })
            .to_string(),
        );
        if run.lanes.len() > 1 {
            text.push_str(&format!("== {} ==\n", lane.label));
        }
        text.push_str(&final_text);
        text.push('\n');
    }
    std::fs::write(&jsonl, lines.join("\n") + "\n")
        .with_context(|| format!("writing {}", jsonl.display()))?;
    std::fs::write(&txt, text).with_context(|| format!("writing {}", txt.display()))?;
    Ok(format!("{} and {}", jsonl.display(), txt.display()))
}
