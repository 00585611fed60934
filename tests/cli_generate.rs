//! The `dlm-tui generate` contract, driven through the real binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn generate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dlm-tui"))
        .arg("generate")
        .args(args)
        .output()
        .expect("running dlm-tui")
}

fn json_lines(out: &Output) -> Vec<Value> {
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
        .collect()
}

fn tokens(v: &Value) -> Vec<u64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect()
}

#[test]
fn json_output_matches_llada_reference_from_prompt_text() {
    let text = std::fs::read_to_string(fixture("golden/llada_generate.json")).unwrap();
    let cases: Value = serde_json::from_str(&text).unwrap();
    for case in cases["cases"].as_array().unwrap() {
        let dir = fixture(case["model"].as_str().unwrap());
        let s = |k: &str| case[k].to_string();
        let out = generate(&[
            "--model-dir",
            dir.to_str().unwrap(),
            "--prompt",
            case["prompt_text"].as_str().unwrap(),
            "--length",
            &s("gen_length"),
            "--steps",
            &s("steps"),
            "--block-length",
            &s("block_length"),
            "--cfg",
            &s("cfg_scale"),
            // LLaDA's generate.py: greedy, low-confidence remasking (not the playground's
            // defaults, which `generate` shares).
            "--temperature",
            "0",
            "--strategy",
            "low-confidence",
            "--json",
        ]);
        let lines = json_lines(&out);
        let done = lines.last().unwrap();
        assert_eq!(done["type"], "done");
        // The playground export's end-line fields too.
        assert_eq!(
            (&done["lane"], &done["strategy"], &done["masked"]),
            (&0.into(), &"low-confidence".into(), &0.into())
        );
        assert_eq!(
            tokens(&done["tokens"]),
            tokens(&case["output"]),
            "case {case}"
        );
        assert_eq!(
            done["prompt_len"],
            case["prompt_ids"].as_array().unwrap().len()
        );
        let steps = lines.iter().filter(|l| l["type"] == "step").count();
        assert_eq!(steps as u64, case["steps"].as_u64().unwrap());
    }
}

#[test]
fn step_lines_follow_the_schedule_and_the_schema() {
    let dir = fixture("llada-tiny-gqa");
    let out = generate(&[
        "--model-dir",
        dir.to_str().unwrap(),
        "--prompt",
        "Tom had a red ball.",
        "--length",
        "32",
        "--steps",
        "8",
        "--block-length",
        "16",
        "--json",
    ]);
    let lines = json_lines(&out);
    let steps: Vec<&Value> = lines.iter().filter(|l| l["type"] == "step").collect();
    assert_eq!(steps.len(), 8);
    let mut masked = 32;
    for (i, step) in steps.iter().enumerate() {
        assert_eq!(step["lane"], 0);
        assert_eq!(step["step"], i + 1);
        assert_eq!(step["steps"], 8);
        let committed = step["committed"].as_array().unwrap();
        assert_eq!(
            committed.len(),
            4,
            "uniform: 16 masks per block over 4 steps"
        );
        for c in committed {
            let pos = c["pos"].as_u64().unwrap();
            assert!(c["id"].is_u64() && c["text"].is_string() && c["score"].is_f64());
            // First four steps stay in the first block.
            let prompt_len = lines.last().unwrap()["prompt_len"].as_u64().unwrap();
            let block = (pos - prompt_len) / 16;
            assert_eq!(block, (i / 4) as u64);
        }
        masked -= 4;
        assert_eq!(step["masked"], masked);
        assert_eq!(step["nfe"], i + 1);
        assert!(step["elapsed_ms"].is_f64());
        assert_eq!(
            step["text"].as_str().unwrap().matches("[MASK]").count(),
            masked
        );
    }
    assert!(lines.last().unwrap()["elapsed_ms"].is_f64());
}

#[test]
fn infilling_fills_only_the_masks() {
    let dir = fixture("llada-tiny-tied");
    let out = generate(&[
        "--model-dir",
        dir.to_str().unwrap(),
        "--prompt",
        "Once upon a [MASK:3] there was a [MASK] girl.",
        "--length",
        "0",
        "--json",
    ]);
    let lines = json_lines(&out);
    let done = lines.last().unwrap();
    // A run line, the steps, the done line.
    assert_eq!(lines[0]["type"], "run");
    let steps = lines.len() - 2;
    assert_eq!(steps, 4, "one step per masked token by default");
    let text = done["text"].as_str().unwrap();
    assert!(text.starts_with("Once upon a"), "{text}");
    assert!(text.contains(" there was a"), "{text}");
    assert!(text.ends_with(" girl."), "{text}");
    assert!(!lines[steps]["text"].as_str().unwrap().contains("[MASK]"));
}

#[test]
fn same_seed_same_output_other_seed_differs() {
    let dir = fixture("llada-tiny-gqa");
    let run = |seed: &str| {
        let out = generate(&[
            "--model-dir",
            dir.to_str().unwrap(),
            "--prompt",
            "Lily",
            "--length",
            "24",
            "--temperature",
            "1.0",
            "--seed",
            seed,
            "--json",
        ]);
        tokens(&json_lines(&out).last().unwrap()["tokens"])
    };
    assert_eq!(run("7"), run("7"));
    assert_ne!(run("7"), run("8"));
}

#[test]
fn every_strategy_and_schedule_runs_to_a_full_canvas() {
    let dir = fixture("llada-tiny-gqa");
    for extra in [
        vec!["--strategy", "random"],
        vec!["--strategy", "margin"],
        vec!["--strategy", "entropy"],
        vec!["--strategy", "left-to-right"],
        vec!["--schedule", "timestep"],
        vec!["--schedule", "linear"],
        vec!["--schedule", "cosine"],
        vec!["--threshold", "0.2"],
        vec!["--factor", "1.0"],
        vec!["--alg-temp", "0.5"],
        vec!["--top-k", "5", "--top-p", "0.9", "--temperature", "0.8"],
    ] {
        let mut args = vec![
            "--model-dir",
            dir.to_str().unwrap(),
            "--prompt",
            "The cat",
            "--length",
            "16",
            "--steps",
            "8",
            "--json",
        ];
        args.extend(extra.iter());
        let lines = json_lines(&generate(&args));
        let done = lines.last().unwrap();
        assert_eq!(done["type"], "done", "{extra:?}");
        let mask_id = 2; // <|mdm_mask|> in the fixture tokenizer
        assert!(
            !tokens(&done["tokens"]).contains(&mask_id),
            "{extra:?} left masks"
        );
    }
}

#[test]
fn plain_output_is_the_final_text() {
    let dir = fixture("llada-tiny-gqa");
    let out = generate(&[
        "--model-dir",
        dir.to_str().unwrap(),
        "--prompt",
        "Hello there",
        "--length",
        "8",
    ]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("Hello there"), "{text}");
}

fn expect_usage_error(args: &[&str], needle: &str) {
    let out = generate(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: stderr {stderr}");
    assert!(stderr.to_lowercase().contains(needle), "{args:?}: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(
        stderr.trim().lines().count(),
        1,
        "one-line error expected: {stderr}"
    );
}

#[test]
fn bad_input_exits_2_with_a_clear_message() {
    let dir = fixture("llada-tiny-gqa");
    let d = dir.to_str().unwrap();
    expect_usage_error(
        &["--model-dir", d, "--prompt", "x", "--steps", "0"],
        "steps",
    );
    expect_usage_error(
        &["--model-dir", d, "--prompt", "x", "--block-length", "0"],
        "block length",
    );
    expect_usage_error(
        &["--model-dir", d, "--prompt", "x", "--temperature", "-1"],
        "temperature",
    );
    expect_usage_error(
        &["--model-dir", d, "--prompt", "x", "--top-k", "0"],
        "top-k",
    );
    expect_usage_error(
        &["--model-dir", d, "--prompt", "x", "--length", "1000"],
        "at most 256",
    );
    expect_usage_error(
        &["--model-dir", d, "--prompt", "x", "--length", "0"],
        "nothing to generate",
    );
    expect_usage_error(
        &["--model-dir", d, "--prompt", "a [MASK:0] b"],
        "mask count",
    );
    expect_usage_error(
        &["--model-dir", "/nonexistent/model", "--prompt", "x"],
        "does not exist",
    );

    // Negative counts say so (clap read "-1" as an unknown flag).
    for flag in ["--length", "--steps", "--block-length"] {
        let out = generate(&["--model-dir", d, "--prompt", "x", flag, "-1"]);
        assert_eq!(out.status.code(), Some(2), "{flag}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("must be at least 0"), "{flag}: {err}");
    }

    // Unknown strategy: clap's own error, also exit 2.
    let out = generate(&["--model-dir", d, "--prompt", "x", "--strategy", "bogus"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bogus"));
}

/// Absurd counts are refused before anything is allocated (they aborted or panicked), and a
/// huge step budget or block length still fills the whole canvas and stops.
#[test]
fn absurd_counts_are_refused_or_capped() {
    let dir = fixture("llada-tiny-gqa");
    let d = dir.to_str().unwrap();
    let max = "18446744073709551615";
    for (prompt, length) in [("x", "4000000000"), ("x", max), ("[MASK:99999999]", "0")] {
        expect_usage_error(
            &["--model-dir", d, "--prompt", prompt, "--length", length],
            "accepts at most 256",
        );
    }
    expect_usage_error(
        &["--model-dir", d, "--prompt", &format!("[MASK][MASK:{max}]")],
        "more masks than can be counted",
    );
    for flag in ["--steps", "--block-length"] {
        let out = generate(&[
            "--model-dir",
            d,
            "--prompt",
            "x",
            "--length",
            "6",
            flag,
            max,
            "--json",
        ]);
        let lines = json_lines(&out);
        assert!(lines.len() <= 8, "{flag}: {} lines", lines.len());
        let done = lines.last().unwrap();
        assert_eq!(done["type"], "done", "{flag}");
        let last_step = &lines[lines.len() - 2];
        assert_eq!(last_step["masked"].as_u64(), Some(0), "{flag}: {last_step}");
        let tokens = tokens(&done["tokens"]);
        assert_eq!(
            tokens.len() - done["prompt_len"].as_u64().unwrap() as usize,
            6
        );
    }
}

#[test]
fn malformed_model_folders_exit_2() {
    let tmp = std::env::temp_dir().join(format!("dlm-tui-bad-model-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let d = tmp.to_str().unwrap().to_string();
    expect_usage_error(&["--model-dir", &d, "--prompt", "x"], "config.json");

    let good = fixture("llada-tiny-tied");
    std::fs::copy(good.join("tokenizer.json"), tmp.join("tokenizer.json")).unwrap();
    std::fs::write(tmp.join("config.json"), "{ not json").unwrap();
    expect_usage_error(&["--model-dir", &d, "--prompt", "x"], "not valid json");

    let mut cfg: Value =
        serde_json::from_str(&std::fs::read_to_string(good.join("config.json")).unwrap()).unwrap();
    std::fs::write(tmp.join("config.json"), cfg.to_string()).unwrap();
    expect_usage_error(&["--model-dir", &d, "--prompt", "x"], "safetensors");

    std::fs::write(tmp.join("model.safetensors"), b"garbage").unwrap();
    expect_usage_error(&["--model-dir", &d, "--prompt", "x"], "safetensors");

    std::fs::copy(
        good.join("model.safetensors"),
        tmp.join("model.safetensors"),
    )
    .unwrap();
    cfg["block_type"] = "sequential".into();
    std::fs::write(tmp.join("config.json"), cfg.to_string()).unwrap();
    expect_usage_error(&["--model-dir", &d, "--prompt", "x"], "block_type");

    cfg["block_type"] = "llama".into();
    // Values that made every activation NaN (and the output silently end-of-text) are refused.
    for (key, value) in [("rms_norm_eps", -1e-5), ("rope_theta", 0.0)] {
        let mut broken = cfg.clone();
        broken[key] = value.into();
        std::fs::write(tmp.join("config.json"), broken.to_string()).unwrap();
        expect_usage_error(&["--model-dir", &d, "--prompt", "x"], key);
    }
    // A context of 1e8 positions is capped (it aborted building the rotary table).
    let mut huge = cfg.clone();
    huge["max_sequence_length"] = 100_000_000.into();
    std::fs::write(tmp.join("config.json"), huge.to_string()).unwrap();
    let out = generate(&["--model-dir", &d, "--prompt", "x", "--length", "4"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    expect_usage_error(
        &["--model-dir", &d, "--prompt", "x", "--length", "40000"],
        "at most 32768",
    );

    // A tokenizer far smaller than the model's output (its ids would vanish from the text) is
    // refused, naming both sizes; a few hundred rows of padding are not (the fixture has 20).
    let mut wide = cfg.clone();
    wide["embedding_size"] = 4096.into();
    wide["vocab_size"] = 4096.into();
    std::fs::write(tmp.join("config.json"), wide.to_string()).unwrap();
    expect_usage_error(
        &["--model-dir", &d, "--prompt", "x"],
        "predicts 4096 token ids",
    );
    expect_usage_error(&["--model-dir", &d, "--prompt", "x"], "has only 300");

    cfg["model_type"] = "bert".into();
    cfg["architectures"] = serde_json::json!(["BertForMaskedLM"]);
    std::fs::write(tmp.join("config.json"), cfg.to_string()).unwrap();
    expect_usage_error(&["--model-dir", &d, "--prompt", "x"], "supported");
    std::fs::remove_dir_all(&tmp).ok();
}

#[test]
fn bench_reports_the_documented_fields() {
    let report = bench(&[
        "--length",
        "16",
        "--steps",
        "8",
        "--block-length",
        "8",
        "--warmup",
        "0",
        "--runs",
        "2",
        "--json",
    ]);
    for key in [
        "forward_ms_median",
        "step_ms_median",
        "tokens_per_s",
        "peak_rss_mb",
    ] {
        assert!(report[key].as_f64().unwrap() > 0.0, "{key}: {report}");
    }
    assert_eq!(report["nfe"], 8);
}

#[test]
fn cache_and_threshold_flags_reproduce_fast_dllm_from_prompt_text() {
    let read = |name: &str| -> Value {
        serde_json::from_str(&std::fs::read_to_string(fixture(name)).unwrap()).unwrap()
    };
    let plain = read("golden/llada_generate.json");
    let prompt_text = |model: &Value, prompt: &Value| -> String {
        plain["cases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| &c["model"] == model && &c["prompt"] == prompt)
            .map(|c| c["prompt_text"].as_str().unwrap().to_string())
            .unwrap()
    };
    let cached = read("golden/llada_cache_generate.json");
    for case in cached["cases"].as_array().unwrap() {
        let dir = fixture(case["model"].as_str().unwrap());
        let s = |k: &str| case[k].to_string();
        let mut args = vec![
            "--model-dir".to_string(),
            dir.to_str().unwrap().to_string(),
            "--prompt".into(),
            prompt_text(&case["model"], &case["prompt"]),
            "--length".into(),
            s("gen_length"),
            "--steps".into(),
            s("steps"),
            "--block-length".into(),
            s("block_length"),
            "--temperature".into(),
            "0".into(),
            "--strategy".into(),
            "low-confidence".into(),
            "--cache".into(),
            case["cache"].as_str().unwrap().to_string(),
            "--json".into(),
        ];
        if let Some(t) = case["threshold"].as_f64() {
            args.extend(["--threshold".to_string(), t.to_string()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let lines = json_lines(&generate(&args));
        let done = lines.last().unwrap();
        assert_eq!(
            tokens(&done["tokens"]),
            tokens(&case["output"]),
            "case {case}"
        );
    }
}

#[test]
fn suppress_eos_flag_reproduces_llada_logits_eos_inf() {
    // The golden cases use a stand-in end-of-text id: a copy of the fixture whose config names it
    // as eos_token_id lets the real CLI run them (`--logits-eos-inf` is an alias).
    let read = |name: &str| -> Value {
        serde_json::from_str(&std::fs::read_to_string(fixture(name)).unwrap()).unwrap()
    };
    let plain = read("golden/llada_generate.json");
    let eos = read("golden/llada_eos_generate.json");
    let mut ran = 0;
    for case in eos["cases"].as_array().unwrap() {
        if !case["logits_eos_inf"].as_bool().unwrap()
            || case["confidence_eos_eot_inf"].as_bool().unwrap()
        {
            continue;
        }
        let name = case["model"].as_str().unwrap();
        let dir =
            std::env::temp_dir().join(format!("dlm-tui-eos-{}-{name}-{ran}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for entry in std::fs::read_dir(fixture(name)).unwrap() {
            let path = entry.unwrap().path();
            std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
        }
        let mut config: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap())
                .unwrap();
        config["eos_token_id"] = case["eos_id"].clone();
        std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
        let prompt = plain["cases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["model"] == case["model"] && c["prompt"] == case["prompt"])
            .unwrap()["prompt_text"]
            .as_str()
            .unwrap()
            .to_string();
        let s = |k: &str| case[k].to_string();
        let (len, steps, block) = (s("gen_length"), s("steps"), s("block_length"));
        let lines = json_lines(&generate(&[
            "--model-dir",
            dir.to_str().unwrap(),
            "--prompt",
            &prompt,
            "--length",
            &len,
            "--temperature",
            "0",
            "--strategy",
            "low-confidence",
            "--steps",
            &steps,
            "--block-length",
            &block,
            "--logits-eos-inf",
            "--json",
        ]));
        assert_eq!(
            tokens(&lines.last().unwrap()["tokens"]),
            tokens(&case["output"]),
            "case {case}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
        ran += 1;
    }
    assert!(ran >= 2, "only {ran} cases");
}

fn bench(args: &[&str]) -> Value {
    let dir = fixture("llada-tiny-gqa");
    let out = Command::new(env!("CARGO_BIN_EXE_dlm-tui"))
        .args(["bench", "--model-dir", dir.to_str().unwrap()])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn bench_forward_only_times_the_requested_canvas() {
    let report = bench(&["--forward-only", "--length", "48", "--runs", "3", "--json"]);
    assert_eq!(report["length"], 48);
    assert_eq!(report["runs"], 3);
    let (min, med, max) = (
        report["forward_ms_min"].as_f64().unwrap(),
        report["forward_ms_median"].as_f64().unwrap(),
        report["forward_ms_max"].as_f64().unwrap(),
    );
    assert!(0.0 < min && min <= med && med <= max, "{report}");
    assert!(report["threads"].as_u64().unwrap() >= 1);
}

#[test]
fn bench_against_plain_reports_speed_agreement_and_quality() {
    let report = bench(&[
        "--against-plain",
        "--seeds",
        "2",
        "--length",
        "32",
        "--block-length",
        "16",
        "--threshold",
        "0.12",
        "--cache",
        "dual",
        "--json",
    ]);
    let (plain, tested) = (&report["plain"], &report["tested"][0]);
    // Plain decoding agrees with itself and takes one step per token.
    assert_eq!(plain["token_agreement"], 1.0);
    assert_eq!(plain["steps_mean"], 32.0);
    assert_eq!(plain["flops_saved"], 0.0);
    assert!(tested["steps_mean"].as_f64().unwrap() < 32.0, "{report}");
    assert!(tested["flops_saved"].as_f64().unwrap() > 0.3, "{report}");
    let agreement = tested["token_agreement"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&agreement));
    for s in [plain, tested] {
        assert!(s["mean_log_likelihood"].as_f64().unwrap() < 0.0, "{report}");
        assert_eq!(s["samples"].as_array().unwrap().len(), 2);
    }
    assert!(tested["speedup"].as_f64().unwrap() > 0.0);
    assert!(tested["likelihood_ratio"].as_f64().unwrap() > 0.0);
    assert_eq!(report["tested"].as_array().unwrap().len(), 1);
    // Each seed's prompt, so a sample can be quoted with what it continues.
    assert_eq!(
        report["prompts"],
        serde_json::json!(&dlm_tui::train::eval::STORY_PROMPTS[..2])
    );

    // Several settings share one plain run; each is named by its lane spec.
    let report = bench(&[
        "--against-plain",
        "--seeds",
        "1",
        "--length",
        "16",
        "--setting",
        "low-confidence:cache=prefix",
        "--setting",
        "margin:threshold=0.12:block-length=8",
        "--json",
    ]);
    let tested = report["tested"].as_array().unwrap();
    assert_eq!(tested.len(), 2);
    assert_eq!(tested[0]["name"], "low-confidence:cache=prefix");
    assert_eq!(tested[0]["cache"], "prefix");
    assert_eq!(tested[1]["block_length"], 8);
    assert_eq!(tested[1]["parallel"]["value"], 0.12);
}

#[test]
fn a_gpu_device_in_a_cpu_build_says_how_to_get_one() {
    if candle_core::utils::cuda_is_available() {
        return; // a CUDA build: --device cuda is real there
    }
    let out = generate(&["--device", "cuda", "--prompt", "hi", "--length", "4"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--features cuda") && err.contains("--device cpu"),
        "{err}"
    );
}

/// `bench` refuses counts that give no figure, a missing word list, and reports a full standard
/// output as an error instead of panicking.
#[test]
fn bench_refuses_empty_runs_and_survives_a_full_stdout() {
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_dlm-tui"))
            .arg("bench")
            .args(args)
            .output()
            .unwrap()
    };
    for args in [
        &["--runs", "0"][..],
        &["--against-plain", "--seeds", "0"][..],
        &["--runs", "-2"][..],
    ] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("at least"),
            "{args:?}"
        );
    }
    let out = run(&[
        "--against-plain",
        "--seeds",
        "1",
        "--length",
        "8",
        "--words",
        "/nonexistent/words",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/words"));
    let full = std::fs::OpenOptions::new().write(true).open("/dev/full");
    if let Ok(full) = full {
        let out = Command::new(env!("CARGO_BIN_EXE_dlm-tui"))
            .args([
                "bench",
                "--forward-only",
                "--length",
                "16",
                "--runs",
                "1",
                "--warmup",
                "0",
            ])
            .stdout(full)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(
            !err.contains("panicked") && err.contains("standard output"),
            "{err}"
        );
    }
}

/// The playground started without a terminal (a pipe, a script) says what to use instead.
#[test]
fn the_playground_without_a_terminal_points_to_generate() {
    let out = Command::new(env!("CARGO_BIN_EXE_dlm-tui"))
        .arg("--no-session")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("needs a terminal") && err.contains("dlm-tui generate"),
        "{err}"
    );
}

/// `dlm-tui models` lists the embedded model and what the hub cache holds: a complete model
/// with its family and the command that runs it, an incomplete one with what is missing, and a
/// repository of a family dlm-tui does not run.
#[test]
fn models_lists_the_cache() {
    let cache = std::env::temp_dir().join(format!("dlm-tui-models-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&cache);
    let commit = "0123456789abcdef0123456789abcdef01234567";
    let repo = |id: &str| {
        let root = cache.join(format!("models--{}", id.replace('/', "--")));
        let snap = root.join("snapshots").join(commit);
        std::fs::create_dir_all(&snap).unwrap();
        std::fs::create_dir_all(root.join("refs")).unwrap();
        std::fs::write(root.join("refs/main"), commit).unwrap();
        snap
    };
    let complete = repo("someone/llada-tiny");
    for entry in std::fs::read_dir(fixture("llada-tiny-gqa")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, complete.join(path.file_name().unwrap())).unwrap();
    }
    let partial = repo("someone/half-there");
    for f in ["config.json", "tokenizer.json"] {
        std::fs::copy(fixture("llada-tiny-gqa").join(f), partial.join(f)).unwrap();
    }
    let other = repo("someone/gpt2-thing");
    std::fs::write(other.join("config.json"), r#"{"model_type": "gpt2"}"#).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_dlm-tui"))
        .args(["models"])
        .env("HF_HUB_CACHE", &cache)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = |id: &str| {
        text.lines()
            .find(|l| l.starts_with(id))
            .unwrap_or_else(|| panic!("{id} missing:\n{text}"))
            .to_string()
    };
    assert!(line("dlm-tui default").contains("built in"), "{text}");
    let l = line("someone/llada-tiny");
    assert!(
        l.contains("llada") && l.contains("complete: dlm-tui --model someone/llada-tiny"),
        "{l}"
    );
    let l = line("someone/half-there");
    assert!(l.contains("incomplete (missing model.safetensors)"), "{l}");
    assert!(l.contains("dlm-tui download someone/half-there"), "{l}");
    assert!(
        line("someone/gpt2-thing").contains("not supported"),
        "{text}"
    );
    // JSON: one object per model.
    let out = Command::new(env!("CARGO_BIN_EXE_dlm-tui"))
        .args(["models", "--json"])
        .env("HF_HUB_CACHE", &cache)
        .output()
        .unwrap();
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 4);
    let tiny = lines
        .iter()
        .find(|l| l["id"] == "someone/llada-tiny")
        .unwrap();
    assert_eq!(tiny["complete"], true);
    assert!(tiny["bytes"].as_u64().unwrap() > 1000);
    let _ = std::fs::remove_dir_all(&cache);
}

/// `--remdm`: committed tokens are masked again (a step line lists them under "remasked"), the
/// canvas ends full, the header names the lane "remdm-..." and bad ReMDM values say which.
#[test]
fn remdm_runs_write_their_remasks() {
    let model = fixture("llada-tiny-gqa");
    let out = generate(&[
        "--model-dir",
        model.to_str().unwrap(),
        "--prompt",
        "Once upon a time",
        "--length",
        "16",
        "--block-length",
        "16",
        "--remdm",
        "rescale",
        "--eta",
        "0.8",
        "--temperature",
        "1",
        "--json",
    ]);
    let lines = json_lines(&out);
    assert_eq!(lines[0]["type"], "run");
    assert_eq!(lines[0]["lanes"][0]["label"], "remdm-rescale");
    assert_eq!(lines[0]["lanes"][0]["params"]["remdm"], "rescale");
    let remasked: usize = lines
        .iter()
        .filter(|l| l["type"] == "step")
        .filter_map(|l| l["remasked"].as_array().map(Vec::len))
        .sum();
    assert!(remasked > 0, "eta 0.8 remasked nothing");
    let done = lines.last().unwrap();
    assert_eq!(done["type"], "done");
    assert_eq!(done["masked"], 0);
    for (args, needle) in [
        (["--remdm", "loop", "--eta", "0.5"], "alpha on"),
        (["--remdm", "cap", "--eta", "2"], "eta"),
        (["--remdm", "cap", "--threshold", "0.9"], "threshold"),
    ] {
        let base = ["--model-dir", model.to_str().unwrap(), "--prompt", "x"];
        let out = generate(&[&base[..], &args[..]].concat());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(needle),
            "{args:?}: {err}"
        );
    }
}

/// `--quantize`: the model's linear layers are quantized at load (stderr says how), the run
/// completes, and a family without quantized layers is refused with its name.
#[test]
fn quantize_at_load() {
    let model = fixture("llada-tiny-gqa");
    let out = generate(&[
        "--model-dir",
        model.to_str().unwrap(),
        "--prompt",
        "Once upon a time",
        "--length",
        "8",
        "--quantize",
        "q8_0",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("quantized q8_0:") && err.contains("q8_0"),
        "{err}"
    );
    let bert = fixture("modernbert-tiny-a");
    let out = generate(&[
        "--model-dir",
        bert.to_str().unwrap(),
        "--prompt",
        "x",
        "--quantize",
        "q4_k",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("modernbert"), "{err}");
}
