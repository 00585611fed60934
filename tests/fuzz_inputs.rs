//! Property tests (fuzzing) of what a user or a damaged file controls: the prompt syntax, the
//! editor's document, `config.toml` and the session file. None may panic, and a session file
//! that cannot be read whole is always kept byte for byte.
//!
//! CI runs the default number of cases; a long local run sets it, e.g.
//! `PROPTEST_CASES=200000 cargo test --release --test fuzz_inputs`.

use std::path::PathBuf;

use dlm_tui::prompt;
use dlm_tui::tui::config::Config;
use dlm_tui::tui::editor::{Document, Unit, MAX_SPAN};
use dlm_tui::tui::session;
use proptest::prelude::*;

/// Text that is mostly prompt-like: markers, digits, brackets, colons and ordinary characters.
fn prompt_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("[MASK]".to_string()),
        Just("[MASK:".to_string()),
        Just("]".to_string()),
        Just("[".to_string()),
        Just(":".to_string()),
        "[0-9]{1,25}",
        "[ a-zA-Z.,\n]{0,8}",
        any::<char>().prop_map(|c| c.to_string()),
    ];
    prop::collection::vec(piece, 0..24).prop_map(|v| v.concat())
}

/// Text that is mostly TOML of config.toml's shape, with arbitrary values.
fn config_text() -> impl Strategy<Value = String> {
    let key = prop_oneof![
        Just("length"),
        Just("steps"),
        Just("block_length"),
        Just("temperature"),
        Just("top_k"),
        Just("top_p"),
        Just("threshold"),
        Just("factor"),
        Just("alg_temp"),
        Just("cfg"),
        Just("seed"),
        Just("strategy"),
        Just("schedule"),
        Just("compare"),
        Just("theme"),
        Just("autosave"),
        Just("quit"),
        Just("run"),
        Just("repo"),
        Just("dir"),
    ];
    let value = prop_oneof![
        "-?[0-9]{1,22}",
        "-?[0-9]{1,5}\\.[0-9]{1,5}",
        Just("nan".to_string()),
        Just("inf".to_string()),
        Just("true".to_string()),
        "\"[a-zA-Z0-9:=,. -]{0,20}\"",
        Just("[]".to_string()),
        Just("[\"Ctrl-Q\"]".to_string()),
        Just("[\"x\"]".to_string()),
        Just("[\"low-confidence\", \"margin\"]".to_string()),
    ];
    let line = prop_oneof![
        (key, value).prop_map(|(k, v)| format!("{k} = {v}\n")),
        Just("[sampler]\n".to_string()),
        Just("[ui]\n".to_string()),
        Just("[keys]\n".to_string()),
        Just("[model]\n".to_string()),
        "[^\u{0}]{0,12}\n",
    ];
    prop::collection::vec(line, 0..16).prop_map(|v| v.concat())
}

/// Bytes that are mostly a session file: a valid one, cut short, or with values swapped.
fn session_bytes() -> impl Strategy<Value = Vec<u8>> {
    let valid = r#"{"doc": {"text": "Tom [MASK:3] ran.", "span_originals": ["a"], "cursor": 2}, "settings": {"length": 64, "steps": null, "compare": ["low-confidence", "margin"], "params": {"temperature": 0.5, "strategy": "margin"}}, "compare_mode": false, "theme": "dark"}"#;
    prop_oneof![
        (0..valid.len()).prop_map(move |cut| valid.as_bytes()[..cut].to_vec()),
        (0..valid.len(), any::<u8>()).prop_map(move |(at, b)| {
            let mut v = valid.as_bytes().to_vec();
            v[at] = b;
            v
        }),
        prop::collection::vec(any::<u8>(), 0..200),
        (0..valid.len(), "[\\[\\]{}\":,0-9a-z-]{0,12}").prop_map(move |(at, insert)| {
            let mut v = valid.as_bytes().to_vec();
            v.splice(at..at, insert.bytes());
            v
        }),
    ]
}

fn temp_session() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "dlm-tui-fuzz-session-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("session.json")
}

proptest! {
    /// Parsing never panics; what parses renders back to text that parses to the same segments,
    /// and counting the masks never overflows.
    #[test]
    fn prompt_syntax_round_trips(text in prompt_text()) {
        if let Ok(segments) = prompt::parse(&text) {
            let _ = prompt::mask_total(&segments);
            let again = prompt::parse(&prompt::render(&segments)).unwrap();
            prop_assert_eq!(again, segments);
        }
    }

    /// Any text becomes a document whose spans are clamped, and typing it key by key and undoing
    /// every edit gives the empty document back.
    #[test]
    fn documents_clamp_spans_and_undo_to_empty(text in prompt_text()) {
        let doc = Document::from_prompt(&text);
        for unit in doc.units() {
            if let Unit::Mask { count, .. } = unit {
                prop_assert!((1..=MAX_SPAN).contains(count), "{count}");
            }
        }
        let mut typed = Document::default();
        for c in text.chars() {
            typed.insert_str(&c.to_string());
        }
        while typed.undo() {}
        prop_assert!(typed.is_empty(), "{:?}", typed.to_prompt());
    }

    /// A config file either loads or is refused with an error that names the file.
    #[test]
    fn config_files_load_or_name_the_file(text in config_text()) {
        match Config::parse(&text, "fuzz.toml") {
            Ok(config) => {
                let _ = config.sampler.settings();
            }
            Err(e) => prop_assert!(format!("{e:#}").contains("fuzz.toml"), "{e:#}"),
        }
    }

    /// Loading a session never panics; a file that is not restored whole is kept aside
    /// byte for byte, and a whole one stays where it is.
    #[test]
    fn session_files_are_restored_or_kept(bytes in session_bytes()) {
        let path = temp_session();
        std::fs::write(&path, &bytes).unwrap();
        match session::load(&path) {
            Ok(Some(restored)) => match &restored.warning {
                None => prop_assert_eq!(std::fs::read(&path).unwrap(), bytes),
                Some(_) => {
                    prop_assert!(!path.exists());
                    let kept: Vec<_> = std::fs::read_dir(path.parent().unwrap())
                        .unwrap()
                        .flatten()
                        .filter(|e| e.file_name().to_string_lossy().contains(".bad-"))
                        .collect();
                    prop_assert_eq!(kept.len(), 1);
                    prop_assert_eq!(std::fs::read(kept[0].path()).unwrap(), bytes);
                }
            },
            Ok(None) => prop_assert!(false, "an existing file read as no session"),
            Err(e) => prop_assert!(false, "{e:#}"),
        }
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }
}
