//! Remote models: a client for servers that speak the OpenAI chat API over server-sent events
//! (SGLang, vLLM, LMDeploy, dInfer, `dlm-tui serve`) and for Inception's Mercury, whose
//! `diffusing` stream sends the whole current text in every frame.
//!
//! A stream becomes a sequence of [`Frame`]s: the text as it stands after each chunk (appended
//! deltas are accumulated; Mercury's replace the text), with what changed since the previous
//! frame and the prefix two frames agree on (settled text).

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use futures_util::StreamExt;
use serde_json::{json, Value};

/// Mercury's API unless `INCEPTION_BASE_URL` names another (a proxy, a test server).
pub const MERCURY_URL: &str = "https://api.inceptionlabs.ai/v1";

/// Where to get a Mercury key (said when it is missing or rejected).
pub const MERCURY_KEYS: &str = "https://platform.inceptionlabs.ai";

/// How many times a request refused with 429 or 503 is tried in all.
pub const ATTEMPTS: usize = 4;

/// A secret read from the environment: never printed, never serialised.
#[derive(Clone, PartialEq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Self(value)
    }

    /// `text` with the secret blanked out (servers sometimes echo what they were sent).
    pub fn scrub(&self, text: &str) -> String {
        if self.0.is_empty() {
            text.to_string()
        } else {
            text.replace(&self.0, "[key]")
        }
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret([key])")
    }
}

/// A `[remote.NAME]` table of `config.toml`: a server `--remote NAME` names. `[remote.mercury]`
/// adjusts Mercury's (its URL for a proxy, a key file); any other name is an OpenAI-compatible
/// server and needs a `url`.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RemoteTable {
    /// The API root, e.g. http://gpu-box:30000/v1 (Mercury: its default, or a proxy).
    pub url: String,
    /// The model id (empty: the first one the server lists).
    pub model: String,
    /// The environment variable that holds the key.
    pub key_env: String,
    /// A file that holds the key (readable by its owner only); `~/` is the home folder.
    pub key_file: String,
    /// The model that fills masked spans (`/fim/completions`, Mercury); empty: found by name.
    pub fim_model: String,
}

/// Reads a key file: the whole file, trimmed. On Unix a file that others may read is refused,
/// as ssh refuses such keys. Errors name the file, never its content.
fn read_key_file(path: &str, table: &str) -> Result<Secret> {
    let expanded = match path.strip_prefix("~/") {
        Some(rest) => std::env::var_os("HOME")
            .map(|home| std::path::PathBuf::from(home).join(rest))
            .ok_or_else(|| anyhow!("{table} key_file {path:?}: HOME is not set"))?,
        None => std::path::PathBuf::from(path),
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(&expanded)
            .with_context(|| format!("{table} key_file {}", expanded.display()))?;
        if meta.permissions().mode() & 0o077 != 0 {
            bail!(
                "{table} key_file {} can be read by other users: `chmod 600 {}` first",
                expanded.display(),
                expanded.display()
            );
        }
    }
    let text = std::fs::read_to_string(&expanded)
        .with_context(|| format!("{table} key_file {}", expanded.display()))?;
    let key = text.trim();
    if key.is_empty() {
        bail!("{table} key_file {} is empty", expanded.display());
    }
    Ok(Secret::new(key.to_string()))
}

/// What kind of server a lane talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Inception's Mercury: `diffusing` frames that each hold the whole text.
    Mercury,
    /// Any OpenAI-compatible chat server: appended deltas.
    OpenAi,
}

/// A remote model: the server, the model id on it, and the key.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub kind: Kind,
    /// The API root, ending in `/v1` (no trailing slash).
    pub base_url: String,
    /// The model id; `None`: the first one the server lists.
    pub model: Option<String>,
    pub key: Option<Secret>,
    /// Where the key came from, for messages (`INCEPTION_API_KEY`).
    pub key_source: String,
    /// The model that fills a masked span (`/fim/completions`); `None`: the server's first
    /// model whose id has "edit" or "coder" in it (Mercury's FIM models), else `model`.
    pub fim_model: Option<String>,
}

impl Endpoint {
    /// `mercury` or a URL, as `--remote` takes it; `key_env` names the variable holding a key
    /// for a URL (Mercury's is always `INCEPTION_API_KEY`).
    pub fn from_flag(remote: &str, model: Option<String>, key_env: Option<&str>) -> Result<Self> {
        let read = |var: &str| {
            std::env::var(var)
                .ok()
                .filter(|v| !v.trim().is_empty())
                .map(|v| Secret::new(v.trim().to_string()))
        };
        if remote == "mercury" {
            let base_url = std::env::var("INCEPTION_BASE_URL")
                .ok()
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| MERCURY_URL.to_string());
            let key = read("INCEPTION_API_KEY").ok_or_else(|| {
                anyhow!(
                    "Mercury needs an API key in INCEPTION_API_KEY: create one at \
                     {MERCURY_KEYS}, then `export INCEPTION_API_KEY=...`"
                )
            })?;
            return Ok(Self {
                kind: Kind::Mercury,
                base_url: base_url.trim_end_matches('/').to_string(),
                model,
                key: Some(key),
                key_source: "INCEPTION_API_KEY".into(),
                fim_model: None,
            });
        }
        if !(remote.starts_with("http://") || remote.starts_with("https://")) {
            bail!(
                "--remote {remote:?}: give `mercury` or a server's URL, like \
                 http://127.0.0.1:30000/v1 (an OpenAI-compatible API)"
            );
        }
        let mut base_url = remote.trim_end_matches('/').to_string();
        if !base_url.ends_with("/v1") {
            base_url.push_str("/v1");
        }
        let key = match key_env {
            Some(var) => {
                Some(read(var).ok_or_else(|| anyhow!("{var} is not set (--api-key-env)"))?)
            }
            None => None,
        };
        Ok(Self {
            kind: Kind::OpenAi,
            base_url,
            model,
            key,
            key_source: key_env.unwrap_or("--api-key-env").to_string(),
            fim_model: None,
        })
    }

    /// `--remote NAME` with the `[remote.NAME]` tables of config.toml: a table of that name
    /// supplies the URL, model and key (flags win over it; for Mercury the environment's
    /// INCEPTION_BASE_URL and INCEPTION_API_KEY win too); without one, as [`Self::from_flag`].
    pub fn resolve(
        remote: &str,
        model: Option<String>,
        key_env: Option<&str>,
        tables: &std::collections::BTreeMap<String, RemoteTable>,
    ) -> Result<Self> {
        let Some(table) = tables.get(remote) else {
            return Self::from_flag(remote, model, key_env);
        };
        let name = format!("[remote.{remote}]");
        let some = |s: &str| (!s.trim().is_empty()).then(|| s.trim().to_string());
        let env = |var: &str| {
            std::env::var(var)
                .ok()
                .filter(|v| !v.trim().is_empty())
                .map(|v| Secret::new(v.trim().to_string()))
        };
        let model = model.or_else(|| some(&table.model));
        // The key: the flag's variable, else the table's variable, else its file.
        let key = |default_env: Option<&str>| -> Result<Option<(Secret, String)>> {
            for var in key_env
                .into_iter()
                .chain(default_env)
                .chain(some(&table.key_env).as_deref())
            {
                if let Some(secret) = env(var) {
                    return Ok(Some((secret, var.to_string())));
                }
            }
            match some(&table.key_file) {
                Some(file) => Ok(Some((
                    read_key_file(&file, &name)?,
                    format!("{name} key_file"),
                ))),
                None => Ok(None),
            }
        };
        if remote == "mercury" {
            let base_url = std::env::var("INCEPTION_BASE_URL")
                .ok()
                .filter(|v| !v.is_empty())
                .or_else(|| some(&table.url))
                .unwrap_or_else(|| MERCURY_URL.to_string());
            let (key, key_source) = key(Some("INCEPTION_API_KEY"))?.ok_or_else(|| {
                anyhow!(
                    "Mercury needs an API key: create one at {MERCURY_KEYS}, then `export \
                     INCEPTION_API_KEY=...` or name a key_file in {name} of config.toml"
                )
            })?;
            return Ok(Self {
                kind: Kind::Mercury,
                base_url: base_url.trim_end_matches('/').to_string(),
                model,
                key: Some(key),
                key_source,
                fim_model: some(&table.fim_model),
            });
        }
        let url = some(&table.url).ok_or_else(|| {
            anyhow!("{name} in config.toml has no url: give the server's, like http://127.0.0.1:30000/v1")
        })?;
        let mut endpoint = Self::from_flag(&url, model, None)
            .with_context(|| format!("{name} url in config.toml"))?;
        endpoint.fim_model = some(&table.fim_model);
        if let Some((secret, source)) = key(None)? {
            endpoint.key = Some(secret);
            endpoint.key_source = source;
        } else if let Some(var) = key_env.or(some(&table.key_env).as_deref()) {
            bail!("{var} is not set (the key of {name})");
        }
        Ok(endpoint)
    }

    /// The server's name for messages (never with a key).
    pub fn describe(&self) -> String {
        match self.kind {
            Kind::Mercury => format!("Mercury ({})", self.base_url),
            Kind::OpenAi => self.base_url.clone(),
        }
    }
}

/// What a lane asks of the server.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub prompt: String,
    pub max_tokens: usize,
    pub temperature: f64,
}

/// One frame of a stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    /// The whole text as it stands.
    pub text: String,
    /// Characters (not bytes) `start..end` of `text` that differ from the previous frame's.
    pub changed: std::ops::Range<usize>,
    /// Characters at the start that this frame and the previous one share (settled text).
    pub settled: usize,
    pub elapsed: Duration,
}

/// A finished stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Finish {
    pub model: String,
    pub text: String,
    pub frames: usize,
    /// Time to the first frame.
    pub first_frame: Option<Duration>,
    pub elapsed: Duration,
    /// Output tokens the server counted (its final `usage`).
    pub completion_tokens: Option<u64>,
    /// Messages the server attached (Mercury resets an out-of-range temperature and says so).
    pub warnings: Vec<String>,
}

/// Characters the two texts share at the start, and the range of `new` that differs from `old`
/// (what is left after the common prefix and suffix).
pub fn diff(old: &str, new: &str) -> (usize, std::ops::Range<usize>) {
    let a: Vec<char> = old.chars().collect();
    let b: Vec<char> = new.chars().collect();
    let prefix = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let suffix = a[prefix..]
        .iter()
        .rev()
        .zip(b[prefix..].iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    (prefix, prefix..b.len() - suffix)
}

/// The message of an OpenAI error envelope, with what to do about the common statuses.
fn explain(endpoint: &Endpoint, model: &str, status: u16, body: &str) -> String {
    let message = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
        .unwrap_or_else(|| body.chars().take(200).collect());
    let server = endpoint.describe();
    let text = match status {
        401 => format!(
            "{server} rejected the key (401: {message}): check {}{}",
            endpoint.key_source,
            if endpoint.kind == Kind::Mercury {
                format!(" (keys: {MERCURY_KEYS})")
            } else {
                String::new()
            }
        ),
        402 => format!("{server}: the account is not active (402: {message})"),
        404 => format!(
            "{server} has no model {model:?} (404: {message}): `dlm-tui generate --remote ... \
             --remote-model ID` with an id it lists"
        ),
        429 => {
            format!("{server} is rate-limiting this key (429: {message}); try again in a minute")
        }
        503 => format!("{server} is overloaded (503: {message}); try again later"),
        _ => format!("{server} answered {status}: {message}"),
    };
    match &endpoint.key {
        Some(key) => key.scrub(&text),
        None => text,
    }
}

/// An HTTP client with connect and read timeouts.
fn client() -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .read_timeout(Duration::from_secs(120))
        .build()
        .context("building the HTTP client")
}

fn authorised(builder: reqwest::RequestBuilder, endpoint: &Endpoint) -> reqwest::RequestBuilder {
    match &endpoint.key {
        Some(key) => builder.bearer_auth(&key.0),
        None => builder,
    }
}

/// A request that got no answer (the URL left out: it is the endpoint's, said already).
fn unreachable(endpoint: &Endpoint, e: reqwest::Error) -> anyhow::Error {
    anyhow!(
        "{} cannot be reached: {}",
        endpoint.describe(),
        e.without_url()
    )
}

/// `GET` of `path` under the API root: the status and the body.
async fn get(endpoint: &Endpoint, path: &str) -> Result<(u16, String)> {
    let url = format!("{}/{path}", endpoint.base_url);
    let response = authorised(client()?.get(&url), endpoint)
        .send()
        .await
        .map_err(|e| unreachable(endpoint, e))?;
    let status = response.status().as_u16();
    Ok((status, response.text().await.unwrap_or_default()))
}

/// The model ids the server lists (`GET /models`).
pub async fn models(endpoint: &Endpoint) -> Result<Vec<String>> {
    let (status, body) = get(endpoint, "models").await?;
    if status != 200 {
        bail!(explain(endpoint, "", status, &body));
    }
    let value: Value = serde_json::from_str(&body)
        .with_context(|| format!("{}/models did not answer JSON", endpoint.describe()))?;
    Ok(value["data"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["id"].as_str().map(str::to_string))
        .collect())
}

/// Streams one chat completion, calling `on_frame` for every frame. A 429 or 503 is retried
/// (at most [`ATTEMPTS`] tries, waiting 1, 2, 4 s or what `Retry-After` says, at most 30 s);
/// dropping the future cancels it, waits included.
pub async fn stream(
    endpoint: &Endpoint,
    request: &Request,
    on_frame: impl FnMut(&Frame),
) -> Result<Finish> {
    let model = match &endpoint.model {
        Some(model) => model.clone(),
        None => models(endpoint)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| anyhow!("{} lists no models (GET /models)", endpoint.describe()))?,
    };
    let mut body = json!({
        "model": model,
        "messages": [{"role": "user", "content": request.prompt}],
        "max_tokens": request.max_tokens,
        "temperature": request.temperature,
        "stream": true,
        "stream_options": {"include_usage": true},
    });
    if endpoint.kind == Kind::Mercury {
        body["diffusing"] = json!(true);
    }
    stream_body(endpoint, "chat/completions", model, body, on_frame).await
}

/// A span to fill between two texts (`POST /fim/completions`, Mercury's fill-in-the-middle).
#[derive(Debug, Clone, PartialEq)]
pub struct FimRequest {
    pub prompt: String,
    pub suffix: String,
    pub max_tokens: usize,
}

/// Streams the text that fills the gap between `request.prompt` and `request.suffix`: appended
/// chunks (`choices[0].text`), one frame each, as [`stream`] does for a chat.
pub async fn fim_stream(
    endpoint: &Endpoint,
    request: &FimRequest,
    on_frame: impl FnMut(&Frame),
) -> Result<Finish> {
    let model = match &endpoint.fim_model {
        Some(model) => model.clone(),
        None => {
            let listed = models(endpoint).await?;
            listed
                .iter()
                .find(|m| m.contains("edit") || m.contains("coder"))
                .or(endpoint.model.as_ref())
                .or(listed.first())
                .cloned()
                .ok_or_else(|| anyhow!("{} lists no models (GET /models)", endpoint.describe()))?
        }
    };
    let body = json!({
        "model": model,
        "prompt": request.prompt,
        "suffix": request.suffix,
        "max_tokens": request.max_tokens,
        "stream": true,
    });
    stream_body(endpoint, "fim/completions", model, body, on_frame).await
}

/// POSTs `body` to `path` and turns its server-sent events into frames (with retries of 429 and
/// 503, the error envelope explained, and a cut-off stream refused).
async fn stream_body(
    endpoint: &Endpoint,
    path: &str,
    model: String,
    body: Value,
    mut on_frame: impl FnMut(&Frame),
) -> Result<Finish> {
    let url = format!("{}/{path}", endpoint.base_url);
    let started = Instant::now();
    let mut attempt = 0;
    let response = loop {
        attempt += 1;
        let response = authorised(client()?.post(&url), endpoint)
            .json(&body)
            .send()
            .await
            .map_err(|e| unreachable(endpoint, e))?;
        let status = response.status().as_u16();
        if status == 200 {
            break response;
        }
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let text = response.text().await.unwrap_or_default();
        if matches!(status, 429 | 503) && attempt < ATTEMPTS {
            let wait = retry_after.unwrap_or(1 << (attempt - 1)).min(30);
            tokio::time::sleep(Duration::from_secs(wait)).await;
            continue;
        }
        bail!(explain(endpoint, &model, status, &text));
    };
    let mut events = eventsource_stream::EventStream::new(response.bytes_stream());
    let mut text = String::new();
    let mut finish = Finish {
        model: model.clone(),
        text: String::new(),
        frames: 0,
        first_frame: None,
        elapsed: Duration::ZERO,
        completion_tokens: None,
        warnings: Vec::new(),
    };
    // A stream ends with `data: [DONE]` (Mercury, OpenAI, SGLang) after a chunk with a
    // finish_reason; one that just stops was cut off, and its text may be half an answer.
    let mut ended = false;
    while let Some(event) = events.next().await {
        let event = event.map_err(|e| anyhow!("{}: the stream broke: {e}", endpoint.describe()))?;
        let data = event.data.trim();
        if data == "[DONE]" {
            ended = true;
            break;
        }
        if data.is_empty() {
            continue;
        }
        let chunk: Value = serde_json::from_str(data)
            .with_context(|| format!("{}: a stream event that is not JSON", endpoint.describe()))?;
        if let Some(error) = chunk.get("error") {
            let message = error["message"].as_str().unwrap_or("unknown error");
            bail!("{}: {}", endpoint.describe(), message);
        }
        if let Some(tokens) = chunk["usage"]["completion_tokens"].as_u64() {
            finish.completion_tokens = Some(tokens);
        }
        if let Some(warning) = chunk["warning"].as_str() {
            finish.warnings.push(warning.to_string());
        }
        if chunk["choices"][0]["finish_reason"].is_string() {
            ended = true;
        }
        // A chat chunk's delta, or a completion's (FIM) text.
        let choice = &chunk["choices"][0];
        let Some(content) = choice["delta"]["content"]
            .as_str()
            .or(choice["text"].as_str())
        else {
            continue;
        };
        // Mercury's diffusing frames hold the whole text; other servers append.
        // (FIM streams append, on Mercury too.)
        let whole = (endpoint.kind == Kind::Mercury && path == "chat/completions")
            || chunk["diffusion_meta"]["diffusion_content"].as_bool() == Some(true);
        let next = if whole {
            content.to_string()
        } else {
            format!("{text}{content}")
        };
        if next == text && finish.frames > 0 {
            continue;
        }
        let (settled, changed) = diff(&text, &next);
        text = next;
        let frame = Frame {
            text: text.clone(),
            changed,
            settled,
            elapsed: started.elapsed(),
        };
        finish.frames += 1;
        finish.first_frame.get_or_insert(frame.elapsed);
        on_frame(&frame);
    }
    if !ended {
        bail!(
            "{}: the stream was cut off after {} frame(s), before the server said it was done; \
             the text so far may be incomplete",
            endpoint.describe(),
            finish.frames
        );
    }
    finish.text = text;
    finish.elapsed = started.elapsed();
    Ok(finish)
}

/// A runtime for the remote client on a thread of its own (the engine's worker).
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the remote client's runtime")
}

/// What a `dlm-tui serve` says about the model it serves (`GET /v1/dlm/model`): its facts and
/// its tokenizer.json; `None` from a server that is not one (no such path).
pub async fn served_model(endpoint: &Endpoint) -> Result<Option<(Value, Vec<u8>)>> {
    let (status, body) = get(endpoint, "dlm/model").await?;
    if status == 404 {
        return Ok(None);
    }
    if status != 200 {
        bail!(explain(endpoint, "", status, &body));
    }
    let value: Value = serde_json::from_str(&body)
        .with_context(|| format!("{}/dlm/model did not answer JSON", endpoint.describe()))?;
    let tokenizer = value["tokenizer"]
        .as_str()
        .ok_or_else(|| anyhow!("{} sent no tokenizer", endpoint.describe()))?
        .as_bytes()
        .to_vec();
    Ok(Some((value["info"].clone(), tokenizer)))
}

/// Starts a job on a `dlm-tui serve` (`POST /v1/dlm/jobs`) and streams its events as JSON.
pub async fn job_stream(
    endpoint: &Endpoint,
    job: &Value,
) -> Result<impl futures_util::Stream<Item = Result<Value>> + use<>> {
    let url = format!("{}/dlm/jobs", endpoint.base_url);
    let response = authorised(client()?.post(&url), endpoint)
        .json(job)
        .send()
        .await
        .map_err(|e| unreachable(endpoint, e))?;
    let status = response.status().as_u16();
    if status != 200 {
        let body = response.text().await.unwrap_or_default();
        bail!(explain(endpoint, "", status, &body));
    }
    let server = endpoint.describe();
    Ok(
        eventsource_stream::EventStream::new(response.bytes_stream()).map(move |event| {
            let event = event.map_err(|e| anyhow!("{server}: the stream broke: {e}"))?;
            serde_json::from_str(&event.data)
                .with_context(|| format!("{server}: an event that is not JSON"))
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_finds_the_settled_prefix_and_the_changed_span() {
        assert_eq!(diff("", "abc"), (0, 0..3));
        assert_eq!(diff("abXdef", "abYdef"), (2, 2..3));
        assert_eq!(diff("hello", "hello world"), (5, 5..11));
        // Characters, not bytes.
        assert_eq!(diff("café x", "café y"), (5, 5..6));
    }

    #[test]
    fn keys_never_show() {
        let key = Secret::new("sk-secret-123".into());
        assert_eq!(format!("{key:?}"), "Secret([key])");
        assert_eq!(key.scrub("bad key sk-secret-123!"), "bad key [key]!");
    }
}
