//! What the Hugging Face cache already holds: every model repository in it whose family dlm-tui
//! runs, with its size and whether every file the loader needs is there (`dlm-tui models`, and
//! the list a model picker starts from). Reads only local files.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::missing_files;
use crate::files::read_json;
use crate::model::loader::detect_family;

/// One cached model repository.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CachedModel {
    /// `ORG/NAME`.
    pub id: String,
    /// The architecture family dlm-tui loads it as (`llada`, `dream`, ...), or why it cannot.
    pub family: Result<&'static str, String>,
    /// The snapshot folder (`refs/main`'s commit, else the newest snapshot).
    pub dir: PathBuf,
    /// Bytes of the snapshot's files (the blobs they point to).
    pub bytes: u64,
    /// Files the loader needs that are not there (empty: complete).
    pub missing: Vec<String>,
    /// A hub cache snapshot (`dlm-tui download ID` completes it), not a local folder.
    pub hub: bool,
}

/// Every model repository in `cache_dir` (`models--ORG--NAME` folders), sorted by id. Folders
/// that are not model repositories or hold no snapshot are skipped.
pub fn scan(cache_dir: &Path) -> Vec<CachedModel> {
    let Ok(entries) = std::fs::read_dir(cache_dir) else {
        return Vec::new();
    };
    let mut found: Vec<CachedModel> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let id = name.strip_prefix("models--")?.replacen("--", "/", 1);
            Some(CachedModel::inspect(id, snapshot(&e.path())?, true))
        })
        .collect();
    found.sort_by(|a, b| a.id.cmp(&b.id));
    found
}

impl CachedModel {
    /// What the folder `dir` holds, shown as `id` (a hub id for a cache snapshot, `hub`, or the
    /// folder's path).
    pub fn inspect(id: String, dir: PathBuf, hub: bool) -> Self {
        let family = if !dir.is_dir() {
            Err(format!("{} does not exist", dir.display()))
        } else {
            match read_json(&dir.join("config.json")) {
                Ok(config) => detect_family(&config).map_err(|e| format!("{e:#}")),
                Err(_) => Err("no config.json yet".to_string()),
            }
        };
        Self {
            id,
            family,
            bytes: folder_bytes(&dir),
            missing: missing_files(&dir),
            dir,
            hub,
        }
    }

    /// Why it cannot be opened (`None`: it can): an unsupported family, or missing files with
    /// the command that fetches them.
    pub fn problem(&self) -> Option<String> {
        if !self.dir.is_dir() {
            return Some(format!("{} does not exist", self.dir.display()));
        }
        match (&self.family, self.missing.is_empty(), self.hub) {
            (Err(why), _, _) => Some(format!("not supported: {why}")),
            (Ok(_), true, _) => None,
            (Ok(_), false, true) => Some(format!(
                "incomplete (missing {}): `dlm-tui download {}` fetches the rest",
                self.missing.join(", "),
                self.id
            )),
            (Ok(_), false, false) => {
                Some(format!("incomplete (missing {})", self.missing.join(", ")))
            }
        }
    }
}

/// The snapshot `refs/main` names, else the most recently changed one.
fn snapshot(repo: &Path) -> Option<PathBuf> {
    let snapshots = repo.join("snapshots");
    if let Ok(commit) = std::fs::read_to_string(repo.join("refs/main")) {
        let dir = snapshots.join(commit.trim());
        if super::cache::is_commit(commit.trim()) && dir.is_dir() {
            return Some(dir);
        }
    }
    std::fs::read_dir(&snapshots)
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .max_by_key(|e| e.metadata().and_then(|m| m.modified()).ok())
        .map(|e| e.path())
}

/// Bytes of the files in `dir` (following the cache's links to its blobs), not recursing.
fn folder_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter_map(|e| std::fs::metadata(e.path()).ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}
