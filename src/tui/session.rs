//! Keeping the user's work: the session (text, masks, parameters) autosaves and comes back on the
//! next launch; the last run exports as JSON lines (the `generate --json` schema) and as text.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use serde::Serialize;

use super::app::{App, RunState};
use super::editor::Document;
use crate::engine::trace::{step_line, Ending, LaneEnd, LaneRecipe, RunHeader};
use crate::run::Settings;

/// What autosave writes ([`load`] reads it part by part).
#[derive(Debug, Clone, Serialize)]
struct Saved {
    doc: Document,
    settings: Settings,
    compare_mode: bool,
    theme: Option<String>,
}

/// Default place of the session file.
pub fn default_path() -> Option<PathBuf> {
    dirs::data_dir().map(|d| d.join("dlm-tui").join("session.json"))
}

/// Where exports go by default: the data directory's `dlm-tui/exports` (the working directory
/// where there is no data directory).
pub fn default_export_dir() -> PathBuf {
    dirs::data_dir()
        .map(|d| d.join("dlm-tui").join("exports"))
        .unwrap_or_else(|| PathBuf::from("."))
}

/// What [`load`] could bring back. Each part is read on its own, so settings from another
/// version (or a damaged file) never cost the user's text.
#[derive(Debug, Default)]
pub struct Restored {
    pub doc: Option<Document>,
    pub settings: Option<Settings>,
    pub compare_mode: Option<bool>,
    pub theme: Option<String>,
    /// What could not be read, and where the original file was moved, if anything failed.
    pub warning: Option<String>,
}

impl Restored {
    pub fn apply(self, app: &mut App) {
        if let Some(doc) = self.doc {
            app.doc = doc;
        }
        if let Some(settings) = self.settings {
            app.settings = settings;
        }
        if let Some(compare_mode) = self.compare_mode {
            app.compare_mode = compare_mode;
        }
        if let Some(i) = self
            .theme
            .and_then(|name| app.themes.iter().position(|t| t.name == name))
        {
            app.theme_index = i;
        }
    }
}

/// Reads the session file. A file that cannot be read whole is moved aside as
/// `session.json.bad-UNIXTIME` before anything can overwrite it, and whatever parts of it do
/// parse (the text first) are restored; the warning says what was lost and where the file went.
pub fn load(path: &Path) -> Result<Option<Restored>> {
    // Nothing there (or a folder on the way is not one): nothing to restore or to protect.
    if std::fs::symlink_metadata(path).is_err() {
        return Ok(None);
    }
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let text = String::from_utf8_lossy(&bytes);
    let mut restored = Restored::default();
    let mut problems = Vec::new();
    match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(serde_json::Value::Object(mut fields)) => {
            let mut part = |name: &str| fields.remove(name);
            match part("doc") {
                Some(value) => match serde_json::from_value::<Document>(value.clone()) {
                    Ok(doc) => restored.doc = Some(doc),
                    // A field beside the text is off (the cursor, the spans' originals): the
                    // text alone is still the user's work.
                    Err(e) => match value.get("text").and_then(|t| t.as_str()) {
                        Some(text) => {
                            restored.doc = Some(Document::from_prompt(text));
                            problems.push(format!("the cursor and span texts ({e})"));
                        }
                        None => problems.push(format!("the text ({e})")),
                    },
                },
                None => problems.push("the text (missing)".to_string()),
            }
            match part("settings").map(serde_json::from_value::<Settings>) {
                Some(Ok(settings)) => match settings.validate() {
                    Ok(()) => restored.settings = Some(settings),
                    Err(e) => problems.push(format!("the settings ({e:#})")),
                },
                Some(Err(e)) => problems.push(format!("the settings ({e})")),
                None => {}
            }
            match part("compare_mode").map(serde_json::from_value::<bool>) {
                Some(Ok(on)) => restored.compare_mode = Some(on),
                Some(Err(e)) => problems.push(format!("compare mode ({e})")),
                None => {}
            }
            match part("theme").map(serde_json::from_value::<Option<String>>) {
                Some(Ok(theme)) => restored.theme = theme,
                Some(Err(e)) => problems.push(format!("the theme ({e})")),
                None => {}
            }
        }
        Ok(_) => problems.push("everything (it is not a JSON object)".to_string()),
        Err(e) => {
            // Cut short (a crash or power cut mid-write of an older version): the text is
            // written first, so it may still be whole.
            restored.doc = salvage_doc(&text);
            let what = if text.trim().is_empty() {
                "it is empty".to_string()
            } else {
                e.to_string()
            };
            problems.push(if restored.doc.is_some() {
                format!("the settings ({what}; the text was recovered)")
            } else {
                format!("everything ({what})")
            });
        }
    }
    if !problems.is_empty() {
        let kept = move_aside(path)?;
        restored.warning = Some(format!(
            "could not restore {} from {}; the file was kept as {}",
            problems.join(", "),
            path.display(),
            kept.display()
        ));
    }
    Ok(Some(restored))
}

/// The `doc` object of a session file whose JSON breaks off later.
fn salvage_doc(text: &str) -> Option<Document> {
    let start = text.find("\"doc\"")? + "\"doc\"".len();
    let rest = text[start..].trim_start().strip_prefix(':')?;
    let mut values = serde_json::Deserializer::from_str(rest).into_iter::<Document>();
    values.next()?.ok()
}

/// Renames a damaged session file to `NAME.bad-UNIXTIME` (a counter is added if that exists).
fn move_aside(path: &Path) -> Result<PathBuf> {
    let time = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let name = path.file_name().map_or_else(
        || "session.json".into(),
        |n| n.to_string_lossy().into_owned(),
    );
    let mut target = path.with_file_name(format!("{name}.bad-{time}"));
    let mut n = 1;
    while target.exists() {
        target = path.with_file_name(format!("{name}.bad-{time}-{n}"));
        n += 1;
    }
    std::fs::rename(path, &target).with_context(|| {
        format!(
            "{} could not be read and could not be moved aside to {}; it was left alone and the \
             session will not be saved over it",
            path.display(),
            target.display()
        )
    })?;
    Ok(target)
}

/// The session file's contents for `app` (what autosave writes with [`write_atomically`]).
pub fn serialize(app: &App) -> Result<String> {
    let saved = Saved {
        doc: app.doc.clone(),
        settings: app.settings.clone(),
        compare_mode: app.compare_mode,
        theme: Some(app.theme().name.clone()),
    };
    Ok(serde_json::to_string_pretty(&saved)?)
}

/// Writes the session's `bytes` to `path` atomically (see [`crate::files::write_atomically`]:
/// a crash or a full disk never leaves half a file) with owner-only permissions.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    crate::files::write_atomically(path, bytes, true)
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
    let recipe = &run.recipe;
    let header = RunHeader {
        chat: recipe.chat,
        settings: serde_json::to_value(&recipe.settings)?,
        lanes: recipe
            .lanes
            .iter()
            .enumerate()
            .map(|(lane, (label, params))| LaneRecipe {
                lane,
                label,
                params,
            })
            .collect(),
        ..RunHeader::new(&app.model, &recipe.prompt, &run.initial, run.prompt_len)
    };
    let mut lines = vec![header.line().to_string()];
    let mut text = String::new();
    for lane in &run.lanes {
        for frame in &lane.frames {
            lines.push(step_line(frame, codec, app.model.mask_id).to_string());
        }
        let last = lane.canvas_at(lane.frames.len(), &run.initial);
        let nfe = lane.frames.last().map_or(0, |f| f.nfe);
        let elapsed = lane
            .frames
            .last()
            .map_or(0.0, |f| f.elapsed.as_secs_f64() * 1e3);
        let final_text = codec.decode(last, true);
        // A run stopped early is not "done": readers (and `dlm-tui replay`) must not take its
        // canvas, which still holds masks, for a finished one.
        let ending = match run.state {
            RunState::Cancelled => Ending::Cancelled,
            RunState::Failed(_) => Ending::Failed,
            RunState::Running => Ending::Running,
            RunState::Done => Ending::Done,
        };
        let masked = last.iter().filter(|&&t| t == app.model.mask_id).count();
        lines.push(
            LaneEnd {
                ending,
                lane: lane.frames.first().map_or(0, |f| f.lane),
                strategy: Some(&lane.label),
                tokens: last,
                prompt_len: run.prompt_len,
                text: &final_text,
                masked,
                nfe,
                elapsed_ms: elapsed,
            }
            .line()
            .to_string(),
        );
        if run.lanes.len() > 1 {
            text.push_str(&format!("== {} ==\n", lane.label));
        }
        text.push_str(&final_text);
        text.push('\n');
    }
    crate::files::write_atomically(&jsonl, (lines.join("\n") + "\n").as_bytes(), false)?;
    crate::files::write_atomically(&txt, text.as_bytes(), false)?;
    Ok(format!("{} and {}", jsonl.display(), txt.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "dlm-tui-session-{tag}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn aside(dir: &Path) -> Vec<PathBuf> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.to_string_lossy().contains("session.json.bad-"))
            .collect()
    }

    const GOOD_DOC: &str =
        r#"{"text": "Once upon a [MASK:3] time", "span_originals": ["x"], "cursor": 4}"#;

    #[test]
    fn a_missing_file_is_no_session() {
        let dir = temp("missing");
        assert!(load(&dir.join("session.json")).unwrap().is_none());
    }

    #[test]
    fn a_whole_file_comes_back_and_stays() {
        let dir = temp("whole");
        let path = dir.join("session.json");
        std::fs::write(
            &path,
            format!(r#"{{"doc": {GOOD_DOC}, "settings": {{"length": 99}}, "compare_mode": true, "theme": "light"}}"#),
        )
        .unwrap();
        let restored = load(&path).unwrap().unwrap();
        assert!(restored.warning.is_none());
        assert_eq!(
            restored.doc.unwrap().to_prompt(),
            "Once upon a [MASK:3] time"
        );
        assert_eq!(restored.settings.unwrap().length, 99);
        assert_eq!(restored.compare_mode, Some(true));
        assert_eq!(restored.theme.as_deref(), Some("light"));
        assert!(path.is_file() && aside(&dir).is_empty());
    }

    /// Settings this version cannot read (a wrong type, a newer enum value) cost neither the
    /// text nor the file.
    #[test]
    fn unreadable_settings_keep_the_text_and_the_file() {
        for settings in [
            r#"{"length": "sixty"}"#,
            r#"{"params": {"strategy": "from-the-future"}}"#,
            r#"[1, 2]"#,
            r#"{"compare": ["low-confidence", "margin", "entropy", "random", "margin", "entropy", "random", "margin", "entropy"]}"#,
            r#"{"params": {"temperature": -2.0}}"#,
        ] {
            let dir = temp("settings");
            let path = dir.join("session.json");
            let original = format!(r#"{{"doc": {GOOD_DOC}, "settings": {settings}}}"#);
            std::fs::write(&path, &original).unwrap();
            let restored = load(&path).unwrap().unwrap();
            assert_eq!(
                restored.doc.as_ref().map(|d| d.to_prompt()).as_deref(),
                Some("Once upon a [MASK:3] time"),
                "{settings}"
            );
            assert!(restored.settings.is_none());
            let warning = restored.warning.unwrap();
            assert!(warning.contains("the settings"), "{warning}");
            let kept = aside(&dir);
            assert_eq!(kept.len(), 1, "{settings}");
            assert!(
                warning.contains(&kept[0].display().to_string()),
                "{warning}"
            );
            assert_eq!(std::fs::read_to_string(&kept[0]).unwrap(), original);
            assert!(
                !path.exists(),
                "the damaged file must not stay where saves go"
            );
        }
    }

    /// Garbage, an empty file and a file cut short are moved aside; a cut-short file still gives
    /// back its text when the text was written whole.
    #[test]
    fn damaged_files_are_moved_aside_and_the_text_salvaged() {
        let truncated = format!(r#"{{"doc": {GOOD_DOC}, "settings": {{"params": {{"tempera"#);
        for (contents, text) in [
            ("\u{0}\u{1}garbage", None),
            ("", None),
            ("   \n", None),
            (r#"{"doc": {"text": "Once up"#, None),
            (truncated.as_str(), Some("Once upon a [MASK:3] time")),
            ("42", None),
        ] {
            let dir = temp("damaged");
            let path = dir.join("session.json");
            std::fs::write(&path, contents).unwrap();
            let restored = load(&path).unwrap().unwrap();
            assert_eq!(
                restored.doc.as_ref().map(|d| d.to_prompt()).as_deref(),
                text,
                "{contents:?}"
            );
            assert!(restored.warning.is_some(), "{contents:?}");
            let kept = aside(&dir);
            assert_eq!(kept.len(), 1, "{contents:?}");
            assert_eq!(std::fs::read_to_string(&kept[0]).unwrap(), contents);
        }
    }

    #[test]
    fn a_damaged_cursor_still_gives_the_text_back() {
        let dir = temp("cursor");
        let path = dir.join("session.json");
        std::fs::write(
            &path,
            r#"{"doc": {"text": "Tom [MASK:2] ran", "cursor": "end"}}"#,
        )
        .unwrap();
        let restored = load(&path).unwrap().unwrap();
        assert_eq!(restored.doc.unwrap().to_prompt(), "Tom [MASK:2] ran");
        assert!(restored.warning.unwrap().contains("cursor"));
        assert_eq!(aside(&dir).len(), 1);
    }

    #[test]
    fn a_second_damaged_file_in_the_same_second_gets_its_own_name() {
        let dir = temp("twice");
        let path = dir.join("session.json");
        for _ in 0..2 {
            std::fs::write(&path, "garbage").unwrap();
            load(&path).unwrap();
        }
        assert_eq!(aside(&dir).len(), 2);
    }

    #[test]
    fn atomic_writes_replace_whole_files_and_clean_up_after_failure() {
        let dir = temp("atomic");
        let path = dir.join("sub").join("session.json");
        write_atomically(&path, b"first").unwrap();
        write_atomically(&path, b"second").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "second");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // A target that cannot be replaced (a folder of that name): the error names the path,
        // the temporary file is gone.
        let blocked = dir.join("blocked");
        std::fs::create_dir_all(blocked.join("inside")).unwrap();
        let e = write_atomically(&blocked, b"x").unwrap_err();
        assert!(
            format!("{e:#}").contains(&blocked.display().to_string()),
            "{e:#}"
        );
        let leftovers: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }
}
