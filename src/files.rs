//! File formats and file writing, the bottom layer under the tokenizer, chat templates, the
//! model loader and the hub cache: reading JSON with errors that name the file, the forms of a
//! special token, which names are plain file names, and writing so that nothing is ever half
//! written (every writer of user data and cache entries goes through [`write_atomically`]).

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};

/// Writes `bytes` to `path` through a temporary file in the same folder, flushed to disk and
/// renamed over the target, so a crash or a full disk mid-write leaves the old file (or none),
/// never half of the new one. The folder is created if needed; on failure the temporary file is
/// removed. `private` files are readable by their owner only.
pub fn write_atomically(path: &Path, bytes: &[u8], private: bool) -> Result<()> {
    write_atomically_with(path, private, |file| file.write_all(bytes))
}

/// As [`write_atomically`], the content written by `write` (for files too big to hold in memory
/// twice, such as a GGUF model).
pub fn write_atomically_with(
    path: &Path,
    private: bool,
    write: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let name = path
        .file_name()
        .map_or_else(|| "file".into(), |n| n.to_string_lossy().into_owned());
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let written = (|| -> std::io::Result<()> {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        if private {
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        }
        #[cfg(not(unix))]
        let _ = private;
        let mut file = options.open(&tmp)?;
        write(&mut file)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("writing {}", path.display()));
    }
    Ok(())
}

/// Reads and parses a JSON file; both errors name the file.
pub fn read_json(path: &Path) -> Result<serde_json::Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", path.display()))
}

/// [`read_json`], or `None` when there is no such file.
pub fn read_json_if_present(path: &Path) -> Result<Option<serde_json::Value>> {
    if path.is_file() {
        read_json(path).map(Some)
    } else {
        Ok(None)
    }
}

/// A special token in tokenizer_config.json: a string or `{"content": ...}`.
pub fn special_token(value: &serde_json::Value) -> Option<&str> {
    value
        .as_str()
        .or_else(|| value.get("content").and_then(|c| c.as_str()))
}

/// A file name that stays inside the folder it is joined to: not empty, no separator, not `.` or
/// `..`, no control characters (what a shard, or a file listed by a hub, may be called).
pub fn is_plain_file_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name.len() <= 255
        && !name.contains(['/', '\\', ':'])
        && !name.chars().any(char::is_control)
}

/// `text` with the user's home folder written `~` (paths in messages, so they fit a line).
pub fn shorten_home(text: &str) -> String {
    match std::env::var("HOME") {
        Ok(home) if home.len() > 1 => text.replace(&format!("{home}/"), "~/"),
        _ => text.to_string(),
    }
}

/// A size in MiB or GiB (one decimal below 10 MiB and from 1 GiB), for the status bar and the
/// model lists.
pub fn human_bytes(bytes: u64) -> String {
    let mib = bytes as f64 / (1 << 20) as f64;
    if mib >= 1024.0 {
        format!("{:.1} GiB", mib / 1024.0)
    } else if mib >= 10.0 {
        format!("{mib:.0} MiB")
    } else {
        format!("{mib:.1} MiB")
    }
}
