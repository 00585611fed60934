//! Golden tests against ReMDM's reference sampler (kuleshov-group/remdm, `diffusion.py`):
//! `tests/fixtures/make_remdm_fixtures.py` runs the reference's own `_ddpm_caching_update`,
//! `_subs_parameterization` and `_sample_categorical` over a toy model and records, per step, the
//! unnormalised categorical `q` it built and the uniforms its draw used. The sampler here replays
//! those uniforms and must build the same `q` (the paper's formulas, float32 times as the
//! reference) and reach the same canvas after every step, and the same final text.

use std::path::PathBuf;

use dlm_tui::sampler::remdm::{probabilities, race, Odds, RemdmParams};
use dlm_tui::sampler::{Logits, ModelTraits, Remdm, Sampler, SamplerParams};
use serde_json::Value;

fn fixture() -> Value {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/golden/remdm_sample.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn numbers(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

/// The reference case's schedule as ReMDM parameters (its `mdlm` is cap with eta 0).
fn remdm_params(case: &Value) -> RemdmParams {
    let schedule = match case["sampler"].as_str().unwrap() {
        "mdlm" | "remdm-cap" => Remdm::Cap,
        "remdm-rescale" => Remdm::Rescale,
        "remdm-loop" => Remdm::Loop,
        other => panic!("no case for {other}"),
    };
    RemdmParams {
        schedule,
        eta: case["eta"].as_f64().unwrap(),
        t_on: case["t_on"].as_f64().unwrap(),
        t_off: case["t_off"].as_f64().unwrap(),
        alpha_on: case["alpha_on"].as_f64().unwrap(),
    }
}

/// The toy model: a fixed table plus a bonus of 1.5 on (left neighbour + 1) mod 7.
fn toy_logits(table: &[Vec<f64>], canvas: &[u32], mask: u32) -> Logits {
    let (len, width) = (canvas.len(), table[0].len());
    let mut data = Vec::with_capacity(len * width);
    for pos in 0..len {
        let prev = canvas[(pos + len - 1) % len];
        for (v, &l) in table[pos].iter().enumerate() {
            let bonus = if prev != mask && v as u32 == (prev + 1) % 7 {
                1.5
            } else {
                0.0
            };
            data.push((l as f32) + bonus);
        }
    }
    Logits::new(data, width)
}

fn relative_close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 2e-6 * a.abs().max(b.abs()).max(1e-12)
}

/// Every step's q, built from the formulas here, equals the reference's up to float32 rounding
/// (mdlm's q is cap's with eta 0 times t, the same draw), and the race on the recorded uniforms
/// picks the reference's token at every position.
#[test]
fn each_step_builds_the_reference_categorical() {
    let fixture = fixture();
    let table: Vec<Vec<f64>> = fixture["toy_table"]
        .as_array()
        .unwrap()
        .iter()
        .map(numbers)
        .collect();
    for case in fixture["cases"].as_array().unwrap() {
        let name = format!("{} p={}", case["sampler"], case["nucleus_p"]);
        let mask = case["mask_index"].as_u64().unwrap() as u32;
        let steps = case["steps"].as_u64().unwrap() as usize;
        let params = remdm_params(case);
        let top_p = case["nucleus_p"].as_f64().filter(|&p| p < 1.0);
        let mdlm = case["sampler"] == "mdlm";
        let times = numbers(&case["timesteps_f32"]);
        for (i, step) in case["trace"].as_array().unwrap().iter().enumerate() {
            assert_eq!(step["t"].as_f64().unwrap(), times[i]);
            let odds: Odds = params.odds(i, steps);
            let x = ids(&step["x_in"]);
            let logits = toy_logits(&table, &x, mask);
            // mdlm leaves q unnormalised by t (1 - alpha_t); cap with eta 0 divides by it.
            let scale = if mdlm { times[i] } else { 1.0 };
            let x_out = ids(&step["x_out"]);
            for (pos, q_ref) in step["q"].as_array().unwrap().iter().enumerate() {
                let q_ref = numbers(q_ref);
                let uniforms = numbers(&step["uniforms"][pos]);
                let weights: Vec<(u32, f64)> = if x[pos] == mask {
                    let p = probabilities(logits.row(pos), mask, 1.0, None, top_p);
                    let mut w: Vec<(u32, f64)> =
                        p.iter().map(|&(id, p)| (id, p * odds.unmask)).collect();
                    let at = w.partition_point(|e| e.0 < mask);
                    w.insert(at, (mask, odds.stay));
                    w
                } else if odds.remask == 0.0 {
                    // The reference copies committed tokens under mdlm (and the loop's mdlm
                    // phases) whatever it draws.
                    assert_eq!(x_out[pos], x[pos], "{name} step {i}");
                    continue;
                } else {
                    let mut w = vec![(x[pos], odds.keep), (mask, odds.remask)];
                    w.sort_by_key(|e| e.0);
                    w
                };
                for (id, q) in q_ref.iter().enumerate() {
                    let ours = weights
                        .iter()
                        .find(|e| e.0 == id as u32)
                        .map_or(0.0, |e| e.1 * scale);
                    assert!(
                        relative_close(ours, *q) || (ours - q).abs() < 1e-12,
                        "{name} step {i} pos {pos} token {id}: q {ours} against the reference's {q}"
                    );
                }
                let picked: Vec<f64> = weights.iter().map(|e| uniforms[e.0 as usize]).collect();
                let nonzero: Vec<(u32, f64)> =
                    weights.iter().copied().filter(|e| e.1 > 0.0).collect();
                let u: Vec<f64> = weights
                    .iter()
                    .zip(&picked)
                    .filter(|(e, _)| e.1 > 0.0)
                    .map(|(_, &u)| u)
                    .collect();
                assert_eq!(race(&nonzero, &u), x_out[pos], "{name} step {i} pos {pos}");
            }
        }
    }
}

/// The whole run through [`Sampler`] with the recorded uniforms: the canvas after every step and
/// the final text equal the reference's, and the model is asked only when the canvas changed.
#[test]
fn whole_runs_match_the_reference_step_by_step() {
    let fixture = fixture();
    let table: Vec<Vec<f64>> = fixture["toy_table"]
        .as_array()
        .unwrap()
        .iter()
        .map(numbers)
        .collect();
    for case in fixture["cases"].as_array().unwrap() {
        let name = format!("{} p={}", case["sampler"], case["nucleus_p"]);
        let mask = case["mask_index"].as_u64().unwrap() as u32;
        let remdm = remdm_params(case);
        let trace = case["trace"].as_array().unwrap();
        let params = SamplerParams {
            steps: case["steps"].as_u64().unwrap() as usize,
            block_length: 64,
            temperature: 1.0,
            top_p: case["nucleus_p"].as_f64().filter(|&p| p < 1.0),
            remdm: remdm.schedule,
            eta: remdm.eta,
            t_on: remdm.t_on,
            t_off: remdm.t_off,
            alpha_on: remdm.alpha_on,
            ..SamplerParams::default()
        };
        let traits = ModelTraits {
            mask_id: mask,
            shift_logits: false,
            blocks: None,
            eos_ids: Vec::new(),
            eot_ids: Vec::new(),
        };
        let mut sampler = Sampler::new(vec![mask; 6], params, traits).unwrap();
        sampler.replay_uniforms(
            trace
                .iter()
                .map(|s| {
                    s["uniforms"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(numbers)
                        .collect()
                })
                .collect(),
        );
        let mut calls = 0;
        for (i, step) in trace.iter().enumerate() {
            let report = sampler
                .step(|request| {
                    calls += 1;
                    Ok(vec![toy_logits(&table, &request.canvases[0], mask)])
                })
                .unwrap();
            // With nothing masked and nothing to remask (eta 0) the run stops early; the
            // reference's remaining steps must change nothing.
            let Some(report) = report else {
                for rest in &trace[i..] {
                    assert_eq!(sampler.tokens(), ids(&rest["x_out"]), "{name} step {i}");
                }
                break;
            };
            assert_eq!(sampler.tokens(), ids(&step["x_out"]), "{name} step {i}");
            let before = ids(&step["x_in"]);
            let remasked: Vec<usize> = (0..6)
                .filter(|&p| before[p] != mask && sampler.tokens()[p] == mask)
                .collect();
            assert_eq!(report.remasked, remasked, "{name} step {i}");
        }
        // The reference asks the model whenever its cache is stale; here a step with nothing
        // masked needs no model at all, so at most as many calls.
        let reference_calls = trace.iter().filter(|s| s["model_called"] == true).count();
        assert!(
            calls <= reference_calls,
            "{name}: {calls} > {reference_calls}"
        );
        assert_eq!(sampler.tokens(), ids(&case["x_before_noise_removal"]));
        // The greedy pass that fills what is left.
        while sampler
            .step(|request| Ok(vec![toy_logits(&table, &request.canvases[0], mask)]))
            .unwrap()
            .is_some()
        {}
        assert_eq!(sampler.tokens(), ids(&case["final"]), "{name}: final");
    }
}
