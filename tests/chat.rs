//! Chat templates: rendering and token ids equal transformers' apply_chat_template
//! (tests/fixtures/make_chat_fixtures.py), and `generate --chat` denoises after the rendered
//! prompt and prints the answer only.

mod common;

use std::process::Command;

use common::{fixtures, golden, ids};
use dlm_tui::chat::{ChatTemplate, Message};
use dlm_tui::text::TextCodec;
use serde_json::Value;

#[test]
fn templates_render_and_tokenize_like_transformers() {
    let cases = golden("chat_template.json");
    assert!(cases.len() >= 2);
    for case in cases {
        let dir = fixtures().join(case["model"].as_str().unwrap());
        let template = ChatTemplate::from_model_dir(&dir).unwrap().unwrap();
        let messages: Vec<Message> = case["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| Message {
                role: m["role"].as_str().unwrap().into(),
                content: m["content"].as_str().unwrap().into(),
            })
            .collect();
        let text = template.render(&messages, true).unwrap();
        assert_eq!(text, case["text"].as_str().unwrap());
        let codec = TextCodec::from_file(&dir.join("tokenizer.json")).unwrap();
        let segments = dlm_tui::prompt::parse(&text).unwrap();
        let (canvas, prompt_len) = codec
            .encode_canvas(&segments, 4, 304, false, usize::MAX)
            .unwrap();
        assert_eq!(&canvas[..prompt_len], ids(&case["ids"]).as_slice());
        assert_eq!(&canvas[prompt_len..], &[304; 4]);
    }
}

#[test]
fn models_without_a_template_say_so() {
    assert!(
        ChatTemplate::from_model_dir(&fixtures().join("llada-tiny-gqa"))
            .unwrap()
            .is_none()
    );
    let out = Command::new(env!("CARGO_BIN_EXE_dlm-tui"))
        .args(["generate", "--chat", "--prompt", "hi", "--model-dir"])
        .arg(fixtures().join("llada-tiny-gqa"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("chat_template") && err.contains("instruct"),
        "{err}"
    );
}

#[test]
fn generate_chat_puts_the_rendered_prompt_first_and_prints_only_the_answer() {
    let dir = fixtures().join("dream-tiny-gqa");
    let run = |json: bool| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_dlm-tui"));
        cmd.args([
            "generate",
            "--chat",
            "--prompt",
            "Tell me a story about a cat.",
        ])
        .args([
            "--length",
            "12",
            "--schedule",
            "timestep",
            "--block-length",
            "64",
        ])
        .arg("--model-dir")
        .arg(&dir);
        if json {
            cmd.arg("--json");
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let lines = run(true);
    let done: Value = serde_json::from_str(lines.lines().last().unwrap()).unwrap();
    let expected = ids(&golden("chat_template.json")[0]["ids"]);
    let tokens = ids(&done["tokens"]);
    assert_eq!(done["prompt_len"], expected.len());
    assert_eq!(&tokens[..expected.len()], expected.as_slice());
    assert_eq!(tokens.len(), expected.len() + 12);
    assert!(!tokens.contains(&304), "every mask is filled");
    // Plain output is the answer alone: no template text.
    let plain = run(false);
    assert!(
        !plain.contains("assistant") && !plain.contains("Tell me"),
        "{plain}"
    );
}

#[test]
fn the_answer_stops_at_the_first_end_of_text_or_end_of_turn() {
    use dlm_tui::cli::generate::answer;
    let codec = TextCodec::from_file(&fixtures().join("dream-tiny-gqa/tokenizer.json")).unwrap();
    let hello = codec.encode("Hello there.", false).unwrap();
    let im_end = codec.token_id("<|im_end|>").unwrap();
    let mut generated = hello.clone();
    generated.extend([im_end, 300, 300]);
    generated.extend(codec.encode(" junk", false).unwrap());
    assert_eq!(answer(&codec, &generated, &[300]), "Hello there.");
    let mut flooded = hello.clone();
    flooded.extend([300; 5]);
    assert_eq!(answer(&codec, &flooded, &[300]), "Hello there.");
    assert_eq!(answer(&codec, &hello, &[300]), "Hello there.");
}

#[test]
fn a_template_in_chat_template_jinja_is_read_too() {
    // Newer repositories keep the template out of tokenizer_config.json.
    let source = fixtures().join("dream-tiny-gqa");
    let dir = std::env::temp_dir().join(format!("dlm-tui-jinja-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut config: Value = serde_json::from_str(
        &std::fs::read_to_string(source.join("tokenizer_config.json")).unwrap(),
    )
    .unwrap();
    let template = config["chat_template"].as_str().unwrap().to_string();
    config.as_object_mut().unwrap().remove("chat_template");
    std::fs::write(dir.join("tokenizer_config.json"), config.to_string()).unwrap();
    assert!(ChatTemplate::from_model_dir(&dir).unwrap().is_none());
    std::fs::write(dir.join("chat_template.jinja"), &template).unwrap();
    let messages = [Message::user("hi")];
    let separate = ChatTemplate::from_model_dir(&dir).unwrap().unwrap();
    let inline = ChatTemplate::from_model_dir(&source).unwrap().unwrap();
    assert_eq!(
        separate.render(&messages, true).unwrap(),
        inline.render(&messages, true).unwrap()
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
