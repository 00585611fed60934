use super::*;
use crate::sampler::{Logits, Strategy};

const MASK: u32 = 9;

/// A pure-Rust stand-in model: prefers token (position % 5); can be told to fail or panic.
struct Toy {
    info: ModelInfo,
    fail_after: Option<usize>,
    panic: bool,
    calls: usize,
    delay: Duration,
}

impl Toy {
    fn new() -> Self {
        Self {
            info: ModelInfo {
                name: "toy".into(),
                family: crate::model::Family::Local("toy"),
                mask_id: MASK,
                logits_width: 10,
                max_context: 64,
                shift_logits: false,
                eos_ids: vec![],
                eot_ids: vec![],
                parameters: 0,
                weight_bytes: 0,
                quantization: None,
                blocks: None,
            },
            fail_after: None,
            panic: false,
            calls: 0,
            delay: Duration::ZERO,
        }
    }
}

impl Denoiser for Toy {
    fn forward_batch(&mut self, batch: &[Vec<u32>]) -> Result<Vec<Logits>> {
        self.calls += 1;
        std::thread::sleep(self.delay);
        if self.panic {
            panic!("toy model exploded");
        }
        if self.fail_after.is_some_and(|n| self.calls > n) {
            return Err(anyhow!("toy model ran out of patience"));
        }
        Ok(batch
            .iter()
            .map(|seq| {
                let mut data = vec![0.0; seq.len() * 10];
                for p in 0..seq.len() {
                    data[p * 10 + p % 5] = 1.0 + p as f32 * 0.1;
                }
                Logits::new(data, 10)
            })
            .collect())
    }

    fn info(&self) -> &ModelInfo {
        &self.info
    }
}

fn job(lanes: Vec<SamplerParams>) -> Job {
    let mut canvas = vec![1, 2];
    canvas.extend([MASK; 8]);
    Job {
        canvas,
        lanes,
        inspect: false,
    }
}

fn params(strategy: Strategy) -> SamplerParams {
    SamplerParams {
        steps: 4,
        block_length: 8,
        strategy,
        ..SamplerParams::default()
    }
}

fn drain(handle: &mut JobHandle) -> Vec<Event> {
    let mut out = Vec::new();
    while let Some(e) = handle.events.blocking_recv() {
        let last = matches!(
            e,
            Event::Finished { .. } | Event::Cancelled | Event::Failed(_)
        );
        out.push(e);
        if last {
            break;
        }
    }
    out
}

#[test]
fn streams_one_event_per_step_per_lane() {
    let engine = Engine::new(Box::new(Toy::new())).unwrap();
    let mut handle = engine.submit(job(vec![
        params(Strategy::LowConfidence),
        params(Strategy::LeftToRight),
    ]));
    let events = drain(&mut handle);
    let steps: Vec<(usize, usize)> = events
        .iter()
        .filter_map(|e| match e {
            Event::Step(s) => Some((s.lane, s.step)),
            _ => None,
        })
        .collect();
    assert_eq!(
        steps,
        vec![
            (0, 1),
            (1, 1),
            (0, 2),
            (1, 2),
            (0, 3),
            (1, 3),
            (0, 4),
            (1, 4)
        ]
    );
    let done: Vec<&LaneSummary> = events
        .iter()
        .filter_map(|e| match e {
            Event::LaneDone(s) => Some(s),
            _ => None,
        })
        .collect();
    assert_eq!(done.len(), 2);
    assert!(done.iter().all(|d| d.nfe == 4 && !d.canvas.contains(&MASK)));
    assert!(matches!(events.last(), Some(Event::Finished { .. })));
}

#[test]
fn cancel_stops_between_steps() {
    let mut toy = Toy::new();
    toy.delay = Duration::from_millis(30);
    let engine = Engine::new(Box::new(toy)).unwrap();
    let mut handle = engine.submit(job(vec![params(Strategy::LowConfidence)]));
    let first = handle.events.blocking_recv().unwrap();
    assert!(matches!(first, Event::Step(_)));
    handle.cancel();
    let rest = drain(&mut handle);
    assert!(matches!(rest.last(), Some(Event::Cancelled)));
    assert!(
        rest.len() <= 2,
        "at most the step in flight finishes: {rest:?}"
    );
}

#[test]
fn model_errors_and_panics_become_failed_events_and_the_engine_survives() {
    let mut toy = Toy::new();
    toy.fail_after = Some(2);
    let engine = Engine::new(Box::new(toy)).unwrap();
    let events = drain(&mut engine.submit(job(vec![params(Strategy::LowConfidence)])));
    match events.last() {
        Some(Event::Failed(msg)) => assert!(msg.contains("patience"), "{msg}"),
        other => panic!("expected a failure, got {other:?}"),
    }

    let mut toy = Toy::new();
    toy.panic = true;
    let engine = Engine::new(Box::new(toy)).unwrap();
    let events = drain(&mut engine.submit(job(vec![params(Strategy::LowConfidence)])));
    match events.last() {
        Some(Event::Failed(msg)) => assert!(msg.contains("exploded"), "{msg}"),
        other => panic!("expected a failure, got {other:?}"),
    }
    // The worker is still there for the next job (which panics again, but is answered).
    let events = drain(&mut engine.submit(job(vec![params(Strategy::LowConfidence)])));
    assert!(matches!(events.last(), Some(Event::Failed(_))));
}

#[test]
fn invalid_jobs_fail_cleanly() {
    let engine = Engine::new(Box::new(Toy::new())).unwrap();
    let events = drain(&mut engine.submit(Job {
        canvas: vec![MASK; 100],
        lanes: vec![params(Strategy::LowConfidence)],
        inspect: false,
    }));
    match events.last() {
        Some(Event::Failed(msg)) => assert!(msg.contains("at most 64"), "{msg}"),
        other => panic!("expected a failure, got {other:?}"),
    }
    let mut bad = params(Strategy::LowConfidence);
    bad.steps = 0;
    let events = drain(&mut engine.submit(job(vec![bad])));
    assert!(matches!(events.last(), Some(Event::Failed(m)) if m.contains("steps")));
}
