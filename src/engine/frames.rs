//! Lanes backed by a server that streams text, not canvases (Mercury, OpenAI-compatible
//! servers): every frame becomes a step event whose canvas is the prompt and the frame's text in
//! the display tokenizer's ids, padded with masks to the job's canvas (cut if longer). What
//! changed since the previous frame counts as committed in that step; a frame shorter than the
//! last one masks the rest again. There are no scores or candidates: the server sends none.
//! A masked span inside the text (one) goes to Mercury's fill-in-the-middle endpoint with the text
//! before and after it; the frames then fill that span and the text after it stays as it was.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{anyhow, Result};
use tokio::sync::mpsc;

use super::{Event, Job, LaneSummary, StepEvent};
use futures_util::future::Either;

use crate::remote::{Endpoint, FimRequest, Frame, Kind, Request};
use crate::sampler::Commit;
use crate::text::TextCodec;

/// How one job's frames become events.
struct Framing<'a> {
    codec: &'a TextCodec,
    mask_id: u32,
    /// The canvas up to the first mask: the prompt sent.
    prompt: Vec<u32>,
    /// The masked span's length: the most tokens the answer may take.
    span: usize,
    /// The canvas after the span (empty unless a span inside the text is filled; then the text
    /// after it and any masks that end the canvas, which stay masked).
    suffix: Vec<u32>,
}

impl Framing<'_> {
    fn canvas(&self, text: &str) -> Vec<u32> {
        let mut canvas = self.prompt.clone();
        let mut fill = self.codec.encode(text, false).unwrap_or_default();
        fill.resize(self.span, self.mask_id);
        canvas.extend(fill);
        canvas.extend(&self.suffix);
        canvas
    }

    /// The positions the answer fills.
    fn window(&self) -> std::ops::Range<usize> {
        self.prompt.len()..self.prompt.len() + self.span
    }

    fn step(&self, frame: &Frame, index: usize, previous: &[u32]) -> StepEvent {
        let canvas = self.canvas(&frame.text);
        // The settled prefix: the answer's tokens this frame shares with the previous one from
        // the start. The step's window is what comes after it (the live panel marks where it
        // begins), the part the server is still working on.
        let answer = self.window();
        let settled_end = answer
            .clone()
            .find(|&p| canvas[p] != previous[p] || canvas[p] == self.mask_id)
            .unwrap_or(answer.end);
        let changed = |p: usize| canvas[p] != previous[p];
        let committed = self
            .window()
            .filter(|&p| changed(p) && canvas[p] != self.mask_id)
            .map(|pos| Commit {
                pos,
                id: canvas[pos],
                score: 0.0,
            })
            .collect();
        let remasked = self
            .window()
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
            window: settled_end..answer.end,
            scored: Vec::new(),
            committed,
            remasked,
            blocks: None,
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
    let span = job.canvas[first_mask..]
        .iter()
        .take_while(|&&t| t == mask_id)
        .count();
    // The text after the span, up to the canvas's trailing masks (the playground's `length`
    // after the editor's text): those stay masked when a span inside the text is filled.
    let rest = &job.canvas[first_mask + span..];
    let trailing = rest.iter().rev().take_while(|&&t| t == mask_id).count();
    let suffix = rest[..rest.len() - trailing].to_vec();
    if suffix.contains(&mask_id) {
        return Err(anyhow!(
            "{} fills one masked span at a time: unmask the others",
            endpoint.describe()
        ));
    }
    if !suffix.is_empty() && endpoint.kind != Kind::Mercury {
        return Err(anyhow!(
            "{} cannot fill a span inside the text (Mercury's fill-in-the-middle can): put the \
             masks at the end",
            endpoint.describe()
        ));
    }
    let mut suffix_then_masks = suffix.clone();
    if !suffix.is_empty() {
        suffix_then_masks.extend(std::iter::repeat_n(mask_id, trailing));
    }
    let framing = Framing {
        codec,
        mask_id,
        prompt: job.canvas[..first_mask].to_vec(),
        span,
        suffix: suffix_then_masks,
    };
    let (frames, mut received) = mpsc::unbounded_channel::<Frame>();
    let relay = move |frame: &Frame| {
        let _ = frames.send(frame.clone());
    };
    let prompt = codec.decode(&framing.prompt, true);
    let streaming = if framing.suffix.is_empty() {
        let request = Request {
            prompt,
            max_tokens: span,
            temperature: lane.temperature,
        };
        Either::Left(async move { crate::remote::stream(endpoint, &request, relay).await })
    } else {
        let request = FimRequest {
            prompt,
            suffix: codec.decode(&suffix, true),
            max_tokens: span,
        };
        Either::Right(async move { crate::remote::fim_stream(endpoint, &request, relay).await })
    };
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
        completion_tokens: finish.completion_tokens,
    };
    let _ = events.send(Event::LaneDone(summary)).await;
    Ok(Event::Finished {
        elapsed: finish.elapsed,
    })
}
