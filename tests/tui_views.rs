//! Snapshots of every view and state of the playground, drawn with ratatui's TestBackend from
//! real engine events (the tiny fixture model, so the text itself is noise).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use candle_core::Device;
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use dlm_tui::engine::{Engine, Event, Job};
use dlm_tui::model::loader::{load_dir, Precision};
use dlm_tui::tui::app::{update, Action, App, Colouring, Focus};
use dlm_tui::tui::keymap::{KeyMap, Scope};
use dlm_tui::tui::theme::{Theme, BUILTIN};
use dlm_tui::tui::views;
use ratatui::backend::TestBackend;
use ratatui::Terminal;

fn fixture() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/llada-tiny-gqa")
}

/// An app on the fixture model, plus the engine that runs its jobs.
fn app() -> (App, Engine) {
    app_on(&fixture())
}

/// An app on the model in `dir` (every built-in theme, the default keys), plus its engine.
fn app_on(dir: &Path) -> (App, Engine) {
    let loaded = load_dir(dir, Precision::F32, &Device::Cpu).unwrap();
    let info = loaded.model.info().clone();
    let themes: Vec<Theme> = BUILTIN
        .iter()
        .map(|(n, _)| Theme::builtin(n).unwrap())
        .collect();
    let app = App::new(Arc::new(loaded.codec), info, KeyMap::defaults(), themes, 0);
    (app, Engine::new(loaded.model).unwrap())
}

fn key(code: KeyCode) -> Action {
    Action::Key(KeyEvent::new(code, KeyModifiers::NONE))
}

fn ctrl(c: char) -> Action {
    Action::Key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL))
}

/// A mouse event at a cell, without modifiers.
fn mouse(kind: crossterm::event::MouseEventKind, column: u16, row: u16) -> Action {
    Action::Mouse(crossterm::event::MouseEvent {
        kind,
        column,
        row,
        modifiers: KeyModifiers::NONE,
    })
}

fn type_text(app: &mut App, text: &str) {
    update(app, Action::Paste(text.to_string()));
}

/// F10, and the scan the runtime does for it, answered.
fn open_picker(app: &mut App) {
    use dlm_tui::tui::app::{Effect, Picker};
    for effect in update(app, key(KeyCode::F(10))) {
        if let Effect::ScanModels { cache, folders } = effect {
            let entries = Picker::scan(cache.as_deref(), &folders);
            update(app, Action::Models(entries));
        }
    }
}

fn draw(app: &mut App, width: u16, height: u16) -> String {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal
        .draw(|f| {
            let drawn = views::render(app, f);
            app.drawn = drawn;
        })
        .unwrap();
    terminal.backend().to_string()
}

/// Presses F5 and collects the job's events (elapsed times made deterministic).
/// The job F5 submitted (with its autosave), from the effects of the update.
fn submitted(effects: &[dlm_tui::tui::app::Effect]) -> Job {
    match effects {
        [dlm_tui::tui::app::Effect::Submit(job), dlm_tui::tui::app::Effect::Save] => job.clone(),
        other => panic!("expected a job, got {other:?}"),
    }
}

/// Runs F5's job and shows its first three steps, then cancels it (Esc, and the engine's
/// answer).
fn cancel_after_three_steps(app: &mut App, engine: &Engine) {
    let events = run(app, engine);
    for e in events
        .iter()
        .filter(|e| matches!(e, Event::Step(_)))
        .take(3)
        .cloned()
    {
        update(app, Action::Engine(e));
    }
    assert_eq!(
        update(app, key(KeyCode::Esc)),
        vec![dlm_tui::tui::app::Effect::Cancel]
    );
    update(app, Action::Engine(Event::Cancelled));
}

fn run(app: &mut App, engine: &Engine) -> Vec<Event> {
    let job = submitted(&update(app, key(KeyCode::F(5))));
    let mut handle = engine.submit(job);
    let mut events = Vec::new();
    while let Some(mut e) = handle.events.blocking_recv() {
        let last = matches!(
            e,
            Event::Finished { .. } | Event::Cancelled | Event::Failed(_)
        );
        match &mut e {
            Event::Step(s) => s.elapsed = Duration::from_millis(10 * s.step as u64),
            Event::LaneDone(s) => s.elapsed = Duration::from_millis(10 * s.steps as u64),
            Event::Finished { elapsed } => *elapsed = Duration::from_millis(500),
            _ => {}
        }
        events.push(e);
        if last {
            break;
        }
    }
    events
}

/// Presses F5 and feeds the whole run to the app.
fn run_to_end(app: &mut App, engine: &Engine) {
    for e in run(app, engine) {
        update(app, Action::Engine(e));
    }
}

fn prepared() -> (App, Engine) {
    let (mut app, engine) = app();
    type_text(
        &mut app,
        "Once upon a time, Tom had a red ball.\nHe played [MASK:3] day.",
    );
    app.settings.length = 16;
    app.settings.params.block_length = 8;
    (app, engine)
}

#[test]
fn idle() {
    let (mut app, _engine) = prepared();
    insta::assert_snapshot!(draw(&mut app, 100, 24));
}

#[test]
fn running_midway_then_done_then_scrubbed() {
    let (mut app, engine) = prepared();
    let events = run(&mut app, &engine);
    let steps = events
        .iter()
        .filter(|e| matches!(e, Event::Step(_)))
        .count();
    for e in events.iter().take(steps / 2).cloned() {
        update(&mut app, Action::Engine(e));
    }
    insta::assert_snapshot!("running", draw(&mut app, 100, 24));
    for e in events.iter().skip(steps / 2).cloned() {
        update(&mut app, Action::Engine(e));
    }
    insta::assert_snapshot!("done", draw(&mut app, 100, 24));
    update(
        &mut app,
        Action::Key(KeyEvent::new(KeyCode::PageUp, KeyModifiers::CONTROL)),
    );
    update(&mut app, key(KeyCode::PageDown));
    insta::assert_snapshot!("scrubbed_to_step_1", draw(&mut app, 100, 24));
}

#[test]
fn cancelled_keeps_the_partial_canvas() {
    let (mut app, engine) = prepared();
    cancel_after_three_steps(&mut app, &engine);
    insta::assert_snapshot!(draw(&mut app, 100, 24));
}

/// Issue 29, item 7: cancel, F6 (the partial text into the editor, its masks as spans), F5 goes
/// on from it: the same canvas size, no second generation region appended.
#[test]
fn a_cancelled_run_applied_with_f6_goes_on_with_f5() {
    let (mut app, engine) = prepared();
    cancel_after_three_steps(&mut app, &engine);
    let first = app.run.as_ref().unwrap().initial.len();
    update(&mut app, key(KeyCode::F(6)));
    assert!(app.continuing);
    let screen = draw(&mut app, 100, 24);
    assert!(screen.contains("F5 continues"), "{screen}");
    let job = submitted(&update(&mut app, key(KeyCode::F(5))));
    let masks = job
        .canvas
        .iter()
        .filter(|&&t| t == app.model.mask_id)
        .count();
    assert!(masks > 0 && masks < 16 + 3, "{masks} masks");
    assert!(
        job.canvas.len() <= first + 1,
        "{} tokens after F6, {first} in the cancelled run",
        job.canvas.len()
    );
    assert!(!app.continuing, "the next F5 appends its region again");
}

/// Issue 29, item 2: the live panel's key hints (when it has focus) and scroll marks never draw
/// over F2's legend, at any size.
#[test]
fn the_colour_legend_stays_whole_beside_the_hints() {
    let (mut app, engine) = prepared();
    run_to_end(&mut app, &engine);
    app.focus = Focus::Live;
    update(&mut app, key(KeyCode::F(2)));
    for (w, h) in [(80, 24), (100, 24), (140, 40)] {
        let screen = draw(&mut app, w, h);
        assert!(
            screen.contains("confidence <.25 <.5 <.8 ≥.8"),
            "{w}x{h}:\n{screen}"
        );
    }
    update(&mut app, key(KeyCode::F(2)));
    let screen = draw(&mut app, 80, 24);
    assert!(screen.contains("committed at step "), "{screen}");
}

/// Issue 29, item 6: at 80x24 every parameter stays in view when selected (the last rows used
/// to hide under the "↓ more" line).
#[test]
fn the_selected_parameter_is_always_in_view() {
    use dlm_tui::run::Field;
    let (mut app, _engine) = prepared();
    app.focus = Focus::Params;
    for (i, field) in Field::ALL.iter().enumerate() {
        app.form.row = i;
        for (w, h) in [(80, 24), (140, 40)] {
            let screen = draw(&mut app, w, h);
            assert!(
                screen.contains(&format!("›{}", field.label())),
                "{} at {w}x{h}:\n{screen}",
                field.label()
            );
        }
    }
}

/// Issue 33, item 6: a failed run's reason stays on its lane after the next keystroke (the
/// message line forgets it then).
#[test]
fn a_failed_runs_reason_stays_on_its_lane() {
    let (mut app, engine) = prepared();
    let events = run(&mut app, &engine);
    if let Some(first) = events.iter().find(|e| matches!(e, Event::Step(_))) {
        update(&mut app, Action::Engine(first.clone()));
    }
    update(
        &mut app,
        Action::Engine(Event::Failed("the model produced NaN".into())),
    );
    update(&mut app, key(KeyCode::Left));
    let screen = draw(&mut app, 100, 24);
    assert!(
        screen.contains("failed: the model produced NaN"),
        "{screen}"
    );
}

#[test]
fn compare_two_strategies() {
    let (mut app, engine) = prepared();
    update(&mut app, key(KeyCode::F(7)));
    for e in run(&mut app, &engine) {
        update(&mut app, Action::Engine(e));
    }
    assert_eq!(app.run.as_ref().unwrap().lanes.len(), 2);
    insta::assert_snapshot!(draw(&mut app, 120, 24));
}

#[test]
fn confidence_colours_and_light_theme() {
    let (mut app, engine) = prepared();
    for e in run(&mut app, &engine) {
        update(&mut app, Action::Engine(e));
    }
    update(&mut app, key(KeyCode::F(2)));
    update(&mut app, key(KeyCode::F(8)));
    assert_eq!(app.theme().name, "light");
    let mut terminal = Terminal::new(TestBackend::new(100, 24)).unwrap();
    terminal
        .draw(|f| {
            views::render(&app, f);
        })
        .unwrap();
    // Styles differ by confidence: more than one foreground among committed tokens.
    let buffer = terminal.backend().buffer().clone();
    let fgs: std::collections::BTreeSet<String> = buffer
        .content
        .iter()
        .map(|c| format!("{:?}", c.fg))
        .collect();
    assert!(fgs.len() > 6, "{fgs:?}");
}

#[test]
fn help_overlay() {
    let (mut app, _engine) = prepared();
    update(&mut app, key(KeyCode::F(1)));
    assert!(app.help_open());
    // Tall enough for every scope's keys.
    let screen = draw(&mut app, 100, 140);
    for scope in Scope::ALL {
        assert!(
            screen.contains(scope.title()),
            "{scope:?} missing from help"
        );
        for (keys, what) in app.keymap.help_rows(scope) {
            assert!(screen.contains(&keys), "{keys} missing from help");
            assert!(
                screen.contains(&what[..20.min(what.len())]),
                "{what} missing"
            );
        }
    }
    let screen = draw(&mut app, 100, 30);
    insta::assert_snapshot!(screen);
    update(&mut app, key(KeyCode::Char('x')));
    assert!(!app.help_open());
    assert!(
        !app.doc.to_prompt().ends_with('x'),
        "closing keys do not type"
    );
}

#[test]
fn errors_show_in_the_status_bar() {
    let (mut app, _engine) = app();
    // Nothing masked and no generation region: the run is refused with a message.
    type_text(&mut app, "No masks here.");
    app.settings.length = 0;
    assert!(update(&mut app, key(KeyCode::F(5))).is_empty());
    let screen = draw(&mut app, 100, 24);
    assert!(screen.contains("nothing to denoise"), "{screen}");
    // A failing model shows its error and the app keeps its text.
    app.settings.length = 8;
    update(&mut app, key(KeyCode::F(5)));
    update(
        &mut app,
        Action::Engine(Event::Failed("the model task panicked: boom".into())),
    );
    let screen = draw(&mut app, 100, 24);
    assert!(screen.contains("boom"), "{screen}");
    assert_eq!(app.doc.to_prompt(), "No masks here.");
    // The key legend stays in view beside a message, and the next key clears the message.
    assert!(screen.contains("F5 run"), "{screen}");
    insta::assert_snapshot!(screen);
    // The next key clears the message line; the failed lane keeps its reason (issue 33, 6).
    update(&mut app, key(KeyCode::Left));
    let screen = draw(&mut app, 100, 24);
    assert!(!screen.contains("the model failed"), "{screen}");
    assert!(
        screen.contains("failed: the model task panicked: boom"),
        "{screen}"
    );
    assert!(screen.contains("llada-tiny-gqa"), "{screen}");
}

#[test]
fn too_small_terminal_says_so() {
    let (mut app, _engine) = prepared();
    let screen = draw(&mut app, 40, 10);
    assert!(screen.contains("too small"), "{screen}");
    insta::assert_snapshot!(screen);
}

#[test]
fn prompt_longer_than_the_context_is_refused() {
    let (mut app, _engine) = app();
    type_text(&mut app, &"word ".repeat(400));
    assert!(update(&mut app, key(KeyCode::F(5))).is_empty());
    let message = app.message.as_ref().unwrap().text.clone();
    assert!(message.contains("at most 256"), "{message}");
}

#[test]
fn editing_masks_and_parameters_by_keys() {
    let (mut app, _engine) = app();
    type_text(&mut app, "Tom has a red ball.");
    for _ in 0..6 {
        update(&mut app, key(KeyCode::Left));
    }
    for _ in 0..3 {
        update(
            &mut app,
            Action::Key(KeyEvent::new(KeyCode::Left, KeyModifiers::SHIFT)),
        );
    }
    update(&mut app, ctrl('k'));
    // The span gets as many tokens as the selected text had (as " red", after a space).
    let n = app.codec().span_tokens("red", true);
    assert_eq!(app.doc.to_prompt(), format!("Tom has a [MASK:{n}] ball."));
    update(
        &mut app,
        Action::Key(KeyEvent::new(KeyCode::Up, KeyModifiers::CONTROL)),
    );
    assert_eq!(
        app.doc.to_prompt(),
        format!("Tom has a [MASK:{}] ball.", n + 1)
    );
    update(&mut app, ctrl('z'));
    update(&mut app, ctrl('z'));
    assert_eq!(app.doc.to_prompt(), "Tom has a red ball.");
    // Tab to the parameters, type a temperature, refuse a bad one.
    update(&mut app, key(KeyCode::Tab));
    assert_eq!(app.focus, Focus::Params);
    for _ in 0..3 {
        update(&mut app, key(KeyCode::Down));
    }
    // Typing starts a new value (Enter would edit the current one in place).
    assert_ne!(app.settings.params.temperature, 0.3);
    for c in "0.3".chars() {
        update(&mut app, key(KeyCode::Char(c)));
    }
    update(&mut app, key(KeyCode::Enter));
    assert_eq!(app.settings.params.temperature, 0.3);
    update(&mut app, key(KeyCode::Enter));
    update(&mut app, key(KeyCode::Char('x')));
    update(&mut app, key(KeyCode::Enter));
    assert!(app.message.as_ref().unwrap().text.contains("temperature"));
    assert_eq!(app.settings.params.temperature, 0.3);
}

#[test]
fn mouse_drag_selects_wrapped_text() {
    use crossterm::event::{MouseButton, MouseEventKind};
    let (mut app, _engine) = app();
    let long = "Once upon a time there was a girl who liked to run and jump and play in the sun all day long.";
    type_text(&mut app, long);
    draw(&mut app, 80, 24);
    let area = app.drawn.editor;
    assert!(
        area.width < long.len() as u16,
        "the text must wrap in this test"
    );
    // Drag over "Once" on the first row, then over the first 3 characters of the second row.
    update(
        &mut app,
        mouse(MouseEventKind::Down(MouseButton::Left), area.x, area.y),
    );
    update(
        &mut app,
        mouse(MouseEventKind::Drag(MouseButton::Left), area.x + 4, area.y),
    );
    assert_eq!(app.doc.selection(), Some((0, 4)));
    update(
        &mut app,
        mouse(MouseEventKind::Down(MouseButton::Left), area.x, area.y + 1),
    );
    update(
        &mut app,
        mouse(
            MouseEventKind::Drag(MouseButton::Left),
            area.x + 3,
            area.y + 1,
        ),
    );
    let (start, end) = app.doc.selection().unwrap();
    assert_eq!(end - start, 3);
    assert!(
        start > 30,
        "the second row starts after the first row's width: {start}"
    );
    update(&mut app, ctrl('k'));
    assert!(app.doc.to_prompt().contains("[MASK"));
}

#[test]
fn export_writes_json_lines_in_the_generate_schema_and_text() {
    let (mut app, engine) = prepared();
    for e in run(&mut app, &engine) {
        update(&mut app, Action::Engine(e));
    }
    let dir = std::env::temp_dir().join(format!("dlm-export-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let written = dlm_tui::tui::session::export(&app, &dir).unwrap();
    assert!(written.contains("dlm-tui-run-1.jsonl"), "{written}");
    let jsonl = std::fs::read_to_string(dir.join("dlm-tui-run-1.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = jsonl
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let steps = lines.iter().filter(|l| l["type"] == "step").count();
    assert_eq!(steps, app.run.as_ref().unwrap().lanes[0].frames.len());
    let done = lines.last().unwrap();
    assert_eq!(done["type"], "done");
    for key in ["tokens", "prompt_len", "text", "nfe", "elapsed_ms"] {
        assert!(!done[key].is_null(), "done line lacks {key}");
    }
    for key in [
        "lane",
        "step",
        "steps",
        "committed",
        "masked",
        "nfe",
        "elapsed_ms",
        "text",
    ] {
        assert!(!lines[1][key].is_null(), "step line lacks {key}");
    }
    // The first line says what ran, so the run can be reproduced.
    let header = &lines[0];
    assert_eq!(header["type"], "run");
    assert_eq!(header["model"], "llada-tiny-gqa");
    assert_eq!(header["prompt"], app.doc.to_prompt());
    assert_eq!(header["settings"]["length"], 16);
    assert_eq!(header["lanes"][0]["params"]["block_length"], 8);
    assert_eq!(header["lanes"][0]["label"], "low-confidence");
    assert_eq!(
        header["canvas"].as_array().unwrap().len(),
        app.run.as_ref().unwrap().initial.len()
    );
    let text = std::fs::read_to_string(dir.join("dlm-tui-run-1.txt")).unwrap();
    assert!(
        text.starts_with("Once upon a time, Tom had a red ball."),
        "{text}"
    );
    // A second export does not overwrite the first.
    assert!(dlm_tui::tui::session::export(&app, &dir)
        .unwrap()
        .contains("run-2"));
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn compare_lanes_may_carry_their_own_parameters() {
    let (mut app, _engine) = prepared();
    use dlm_tui::run::Field;
    Field::Compare
        .set(
            &mut app.settings,
            "low-confidence, low-confidence:block-length=4:temperature=0.5",
        )
        .unwrap();
    update(&mut app, key(KeyCode::F(7)));
    let effects = update(&mut app, key(KeyCode::F(5)));
    let dlm_tui::tui::app::Effect::Submit(job) = &effects[0] else {
        panic!("{effects:?}")
    };
    assert_eq!(job.lanes.len(), 2);
    assert_eq!(
        (job.lanes[0].block_length, job.lanes[0].temperature),
        (8, app.settings.params.temperature)
    );
    assert_eq!(
        (job.lanes[1].block_length, job.lanes[1].temperature),
        (4, 0.5)
    );
    assert_eq!(job.lanes[0].seed, job.lanes[1].seed);
    let labels: Vec<&str> = app
        .run
        .as_ref()
        .unwrap()
        .lanes
        .iter()
        .map(|l| l.label.as_str())
        .collect();
    assert_eq!(
        labels,
        vec![
            "low-confidence",
            "low-confidence:block-length=4:temperature=0.5"
        ]
    );
}

#[test]
fn cache_and_threshold_are_parameters_and_lanes_show_the_speedup() {
    let (mut app, engine) = prepared();
    use dlm_tui::run::Field;
    use dlm_tui::sampler::CacheMode;
    Field::Cache.set(&mut app.settings, "dual").unwrap();
    assert_eq!(app.settings.params.cache, CacheMode::Dual);
    let err = Field::Cache.set(&mut app.settings, "both").unwrap_err();
    assert!(err.contains("cache") && err.contains("dual"), "{err}");
    Field::Cache.adjust(&mut app.settings, true).unwrap();
    assert_eq!(app.settings.params.cache, CacheMode::None);
    Field::Compare
        .set(
            &mut app.settings,
            "low-confidence, low-confidence:cache=dual:threshold=0.12",
        )
        .unwrap();
    update(&mut app, key(KeyCode::F(7)));
    let events = run(&mut app, &engine);
    let mut lanes: Vec<dlm_tui::engine::LaneSummary> = events
        .iter()
        .filter_map(|e| match e {
            Event::LaneDone(s) => Some(s.clone()),
            _ => None,
        })
        .collect();
    lanes.sort_by_key(|l| l.lane);
    for e in events {
        update(&mut app, Action::Engine(e));
    }
    let speedups: Vec<f64> = lanes.iter().map(|l| l.speedup).collect();
    assert!((speedups[0] - 1.0).abs() < 1e-9, "{speedups:?}");
    assert!(speedups[1] > 1.5, "{speedups:?}");
    assert!(lanes[1].nfe < lanes[0].nfe);
    let screen = draw(&mut app, 120, 24);
    assert!(screen.contains(&format!("{:.1}x", speedups[1])), "{screen}");
}

#[test]
fn chat_mode_wraps_the_text_in_the_models_template() {
    // Without a template (the LLaDA fixture), F3 says why it cannot chat.
    let (mut app, _engine) = app();
    update(&mut app, key(KeyCode::F(3)));
    assert!(!app.chat_mode);
    assert!(app
        .message
        .as_ref()
        .unwrap()
        .text
        .contains("no chat template"));

    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dream-tiny-gqa");
    let (mut app, _engine) = app_on(&dir);
    app.chat_template = dlm_tui::chat::ChatTemplate::from_model_dir(&dir).unwrap();
    type_text(&mut app, "Tell me a story about a cat.");
    app.settings.length = 6;
    update(&mut app, key(KeyCode::F(3)));
    assert!(app.chat_mode);
    assert!(draw(&mut app, 100, 24).contains("chat"));
    let effects = update(&mut app, key(KeyCode::F(5)));
    let dlm_tui::tui::app::Effect::Submit(job) = &effects[0] else {
        panic!("{effects:?}")
    };
    // The canvas is transformers' apply_chat_template ids, then the answer's masks.
    let golden: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/golden/chat_template.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let expected: Vec<u32> = golden["cases"][0]["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect();
    assert_eq!(&job.canvas[..expected.len()], expected.as_slice());
    assert_eq!(&job.canvas[expected.len()..], &[304; 6]);
    // F3 again: the text is the canvas.
    update(&mut app, key(KeyCode::F(3)));
    assert!(!app.chat_mode);
}

#[test]
fn hub_download_panel() {
    use dlm_tui::hub::DownloadProgress;
    use dlm_tui::tui::download::{render, DownloadView};
    let theme = Theme::builtin("dark").unwrap();
    let mut view = DownloadView {
        spec: "GSAI-ML/LLaDA-8B-Instruct".into(),
        endpoint: "https://huggingface.co".into(),
        cache_dir: "/home/user/.cache/huggingface/hub".into(),
        progress: DownloadProgress::default(),
        elapsed: Duration::from_secs(1),
    };
    let mut terminal = Terminal::new(TestBackend::new(90, 16)).unwrap();
    terminal
        .draw(|f| render(&view, &theme, f, f.area()))
        .unwrap();
    insta::assert_snapshot!("hub_download_listing", terminal.backend().to_string());
    view.progress = DownloadProgress {
        total_files: 9,
        total_bytes: 16 << 30,
        done_bytes: 6 << 30,
        done_files: 4,
        current: Some("model-00003-of-00006.safetensors".into()),
    };
    view.elapsed = Duration::from_secs(120);
    terminal
        .draw(|f| render(&view, &theme, f, f.area()))
        .unwrap();
    insta::assert_snapshot!("hub_download_midway", terminal.backend().to_string());
}

/// A paste far beyond the model's context is refused at once with a token count, and the
/// editor keeps what it had; one that fits goes in, CR line ends as newlines.
#[test]
fn a_huge_paste_is_refused_with_its_token_count() {
    let (mut app, _engine) = app();
    type_text(&mut app, "Keep me.");
    type_text(&mut app, &"word ".repeat(2_000_000));
    assert_eq!(app.doc.to_prompt(), "Keep me.");
    let message = app
        .message
        .as_ref()
        .map(|m| m.text.clone())
        .unwrap_or_default();
    assert!(
        message.contains("not pasted") && message.contains("tokens"),
        "{message}"
    );
    type_text(&mut app, " A\rB");
    assert_eq!(app.doc.to_prompt(), "Keep me. A\nB");
    let screen = draw(&mut app, 80, 24);
    assert!(screen.contains("Keep me. A"), "{screen}");
}

/// After Esc, F6 keeps the positions still masked as spans (so F5 goes on from there) and F9
/// marks the export as cancelled, not done.
#[test]
fn a_cancelled_run_applies_with_its_masks_and_exports_as_cancelled() {
    let (mut app, engine) = prepared();
    let events = run(&mut app, &engine);
    for e in events
        .iter()
        .filter(|e| matches!(e, Event::Step(_)))
        .take(2)
        .cloned()
    {
        update(&mut app, Action::Engine(e));
    }
    update(&mut app, key(KeyCode::Esc));
    update(&mut app, Action::Engine(Event::Cancelled));
    let dir = std::env::temp_dir().join(format!("dlm-export-cancel-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dlm_tui::tui::session::export(&app, &dir).unwrap();
    let jsonl = std::fs::read_to_string(dir.join("dlm-tui-run-1.jsonl")).unwrap();
    let last: serde_json::Value = serde_json::from_str(jsonl.lines().last().unwrap()).unwrap();
    assert_eq!(last["type"], "cancelled");
    assert!(last["masked"].as_u64().unwrap() > 0, "{last}");
    std::fs::remove_dir_all(&dir).ok();

    update(&mut app, key(KeyCode::F(6)));
    assert!(app.doc.mask_count() > 0, "{}", app.doc.to_prompt());
    assert!(
        app.doc.to_prompt().contains("[MASK"),
        "{}",
        app.doc.to_prompt()
    );
    // The run can go on from the partial text.
    assert!(matches!(
        update(&mut app, key(KeyCode::F(5))).as_slice(),
        [
            dlm_tui::tui::app::Effect::Submit(_),
            dlm_tui::tui::app::Effect::Save
        ]
    ));
}

/// F4 re-rolls (a new seed, shown, and a run); with `advance_seed` every F5 after the first
/// uses the next seed.
#[test]
fn reroll_and_advancing_seeds() {
    let (mut app, engine) = prepared();
    let before = app.settings.params.seed;
    let effects = update(&mut app, key(KeyCode::F(4)));
    assert!(matches!(
        effects.as_slice(),
        [
            dlm_tui::tui::app::Effect::Submit(_),
            dlm_tui::tui::app::Effect::Save
        ]
    ));
    let seed = app.settings.params.seed;
    assert_ne!(seed, before);
    let message = app
        .message
        .as_ref()
        .map(|m| m.text.clone())
        .unwrap_or_default();
    assert!(message.contains(&format!("seed {seed}")), "{message}");
    update(&mut app, Action::Engine(Event::Cancelled));

    app.settings.advance_seed = true;
    for e in run(&mut app, &engine) {
        update(&mut app, Action::Engine(e));
    }
    assert_eq!(app.settings.params.seed, seed + 1);
    for e in run(&mut app, &engine) {
        update(&mut app, Action::Engine(e));
    }
    assert_eq!(app.settings.params.seed, seed + 2);
}

/// The parameters panel scrolls to keep the selected row in view, says how many rows are out of
/// sight, and keeps its footer.
#[test]
fn the_parameters_panel_scrolls_to_the_selected_row() {
    let (mut app, _engine) = prepared();
    update(&mut app, key(KeyCode::Tab));
    for _ in 0..30 {
        update(&mut app, key(KeyCode::Down));
    }
    let screen = draw(&mut app, 80, 16);
    assert!(screen.contains("compare      low-"), "{screen}");
    assert!(screen.contains("↑") && screen.contains("more"), "{screen}");
    assert!(screen.contains("compare off"), "{screen}");
    for _ in 0..30 {
        update(&mut app, key(KeyCode::Up));
    }
    let screen = draw(&mut app, 80, 16);
    assert!(
        screen.contains("length") && screen.contains("↓"),
        "{screen}"
    );
}

/// A canvas taller than the live panel: the panel follows the newest commits while the run
/// goes, scrolls with Up/Down and the wheel once the user takes over (saying so on its border),
/// and End follows the run again.
#[test]
fn the_live_panel_follows_the_run_and_scrolls_when_asked() {
    use crossterm::event::MouseEventKind;
    let (mut app, engine) = app();
    // A prompt of many short lines, then the generation region below them.
    type_text(&mut app, &"Tom ran.\n".repeat(16));
    app.settings.length = 120;
    app.settings.params.block_length = 8;
    let events = run(&mut app, &engine);
    let steps = events
        .iter()
        .filter(|e| matches!(e, Event::Step(_)))
        .count();
    // Three quarters through: the newest commits are far below the panel's first rows.
    for e in events.iter().take(steps * 3 / 4).cloned() {
        update(&mut app, Action::Engine(e));
    }
    let screen = draw(&mut app, 80, 24);
    let live = app.drawn.live;
    assert!(live.rows > live.height as usize, "{screen}");
    assert!(live.scroll > 0, "the panel stayed at the top:\n{screen}");
    assert!(screen.contains("following"), "{screen}");
    let followed = live.scroll;

    app.focus = Focus::Live;
    update(&mut app, key(KeyCode::Up));
    update(&mut app, key(KeyCode::Up));
    let screen = draw(&mut app, 80, 24);
    assert_eq!(app.drawn.live.scroll, followed - 2);
    assert!(screen.contains("scrolled"), "{screen}");
    // More steps arrive: a scrolled panel stays where the user put it.
    for e in events.iter().skip(steps * 3 / 4).take(4).cloned() {
        update(&mut app, Action::Engine(e));
    }
    draw(&mut app, 80, 24);
    assert_eq!(app.drawn.live.scroll, followed - 2);

    let down = mouse(
        MouseEventKind::ScrollDown,
        app.drawn.live.x + 1,
        app.drawn.live.y + 1,
    );
    update(&mut app, down);
    draw(&mut app, 80, 24);
    let max = app.drawn.live.rows - app.drawn.live.height as usize;
    assert_eq!(app.drawn.live.scroll, (followed + 1).min(max));

    update(&mut app, key(KeyCode::End));
    assert_eq!(app.live_scroll, None);
    let screen = draw(&mut app, 80, 24);
    assert!(screen.contains("following"), "{screen}");
}

/// Comparison lanes are diffed token-aligned: one word inserted early does not make everything
/// after it "disagree", and each lane gets an agreement figure.
#[test]
fn lanes_are_compared_token_aligned() {
    use dlm_tui::engine::LaneSummary;
    use dlm_tui::tui::app::{common_subsequence, LaneView, RunState, RunView};
    assert_eq!(
        common_subsequence(&[1, 2, 3, 4, 5], &[9, 1, 2, 3, 4]),
        [true, true, true, true, false]
    );
    const M: u32 = 0;
    let lane = |label: &str, canvas: Vec<u32>| LaneView {
        label: label.into(),
        frames: Vec::new(),
        summary: Some(LaneSummary {
            lane: 0,
            canvas,
            steps: 5,
            nfe: 5,
            elapsed: Duration::ZERO,
            mean_score: 0.5,
            speedup: 1.0,
            completion_tokens: None,
        }),
    };
    let run = RunView {
        recipe: Default::default(),
        initial: vec![7, M, M, M, M, M],
        prompt_len: 1,
        lanes: vec![
            lane("a", vec![7, 1, 2, 3, 4, 5]),
            lane("b", vec![7, 9, 1, 2, 3, 4]),
        ],
        state: RunState::Done,
        cursor: None,
        paced: false,
        head: 0.0,
        agreement: Vec::new(),
        elapsed: Duration::ZERO,
    };
    let agreements = run.agreements(M);
    let a = agreements[0].as_ref().unwrap();
    let b = agreements[1].as_ref().unwrap();
    assert_eq!(a.disagree, [false, false, false, false, false, true]);
    assert_eq!(b.disagree, [false, true, false, false, false, false]);
    assert!((a.rate - 0.8).abs() < 1e-9 && (b.rate - 0.8).abs() < 1e-9);
}

/// `?` opens the help outside the editor (in it, `?` is text); a short terminal scrolls the
/// help instead of cutting it off.
#[test]
fn help_opens_with_question_mark_and_scrolls() {
    let (mut app, _engine) = prepared();
    app.focus = Focus::Params;
    update(&mut app, key(KeyCode::Char('?')));
    assert!(app.help_open());
    let screen = draw(&mut app, 80, 24);
    assert!(screen.contains("Up/Down scroll"), "{screen}");
    assert!(!screen.contains("other keys close it"), "{screen}");
    for _ in 0..200 {
        update(&mut app, key(KeyCode::Down));
    }
    let screen = draw(&mut app, 80, 24);
    assert!(app.help_open());
    assert!(screen.contains("other keys close it"), "{screen}");
    update(&mut app, key(KeyCode::Char('x')));
    assert!(!app.help_open());
    app.focus = Focus::Editor;
    update(&mut app, key(KeyCode::Char('?')));
    assert!(!app.help_open());
    assert!(app.doc.to_prompt().ends_with('?'));
}

/// The editor's title counts the next run's tokens against the context, so an oversized span
/// shows before F5; function-key actions have Ctrl alternatives.
#[test]
fn the_editor_counts_tokens_and_keys_have_alternatives() {
    let (mut app, _engine) = prepared();
    let screen = draw(&mut app, 100, 24);
    let counted = app.canvas_len().unwrap();
    assert!(
        screen.contains(&format!("{counted}/256 tokens")),
        "{screen}"
    );
    type_text(&mut app, "[MASK:9999]");
    let screen = draw(&mut app, 100, 24);
    assert!(screen.contains("tokens: too long"), "{screen}");
    // (A span holds at most 512 tokens.)
    assert!(app.canvas_len().unwrap() > counted + 500);
    // Ctrl-F toggles confidence colours (and shows their legend), Ctrl-N the theme.
    update(&mut app, ctrl('f'));
    assert_eq!(app.colouring, Colouring::Confidence);
    update(&mut app, ctrl('n'));
    assert_eq!(app.theme_index, 1);
}

/// A marker typed with a count of 0 stays text, and the status bar says why.
#[test]
fn a_zero_mask_marker_says_why_it_stays_text() {
    let (mut app, _engine) = app();
    for c in "a [MASK:0]".chars() {
        update(&mut app, key(KeyCode::Char(c)));
    }
    assert_eq!(app.doc.mask_count(), 0);
    let screen = draw(&mut app, 100, 24);
    assert!(
        screen.contains("[MASK:0] stays text") && screen.contains("from 1"),
        "{screen}"
    );
    // Pasted, it says so too; a good marker pasted beside it is still a span.
    let (mut pasted, _engine) = self::app();
    type_text(&mut pasted, "b [MASK:2] and [MASK:0] c");
    assert_eq!(pasted.doc.mask_count(), 2);
    let message = pasted
        .message
        .as_ref()
        .map(|m| m.text.clone())
        .unwrap_or_default();
    assert!(message.contains("[MASK:0] stays text"), "{message}");
}

/// A click picks a parameter row (focusing the panel) or focuses the live panel; the wheel
/// over the parameters moves the selection.
#[test]
fn clicks_focus_panels_and_pick_parameter_rows() {
    use crossterm::event::{MouseButton, MouseEventKind};
    let (mut app, _engine) = prepared();
    draw(&mut app, 100, 24);
    let at = mouse;
    let (params, live) = (app.drawn.params, app.drawn.live_panel);
    update(
        &mut app,
        at(
            MouseEventKind::Down(MouseButton::Left),
            params.x + 2,
            params.y + 3,
        ),
    );
    assert_eq!(app.focus, Focus::Params);
    assert_eq!(app.form.row, 3);
    update(
        &mut app,
        at(MouseEventKind::ScrollDown, params.x + 2, params.y + 1),
    );
    assert_eq!(app.form.row, 4);
    update(
        &mut app,
        at(
            MouseEventKind::Down(MouseButton::Left),
            live.x + 3,
            live.y + 2,
        ),
    );
    assert_eq!(app.focus, Focus::Live);
}

/// Ctrl-O puts the result on the clipboard (an effect the runtime sends as OSC 52).
#[test]
fn the_result_can_be_copied() {
    let (mut app, engine) = prepared();
    assert!(update(&mut app, ctrl('o')).is_empty());
    for e in run(&mut app, &engine) {
        update(&mut app, Action::Engine(e));
    }
    match update(&mut app, ctrl('o')).as_slice() {
        [dlm_tui::tui::app::Effect::Copy(text)] => {
            assert!(
                text.starts_with("Once upon a time, Tom had a red ball."),
                "{text}"
            )
        }
        other => panic!("expected a copy, got {other:?}"),
    }
}

/// The compare list is edited in place (Enter keeps the value, the cursor and the end of the
/// text stay in view), shown whole under the rows, and committing it does not switch modes.
#[test]
fn the_compare_list_is_edited_in_place() {
    use dlm_tui::run::Field;
    let (mut app, _engine) = prepared();
    app.focus = Focus::Params;
    app.form.row = Field::ALL
        .iter()
        .position(|f| *f == Field::Compare)
        .unwrap();
    let compare_mode = app.compare_mode;
    update(&mut app, key(KeyCode::Enter));
    assert_eq!(app.form.buffer.as_deref(), Some("low-confidence,margin"));
    // Enter opens the old value selected (typing would replace it): End keeps it and goes on.
    update(&mut app, key(KeyCode::End));
    type_text(&mut app, ",random:temperature=0.9");
    let screen = draw(&mut app, 80, 24);
    assert!(screen.contains("=0.9▏"), "{screen}");
    update(&mut app, key(KeyCode::Enter));
    assert_eq!(app.settings.compare.len(), 3);
    assert_eq!(app.compare_mode, compare_mode);
    let screen = draw(&mut app, 80, 24);
    assert!(screen.contains("…"), "{screen}");
    assert!(screen.contains("random:temperature=0.9"), "{screen}");
}

/// A double click in the editor selects the word under it.
#[test]
fn a_double_click_selects_a_word() {
    use crossterm::event::{MouseButton, MouseEventKind};
    let (mut app, _engine) = prepared();
    draw(&mut app, 100, 24);
    let area = app.drawn.editor;
    // "Once upon a time, ...": column 6 is inside "upon".
    let click = mouse(MouseEventKind::Down(MouseButton::Left), area.x + 6, area.y);
    update(&mut app, click.clone());
    assert_eq!(app.doc.selected_text(), None);
    update(&mut app, click);
    assert_eq!(app.doc.selected_text().as_deref(), Some("upon"));
}

/// At a replay speed the view trails the engine: steps appear as time passes, Space pauses and
/// plays on, and + / - change the speed.
#[test]
fn runs_replay_at_a_watchable_speed() {
    let (mut app, engine) = prepared();
    app.replay_speed = 10.0;
    for e in run(&mut app, &engine) {
        update(&mut app, Action::Engine(e));
    }
    let latest = app.run.as_ref().unwrap().latest_step();
    assert!(latest > 10);
    assert_eq!(app.run.as_ref().unwrap().shown_step(), 0);
    let screen = draw(&mut app, 100, 24);
    assert!(screen.contains("replaying"), "{screen}");
    update(&mut app, Action::Tick(Duration::from_millis(500)));
    assert_eq!(app.run.as_ref().unwrap().shown_step(), 5);
    app.focus = Focus::Live;
    update(&mut app, key(KeyCode::Char(' ')));
    update(&mut app, Action::Tick(Duration::from_secs(1)));
    assert_eq!(app.run.as_ref().unwrap().shown_step(), 5, "paused");
    let screen = draw(&mut app, 100, 24);
    assert!(
        screen.contains("step 5 of") && screen.contains("run finished"),
        "{screen}"
    );
    update(&mut app, key(KeyCode::Char(' ')));
    update(&mut app, key(KeyCode::Char('+')));
    assert_eq!(app.replay_speed, 20.0);
    update(&mut app, Action::Tick(Duration::from_millis(200)));
    assert_eq!(app.run.as_ref().unwrap().shown_step(), 9);
    update(&mut app, Action::Tick(Duration::from_secs(60)));
    assert_eq!(app.run.as_ref().unwrap().shown_step(), latest);
    assert!(!app.run.as_ref().unwrap().replaying());
    let screen = draw(&mut app, 100, 24);
    assert!(screen.contains("done"), "{screen}");
}

/// F2's second press colours tokens by the step that committed them, with a legend of step
/// ranges; the third turns colouring off.
#[test]
fn tokens_can_be_coloured_by_commit_order() {
    let (mut app, engine) = prepared();
    for e in run(&mut app, &engine) {
        update(&mut app, Action::Engine(e));
    }
    // The foreground colours on screen.
    let colours = |app: &mut App| {
        let mut terminal = Terminal::new(TestBackend::new(100, 24)).unwrap();
        terminal
            .draw(|f| {
                let drawn = views::render(app, f);
                app.drawn = drawn;
            })
            .ok();
        let buffer = terminal.backend().buffer().clone();
        let fgs: std::collections::BTreeSet<String> = buffer
            .content
            .iter()
            .map(|c| format!("{:?}", c.fg))
            .collect();
        (terminal.backend().to_string(), fgs)
    };
    let (_, plain) = colours(&mut app);
    update(&mut app, key(KeyCode::F(2)));
    assert_eq!(app.colouring, Colouring::Confidence);
    update(&mut app, key(KeyCode::F(2)));
    assert_eq!(app.colouring, Colouring::CommitOrder);
    let (screen, ordered) = colours(&mut app);
    assert!(screen.contains("committed at step 1-"), "{screen}");
    // Tokens from early and late steps take the palette's colours.
    assert!(ordered.len() >= plain.len() + 2, "{plain:?} vs {ordered:?}");
    update(&mut app, key(KeyCode::F(2)));
    assert_eq!(app.colouring, Colouring::Plain);
}

/// Ctrl-L cycles the parameter presets; each starts from the defaults, so nothing of the one
/// before stays (Fast-dLLM's threshold is gone in Dream's).
#[test]
fn presets_cycle_and_replace_each_other() {
    use dlm_tui::sampler::{CacheMode, Parallel, Schedule, Strategy};
    let (mut app, _engine) = prepared();
    let length = app.settings.length;
    let names: Vec<String> = (0..6)
        .map(|_| {
            update(&mut app, ctrl('l'));
            app.message.as_ref().unwrap().text.clone()
        })
        .collect();
    assert!(names[0].starts_with("preset playground"), "{names:?}");
    assert!(names[4].starts_with("preset ReMDM"), "{names:?}");
    assert!(names[5].starts_with("preset playground"), "{names:?}");
    // Back at the start: every preset applied once.
    for _ in 0..2 {
        update(&mut app, ctrl('l'));
    }
    let p = &app.settings.params;
    assert_eq!((p.strategy, p.temperature), (Strategy::LowConfidence, 0.0));
    assert_eq!(p.parallel, Some(Parallel::Threshold(0.9)));
    assert_eq!(p.cache, CacheMode::Dual);
    update(&mut app, ctrl('l'));
    let p = &app.settings.params;
    assert_eq!(
        (p.strategy, p.schedule),
        (Strategy::Entropy, Schedule::Timestep)
    );
    assert_eq!(
        (p.top_p, p.parallel, p.cache),
        (Some(0.95), None, CacheMode::None)
    );
    update(&mut app, ctrl('l'));
    let p = &app.settings.params;
    assert_eq!(
        (p.remdm, p.eta, p.t_on, p.t_off, p.alpha_on),
        (dlm_tui::sampler::Remdm::Loop, 0.02, 0.55, 0.05, 0.9)
    );
    assert_eq!((p.temperature, p.top_p), (1.0, Some(0.9)));
    assert_eq!(app.settings.length, length, "the length is kept");
}

/// ReMDM in the playground: a step that masks committed tokens again shows them struck through,
/// the stats count the remasks, the inspector says when, and the export's trace replays them.
#[test]
fn remdm_remasks_show_in_the_live_panel_and_the_inspector() {
    use dlm_tui::sampler::Remdm;
    let (mut app, engine) = prepared();
    let p = &mut app.settings.params;
    p.remdm = Remdm::Cap;
    p.eta = 0.5;
    p.temperature = 1.0;
    run_to_end(&mut app, &engine);
    let run = app.run.as_ref().unwrap();
    assert!(
        run.lanes[0].label.starts_with("remdm-cap"),
        "{}",
        run.lanes[0].label
    );
    let frames = &run.lanes[0].frames;
    assert!(frames
        .last()
        .unwrap()
        .canvas
        .iter()
        .all(|&t| t != app.tokens.mask_id));
    let (k, frame) = frames
        .iter()
        .enumerate()
        .find(|(_, f)| !f.remasked.is_empty())
        .expect("eta 0.5 remasks something");
    let pos = frame.remasked[0];
    assert_eq!(frame.canvas[pos], app.tokens.mask_id);
    app.run.as_mut().unwrap().cursor = Some(k + 1);
    app.focus = Focus::Live;
    app.inspector = Some(dlm_tui::tui::app::TokenCursor { lane: 0, pos });
    let screen = draw(&mut app, 100, 24);
    assert!(
        screen.contains("remasked at step") || screen.contains("remasked 2 times"),
        "{screen}"
    );
    assert!(screen.contains("remasked "), "{screen}");
    insta::assert_snapshot!("remdm_remasked", screen);
    // The export is a trace that replays the same canvases, remasks included.
    let dir = std::env::temp_dir().join(format!("dlm-remdm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dlm_tui::tui::session::export(&app, &dir).unwrap();
    let path = dir.join("dlm-tui-run-1.jsonl");
    let trace =
        dlm_tui::engine::trace::read(&std::fs::read_to_string(&path).unwrap(), "run").unwrap();
    let live = &app.run.as_ref().unwrap().lanes[0].frames;
    assert_eq!(trace.lanes[0].steps.len(), live.len());
    for (read, seen) in trace.lanes[0].steps.iter().zip(live) {
        assert_eq!(read.canvas, seen.canvas, "step {}", seen.step);
        assert_eq!(read.remasked, seen.remasked, "step {}", seen.step);
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// Ctrl-D puts per-step charts (masks left, committed, mean score) under the live panel, one
/// line per lane, naming each lane's colour.
#[test]
fn per_step_charts_show_under_the_live_panel() {
    let (mut app, engine) = prepared();
    app.compare_mode = true;
    for e in run(&mut app, &engine) {
        update(&mut app, Action::Engine(e));
    }
    update(&mut app, ctrl('d'));
    assert!(app.show_charts);
    let screen = draw(&mut app, 120, 36);
    for needle in [
        "Per step:",
        "low-confidence",
        "masks left",
        "committed",
        "mean score",
    ] {
        assert!(screen.contains(needle), "{needle}:\n{screen}");
    }
    // Half blocks: the lines are drawn.
    assert!(screen.chars().any(|c| "▀▄█".contains(c)), "{screen}");
    update(&mut app, ctrl('d'));
    let screen = draw(&mut app, 120, 36);
    assert!(!screen.contains("Per step:"), "{screen}");
}

/// The token inspector (`i` in the live panel, or a click on a token): the token, the step that
/// committed it with its score, and the model's top candidates at that step; a masked position
/// shows the latest proposal. Ghost text and the window marks show the sampler's view.
#[test]
fn the_token_inspector_and_the_samplers_view() {
    let (mut app, engine) = prepared();
    run_to_end(&mut app, &engine);
    // Step 1: most positions are still masked; the first window's masks show proposals.
    update(
        &mut app,
        Action::Key(KeyEvent::new(KeyCode::PageUp, KeyModifiers::CONTROL)),
    );
    update(&mut app, key(KeyCode::PageDown));
    app.focus = Focus::Live;
    let screen = draw(&mut app, 100, 24);
    assert!(screen.contains('│') && screen.contains("▒▒▒"), "{screen}");
    update(&mut app, key(KeyCode::Char('i')));
    let screen = draw(&mut app, 100, 24);
    assert!(screen.contains("committed at step 1 · score"), "{screen}");
    assert!(screen.contains("most likely at step 1:"), "{screen}");
    insta::assert_snapshot!("inspector_committed", screen);
    // Right moves to the next token: a mask in the window, with its proposal.
    let before = app.inspector.unwrap();
    update(&mut app, key(KeyCode::Right));
    let after = app.inspector.unwrap();
    assert!(after.pos > before.pos, "{before:?} -> {after:?}");
    let screen = draw(&mut app, 100, 24);
    assert!(
        screen.contains("masked") || screen.contains("committed at step"),
        "{screen}"
    );
    // Esc closes it; a click on a token opens it there.
    update(&mut app, key(KeyCode::Esc));
    assert!(app.inspector.is_none());
    let cells = app.drawn.lanes[0].clone();
    let target = cells.placed[cells.placed.len() / 2];
    update(
        &mut app,
        mouse(
            crossterm::event::MouseEventKind::Down(crossterm::event::MouseButton::Left),
            cells.area.x + target.col as u16,
            cells.area.y + (target.row - cells.area.scroll) as u16,
        ),
    );
    assert_eq!(app.inspector.map(|c| c.pos), Some(target.pos));
    // `g` turns the sampler's view off: masks only, no window marks.
    update(&mut app, key(KeyCode::Esc));
    update(&mut app, key(KeyCode::Char('g')));
    let screen = draw(&mut app, 100, 24);
    insta::assert_snapshot!("sampler_view_off", screen);
}

/// Seed sweep: the same settings in 2 to 4 lanes with seeds s, s+1, ...; at temperature 0 it is
/// refused with the reason (every seed would give the same text).
#[test]
fn a_seed_sweep_runs_one_lane_per_seed() {
    use dlm_tui::run::Field;
    let (mut app, engine) = prepared();
    app.settings.params.seed = 7;
    Field::Sweep.set(&mut app.settings, "3").unwrap();
    assert_eq!(Field::Sweep.value(&app.settings), "3 seeds");
    assert!(Field::Sweep.set(&mut app.settings, "5").is_err());
    let lanes = app.lane_params(16).unwrap();
    let seeds: Vec<u64> = lanes.iter().map(|(_, p)| p.seed).collect();
    assert_eq!(seeds, vec![7, 8, 9]);
    assert_eq!(lanes[1].0, "seed 8");
    assert!(lanes
        .iter()
        .all(|(_, p)| SamplerParamsEq::same_but_seed(p, &lanes[0].1)));
    run_to_end(&mut app, &engine);
    insta::assert_snapshot!("seed_sweep", draw(&mut app, 120, 30));
    // Greedy: refused.
    app.settings.params.temperature = 0.0;
    let err = app.lane_params(16).unwrap_err();
    assert!(err.contains("needs randomness"), "{err}");
    // Off again with Left from 2.
    Field::Sweep.set(&mut app.settings, "2").unwrap();
    Field::Sweep.adjust(&mut app.settings, false).unwrap();
    assert_eq!(app.settings.sweep, 0);
}

/// Parameters equal but for the seed.
struct SamplerParamsEq;

impl SamplerParamsEq {
    fn same_but_seed(
        a: &dlm_tui::sampler::SamplerParams,
        b: &dlm_tui::sampler::SamplerParams,
    ) -> bool {
        let mut a = a.clone();
        a.seed = b.seed;
        &a == b
    }
}

/// The step gauge under the live panel: a click scrubs to the step under it (the left end is
/// before the first step, the right end the last), and a drag follows the pointer.
#[test]
fn the_step_gauge_scrubs_on_click_and_drag() {
    use crossterm::event::{MouseButton, MouseEventKind};
    let (mut app, engine) = prepared();
    run_to_end(&mut app, &engine);
    let screen = draw(&mut app, 100, 24);
    assert!(screen.contains("step  19 of 19"), "{screen}");
    let bar = app.drawn.gauge;
    assert!(bar.width > 20, "{bar:?}");
    let latest = app.run.as_ref().unwrap().latest_step();
    update(
        &mut app,
        mouse(MouseEventKind::Down(MouseButton::Left), bar.x, bar.y),
    );
    assert_eq!(app.run.as_ref().unwrap().cursor, Some(0));
    let middle = bar.x + bar.width / 2;
    update(
        &mut app,
        mouse(MouseEventKind::Drag(MouseButton::Left), middle, bar.y),
    );
    let step = app.run.as_ref().unwrap().cursor.unwrap();
    assert!(
        (latest / 2 - 1..=latest / 2 + 1).contains(&step),
        "{step} of {latest}"
    );
    let screen = draw(&mut app, 100, 24);
    assert!(
        screen.contains(&format!("step {step:>3} of 19")),
        "{screen}"
    );
    insta::assert_snapshot!("gauge_scrubbed", screen);
    update(
        &mut app,
        mouse(
            MouseEventKind::Down(MouseButton::Left),
            bar.x + bar.width - 1,
            bar.y,
        ),
    );
    assert_eq!(app.run.as_ref().unwrap().shown_step(), latest);
}

/// Refine: committed tokens marked with `m` (inspector open) are masked again and `r` denoises
/// them with everything else fixed.
#[test]
fn refine_remasks_the_marked_tokens_and_keeps_the_rest() {
    let (mut app, engine) = prepared();
    run_to_end(&mut app, &engine);
    app.focus = Focus::Live;
    let before = app.run.as_ref().unwrap().lanes[0]
        .summary
        .as_ref()
        .unwrap()
        .canvas
        .clone();
    // The last step; the inspector opens on its commit: mark it and the token before it.
    update(&mut app, key(KeyCode::End));
    update(&mut app, key(KeyCode::Char('i')));
    let first = app.inspector.unwrap().pos;
    update(&mut app, key(KeyCode::Char('m')));
    draw(&mut app, 100, 24);
    update(&mut app, key(KeyCode::Left));
    let second = app.inspector.unwrap().pos;
    update(&mut app, key(KeyCode::Char('m')));
    let marked: Vec<usize> = app.remask.positions.iter().copied().collect();
    assert_eq!(marked.len(), 2, "{first} {second}");
    let screen = draw(&mut app, 100, 24);
    assert!(screen.contains("2 tokens marked to re-mask"), "{screen}");
    let effects = update(&mut app, key(KeyCode::Char('r')));
    let job = match effects.as_slice() {
        [dlm_tui::tui::app::Effect::Submit(job), dlm_tui::tui::app::Effect::Save] => job.clone(),
        other => panic!("expected a job, got {other:?}"),
    };
    let mask = app.model.mask_id;
    let masked: Vec<usize> = (0..job.canvas.len())
        .filter(|&p| job.canvas[p] == mask)
        .collect();
    assert_eq!(masked, marked);
    for (p, (&a, &b)) in job.canvas.iter().zip(&before).enumerate() {
        if !marked.contains(&p) {
            assert_eq!(a, b, "position {p} changed");
        }
    }
    assert!(app.remask.positions.is_empty());
    // The prompt and a mask cannot be marked.
    let mut handle = engine.submit(job);
    while let Some(e) = handle.events.blocking_recv() {
        let last = matches!(e, Event::Finished { .. } | Event::Failed(_));
        update(&mut app, Action::Engine(e));
        if last {
            break;
        }
    }
    let after = app.run.as_ref().unwrap().lanes[0]
        .summary
        .as_ref()
        .unwrap()
        .canvas
        .clone();
    for p in 0..after.len() {
        if !marked.contains(&p) {
            assert_eq!(after[p], before[p]);
        }
    }
    app.inspector = Some(dlm_tui::tui::app::TokenCursor { lane: 0, pos: 1 });
    update(&mut app, key(KeyCode::Char('m')));
    assert!(app.remask.positions.is_empty());
}

/// Down in the inspector walks every row down to the last, blank lines included (a line break
/// token sits there, or, where the tokenizer merged the breaks, the row is skipped).
#[test]
fn the_inspector_walks_down_every_row() {
    let (mut app, engine) = app();
    type_text(&mut app, "A b.\n\nC d.");
    app.settings.length = 4;
    run_to_end(&mut app, &engine);
    app.focus = Focus::Live;
    update(&mut app, key(KeyCode::End));
    update(&mut app, key(KeyCode::Char('i')));
    draw(&mut app, 100, 24);
    // Put the cursor on the first row's first token, then go down.
    let first = app.drawn.lanes[0].placed[0];
    app.inspector = Some(dlm_tui::tui::app::TokenCursor {
        lane: 0,
        pos: first.pos,
    });
    let row_of = |app: &dlm_tui::tui::app::App| {
        let pos = app.inspector.unwrap().pos;
        app.drawn.lanes[0]
            .placed
            .iter()
            .find(|p| p.pos == pos)
            .unwrap()
            .row
    };
    draw(&mut app, 100, 24);
    let last = app.drawn.lanes[0].placed.last().unwrap().row;
    assert!(last >= 2, "{:?}", app.drawn.lanes[0].placed);
    let mut rows = vec![row_of(&app)];
    while rows.len() <= last {
        update(&mut app, key(KeyCode::Down));
        draw(&mut app, 100, 24);
        rows.push(row_of(&app));
    }
    assert_eq!(rows, (0..=last).collect::<Vec<_>>());
}

/// The model picker (F10) lists the embedded model and the hub cache's models (a complete one
/// ready, an incomplete one with what is missing); Enter asks for the switch, and the switch
/// keeps the editor's text and masks.
#[test]
fn the_model_picker_switches_and_keeps_the_text() {
    use dlm_tui::tui::app::{Effect, ModelSource};
    let cache = std::env::temp_dir().join(format!("dlm-tui-picker-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&cache);
    let commit = "0123456789abcdef0123456789abcdef01234567";
    for (id, files) in [
        (
            "models--someone--tiny",
            &["config.json", "tokenizer.json", "model.safetensors"][..],
        ),
        ("models--someone--half", &["config.json"][..]),
    ] {
        let snap = cache.join(id).join("snapshots").join(commit);
        std::fs::create_dir_all(&snap).unwrap();
        std::fs::create_dir_all(cache.join(id).join("refs")).unwrap();
        std::fs::write(cache.join(id).join("refs/main"), commit).unwrap();
        for f in files {
            let from = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/llada-tiny-tied")
                .join(f);
            std::fs::copy(from, snap.join(f)).unwrap();
        }
    }
    let (mut app, _engine) = prepared();
    app.hub_cache = Some(cache.clone());
    // A local folder from config.toml, and one that does not exist.
    app.model_folders = vec![fixture(), cache.join("gone")];
    open_picker(&mut app);
    let picker = app.picker().cloned().expect("the picker opens");
    assert_eq!(picker.entries.len(), 5);
    assert!(
        picker.entries[3].problem.is_none(),
        "{:?}",
        picker.entries[3]
    );
    assert_eq!(picker.entries[3].family, "llada");
    assert!(picker.entries[4]
        .problem
        .as_deref()
        .unwrap()
        .contains("does not exist"));
    assert!(picker.entries[1]
        .problem
        .as_deref()
        .unwrap()
        .contains("missing"));
    assert!(picker.entries[2].problem.is_none());
    // The folders' paths differ from machine to machine: the snapshot is taken without them.
    update(&mut app, key(KeyCode::Esc));
    app.model_folders.clear();
    open_picker(&mut app);
    update(&mut app, key(KeyCode::Down));
    let screen = draw(&mut app, 100, 24);
    assert!(
        screen.contains("someone/half") && screen.contains("incomplete"),
        "{screen}"
    );
    insta::assert_snapshot!("model_picker", screen);
    // An incomplete model is refused with the reason.
    assert!(update(&mut app, key(KeyCode::Enter)).is_empty());
    assert!(app
        .message
        .as_ref()
        .unwrap()
        .text
        .contains("dlm-tui download someone/half"));
    // The picker stays open: the next row is the complete one.
    update(&mut app, key(KeyCode::Down));
    let effects = update(&mut app, key(KeyCode::Enter));
    let [Effect::LoadModel(source)] = effects.as_slice() else {
        panic!("expected a load, got {effects:?}");
    };
    assert!(matches!(source, ModelSource::Dir { name, .. } if name == "someone/tiny"));
    // What the runtime does with it.
    let text = app.doc.to_prompt();
    let (loaded, template) = dlm_tui::tui::load_source(
        source,
        dlm_tui::tui::ModelLoad {
            precision: dlm_tui::model::loader::Precision::F32,
            device: dlm_tui::model::DeviceKind::Cpu,
            quantize: None,
        },
    )
    .unwrap();
    let info = loaded.model.info().clone();
    let engine = dlm_tui::engine::Engine::new(loaded.model).unwrap();
    let switch = dlm_tui::tui::app::ModelSwitch {
        codec: Arc::new(loaded.codec),
        info,
        chat_template: template,
        engine: dlm_tui::tui::app::EngineSlot::new(engine),
    };
    let effects = update(&mut app, Action::ModelLoaded(Ok(switch)));
    assert!(
        matches!(effects.as_slice(), [Effect::UseEngine(_)]),
        "{effects:?}"
    );
    assert_eq!(app.model.name, "someone/tiny");
    assert_eq!(app.doc.to_prompt(), text);
    assert!(app.run.is_none() && app.loading.is_none());
    let _ = std::fs::remove_dir_all(&cache);
}

/// The picker's hub id field: typing goes there, Enter asks the runtime for the download and
/// shows its panel with the progress, Esc asks to cancel, and a finished download loads the
/// model; a failed one says why.
#[test]
fn the_picker_hub_id_field_downloads_then_loads() {
    use dlm_tui::hub::DownloadProgress;
    use dlm_tui::tui::app::{Effect, ModelSource};
    use dlm_tui::tui::download::DownloadNews;
    let (mut app, _engine) = prepared();
    open_picker(&mut app);
    type_text(&mut app, "test-org/tiny-dream");
    let picker = app.picker().cloned().unwrap();
    assert!(picker.on_hub_id() && picker.hub_id == "test-org/tiny-dream");
    let screen = draw(&mut app, 100, 24);
    insta::assert_snapshot!("picker_hub_id", screen);
    let effects = update(&mut app, key(KeyCode::Enter));
    let [Effect::Download(spec)] = effects.as_slice() else {
        panic!("expected a download, got {effects:?}");
    };
    assert_eq!(spec.to_string(), "test-org/tiny-dream");
    assert!(app.picker().is_none());
    let progress = DownloadProgress {
        total_files: 4,
        total_bytes: 3 << 20,
        done_bytes: 1 << 20,
        done_files: 1,
        current: Some("model.safetensors".into()),
    };
    update(
        &mut app,
        Action::Download(DownloadNews::Progress(progress, Duration::from_secs(2))),
    );
    let screen = draw(&mut app, 100, 24);
    assert!(
        screen.contains("Downloading test-org/tiny-dream")
            && screen.contains("1 of 4 done")
            && screen.contains("model.safetensors"),
        "{screen}"
    );
    // Keys wait while it runs; Esc asks to cancel.
    assert!(update(&mut app, key(KeyCode::F(5))).is_empty());
    assert_eq!(
        update(&mut app, key(KeyCode::Esc)),
        vec![Effect::CancelDownload]
    );
    update(
        &mut app,
        Action::Download(DownloadNews::Finished(Err("download cancelled".into()))),
    );
    assert!(app.download().is_none());
    assert!(app.message.as_ref().unwrap().text.contains("cancelled"));
    // Again, to the end: the model folder is loaded under its hub id.
    open_picker(&mut app);
    type_text(&mut app, "test-org/tiny-dream");
    update(&mut app, key(KeyCode::Enter));
    let effects = update(
        &mut app,
        Action::Download(DownloadNews::Finished(Ok(fixture()))),
    );
    let [Effect::LoadModel(ModelSource::Dir { dir, name })] = effects.as_slice() else {
        panic!("expected a load, got {effects:?}");
    };
    assert_eq!((dir, name.as_str()), (&fixture(), "test-org/tiny-dream"));
    assert_eq!(app.loading.as_deref(), Some("test-org/tiny-dream"));
    update(
        &mut app,
        Action::ModelLoaded(Err("not loaded in this test".into())),
    );
    // A malformed id is refused where it was typed.
    open_picker(&mut app);
    type_text(&mut app, "no-slash");
    assert!(update(&mut app, key(KeyCode::Enter)).is_empty());
    assert!(app.picker().is_some());
    assert!(app
        .message
        .as_ref()
        .unwrap()
        .text
        .contains("is not a hub model id"));
}

/// The lane `--beside` adds shows a server's frames: frames, time to the first one and the
/// server's tokens per second instead of nfe, speedup and score; the same lane without
/// `--beside` (a sampler's) keeps the sampler's figures.
#[test]
fn a_remote_lane_beside_shows_frames_not_sampler_figures() {
    use dlm_tui::engine::{LaneSummary, StepEvent};
    use dlm_tui::tui::app::{LaneView, RunState, RunView};
    let (mut app, _engine) = app();
    let mask = app.model.mask_id;
    let frame = |step: usize, ms: u64, canvas: Vec<u32>| StepEvent {
        lane: 1,
        step,
        steps: step,
        canvas,
        committed: Vec::new(),
        masked: 1,
        nfe: step,
        elapsed: Duration::from_millis(ms),
        speedup: 1.0,
        window: 2..4,
        scored: Vec::new(),
        remasked: Vec::new(),
        blocks: None,
    };
    let lane = |label: &str| LaneView {
        label: label.into(),
        frames: vec![
            frame(1, 100, vec![7, 8, 9, mask]),
            frame(2, 1200, vec![7, 8, 9, mask]),
        ],
        summary: Some(LaneSummary {
            lane: 1,
            canvas: vec![7, 8, 9, mask],
            steps: 2,
            nfe: 2,
            elapsed: Duration::from_millis(1200),
            mean_score: 0.0,
            speedup: 1.0,
            completion_tokens: Some(12),
        }),
    };
    let run = |label: &str| RunView {
        recipe: Default::default(),
        initial: vec![7, mask, mask, mask],
        prompt_len: 1,
        lanes: vec![lane(label)],
        state: RunState::Done,
        cursor: None,
        paced: false,
        head: 0.0,
        agreement: Vec::new(),
        elapsed: Duration::from_millis(1200),
    };
    app.beside = Some("mercury".into());
    app.run = Some(run("mercury frames"));
    let screen = draw(&mut app, 140, 40);
    for shown in ["frames 2", "first 0.10s", "tok/s 10"] {
        assert!(screen.contains(shown), "{shown}: {screen}");
    }
    assert!(
        !screen.contains("nfe 2") && !screen.contains("speedup"),
        "{screen}"
    );
    app.beside = None;
    app.run = Some(run("margin"));
    let screen = draw(&mut app, 140, 40);
    assert!(
        screen.contains("nfe 2") && screen.contains("speedup"),
        "{screen}"
    );
    assert!(!screen.contains("tok/s 10"), "{screen}");
}

/// The help is generated from the key table for every scope: opened from each panel (and with
/// a value typed, and the inspector open), it lists that panel's keys after the global ones,
/// then every other scope's.
#[test]
fn the_help_is_generated_for_every_scope() {
    let (mut app, engine) = prepared();
    run_to_end(&mut app, &engine);
    let opened_from = |app: &mut App, name: &str| {
        let scope = app.panel_scope();
        update(app, key(KeyCode::F(1)));
        let screen = draw(app, 100, 150);
        update(app, key(KeyCode::Esc));
        let sections: Vec<usize> = views::help_sections(scope)
            .iter()
            .map(|s| {
                screen
                    .find(s.title())
                    .unwrap_or_else(|| panic!("{}", s.title()))
            })
            .collect();
        assert!(sections.windows(2).all(|w| w[0] < w[1]), "{name}: {screen}");
        insta::assert_snapshot!(format!("help_from_{name}"), screen);
    };
    opened_from(&mut app, "editor");
    app.focus = Focus::Params;
    opened_from(&mut app, "params");
    update(&mut app, key(KeyCode::Enter));
    assert_eq!(app.panel_scope(), Scope::Value);
    opened_from(&mut app, "value");
    update(&mut app, key(KeyCode::Esc));
    app.focus = Focus::Live;
    opened_from(&mut app, "live");
    update(&mut app, key(KeyCode::Char('i')));
    assert_eq!(app.panel_scope(), Scope::Inspector);
    opened_from(&mut app, "inspector");
}

/// `[keys]` remaps the live panel's keys like any other: `inspect = "x"` opens the inspector
/// with x, i is no longer it, and the help and the panel's hints name x.
#[test]
fn a_live_panel_key_remapped_in_the_config_works() {
    let config =
        dlm_tui::tui::config::Config::parse("[keys]\ninspect = [\"x\"]\n", "c.toml").unwrap();
    let (mut app, engine) = prepared();
    app.keymap = KeyMap::with_overrides(&config.keys).unwrap();
    run_to_end(&mut app, &engine);
    app.focus = Focus::Live;
    update(&mut app, key(KeyCode::Char('i')));
    assert!(app.inspector.is_none(), "i is no longer the inspector's");
    let screen = draw(&mut app, 140, 30);
    assert!(screen.contains("x inspect"), "{screen}");
    update(&mut app, key(KeyCode::Char('x')));
    assert!(app.inspector.is_some(), "x opens the inspector");
    let screen = draw(&mut app, 140, 30);
    assert!(screen.contains("x closes"), "{screen}");
    update(&mut app, key(KeyCode::Char('x')));
    assert!(app.inspector.is_none());
    update(&mut app, key(KeyCode::F(1)));
    let screen = draw(&mut app, 100, 150);
    assert!(
        screen.contains(" x                     open or close the token inspector"),
        "{screen}"
    );
    // A binding that no key could reach is refused with the file's words.
    let config =
        dlm_tui::tui::config::Config::parse("[keys]\ninspect = [\"F5\"]\n", "c.toml").unwrap();
    let e = KeyMap::with_overrides(&config.keys)
        .unwrap_err()
        .to_string();
    assert!(e.contains("F5") && e.contains("inspect"), "{e}");
}

/// A block-diffusion model's lane shows its blocks: cached and exact, being denoised, still
/// masked, in cells and in words, at 80x24 and 140x40; masking a span says what a block-causal
/// model sees of the text.
#[test]
fn a_block_model_shows_its_blocks() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sdar-tiny");
    let (mut app, engine) = app_on(&dir);
    assert!(app.model.blocks.is_some());
    app.follow_model_blocks();
    type_text(&mut app, "Once upon a time there was a dog");
    update(
        &mut app,
        Action::Key(KeyEvent::new(
            KeyCode::Left,
            KeyModifiers::CONTROL | KeyModifiers::SHIFT,
        )),
    );
    update(&mut app, ctrl('k'));
    let said = &app.message.as_ref().unwrap().text;
    assert!(said.contains("block-causal"), "{said}");
    app.settings.length = 24;
    run_to_end(&mut app, &engine);
    let run = app.run.as_ref().unwrap();
    assert!(run.lanes[0].frames.iter().all(|f| f.blocks.is_some()));
    // Midway: some blocks cached, one denoised, some to go.
    let middle = run.latest_step() / 2;
    app.run.as_mut().unwrap().cursor = Some(middle);
    app.focus = Focus::Live;
    let screen = draw(&mut app, 80, 24);
    assert!(
        screen.contains("cached · block") && screen.contains("denoising"),
        "{screen}"
    );
    let wide = draw(&mut app, 140, 40);
    assert!(
        wide.contains('█') && wide.contains('▓') && wide.contains('░'),
        "{wide}"
    );
    insta::assert_snapshot!("block_view_midway", wide);
    // At the end every block is cached.
    app.run.as_mut().unwrap().cursor = None;
    let screen = draw(&mut app, 80, 24);
    assert!(screen.contains("blocks cached"), "{screen}");
}

/// Comparison lanes of a block model can differ by block length and commit rule: each lane
/// decodes in its own blocks (issue 34, item 4).
#[test]
fn block_model_lanes_differ_by_block_length_and_rule() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sdar-tiny");
    let (mut app, engine) = app_on(&dir);
    type_text(&mut app, "Once upon a time");
    app.settings.length = 16;
    app.settings.compare = [
        "low-confidence:block-length=4",
        "left-to-right:block-length=8",
    ]
    .into_iter()
    .map(|s| s.to_string().try_into().unwrap())
    .collect();
    app.compare_mode = true;
    run_to_end(&mut app, &engine);
    let run = app.run.as_ref().unwrap();
    assert_eq!(run.lanes.len(), 2);
    let sizes: Vec<usize> = run
        .lanes
        .iter()
        .map(|l| {
            let blocks = &l.frames.last().unwrap().blocks.as_ref().unwrap().blocks;
            blocks.last().unwrap().len()
        })
        .collect();
    assert_eq!(sizes, [4, 8]);
    let screen = draw(&mut app, 140, 40);
    assert!(screen.contains("left-to-right"), "{screen}");
}
