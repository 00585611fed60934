//! `dlm-tui serve`: the engine behind HTTP, so a model on a GPU box can be used from elsewhere.
//!
//! - `GET /v1/models`: the model served.
//! - `POST /v1/chat/completions` and `POST /v1/completions`: the OpenAI shapes, streamed (server-
//!   sent events) or not. A stream sends the answer's settled text as it grows (the tokens before
//!   the first mask); with `"diffusing": true` every event holds the whole current answer, masks
//!   shown as `▒`, as Mercury's diffusing stream does.
//! - `POST /v1/dlm/steps`: the per-step stream, whose events are `generate --json`'s lines (the
//!   `run` header, a `step` line per step with positions, ids, text and scores, the `done` line).
//!
//! Serving rules: 127.0.0.1 unless `--host` says otherwise, and then a bearer token is required
//! (`--token-env`); requests are capped at 1 MiB and the canvas at the model's context; one job
//! runs at a time and at most `--max-queue` wait (more are refused with 503, saying how many
//! wait); a client that goes away cancels its job; a bad request gets a 4xx with the OpenAI error
//! envelope and the server goes on.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use clap::Args;
use futures_util::stream::{self, Stream};
use serde_json::{json, Value};

use super::generate::{answer, load_model};
use super::ModelArgs;
use crate::chat::{ChatTemplate, Message};
use crate::engine::trace::{step_line, Ending, LaneEnd, LaneRecipe, RunHeader};
use crate::engine::{Engine, Event, Job, JobHandle};
use crate::model::ModelInfo;
use crate::remote::Secret;
use crate::run::plan::{self, Lanes, Text};
use crate::run::Settings;
use crate::sampler::SamplerParams;
use crate::text::TextCodec;

/// The largest request body accepted.
const MAX_BODY: usize = 1 << 20;

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The address to listen on. Anything but a loopback address needs --token-env.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// The port (0: any free one; the address is printed on stderr).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// The environment variable holding the bearer token clients must send.
    #[arg(long, value_name = "VAR")]
    pub token_env: Option<String>,
    /// Jobs that may wait behind the running one before requests are refused (503).
    #[arg(long, default_value_t = 8)]
    pub max_queue: usize,
}

struct Served {
    engine: Engine,
    codec: TextCodec,
    info: ModelInfo,
    template: Option<ChatTemplate>,
    token: Option<Secret>,
    /// Jobs submitted and not yet finished (the running one included).
    jobs: AtomicUsize,
    max_queue: usize,
}

/// An error in the OpenAI envelope.
fn error(status: StatusCode, kind: &str, message: impl Into<String>) -> Response {
    Refusal {
        status,
        kind: kind.to_string(),
        message: message.into(),
    }
    .into_response()
}

/// A request refused, answered in the OpenAI error envelope.
struct Refusal {
    status: StatusCode,
    kind: String,
    message: String,
}

impl Refusal {
    /// A request that asks for something this server cannot do (400).
    fn bad_request(e: anyhow::Error) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            format!("{e:#}"),
        )
    }

    fn new(status: StatusCode, kind: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            kind: kind.to_string(),
            message: message.into(),
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let body = json!({"error": {"message": self.message, "type": self.kind, "param": null,
            "code": self.status.as_u16()}});
        (self.status, Json(body)).into_response()
    }
}

pub fn run(mut args: ServeArgs) -> Result<()> {
    let loopback = matches!(args.host.as_str(), "127.0.0.1" | "localhost" | "::1");
    let token = match &args.token_env {
        Some(var) => Some(Secret::new(
            std::env::var(var)
                .ok()
                .filter(|v| !v.trim().is_empty())
                .ok_or_else(|| super::usage(anyhow!("--token-env {var}: {var} is not set")))?,
        )),
        None if loopback => None,
        None => {
            return Err(super::usage(anyhow!(
                "--host {}: serving beyond this machine needs a bearer token: put one in an \
                 environment variable and name it with --token-env VAR",
                args.host
            )))
        }
    };
    args.model.fetch_hub_model()?;
    let loaded = load_model(&args.model).map_err(super::usage)?;
    let template = match &args.model.model_dir {
        Some(dir) => crate::model::loader::chat_template(dir)?,
        None => None,
    };
    let info = loaded.model.info().clone();
    let served = Arc::new(Served {
        engine: Engine::new(loaded.model)?,
        codec: loaded.codec,
        info,
        template,
        token,
        jobs: AtomicUsize::new(0),
        max_queue: args.max_queue,
    });
    let app = Router::new()
        .route("/v1/models", get(models))
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/completions", post(completions))
        .route("/v1/dlm/steps", post(steps))
        .route("/v1/dlm/model", get(model_facts))
        .route("/v1/dlm/jobs", post(jobs))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(served.clone());
    let runtime = crate::hub::runtime()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind((args.host.as_str(), args.port))
            .await
            .with_context(|| format!("listening on {}:{}", args.host, args.port))?;
        let address: SocketAddr = listener.local_addr()?;
        eprintln!(
            "dlm-tui: serving {} on http://{address}/v1 (Ctrl-C stops)",
            served.info.name
        );
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await
            .context("serving")
    })
}

/// `GET /v1/dlm/model`: what the playground needs to run on this server (`dlm-tui --remote`):
/// the model's facts and its tokenizer.
async fn model_facts(State(served): State<Arc<Served>>, headers: HeaderMap) -> Response {
    if let Err(denied) = authorised(&served, &headers) {
        return denied.into_response();
    }
    let info = &served.info;
    let tokenizer = match served.codec.tokenizer().to_string(false) {
        Ok(t) => t,
        Err(e) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                e.to_string(),
            )
        }
    };
    Json(json!({
        "info": {
            "name": info.name, "family": info.family.name(), "mask_id": info.mask_id,
            "logits_width": info.logits_width, "max_context": info.max_context,
            "shift_logits": info.shift_logits, "eos_ids": info.eos_ids, "eot_ids": info.eot_ids,
            "parameters": info.parameters, "weight_bytes": info.weight_bytes,
            "quantization": info.quantization.map(|q| q.name()),
        },
        "tokenizer": tokenizer,
    }))
    .into_response()
}

/// `POST /v1/dlm/jobs`: an engine job (canvas, lanes' parameters, inspect) run here, its events
/// streamed as the engine sends them: the playground's remote engine ([`Engine::remote`]).
async fn jobs(State(served): State<Arc<Served>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(denied) = authorised(&served, &headers) {
        return denied.into_response();
    }
    let job: Job = match serde_json::from_slice(&body) {
        Ok(job) => job,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                format!("not a job: {e}"),
            )
        }
    };
    if job.lanes.is_empty() || job.lanes.len() > 4 {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "a job has 1 to 4 lanes",
        );
    }
    let guard = match enqueue(&served) {
        Ok(guard) => guard,
        Err(e) => return e.into_response(),
    };
    let handle = served.engine.submit(job);
    let events = stream::unfold(Some((handle, guard)), |state| async move {
        let (mut handle, guard) = state?;
        let event = handle.events.recv().await?;
        let last = event.is_last();
        let data = serde_json::to_string(&event).unwrap_or_default();
        let next = (!last).then_some((handle, guard));
        Some((
            Ok::<_, std::convert::Infallible>(SseEvent::default().data(data)),
            next,
        ))
    });
    Sse::new(events).into_response()
}

/// `Ok` when the request carries the token (or none is needed).
fn authorised(served: &Served, headers: &HeaderMap) -> Result<(), Refusal> {
    let Some(token) = &served.token else {
        return Ok(());
    };
    let sent = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|v| Secret::new(v.trim().to_string()));
    if sent.as_ref() == Some(token) {
        Ok(())
    } else {
        Err(Refusal::new(
            StatusCode::UNAUTHORIZED,
            "invalid_api_key",
            "a bearer token is required (Authorization: Bearer ...)",
        ))
    }
}

async fn models(State(served): State<Arc<Served>>, headers: HeaderMap) -> Response {
    if let Err(denied) = authorised(&served, &headers) {
        return denied.into_response();
    }
    Json(
        json!({"object": "list", "data": [{"id": served.info.name, "object": "model",
        "owned_by": "dlm-tui"}]}),
    )
    .into_response()
}

/// What a request asks for, read from its JSON.
struct Asked {
    prompt: String,
    /// The prompt is a rendered chat template (it carries its own special tokens).
    templated: bool,
    /// The run settings: the playground's defaults with the request's length, temperature and
    /// seed, planned like every other front end's (crate::run::plan).
    settings: Settings,
    stream: bool,
    diffusing: bool,
}

fn parse(body: &Bytes) -> Result<Value, Refusal> {
    serde_json::from_slice(body).map_err(|e| {
        Refusal::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            format!("the body is not JSON: {e}"),
        )
    })
}

/// The sampler parameters: the playground's defaults with the request's temperature and seed.
fn asked(served: &Served, body: &Value, prompt: String, templated: bool) -> Result<Asked> {
    let defaults = Settings::default();
    let max_tokens = body["max_tokens"]
        .as_u64()
        .map_or(defaults.length, |n| n as usize);
    if max_tokens == 0 || max_tokens > served.info.max_context {
        bail!(
            "max_tokens must be 1 to {} (the model's context)",
            served.info.max_context
        );
    }
    let mut params = defaults.params;
    if let Some(t) = body["temperature"].as_f64() {
        params.temperature = t;
    }
    if let Some(seed) = body["seed"].as_u64() {
        params.seed = seed;
    }
    params.validate()?;
    // A block-diffusion model decodes in the blocks it was trained with.
    if let Some(blocks) = served.info.blocks {
        params.block_length = blocks.size;
    }
    let settings = Settings {
        params,
        length: max_tokens,
        ..defaults
    };
    Ok(Asked {
        prompt,
        templated,
        settings,
        stream: body["stream"].as_bool().unwrap_or(false),
        diffusing: body["diffusing"].as_bool().unwrap_or(false),
    })
}

/// A job submitted to the engine: its events, the canvas it started from, the prompt's length,
/// the lane's parameters as planned, and its place in the count.
struct Submitted {
    handle: JobHandle,
    canvas: Vec<u32>,
    prompt_len: usize,
    params: SamplerParams,
    guard: Guard,
}

/// Plans the request's run and submits it unless too many wait.
fn submit(served: &Arc<Served>, asked: &Asked) -> Result<Submitted, Refusal> {
    let text = if asked.templated {
        Text::Rendered(&asked.prompt)
    } else {
        Text::Plain(&asked.prompt)
    };
    let planned = plan::plan(
        &asked.settings,
        text,
        Lanes::One,
        &served.codec,
        &served.info,
    )
    .map_err(Refusal::bad_request)?;
    let guard = enqueue(served)?;
    let params = planned.lanes[0].1.clone();
    let handle = served.engine.submit(Job {
        canvas: planned.canvas.clone(),
        lanes: vec![params.clone()],
        inspect: false,
    });
    Ok(Submitted {
        handle,
        canvas: planned.canvas,
        prompt_len: planned.prompt_len,
        params,
        guard,
    })
}

/// A place in the queue for one more job, unless too many wait already.
fn enqueue(served: &Arc<Served>) -> Result<Guard, Refusal> {
    let waiting = served.jobs.load(Ordering::SeqCst);
    if waiting > served.max_queue {
        return Err(Refusal::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            format!("the server is busy: {waiting} jobs are queued; try again shortly"),
        ));
    }
    served.jobs.fetch_add(1, Ordering::SeqCst);
    Ok(Guard(served.clone()))
}

/// Counts a job as finished when dropped (with its stream, if the client goes away).
struct Guard(Arc<Served>);

impl Drop for Guard {
    fn drop(&mut self) {
        self.0.jobs.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn chat_completions(
    State(served): State<Arc<Served>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(denied) = authorised(&served, &headers) {
        return denied.into_response();
    }
    let body = match parse(&body) {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let Some(messages) = body["messages"].as_array() else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "\"messages\" must be a list of {role, content}",
        );
    };
    let messages: Vec<Message> = messages
        .iter()
        .filter_map(|m| {
            let content = m["content"].as_str()?;
            Some(Message {
                role: m["role"].as_str().unwrap_or("user").to_string(),
                content: content.to_string(),
            })
        })
        .collect();
    let (prompt, templated) = match &served.template {
        Some(template) => match template.render(&messages, true) {
            Ok(p) => (p, true),
            Err(e) => return Refusal::bad_request(e).into_response(),
        },
        // A base model continues the text of the messages.
        None => (
            messages
                .iter()
                .map(|m| m.content.as_str())
                .collect::<Vec<_>>()
                .join("\n"),
            false,
        ),
    };
    respond(&served, &body, prompt, templated, true).await
}

/// An authorised request's JSON and its `prompt`.
fn prompt_request(
    served: &Served,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<(Value, String), Refusal> {
    authorised(served, headers)?;
    let body = parse(body)?;
    let prompt = body["prompt"].as_str().map(str::to_string).ok_or_else(|| {
        Refusal::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "\"prompt\" must be a string",
        )
    })?;
    Ok((body, prompt))
}

async fn completions(
    State(served): State<Arc<Served>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (body, prompt) = match prompt_request(&served, &headers, &body) {
        Ok(read) => read,
        Err(e) => return e.into_response(),
    };
    respond(&served, &body, prompt, false, false).await
}

/// The answer in the canvas: after the prompt, up to the end of text (masks shown as `▒` when
/// `masks`, else the text stops at the first one).
fn answer_text(served: &Served, canvas: &[u32], prompt_len: usize, masks: bool) -> String {
    let generated = &canvas[prompt_len.min(canvas.len())..];
    if masks {
        let end = generated
            .iter()
            .position(|id| served.info.eos_ids.contains(id))
            .unwrap_or(generated.len());
        return served
            .codec
            .canvas_text(&generated[..end], served.info.mask_id, true)
            .replace("[MASK]", "▒");
    }
    let settled = generated
        .iter()
        .position(|&id| id == served.info.mask_id)
        .unwrap_or(generated.len());
    answer(&served.codec, &generated[..settled], &served.info.eos_ids)
}

async fn respond(
    served: &Arc<Served>,
    body: &Value,
    prompt: String,
    templated: bool,
    chat: bool,
) -> Response {
    let asked = match asked(served, body, prompt, templated).map_err(Refusal::bad_request) {
        Ok(a) => a,
        Err(e) => return e.into_response(),
    };
    let Submitted {
        mut handle,
        canvas,
        prompt_len,
        guard,
        ..
    } = match submit(served, &asked) {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    let model = served.info.name.clone();
    let piece = move |text: &str, finish: Option<&str>| -> Value {
        if chat {
            json!({"object": "chat.completion.chunk", "model": model,
                "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": finish}]})
        } else {
            json!({"object": "text_completion", "model": model,
                "choices": [{"index": 0, "text": text, "finish_reason": finish}]})
        }
    };
    if !asked.stream {
        let mut last = canvas;
        while let Some(event) = handle.events.recv().await {
            match event {
                Event::Step(step) => last = step.canvas,
                Event::Finished { .. } => break,
                Event::Failed(e) => {
                    return error(StatusCode::INTERNAL_SERVER_ERROR, "server_error", e)
                }
                _ => {}
            }
        }
        drop(guard);
        let text = answer_text(served, &last, prompt_len, false);
        let tokens = last.len() - prompt_len;
        let choice = if chat {
            json!({"index": 0, "message": {"role": "assistant", "content": text},
                "finish_reason": "stop"})
        } else {
            json!({"index": 0, "text": text, "finish_reason": "stop"})
        };
        return Json(
            json!({"object": if chat {"chat.completion"} else {"text_completion"},
            "model": served.info.name, "choices": [choice],
            "usage": {"prompt_tokens": prompt_len, "completion_tokens": tokens,
                "total_tokens": prompt_len + tokens}}),
        )
        .into_response();
    }
    let served = served.clone();
    let diffusing = asked.diffusing;
    let events = stream::unfold(
        (Some(handle), String::new(), canvas, Some(guard)),
        move |(handle, sent, last, guard)| {
            let served = served.clone();
            let piece = piece.clone();
            async move {
                let mut handle = handle?;
                let mut last = last;
                loop {
                    let event = handle.events.recv().await?;
                    match event {
                        Event::Step(step) => {
                            last = step.canvas;
                            // A character split across tokens waits for its last byte.
                            let now = answer_text(&served, &last, prompt_len, diffusing)
                                .trim_end_matches('\u{fffd}')
                                .to_string();
                            let delta = if diffusing {
                                now.clone()
                            } else if let Some(rest) = now.strip_prefix(sent.as_str()) {
                                rest.to_string()
                            } else {
                                continue;
                            };
                            if delta.is_empty() {
                                continue;
                            }
                            let mut chunk = piece(&delta, None);
                            if diffusing {
                                chunk["diffusion_meta"] = json!({"diffusion_content": true,
                                    "diffusion_progress": step.step as f64 / step.steps.max(1) as f64});
                            }
                            let data = SseEvent::default().data(chunk.to_string());
                            return Some((
                                Ok::<_, std::convert::Infallible>(data),
                                (Some(handle), now, last, guard),
                            ));
                        }
                        Event::Finished { .. } | Event::Cancelled | Event::Failed(_) => {
                            let full = answer_text(&served, &last, prompt_len, false);
                            let tail = if diffusing {
                                full.clone()
                            } else {
                                full.strip_prefix(sent.as_str()).unwrap_or("").to_string()
                            };
                            let tokens = last.len() - prompt_len;
                            let mut chunk = piece(&tail, Some("stop"));
                            chunk["usage"] = json!({"prompt_tokens": prompt_len,
                                "completion_tokens": tokens, "total_tokens": prompt_len + tokens});
                            let data = SseEvent::default().data(chunk.to_string());
                            drop(guard);
                            return Some((Ok(data), (None, full, last, None)));
                        }
                        Event::LaneDone(_) => {}
                    }
                }
            }
        },
    );
    let done = stream::once(async { Ok(SseEvent::default().data("[DONE]")) });
    Sse::new(futures_util::StreamExt::chain(events, done)).into_response()
}

/// `POST /v1/dlm/steps`: `generate --json`'s lines as server-sent events.
async fn steps(State(served): State<Arc<Served>>, headers: HeaderMap, body: Bytes) -> Response {
    let (body, prompt) = match prompt_request(&served, &headers, &body) {
        Ok(read) => read,
        Err(e) => return e.into_response(),
    };
    let asked = match asked(&served, &body, prompt.clone(), false).map_err(Refusal::bad_request) {
        Ok(a) => a,
        Err(e) => return e.into_response(),
    };
    let Submitted {
        handle,
        canvas,
        prompt_len,
        params,
        guard,
    } = match submit(&served, &asked) {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    let label = params.method();
    let header = RunHeader {
        lanes: vec![LaneRecipe {
            lane: 0,
            label: &label,
            params: &params,
        }],
        ..RunHeader::new(&served.info, &prompt, &canvas, prompt_len)
    }
    .line();
    let first = stream::once(async move {
        Ok::<_, std::convert::Infallible>(SseEvent::default().data(header.to_string()))
    });
    let strategy = params.strategy.name();
    let rest = stream::unfold(
        (Some(handle), canvas, 0usize, Some(guard)),
        move |(handle, last, nfe, guard)| {
            let served = served.clone();
            async move {
                let mut handle = handle?;
                loop {
                    let event = handle.events.recv().await?;
                    match event {
                        Event::Step(step) => {
                            let line = step_line(&step, &served.codec, served.info.mask_id);
                            let (canvas, nfe) = (step.canvas, step.nfe);
                            return Some((
                                Ok(SseEvent::default().data(line.to_string())),
                                (Some(handle), canvas, nfe, guard),
                            ));
                        }
                        Event::Finished { elapsed } => {
                            let text = served.codec.decode(&last, true);
                            let done = LaneEnd {
                                ending: Ending::Done,
                                lane: 0,
                                strategy: Some(strategy),
                                tokens: &last,
                                prompt_len,
                                text: &text,
                                masked: 0,
                                nfe,
                                elapsed_ms: elapsed.as_secs_f64() * 1e3,
                            }
                            .line();
                            drop(guard);
                            return Some((
                                Ok(SseEvent::default().data(done.to_string())),
                                (None, last, nfe, None),
                            ));
                        }
                        Event::Failed(e) => {
                            let line = json!({"type": "failed", "lane": 0, "error": e});
                            return Some((
                                Ok(SseEvent::default().data(line.to_string())),
                                (None, last, nfe, None),
                            ));
                        }
                        Event::Cancelled => return None,
                        Event::LaneDone(_) => {}
                    }
                }
            }
        },
    );
    let stream: std::pin::Pin<
        Box<dyn Stream<Item = Result<SseEvent, std::convert::Infallible>> + Send>,
    > = Box::pin(futures_util::StreamExt::chain(first, rest));
    Sse::new(stream).into_response()
}
