//! Drives the real `dlm-tui` binary in tmux as a person would: type, mark a span, run and watch
//! highlighted steps arrive, cancel, compare two strategies, quit, and check the terminal is
//! restored. Needs tmux (`.ci/run` installs it).

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

struct Tmux {
    session: String,
    home: PathBuf,
}

impl Tmux {
    fn start(tag: &str) -> Self {
        let t = Self::new(tag);
        t.launch("EXITED");
        t
    }

    /// The tmux session and an empty HOME, with nothing launched yet.
    fn new(tag: &str) -> Self {
        let status = Command::new("tmux").arg("-V").output();
        assert!(
            status.is_ok_and(|o| o.status.success()),
            "tmux is required for this test: apt-get install tmux"
        );
        let session = format!("dlm-e2e-{tag}-{}", std::process::id());
        let home = std::env::temp_dir().join(&session);
        std::fs::create_dir_all(&home).unwrap();
        let ok = Command::new("tmux")
            .args([
                "new-session",
                "-d",
                "-s",
                &session,
                "-x",
                "120",
                "-y",
                "36",
                "bash --norc --noprofile",
            ])
            .env("TERM", "xterm-256color")
            .status()
            .unwrap()
            .success();
        assert!(ok, "could not start tmux");
        Self { session, home }
    }

    fn session_file(&self) -> PathBuf {
        self.home.join(".local/share/dlm-tui/session.json")
    }

    /// Sends `signal` to the app running in the pane (a child of the pane's shell).
    fn signal_app(&self, signal: &str) {
        let shell = Command::new("tmux")
            .args(["list-panes", "-t", &self.session, "-F", "#{pane_pid}"])
            .output()
            .unwrap();
        let shell = String::from_utf8(shell.stdout).unwrap().trim().to_string();
        assert!(Command::new("pkill")
            .args([signal, "-P", &shell])
            .status()
            .unwrap()
            .success());
    }

    /// Starts the app in the pane's shell with an empty HOME; `marker` is echoed with its exit code.
    fn launch(&self, marker: &str) {
        self.launch_with(marker, "");
        self.wait_for("Editor", Duration::from_secs(30));
    }

    /// As [`Tmux::launch`] with extra arguments, without waiting for the app.
    fn launch_with(&self, marker: &str, args: &str) {
        let bin = env!("CARGO_BIN_EXE_dlm-tui");
        self.literal(&format!(
            "clear; cd {home} && HOME={home} COLORTERM=truecolor XDG_CONFIG_HOME= XDG_DATA_HOME= {bin} {args}; echo {marker} $?\n",
            home = self.home.display()
        ));
    }

    fn keys(&self, keys: &[&str]) {
        let mut cmd = Command::new("tmux");
        cmd.args(["send-keys", "-t", &self.session]).args(keys);
        assert!(cmd.status().unwrap().success());
        std::thread::sleep(Duration::from_millis(150));
    }

    fn literal(&self, text: &str) {
        assert!(Command::new("tmux")
            .args(["send-keys", "-t", &self.session, "-l", text])
            .status()
            .unwrap()
            .success());
        std::thread::sleep(Duration::from_millis(150));
    }

    fn screen(&self, colours: bool) -> String {
        let mut cmd = Command::new("tmux");
        cmd.args(["capture-pane", "-p", "-t", &self.session]);
        if colours {
            cmd.arg("-e");
        }
        String::from_utf8(cmd.output().unwrap().stdout).unwrap()
    }

    fn wait_for(&self, needle: &str, timeout: Duration) -> String {
        let start = Instant::now();
        loop {
            let screen = self.screen(false);
            if screen.contains(needle) {
                return screen;
            }
            assert!(
                start.elapsed() < timeout,
                "timed out waiting for {needle:?}; screen:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.session])
            .status();
        let _ = std::fs::remove_dir_all(&self.home);
    }
}

#[test]
fn a_person_edits_runs_cancels_compares_and_quits() {
    let t = Tmux::start("main");
    t.literal("Once upon a time, there was a little girl named Lily. She liked to play.");
    // Select "little" (it ends 36 characters before the end of the text) and mask it.
    for _ in 0..36 {
        t.keys(&["Left"]);
    }
    for _ in 0..6 {
        t.keys(&["S-Left"]);
    }
    t.keys(&["C-k"]);
    let screen = t.wait_for("[▒", Duration::from_secs(5));
    assert!(screen.contains("there was a [▒"), "{screen}");

    // Run: steps arrive, the tokens committed in the shown step are highlighted.
    t.keys(&["F5"]);
    // The title's "· done" (the story itself may hold "done", as in "birdone").
    let screen = t.wait_for("· done", Duration::from_secs(60));
    assert!(screen.contains("low-confidence · step"), "{screen}");
    let after = t.screen(false);
    assert!(!after.contains("▒▒▒"), "masks left after the run:\n{after}");
    // Scrub to the first step: masks are visible and the tokens committed in that step are
    // highlighted (the dark theme's background #ffd75f).
    t.keys(&["C-PPage", "NPage"]);
    let screen = t.wait_for("step 1/", Duration::from_secs(5));
    // Masks the sampler has not scored yet show the mask glyph; those in the first window show
    // its proposals (ghost text) between the window's marks.
    assert!(screen.contains("▒▒▒"), "{screen}");
    assert!(
        screen.matches('│').count() >= 4,
        "no window marks:\n{screen}"
    );
    let coloured = t.screen(true);
    assert!(
        coloured.contains("48;2;255;215;95"),
        "no highlighted tokens:\n{coloured}"
    );
    // The token inspector: the token committed in the step shown, its step, score and the
    // model's top candidates; the arrows move it, Esc closes it.
    t.keys(&["Tab", "Tab", "i"]);
    let screen = t.wait_for("token inspector", Duration::from_secs(5));
    assert!(screen.contains("committed at step 1"), "{screen}");
    assert!(screen.contains("most likely at step 1:"), "{screen}");
    assert!(screen.matches('%').count() >= 5, "{screen}");
    // Mark the first step's commit for re-masking and refine: a run from step 1's canvas with it
    // masked again.
    t.keys(&["m"]);
    t.wait_for("1 token marked to re-mask", Duration::from_secs(5));
    t.keys(&["r"]);
    t.wait_for("· done", Duration::from_secs(60));
    t.keys(&["Right", "Right"]);
    std::thread::sleep(Duration::from_millis(200));
    t.keys(&["Escape"]);
    std::thread::sleep(Duration::from_millis(200));
    assert!(!t.screen(false).contains("token inspector"));
    t.keys(&["Tab"]);
    t.keys(&["C-NPage"]);

    // Cancel a long run straight away: the panel says so and keeps what it had.
    t.keys(&["Tab"]);
    t.keys(&[
        "Right", "Right", "Right", "Right", "Right", "Right", "Right", "Right",
    ]);
    t.keys(&["BTab"]);
    t.keys(&["F5"]);
    t.keys(&["Escape"]);
    let screen = t.wait_for("cancelled", Duration::from_secs(30));
    assert!(screen.contains("partial canvas"), "{screen}");

    // Compare two strategies side by side.
    t.keys(&["F7", "F5"]);
    // Both lanes finish (the view replays them at 20 steps a second).
    let started = std::time::Instant::now();
    let mut screen = t.screen(false);
    while screen.matches("· done").count() < 2 && started.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(200));
        screen = t.screen(false);
    }
    assert!(
        screen.contains(" low-confidence · ") && screen.contains(" margin · "),
        "{screen}"
    );
    assert_eq!(screen.matches("· done").count(), 2, "{screen}");

    // The model picker lists the embedded model (in use); Enter on it changes nothing.
    t.keys(&["F10"]);
    let screen = t.wait_for("Models (F10)", Duration::from_secs(5));
    assert!(screen.contains("in use"), "{screen}");
    t.keys(&["Enter"]);
    t.wait_for("is the model in use", Duration::from_secs(5));

    // Help overlay, then quit: the shell sees the exit and the alternate screen is gone.
    t.keys(&["F1"]);
    t.wait_for("Keys (F1 or ?)", Duration::from_secs(5));
    // (Separate sends: Esc followed at once by another key reads as Alt+key.)
    t.keys(&["Escape"]);
    std::thread::sleep(Duration::from_millis(200));
    t.keys(&["C-q"]);
    let screen = t.wait_for("EXITED 0", Duration::from_secs(10));
    assert!(
        !screen.contains("Parameters"),
        "the app's screen is still shown:\n{screen}"
    );
    // The session was saved for next time.
    let saved = std::fs::read_to_string(t.home.join(".local/share/dlm-tui/session.json")).unwrap();
    assert!(saved.contains("there was a [MASK"), "{saved}");
}

/// Issue 29's headline job: select words in a sentence, Ctrl-K, F5, and the span is filled with
/// words (a lone space token before the span used to make the model write junk like "ign,").
#[test]
fn a_selected_span_is_filled_with_words() {
    let t = Tmux::start("infill");
    let sentence = "The little dog ran to the park and played with the red ball.";
    t.literal(sentence);
    // Select "to the park": it ends 30 characters before the end of the text.
    for _ in 0..30 {
        t.keys(&["Left"]);
    }
    for _ in 0.."to the park".len() {
        t.keys(&["S-Left"]);
    }
    t.keys(&["C-k"]);
    let screen = t.wait_for("masked 3 tokens", Duration::from_secs(5));
    assert!(screen.contains("\" to the park\""), "{screen}");
    t.keys(&["F5"]);
    t.wait_for("· done", Duration::from_secs(90));
    // The finished text into the editor, then quit: the session holds it.
    t.keys(&["F6"]);
    t.keys(&["C-q"]);
    t.wait_for("EXITED 0", Duration::from_secs(10));
    let saved = std::fs::read_to_string(t.session_file()).unwrap();
    let json: serde_json::Value = serde_json::from_str(&saved).unwrap();
    let text = json.to_string();
    let start = text.find("The little dog ran").expect(&text) + "The little dog ran".len();
    let end = start + text[start..].find(" and played").expect(&text);
    let fill = &text[start..end];
    assert!(
        !fill.is_empty()
            && fill
                .split(' ')
                .skip(1)
                .all(|w| !w.is_empty() && w.chars().all(char::is_alphabetic))
            && fill.starts_with(' '),
        "the span was filled with {fill:?}, not words: {text}"
    );
}

#[test]
fn the_session_comes_back_and_sigterm_restores_the_terminal() {
    let t = Tmux::start("session");
    t.literal("Tom found a [MASK:3] in the garden.");
    t.keys(&["C-q"]);
    t.wait_for("EXITED 0", Duration::from_secs(10));
    // Relaunch in the same home: the text and span are back.
    t.launch("EXITED-AGAIN");
    let screen = t.screen(false);
    assert!(
        screen.contains("Tom found a [▒3] in the garden."),
        "{screen}"
    );
    // SIGTERM to this pane's app (a child of the pane's shell): it leaves raw mode and the
    // alternate screen.
    t.signal_app("-TERM");
    let screen = t.wait_for("EXITED-AGAIN 143", Duration::from_secs(10));
    assert!(!screen.contains("Parameters"), "{screen}");
}

/// Typing is autosaved on a timer: text typed (never run) survives the app being killed.
#[test]
fn typed_text_survives_a_crash() {
    let t = Tmux::start("crash");
    t.literal("Mia had a [MASK:2] kite that she loved.");
    let deadline = Instant::now() + Duration::from_secs(15);
    while !std::fs::read_to_string(t.session_file()).is_ok_and(|s| s.contains("loved.")) {
        assert!(
            Instant::now() < deadline,
            "the typed text was never autosaved"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    t.signal_app("-KILL");
    t.wait_for("EXITED 137", Duration::from_secs(10));
    t.keys(&["reset", "Enter"]);
    std::thread::sleep(Duration::from_millis(500));
    t.launch("EXITED-AGAIN");
    let screen = t.screen(false);
    assert!(
        screen.contains("Mia had a [▒2] kite that she loved."),
        "{screen}"
    );
}

/// A damaged session file is moved aside (never overwritten) and its text comes back; the
/// status bar says so.
#[test]
fn a_damaged_session_file_is_kept_and_its_text_restored() {
    let t = Tmux::new("damaged");
    let path = t.session_file();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let damaged = r#"{"doc": {"text": "Ben saw a [MASK:2] fox.", "cursor": 3}, "settings": {"params": {"strategy": "from-a-newer-version"}}, "compare_mode": fa"#;
    std::fs::write(&path, damaged).unwrap();
    t.launch("EXITED");
    let screen = t.wait_for("could not restore", Duration::from_secs(10));
    assert!(screen.contains("Ben saw a [▒2] fox."), "{screen}");
    t.keys(&["C-q"]);
    t.wait_for("EXITED 0", Duration::from_secs(10));
    let kept: Vec<_> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains(".bad-"))
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(std::fs::read_to_string(&kept[0]).unwrap(), damaged);
    assert!(std::fs::read_to_string(&path)
        .unwrap()
        .contains("Ben saw a [MASK:2] fox."));
}

/// When the session cannot be written, the status bar says where and why, the text stays on
/// screen, no temporary file is left, and quitting exits non-zero.
#[test]
fn a_failed_save_is_shown_and_quitting_reports_it() {
    let t = Tmux::new("unsaved");
    // The data folder's dlm-tui entry is a file: nothing can be created below it.
    let data = t.home.join(".local/share");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("dlm-tui"), "not a folder").unwrap();
    t.launch("EXITED");
    t.literal("Sam lost his red hat.");
    let screen = t.wait_for("could not save the session", Duration::from_secs(10));
    assert!(screen.contains("Sam lost his red hat."), "{screen}");
    t.keys(&["C-q"]);
    let screen = t.wait_for("EXITED 1", Duration::from_secs(10));
    assert!(
        screen.contains("error: could not save the session"),
        "{screen}"
    );
    assert!(!screen.contains("Parameters"), "{screen}");
    assert_eq!(
        std::fs::read_to_string(data.join("dlm-tui")).unwrap(),
        "not a folder"
    );
}

/// The playground applies `[sampler]` from the user's config.toml and loads the user's own
/// themes from the `themes/` folder beside it; a keymap with no way to quit, or a broken line,
/// starts the app on the defaults with the error shown.
#[test]
fn the_playground_applies_the_users_config_and_themes() {
    let t = Tmux::new("config");
    let config = t.home.join(".config/dlm-tui");
    std::fs::create_dir_all(config.join("themes")).unwrap();
    std::fs::write(
        config.join("config.toml"),
        "[sampler]\nlength = 190\nblock_length = 10\n",
    )
    .unwrap();
    let dark =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/themes/dark.toml")).unwrap();
    std::fs::write(
        config.join("themes/mine.toml"),
        dark.replace("name = \"dark\"", "name = \"mine\""),
    )
    .unwrap();
    t.launch_with("EXITED", "--theme mine");
    let screen = t.wait_for("Editor", Duration::from_secs(30));
    assert!(
        screen.contains("L=190") && screen.contains("B=10"),
        "{screen}"
    );
    t.keys(&["C-q"]);
    t.wait_for("EXITED 0", Duration::from_secs(10));

    // A keymap with no way to quit, and a broken line: the app starts on the defaults for
    // each and says what is wrong, file, line and column included (issue 29, item 16).
    std::fs::write(config.join("config.toml"), "[keys]\nquit = []\n").unwrap();
    t.keys(&["clear", "Enter"]);
    t.launch_with("EXITED-AGAIN", "");
    let screen = t.wait_for("default keys are in use", Duration::from_secs(30));
    // The message wraps over the status bar's two rows.
    let flat = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        flat(&screen).contains("nothing would close the app"),
        "{screen}"
    );
    t.keys(&["C-q"]);
    t.wait_for("EXITED-AGAIN 0", Duration::from_secs(10));
    std::fs::write(config.join("config.toml"), "[sampler]\nlength = \n").unwrap();
    t.keys(&["clear", "Enter"]);
    t.launch_with("EXITED-THIRD", "");
    let screen = t.wait_for("built-in settings are in use", Duration::from_secs(30));
    assert!(
        flat(&screen).contains("~/.config/dlm-tui/config.toml")
            && flat(&screen).contains("line 2, column"),
        "{screen}"
    );
    t.keys(&["C-q"]);
    t.wait_for("EXITED-THIRD 0", Duration::from_secs(10));
}

/// `dlm-tui replay FILE` opens a saved trace without a model, replays it at the configured
/// speed, opens the token inspector, refuses F5 with the reason, and quits cleanly.
#[test]
fn a_saved_trace_replays_with_the_inspector() {
    let t = Tmux::new("replay");
    let trace = t.home.join("run.jsonl");
    let out = Command::new(env!("CARGO_BIN_EXE_dlm-tui"))
        .args([
            "generate",
            "--prompt",
            "Once upon a time",
            "--length",
            "48",
            "--json",
            "--inspect",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    std::fs::write(&trace, out.stdout).unwrap();
    t.launch_with("EXITED", &format!("replay {}", trace.display()));
    let screen = t.wait_for("replaying", Duration::from_secs(30));
    assert!(screen.contains("no model is loaded"), "{screen}");
    // 48 steps at 20 a second: watchable, then finished.
    let screen = t.wait_for("step 48 of 48 · done", Duration::from_secs(20));
    assert!(!screen.contains("▒▒▒"), "{screen}");
    t.keys(&["i"]);
    let screen = t.wait_for("token inspector", Duration::from_secs(5));
    assert!(screen.contains("most likely at step"), "{screen}");
    t.keys(&["Escape"]);
    std::thread::sleep(Duration::from_millis(200));
    t.keys(&["F5"]);
    t.wait_for("has no model to run", Duration::from_secs(5));
    // A click at the left end of the step gauge (the row above the status bar; SGR mouse
    // coordinates count from 1) goes back to the start.
    t.literal("\x1b[<0;18;34M");
    t.wait_for("step   0 of 48", Duration::from_secs(5));
    t.keys(&["C-q"]);
    t.wait_for("EXITED 0", Duration::from_secs(10));
}

/// ReMDM in the real binary: Ctrl-L to the ReMDM preset, F5, and the run masks committed tokens
/// again (the stats count them) and ends with every position filled.
#[test]
fn the_remdm_preset_remasks_and_finishes() {
    let t = Tmux::start("remdm");
    for _ in 0..5 {
        t.keys(&["C-l"]);
    }
    t.wait_for("preset ReMDM", Duration::from_secs(5));
    t.keys(&["F5"]);
    let screen = t.wait_for("· done", Duration::from_secs(60));
    assert!(screen.contains("remdm-loop ·"), "{screen}");
    assert!(screen.contains("remasked "), "{screen}");
    assert!(screen.contains("masks 0 "), "{screen}");
    t.keys(&["C-q"]);
    t.wait_for("EXITED 0", Duration::from_secs(10));
}
