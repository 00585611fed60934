//! The engine: a worker thread that owns the model, runs denoising jobs lane by lane and streams
//! one [`StepEvent`] per step per lane over a bounded channel.
//!
//! candle runs its kernels on its own rayon pool, so the worker is a plain OS thread rather than a
//! tokio task: the UI's runtime never blocks on a forward pass. Cancellation is checked between
//! steps. A model error or a panic ends the job with [`Event::Failed`]; the worker survives and
//! takes the next job.

mod frames;
mod local;
pub mod trace;

pub use local::LocalLane;

use std::ops::Range;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc as std_mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::model::{Denoiser, ModelInfo};
use crate::sampler::{Commit, SamplerParams, Scored};

/// Name of the engine's thread (the UI's panic hook leaves that thread's panics to the engine).
pub const WORKER_NAME: &str = "dlm-engine";

/// Events buffered between the worker and the consumer before the worker waits.
const EVENT_BUFFER: usize = 256;

/// A denoising job: one canvas, one lane per parameter set (same canvas and seed, say, different
/// strategies).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub canvas: Vec<u32>,
    pub lanes: Vec<SamplerParams>,
    /// Keep what every step scored ([`StepEvent::scored`]): the token inspector's and the ghost
    /// text's data. Off for plain generation.
    pub inspect: bool,
}

/// One denoising step of one lane.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepEvent {
    pub lane: usize,
    /// 1-based step index.
    pub step: usize,
    /// Planned steps (an upper bound under dynamic parallel rules).
    pub steps: usize,
    /// The whole canvas after this step.
    pub canvas: Vec<u32>,
    /// Positions committed in this step, with their scores.
    pub committed: Vec<Commit>,
    /// Positions still masked.
    pub masked: usize,
    /// Forward passes of this lane so far.
    pub nfe: usize,
    /// Time this lane has spent so far (its own steps only).
    pub elapsed: Duration,
    /// Tokens committed per unit of forward work, relative to plain decoding (the lane's step
    /// budget spread evenly, every pass over the whole canvas): what parallel decoding and
    /// caching buy.
    pub speedup: f64,
    /// The semi-autoregressive window this step worked in.
    pub window: Range<usize>,
    /// Every masked position this step scored (proposal, score, top candidates), committed or
    /// kept masked; empty unless the job inspects.
    pub scored: Vec<Scored>,
    /// Committed positions this step masked again (ReMDM); the canvas holds the mask there.
    pub remasked: Vec<usize>,
    /// A block-diffusion lane's blocks, cache and sub-block after the step; `None` for a
    /// canvas decoded whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocks: Option<crate::sampler::BlockState>,
}

/// Totals of a finished lane.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LaneSummary {
    pub lane: usize,
    pub canvas: Vec<u32>,
    pub steps: usize,
    pub nfe: usize,
    pub elapsed: Duration,
    /// Mean score of the committed tokens (for probability-like strategies, their confidence).
    pub mean_score: f64,
    /// See [`StepEvent::speedup`].
    pub speedup: f64,
    /// The tokens a text-streaming server says it wrote (its final usage); `None` for lanes
    /// that ran here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_tokens: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Event {
    Step(StepEvent),
    LaneDone(LaneSummary),
    /// Every lane finished.
    Finished {
        elapsed: Duration,
    },
    /// Stopped on request between steps; the last step events hold the partial canvases.
    Cancelled,
    /// The model or the sampler failed (errors and panics alike); the engine keeps running.
    Failed(String),
}

impl Event {
    /// Whether this is a job's last event (finished, cancelled or failed).
    pub fn is_last(&self) -> bool {
        matches!(
            self,
            Event::Finished { .. } | Event::Cancelled | Event::Failed(_)
        )
    }
}

/// The consumer's side of a running job.
pub struct JobHandle {
    pub events: mpsc::Receiver<Event>,
    cancel: Arc<AtomicBool>,
}

impl JobHandle {
    /// Asks the worker to stop after the step in progress.
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::Relaxed);
    }

    pub fn canceller(&self) -> Canceller {
        Canceller(self.cancel.clone())
    }
}

/// A cloneable cancel button for a job.
#[derive(Debug, Clone)]
pub struct Canceller(Arc<AtomicBool>);

impl Canceller {
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// What a lane reports after one call to [`LaneBackend::advance`].
#[derive(Debug, Clone, PartialEq)]
pub enum Progress {
    Step(StepEvent),
    /// The lane has finished; it is not advanced again.
    Done(LaneSummary),
}

/// What runs one lane of a job. The engine advances every lane of a job one step at a time,
/// round-robin, on its worker thread, and checks for cancellation between steps.
///
/// [`LocalLane`] runs the sampler over the worker's model. A backend that does not use the local
/// model (a server streaming the frames of its own denoising, say) ignores `model` and reports
/// each frame it receives as a step.
pub trait LaneBackend: Send {
    /// Runs the lane's next step; `lane` is its index in the job, for the events.
    fn advance(&mut self, lane: usize, model: &mut dyn Denoiser) -> Result<Progress>;
}

struct Submission {
    job: Job,
    events: mpsc::Sender<Event>,
    cancel: Arc<AtomicBool>,
}

/// Owns the model on a dedicated thread and runs submitted jobs one at a time, in order.
pub struct Engine {
    jobs: Option<std_mpsc::Sender<Submission>>,
    worker: Option<JoinHandle<()>>,
    info: ModelInfo,
}

impl Engine {
    /// An engine whose jobs run on a `dlm-tui serve` (the model it serves is `info`).
    pub fn remote(info: ModelInfo, endpoint: crate::remote::Endpoint) -> Result<Self> {
        Self::spawn(info, move |queue| {
            streaming_loop(queue, |runtime, job, events, cancel| {
                runtime.block_on(relay_served(&endpoint, job, events, cancel))
            })
        })
    }

    /// An engine whose jobs stream from a server that sends text (Mercury, OpenAI-compatible
    /// servers); `codec` and `info` are the display tokenizer's (see [`frames`]).
    pub fn frames(
        info: ModelInfo,
        endpoint: crate::remote::Endpoint,
        codec: Arc<crate::text::TextCodec>,
    ) -> Result<Self> {
        let mask_id = info.mask_id;
        Self::spawn(info, move |queue| {
            streaming_loop(queue, |runtime, job, events, cancel| {
                runtime
                    .block_on(frames::run(&endpoint, &codec, mask_id, job, events, cancel))
                    .map(Some)
            })
        })
    }

    /// A local engine with a remote one beside it: a job of several lanes runs all but its last
    /// on `local` and the last on `remote` (a text-streaming server's [`Engine::frames`]) at the
    /// same time, on the same canvas; their events come back as one job's, the remote lane's
    /// numbered last. A job of one lane runs on `local`.
    pub fn beside(local: Engine, remote: Engine) -> Result<Self> {
        let info = local.info().clone();
        Self::spawn(info, move |queue| {
            streaming_loop(queue, |runtime, job, events, cancel| {
                Ok(Some(runtime.block_on(run_beside(
                    &local, &remote, job, events, cancel,
                ))))
            })
        })
    }

    pub fn new(model: Box<dyn Denoiser>) -> Result<Self> {
        let info = model.info().clone();
        Self::spawn(info, move |queue| worker_loop(model, queue))
    }

    /// The engine of `info` whose worker thread runs `work` over the submitted jobs.
    fn spawn(
        info: ModelInfo,
        work: impl FnOnce(std_mpsc::Receiver<Submission>) + Send + 'static,
    ) -> Result<Self> {
        let (jobs, queue) = std_mpsc::channel::<Submission>();
        let worker = std::thread::Builder::new()
            .name(WORKER_NAME.into())
            .spawn(move || work(queue))
            .map_err(|e| anyhow!("starting the engine thread: {e}"))?;
        Ok(Self {
            jobs: Some(jobs),
            worker: Some(worker),
            info,
        })
    }

    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// Queues a job; its events arrive on the returned handle.
    pub fn submit(&self, job: Job) -> JobHandle {
        let (events, receiver) = mpsc::channel(EVENT_BUFFER);
        let cancel = Arc::new(AtomicBool::new(false));
        let submission = Submission {
            job,
            events,
            cancel: cancel.clone(),
        };
        if let Some(jobs) = &self.jobs {
            if let Err(std_mpsc::SendError(lost)) = jobs.send(submission) {
                let _ = lost
                    .events
                    .try_send(Event::Failed("the engine thread has stopped".into()));
            }
        }
        JobHandle {
            events: receiver,
            cancel,
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.jobs.take();
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

/// One job of [`Engine::beside`]: the local lanes and the remote one side by side, their events
/// relayed as they come (the remote lane's renumbered), and the job's last event once both ends
/// are done: a failure of either fails the job (and cancels the other), a cancel cancels both.
async fn run_beside(
    local: &Engine,
    remote: &Engine,
    job: &Job,
    events: &mpsc::Sender<Event>,
    cancel: &AtomicBool,
) -> Event {
    let n = job.lanes.len();
    if n < 2 {
        let mut handle = local.submit(job.clone());
        return relay_until_last(&mut handle, events, cancel).await;
    }
    let remote_lane = n - 1;
    let remote_job = Job {
        canvas: job.canvas.clone(),
        lanes: vec![job.lanes[remote_lane].clone()],
        inspect: false,
    };
    let local_job = Job {
        lanes: job.lanes[..remote_lane].to_vec(),
        ..job.clone()
    };
    let mut near = local.submit(local_job);
    let mut far = remote.submit(remote_job);
    let (mut near_last, mut far_last): (Option<Event>, Option<Event>) = (None, None);
    let mut cancelled = false;
    loop {
        if near_last.is_some() && far_last.is_some() {
            break;
        }
        if !cancelled && cancel.load(Ordering::Relaxed) {
            cancelled = true;
            near.cancel();
            far.cancel();
        }
        let (event, from_far) = tokio::select! {
            e = near.events.recv(), if near_last.is_none() => (e, false),
            e = far.events.recv(), if far_last.is_none() => (e, true),
            _ = tokio::time::sleep(Duration::from_millis(50)) => continue,
        };
        let event = event.unwrap_or_else(|| Event::Failed("an engine stopped mid-job".into()));
        let event = match (event, from_far) {
            (Event::Step(mut step), true) => {
                step.lane = remote_lane;
                Event::Step(step)
            }
            (Event::LaneDone(mut summary), true) => {
                summary.lane = remote_lane;
                Event::LaneDone(summary)
            }
            (event, _) => event,
        };
        if event.is_last() {
            if let Event::Failed(why) = &event {
                // One side failing fails the job: stop the other.
                near.cancel();
                far.cancel();
                let why = if from_far {
                    format!("the remote lane: {why}")
                } else {
                    why.clone()
                };
                return Event::Failed(why);
            }
            if from_far {
                far_last = Some(event);
            } else {
                near_last = Some(event);
            }
            continue;
        }
        if events.send(event).await.is_err() {
            near.cancel();
            far.cancel();
            return Event::Cancelled;
        }
    }
    match (near_last, far_last) {
        (Some(Event::Finished { elapsed: a }), Some(Event::Finished { elapsed: b })) => {
            Event::Finished { elapsed: a.max(b) }
        }
        _ => Event::Cancelled,
    }
}

/// Relays a job's events until its last one, which is returned (cancelling it on request).
async fn relay_until_last(
    handle: &mut JobHandle,
    events: &mpsc::Sender<Event>,
    cancel: &AtomicBool,
) -> Event {
    loop {
        if cancel.load(Ordering::Relaxed) {
            handle.cancel();
        }
        let event = tokio::select! {
            e = handle.events.recv() => e,
            _ = tokio::time::sleep(Duration::from_millis(50)) => continue,
        };
        let Some(event) = event else {
            return Event::Failed("the engine stopped mid-job".into());
        };
        if event.is_last() {
            return event;
        }
        if events.send(event).await.is_err() {
            handle.cancel();
            return Event::Cancelled;
        }
    }
}

/// The worker of an engine whose jobs run elsewhere: each job runs on a runtime of the thread's
/// own through `run`, which relays its events and returns the last one unless it relayed that
/// already; an error becomes the job's failure.
fn streaming_loop(
    queue: std_mpsc::Receiver<Submission>,
    mut run: impl FnMut(
        &tokio::runtime::Runtime,
        &Job,
        &mpsc::Sender<Event>,
        &Arc<AtomicBool>,
    ) -> Result<Option<Event>>,
) {
    let runtime = crate::remote::runtime();
    while let Ok(Submission {
        job,
        events,
        cancel,
    }) = queue.recv()
    {
        let last = match &runtime {
            Ok(runtime) => run(runtime, &job, &events, &cancel)
                .unwrap_or_else(|e| Some(Event::Failed(format!("{e:#}")))),
            Err(e) => Some(Event::Failed(format!("{e:#}"))),
        };
        if let Some(last) = last {
            let _ = events.blocking_send(last);
        }
    }
}

/// Runs `job` on a `dlm-tui serve` ([`Engine::remote`]) and relays the server's events as if the
/// job ran here; `None` once the server's last event is relayed. Cancelling closes the
/// connection, which cancels the job there.
async fn relay_served(
    endpoint: &crate::remote::Endpoint,
    job: &Job,
    events: &mpsc::Sender<Event>,
    cancel: &AtomicBool,
) -> Result<Option<Event>> {
    use futures_util::StreamExt;
    let body = serde_json::to_value(job)?;
    let mut stream = crate::remote::job_stream(endpoint, &body).await?;
    while let Some(value) = stream.next().await {
        if cancel.load(Ordering::Relaxed) {
            return Ok(Some(Event::Cancelled));
        }
        let event: Event = serde_json::from_value(value?).map_err(|e| {
            anyhow!(
                "{} sent an event this version cannot read: {e}",
                endpoint.describe()
            )
        })?;
        let last = event.is_last();
        if events.send(event).await.is_err() {
            // Nobody is listening any more.
            return Ok(None);
        }
        if last {
            return Ok(None);
        }
    }
    if cancel.load(Ordering::Relaxed) {
        return Ok(Some(Event::Cancelled));
    }
    Err(anyhow!(
        "{} ended the job without finishing it",
        endpoint.describe()
    ))
}

fn worker_loop(mut model: Box<dyn Denoiser>, queue: std_mpsc::Receiver<Submission>) {
    while let Ok(Submission {
        job,
        events,
        cancel,
    }) = queue.recv()
    {
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            run_job(model.as_mut(), &job, &events, &cancel)
        }));
        let last = match outcome {
            Ok(Ok(event)) => event,
            Ok(Err(e)) => Event::Failed(format!("{e:#}")),
            Err(panic) => Event::Failed(format!(
                "the model task panicked: {}",
                panic_message(&panic)
            )),
        };
        let _ = events.blocking_send(last);
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_string()
    }
}

/// Runs every lane one step at a time, round-robin, so lanes progress side by side.
fn run_job(
    model: &mut dyn Denoiser,
    job: &Job,
    events: &mpsc::Sender<Event>,
    cancel: &AtomicBool,
) -> Result<Event> {
    let started = Instant::now();
    let info = model.info().clone();
    if job.canvas.len() > info.max_context {
        return Err(anyhow!(
            "the canvas has {} tokens but {} accepts at most {}",
            job.canvas.len(),
            info.name,
            info.max_context
        ));
    }
    let traits = info.traits();
    let mut lanes = job
        .lanes
        .iter()
        .map(|params| {
            let mut lane = LocalLane::new(job.canvas.clone(), params.clone(), traits.clone())?;
            lane.inspect(job.inspect);
            Ok((Box::new(lane) as Box<dyn LaneBackend>, false))
        })
        .collect::<Result<Vec<_>>>()?;

    while lanes.iter().any(|(_, finished)| !finished) {
        for (index, (lane, finished)) in lanes.iter_mut().enumerate().filter(|(_, l)| !l.1) {
            if cancel.load(Ordering::Relaxed) {
                return Ok(Event::Cancelled);
            }
            let event = match lane.advance(index, model)? {
                Progress::Step(step) => Event::Step(step),
                Progress::Done(summary) => {
                    *finished = true;
                    Event::LaneDone(summary)
                }
            };
            if events.blocking_send(event).is_err() {
                // Nobody is listening any more: stop quietly.
                return Ok(Event::Cancelled);
            }
        }
    }
    Ok(Event::Finished {
        elapsed: started.elapsed(),
    })
}

#[cfg(test)]
mod tests;
