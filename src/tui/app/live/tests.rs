//! The live room's tests.

use super::*;
use crate::tui::app::test_app;
use crate::tui::editor::Document;

/// `+` and `-` walk the replay speeds and stop at the ends.
#[test]
fn speed_keys_walk_the_replay_speeds() {
    let mut app = test_app();
    // 0 is the fastest: every step as it arrives.
    command(&mut app, Command::Faster);
    assert_eq!(app.replay_speed, 0.0);
    command(&mut app, Command::Slower);
    assert_eq!(app.replay_speed, 80.0);
    for _ in 0..20 {
        command(&mut app, Command::Slower);
    }
    assert_eq!(app.replay_speed, 1.0, "the slowest is a step a second");
    command(&mut app, Command::Faster);
    assert_eq!(app.replay_speed, 2.0);
}

/// A run's steps arrive as engine events; stepping back pauses there, End follows again.
#[test]
fn stepping_through_a_run() {
    let mut app = test_app();
    app.doc = Document::from_prompt("Once [MASK:2] time");
    let effects = command(&mut app, Command::Run);
    let Some(Effect::Submit(job)) = effects.first() else {
        panic!("{effects:?}")
    };
    let mask = app.model.mask_id;
    let masks: Vec<usize> = (0..job.canvas.len())
        .filter(|&p| job.canvas[p] == mask)
        .collect();
    let mut canvas = job.canvas.clone();
    for (k, &pos) in masks.iter().enumerate() {
        canvas[pos] = 100 + k as u32;
        let step = crate::engine::StepEvent {
            lane: 0,
            step: k + 1,
            steps: masks.len(),
            canvas: canvas.clone(),
            committed: vec![crate::sampler::Commit {
                pos,
                id: canvas[pos],
                score: 0.5,
            }],
            masked: masks.len() - k - 1,
            nfe: k + 1,
            elapsed: Duration::ZERO,
            speedup: 1.0,
            window: 0..canvas.len(),
            scored: Vec::new(),
            remasked: Vec::new(),
            blocks: None,
        };
        on_engine(&mut app, Event::Step(step));
    }
    on_engine(
        &mut app,
        Event::Finished {
            elapsed: Duration::ZERO,
        },
    );
    let run = app.run.as_ref().unwrap();
    assert_eq!(
        (run.state.clone(), run.shown_step()),
        (RunState::Done, masks.len())
    );
    command(&mut app, Command::StepBack);
    assert_eq!(app.run.as_ref().unwrap().cursor, Some(masks.len() - 1));
    command(&mut app, Command::StepFirst);
    assert_eq!(app.run.as_ref().unwrap().shown_step(), 0);
    command(&mut app, Command::StepLast);
    assert_eq!(
        app.run.as_ref().unwrap().cursor,
        None,
        "End follows the run again"
    );
    // The inspector opens on the newest commit; Esc (its close) shuts it.
    command(&mut app, Command::Inspect);
    assert_eq!(app.inspector.map(|c| c.pos), masks.last().copied());
    command(&mut app, Command::CloseInspector);
    assert!(app.inspector.is_none());
}

/// Issue 29, item 11: running the same text with the same settings and seed again says it
/// gives the same result, and how to get another; a re-roll does not.
#[test]
fn an_identical_rerun_says_so() {
    let mut app = test_app();
    app.doc = Document::from_prompt("Once [MASK:2] time");
    command(&mut app, Command::Run);
    on_engine(
        &mut app,
        Event::Finished {
            elapsed: Duration::ZERO,
        },
    );
    assert!(app.message.is_none());
    command(&mut app, Command::Run);
    let said = app.message.as_ref().unwrap().text.clone();
    assert!(
        said.contains("seed 0 again") && said.contains("F4 re-rolls"),
        "{said}"
    );
    on_engine(&mut app, Event::Cancelled);
    command(&mut app, Command::Reroll);
    assert!(app.message.as_ref().unwrap().text.starts_with("re-rolled"));
}
