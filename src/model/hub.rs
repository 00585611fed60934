//! Models from the Hugging Face hub: `--model ORG/NAME[@REVISION]`.
//!
//! Files go into the standard Hugging Face cache (`HF_HUB_CACHE`, else `HF_HOME/hub`, else
//! `~/.cache/huggingface/hub`) through `hf-hub`'s async client, so Python tools and `dlm-tui`
//! share downloads. A complete cached copy is used without asking the network at all;
//! `HF_HUB_OFFLINE=1` (which `hf-hub` does not read itself) forbids the network outright, and a
//! network failure falls back to the cache in the same way. `HF_TOKEN` and `HF_ENDPOINT` are
//! read by `hf-hub`.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use hf_hub::progress::{DownloadEvent, FileStatus, ProgressEvent, ProgressHandler};
use hf_hub::{HFClient, HFError};

/// What is fetched from a model repository: what the loader and chat mode read. Code files,
/// PyTorch pickles, ONNX exports and everything in sub-folders are left on the hub.
pub const WANTED_FILES: &[&str] = &[
    "config.json",
    "generation_config.json",
    "*.safetensors",
    "model.safetensors.index.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "chat_template.jinja",
];

/// A model repository on the hub and the revision (branch, tag or commit) to use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoSpec {
    pub owner: String,
    pub name: String,
    pub revision: Option<String>,
}

impl RepoSpec {
    /// Parses `ORG/NAME` or `ORG/NAME@REVISION`.
    pub fn parse(text: &str) -> Result<Self> {
        let text = text.trim();
        let (id, revision) = match text.split_once('@') {
            Some((_, "")) => {
                bail!("{text:?}: nothing after '@' (want ORG/NAME@REVISION)")
            }
            Some((id, rev)) => (id, Some(rev.to_string())),
            None => (text, None),
        };
        let Some((owner, name)) = id.split_once('/') else {
            bail!("{text:?} is not a hub model id: want ORG/NAME or ORG/NAME@REVISION (e.g. GSAI-ML/LLaDA-8B-Instruct)");
        };
        let valid = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                && !s.starts_with('.')
        };
        if !valid(owner) || !valid(name) {
            bail!("{text:?} is not a hub model id: ORG and NAME take letters, digits, '-', '_' and '.'");
        }
        Ok(Self {
            owner: owner.to_string(),
            name: name.to_string(),
            revision,
        })
    }

    /// `ORG/NAME`.
    pub fn id(&self) -> String {
        format!("{}/{}", self.owner, self.name)
    }

    /// The revision asked for, `main` by default.
    pub fn revision(&self) -> &str {
        self.revision.as_deref().unwrap_or("main")
    }
}

impl fmt::Display for RepoSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.owner, self.name)?;
        if let Some(rev) = &self.revision {
            write!(f, "@{rev}")?;
        }
        Ok(())
    }
}

/// Where a download stands: totals are known after the file list has been fetched.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DownloadProgress {
    pub total_files: usize,
    pub total_bytes: u64,
    pub done_bytes: u64,
    pub done_files: usize,
    /// The file most recently written to.
    pub current: Option<String>,
}

/// Receives every progress update; it is called from the download task and must not block.
pub type ProgressSink = Arc<dyn Fn(&DownloadProgress) + Send + Sync>;

/// Turns `hf-hub`'s per-file events into running totals for a [`ProgressSink`].
struct Tracker {
    state: Mutex<TrackerState>,
    sink: ProgressSink,
}

#[derive(Default)]
struct TrackerState {
    started: bool,
    progress: DownloadProgress,
    per_file: HashMap<String, u64>,
    complete: HashSet<String>,
    /// Bytes reported by Xet batch transfers, which count whole batches rather than files.
    aggregate: u64,
}

impl ProgressHandler for Tracker {
    fn on_progress(&self, event: &ProgressEvent) {
        let ProgressEvent::Download(event) = event else {
            return;
        };
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        match event {
            // The snapshot's own Start comes first; each file's download then sends a Start
            // (and a Complete) of its own, which must not replace the totals.
            DownloadEvent::Start {
                total_files,
                total_bytes,
            } if !state.started => {
                state.started = true;
                state.progress.total_files = *total_files;
                state.progress.total_bytes = *total_bytes;
            }
            DownloadEvent::Start { .. } => {}
            DownloadEvent::Progress { files } => {
                for file in files {
                    state
                        .per_file
                        .insert(file.filename.clone(), file.bytes_completed);
                    if file.status == FileStatus::Complete {
                        state.complete.insert(file.filename.clone());
                    } else {
                        state.progress.current = Some(file.filename.clone());
                    }
                }
            }
            DownloadEvent::AggregateProgress {
                bytes_completed, ..
            } => state.aggregate = *bytes_completed,
            DownloadEvent::Complete => state.progress.current = None,
        }
        let per_file: u64 = state.per_file.values().sum();
        state.progress.done_bytes = per_file.max(state.aggregate);
        state.progress.done_files = state.complete.len();
        let snapshot = state.progress.clone();
        drop(state);
        (self.sink)(&snapshot);
    }
}

/// Where the model's folder came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A complete copy was in the cache: no request was made.
    Cache,
    /// Some or all files were downloaded now.
    Network,
}

/// A snapshot folder with everything the loader needs.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub dir: PathBuf,
    pub origin: Origin,
}

/// True when `HF_HUB_OFFLINE` asks for cache-only lookups (as `huggingface_hub` reads it).
pub fn offline_from_env() -> bool {
    std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| truthy(&v))
}

/// `huggingface_hub`'s reading of a boolean environment variable.
fn truthy(value: &str) -> bool {
    matches!(
        value.trim().to_ascii_lowercase().as_str(),
        "1" | "true" | "yes" | "on"
    )
}

/// The hub endpoint requests go to (`HF_ENDPOINT`, else huggingface.co).
pub fn endpoint() -> String {
    std::env::var("HF_ENDPOINT")
        .ok()
        .filter(|e| !e.trim().is_empty())
        .unwrap_or_else(|| "https://huggingface.co".to_string())
        .trim_end_matches('/')
        .to_string()
}

/// The files of `dir` that the loader needs and that are not there, in the order they are needed.
pub fn missing_files(dir: &Path) -> Vec<String> {
    let mut missing = Vec::new();
    if !dir.join("config.json").is_file() {
        missing.push("config.json".to_string());
    }
    let has_bpe = dir.join("vocab.json").is_file() && dir.join("merges.txt").is_file();
    if !dir.join("tokenizer.json").is_file() && !has_bpe {
        missing.push("tokenizer.json".to_string());
    }
    match super::loader::index_shards(dir) {
        Ok(Some(shards)) if !shards.is_empty() => {
            missing.extend(shards.into_iter().filter(|s| !dir.join(s).is_file()));
        }
        // An index that lists nothing or cannot be read: it has to be fetched again.
        Ok(Some(_)) | Err(_) => missing.push("model.safetensors.index.json".to_string()),
        Ok(None) => {
            let any_weights = std::fs::read_dir(dir).is_ok_and(|entries| {
                entries
                    .filter_map(|e| e.ok())
                    .any(|e| e.path().extension().is_some_and(|x| x == "safetensors"))
            });
            if !any_weights {
                missing.push("model.safetensors".to_string());
            }
        }
    }
    missing
}

/// The command that fetches `spec` into the cache.
pub fn fetch_command(spec: &RepoSpec) -> String {
    format!("dlm-tui download {spec}")
}

/// A hub client over the environment's endpoint, token and cache.
pub struct Hub {
    client: HFClient,
    offline: bool,
    endpoint: String,
    cache_dir: PathBuf,
    /// How many times a download cut off mid-file is tried again before giving up.
    retries: usize,
}

impl Hub {
    /// Reads `HF_ENDPOINT`, `HF_TOKEN`, `HF_HOME`, `HF_HUB_CACHE` and `HF_HUB_OFFLINE`.
    pub fn from_env() -> Result<Self> {
        Self::new(&endpoint(), hf_hub::resolve_cache_dir(), offline_from_env())
    }

    /// A client for `endpoint` over the cache in `cache_dir` (`HF_TOKEN` is still read).
    pub fn new(endpoint: &str, cache_dir: PathBuf, offline: bool) -> Result<Self> {
        let endpoint = endpoint.trim_end_matches('/').to_string();
        let client = HFClient::builder()
            .endpoint(endpoint.clone())
            .cache_dir(cache_dir.clone())
            .user_agent(concat!("dlm-tui/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| anyhow!("setting up the hub client for {endpoint}: {e}"))?;
        Ok(Self {
            client,
            offline,
            endpoint,
            cache_dir,
            retries: 2,
        })
    }

    pub fn offline(&self) -> bool {
        self.offline
    }

    pub fn cache_dir(&self) -> &Path {
        &self.cache_dir
    }

    /// The cached snapshot of `spec` if it holds everything the loader needs (no request made).
    pub async fn cached(&self, spec: &RepoSpec) -> Option<PathBuf> {
        let dir = self.cached_snapshot(spec).await?;
        missing_files(&dir).is_empty().then_some(dir)
    }

    async fn cached_snapshot(&self, spec: &RepoSpec) -> Option<PathBuf> {
        self.client
            .model(&spec.owner, &spec.name)
            .snapshot_download()
            .revision(spec.revision().to_string())
            .local_files_only(true)
            .send()
            .await
            .ok()
    }

    /// The model's folder: from the cache when it is complete there, else downloaded with
    /// progress reported to `sink`.
    pub async fn fetch(&self, spec: &RepoSpec, sink: ProgressSink) -> Result<Fetched> {
        if let Some(dir) = self.cached(spec).await {
            return Ok(Fetched {
                dir,
                origin: Origin::Cache,
            });
        }
        if self.offline {
            return Err(self.not_cached(spec, "HF_HUB_OFFLINE is set").await);
        }
        // config.json first: an unsupported family is refused before gigabytes of weights move.
        let head = self.snapshot(spec, &["config.json"], None).await?;
        let config = head.join("config.json");
        if !config.is_file() {
            bail!(
                "{spec} on {} has no config.json: it is not a transformers-format model",
                self.endpoint
            );
        }
        let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&config)?)
            .map_err(|e| anyhow!("{spec}'s config.json is not valid JSON: {e}"))?;
        super::loader::detect_family(&json).map_err(|e| anyhow!("{spec}: {e:#}"))?;
        let dir = self.snapshot(spec, WANTED_FILES, Some(sink)).await?;
        let missing = missing_files(&dir);
        if !missing.is_empty() {
            bail!(
                "{spec} on {} has no {}: dlm-tui needs config.json, a tokenizer (tokenizer.json, or \
                 vocab.json + merges.txt) and safetensors weights",
                self.endpoint,
                missing.join(", ")
            );
        }
        Ok(Fetched {
            dir,
            origin: Origin::Network,
        })
    }

    /// One `snapshot_download` of the files matching `patterns` at the repository's top level,
    /// tried again when a transfer is cut off mid-way.
    async fn snapshot(
        &self,
        spec: &RepoSpec,
        patterns: &[&str],
        sink: Option<ProgressSink>,
    ) -> Result<PathBuf> {
        let mut attempt = 0;
        loop {
            let progress = sink.as_ref().map(|sink| {
                hf_hub::progress::Progress::from(Arc::new(Tracker {
                    state: Mutex::new(TrackerState::default()),
                    sink: sink.clone(),
                }))
            });
            let repo = self.client.model(&spec.owner, &spec.name);
            let request = repo
                .snapshot_download()
                .revision(spec.revision().to_string())
                .allow_patterns(patterns.iter().map(|p| p.to_string()).collect())
                // Only the top level: sub-folders hold other formats (ONNX, GGUF, ...).
                .ignore_patterns(vec!["*/**".to_string()])
                .maybe_progress(progress);
            match request.send().await {
                Ok(dir) => return Ok(dir),
                Err(e) if is_network(&e) && !is_unreachable(&e) && attempt < self.retries => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(250 * attempt as u64)).await;
                }
                Err(e) => return Err(self.explain(spec, e).await),
            }
        }
    }

    /// The error for a model that must come from the cache but is not (completely) there.
    async fn not_cached(&self, spec: &RepoSpec, why: &str) -> anyhow::Error {
        let command = fetch_command(spec);
        match self.cached_snapshot(spec).await {
            Some(dir) => anyhow!(
                "{why} and the cached copy of {spec} in {} lacks {}: run `{command}` with network access",
                dir.display(),
                missing_files(&dir).join(", ")
            ),
            None => anyhow!(
                "{why} and {spec} is not in the Hugging Face cache ({}): it lacks config.json, the \
                 tokenizer and the weights; run `{command}` with network access",
                self.cache_dir.display()
            ),
        }
    }

    async fn explain(&self, spec: &RepoSpec, error: HFError) -> anyhow::Error {
        let token = if std::env::var("HF_TOKEN").is_ok_and(|t| !t.is_empty()) {
            "the HF_TOKEN that is set may lack access"
        } else {
            "set HF_TOKEN to a token that has access"
        };
        // hf-hub reports a missing repository as a missing revision when a revision was asked
        // for; the hub's error code tells them apart.
        let no_repo = match &error {
            HFError::RepoNotFound { .. } => true,
            HFError::RevisionNotFound { context, .. } => context
                .as_ref()
                .is_some_and(|c| c.error_code.as_deref() == Some("RepoNotFound")),
            _ => false,
        };
        match error {
            _ if no_repo => anyhow!(
                "{} is not a model on {} (a private or gated repository looks the same without a token: {token})",
                spec.id(),
                self.endpoint
            ),
            HFError::RevisionNotFound { revision, .. } => {
                anyhow!("{} has no revision {revision:?} on {}", spec.id(), self.endpoint)
            }
            HFError::AuthRequired { .. } | HFError::Forbidden { .. } => anyhow!(
                "{} is gated or private: accept its terms on its hub page, then {token}",
                spec.id()
            ),
            e if is_network(&e) => {
                if is_unreachable(&e) {
                    let why = format!("{} cannot be reached ({})", self.endpoint, root_cause(&e));
                    self.not_cached(spec, &why).await
                } else {
                    let why = format!(
                        "downloading {spec} from {} failed ({})",
                        self.endpoint,
                        root_cause(&e)
                    );
                    anyhow!(
                        "{why}; the files finished so far stay in the cache: run the same command \
                         again to go on"
                    )
                }
            }
            e => anyhow!("downloading {spec} from {}: {}", self.endpoint, error_chain(&e)),
        }
    }
}

/// A transport failure (as opposed to an answer from the hub).
fn is_network(error: &HFError) -> bool {
    matches!(error, HFError::Request { .. })
        || matches!(error, HFError::Io(e) if e.kind() != std::io::ErrorKind::PermissionDenied)
}

/// No connection could be made at all: retrying at once will not help, the cache might.
fn is_unreachable(error: &HFError) -> bool {
    match error {
        HFError::Request { source, .. } => source.is_connect() || source.is_timeout(),
        _ => false,
    }
}

/// The innermost cause: for transport errors, what the socket said.
fn root_cause(error: &dyn std::error::Error) -> String {
    let mut cause = error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let s = e.to_string();
        if !text.contains(&s) {
            text.push_str(": ");
            text.push_str(&s);
        }
        source = e.source();
    }
    text
}

/// The runtime downloads run on outside async code (two workers: the transfers are I/O).
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| anyhow!("starting the download runtime: {e}"))
}

/// Runs [`Hub::fetch`] on a runtime of its own, for callers outside async code.
pub fn fetch_blocking(spec: &RepoSpec, sink: ProgressSink) -> Result<Fetched> {
    runtime()?.block_on(async {
        let hub = Hub::from_env()?;
        hub.fetch(spec, sink).await
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ids_and_revisions() {
        let spec = RepoSpec::parse("GSAI-ML/LLaDA-8B-Instruct").unwrap();
        assert_eq!(spec.id(), "GSAI-ML/LLaDA-8B-Instruct");
        assert_eq!(spec.revision(), "main");
        let spec = RepoSpec::parse("Dream-org/Dream-v0-Base-7B@v1.0").unwrap();
        assert_eq!(spec.revision.as_deref(), Some("v1.0"));
        assert_eq!(spec.to_string(), "Dream-org/Dream-v0-Base-7B@v1.0");
        for bad in ["llada", "a/", "/b", "a/b@", "a b/c", "a/../b", "../x/y"] {
            assert!(RepoSpec::parse(bad).is_err(), "{bad} parsed");
        }
    }

    #[test]
    fn offline_values() {
        for (value, offline) in [
            ("1", true),
            (" TRUE", true),
            ("on", true),
            ("0", false),
            ("", false),
            ("off", false),
        ] {
            assert_eq!(truthy(value), offline, "{value:?}");
        }
    }

    #[test]
    fn missing_files_names_what_the_loader_needs() {
        let dir = std::env::temp_dir().join(format!("dlm-tui-missing-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(
            missing_files(&dir),
            ["config.json", "tokenizer.json", "model.safetensors"]
        );
        std::fs::write(dir.join("config.json"), "{}").unwrap();
        std::fs::write(dir.join("vocab.json"), "{}").unwrap();
        std::fs::write(dir.join("merges.txt"), "").unwrap();
        std::fs::write(
            dir.join("model.safetensors.index.json"),
            r#"{"weight_map": {"a": "m-1.safetensors", "b": "m-2.safetensors", "c": "m-1.safetensors"}}"#,
        )
        .unwrap();
        std::fs::write(dir.join("m-1.safetensors"), "").unwrap();
        assert_eq!(missing_files(&dir), ["m-2.safetensors"]);
        std::fs::write(dir.join("m-2.safetensors"), "").unwrap();
        assert!(missing_files(&dir).is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
