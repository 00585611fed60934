//! The JSON trace of a run, one object per line: an export starts with a `run` object (what
//! ran: model, prompt, canvas, every setting of every lane, so the run can be reproduced), then
//! a `step` object for every denoising step of every lane, then one end object per lane whose
//! `type` says how the lane ended (`done`, `cancelled`, `failed`, or `running` for a snapshot
//! taken mid-run). `generate --json`, the
//! playground's export and any later reader (a replay, a server) write and read this one schema.

use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::StepEvent;
use crate::model::ModelInfo;
use crate::sampler::{Commit, SamplerParams, Scored};
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
    /// The model's mask and end-of-text ids (a replay draws them without loading the model).
    pub mask_id: u32,
    pub eos_ids: &'a [u32],
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
    pub fn new(
        model: &'a ModelInfo,
        prompt: &'a str,
        canvas: &'a [u32],
        prompt_len: usize,
    ) -> Self {
        Self {
            kind: "run",
            version: env!("CARGO_PKG_VERSION"),
            model: &model.name,
            prompt,
            chat: false,
            canvas,
            prompt_len,
            mask_id: model.mask_id,
            eos_ids: &model.eos_ids,
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
        "speedup": step.speedup,
        "window": [step.window.start, step.window.end],
        "text": codec.canvas_text(&step.canvas, mask_id, false),
    });
    if !step.remasked.is_empty() {
        line["remasked"] = json!(step.remasked);
    }
    if let Some(blocks) = &step.blocks {
        line["blocks"] = json!(blocks);
    }
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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

/// A trace read back: the run line's facts and every lane's steps, as the engine sent them.
#[derive(Debug, Clone, PartialEq)]
pub struct Trace {
    pub model: String,
    pub prompt: String,
    pub chat: bool,
    pub canvas: Vec<u32>,
    pub prompt_len: usize,
    pub mask_id: u32,
    pub eos_ids: Vec<u32>,
    /// The front end's settings as written (null from `generate`).
    pub settings: Value,
    pub lanes: Vec<TraceLane>,
}

/// One lane of a [`Trace`].
#[derive(Debug, Clone, PartialEq)]
pub struct TraceLane {
    pub label: String,
    pub params: Option<SamplerParams>,
    pub steps: Vec<StepEvent>,
    /// How the lane ended; `None` when the trace stops before its end line.
    pub ending: Option<Ending>,
}

/// Reads a trace written by `generate --json` or the playground's export (`source` names it in
/// errors, with the line). Each step's canvas is rebuilt from the run's canvas and the commits.
pub fn read(text: &str, source: &str) -> Result<Trace> {
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let (_, first) = lines
        .next()
        .ok_or_else(|| anyhow!("{source} is empty: it holds no trace"))?;
    let header: Value = serde_json::from_str(first)
        .with_context(|| format!("{source}:1: not a JSON line of a dlm-tui trace"))?;
    if header["type"] != "run" {
        bail!(
            "{source}:1: a trace starts with a \"run\" line (what ran, on which canvas); this \
             one starts with {:?}. Traces from `dlm-tui generate --json` and the playground's \
             export (F9) have it",
            header["type"].as_str().unwrap_or("something else")
        );
    }
    let at = |line: usize, what: &str| format!("{source}:{line}: {what}");
    let ids = |v: &Value, what: &str| -> Result<Vec<u32>> {
        serde_json::from_value(v.clone()).with_context(|| at(1, what))
    };
    let canvas = ids(&header["canvas"], "\"canvas\" must be a list of token ids")?;
    let mask_id = header["mask_id"]
        .as_u64()
        .ok_or_else(|| anyhow!(at(1, "\"mask_id\" is missing")))? as u32;
    let mut trace = Trace {
        model: header["model"]
            .as_str()
            .unwrap_or("unknown model")
            .to_string(),
        prompt: header["prompt"].as_str().unwrap_or_default().to_string(),
        chat: header["chat"].as_bool().unwrap_or(false),
        prompt_len: header["prompt_len"].as_u64().unwrap_or(0) as usize,
        eos_ids: ids(
            &header["eos_ids"],
            "\"eos_ids\" must be a list of token ids",
        )
        .unwrap_or_default(),
        settings: header["settings"].clone(),
        lanes: Vec::new(),
        canvas,
        mask_id,
    };
    for recipe in header["lanes"].as_array().into_iter().flatten() {
        trace.lanes.push(TraceLane {
            label: recipe["label"].as_str().unwrap_or("lane").to_string(),
            params: serde_json::from_value(recipe["params"].clone()).ok(),
            steps: Vec::new(),
            ending: None,
        });
    }
    let mut canvases: Vec<Vec<u32>> = Vec::new();
    for (index, line) in lines {
        let number = index + 1;
        let value: Value =
            serde_json::from_str(line).with_context(|| at(number, "not a JSON line"))?;
        let lane = value["lane"]
            .as_u64()
            .ok_or_else(|| anyhow!(at(number, "\"lane\" is missing")))? as usize;
        if lane > 64 {
            bail!(at(number, "more lanes than a run can have"));
        }
        while trace.lanes.len() <= lane {
            let n = trace.lanes.len();
            trace.lanes.push(TraceLane {
                label: format!("lane {n}"),
                params: None,
                steps: Vec::new(),
                ending: None,
            });
        }
        while canvases.len() <= lane {
            canvases.push(trace.canvas.clone());
        }
        match value["type"].as_str() {
            Some("step") => {
                let step = read_step(&value, lane, &mut canvases[lane], mask_id)
                    .with_context(|| at(number, "a step line that does not fit the trace"))?;
                trace.lanes[lane].steps.push(step);
            }
            Some(kind) => {
                let ending: Ending = serde_json::from_value(Value::String(kind.into()))
                    .map_err(|_| anyhow!(at(number, &format!("unknown line type {kind:?}"))))?;
                trace.lanes[lane].ending = Some(ending);
            }
            None => bail!(at(number, "\"type\" is missing")),
        }
    }
    if trace.lanes.iter().all(|l| l.steps.is_empty()) {
        bail!("{source} holds no steps: nothing to replay");
    }
    Ok(trace)
}

/// One `step` line as the engine's event, applying its commits and remasks to `canvas`.
fn read_step(value: &Value, lane: usize, canvas: &mut [u32], mask_id: u32) -> Result<StepEvent> {
    let number = |key: &str| {
        value[key]
            .as_u64()
            .ok_or_else(|| anyhow!("\"{key}\" is missing or not a whole number"))
    };
    let committed: Vec<Commit> = serde_json::from_value(value["committed"].clone())
        .context("\"committed\" must list {pos, id, score}")?;
    for c in &committed {
        *canvas
            .get_mut(c.pos)
            .ok_or_else(|| anyhow!("position {} is past the canvas", c.pos))? = c.id;
    }
    let remasked: Vec<usize> = match value.get("remasked") {
        Some(v) => serde_json::from_value(v.clone()).context("\"remasked\" must list positions")?,
        None => Vec::new(),
    };
    for &pos in &remasked {
        *canvas
            .get_mut(pos)
            .ok_or_else(|| anyhow!("remasked position {pos} is past the canvas"))? = mask_id;
    }
    let window = match value["window"].as_array().map(|w| w.as_slice()) {
        Some([start, end]) => {
            start.as_u64().unwrap_or(0) as usize..end.as_u64().unwrap_or(0) as usize
        }
        _ => 0..0,
    };
    let mut scored = Vec::new();
    for s in value["scored"].as_array().into_iter().flatten() {
        let top = s["top"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| Some((t[0].as_u64()? as u32, t[2].as_f64()? as f32)))
            .collect();
        scored.push(Scored {
            pos: s["pos"]
                .as_u64()
                .context("a scored position without \"pos\"")? as usize,
            id: s["id"]
                .as_u64()
                .context("a scored position without \"id\"")? as u32,
            score: s["score"].as_f64().unwrap_or(f64::NAN),
            top,
        });
    }
    Ok(StepEvent {
        lane,
        step: number("step")? as usize,
        steps: number("steps")? as usize,
        canvas: canvas.to_vec(),
        committed,
        masked: number("masked")? as usize,
        nfe: number("nfe")? as usize,
        elapsed: Duration::from_secs_f64(
            value["elapsed_ms"].as_f64().unwrap_or(0.0).max(0.0) / 1e3,
        ),
        speedup: value["speedup"].as_f64().unwrap_or(1.0),
        window,
        scored,
        remasked,
        // A hostile trace's block facts only draw the view: positions past the canvas are
        // dropped there, never indexed.
        blocks: serde_json::from_value(value["blocks"].clone()).ok(),
    })
}
