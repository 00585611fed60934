//! Models from the Hugging Face hub: `--model ORG/NAME[@REVISION]`.
//!
//! Files go into the standard Hugging Face cache (`HF_HUB_CACHE`, else `HF_HOME/hub`, else
//! `~/.cache/huggingface/hub`), so Python tools and `dlm-tui` share downloads: `hf-hub`'s async
//! client makes the requests and this module (with [`cache`]) writes every file, under checked
//! names. A complete cached copy is used without asking the network at all; `HF_HUB_OFFLINE=1`
//! (which `hf-hub` does not read itself) forbids the network outright, and a network failure
//! falls back to the cache in the same way. `HF_ENDPOINT`, `HF_TOKEN` (or `HF_TOKEN_PATH`,
//! `HF_HOME/token`) and `HF_HUB_DOWNLOAD_TIMEOUT` are read here.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use futures_util::StreamExt;
use hf_hub::{HFClient, HFError};

pub mod cache;
pub mod scan;
use cache::RepoCache;

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
    /// One GGUF file of the repository to fetch instead of a transformers-format model
    /// (`--gguf-file`): GGUF repositories hold several quantizations and nothing else.
    pub file: Option<String>,
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
        if let Some(rev) = &revision {
            cache::check_revision(rev).map_err(|e| anyhow!("{text:?}: {e:#}"))?;
        }
        Ok(Self {
            owner: owner.to_string(),
            name: name.to_string(),
            revision,
            file: None,
        })
    }

    /// This repository's GGUF file `file` (a plain `.gguf` name at its top level).
    pub fn with_file(mut self, file: &str) -> Result<Self> {
        if !file.ends_with(".gguf") {
            bail!("--gguf-file {file:?}: name a .gguf file of the repository");
        }
        cache::check_file_name(file).map_err(|e| anyhow!("--gguf-file {file:?}: {e:#}"))?;
        self.file = Some(file.to_string());
        Ok(self)
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
    match crate::model::loader::index_shards(dir) {
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
///
/// `hf-hub` does the talking (repository info, the file listing, file streams, Xet storage);
/// everything that touches the disk is done here, under names checked by [`cache`], so a hostile
/// hub or mirror cannot write outside the cache, and every file is checked against the size and
/// hash the listing gave before it is moved into place.
pub struct Hub {
    client: HFClient,
    /// The same client, for the requests made here rather than through `hf-hub`.
    http: reqwest::Client,
    token: Option<String>,
    offline: bool,
    endpoint: String,
    cache_dir: PathBuf,
    /// How many times a download cut off mid-file is tried again (from where it stopped) before
    /// giving up.
    retries: usize,
    /// How long the listing of a repository may take in all.
    listing_timeout: Duration,
}

/// Most files a repository's top level may list (the listing is paged; this bounds the pages).
const MAX_LISTED: usize = 10_000;
/// Largest JSON or text file fetched (config, tokenizer, index, template): bigger is refused.
const MAX_METADATA_BYTES: u64 = 256 << 20;
/// Largest config.json: it is parsed before anything else is fetched.
const MAX_CONFIG_BYTES: u64 = 4 << 20;
/// Files downloaded at once.
const PARALLEL: usize = 4;

/// The read timeout: `HF_HUB_DOWNLOAD_TIMEOUT` seconds (as `huggingface_hub` reads it), else 30.
fn read_timeout() -> Duration {
    std::env::var("HF_HUB_DOWNLOAD_TIMEOUT")
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .map_or(Duration::from_secs(30), Duration::from_secs_f64)
}

/// Most pages of a file listing followed.
const MAX_PAGES: usize = 100;
/// Largest page of a file listing.
const MAX_LISTING_BYTES: usize = 32 << 20;

/// One entry of the hub's tree listing, as the hub sends it.
#[derive(Debug, serde::Deserialize)]
struct TreeEntry {
    #[serde(rename = "type")]
    kind: String,
    path: String,
    #[serde(default)]
    oid: String,
    #[serde(default)]
    size: u64,
    #[serde(default)]
    lfs: Option<TreeLfs>,
}

#[derive(Debug, serde::Deserialize)]
struct TreeLfs {
    /// The sha256 of the content (`oid` on the hub; `sha256` in some mirrors).
    #[serde(default, alias = "sha256")]
    oid: Option<String>,
}

/// The `rel="next"` target of a `Link` header.
fn next_link(headers: &reqwest::header::HeaderMap) -> Option<String> {
    let link = headers.get(reqwest::header::LINK)?.to_str().ok()?;
    link.split(',').find_map(|part| {
        let part = part.trim();
        if !part.contains("rel=\"next\"") {
            return None;
        }
        let start = part.find('<')? + 1;
        let end = part.find('>')?;
        Some(part.get(start..end)?.to_string())
    })
}

/// Whether `url` is on the same scheme, host and port as `endpoint`.
fn same_origin(url: &str, endpoint: &str) -> bool {
    let origin = |u: &str| -> Option<String> {
        let (scheme, rest) = u.split_once("://")?;
        let host = rest.split('/').next()?;
        Some(format!(
            "{}://{}",
            scheme.to_ascii_lowercase(),
            host.to_ascii_lowercase()
        ))
    };
    origin(url).is_some() && origin(url) == origin(endpoint)
}

/// The hub token as `huggingface_hub` finds it: `HF_TOKEN`, the file `HF_TOKEN_PATH` names, or
/// `HF_HOME/token`; none when `HF_HUB_DISABLE_IMPLICIT_TOKEN` is set.
fn resolve_token() -> Option<String> {
    if std::env::var("HF_HUB_DISABLE_IMPLICIT_TOKEN").is_ok_and(|v| !v.is_empty()) {
        return None;
    }
    if let Ok(token) = std::env::var("HF_TOKEN") {
        if !token.trim().is_empty() {
            return Some(token.trim().to_string());
        }
    }
    let path = std::env::var_os("HF_TOKEN_PATH")
        .map(PathBuf::from)
        .unwrap_or_else(|| hf_hub::hf_home().join("token"));
    let token = std::fs::read_to_string(path).ok()?;
    let token = token.trim();
    (!token.is_empty()).then(|| token.to_string())
}

/// A file of the repository's listing that the loader wants.
#[derive(Debug, Clone)]
struct Listed {
    name: String,
    size: u64,
    checksum: cache::Checksum,
}

impl Hub {
    /// Reads `HF_ENDPOINT`, `HF_TOKEN`, `HF_HOME`, `HF_HUB_CACHE`, `HF_HUB_OFFLINE` and
    /// `HF_HUB_DOWNLOAD_TIMEOUT`.
    pub fn from_env() -> Result<Self> {
        Self::with_timeout(
            &endpoint(),
            hf_hub::resolve_cache_dir(),
            offline_from_env(),
            read_timeout(),
        )
    }

    /// A client for `endpoint` over the cache in `cache_dir` (`HF_TOKEN` is still read).
    pub fn new(endpoint: &str, cache_dir: PathBuf, offline: bool) -> Result<Self> {
        Self::with_timeout(endpoint, cache_dir, offline, read_timeout())
    }

    /// As [`Hub::new`], with connections and reads that give up after `timeout` without data.
    pub fn with_timeout(
        endpoint: &str,
        cache_dir: PathBuf,
        offline: bool,
        timeout: Duration,
    ) -> Result<Self> {
        let endpoint = endpoint.trim_end_matches('/').to_string();
        let scheme_ok = endpoint.starts_with("https://") || endpoint.starts_with("http://");
        if !scheme_ok {
            bail!("HF_ENDPOINT {endpoint:?} is not an http:// or https:// address");
        }
        let user_agent = concat!("dlm-tui/", env!("CARGO_PKG_VERSION"));
        let http = reqwest::Client::builder()
            .user_agent(user_agent)
            .connect_timeout(timeout)
            .read_timeout(timeout)
            .build()
            .map_err(|e| anyhow!("setting up the HTTP client: {e}"))?;
        let token = resolve_token();
        let mut builder = HFClient::builder()
            .endpoint(endpoint.clone())
            .cache_dir(cache_dir.clone())
            .user_agent(user_agent)
            .client(http.clone())
            .retry_max_attempts(2);
        if let Some(token) = &token {
            builder = builder.token(token.clone());
        }
        let client = builder
            .build()
            .map_err(|e| anyhow!("setting up the hub client for {endpoint}: {e}"))?;
        Ok(Self {
            client,
            http,
            token,
            offline,
            endpoint,
            cache_dir,
            retries: 2,
            listing_timeout: timeout * 4,
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
        let dir = self.cached_snapshot(spec)?;
        missing_files(&dir).is_empty().then_some(dir)
    }

    /// The cached snapshot of `spec`, complete or not (no request made).
    pub fn cached_snapshot(&self, spec: &RepoSpec) -> Option<PathBuf> {
        let repo = RepoCache::new(&self.cache_dir, spec);
        let commit = repo.resolve(spec.revision())?;
        repo.snapshot(&commit).ok().filter(|d| d.is_dir())
    }

    /// The model's folder: from the cache when it is complete there, else downloaded with
    /// progress reported to `sink`.
    pub async fn fetch(&self, spec: &RepoSpec, sink: ProgressSink) -> Result<Fetched> {
        if let Some(file) = &spec.file {
            return self.fetch_gguf(spec, file, sink).await;
        }
        if let Some(dir) = self.cached(spec).await {
            return Ok(Fetched {
                dir,
                origin: Origin::Cache,
            });
        }
        if self.offline {
            return Err(self.not_cached(spec, "HF_HUB_OFFLINE is set"));
        }
        let repo = RepoCache::new(&self.cache_dir, spec);
        let commit = self.commit_of(spec).await?;
        let listed = self.list(spec, &commit).await?;
        // config.json first: an unsupported family is refused before gigabytes of weights move.
        let Some(config_entry) = listed.iter().find(|f| f.name == "config.json") else {
            bail!(
                "{spec} on {} has no config.json: it is not a transformers-format model",
                self.endpoint
            );
        };
        if config_entry.size > MAX_CONFIG_BYTES {
            bail!(
                "{spec}'s config.json is {} bytes; a model config is a few kB (refusing more than {MAX_CONFIG_BYTES})",
                config_entry.size
            );
        }
        let dir = repo.snapshot(&commit)?;
        let noop: ProgressSink = Arc::new(|_| {});
        self.download_all(
            spec,
            &repo,
            &commit,
            std::slice::from_ref(config_entry),
            &noop,
        )
        .await?;
        let config = dir.join("config.json");
        let text =
            std::fs::read(&config).map_err(|e| anyhow!("reading {}: {e}", config.display()))?;
        let json: serde_json::Value = std::str::from_utf8(&text)
            .map_err(|e| {
                anyhow!(
                    "{spec}'s config.json ({}) is not UTF-8: {e}",
                    config.display()
                )
            })
            .and_then(|t| {
                serde_json::from_str(t).map_err(|e| {
                    anyhow!(
                        "{spec}'s config.json ({}) is not valid JSON: {e}",
                        config.display()
                    )
                })
            })?;
        crate::model::loader::detect_family(&json).map_err(|e| anyhow!("{spec}: {e:#}"))?;
        let rest: Vec<Listed> = listed
            .into_iter()
            .filter(|f| f.name != "config.json")
            .collect();
        self.download_all(spec, &repo, &commit, &rest, &sink)
            .await?;
        // A branch or tag is recorded in refs/ (a commit id needs no ref: write_ref skips it).
        repo.write_ref(spec.revision(), &commit)?;
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

    /// The commit the spec's revision points to on the hub (no request for a commit id).
    async fn commit_of(&self, spec: &RepoSpec) -> Result<String> {
        if cache::is_commit(spec.revision()) {
            return Ok(spec.revision().to_string());
        }
        let model = self.client.model(&spec.owner, &spec.name);
        let request = model.info().revision(spec.revision().to_string()).send();
        let info = match tokio::time::timeout(self.listing_timeout, request).await {
            Ok(Ok(info)) => info,
            Ok(Err(e)) => return Err(self.explain(spec, e)),
            Err(_) => return Err(self.timed_out(spec, "asking for the revision")),
        };
        match info.sha {
            Some(sha) if cache::is_commit(&sha) => Ok(sha),
            other => bail!(
                "{} answered {spec}'s revision with the commit id {:?}, which is not 40 hex digits: \
                 refusing to use it",
                self.endpoint,
                other.unwrap_or_default()
            ),
        }
    }

    /// One GGUF file of a repository (and its tokenizer.json, if it has one, which the loader
    /// prefers to the GGUF's own vocabulary), into the snapshot folder.
    async fn fetch_gguf(&self, spec: &RepoSpec, file: &str, sink: ProgressSink) -> Result<Fetched> {
        if let Some(dir) = self
            .cached_snapshot(spec)
            .filter(|d| d.join(file).is_file())
        {
            return Ok(Fetched {
                dir,
                origin: Origin::Cache,
            });
        }
        if self.offline {
            return Err(self.not_cached(spec, "HF_HUB_OFFLINE is set"));
        }
        let repo = RepoCache::new(&self.cache_dir, spec);
        let commit = self.commit_of(spec).await?;
        let listed = self
            .list_where(spec, &commit, |name| {
                name.ends_with(".gguf") || name == "tokenizer.json"
            })
            .await?;
        if !listed.iter().any(|f| f.name == file) {
            let mut offered: Vec<&str> = listed
                .iter()
                .map(|f| f.name.as_str())
                .filter(|n| n.ends_with(".gguf"))
                .collect();
            offered.sort();
            bail!(
                "{spec} on {} has no {file} at its top level ({})",
                self.endpoint,
                if offered.is_empty() {
                    "it has no .gguf files there".to_string()
                } else {
                    format!("its .gguf files: {}", offered.join(", "))
                }
            );
        }
        let wanted: Vec<Listed> = listed
            .into_iter()
            .filter(|f| f.name == file || f.name == "tokenizer.json")
            .collect();
        let dir = repo.snapshot(&commit)?;
        self.download_all(spec, &repo, &commit, &wanted, &sink)
            .await?;
        repo.write_ref(spec.revision(), &commit)?;
        Ok(Fetched {
            dir,
            origin: Origin::Network,
        })
    }

    /// The wanted top-level files at `commit`, each with its size and hash checked for form.
    async fn list(&self, spec: &RepoSpec, commit: &str) -> Result<Vec<Listed>> {
        self.list_where(spec, commit, wanted).await
    }

    /// The top-level files at `commit` whose names `keep` accepts, each with its size and hash
    /// checked for form.
    async fn list_where(
        &self,
        spec: &RepoSpec,
        commit: &str,
        keep: impl Fn(&str) -> bool,
    ) -> Result<Vec<Listed>> {
        let entries =
            match tokio::time::timeout(self.listing_timeout, self.tree(spec, commit)).await {
                Ok(entries) => entries?,
                Err(_) => return Err(self.timed_out(spec, "listing its files")),
            };
        let mut listed = Vec::new();
        for entry in entries {
            // Only files at the top level: sub-folders hold other formats (ONNX, GGUF, ...).
            if entry.kind != "file" || entry.path.contains('/') || !keep(&entry.path) {
                continue;
            }
            let path = entry.path;
            cache::check_file_name(&path).map_err(|e| anyhow!("{spec}: {e:#}"))?;
            let checksum = match entry.lfs.and_then(|l| l.oid) {
                Some(sha) if cache::is_sha256(&sha) => cache::Checksum::Sha256(sha),
                Some(sha) => bail!(
                    "{spec}: the hub gave {path} the LFS id {sha:?}, which is not a sha256: refusing it"
                ),
                None if cache::is_commit(&entry.oid) => cache::Checksum::GitSha1(entry.oid),
                None => bail!(
                    "{spec}: the hub gave {path} the object id {:?}, which is not a git id: refusing it",
                    entry.oid
                ),
            };
            let metadata = !path.ends_with(".safetensors") && !path.ends_with(".gguf");
            if metadata && entry.size > MAX_METADATA_BYTES {
                bail!(
                    "{spec}: {path} is {} bytes, too large for a metadata file (refusing more than {MAX_METADATA_BYTES})",
                    entry.size
                );
            }
            listed.push(Listed {
                name: path,
                size: entry.size,
                checksum,
            });
        }
        Ok(listed)
    }

    /// The repository's top-level listing at `commit`, page by page (`Link: rel="next"`, on the
    /// endpoint's own origin only), at most [`MAX_PAGES`] pages and [`MAX_LISTED`] entries.
    /// Requested here rather than through `hf-hub`, whose listing drops the LFS object id that
    /// each weights file is checked against.
    async fn tree(&self, spec: &RepoSpec, commit: &str) -> Result<Vec<TreeEntry>> {
        let mut url = format!(
            "{}/api/models/{}/{}/tree/{commit}",
            self.endpoint, spec.owner, spec.name
        );
        let mut entries = Vec::new();
        for _ in 0..MAX_PAGES {
            let mut request = self.http.get(&url);
            if let Some(token) = &self.token {
                request = request.bearer_auth(token);
            }
            let response = request.send().await.map_err(|e| self.transport(spec, e))?;
            let status = response.status();
            if !status.is_success() {
                let code = response
                    .headers()
                    .get("x-error-code")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                return Err(self.http_status(spec, status.as_u16(), &code));
            }
            let next = next_link(response.headers());
            let mut body = Vec::new();
            let mut response = response;
            while let Some(chunk) = response
                .chunk()
                .await
                .map_err(|e| self.transport(spec, e))?
            {
                body.extend_from_slice(&chunk);
                if body.len() > MAX_LISTING_BYTES {
                    bail!(
                        "{} sent more than {MAX_LISTING_BYTES} bytes for one page of {spec}'s file list",
                        self.endpoint
                    );
                }
            }
            let page: Vec<TreeEntry> = serde_json::from_slice(&body).map_err(|e| {
                anyhow!("{}'s file list for {spec} is not valid: {e}", self.endpoint)
            })?;
            entries.extend(page);
            if entries.len() > MAX_LISTED {
                bail!(
                    "{spec} on {} lists more than {MAX_LISTED} files at its top level",
                    self.endpoint
                );
            }
            match next {
                None => return Ok(entries),
                Some(next) if same_origin(&next, &self.endpoint) => url = next,
                Some(next) => bail!(
                    "{} pointed the next page of {spec}'s file list at another server ({next}): refusing",
                    self.endpoint
                ),
            }
        }
        bail!(
            "{}'s file list for {spec} ran past {MAX_PAGES} pages",
            self.endpoint
        )
    }

    fn transport(&self, spec: &RepoSpec, e: reqwest::Error) -> anyhow::Error {
        self.connection_failed(spec, e.is_connect(), &e)
    }

    /// The error for an HTTP status from the hub, told apart by its `X-Error-Code`.
    fn http_status(&self, spec: &RepoSpec, status: u16, code: &str) -> anyhow::Error {
        match (status, code) {
            (401 | 403, _) => self.gated(spec),
            (404, "RevisionNotFound") => self.no_revision(spec, spec.revision()),
            (404, _) => self.not_a_model(spec),
            _ => anyhow!(
                "{} answered HTTP {status} when listing {spec}'s files",
                self.endpoint
            ),
        }
    }

    /// Downloads each file that the snapshot lacks (several at once), reporting every byte to
    /// `sink` once.
    async fn download_all(
        &self,
        spec: &RepoSpec,
        repo: &RepoCache,
        commit: &str,
        files: &[Listed],
        sink: &ProgressSink,
    ) -> Result<()> {
        let dir = repo.snapshot(commit)?;
        let mut todo: Vec<Listed> = Vec::new();
        for file in files {
            if dir.join(&file.name).is_file() {
                continue;
            }
            // Already in the cache under another commit: link it.
            let blob = repo.blob(&file.checksum);
            if std::fs::metadata(&blob).is_ok_and(|m| m.len() == file.size) {
                repo.link(commit, &file.name, &file.checksum)?;
                continue;
            }
            todo.push(file.clone());
        }
        let state = Arc::new(Mutex::new(DownloadProgress {
            total_files: todo.len(),
            total_bytes: todo.iter().map(|f| f.size).sum(),
            ..DownloadProgress::default()
        }));
        if todo.is_empty() {
            return Ok(());
        }
        sink(&state.lock().map_err(|_| anyhow!("progress lock"))?.clone());
        let downloads: Vec<_> = todo
            .into_iter()
            .map(|file| self.download(spec, repo, commit, file, state.clone(), sink.clone()))
            .collect();
        let mut running = futures_util::stream::iter(downloads).buffer_unordered(PARALLEL);
        while let Some(result) = running.next().await {
            result?;
        }
        Ok(())
    }

    /// One file: streamed into `blobs/HASH.incomplete` (continuing a partial file with a range
    /// request), checked for size and hash, then moved into place and linked from the snapshot.
    /// A file that fails its check is deleted; one cut off stays to be resumed.
    async fn download(
        &self,
        spec: &RepoSpec,
        repo: &RepoCache,
        commit: &str,
        file: Listed,
        state: Arc<Mutex<DownloadProgress>>,
        sink: ProgressSink,
    ) -> Result<()> {
        use tokio::io::AsyncWriteExt;
        let partial = repo.partial(&file.checksum);
        if let Some(dir) = partial.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let report = |delta: i64, current: Option<&str>| {
            if let Ok(mut p) = state.lock() {
                p.done_bytes = p.done_bytes.saturating_add_signed(delta);
                match current {
                    Some(name) => p.current = Some(name.to_string()),
                    None => p.done_files += 1,
                }
                let snapshot = p.clone();
                drop(p);
                sink(&snapshot);
            }
        };
        let mut have = std::fs::metadata(&partial).map_or(0, |m| m.len());
        if have > file.size {
            std::fs::remove_file(&partial).ok();
            have = 0;
        }
        report(have as i64, Some(&file.name));
        let mut attempt = 0;
        while have < file.size {
            let model = self.client.model(&spec.owner, &spec.name);
            let request = model
                .download_file_stream()
                .filename(file.name.clone())
                .revision(commit.to_string())
                .maybe_range((have > 0).then_some(have..file.size))
                .send();
            let mut failure: Option<anyhow::Error> = None;
            match request.await {
                Err(e) => failure = Some(self.explain(spec, e)),
                Ok((_, mut stream)) => {
                    let mut out = tokio::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&partial)
                        .await
                        .with_context(|| format!("writing {}", partial.display()))?;
                    let mut overflow = false;
                    while let Some(chunk) = stream.next().await {
                        let chunk = match chunk {
                            Ok(chunk) => chunk,
                            Err(e) => {
                                failure = Some(self.explain(spec, e));
                                break;
                            }
                        };
                        if have + chunk.len() as u64 > file.size {
                            overflow = true;
                            break;
                        }
                        out.write_all(&chunk)
                            .await
                            .with_context(|| format!("writing {}", partial.display()))?;
                        have += chunk.len() as u64;
                        report(chunk.len() as i64, Some(&file.name));
                    }
                    let _ = out.flush().await;
                    drop(out);
                    if overflow {
                        // More than the listing said (or a range the server ignored): start
                        // this file again from its first byte.
                        std::fs::remove_file(&partial).ok();
                        report(-(have as i64), Some(&file.name));
                        have = 0;
                        failure = Some(anyhow!(
                            "{} sent more bytes of {} than its listing says ({})",
                            self.endpoint,
                            file.name,
                            file.size
                        ));
                    }
                    if failure.is_none() && have < file.size {
                        failure = Some(anyhow!(
                            "the transfer of {} ended after {have} of {} bytes",
                            file.name,
                            file.size
                        ));
                    }
                }
            }
            if let Some(e) = failure {
                if !retriable(&e) {
                    // A full disk or a read-only cache: trying again now cannot help.
                    return Err(e.context(format!(
                        "downloading {spec} stopped at {have} of {} bytes of {}: the cache ({}) \
                         cannot be written; free space or fix its permissions (or point \
                         HF_HUB_CACHE elsewhere), then run the command again",
                        file.size,
                        file.name,
                        self.cache_dir.display()
                    )));
                }
                if attempt >= self.retries {
                    return Err(e.context(format!(
                        "downloading {spec} from {} stopped at {have} of {} bytes of {}; the part \
                         stays in the cache: run the same command again to go on",
                        self.endpoint, file.size, file.name
                    )));
                }
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(250 * attempt as u64)).await;
            }
        }
        let path = partial.clone();
        let checksum = file.checksum.clone();
        let size = file.size;
        let actual = tokio::task::spawn_blocking(move || checksum.compute(&path, size))
            .await
            .map_err(|e| anyhow!("hashing {}: {e}", partial.display()))??;
        if actual != file.checksum.blob_name() {
            std::fs::remove_file(&partial).ok();
            bail!(
                "{} from {} does not match the checksum its listing gave (want {}, got {actual}): \
                 the download was deleted",
                file.name,
                self.endpoint,
                file.checksum.blob_name()
            );
        }
        let blob = repo.blob(&file.checksum);
        std::fs::rename(&partial, &blob).with_context(|| format!("writing {}", blob.display()))?;
        repo.link(commit, &file.name, &file.checksum)?;
        report(0, None);
        Ok(())
    }

    fn timed_out(&self, spec: &RepoSpec, what: &str) -> anyhow::Error {
        anyhow!(
            "{} did not finish {what} for {spec} within {} s; the hub may be overloaded, or \
             HF_ENDPOINT may point at a server that does not answer (HF_HUB_DOWNLOAD_TIMEOUT sets \
             the limit)",
            self.endpoint,
            self.listing_timeout.as_secs()
        )
    }

    /// The error for a model that must come from the cache but is not (completely) there.
    fn not_cached(&self, spec: &RepoSpec, why: &str) -> anyhow::Error {
        let command = fetch_command(spec);
        // Offline by choice: the way on is to lift that choice, not to find a network.
        let advice = if self.offline {
            format!("unset HF_HUB_OFFLINE and run `{command}`")
        } else {
            format!("run `{command}` with network access")
        };
        match self.cached_snapshot(spec) {
            Some(dir) => anyhow!(
                "{why} and the cached copy of {spec} in {} lacks {}: {advice}",
                dir.display(),
                missing_files(&dir).join(", ")
            ),
            None => anyhow!(
                "{why} and {spec} is not in the Hugging Face cache ({}): it lacks config.json, the \
                 tokenizer and the weights; {advice}",
                self.cache_dir.display()
            ),
        }
    }

    /// The error for what `hf-hub` reported.
    fn explain(&self, spec: &RepoSpec, error: HFError) -> anyhow::Error {
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
            _ if no_repo => self.not_a_model(spec),
            HFError::RevisionNotFound { revision, .. } => self.no_revision(spec, &revision),
            HFError::AuthRequired { .. } | HFError::Forbidden { .. } => self.gated(spec),
            e if is_network(&e) => self.connection_failed(spec, is_unreachable(&e), &e),
            e => anyhow!(
                "downloading {spec} from {}: {}",
                self.endpoint,
                error_chain(&e)
            ),
        }
    }

    /// What to do about access: the token's state decides the advice.
    fn token_hint(&self) -> &'static str {
        if self.token.is_some() {
            "the HF_TOKEN that is set may lack access"
        } else {
            "set HF_TOKEN to a token that has access"
        }
    }

    fn not_a_model(&self, spec: &RepoSpec) -> anyhow::Error {
        anyhow!(
            "{} is not a model on {} (a private or gated repository looks the same without a token: {})",
            spec.id(),
            self.endpoint,
            self.token_hint()
        )
    }

    fn no_revision(&self, spec: &RepoSpec, revision: &str) -> anyhow::Error {
        anyhow!(
            "{} has no revision {revision:?} on {}",
            spec.id(),
            self.endpoint
        )
    }

    fn gated(&self, spec: &RepoSpec) -> anyhow::Error {
        anyhow!(
            "{} is gated or private: accept its terms on its hub page, then {}",
            spec.id(),
            self.token_hint()
        )
    }

    /// A transport failure: with no connection at all the cache may still serve.
    fn connection_failed(
        &self,
        spec: &RepoSpec,
        unreachable: bool,
        error: &dyn std::error::Error,
    ) -> anyhow::Error {
        if unreachable {
            let why = format!(
                "{} cannot be reached ({})",
                self.endpoint,
                root_cause(error)
            );
            self.not_cached(spec, &why)
        } else {
            anyhow!(
                "the connection to {} failed ({})",
                self.endpoint,
                root_cause(error)
            )
        }
    }
}

/// Whether the loader wants a top-level file of this name ([`WANTED_FILES`]).
fn wanted(name: &str) -> bool {
    WANTED_FILES
        .iter()
        .any(|pattern| match pattern.strip_prefix('*') {
            Some(suffix) => name.ends_with(suffix),
            None => name == *pattern,
        })
}

/// Whether a failed transfer is worth another try now (not a full disk or a read-only cache).
fn retriable(e: &anyhow::Error) -> bool {
    !e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>().is_some_and(|io| {
            matches!(
                io.kind(),
                std::io::ErrorKind::StorageFull
                    | std::io::ErrorKind::PermissionDenied
                    | std::io::ErrorKind::ReadOnlyFilesystem
            )
        })
    })
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
        for bad in [
            "llada",
            "a/",
            "/b",
            "a/b@",
            "a b/c",
            "a/../b",
            "../x/y",
            "a/b@../../../file",
            "a/b@/etc/passwd",
            "a/b@ma\tin",
            "a/b@.hidden",
        ] {
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
