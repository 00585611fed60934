//! Lanes backed by a server that streams text, not canvases (Mercury, OpenAI-compatible
//! servers): every frame becomes a step event whose canvas is the prompt and the frame's text in
//! the display tokenizer's ids, padded with masks to the job's canvas (cut if longer). What
//! changed since the previous frame counts as committed in that step; a frame shorter than the
//! last one masks the rest again. There are no scores or candidates: the server sends none.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{anyhow, Result};
use tokio::sync::mpsc;

use super::{Event, Job, LaneSummary, StepEvent};
use crate::remote::{Endpoint, Frame, Request};
use crate::sampler::Commit;
use crate::text::TextCodec;

/// How one job's frames become events.
struct Framing<'a> {
    codec: &'a TextCodec,
    mask_id: u32,
    /// The canvas up to the first mask: the prompt sent.
    prompt: Vec<u32>,
    len: usize,
}

impl Framing<'_> {
    fn canvas(&self, text: &str) -> Vec<u32> {
        let mut canvas = self.prompt.clone();
        canvas.extend(self.codec.encode(text, false).unwrap_or_default());
        canvas.resize(self.len, self.mask_id);
        canvas
    }

    fn step(&self, frame: &Frame, index: usize, previous: &[u32]) -> StepEvent {
        let canvas = self.canvas(&frame.text);
        let changed = |p: usize| canvas[p] != previous[p];
        let committed = (self.prompt.len()..self.len)
            .filter(|&p| changed(p) && canvas[p] != self.mask_id)
            .map(|pos| Commit {
                pos,
                id: canvas[pos],
                score: 0.0,
            })
            .collect();
        let remasked = (self.prompt.len()..self.len)
            .filter(|&p| changed(p) && canvas[p] == self.mask_id)
            .collect();
        StepEvent {
            lane: 0,
            step: index,
            steps: index,
            masked: canvas.iter().filter(|&&t| t == self.mask_id).count(),
            nfe: index,
            elapsed: frame.elapsed,
            speedup: 1.0,
            window: self.prompt.len()..self.len,
            scored: Vec::new(),
            committed,
            remasked,
            canvas,
        }
    }
}

/// Runs `job` on the streaming server: its prompt is the canvas before the first mask, decoded;
/// the most tokens are its masks; the temperature is the lane's. One lane only.
pub(super) async fn run(
    endpoint: &Endpoint,
    codec: &TextCodec,
    mask_id: u32,
    job: &Job,
    events: &mpsc::Sender<Event>,
    cancel: &AtomicBool,
) -> Result<Event> {
    let [lane] = job.lanes.as_slice() else {
        return Err(anyhow!(
            "{} streams one answer at a time: turn compare and the seed sweep off",
            endpoint.describe()
        ));
    };
    let first_mask = job
        .canvas
        .iter()
        .position(|&t| t == mask_id)
        .ok_or_else(|| anyhow!("nothing to generate: the canvas has no masks"))?;
    if job.canvas[first_mask..].iter().any(|&t| t != mask_id) {
        return Err(anyhow!(
            "{} cannot fill spans inside the text yet: put the masks at the end",
            endpoint.describe()
        ));
    }
    let framing = Framing {
        codec,
        mask_id,
        prompt: job.canvas[..first_mask].to_vec(),
        len: job.canvas.len(),
    };
    let request = Request {
        prompt: codec.decode(&framing.prompt, true),
        max_tokens: job.canvas.len() - first_mask,
        temperature: lane.temperature,
    };
    let (frames, mut received) = mpsc::unbounded_channel::<Frame>();
    let streaming = crate::remote::stream(endpoint, &request, move |frame| {
        let _ = frames.send(frame.clone());
    });
    let relaying = async {
        let mut previous = job.canvas.clone();
        let mut index = 0;
        let mut elapsed = Duration::ZERO;
        while let Some(frame) = received.recv().await {
            index += 1;
            let step = framing.step(&frame, index, &previous);
            previous = step.canvas.clone();
            elapsed = frame.elapsed;
            if events.send(Event::Step(step)).await.is_err() {
                return None;
            }
        }
        Some((previous, index, elapsed))
    };
    let cancelled = async {
        while !cancel.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let (finish, relayed) = tokio::select! {
        both = async { tokio::join!(streaming, relaying) } => both,
        _ = cancelled => return Ok(Event::Cancelled),
    };
    let finish = finish?;
    let Some((canvas, frames, elapsed)) = relayed else {
        return Ok(Event::Cancelled);
    };
    let summary = LaneSummary {
        lane: 0,
        canvas,
        steps: frames,
        nfe: frames,
        elapsed,
        mean_score: 0.0,
        speedup: 1.0,
    };
    let _ = events.send(Event::LaneDone(summary)).await;
    Ok(Event::Finished {
        elapsed: finish.elapsed,
    })
}
