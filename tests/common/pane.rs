//! The real `dlm-tui` binary in a tmux pane of 100 x 30, for the tests that drive it as a person
//! would; the session is killed when the pane is dropped. Needs tmux (`.ci/run` installs it).

use std::process::{Command, Output};
use std::time::{Duration, Instant};

pub struct Pane {
    session: String,
}

impl Pane {
    fn tmux(args: &[&str]) -> Output {
        Command::new("tmux")
            .args(args)
            .output()
            .expect("tmux is required for this test: apt-get install tmux")
    }

    /// Runs `command` (a shell command line) in a new detached session named after `tag` and
    /// this process.
    pub fn start(tag: &str, command: &str) -> Self {
        let session = format!("dlm-{tag}-{}", std::process::id());
        let started = Self::tmux(&[
            "new-session",
            "-d",
            "-s",
            &session,
            "-x",
            "100",
            "-y",
            "30",
            command,
        ]);
        assert!(started.status.success(), "could not start tmux");
        Self { session }
    }

    pub fn screen(&self) -> String {
        String::from_utf8_lossy(&Self::tmux(&["capture-pane", "-p", "-t", &self.session]).stdout)
            .into_owned()
    }

    /// The screen once it shows `text` (at most 30 s).
    pub fn wait_for(&self, text: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let shown = self.screen();
            if shown.contains(text) {
                return shown;
            }
            assert!(
                Instant::now() < deadline,
                "{text:?} never appeared:\n{shown}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// tmux key names (`F5`, `C-q`, `Enter`).
    pub fn keys(&self, keys: &[&str]) {
        Self::tmux(&[&["send-keys", "-t", &self.session][..], keys].concat());
    }

    pub fn type_text(&self, text: &str) {
        Self::tmux(&["send-keys", "-t", &self.session, "-l", text]);
    }
}

impl Drop for Pane {
    fn drop(&mut self) {
        Self::tmux(&["kill-session", "-t", &self.session]);
    }
}
