//! `generate --remote`, against a fake server on 127.0.0.1 that speaks the OpenAI chat API with
//! server-sent events: Mercury's `diffusing` frames (each the whole text), an OpenAI-compatible
//! server's appended deltas, the error envelope (a rejected key, which the output must never
//! show), rate limiting answered by retries, and a missing key.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

#[derive(Default)]
struct State {
    /// Answer this many chat requests with 429 first.
    rate_limited: usize,
    /// Every request line and its body.
    log: Vec<(String, String)>,
    /// The Authorization header of every request ("" when none).
    auths: Vec<String>,
    /// Close the stream after this many frames, with no final chunk and no [DONE].
    cut_after: Option<usize>,
    /// Wait this long after each diffusing frame (a slow stream).
    frame_gap_ms: u64,
    /// Answer every chat request with this status and the error envelope.
    fail_with: Option<(u16, &'static str)>,
}

struct FakeServer {
    url: String,
    state: Arc<Mutex<State>>,
}

impl FakeServer {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let state = shared.clone();
                std::thread::spawn(move || serve(stream, &state));
            }
        });
        Self { url, state }
    }
}

fn respond(stream: &mut TcpStream, status: &str, extra: &str, body: &str) {
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\n{extra}Content-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
}

fn event(stream: &mut TcpStream, value: &Value) {
    let _ = write!(stream, "data: {value}\n\n");
    let _ = stream.flush();
    std::thread::sleep(std::time::Duration::from_millis(20));
}

fn serve(mut stream: TcpStream, state: &Mutex<State>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let request_line = line.trim().to_string();
    let (mut length, mut auth) = (0, String::new());
    loop {
        line.clear();
        reader.read_line(&mut line).unwrap();
        if line.trim().is_empty() {
            break;
        }
        let (name, value) = line.split_once(':').unwrap();
        match name.to_ascii_lowercase().as_str() {
            "content-length" => length = value.trim().parse().unwrap(),
            "authorization" => auth = value.trim().to_string(),
            _ => {}
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
    let body = String::from_utf8(body).unwrap();
    state
        .lock()
        .unwrap()
        .log
        .push((request_line.clone(), body.clone()));
    state.lock().unwrap().auths.push(auth.clone());
    if !auth.is_empty() && auth != "Bearer test-key" {
        // Servers do echo keys back; the client must not pass them on.
        let key = auth.trim_start_matches("Bearer ");
        let envelope = json!({"error": {"message": format!("Incorrect API key provided: {key}"),
            "type": "invalid_request_error", "param": null, "code": "invalid_api_key"}});
        return respond(&mut stream, "401 Unauthorized", "", &envelope.to_string());
    }
    if request_line.starts_with("GET /v1/models") {
        let models = json!({"data": [{"id": "mercury-2"}, {"id": "mercury-coder"}]});
        return respond(&mut stream, "200 OK", "", &models.to_string());
    }
    if request_line.starts_with("POST /v1/fim/completions") {
        // Fill-in-the-middle: completion chunks whose text is appended.
        let _ = write!(
            stream,
            "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"
        );
        for text in ["Hel", "lo", " there"] {
            event(
                &mut stream,
                &json!({"choices": [{"index": 0, "text": text, "finish_reason": null}]}),
            );
        }
        event(
            &mut stream,
            &json!({"choices": [{"index": 0, "text": "", "finish_reason": "stop"}]}),
        );
        let _ = write!(stream, "data: [DONE]\n\n");
        return;
    }
    assert!(
        request_line.starts_with("POST /v1/chat/completions"),
        "{request_line}"
    );
    if let Some((status, reason)) = state.lock().unwrap().fail_with {
        let envelope = json!({"error": {"message": format!("{reason} (test)"),
            "type": "invalid_request_error", "param": null, "code": status}});
        return respond(
            &mut stream,
            &format!("{status} {reason}"),
            "Retry-After: 0\r\n",
            &envelope.to_string(),
        );
    }
    {
        let mut s = state.lock().unwrap();
        if s.rate_limited > 0 {
            s.rate_limited -= 1;
            let envelope = json!({"error": {"message": "Rate limit reached", "type": "rate_limit",
                "param": null, "code": "rate_limit_exceeded"}});
            drop(s);
            return respond(
                &mut stream,
                "429 Too Many Requests",
                "Retry-After: 0\r\n",
                &envelope.to_string(),
            );
        }
    }
    let request: Value = serde_json::from_str(&body).unwrap();
    let _ = write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"
    );
    let chunk = |content: &str, diffusing: bool| {
        let mut c = json!({"id": "c1", "object": "chat.completion.chunk", "model": request["model"],
            "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": null}]});
        if diffusing {
            c["diffusion_meta"] = json!({"diffusion_content": true, "diffusion_progress": 0.5});
        }
        c
    };
    let (cut_after, gap) = {
        let s = state.lock().unwrap();
        (s.cut_after, s.frame_gap_ms)
    };
    if request["diffusing"] == json!(true) {
        for (i, text) in ["Hxq#o wz!ld", "Hello wqrld", "Hello world!"]
            .into_iter()
            .enumerate()
        {
            if cut_after == Some(i) {
                return;
            }
            event(&mut stream, &chunk(text, true));
            std::thread::sleep(std::time::Duration::from_millis(gap));
        }
    } else {
        for text in ["Hel", "lo", " world"] {
            event(&mut stream, &chunk(text, false));
        }
    }
    event(
        &mut stream,
        &json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5}}),
    );
    let _ = write!(stream, "data: [DONE]\n\n");
}

fn generate(server: &FakeServer, key: Option<&str>, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_dlm-tui"));
    command
        .arg("generate")
        .args(args)
        .env("INCEPTION_BASE_URL", format!("{}/v1", server.url))
        .env_remove("INCEPTION_API_KEY");
    if let Some(key) = key {
        command.env("INCEPTION_API_KEY", key);
    }
    command.output().unwrap()
}

fn lines(out: &Output) -> Vec<Value> {
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Mercury's diffusing frames: one step line each with the whole text, what changed and the
/// settled prefix; the done line has the frames, the time to the first one and tokens/s. The
/// model is the first the server lists, and the request asks for diffusing frames.
#[test]
fn mercury_frames_become_step_lines() {
    let server = FakeServer::start();
    let out = generate(
        &server,
        Some("test-key"),
        &[
            "--remote",
            "mercury",
            "--prompt",
            "Say hello",
            "--length",
            "16",
            "--temperature",
            "0.75",
            "--json",
        ],
    );
    let lines = lines(&out);
    assert_eq!(lines[0]["type"], "run");
    let steps: Vec<&Value> = lines.iter().filter(|l| l["type"] == "step").collect();
    assert_eq!(steps.len(), 3);
    assert_eq!(steps[0]["text"], "Hxq#o wz!ld");
    assert_eq!(steps[2]["text"], "Hello world!");
    // "Hello wqrld" after "Hxq#o wz!ld": "H" is shared, then all but "ld" changed.
    assert_eq!(steps[1]["settled"], 1);
    assert_eq!(steps[1]["changed"], json!([1, 9]));
    assert_eq!(steps[2]["settled"], 7);
    assert_eq!(steps[2]["changed"], json!([7, 12]));
    let done = lines.last().unwrap();
    assert_eq!(done["type"], "done");
    assert_eq!(done["text"], "Hello world!");
    assert_eq!(done["frames"], 3);
    assert_eq!(done["model"], "mercury-2");
    assert_eq!(done["completion_tokens"], 3);
    assert!(done["tokens_per_s"].as_f64().unwrap() > 0.0);
    assert!(done["first_frame_ms"].as_f64().unwrap() > 0.0);
    let log = server.state.lock().unwrap().log.clone();
    let (_, body) = log
        .iter()
        .find(|(line, _)| line.starts_with("POST"))
        .unwrap();
    let sent: Value = serde_json::from_str(body).unwrap();
    assert_eq!(sent["diffusing"], true);
    assert_eq!(sent["stream"], true);
    assert_eq!(sent["max_tokens"], 16);
    assert_eq!(sent["messages"][0]["content"], "Say hello");
}

/// An OpenAI-compatible server's deltas are appended; plain output is the final text.
#[test]
fn an_openai_compatible_server_streams_appended_text() {
    let server = FakeServer::start();
    let out = generate(
        &server,
        None,
        &[
            "--remote",
            &server.url,
            "--remote-model",
            "llada2-mini",
            "--prompt",
            "hi",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "Hello world");
    let log = server.state.lock().unwrap().log.clone();
    let sent: Value = serde_json::from_str(&log[0].1).unwrap();
    assert_eq!(sent["model"], "llada2-mini");
    assert!(sent.get("diffusing").is_none());
}

/// A rejected key says where to check it and never shows the key; a missing one says where to
/// get one; 429s are retried (the server's Retry-After) and then the run goes through.
#[test]
fn keys_errors_and_retries() {
    let server = FakeServer::start();
    let out = generate(
        &server,
        Some("sk-wrong-123"),
        &["--remote", "mercury", "--prompt", "x"],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("rejected the key") && err.contains("INCEPTION_API_KEY"),
        "{err}"
    );
    assert!(!err.contains("sk-wrong-123"), "the key leaked: {err}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("sk-wrong-123"));
    let out = generate(&server, None, &["--remote", "mercury", "--prompt", "x"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("INCEPTION_API_KEY") && err.contains("platform.inceptionlabs.ai"),
        "{err}"
    );
    server.state.lock().unwrap().rate_limited = 2;
    let out = generate(
        &server,
        Some("test-key"),
        &[
            "--remote",
            "mercury",
            "--remote-model",
            "mercury-2",
            "--prompt",
            "x",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "Hello world!");
    // Rate limited beyond the retries: a clear message.
    server.state.lock().unwrap().rate_limited = 10;
    let out = generate(
        &server,
        Some("test-key"),
        &[
            "--remote",
            "mercury",
            "--remote-model",
            "mercury-2",
            "--prompt",
            "x",
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("rate-limiting"),
        "{err}"
    );
    let out = generate(&server, None, &["--remote", "ftp://x", "--prompt", "x"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("mercury"), "{err}");
}

/// The playground's engine for a text-streaming server (`dlm-tui --remote mercury`): each frame
/// is a step whose canvas is the prompt and the frame's text in the display tokenizer's ids,
/// padded with masks; what changed is committed in that step; the last canvas reads the answer.
#[test]
fn frames_become_the_playgrounds_steps() {
    use dlm_tui::engine::{Engine, Event, Job};
    use std::sync::Arc;
    let server = FakeServer::start();
    let mut endpoint = mercury_endpoint(&server);
    endpoint.model = Some("mercury-2".into());
    let codec = dlm_tui::model::embedded::codec().unwrap();
    let config = dlm_tui::model::embedded::config().unwrap();
    let mask = config.mask_token_id.unwrap();
    let info = remote_info(&codec, mask);
    let mut canvas = codec.encode("Say hello", false).unwrap();
    let prompt_len = canvas.len();
    canvas.extend(std::iter::repeat_n(mask, 12));
    let engine = Engine::frames(
        info,
        endpoint,
        Arc::new(dlm_tui::model::embedded::codec().unwrap()),
    )
    .unwrap();
    let job = Job {
        canvas: canvas.clone(),
        lanes: vec![dlm_tui::sampler::SamplerParams::default()],
        inspect: false,
    };
    let mut handle = engine.submit(job.clone());
    let mut steps = Vec::new();
    let mut finished = false;
    let mut summary = None;
    while let Some(event) = handle.events.blocking_recv() {
        match event {
            Event::Step(step) => steps.push(step),
            Event::LaneDone(done) => summary = Some(done),
            Event::Finished { .. } => {
                finished = true;
                break;
            }
            Event::Failed(e) => panic!("{e}"),
            _ => {}
        }
    }
    assert!(finished);
    assert_eq!(steps.len(), 3);
    // The server's own token count reaches the lane's totals (the stats' tokens per second).
    assert_eq!(summary.unwrap().completion_tokens, Some(3));
    // The settled prefix (what two frames share from the start) is before the step's window:
    // nothing is settled in the first frame, "Hello w..." by the last.
    assert_eq!(steps[0].window.start, prompt_len);
    assert!(steps[2].window.start > prompt_len, "{:?}", steps[2].window);
    for step in &steps {
        assert_eq!(step.canvas.len(), canvas.len());
        assert_eq!(&step.canvas[..prompt_len], &canvas[..prompt_len]);
    }
    let last = &steps[2].canvas;
    let end = last.iter().position(|&t| t == mask).unwrap_or(last.len());
    assert_eq!(codec.decode(&last[prompt_len..end], true), "Hello world!");
    // The last frame changed only its end: few commits, all past the settled part.
    assert!(!steps[2].committed.is_empty());
    assert!(steps[2].committed.len() < steps[0].committed.len());
    // The request: the prompt as the user's message, the masks as the most tokens.
    let log = server.state.lock().unwrap().log.clone();
    let sent: Value = serde_json::from_str(&log.last().unwrap().1).unwrap();
    assert_eq!(sent["messages"][0]["content"], "Say hello");
    assert_eq!(sent["max_tokens"], 12);
    // Compare lanes are refused with the reason.
    let mut two = job;
    two.lanes.push(dlm_tui::sampler::SamplerParams::default());
    let mut handle = engine.submit(two);
    let mut failed = None;
    while let Some(event) = handle.events.blocking_recv() {
        if let Event::Failed(e) = event {
            failed = Some(e);
            break;
        }
    }
    assert!(failed.unwrap().contains("one answer at a time"));
}

/// A stream that stops without its final chunk and `[DONE]` is reported as cut off (the frames
/// that came are still printed), never taken for a whole answer.
#[test]
fn a_stream_cut_off_mid_way_says_so() {
    let server = FakeServer::start();
    server.state.lock().unwrap().cut_after = Some(2);
    let out = generate(
        &server,
        Some("test-key"),
        &["--remote", "mercury", "--prompt", "Say hello", "--json"],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cut off after 2 frame(s)") && stderr.contains("incomplete"),
        "{stderr}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.matches("\"type\":\"step\"").count(), 2, "{stdout}");
    assert!(!stdout.contains("\"type\":\"done\""), "{stdout}");
}

fn config_home(tag: &str, config: &str) -> std::path::PathBuf {
    let home = std::env::temp_dir().join(format!("dlm-tui-remote-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&home);
    std::fs::create_dir_all(home.join("dlm-tui")).unwrap();
    std::fs::write(home.join("dlm-tui/config.toml"), config).unwrap();
    home
}

fn generate_with_config(home: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dlm-tui"))
        .arg("generate")
        .args(args)
        .env("XDG_CONFIG_HOME", home)
        .env("HOME", home)
        .env_remove("INCEPTION_BASE_URL")
        .env_remove("INCEPTION_API_KEY")
        .output()
        .unwrap()
}

/// `[remote.NAME]` tables in config.toml name servers for `--remote NAME`, with the model and a
/// key file (refused while others may read it, and never shown); `[remote.mercury]` points
/// Mercury at a proxy.
#[cfg(unix)]
#[test]
fn config_tables_name_servers_and_key_files() {
    use std::os::unix::fs::PermissionsExt;
    let server = FakeServer::start();
    let key_dir = std::env::temp_dir().join(format!("dlm-tui-keys-{}", std::process::id()));
    std::fs::create_dir_all(&key_dir).unwrap();
    let key_file = key_dir.join("key");
    std::fs::write(&key_file, "test-key\n").unwrap();
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let config = format!(
        "[remote.gpu]\nurl = \"{url}/v1\"\nmodel = \"mercury-coder\"\nkey_file = \"{key}\"\n\n\
         [remote.mercury]\nurl = \"{url}/v1\"\nkey_file = \"{key}\"\n",
        url = server.url,
        key = key_file.display()
    );
    let home = config_home("tables", &config);
    let out = generate_with_config(&home, &["--remote", "gpu", "--prompt", "hi", "--json"]);
    let gpu = lines(&out);
    let done = gpu.last().unwrap();
    assert_eq!(done["model"], "mercury-coder");
    assert_eq!(done["text"], "Hello world");
    let out = generate_with_config(&home, &["--remote", "mercury", "--prompt", "hi", "--json"]);
    assert_eq!(lines(&out).last().unwrap()["text"], "Hello world!");
    let auths = server.state.lock().unwrap().auths.clone();
    assert!(
        !auths.is_empty() && auths.iter().all(|a| a == "Bearer test-key"),
        "{auths:?}"
    );

    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = generate_with_config(&home, &["--remote", "gpu", "--prompt", "hi"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("chmod 600") && stderr.contains("[remote.gpu]"),
        "{stderr}"
    );
    assert!(!stderr.contains("test-key"), "{stderr}");

    let home = config_home("nourl", "[remote.box]\nmodel = \"m\"\n");
    let out = generate_with_config(&home, &["--remote", "box", "--prompt", "hi"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("[remote.box]") && stderr.contains("no url"),
        "{stderr}"
    );
    let home = config_home("typo", "[remote.box]\nulr = \"http://x\"\n");
    let out = generate_with_config(&home, &["--remote", "box", "--prompt", "hi"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("config.toml") && stderr.contains("ulr"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&key_dir);
}

/// The events of one job on a frames engine: its steps, or the failure's message.
fn run_frames(
    engine: &dlm_tui::engine::Engine,
    job: dlm_tui::engine::Job,
) -> Result<Vec<dlm_tui::engine::StepEvent>, String> {
    use dlm_tui::engine::Event;
    let mut handle = engine.submit(job);
    let mut steps = Vec::new();
    while let Some(event) = handle.events.blocking_recv() {
        match event {
            Event::Step(step) => steps.push(step),
            Event::Finished { .. } => return Ok(steps),
            Event::Failed(e) => return Err(e),
            _ => {}
        }
    }
    Err("the engine stopped without finishing".into())
}

/// A masked span inside the text goes to Mercury's fill-in-the-middle endpoint with the text
/// before and after it (the model: the server's first whose id says "coder" or "edit"); the
/// frames fill the span and leave the text after it alone. Two spans, or a span inside the text
/// on a server without FIM, are refused with the reason.
#[test]
fn a_masked_span_inside_the_text_is_filled_in_the_middle() {
    use dlm_tui::engine::{Engine, Job};
    use std::sync::Arc;
    let server = FakeServer::start();
    let codec = dlm_tui::model::embedded::codec().unwrap();
    let config = dlm_tui::model::embedded::config().unwrap();
    let mask = config.mask_token_id.unwrap();
    let info = remote_info(&codec, mask);
    let engine_for = |remote: &str| {
        let endpoint = if remote == "mercury" {
            mercury_endpoint(&server)
        } else {
            dlm_tui::remote::Endpoint::from_flag(remote, None, None).unwrap()
        };
        Engine::frames(
            info.clone(),
            endpoint,
            Arc::new(dlm_tui::model::embedded::codec().unwrap()),
        )
        .unwrap()
    };
    let prefix = codec.encode("Once upon a time", false).unwrap();
    let suffix = codec.encode(" and the end.", false).unwrap();
    let mut canvas = prefix.clone();
    canvas.extend(std::iter::repeat_n(mask, 8));
    canvas.extend(&suffix);
    let job = |canvas: Vec<u32>| Job {
        canvas,
        lanes: vec![dlm_tui::sampler::SamplerParams::default()],
        inspect: false,
    };
    let steps = run_frames(&engine_for("mercury"), job(canvas.clone())).unwrap();
    assert_eq!(steps.len(), 3);
    for step in &steps {
        assert_eq!(step.canvas.len(), canvas.len());
        assert_eq!(&step.canvas[..prefix.len()], &prefix[..]);
        assert_eq!(&step.canvas[prefix.len() + 8..], &suffix[..]);
        // The window is the unsettled rest of the span (after the prefix two frames share).
        assert!(step.window.start >= prefix.len() && step.window.end == prefix.len() + 8);
        assert!(step.committed.iter().all(|c| step.window.contains(&c.pos)));
    }
    let last = &steps[2].canvas;
    let filled: Vec<u32> = last[prefix.len()..prefix.len() + 8]
        .iter()
        .copied()
        .filter(|&t| t != mask)
        .collect();
    assert_eq!(codec.decode(&filled, true), "Hello there");
    let log = server.state.lock().unwrap().log.clone();
    let (line, body) = log
        .iter()
        .rev()
        .find(|(l, _)| l.starts_with("POST"))
        .unwrap();
    assert!(line.starts_with("POST /v1/fim/completions"), "{line}");
    let sent: Value = serde_json::from_str(body).unwrap();
    assert_eq!(sent["prompt"], "Once upon a time");
    assert_eq!(sent["suffix"], " and the end.");
    assert_eq!(sent["max_tokens"], 8);
    assert_eq!(sent["model"], "mercury-coder");
    assert_eq!(sent["stream"], true);

    // The playground's `length` masks after the text stay masked while the span is filled.
    let mut then_masks = canvas.clone();
    then_masks.extend(std::iter::repeat_n(mask, 5));
    let steps = run_frames(&engine_for("mercury"), job(then_masks.clone())).unwrap();
    let last = &steps.last().unwrap().canvas;
    assert_eq!(&last[canvas.len()..], &then_masks[canvas.len()..]);
    assert_eq!(&last[prefix.len() + 8..canvas.len()], &suffix[..]);
    let mut two_spans = prefix.clone();
    two_spans.extend(std::iter::repeat_n(mask, 4));
    two_spans.extend(&suffix[..1]);
    two_spans.push(mask);
    two_spans.extend(&suffix);
    let err = run_frames(&engine_for("mercury"), job(two_spans)).unwrap_err();
    assert!(err.contains("one masked span at a time"), "{err}");
    let err = run_frames(&engine_for(&format!("{}/v1", server.url)), job(canvas)).unwrap_err();
    assert!(
        err.contains("fill-in-the-middle") && err.contains("at the end"),
        "{err}"
    );
}

/// Mercury's endpoint on the fake server, built directly: tests in this binary run in parallel,
/// so none may point the process-wide INCEPTION_BASE_URL at its own server.
fn mercury_endpoint(server: &FakeServer) -> dlm_tui::remote::Endpoint {
    dlm_tui::remote::Endpoint {
        kind: dlm_tui::remote::Kind::Mercury,
        base_url: format!("{}/v1", server.url),
        model: None,
        key: Some(dlm_tui::remote::Secret::new("test-key".into())),
        key_source: "INCEPTION_API_KEY".into(),
        fim_model: None,
    }
}

/// What the playground knows of a text-streaming server's model: the embedded tokenizer's ids.
fn remote_info(codec: &dlm_tui::text::TextCodec, mask: u32) -> dlm_tui::model::ModelInfo {
    dlm_tui::model::ModelInfo::stand_in(
        "Mercury (remote)".into(),
        dlm_tui::model::Family::Remote,
        mask,
        codec.vocab_size(),
        4096,
    )
}

/// `--beside`: a job's last lane runs on the text-streaming server while the others run on the
/// local model, on the same canvas; the events come back as one job's, the remote lane's
/// renumbered, and the job finishes once both have. A one-lane job runs locally only.
#[test]
fn a_remote_lane_runs_beside_local_lanes() {
    use dlm_tui::engine::{Engine, Event, Job};
    use std::sync::Arc;
    let server = FakeServer::start();
    let loaded = dlm_tui::model::embedded::load(
        dlm_tui::model::loader::Precision::F32,
        &candle_core::Device::Cpu,
    )
    .unwrap();
    let info = loaded.model.info().clone();
    let codec = Arc::new(loaded.codec);
    let local = Engine::new(loaded.model).unwrap();
    let frames = Engine::frames(info.clone(), mercury_endpoint(&server), codec.clone()).unwrap();
    let engine = Engine::beside(local, frames).unwrap();
    let mut canvas = codec.encode("Once upon a time", false).unwrap();
    let prompt_len = canvas.len();
    canvas.extend(std::iter::repeat_n(info.mask_id, 16));
    let params = dlm_tui::sampler::SamplerParams {
        steps: 16,
        block_length: 16,
        ..Default::default()
    };
    let job = Job {
        canvas: canvas.clone(),
        lanes: vec![params.clone(), params.clone(), params.clone()],
        inspect: true,
    };
    let mut handle = engine.submit(job);
    let (mut steps, mut done, mut finished) = (vec![0usize; 3], vec![false; 3], false);
    while let Some(event) = handle.events.blocking_recv() {
        match event {
            Event::Step(step) => {
                assert_eq!(step.canvas.len(), canvas.len());
                assert_eq!(&step.canvas[..prompt_len], &canvas[..prompt_len]);
                if step.lane == 2 {
                    assert!(step.scored.is_empty(), "the server sends no scores");
                }
                steps[step.lane] += 1;
            }
            Event::LaneDone(summary) => done[summary.lane] = true,
            Event::Finished { .. } => {
                finished = true;
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(finished);
    assert_eq!(
        steps,
        [16, 16, 3],
        "two local lanes of 16 steps, three frames"
    );
    assert_eq!(done, [true, true, true]);
    let posts = |s: &FakeServer| {
        s.state
            .lock()
            .unwrap()
            .log
            .iter()
            .filter(|(l, _)| l.starts_with("POST"))
            .count()
    };
    assert_eq!(posts(&server), 1);

    // One lane: the local model alone, nothing asked of the server.
    let mut handle = engine.submit(Job {
        canvas,
        lanes: vec![params],
        inspect: false,
    });
    let mut lanes = std::collections::BTreeSet::new();
    while let Some(event) = handle.events.blocking_recv() {
        match event {
            Event::Step(step) => {
                lanes.insert(step.lane);
            }
            Event::Finished { .. } => break,
            Event::LaneDone(_) => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(lanes.into_iter().collect::<Vec<_>>(), [0]);
    assert_eq!(posts(&server), 1);
}

/// A slow stream: every frame is printed when it comes, not when the stream ends (their times
/// are the server's pace apart), and the time to the first frame is the first one's.
#[test]
fn a_slow_stream_shows_each_frame_as_it_comes() {
    let server = FakeServer::start();
    server.state.lock().unwrap().frame_gap_ms = 300;
    let out = generate(
        &server,
        Some("test-key"),
        &["--remote", "mercury", "--prompt", "Say hello", "--json"],
    );
    let lines = lines(&out);
    let times: Vec<f64> = lines
        .iter()
        .filter(|l| l["type"] == "step")
        .map(|l| l["elapsed_ms"].as_f64().unwrap())
        .collect();
    assert_eq!(times.len(), 3);
    for pair in times.windows(2) {
        assert!(pair[1] - pair[0] >= 250.0, "{times:?}");
    }
    let done = lines.last().unwrap();
    let first = done["first_frame_ms"].as_f64().unwrap();
    assert!((first - times[0]).abs() < 1.0, "{first} vs {times:?}");
    assert!(done["elapsed_ms"].as_f64().unwrap() >= times[2]);
}

/// Every documented error code gets its own message: 402 an inactive account, 404 an unknown
/// model (with the flag that picks another), 503 an overloaded server after its retries.
#[test]
fn each_error_code_says_what_it_means() {
    let server = FakeServer::start();
    for (status, reason, says) in [
        (402, "Payment Required", vec!["not active"]),
        (404, "Not Found", vec!["has no model", "--remote-model"]),
        (
            503,
            "Service Unavailable",
            vec!["overloaded", "try again later"],
        ),
    ] {
        server.state.lock().unwrap().fail_with = Some((status, reason));
        let out = generate(
            &server,
            Some("test-key"),
            &[
                "--remote",
                "mercury",
                "--remote-model",
                "mercury-9",
                "--prompt",
                "x",
            ],
        );
        assert!(!out.status.success(), "{status}");
        let err = String::from_utf8_lossy(&out.stderr);
        for s in says {
            assert!(err.contains(s), "{status}: {err}");
        }
        assert!(!err.contains("test-key"), "{err}");
    }
}
