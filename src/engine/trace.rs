//! The JSON trace of a run, one object per line: an export starts with a `run` object (what
//! ran: model, prompt, canvas, every setting of every lane, so the run can be reproduced), then
//! a `step` object for every denoising step of every lane, then one end object per lane whose
//! `type` says how the lane ended (`done`, `cancelled`, `failed`, or `running` for a snapshot
//! taken mid-run). `generate --json`, the
//! playground's export and any later reader (a replay, a server) write and read this one schema.

use serde::Serialize;
use serde_json::json;

use super::StepEvent;
use crate::sampler::SamplerParams;
use crate::text::TextCodec;

/// The first line of an exported trace: everything needed to run it again.
#[derive(Debug, Clone, Serialize)]
pub struct RunHeader<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The dlm-tui version that wrote the trace.
    pub version: &'static str,
    pub model: &'a str,
    /// The editor's text in prompt syntax (`[MASK:N]` spans) when the run started.
    pub prompt: &'a str,
    /// Whether the text went through the model's chat template.
    pub chat: bool,
    /// The canvas the run started from (ids), and how much of it is prompt.
    pub canvas: &'a [u32],
    pub prompt_len: usize,
    /// The front end's own settings (the playground's parameters panel), as it stores them.
    pub settings: serde_json::Value,
    /// Every lane's label and exact sampler parameters (seed included).
    pub lanes: Vec<LaneRecipe<'a>>,
}

/// One lane of a [`RunHeader`].
#[derive(Debug, Clone, Serialize)]
pub struct LaneRecipe<'a> {
    pub lane: usize,
    pub label: &'a str,
    pub params: &'a SamplerParams,
}

impl<'a> RunHeader<'a> {
    pub fn new(model: &'a str, prompt: &'a str, canvas: &'a [u32], prompt_len: usize) -> Self {
        Self {
            kind: "run",
            version: env!("CARGO_PKG_VERSION"),
            model,
            prompt,
            chat: false,
            canvas,
            prompt_len,
            settings: serde_json::Value::Null,
            lanes: Vec::new(),
        }
    }

    pub fn line(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}

/// The `step` line for one step: the tokens committed (position, id, text, score), what is still
/// masked, the forward passes and time so far, and the canvas as text with masks shown.
pub fn step_line(step: &StepEvent, codec: &TextCodec, mask_id: u32) -> serde_json::Value {
    let committed: Vec<_> = step
        .committed
        .iter()
        .map(|c| {
            json!({
                "pos": c.pos,
                "id": c.id,
                "text": codec.token_text(c.id),
                "score": c.score,
            })
        })
        .collect();
    let mut line = json!({
        "type": "step",
        "lane": step.lane,
        "step": step.step,
        "steps": step.steps,
        "committed": committed,
        "masked": step.masked,
        "nfe": step.nfe,
        "elapsed_ms": step.elapsed.as_secs_f64() * 1e3,
        "window": [step.window.start, step.window.end],
        "text": codec.canvas_text(&step.canvas, mask_id, false),
    });
    if !step.scored.is_empty() {
        line["scored"] = step
            .scored
            .iter()
            .map(|s| {
                json!({
                    "pos": s.pos,
                    "id": s.id,
                    "score": s.score,
                    "top": s.top.iter().map(|&(id, p)| json!([id, codec.token_text(id), p])).collect::<Vec<_>>(),
                })
            })
            .collect();
    }
    line
}

/// How a lane's trace ends (the end line's `type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Ending {
    Done,
    Cancelled,
    Failed,
    /// Written while the run was still going (an export mid-run).
    Running,
}

/// The last line of a lane's trace. A lane that did not finish is not `done`: its canvas can
/// still hold masks (`masked` counts them).
#[derive(Debug, Clone, Serialize)]
pub struct LaneEnd<'a> {
    #[serde(rename = "type")]
    pub ending: Ending,
    pub lane: usize,
    /// The lane's label (its strategy and overrides), when the run compared lanes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub strategy: Option<&'a str>,
    pub tokens: &'a [u32],
    pub prompt_len: usize,
    pub text: &'a str,
    pub masked: usize,
    pub nfe: usize,
    pub elapsed_ms: f64,
}

impl LaneEnd<'_> {
    pub fn line(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}
