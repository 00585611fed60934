//! `dlm-tui replay`: a trace written by `generate --json --inspect` reads back into the very
//! events the engine sent, opens in the playground without a model, and bad traces say where
//! they are wrong.

use std::process::Command;

use candle_core::Device;
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use dlm_tui::engine::trace::{read, Ending};
use dlm_tui::engine::{Engine, Event, Job};
use dlm_tui::model::loader::Precision;
use dlm_tui::tui::app::{update, Action, RunState};
use dlm_tui::tui::keymap::KeyMap;
use dlm_tui::tui::theme::{Theme, BUILTIN};
use dlm_tui::tui::views;
use dlm_tui::tui::{replay_app, Options};
use ratatui::backend::TestBackend;
use ratatui::Terminal;

fn dlm(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_dlm-tui"))
        .args(args)
        .env("HF_HUB_OFFLINE", "1")
        .env(
            "HF_HOME",
            std::env::temp_dir().join("dlm-tui-replay-test-hf"),
        )
        .output()
        .expect("running dlm-tui")
}

fn trace_text() -> String {
    let out = dlm(&[
        "generate",
        "--prompt",
        "Once upon a time, [MASK:4] had a dog.",
        "--length",
        "24",
        "--block-length",
        "8",
        "--json",
        "--inspect",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn a_generate_trace_reads_back_into_the_engines_events() {
    let text = trace_text();
    let trace = read(&text, "trace.jsonl").unwrap();
    assert_eq!(trace.lanes.len(), 1);
    let lane = &trace.lanes[0];
    assert_eq!(lane.ending, Some(Ending::Done));
    let params = lane
        .params
        .clone()
        .expect("the run line has the lane's parameters");

    // The same job in process, with the inspector's data: every event matches the trace.
    let loaded = dlm_tui::model::embedded::load(Precision::Auto, &Device::Cpu).unwrap();
    let engine = Engine::new(loaded.model).unwrap();
    let mut handle = engine.submit(Job {
        canvas: trace.canvas.clone(),
        lanes: vec![params],
        inspect: true,
    });
    let mut steps = Vec::new();
    while let Some(event) = handle.events.blocking_recv() {
        match event {
            Event::Step(s) => steps.push(s),
            Event::Finished { .. } => break,
            Event::Failed(e) => panic!("{e}"),
            _ => {}
        }
    }
    assert_eq!(steps.len(), lane.steps.len());
    for (live, read) in steps.iter().zip(&lane.steps) {
        assert_eq!(live.step, read.step);
        assert_eq!(live.steps, read.steps);
        assert_eq!(live.canvas, read.canvas, "step {}", live.step);
        assert_eq!(live.committed, read.committed);
        assert_eq!(live.masked, read.masked);
        assert_eq!(live.window, read.window);
        assert_eq!(live.scored.len(), read.scored.len());
        for (a, b) in live.scored.iter().zip(&read.scored) {
            assert_eq!((a.pos, a.id), (b.pos, b.id));
            assert_eq!(a.top, b.top);
        }
        assert!(!read.scored.is_empty());
    }
    // The last canvas is the done line's.
    let done: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    let tokens: Vec<u32> = serde_json::from_value(done["tokens"].clone()).unwrap();
    assert_eq!(lane.steps.last().unwrap().canvas, tokens);
}

/// The replay app: the run from step 0 at the replay speed, the inspector on a token, and F5
/// refused with the reason.
#[test]
fn the_replay_opens_in_the_playground_without_a_model() {
    let mut trace = read(&trace_text(), "trace.jsonl").unwrap();
    // Times made deterministic for the snapshot.
    for (i, step) in trace.lanes[0].steps.iter_mut().enumerate() {
        step.elapsed = std::time::Duration::from_millis(10 * (i as u64 + 1));
    }
    let codec = dlm_tui::model::embedded::codec().unwrap();
    let themes: Vec<Theme> = BUILTIN
        .iter()
        .map(|(n, _)| Theme::builtin(n).unwrap())
        .collect();
    let options = Options {
        keymap: KeyMap::defaults(),
        themes,
        theme_index: 0,
        theme_forced: true,
        settings: Default::default(),
        session_path: None,
        chat_template: None,
        export_dir: std::env::temp_dir(),
        replay_speed: 20.0,
        presets: Vec::new(),
        load: dlm_tui::tui::ModelLoad {
            precision: dlm_tui::model::loader::Precision::Auto,
            device: dlm_tui::model::DeviceKind::Cpu,
            quantize: None,
        },
        model_folders: Vec::new(),
        beside: None,
        warning: None,
    };
    let mut app = replay_app(codec, &trace, "trace.jsonl", options);
    let run = app.run.as_ref().unwrap();
    assert_eq!(run.state, RunState::Done);
    assert_eq!(run.shown_step(), 0, "a replay starts at the start");
    assert!(run.replaying());
    // Half a second at 20 steps a second.
    update(
        &mut app,
        Action::Tick(std::time::Duration::from_millis(500)),
    );
    assert_eq!(app.run.as_ref().unwrap().shown_step(), 10);
    // Paused there, the inspector opens on that step's first commit.
    update(
        &mut app,
        Action::Key(KeyEvent::new(KeyCode::Char(' '), KeyModifiers::NONE)),
    );
    update(
        &mut app,
        Action::Key(KeyEvent::new(KeyCode::Char('i'), KeyModifiers::NONE)),
    );
    let mut terminal = Terminal::new(TestBackend::new(100, 30)).unwrap();
    terminal
        .draw(|f| {
            let drawn = views::render(&app, f);
            app.drawn = drawn;
        })
        .unwrap();
    let screen = terminal.backend().to_string();
    assert!(screen.contains("committed at step 10"), "{screen}");
    assert!(screen.contains("most likely at step 10:"), "{screen}");
    insta::assert_snapshot!("replay_inspector", screen);
    update(
        &mut app,
        Action::Key(KeyEvent::new(KeyCode::F(5), KeyModifiers::NONE)),
    );
    let message = app
        .message
        .as_ref()
        .map(|m| m.text.clone())
        .unwrap_or_default();
    assert!(message.contains("has no model to run"), "{message}");
}

#[test]
fn broken_traces_say_where() {
    let text = trace_text();
    let mut lines: Vec<&str> = text.lines().collect();
    // No run line.
    let err = read(&lines[1..].join("\n"), "t.jsonl").unwrap_err();
    assert!(
        format!("{err:#}").contains("t.jsonl:1: a trace starts with a \"run\" line"),
        "{err:#}"
    );
    // A broken third line.
    lines[2] = "{not json";
    let err = read(&lines.join("\n"), "t.jsonl").unwrap_err();
    assert!(
        format!("{err:#}").contains("t.jsonl:3: not a JSON line"),
        "{err:#}"
    );
    // A commit past the canvas.
    let text = text.replacen("\"pos\":", "\"pos\":99999,\"x\":", 1);
    let err = read(&text, "t.jsonl").unwrap_err();
    assert!(format!("{err:#}").contains("past the canvas"), "{err:#}");
    // Only the run line.
    let err = read(text.lines().next().unwrap(), "t.jsonl").unwrap_err();
    assert!(format!("{err:#}").contains("no steps"), "{err:#}");
}

#[test]
fn the_command_explains_what_it_needs() {
    let out = dlm(&["replay", "/nonexistent/run.jsonl"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("reading /nonexistent/run.jsonl"));
    // A trace of a model whose tokenizer is not here.
    let dir = std::env::temp_dir().join(format!("dlm-tui-replay-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("other.jsonl");
    let text = trace_text().replacen(
        "\"model\":\"dlm-tui default (TinyStories)\"",
        "\"model\":\"someone/some-model\"",
        1,
    );
    std::fs::write(&path, text).unwrap();
    let out = dlm(&["replay", path.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--model-dir"), "{stderr}");
    // Given the tokenizer's folder, it gets as far as wanting a terminal.
    let out = dlm(&[
        "replay",
        path.to_str().unwrap(),
        "--model-dir",
        concat!(env!("CARGO_MANIFEST_DIR"), "/models/default"),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("needs a terminal"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A block-diffusion run's trace keeps each step's block facts (blocks, cache, sub-block,
/// bridge), so a replay draws the block view; a trace without them (older, or a canvas model's)
/// reads as before.
#[test]
fn a_block_models_trace_keeps_its_blocks() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fast-dllm-v2-tiny");
    let out = dlm(&[
        "generate",
        "--model-dir",
        dir.to_str().unwrap(),
        "--prompt",
        "Once upon a time",
        "--length",
        "40",
        "--json",
        "--inspect",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let trace = read(&text, "trace.jsonl").unwrap();
    let steps = &trace.lanes[0].steps;
    assert!(steps.iter().all(|s| s.blocks.is_some()));
    assert!(steps
        .iter()
        .any(|s| s.blocks.as_ref().unwrap().sub_block.is_some()));
    // One block of 32 and the bridge token after it, all cached at the end.
    let last = steps.last().unwrap().blocks.clone().unwrap();
    assert_eq!(last.blocks, vec![0..32]);
    assert_eq!(last.cached, 33);
    let canvas_model = read(&trace_text(), "trace.jsonl").unwrap();
    assert!(canvas_model.lanes[0]
        .steps
        .iter()
        .all(|s| s.blocks.is_none()));
}
