//! `--model ORG/NAME` over real HTTP: a server on 127.0.0.1 serves fixture repositories in the
//! hub's URL layout (`HF_ENDPOINT` points at it) and logs every request, so each test can say
//! which requests were made: the first download (with progress), a second run from the cache
//! with none, offline mode, missing files, unknown families and cut-off transfers.

mod common;

use common::pane::Pane;

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use dlm_tui::hub::{DownloadProgress, Hub, Origin, RepoSpec};

const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

struct Repo {
    files: BTreeMap<String, Vec<u8>>,
    /// A gated repository answers 401 unless this bearer token comes with the request.
    token: Option<String>,
}

#[derive(Default)]
struct State {
    repos: HashMap<String, Repo>,
    /// File name → how many more GETs of it are cut off half-way.
    cuts: HashMap<String, usize>,
    /// Send file bodies in small, slow chunks (so a person could watch the progress).
    slow: bool,
    log: Vec<String>,
    // Misbehaviours: nothing a server sends may be trusted.
    /// The ETag and X-Repo-Commit sent with every file.
    headers_override: Option<String>,
    /// The commit id the revision API answers.
    sha_override: Option<String>,
    /// File name → the object id the listing gives it.
    oid_override: HashMap<String, String>,
    /// Files served with a smaller Content-Length and that many bytes, as if complete.
    short: Vec<String>,
    /// Files served whole but with their first byte changed.
    corrupt: Vec<String>,
    /// Files whose transfer sends half and then goes quiet without closing.
    stall: Vec<String>,
    /// Accept connections and never answer.
    silent: bool,
    /// The file listing pages on forever.
    endless: bool,
}

/// A minimal hub: repository info, recursive tree listing, and HEAD/GET of `resolve` URLs.
struct FakeHub {
    url: String,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FakeHub {
    fn start(repos: Vec<(&str, Repo)>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State {
            repos: repos
                .into_iter()
                .map(|(id, repo)| (id.to_string(), repo))
                .collect(),
            ..State::default()
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let state = state.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let state = state.clone();
                    std::thread::spawn(move || serve(stream, &state));
                }
            })
        };
        Self {
            url: format!("http://{addr}"),
            state,
            stop,
            thread: Some(thread),
        }
    }

    fn log(&self) -> Vec<String> {
        self.state.lock().unwrap().log.clone()
    }

    fn clear_log(&self) {
        self.state.lock().unwrap().log.clear();
    }

    fn cut(&self, file: &str, times: usize) {
        self.state.lock().unwrap().cuts.insert(file.into(), times);
    }
}

impl Drop for FakeHub {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.url.trim_start_matches("http://"));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The object id the hub lists for a file: git's blob sha1 for small files, and for LFS files
/// (the weights) the sha256 of the content, which is also their ETag.
fn etag(name: &str, bytes: &[u8]) -> String {
    if is_lfs(name) {
        sha256(bytes)
    } else {
        git_oid(bytes)
    }
}

/// The object id the listing gives a file (git's, unless a test overrides it).
fn repo_oid(overrides: &HashMap<String, String>, name: &str, bytes: &[u8]) -> String {
    overrides
        .get(name)
        .cloned()
        .unwrap_or_else(|| git_oid(bytes))
}

fn is_lfs(name: &str) -> bool {
    name.ends_with(".safetensors") || name.ends_with(".bin") || name.ends_with(".gguf")
}

fn git_oid(bytes: &[u8]) -> String {
    use sha1::Digest;
    let mut h = sha1::Sha1::new();
    h.update(format!("blob {}\0", bytes.len()).as_bytes());
    h.update(bytes);
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn respond(stream: &mut TcpStream, status: &str, headers: &[(&str, String)], body: &[u8]) {
    let mut head = format!("HTTP/1.1 {status}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body);
    let _ = stream.flush();
}

fn not_found(stream: &mut TcpStream, code: &str, with_commit: bool) {
    let mut headers = vec![
        ("X-Error-Code", code.to_string()),
        ("Content-Type", "application/json".to_string()),
    ];
    let body = format!("{{\"error\": \"{code}\"}}");
    headers.push(("Content-Length", body.len().to_string()));
    if with_commit {
        headers.push(("X-Repo-Commit", SHA.to_string()));
    }
    respond(stream, "404 Not Found", &headers, body.as_bytes());
}

fn serve(mut stream: TcpStream, state: &Mutex<State>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request = String::new();
    if reader.read_line(&mut request).is_err() {
        return;
    }
    let mut bearer = None;
    let mut range: Option<(usize, Option<usize>)> = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("authorization") {
                bearer = value.trim().strip_prefix("Bearer ").map(str::to_string);
            }
            if name.eq_ignore_ascii_case("range") {
                range = value
                    .trim()
                    .strip_prefix("bytes=")
                    .and_then(|r| r.split_once('-'))
                    .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok())));
            }
        }
    }
    if state.lock().unwrap().silent {
        std::thread::sleep(std::time::Duration::from_secs(30));
        return;
    }
    let mut parts = request.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("").to_string();
    let path = target.split('?').next().unwrap_or("").to_string();
    let mut state = state.lock().unwrap();
    match range {
        Some((from, _)) if method == "GET" => {
            state.log.push(format!("{method} {path} from {from}"))
        }
        _ => state.log.push(format!("{method} {path}")),
    }
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let repo_id = match segments.as_slice() {
        ["api", "models", owner, name, ..] => format!("{owner}/{name}"),
        [owner, name, ..] => format!("{owner}/{name}"),
        _ => String::new(),
    };
    if let Some(required) = state.repos.get(&repo_id).and_then(|r| r.token.clone()) {
        if bearer.as_deref() != Some(required.as_str()) {
            let body = b"{\"error\": \"Access to this model is restricted\"}";
            return respond(
                &mut stream,
                "401 Unauthorized",
                &[
                    ("X-Error-Code", "GatedRepo".to_string()),
                    ("Content-Length", body.len().to_string()),
                ],
                body,
            );
        }
    }
    let json = |stream: &mut TcpStream, body: String| {
        respond(
            stream,
            "200 OK",
            &[
                ("Content-Type", "application/json".to_string()),
                ("Content-Length", body.len().to_string()),
            ],
            body.as_bytes(),
        )
    };
    // /api/models/{owner}/{name}/revision/{rev} and /api/models/{owner}/{name}/tree/{rev}
    if segments.len() == 6 && segments[0] == "api" && segments[1] == "models" {
        let id = format!("{}/{}", segments[2], segments[3]);
        let Some(repo) = state.repos.get(&id) else {
            return not_found(&mut stream, "RepoNotFound", false);
        };
        if segments[5] != "main" && segments[5] != SHA {
            return not_found(&mut stream, "RevisionNotFound", false);
        }
        let sha = state.sha_override.clone().unwrap_or(SHA.to_string());
        match segments[4] {
            "revision" => json(
                &mut stream,
                format!("{{\"id\": \"{id}\", \"sha\": {sha:?}}}"),
            ),
            "tree" if state.endless => {
                let page: usize = target
                    .split("page=")
                    .nth(1)
                    .and_then(|p| p.parse().ok())
                    .unwrap_or(0);
                let body = format!(
                    "[{{\"type\": \"file\", \"oid\": \"{}\", \"size\": 1, \"path\": \"junk-{page}.txt\"}}]",
                    git_oid(b"x")
                );
                let base = target.split('?').next().unwrap_or_default();
                let next = format!(
                    "<http://{}{base}?page={}>; rel=\"next\"",
                    stream.local_addr().unwrap(),
                    page + 1
                );
                respond(
                    &mut stream,
                    "200 OK",
                    &[
                        ("Content-Type", "application/json".to_string()),
                        ("Content-Length", body.len().to_string()),
                        ("Link", next),
                    ],
                    body.as_bytes(),
                );
            }
            "tree" => {
                let entries: Vec<String> = repo
                    .files
                    .iter()
                    .map(|(name, bytes)| {
                        let lfs = if is_lfs(name) {
                            format!(
                                ", \"lfs\": {{\"oid\": \"{}\", \"size\": {}, \"pointerSize\": 134}}",
                                sha256(bytes),
                                bytes.len()
                            )
                        } else {
                            String::new()
                        };
                        let oid = repo_oid(&state.oid_override, name, bytes);
                        format!(
                            "{{\"type\": \"file\", \"oid\": {oid:?}, \"size\": {}, \"path\": \"{name}\"{lfs}}}",
                            bytes.len()
                        )
                    })
                    .collect();
                json(&mut stream, format!("[{}]", entries.join(", ")))
            }
            _ => not_found(&mut stream, "EntryNotFound", false),
        }
        return;
    }
    // /{owner}/{name}/resolve/{rev}/{file...}
    if segments.len() >= 5 && segments[2] == "resolve" {
        let id = format!("{}/{}", segments[0], segments[1]);
        let file = segments[4..].join("/");
        let Some(repo) = state.repos.get(&id) else {
            return not_found(&mut stream, "RepoNotFound", false);
        };
        if segments[3] != "main" && segments[3] != SHA {
            return not_found(&mut stream, "RevisionNotFound", false);
        }
        let Some(bytes) = repo.files.get(&file).cloned() else {
            return not_found(&mut stream, "EntryNotFound", true);
        };
        let (tag, commit) = match &state.headers_override {
            Some(evil) => (evil.clone(), evil.clone()),
            None => (etag(&file, &bytes), SHA.to_string()),
        };
        let mut headers = vec![
            ("ETag", format!("\"{tag}\"")),
            ("X-Repo-Commit", commit),
            ("Content-Length", bytes.len().to_string()),
        ];
        if method == "HEAD" {
            return respond(&mut stream, "200 OK", &headers, &[]);
        }
        // A range request gets 206 with that part (the ETag stays the whole file's).
        let (status, part) = match range {
            Some((from, to)) => {
                let to = to.map_or(bytes.len(), |t| (t + 1).min(bytes.len()));
                headers.push((
                    "Content-Range",
                    format!("bytes {from}-{}/{}", to.max(1) - 1, bytes.len()),
                ));
                ("206 Partial Content", bytes[from.min(to)..to].to_vec())
            }
            None => ("200 OK", bytes.clone()),
        };
        headers[2].1 = part.len().to_string();
        let short = state.short.contains(&file);
        let corrupt = state.corrupt.contains(&file);
        let stall = state.stall.contains(&file);
        let slow = state.slow;
        let cut = match state.cuts.get_mut(&file) {
            Some(n) if *n > 0 => {
                *n -= 1;
                true
            }
            _ => false,
        };
        drop(state);
        let half = &part[..part.len() / 2];
        if short {
            // Says half is all there is, sends it, closes: looks complete.
            headers[2].1 = half.len().to_string();
            respond(&mut stream, status, &headers, half);
        } else if corrupt {
            let mut bad = part.clone();
            bad[0] ^= 0xff;
            respond(&mut stream, status, &headers, &bad);
        } else if stall {
            respond(&mut stream, status, &headers, half);
            std::thread::sleep(std::time::Duration::from_secs(30));
        } else if cut {
            // Promise the whole part, send half, hang up.
            respond(&mut stream, status, &headers, half);
            let _ = stream.shutdown(std::net::Shutdown::Both);
        } else if slow {
            respond(&mut stream, status, &headers, &[]);
            for chunk in part.chunks(16 << 10) {
                std::thread::sleep(std::time::Duration::from_millis(60));
                if stream.write_all(chunk).is_err() {
                    return;
                }
            }
        } else {
            respond(&mut stream, status, &headers, &part);
        }
        return;
    }
    not_found(&mut stream, "EntryNotFound", false);
}

fn folder(name: &str) -> BTreeMap<String, Vec<u8>> {
    let dir = common::fixtures().join(name);
    std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            let mut bytes = Vec::new();
            std::fs::File::open(&p)
                .unwrap()
                .read_to_end(&mut bytes)
                .unwrap();
            (name, bytes)
        })
        .collect()
}

/// The sharded Dream fixture plus files `dlm-tui` must leave on the hub.
fn dream_repo() -> Repo {
    let mut files = folder("dream-tiny-gqa");
    files.insert("modeling_dream.py".into(), b"raise SystemExit".to_vec());
    files.insert("pytorch_model.bin".into(), vec![7u8; 4096]);
    files.insert("onnx/model.safetensors".into(), vec![9u8; 4096]);
    Repo { files, token: None }
}

fn temp_dir(tag: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let dir =
        std::env::temp_dir().join(format!("dlm-tui-hub-{tag}-{}-{nanos}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn dlm_tui(endpoint: &str, cache: &Path, offline: bool, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_dlm-tui"));
    command
        .args(args)
        .env("HF_ENDPOINT", endpoint)
        .env("HF_HUB_CACHE", cache)
        .env("HF_HOME", cache.join("home"))
        .env_remove("HF_TOKEN")
        .env_remove("HUGGINGFACE_HUB_CACHE");
    if offline {
        command.env("HF_HUB_OFFLINE", "1");
    } else {
        command.env_remove("HF_HUB_OFFLINE");
    }
    command.output().expect("running dlm-tui")
}

fn generate_args(model: &str) -> Vec<&str> {
    vec![
        "generate",
        "--model",
        model,
        "--prompt",
        "hello",
        "--length",
        "6",
        "--steps",
        "6",
        "--block-length",
        "6",
    ]
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn gets_of(log: &[String], file: &str) -> usize {
    log.iter()
        .filter(|l| {
            let l = l.split(" from ").next().unwrap_or(l);
            l.starts_with("GET ") && l.ends_with(&format!("/{file}"))
        })
        .count()
}

/// The byte offsets the GETs of `file` started from (0 for a whole-file request).
fn get_offsets(log: &[String], file: &str) -> Vec<usize> {
    log.iter()
        .filter(|l| l.starts_with("GET ") && l.contains(&format!("/{file}")))
        .map(|l| l.split(" from ").nth(1).map_or(0, |n| n.parse().unwrap()))
        .collect()
}

fn snapshot(cache: &Path, id: &str) -> PathBuf {
    cache
        .join(format!("models--{}", id.replace('/', "--")))
        .join("snapshots")
        .join(SHA)
}

#[test]
fn first_run_downloads_second_run_makes_no_request_offline_needs_the_cache() {
    let hub = FakeHub::start(vec![("test-org/tiny-dream", dream_repo())]);
    let cache = temp_dir("first");
    let args = generate_args("test-org/tiny-dream");

    let first = dlm_tui(&hub.url, &cache, false, &args);
    assert!(first.status.success(), "stderr: {}", stderr(&first));
    assert!(
        stderr(&first).contains("downloaded test-org/tiny-dream"),
        "{}",
        stderr(&first)
    );
    let log = hub.log();
    for file in [
        "config.json",
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
        "model.safetensors.index.json",
        "tokenizer.json",
        "tokenizer_config.json",
    ] {
        assert_eq!(gets_of(&log, file), 1, "{file}: {log:#?}");
        assert!(snapshot(&cache, "test-org/tiny-dream").join(file).is_file());
    }
    for file in [
        "modeling_dream.py",
        "pytorch_model.bin",
        "model.safetensors",
    ] {
        assert_eq!(gets_of(&log, file), 0, "{file} was fetched: {log:#?}");
    }
    // The output names the model by its hub id.
    let local = Command::new(env!("CARGO_BIN_EXE_dlm-tui"))
        .args(["generate", "--model-dir"])
        .arg(common::fixtures().join("dream-tiny-gqa"))
        .args(&args[3..])
        .output()
        .unwrap();
    assert_eq!(
        first.stdout, local.stdout,
        "the hub copy generates what the local folder does"
    );

    hub.clear_log();
    let second = dlm_tui(&hub.url, &cache, false, &args);
    assert!(second.status.success(), "stderr: {}", stderr(&second));
    assert_eq!(
        hub.log(),
        Vec::<String>::new(),
        "a cached model needs no request"
    );
    assert!(stderr(&second).contains("from the cache"));
    assert_eq!(first.stdout, second.stdout);

    // Offline with the server gone: the cache alone serves.
    let url = hub.url.clone();
    drop(hub);
    let offline = dlm_tui(&url, &cache, true, &args);
    assert!(offline.status.success(), "stderr: {}", stderr(&offline));
    assert_eq!(first.stdout, offline.stdout);

    // A shard missing from the cache is named, with the command that fetches it.
    std::fs::remove_file(
        snapshot(&cache, "test-org/tiny-dream").join("model-00002-of-00002.safetensors"),
    )
    .unwrap();
    let partial = dlm_tui(&url, &cache, true, &args);
    assert!(!partial.status.success());
    let err = stderr(&partial);
    assert!(
        err.contains("model-00002-of-00002.safetensors")
            && err.contains("HF_HUB_OFFLINE")
            && err.contains("dlm-tui download test-org/tiny-dream"),
        "{err}"
    );
    // No network at all (nothing listens there now) fails the same clear way.
    let unreachable = dlm_tui(&url, &cache, false, &args);
    assert!(!unreachable.status.success());
    let err = stderr(&unreachable);
    assert!(
        err.contains("model-00002-of-00002.safetensors")
            && err.contains("dlm-tui download test-org/tiny-dream"),
        "{err}"
    );
    std::fs::remove_dir_all(&cache).unwrap();
}

#[test]
fn offline_with_an_empty_cache_names_the_files_and_the_command() {
    let hub = FakeHub::start(vec![("test-org/tiny-dream", dream_repo())]);
    let cache = temp_dir("offline");
    let out = dlm_tui(
        &hub.url,
        &cache,
        true,
        &generate_args("test-org/tiny-dream@main"),
    );
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("config.json")
            && err.contains("unset HF_HUB_OFFLINE")
            && err.contains("dlm-tui download test-org/tiny-dream@main"),
        "{err}"
    );
    assert!(
        hub.log().is_empty(),
        "offline made requests: {:?}",
        hub.log()
    );
    std::fs::remove_dir_all(&cache).unwrap();
}

#[test]
fn progress_events_cover_every_byte_once() {
    let hub = FakeHub::start(vec![("test-org/tiny-dream", dream_repo())]);
    let cache = temp_dir("progress");
    let events: Arc<Mutex<Vec<DownloadProgress>>> = Arc::default();
    let sink_events = events.clone();
    let spec = RepoSpec::parse("test-org/tiny-dream").unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let fetched = runtime
        .block_on(async {
            Hub::new(&hub.url, cache.clone(), false)
                .unwrap()
                .fetch(
                    &spec,
                    Arc::new(move |p: &DownloadProgress| {
                        sink_events.lock().unwrap().push(p.clone())
                    }),
                )
                .await
        })
        .unwrap();
    assert_eq!(fetched.origin, Origin::Network);
    let events = events.lock().unwrap().clone();
    let wanted: u64 = dream_repo()
        .files
        .iter()
        .filter(|(name, _)| {
            !name.contains('/')
                && !name.ends_with(".py")
                && !name.ends_with(".bin")
                && name.as_str() != "config.json"
        })
        .map(|(_, b)| b.len() as u64)
        .sum();
    let last = events.last().expect("progress events");
    assert_eq!(
        last.total_bytes, wanted,
        "config.json came first, separately"
    );
    assert_eq!(last.done_bytes, last.total_bytes);
    assert!(events.len() > 3, "{events:?}");
    assert!(
        events
            .windows(2)
            .all(|w| w[0].done_bytes <= w[1].done_bytes),
        "progress went backwards: {events:?}"
    );
    // Fetching again is answered by the cache.
    let again = runtime
        .block_on(async {
            Hub::new(&hub.url, cache.clone(), false)
                .unwrap()
                .fetch(&spec, Arc::new(|_: &DownloadProgress| {}))
                .await
        })
        .unwrap();
    assert_eq!(again.origin, Origin::Cache);
    assert_eq!(again.dir, fetched.dir);
    std::fs::remove_dir_all(&cache).unwrap();
}

#[test]
fn missing_files_unknown_models_and_revisions_get_clear_errors() {
    let mut no_tokenizer = folder("llada-tiny-tied");
    no_tokenizer.remove("tokenizer.json");
    let mut files = BTreeMap::new();
    files.insert(
        "config.json".to_string(),
        br#"{"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]}"#.to_vec(),
    );
    files.insert("model.safetensors".to_string(), vec![0u8; 1 << 16]);
    let hub = FakeHub::start(vec![
        (
            "test-org/no-tokenizer",
            Repo {
                files: no_tokenizer,
                token: None,
            },
        ),
        ("test-org/gpt2", Repo { files, token: None }),
    ]);
    let cache = temp_dir("errors");

    let out = dlm_tui(
        &hub.url,
        &cache,
        false,
        &generate_args("test-org/no-tokenizer"),
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("has no tokenizer.json"),
        "{}",
        stderr(&out)
    );

    hub.clear_log();
    let out = dlm_tui(&hub.url, &cache, false, &generate_args("test-org/gpt2"));
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("unsupported") && err.contains("llada") && err.contains("dream"),
        "{err}"
    );
    assert_eq!(
        gets_of(&hub.log(), "model.safetensors"),
        0,
        "weights of an unsupported model were fetched"
    );

    let out = dlm_tui(
        &hub.url,
        &cache,
        false,
        &generate_args("test-org/nothing-here"),
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("test-org/nothing-here is not a model") && err.contains("HF_TOKEN"),
        "{err}"
    );

    let out = dlm_tui(
        &hub.url,
        &cache,
        false,
        &generate_args("test-org/gpt2@no-such-branch"),
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("no revision \"no-such-branch\""),
        "{}",
        stderr(&out)
    );

    let out = dlm_tui(&hub.url, &cache, false, &generate_args("not-an-id"));
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("ORG/NAME"), "{}", stderr(&out));
    std::fs::remove_dir_all(&cache).unwrap();
}

#[test]
fn a_cut_off_transfer_is_retried_and_a_lasting_one_resumes_on_the_next_run() {
    let hub = FakeHub::start(vec![("test-org/tiny-dream", dream_repo())]);
    let shard = "model-00002-of-00002.safetensors";

    // Cut once: the same run tries again and succeeds.
    let cache = temp_dir("cut-once");
    hub.cut(shard, 1);
    let out = dlm_tui(
        &hub.url,
        &cache,
        false,
        &["download", "test-org/tiny-dream"],
    );
    assert!(out.status.success(), "stderr: {}", stderr(&out));
    // The second request continues where the cut-off one stopped.
    let half = std::fs::read(common::fixtures().join("dream-tiny-gqa").join(shard))
        .unwrap()
        .len()
        / 2;
    assert_eq!(get_offsets(&hub.log(), shard), [0, half], "{:?}", hub.log());
    let snap = snapshot(&cache, "test-org/tiny-dream");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        snap.to_string_lossy()
    );
    assert_eq!(
        std::fs::read(snap.join(shard)).unwrap(),
        std::fs::read(common::fixtures().join("dream-tiny-gqa").join(shard)).unwrap()
    );
    std::fs::remove_dir_all(&cache).unwrap();

    // Cut every time: a clear error, no truncated file in the snapshot, and the next run
    // fetches only what is missing.
    let cache = temp_dir("cut-always");
    hub.clear_log();
    hub.cut(shard, usize::MAX);
    let out = dlm_tui(
        &hub.url,
        &cache,
        false,
        &generate_args("test-org/tiny-dream"),
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("run the same command again"), "{err}");
    assert!(!snapshot(&cache, "test-org/tiny-dream").join(shard).exists());
    // Shards download concurrently: the other one may have finished before the failure.
    let other = "model-00001-of-00002.safetensors";
    let other_finished = snapshot(&cache, "test-org/tiny-dream")
        .join(other)
        .is_file();
    hub.cut(shard, 0);
    hub.clear_log();
    let out = dlm_tui(
        &hub.url,
        &cache,
        false,
        &generate_args("test-org/tiny-dream"),
    );
    assert!(out.status.success(), "stderr: {}", stderr(&out));
    let log = hub.log();
    assert_eq!(gets_of(&log, shard), 1, "{log:?}");
    assert_eq!(
        gets_of(&log, other),
        usize::from(!other_finished),
        "finished: {other_finished}; {log:?}"
    );
    assert_eq!(
        gets_of(&log, "config.json"),
        0,
        "config.json was fetched again: {log:?}"
    );
    std::fs::remove_dir_all(&cache).unwrap();
}

#[test]
fn gated_repositories_need_hf_token() {
    let mut repo = dream_repo();
    repo.token = Some("hf_test_secret".into());
    let hub = FakeHub::start(vec![("test-org/gated", repo)]);
    let cache = temp_dir("gated");
    let args = generate_args("test-org/gated");

    let out = dlm_tui(&hub.url, &cache, false, &args);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("gated or private") && err.contains("set HF_TOKEN"),
        "{err}"
    );

    let mut command = Command::new(env!("CARGO_BIN_EXE_dlm-tui"));
    let out = command
        .args(&args)
        .env("HF_ENDPOINT", &hub.url)
        .env("HF_HUB_CACHE", &cache)
        .env("HF_HOME", cache.join("home"))
        .env("HF_TOKEN", "hf_test_secret")
        .env_remove("HF_HUB_OFFLINE")
        .output()
        .unwrap();
    assert!(out.status.success(), "stderr: {}", stderr(&out));
    std::fs::remove_dir_all(&cache).unwrap();
}

/// `dlm-tui ARGS` in a tmux pane against the fake hub, over the cache (and HOME) `cache`.
fn hub_pane(tag: &str, hub: &FakeHub, cache: &Path, args: &str) -> Pane {
    let command = format!(
        "HF_ENDPOINT={} HF_HUB_CACHE={} HF_HOME={} HOME={} XDG_CONFIG_HOME= XDG_DATA_HOME= {} \
         {args}; echo EXITED $?; sleep 30",
        hub.url,
        cache.display(),
        cache.join("home").display(),
        cache.display(),
        env!("CARGO_BIN_EXE_dlm-tui"),
    );
    Pane::start(&format!("hub-{tag}"), &command)
}

/// The playground fetches the hub model its config.toml names (`[model] repo`) under its download
/// panel, then opens on it: the real binary in tmux, against a fake hub that sends slowly enough
/// to watch.
#[test]
fn the_playground_shows_a_download_panel_then_opens_the_model() {
    let hub = FakeHub::start(vec![("test-org/tiny-dream", dream_repo())]);
    hub.state.lock().unwrap().slow = true;
    let cache = temp_dir("panel");
    let config = cache.join(".config/dlm-tui");
    std::fs::create_dir_all(&config).unwrap();
    std::fs::write(
        config.join("config.toml"),
        "[model]\nrepo = \"test-org/tiny-dream\"\n",
    )
    .unwrap();
    let pane = hub_pane("panel", &hub, &cache, "--no-session");
    let panel = pane.wait_for("Downloading test-org/tiny-dream");
    assert!(
        panel.contains(&hub.url) && panel.contains("Esc cancel"),
        "{panel}"
    );
    pane.wait_for("MiB/s");
    // Then the playground opens on the downloaded model, named by its hub id.
    let app = pane.wait_for("test-org/tiny-dream (");
    assert!(app.contains("Editor"), "{app}");
    pane.keys(&["C-q"]);
    let done = pane.wait_for("EXITED");
    assert!(done.contains("EXITED 0"), "{done}");
    drop(pane);
    std::fs::remove_dir_all(&cache).unwrap();
}

/// The model picker's hub id field (F10, type ORG/NAME, Enter) downloads the model under the
/// download panel and switches to it, keeping the editor's text; Esc cancels a download and the
/// model in use stays; a bad id is refused with the form it needs.
#[test]
fn the_picker_downloads_a_hub_id_and_switches_to_it() {
    let hub = FakeHub::start(vec![
        ("test-org/tiny-dream", dream_repo()),
        ("test-org/slow-dream", dream_repo()),
    ]);
    let cache = temp_dir("picker");
    let pane = hub_pane("picker", &hub, &cache, "--no-session");
    pane.wait_for("Editor");
    pane.type_text("Kept text.");
    pane.keys(&["F10"]);
    pane.wait_for("hub id");
    pane.type_text("not-an-id");
    pane.keys(&["Enter"]);
    pane.wait_for("is not a hub model id");
    // F10 closes the picker (the text typed goes with it) and opens it anew.
    pane.keys(&["F10"]);
    // A slow download, cancelled: the embedded model stays.
    hub.state.lock().unwrap().slow = true;
    pane.keys(&["F10"]);
    pane.type_text("test-org/slow-dream");
    pane.keys(&["Enter"]);
    pane.wait_for("Downloading test-org/slow-dream");
    pane.keys(&["Escape"]);
    pane.wait_for("slow-dream cancelled; the files finished so far stay in the cache");
    // The next key clears the message: the model in use is still the embedded one.
    pane.keys(&["Tab"]);
    pane.wait_for("dlm-tui default (");
    // A download that finishes: the app switches and the text stays.
    hub.state.lock().unwrap().slow = false;
    pane.keys(&["F10"]);
    pane.type_text("test-org/tiny-dream");
    pane.keys(&["Enter"]);
    let switched = pane.wait_for("switched to test-org/tiny-dream");
    assert!(switched.contains("Kept text."), "{switched}");
    assert!(
        snapshot(&cache, "test-org/tiny-dream")
            .join("config.json")
            .is_file(),
        "the download is in the cache"
    );
    pane.keys(&["C-q"]);
    let done = pane.wait_for("EXITED");
    assert!(done.contains("EXITED 0"), "{done}");
    drop(pane);
    std::fs::remove_dir_all(&cache).unwrap();
}

#[test]
fn a_commit_revision_is_fetched_and_then_served_offline() {
    let hub = FakeHub::start(vec![("test-org/tiny-dream", dream_repo())]);
    let cache = temp_dir("commit");
    let model = format!("test-org/tiny-dream@{SHA}");
    let out = dlm_tui(&hub.url, &cache, false, &["download", &model]);
    assert!(out.status.success(), "stderr: {}", stderr(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        snapshot(&cache, "test-org/tiny-dream").to_string_lossy()
    );
    // A commit needs no revision lookup.
    assert!(
        !hub.log().iter().any(|l| l.contains("/revision/")),
        "{:?}",
        hub.log()
    );
    hub.clear_log();
    let out = dlm_tui(&hub.url, &cache, true, &generate_args(&model));
    assert!(out.status.success(), "stderr: {}", stderr(&out));
    // bench takes --model too, and names the model by its hub id.
    let out = dlm_tui(
        &hub.url,
        &cache,
        true,
        &[
            "bench",
            "--forward-only",
            "--model",
            &model,
            "--length",
            "8",
            "--runs",
            "1",
            "--warmup",
            "0",
            "--json",
        ],
    );
    assert!(out.status.success(), "stderr: {}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["model"], model.as_str());
    assert!(hub.log().is_empty());
    std::fs::remove_dir_all(&cache).unwrap();
}

/// Everything below `root` whose name contains "escape": what a path traversal would create.
fn escaped(root: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().contains("escape"))
            {
                found.push(path.clone());
            }
            if path.is_dir() && !path.is_symlink() {
                stack.push(path);
            }
        }
    }
    found
}

/// A cache four folders deep, so `../../../..` from inside it lands in the test's own folder.
fn deep_cache(tag: &str) -> (PathBuf, PathBuf) {
    let root = temp_dir(tag);
    let cache = root.join("a/b/c/cache");
    std::fs::create_dir_all(&cache).unwrap();
    (root, cache)
}

/// ETag and X-Repo-Commit headers that climb out of the cache are never used as paths: blobs are
/// named by the listing's checked object ids, and the download still works.
#[test]
fn hostile_etag_and_commit_headers_write_nothing_outside_the_cache() {
    let hub = FakeHub::start(vec![("test-org/tiny-dream", dream_repo())]);
    hub.state.lock().unwrap().headers_override =
        Some("../../../../escape/.ssh/authorized_keys".into());
    let (root, cache) = deep_cache("evil-etag");
    let out = dlm_tui(
        &hub.url,
        &cache,
        false,
        &generate_args("test-org/tiny-dream"),
    );
    assert!(out.status.success(), "stderr: {}", stderr(&out));
    assert_eq!(escaped(&root), Vec::<PathBuf>::new());
    std::fs::remove_dir_all(&root).unwrap();
}

/// A commit id or an object id that is not hex is refused before any folder is made from it, and
/// no ref is written.
#[test]
fn hostile_commit_ids_and_object_ids_are_refused() {
    let hub = FakeHub::start(vec![("test-org/tiny-dream", dream_repo())]);
    hub.state.lock().unwrap().sha_override = Some("../../../../escape-sha".into());
    let (root, cache) = deep_cache("evil-sha");
    let out = dlm_tui(
        &hub.url,
        &cache,
        false,
        &generate_args("test-org/tiny-dream"),
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("not 40 hex digits"),
        "{}",
        stderr(&out)
    );
    assert_eq!(escaped(&root), Vec::<PathBuf>::new());
    assert!(!cache
        .join("models--test-org--tiny-dream/refs/main")
        .exists());

    let mut state = hub.state.lock().unwrap();
    state.sha_override = None;
    state
        .oid_override
        .insert("tokenizer.json".into(), "../../../../escape-oid".into());
    drop(state);
    let out = dlm_tui(
        &hub.url,
        &cache,
        false,
        &generate_args("test-org/tiny-dream"),
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("not a git id"), "{}", stderr(&out));
    assert_eq!(escaped(&root), Vec::<PathBuf>::new());
    std::fs::remove_dir_all(&root).unwrap();
}

/// `@REV` is checked like a git ref name before it becomes `refs/REV`: no request, exit 2.
#[test]
fn revisions_that_climb_out_of_refs_are_refused() {
    let hub = FakeHub::start(vec![("test-org/tiny-dream", dream_repo())]);
    let (root, cache) = deep_cache("evil-rev");
    for rev in [
        "../../../../escape",
        "/tmp/escape",
        "main/../../escape",
        ".escape",
    ] {
        let model = format!("test-org/tiny-dream@{rev}");
        let out = dlm_tui(&hub.url, &cache, false, &generate_args(&model));
        assert_eq!(out.status.code(), Some(2), "{rev}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("not a valid revision"),
            "{}",
            stderr(&out)
        );
    }
    assert!(hub.log().is_empty(), "{:?}", hub.log());
    assert_eq!(escaped(&root), Vec::<PathBuf>::new());
    std::fs::remove_dir_all(&root).unwrap();
}

/// A body shorter than the file (sent as if complete) or with wrong bytes never becomes a blob:
/// the short one stays as a partial to resume, the wrong one is deleted, and both say why.
#[test]
fn short_and_corrupt_downloads_are_never_stored_as_complete() {
    let shard = "model-00002-of-00002.safetensors";
    let hub = FakeHub::start(vec![("test-org/tiny-dream", dream_repo())]);
    hub.state.lock().unwrap().short.push(shard.into());
    let cache = temp_dir("short");
    let out = dlm_tui(
        &hub.url,
        &cache,
        false,
        &["download", "test-org/tiny-dream"],
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("ended after") && err.contains(shard), "{err}");
    assert!(!snapshot(&cache, "test-org/tiny-dream").join(shard).exists());
    // The next run (the server now honest) asks only for the rest.
    let bytes = std::fs::read(common::fixtures().join("dream-tiny-gqa").join(shard)).unwrap();
    let partial = cache
        .join("models--test-org--tiny-dream/blobs")
        .join(format!("{}.incomplete", sha256(&bytes)));
    let kept = std::fs::metadata(&partial).unwrap().len() as usize;
    assert!(kept >= bytes.len() / 2 && kept < bytes.len(), "{kept}");
    hub.state.lock().unwrap().short.clear();
    hub.clear_log();
    let out = dlm_tui(
        &hub.url,
        &cache,
        false,
        &["download", "test-org/tiny-dream"],
    );
    assert!(out.status.success(), "stderr: {}", stderr(&out));
    assert_eq!(get_offsets(&hub.log(), shard), [kept], "{:?}", hub.log());
    assert_eq!(
        std::fs::read(snapshot(&cache, "test-org/tiny-dream").join(shard)).unwrap(),
        bytes
    );
    std::fs::remove_dir_all(&cache).unwrap();

    let cache = temp_dir("corrupt");
    hub.state.lock().unwrap().corrupt.push(shard.into());
    let out = dlm_tui(
        &hub.url,
        &cache,
        false,
        &["download", "test-org/tiny-dream"],
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("does not match the checksum") && err.contains("deleted"),
        "{err}"
    );
    assert!(!snapshot(&cache, "test-org/tiny-dream").join(shard).exists());
    let blobs = cache.join("models--test-org--tiny-dream/blobs");
    assert!(
        !std::fs::read_dir(&blobs).unwrap().flatten().any(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.starts_with(&sha256(&bytes))
        }),
        "the bad bytes were kept"
    );
    std::fs::remove_dir_all(&cache).unwrap();
}

/// A server that never answers, one that stalls mid-file and a listing that pages forever all end
/// with a clear error within the timeout (`HF_HUB_DOWNLOAD_TIMEOUT`), not a hang.
#[test]
fn silent_stalling_and_endless_servers_time_out() {
    let run = |hub: &FakeHub, tag: &str| {
        let cache = temp_dir(tag);
        let started = std::time::Instant::now();
        let out = Command::new(env!("CARGO_BIN_EXE_dlm-tui"))
            .args(["download", "test-org/tiny-dream"])
            .env("HF_ENDPOINT", &hub.url)
            .env("HF_HUB_CACHE", &cache)
            .env("HF_HOME", cache.join("home"))
            .env("HF_HUB_DOWNLOAD_TIMEOUT", "1")
            .env_remove("HF_TOKEN")
            .env_remove("HF_HUB_OFFLINE")
            .output()
            .unwrap();
        let took = started.elapsed();
        std::fs::remove_dir_all(&cache).unwrap();
        assert!(!out.status.success(), "{tag}");
        assert!(
            took < std::time::Duration::from_secs(25),
            "{tag} took {took:?}"
        );
        stderr(&out)
    };
    let hub = FakeHub::start(vec![("test-org/tiny-dream", dream_repo())]);
    hub.state.lock().unwrap().silent = true;
    let err = run(&hub, "silent");
    assert!(err.contains(&hub.url), "{err}");
    drop(hub);

    let hub = FakeHub::start(vec![("test-org/tiny-dream", dream_repo())]);
    hub.state
        .lock()
        .unwrap()
        .stall
        .push("model-00001-of-00002.safetensors".into());
    let err = run(&hub, "stall");
    assert!(
        err.contains("model-00001-of-00002.safetensors")
            && err.contains("run the same command again"),
        "{err}"
    );
    drop(hub);

    let hub = FakeHub::start(vec![("test-org/tiny-dream", dream_repo())]);
    hub.state.lock().unwrap().endless = true;
    let err = run(&hub, "endless");
    assert!(
        err.contains("listing its files") || err.contains("ran past 100 pages"),
        "{err}"
    );
}

/// GGUF repositories hold several quantizations and nothing else: --gguf-file fetches the one
/// named (no config.json needed, the other .gguf files stay on the hub), runs it, and then runs
/// it offline from the cache; a name the repository lacks is answered with the names it has.
#[test]
fn a_gguf_file_is_fetched_alone_and_run() {
    let mut files = BTreeMap::new();
    for (name, fixture) in [
        ("tiny-dream-Q8_0.gguf", "gguf/dream-tiny-gqa-q8_0.gguf"),
        ("tiny-dream-F32.gguf", "gguf/dream-tiny-gqa-f32.gguf"),
    ] {
        files.insert(
            name.to_string(),
            std::fs::read(common::fixtures().join(fixture)).unwrap(),
        );
    }
    files.insert("README.md".into(), b"# tiny dream GGUF".to_vec());
    let hub = FakeHub::start(vec![(
        "test-org/tiny-dream-GGUF",
        Repo { files, token: None },
    )]);
    let cache = temp_dir("gguf");
    let mut args = generate_args("test-org/tiny-dream-GGUF");
    args.extend(["--gguf-file", "tiny-dream-Q8_0.gguf"]);
    let first = dlm_tui(&hub.url, &cache, false, &args);
    assert!(first.status.success(), "stderr: {}", stderr(&first));
    let log = hub.log();
    assert_eq!(gets_of(&log, "tiny-dream-Q8_0.gguf"), 1, "{log:?}");
    assert_eq!(gets_of(&log, "tiny-dream-F32.gguf"), 0, "{log:?}");
    assert_eq!(gets_of(&log, "README.md"), 0, "{log:?}");
    assert!(snapshot(&cache, "test-org/tiny-dream-GGUF")
        .join("tiny-dream-Q8_0.gguf")
        .is_file());

    hub.clear_log();
    let again = dlm_tui(&hub.url, &cache, true, &args);
    assert!(again.status.success(), "stderr: {}", stderr(&again));
    assert_eq!(stdout_of(&first), stdout_of(&again));
    assert!(hub.log().is_empty(), "{:?}", hub.log());

    let mut wrong = generate_args("test-org/tiny-dream-GGUF");
    wrong.extend(["--gguf-file", "tiny-dream-Q4_K_M.gguf"]);
    let out = dlm_tui(&hub.url, &cache, false, &wrong);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("tiny-dream-Q4_K_M.gguf")
            && err.contains("tiny-dream-F32.gguf, tiny-dream-Q8_0.gguf"),
        "{err}"
    );
    let mut climb = generate_args("test-org/tiny-dream-GGUF");
    climb.extend(["--gguf-file", "../../x.gguf"]);
    let out = dlm_tui(&hub.url, &cache, false, &climb);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--gguf-file"), "{}", stderr(&out));
    let _ = std::fs::remove_dir_all(&cache);
}

fn stdout_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}
