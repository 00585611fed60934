//! Sampler behaviour on hand-made logits (no model involved).

use super::*;

const MASK: u32 = 99;
const VOCAB: usize = 8;

fn traits() -> ModelTraits {
    ModelTraits {
        mask_id: MASK,
        shift_logits: false,
        blocks: None,
        eos_ids: vec![7],
        eot_ids: vec![],
    }
}

/// A fake model: position p prefers token p % 7 with a sharpness that grows with `sharp(p)`.
fn fake_logits(len: usize, sharp: impl Fn(usize) -> f32) -> Logits {
    let mut data = vec![0.0; len * VOCAB];
    for p in 0..len {
        data[p * VOCAB + p % 7] = sharp(p);
    }
    Logits::new(data, VOCAB)
}

fn canvas(prompt: usize, masks: usize) -> Vec<u32> {
    let mut t: Vec<u32> = (0..prompt as u32).map(|i| i % 7).collect();
    t.extend(std::iter::repeat_n(MASK, masks));
    t
}

fn run(
    tokens: Vec<u32>,
    params: SamplerParams,
    sharp: impl Fn(usize) -> f32,
) -> (Vec<u32>, Vec<StepReport>) {
    run_with(tokens, params, sharp, false)
}

/// [`run`], keeping what each step scored when `inspect`.
fn run_with(
    tokens: Vec<u32>,
    params: SamplerParams,
    sharp: impl Fn(usize) -> f32,
    inspect: bool,
) -> (Vec<u32>, Vec<StepReport>) {
    let mut sampler = Sampler::new(tokens, params, traits()).unwrap();
    sampler.inspect(inspect);
    let mut reports = Vec::new();
    while let Some(r) = sampler
        .step(|request| {
            Ok(request
                .canvases
                .iter()
                .map(|t| fake_logits(t.len(), &sharp))
                .collect())
        })
        .unwrap()
    {
        reports.push(r);
    }
    (sampler.tokens().to_vec(), reports)
}

fn params(steps: usize, block_length: usize) -> SamplerParams {
    SamplerParams {
        steps,
        block_length,
        ..SamplerParams::default()
    }
}

#[test]
fn uniform_blocks_commit_in_order_with_llada_counts() {
    // 3 prompt tokens, 8 masks, blocks of 4, 4 steps: 2 steps per block, 2 tokens per step.
    let (tokens, reports) = run(canvas(3, 8), params(4, 4), |p| 1.0 + p as f32 * 0.1);
    assert_eq!(reports.len(), 4);
    assert!(reports
        .iter()
        .all(|r| r.committed.len() == 2 && r.steps == 4));
    // Steps 1-2 stay inside the first block (positions 3..7), steps 3-4 in the second.
    for r in &reports[..2] {
        assert!(r.committed.iter().all(|c| (3..7).contains(&c.pos)));
    }
    for r in &reports[2..] {
        assert!(r.committed.iter().all(|c| (7..11).contains(&c.pos)));
    }
    // Highest confidence first: later positions are sharper here.
    assert_eq!(
        reports[0]
            .committed
            .iter()
            .map(|c| c.pos)
            .collect::<Vec<_>>(),
        vec![5, 6]
    );
    assert_eq!(reports.last().unwrap().masked, 0);
    assert_eq!(&tokens[3..], &[3, 4, 5, 6, 0, 1, 2, 3]);
}

/// More steps than masks: each step commits one and the run ends when the canvas is full (the
/// steps past that could commit nothing; a run with a huge budget used to step on forever).
#[test]
fn steps_beyond_the_masks_are_dropped() {
    let (_, reports) = run(canvas(1, 5), params(7, 5), |_| 2.0);
    let counts: Vec<usize> = reports.iter().map(|r| r.committed.len()).collect();
    assert_eq!(counts, vec![1, 1, 1, 1, 1]);
    assert_eq!(reports.last().unwrap().nfe, 5);
    assert_eq!(reports.last().unwrap().steps, 5);
    let (_, reports) = run(canvas(1, 5), params(usize::MAX, 5), |_| 2.0);
    assert_eq!(reports.len(), 5);
    assert_eq!(reports.last().unwrap().masked, 0);
}

#[test]
fn remainder_goes_to_first_steps() {
    let (_, reports) = run(canvas(1, 7), params(3, 7), |_| 2.0);
    let counts: Vec<usize> = reports.iter().map(|r| r.committed.len()).collect();
    assert_eq!(counts, vec![3, 2, 2]);
}

#[test]
fn prompt_tokens_never_change_and_infill_masks_are_filled() {
    // Text, two masks, text, one mask: only masked positions change.
    let tokens = vec![1, 2, MASK, MASK, 4, 5, MASK];
    let (out, reports) = run(tokens.clone(), params(3, 32), |p| p as f32);
    for (i, (&before, &after)) in tokens.iter().zip(&out).enumerate() {
        if before != MASK {
            assert_eq!(before, after, "position {i} changed");
        } else {
            assert_eq!(after, (i % 7) as u32);
        }
    }
    assert_eq!(reports.iter().map(|r| r.committed.len()).sum::<usize>(), 3);
}

#[test]
fn left_to_right_commits_leftmost_first() {
    let p = SamplerParams {
        strategy: Strategy::LeftToRight,
        ..params(6, 6)
    };
    let (_, reports) = run(canvas(2, 6), p, |p| 10.0 - p as f32);
    let order: Vec<usize> = reports
        .iter()
        .flat_map(|r| r.committed.iter().map(|c| c.pos))
        .collect();
    assert_eq!(order, vec![2, 3, 4, 5, 6, 7]);
}

#[test]
fn threshold_commits_top1_plus_confident_positions() {
    // Positions 4 and 5 are near-certain, the rest are not.
    let sharp = |p: usize| {
        if p == 4 || p == 5 {
            20.0
        } else {
            0.5 + p as f32 * 0.01
        }
    };
    let p = SamplerParams {
        parallel: Some(Parallel::Threshold(0.9)),
        ..params(64, 64)
    };
    let (_, reports) = run(canvas(2, 6), p, sharp);
    assert_eq!(
        reports[0]
            .committed
            .iter()
            .map(|c| c.pos)
            .collect::<Vec<_>>(),
        vec![4, 5]
    );
    // Afterwards nothing reaches 0.9: one token per step.
    assert!(reports[1..].iter().all(|r| r.committed.len() == 1));
    assert_eq!(reports.len(), 5);
    assert_eq!(reports.last().unwrap().steps, 5);
}

#[test]
fn factor_rule_accepts_while_score_clears_its_bar() {
    // Scores: sorted confidences c1 >= c2 >= ...; with f = 1, the bar for the n-th is 1 - 1/(n+1).
    let mut sampler = Sampler::new(
        canvas(0, 4),
        SamplerParams {
            parallel: Some(Parallel::Factor(1.0)),
            ..params(4, 4)
        },
        traits(),
    )
    .unwrap();
    let c = |pos, score| Commit { pos, id: 0, score };
    // bars: n=2 -> 0.667, n=3 -> 0.75, n=4 -> 0.8
    let chosen = sampler.choose(vec![c(0, 0.5), c(1, 0.9), c(2, 0.7), c(3, 0.74)], None);
    assert_eq!(chosen.iter().map(|c| c.pos).collect::<Vec<_>>(), vec![1, 3]);
    let chosen = sampler.choose(vec![c(0, 0.1), c(1, 0.2)], None);
    assert_eq!(chosen.len(), 1, "the best position is always accepted");
}

#[test]
fn cfg_masks_context_in_the_unconditional_pass_and_mixes_logits() {
    let tokens = vec![1, 2, MASK, MASK];
    let p = SamplerParams {
        cfg_scale: 1.5,
        ..params(2, 2)
    };
    let mut sampler = Sampler::new(tokens, p, traits()).unwrap();
    let inputs = sampler.model_inputs();
    assert_eq!(
        inputs,
        vec![vec![1, 2, MASK, MASK], vec![MASK, MASK, MASK, MASK]]
    );
    // cond prefers token 1, uncond prefers token 0 strongly; guided = un + 2.5 (cond - un).
    let cond = Logits::new([0.0, 1.0, 0.0, 0.0].repeat(4), 4);
    let uncond = Logits::new([3.0, 0.0, 0.0, 0.0].repeat(4), 4);
    assert_eq!(
        sampler.row(&[cond.clone(), uncond.clone()], 2),
        vec![-4.5, 2.5, 0.0, 0.0]
    );
    let report = sampler
        .step(|_| Ok(vec![cond.clone(), uncond.clone()]))
        .unwrap()
        .unwrap();
    assert_eq!(report.committed[0].id, 1);
}

#[test]
fn shifted_models_read_the_previous_row() {
    let mut sampler = Sampler::new(
        vec![5, MASK, MASK],
        params(2, 2),
        ModelTraits {
            shift_logits: true,
            ..traits()
        },
    )
    .unwrap();
    let logits = fake_logits(3, |_| 3.0);
    assert_eq!(
        sampler.row(std::slice::from_ref(&logits), 1),
        logits.row(0).to_vec()
    );
    assert_eq!(
        sampler.row(std::slice::from_ref(&logits), 0),
        logits.row(0).to_vec()
    );
    sampler.step(|_| Ok(vec![logits.clone()])).unwrap();
    // Position 1 is predicted from row 0 (token 0), position 2 from row 1 (token 1).
    sampler.step(|_| Ok(vec![logits.clone()])).unwrap();
    assert_eq!(sampler.tokens(), &[5, 0, 1]);
}

#[test]
fn runs_are_deterministic_per_seed() {
    let sample = |seed, strategy| {
        let p = SamplerParams {
            temperature: 1.0,
            strategy,
            seed,
            ..params(8, 8)
        };
        run(canvas(2, 16), p, |p| 0.5 + (p % 3) as f32 * 0.2).0
    };
    for strategy in [Strategy::LowConfidence, Strategy::Random] {
        assert_eq!(sample(1, strategy), sample(1, strategy));
        assert_ne!(sample(1, strategy), sample(2, strategy));
    }
}

#[test]
fn alg_temp_samples_positions_reproducibly() {
    let sample = |seed| {
        let p = SamplerParams {
            alg_temp: Some(0.5),
            seed,
            ..params(4, 8)
        };
        let (_, reports) = run(canvas(0, 8), p, |p| 1.0 + p as f32 * 0.01);
        reports
            .iter()
            .map(|r| r.committed.iter().map(|c| c.pos).collect::<Vec<_>>())
            .collect::<Vec<_>>()
    };
    let a = sample(3);
    assert_eq!(a, sample(3));
    assert!(a.iter().all(|step| step.len() == 2));
    let all: std::collections::BTreeSet<usize> = a.iter().flatten().copied().collect();
    assert_eq!(all.len(), 8);
}

#[test]
fn timestep_schedule_counts_follow_dream() {
    let p = SamplerParams {
        schedule: Schedule::Timestep,
        ..params(4, 16)
    };
    let (_, reports) = run(canvas(1, 16), p, |_| 2.0);
    let counts: Vec<usize> = reports.iter().map(|r| r.committed.len()).collect();
    assert_eq!(counts, vec![3, 4, 4, 5]);
}

#[test]
fn invalid_parameters_are_refused_with_their_name() {
    let bad = |p: SamplerParams| {
        Sampler::new(canvas(1, 4), p, traits())
            .err()
            .unwrap()
            .to_string()
    };
    assert!(bad(params(0, 4)).contains("steps"));
    assert!(bad(params(4, 0)).contains("block length"));
    assert!(bad(SamplerParams {
        temperature: -1.0,
        ..params(4, 4)
    })
    .contains("temperature"));
    assert!(bad(SamplerParams {
        top_p: Some(1.5),
        ..params(4, 4)
    })
    .contains("top-p"));
    assert!(Sampler::new(vec![1, 2], params(4, 4), traits()).is_err());
}

/// A model that writes token 1 at positions 2..4 and end-of-text (7) from position 4 on, most
/// sure of the leftmost positions, so generation goes left to right.
fn eos_logits(len: usize) -> Logits {
    let mut data = vec![0.0; len * VOCAB];
    for p in 0..len {
        let token = if p < 4 { 1 } else { 7 };
        data[p * VOCAB + token] = 20.0 - p as f32;
    }
    Logits::new(data, VOCAB)
}

fn run_eos(params: SamplerParams) -> (Vec<u32>, Vec<StepReport>, usize) {
    let mut sampler = Sampler::new(canvas(2, 10), params, traits()).unwrap();
    let mut reports = Vec::new();
    while let Some(r) = sampler
        .step(|request| Ok(vec![eos_logits(request.canvases[0].len())]))
        .unwrap()
    {
        reports.push(r);
    }
    let nfe = sampler.nfe();
    (sampler.tokens().to_vec(), reports, nfe)
}

#[test]
fn stop_at_eos_fills_the_padding_once_the_answer_has_ended() {
    let plain = params(10, 12);
    let (tokens, reports, nfe) = run_eos(plain.clone());
    assert_eq!(tokens, vec![0, 1, 1, 1, 7, 7, 7, 7, 7, 7, 7, 7]);
    assert_eq!((reports.len(), nfe), (10, 10));

    let (tokens_stop, reports, nfe) = run_eos(SamplerParams {
        stop_at_eos: true,
        ..plain
    });
    assert_eq!(tokens_stop, tokens, "the same text");
    // Steps 1-2 write the answer, step 3 its end-of-text, and the rest is filled at once.
    assert_eq!((reports.len(), nfe), (3, 3));
    let last = reports.last().unwrap();
    assert_eq!(last.committed.len(), 8);
    assert_eq!((last.step, last.steps, last.masked), (3, 3, 0));
}

#[test]
fn stop_at_eos_waits_while_text_could_follow() {
    // End-of-text is written at position 4 first (it is the surest), while 2..4 are still masked:
    // nothing is filled until the answer before it is complete.
    let mut sampler = Sampler::new(
        canvas(2, 6),
        SamplerParams {
            stop_at_eos: true,
            ..params(6, 8)
        },
        traits(),
    )
    .unwrap();
    let logits = |len: usize| {
        let mut data = vec![0.0; len * VOCAB];
        for p in 0..len {
            let (token, sure) = if p < 4 {
                (1, 1.0)
            } else {
                (7, 30.0 - p as f32)
            };
            data[p * VOCAB + token] = sure;
        }
        Logits::new(data, VOCAB)
    };
    let first = sampler
        .step(|r| Ok(vec![logits(r.canvases[0].len())]))
        .unwrap()
        .unwrap();
    assert_eq!(first.committed.len(), 1);
    assert_eq!(first.committed[0].pos, 4);
    assert!(!sampler.is_done());
    sampler
        .run_to_end(|r| Ok(vec![logits(r.canvases[0].len())]))
        .unwrap();
    assert_eq!(sampler.masked(), 0);
}

/// Logits with a NaN (broken weights or config) stop the run with a message instead of
/// committing garbage.
#[test]
fn non_finite_logits_are_an_error() {
    for strategy in [Strategy::LowConfidence, Strategy::Random] {
        let p = SamplerParams {
            strategy,
            ..params(4, 4)
        };
        let mut sampler = Sampler::new(canvas(1, 4), p, traits()).unwrap();
        let e = sampler
            .step(|request| {
                let width = 8;
                let n = request.canvases[0].len();
                Ok(request
                    .canvases
                    .iter()
                    .map(|_| Logits::new(vec![f32::NAN; n * width], width))
                    .collect())
            })
            .unwrap_err();
        assert!(format!("{e:#}").contains("non-finite"), "{e:#}");
    }
}

/// Inspecting records what every step scored without changing a token: each committed token is
/// among the scored positions with the same id and score, kept masks are the rest of the window,
/// and the top candidates are probabilities in falling order.
#[test]
fn inspecting_records_the_scored_positions_and_changes_nothing() {
    let sharp = |p: usize| 1.0 + (p % 5) as f32 * 0.7;
    for temperature in [0.0, 0.8] {
        let p = SamplerParams {
            temperature,
            ..params(4, 4)
        };
        let (plain, plain_reports) = run(canvas(3, 8), p.clone(), sharp);
        let (inspected, reports) = run_with(canvas(3, 8), p, sharp, true);
        assert_eq!(inspected, plain);
        assert!(plain_reports.iter().all(|r| r.scored.is_empty()));
        for (r, plain) in reports.iter().zip(&plain_reports) {
            assert_eq!(r.committed, plain.committed);
            assert_eq!(r.window, plain.window);
            // Steps 1-2 in the first block, 3-4 in the second.
            assert!(r.window == (3..7) || r.window == (7..11), "{:?}", r.window);
            for c in &r.committed {
                let s = r.scored.iter().find(|s| s.pos == c.pos).expect("scored");
                assert_eq!((s.id, s.score), (c.id, c.score));
            }
            assert!(r.scored.iter().all(|s| s.pos < r.window.end));
            for s in &r.scored {
                assert_eq!(s.top.len(), TOP_CANDIDATES);
                assert!(s.top.windows(2).all(|w| w[0].1 >= w[1].1));
                let total: f32 = s.top.iter().map(|t| t.1).sum();
                assert!(total <= 1.0 + 1e-5 && s.top[0].1 > 0.0);
                // The fake model's favourite at p is p % 7.
                assert_eq!(s.top[0].0, (s.pos % 7) as u32);
            }
        }
        // The first step scored the whole first block: 4 positions, 2 committed, 2 kept.
        assert_eq!(reports[0].scored.len(), 4);
    }
}

#[test]
fn top_probabilities_of_hand_made_logits() {
    // softmax([ln 1, ln 6, ln 3]) = [0.1, 0.6, 0.3]
    let top = top_probabilities(&[0.0, 6f32.ln(), 3f32.ln()], 2);
    assert_eq!(top.len(), 2);
    assert_eq!((top[0].0, top[1].0), (1, 2));
    assert!((top[0].1 - 0.6).abs() < 1e-6 && (top[1].1 - 0.3).abs() < 1e-6);
    // Ties go to the lower id; -inf entries have probability 0; k larger than the row.
    let top = top_probabilities(&[1.0, 1.0, f32::NEG_INFINITY], 5);
    assert_eq!(top.iter().map(|t| t.0).collect::<Vec<_>>(), vec![0, 1, 2]);
    assert_eq!(top[2].1, 0.0);
}

fn remdm_params(schedule: Remdm, eta: f64, steps: usize, block_length: usize) -> SamplerParams {
    SamplerParams {
        steps,
        block_length,
        temperature: 1.0,
        remdm: schedule,
        eta,
        ..SamplerParams::default()
    }
}

/// ReMDM remasks generated tokens, never the prompt, ends with nothing masked, stays within its
/// planned steps, and gives the same run for the same seed.
#[test]
fn remdm_remasks_generated_tokens_only_and_finishes() {
    for schedule in [Remdm::Cap, Remdm::Rescale, Remdm::Loop] {
        let eta = if schedule == Remdm::Loop { 0.1 } else { 0.5 };
        let p = remdm_params(schedule, eta, 24, 8);
        let prompt = canvas(3, 0);
        let (tokens, reports) = run(canvas(3, 16), p.clone(), |_| 1.0);
        assert_eq!(&tokens[..3], &prompt[..], "{schedule:?}");
        assert!(tokens.iter().all(|&t| t != MASK), "{schedule:?}");
        let remasked: Vec<usize> = reports.iter().flat_map(|r| r.remasked.clone()).collect();
        assert!(
            !remasked.is_empty(),
            "{schedule:?}: eta {eta} remasked nothing"
        );
        assert!(
            remasked.iter().all(|&p| p >= 3),
            "{schedule:?}: {remasked:?}"
        );
        // A remasked token's window is its block; the plan is an upper bound that tightens.
        for r in &reports {
            assert!(r.remasked.iter().all(|p| r.window.contains(p)));
            assert!(
                r.step <= r.steps,
                "{schedule:?}: step {} of {}",
                r.step,
                r.steps
            );
        }
        assert_eq!(reports.last().unwrap().steps, reports.len());
        let (again, _) = run(canvas(3, 16), p.clone(), |_| 1.0);
        assert_eq!(tokens, again, "{schedule:?}: not reproducible");
        let other = SamplerParams { seed: 1, ..p };
        let (different, _) = run(canvas(3, 16), other, |_| 1.0);
        assert_ne!(tokens, different, "{schedule:?}: the seed changed nothing");
    }
}

/// With eta 0 nothing is ever remasked (MDLM's ancestral sampler), and the canvas's masked share
/// follows the schedule: every step unmasks each mask with probability (t - s) / t.
#[test]
fn remdm_with_eta_zero_is_mdlm() {
    let (tokens, reports) = run(canvas(0, 32), remdm_params(Remdm::Cap, 0.0, 8, 32), |_| 1.0);
    assert!(tokens.iter().all(|&t| t != MASK));
    assert!(reports.iter().all(|r| r.remasked.is_empty()));
    let committed: usize = reports.iter().map(|r| r.committed.len()).sum();
    assert_eq!(committed, 32);
}

/// The paper's bookkeeping: with the masked share at 1 - alpha_t, a step leaves 1 - alpha_s
/// masked in expectation (remasks are paid for by faster unmasking), and q is a distribution.
#[test]
fn remdm_odds_keep_the_masked_share_on_schedule() {
    for schedule in [Remdm::Cap, Remdm::Rescale] {
        for eta in [0.0, 0.01, 0.3, 1.0] {
            let r = remdm::RemdmParams {
                schedule,
                eta,
                t_on: 0.55,
                t_off: 0.05,
                alpha_on: 0.9,
            };
            let steps = 16;
            for j in 0..steps {
                let o = r.odds(j, steps);
                let t = schedule::linspace_f32(1.0, remdm::EPS as f32, steps + 1, j) as f64;
                let s = (t as f32 - ((1.0 - remdm::EPS) / steps as f64) as f32) as f64;
                assert!(
                    (o.unmask + o.stay - 1.0).abs() < 1e-9,
                    "{schedule:?} {eta} {j}"
                );
                assert!((o.keep + o.remask - 1.0).abs() < 1e-12);
                assert!(
                    o.stay >= -1e-12 && o.remask >= 0.0,
                    "{schedule:?} {eta} {j}: {o:?}"
                );
                let after = t * o.stay + (1.0 - t) * o.remask;
                assert!(
                    (after - s).abs() < 1e-6,
                    "{schedule:?} {eta} step {j}: {after} vs {s}"
                );
            }
        }
    }
    // The loop holds alpha at alpha_on: as many tokens refilled as remasked.
    let r = remdm::RemdmParams {
        schedule: Remdm::Loop,
        eta: 0.02,
        t_on: 0.55,
        t_off: 0.05,
        alpha_on: 0.9,
    };
    let o = r.odds(50, 100);
    assert_eq!(o.remask, 0.02);
    let masked = 1.0 - 0.9;
    assert!((masked * o.unmask - (1.0 - masked) * o.remask).abs() < 1e-12);
}

/// The exponential race draws each id with probability proportional to its weight.
#[test]
fn remdm_race_is_a_categorical_draw() {
    use rand::Rng;
    let weights = [(0u32, 0.2), (3, 0.5), (9, 0.3)];
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut counts = [0usize; 3];
    let n = 30_000;
    for _ in 0..n {
        let u: Vec<f64> = (0..3).map(|_| rng.random()).collect();
        let id = remdm::race(&weights, &u);
        counts[weights.iter().position(|w| w.0 == id).unwrap()] += 1;
    }
    for (c, w) in counts.iter().zip(weights) {
        let share = *c as f64 / n as f64;
        assert!((share - w.1).abs() < 0.015, "{share} for weight {}", w.1);
    }
}

/// The reference's nucleus keeps tokens whose inclusive cumulative mass is at most p.
#[test]
fn remdm_nucleus_follows_the_reference_rule() {
    let row: Vec<f32> = [0.5f32, 0.3, 0.2].iter().map(|p| p.ln()).collect();
    let p = remdm::probabilities(&row, 99, 1.0, None, Some(0.9));
    assert_eq!(p.len(), 2);
    assert!((p[0].1 - 0.625).abs() < 1e-6 && (p[1].1 - 0.375).abs() < 1e-6);
    // Only the top token survives a tiny p; temperature 0 is the argmax.
    assert_eq!(
        remdm::probabilities(&row, 99, 1.0, None, Some(0.1)),
        vec![(0, 1.0)]
    );
    assert_eq!(
        remdm::probabilities(&row, 0, 0.0, None, None),
        vec![(1, 1.0)]
    );
}

#[test]
fn remdm_refuses_rules_it_replaces_and_bad_loops() {
    let mut p = remdm_params(Remdm::Cap, 0.1, 8, 8);
    p.parallel = Some(Parallel::Threshold(0.9));
    assert!(p.validate().unwrap_err().to_string().contains("threshold"));
    let mut p = remdm_params(Remdm::Loop, 0.5, 8, 8);
    assert!(p.validate().unwrap_err().to_string().contains("alpha on"));
    p.eta = 0.02;
    p.t_off = 0.7;
    assert!(p.validate().unwrap_err().to_string().contains("t off"));
    p.remdm = Remdm::Cap;
    p.eta = 1.5;
    assert!(p.validate().unwrap_err().to_string().contains("eta"));
}

/// Logits over 8 tokens where the mask (id 5) is the best guess at `masky` positions, and
/// token p % 5 elsewhere (the runner-up at a masky position is p % 5 as well).
fn masky_logits(len: usize, masky: &[usize]) -> Logits {
    let mut data = vec![0.0; len * VOCAB];
    for p in 0..len {
        data[p * VOCAB + p % 5] = 2.0 + p as f32 * 0.01;
        if masky.contains(&p) {
            data[p * VOCAB + 5] = 4.0;
        }
    }
    Logits::new(data, VOCAB)
}

fn masky_run(
    tokens: Vec<u32>,
    params: SamplerParams,
    masky: &[usize],
) -> (Vec<u32>, Vec<StepReport>) {
    let traits = ModelTraits {
        mask_id: 5,
        ..traits()
    };
    let mut sampler = Sampler::new(tokens, params, traits).unwrap();
    let mut reports = Vec::new();
    while let Some(r) = sampler
        .step(|request| {
            Ok(request
                .canvases
                .iter()
                .map(|t| masky_logits(t.len(), masky))
                .collect())
        })
        .unwrap()
    {
        reports.push(r);
    }
    (sampler.tokens().to_vec(), reports)
}

/// As LLaDA's generate.py: where the mask token is the argmax it is "committed" (the position
/// stays masked) and uses up one of the step's transfers; the schedule's steps are the
/// reference's, and one finishing step then fills what is left with real tokens.
#[test]
fn a_mask_proposal_uses_a_transfer_and_leftovers_are_finished() {
    let canvas: Vec<u32> = vec![0, 1, 5, 5, 5, 5];
    // Position 2 prefers the mask and is the most confident, and the fake model's answer does
    // not depend on the canvas: each of the 4 steps (one transfer each) picks position 2, which
    // stays masked, so the schedule commits nothing and the finishing step fills all four.
    let (tokens, reports) = masky_run(canvas.clone(), params(4, 4), &[2]);
    let counts: Vec<usize> = reports.iter().map(|r| r.committed.len()).collect();
    assert_eq!(
        counts,
        vec![0, 0, 0, 0, 4],
        "four scheduled steps, then the finishing one"
    );
    assert_eq!(
        reports[3].masked, 4,
        "the schedule ends with every position open"
    );
    let last = reports.last().unwrap();
    assert_eq!((last.masked, last.step, last.steps, last.nfe), (0, 5, 5, 5));
    assert_eq!(tokens, vec![0, 1, 2, 3, 4, 0]);
    // Two transfers a step: the mask takes one, the next most confident the other.
    let (tokens, reports) = masky_run(canvas, params(2, 4), &[2]);
    let counts: Vec<usize> = reports.iter().map(|r| r.committed.len()).collect();
    assert_eq!(counts, vec![1, 1, 2]);
    assert_eq!(tokens, vec![0, 1, 2, 3, 4, 0]);
}

/// A dynamic rule whose every pick is the mask would repeat the same step forever (Fast-dLLM's
/// loop would): that step commits real tokens instead, so the run ends.
#[test]
fn a_threshold_run_whose_best_guesses_are_all_masks_still_ends() {
    let p = SamplerParams {
        parallel: Some(Parallel::Threshold(0.9)),
        ..params(4, 4)
    };
    let (tokens, reports) = masky_run(vec![0, 1, 5, 5, 5, 5], p, &[2, 3, 4, 5]);
    assert!(!tokens.contains(&5), "{tokens:?}");
    assert!(reports.len() <= 4, "{}", reports.len());
}
