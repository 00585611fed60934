//! Key bindings: one table maps keys to commands; the same table handles keys and draws the help
//! overlay, so the help can never disagree with the behaviour.

use std::collections::BTreeMap;
use std::fmt;

use anyhow::{bail, Result};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use serde::{Deserialize, Serialize};

/// Everything a key can ask for (plain typing is not a command: unbound characters go to the
/// focused editor).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Command {
    Run,
    Cancel,
    Quit,
    Help,
    FocusNext,
    FocusPrev,
    MaskSelection,
    Unmask,
    SpanGrow,
    SpanShrink,
    Undo,
    Redo,
    SelectAll,
    ScrubBack,
    ScrubForward,
    ScrubFirst,
    ScrubLast,
    ToggleConfidence,
    ToggleCompare,
    ToggleChat,
    ApplyResult,
    CycleTheme,
    Export,
    Reroll,
    CopyResult,
    CyclePreset,
    ToggleCharts,
    PickModel,
}

impl Command {
    pub const ALL: [Command; 28] = [
        Command::Run,
        Command::Cancel,
        Command::Quit,
        Command::Help,
        Command::FocusNext,
        Command::FocusPrev,
        Command::MaskSelection,
        Command::Unmask,
        Command::SpanGrow,
        Command::SpanShrink,
        Command::Undo,
        Command::Redo,
        Command::SelectAll,
        Command::ScrubBack,
        Command::ScrubForward,
        Command::ScrubFirst,
        Command::ScrubLast,
        Command::ToggleConfidence,
        Command::ToggleCompare,
        Command::ToggleChat,
        Command::ApplyResult,
        Command::CycleTheme,
        Command::Export,
        Command::Reroll,
        Command::CopyResult,
        Command::CyclePreset,
        Command::ToggleCharts,
        Command::PickModel,
    ];

    pub fn description(self) -> &'static str {
        match self {
            Command::Run => "denoise the masked spans (and the generation region)",
            Command::Cancel => "cancel the run / close the overlay",
            Command::Quit => "quit (text, masks and parameters are saved)",
            Command::Help => "show or hide this help",
            Command::FocusNext => "focus the next panel",
            Command::FocusPrev => "focus the previous panel",
            Command::MaskSelection => "mask the selection (a span of N tokens)",
            Command::Unmask => "unmask the span at the cursor (restores its text)",
            Command::SpanGrow => "one more token in the span at the cursor",
            Command::SpanShrink => "one token fewer in the span at the cursor",
            Command::Undo => "undo the last edit",
            Command::Redo => "redo",
            Command::SelectAll => "select all text",
            Command::ScrubBack => "history: one step back",
            Command::ScrubForward => "history: one step forward",
            Command::ScrubFirst => "history: first step",
            Command::ScrubLast => "history: latest step (follow live)",
            Command::ToggleConfidence => {
                "colour tokens by confidence, then by commit order, then plain"
            }
            Command::ToggleCompare => "compare strategies side by side",
            Command::ToggleChat => {
                "chat mode: the text is a user message in the model's chat template"
            }
            Command::ApplyResult => "copy the finished text into the editor",
            Command::CycleTheme => "next colour theme",
            Command::Export => "export the last run (JSON lines and text)",
            Command::Reroll => "run again with a new random seed",
            Command::ToggleCharts => "per-step charts: masks left, tokens committed, mean score",
            Command::PickModel => "switch models: the embedded one or any in the hub cache",
            Command::CyclePreset => {
                "next preset: playground, LLaDA, Fast-dLLM, Dream, ReMDM, yours"
            }
            Command::CopyResult => {
                "copy the result to the clipboard (through the terminal, OSC 52)"
            }
        }
    }

    pub fn name(self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    }
}

/// A key with modifiers, written like `Ctrl-R`, `F5`, `Shift-Tab`, `PageUp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    pub code: KeyCodeKey,
    pub ctrl: bool,
    pub alt: bool,
    pub shift: bool,
}

impl Key {
    /// A printable character without Ctrl or Alt (Space included): the editor's input.
    pub fn types_text(&self) -> bool {
        matches!(self.code, KeyCodeKey::Char(_)) && !self.ctrl && !self.alt
    }
}

/// The subset of key codes bindings can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeyCodeKey {
    Char(char),
    F(u8),
    Esc,
    Tab,
    BackTab,
    Enter,
    Backspace,
    Delete,
    Insert,
    Up,
    Down,
    Left,
    Right,
    Home,
    End,
    PageUp,
    PageDown,
}

impl Key {
    pub fn parse(text: &str) -> Result<Self> {
        let mut key = Key {
            code: KeyCodeKey::Esc,
            ctrl: false,
            alt: false,
            shift: false,
        };
        let parts: Vec<&str> = text.split('-').collect();
        // "Ctrl--" binds the minus key: a trailing empty part means "-".
        let (mods, last) = match parts.as_slice() {
            [.., "", ""] => (&parts[..parts.len() - 2], "-"),
            [mods @ .., last] => (mods, *last),
            [] => bail!("empty key"),
        };
        for m in mods {
            match m.to_ascii_lowercase().as_str() {
                "ctrl" | "c" => key.ctrl = true,
                "alt" | "a" | "m" => key.alt = true,
                "shift" | "s" => key.shift = true,
                other => bail!("unknown modifier {other:?} in key {text:?}"),
            }
        }
        key.code = match last.to_ascii_lowercase().as_str() {
            "esc" | "escape" => KeyCodeKey::Esc,
            "tab" => KeyCodeKey::Tab,
            "backtab" => KeyCodeKey::BackTab,
            "enter" | "return" => KeyCodeKey::Enter,
            "backspace" => KeyCodeKey::Backspace,
            "delete" | "del" => KeyCodeKey::Delete,
            "insert" | "ins" => KeyCodeKey::Insert,
            "up" => KeyCodeKey::Up,
            "down" => KeyCodeKey::Down,
            "left" => KeyCodeKey::Left,
            "right" => KeyCodeKey::Right,
            "home" => KeyCodeKey::Home,
            "end" => KeyCodeKey::End,
            "pageup" | "pgup" => KeyCodeKey::PageUp,
            "pagedown" | "pgdn" => KeyCodeKey::PageDown,
            "space" => KeyCodeKey::Char(' '),
            f if f.len() > 1 && f.starts_with('f') && f[1..].parse::<u8>().is_ok() => {
                KeyCodeKey::F(f[1..].parse()?)
            }
            _ if last.chars().count() == 1 => {
                let c = last.chars().next().unwrap_or(' ');
                KeyCodeKey::Char(if key.ctrl { c.to_ascii_lowercase() } else { c })
            }
            _ => bail!("unknown key {last:?} in {text:?}"),
        };
        Ok(key)
    }

    /// The binding a terminal key event corresponds to.
    pub fn from_event(event: &KeyEvent) -> Option<Self> {
        let code = match event.code {
            KeyCode::Char(c) => {
                KeyCodeKey::Char(if event.modifiers.contains(KeyModifiers::CONTROL) {
                    c.to_ascii_lowercase()
                } else {
                    c
                })
            }
            KeyCode::F(n) => KeyCodeKey::F(n),
            KeyCode::Esc => KeyCodeKey::Esc,
            KeyCode::Tab => KeyCodeKey::Tab,
            KeyCode::BackTab => KeyCodeKey::BackTab,
            KeyCode::Enter => KeyCodeKey::Enter,
            KeyCode::Backspace => KeyCodeKey::Backspace,
            KeyCode::Delete => KeyCodeKey::Delete,
            KeyCode::Insert => KeyCodeKey::Insert,
            KeyCode::Up => KeyCodeKey::Up,
            KeyCode::Down => KeyCodeKey::Down,
            KeyCode::Left => KeyCodeKey::Left,
            KeyCode::Right => KeyCodeKey::Right,
            KeyCode::Home => KeyCodeKey::Home,
            KeyCode::End => KeyCodeKey::End,
            KeyCode::PageUp => KeyCodeKey::PageUp,
            KeyCode::PageDown => KeyCodeKey::PageDown,
            _ => return None,
        };
        let m = event.modifiers;
        // Shift is part of the character for printable keys ('R' vs 'r').
        // (BackTab is Shift-Tab already.)
        let shift = m.contains(KeyModifiers::SHIFT)
            && !matches!(code, KeyCodeKey::Char(_) | KeyCodeKey::BackTab);
        Some(Key {
            code,
            ctrl: m.contains(KeyModifiers::CONTROL),
            alt: m.contains(KeyModifiers::ALT),
            shift,
        })
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.ctrl {
            f.write_str("Ctrl-")?;
        }
        if self.alt {
            f.write_str("Alt-")?;
        }
        if self.shift {
            f.write_str("Shift-")?;
        }
        match self.code {
            KeyCodeKey::Char(' ') => f.write_str("Space"),
            KeyCodeKey::Char(c) if self.ctrl => write!(f, "{}", c.to_ascii_uppercase()),
            KeyCodeKey::Char(c) => write!(f, "{c}"),
            KeyCodeKey::F(n) => write!(f, "F{n}"),
            other => write!(f, "{other:?}"),
        }
    }
}

/// Bindings: several keys may run one command; a key runs one command.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyMap {
    by_key: BTreeMap<Key, Command>,
    /// Keys of each command in the order they were configured (the first is shown in legends).
    listed: BTreeMap<Command, Vec<Key>>,
}

impl KeyMap {
    pub fn defaults() -> Self {
        Self::from_table(&default_table()).expect("the default bindings parse")
    }

    /// Builds a map from `command name -> keys`, e.g. from `[keys]` in config.toml.
    pub fn from_table(table: &BTreeMap<Command, Vec<String>>) -> Result<Self> {
        let mut by_key = BTreeMap::new();
        let mut listed: BTreeMap<Command, Vec<Key>> = BTreeMap::new();
        for (command, keys) in table {
            for text in keys {
                let key = Key::parse(text)?;
                listed.entry(*command).or_default().push(key);
                if let Some(previous) = by_key.insert(key, *command) {
                    if previous != *command {
                        bail!(
                            "key {text} is bound to both {} and {}",
                            previous.name(),
                            command.name()
                        );
                    }
                }
            }
        }
        Ok(Self { by_key, listed })
    }

    /// Default bindings with some commands rebound. A map that leaves no way to quit, or binds
    /// a key that types text (a printable character without Ctrl or Alt) is refused.
    pub fn with_overrides(overrides: &BTreeMap<Command, Vec<String>>) -> Result<Self> {
        let mut table = default_table();
        for (command, keys) in overrides {
            table.insert(*command, keys.clone());
        }
        let map = Self::from_table(&table)?;
        if map.keys(Command::Quit).is_empty() {
            bail!(
                "quit has no key: nothing would close the app (keep at least one, e.g. \"Ctrl-Q\")"
            );
        }
        for (key, command) in &map.by_key {
            if key.types_text() {
                bail!(
                    "{} is bound to {key}, which types text in the editor: use a key with Ctrl or Alt, or a function key",
                    command.name()
                );
            }
        }
        Ok(map)
    }

    pub fn command(&self, event: &KeyEvent) -> Option<Command> {
        self.by_key.get(&Key::from_event(event)?).copied()
    }

    /// Keys of a command, in display order.
    pub fn keys(&self, command: Command) -> Vec<Key> {
        self.listed.get(&command).cloned().unwrap_or_default()
    }

    /// The help rows: keys, command description, for every bound command.
    pub fn help_rows(&self) -> Vec<(String, &'static str)> {
        Command::ALL
            .iter()
            .filter_map(|&c| {
                let keys = self.keys(c);
                (!keys.is_empty()).then(|| {
                    (
                        keys.iter()
                            .map(Key::to_string)
                            .collect::<Vec<_>>()
                            .join(", "),
                        c.description(),
                    )
                })
            })
            .collect()
    }

    /// Short "key action" pairs for the status bar legend.
    pub fn legend(&self, commands: &[(Command, &'static str)]) -> Vec<(String, &'static str)> {
        commands
            .iter()
            .filter_map(|(c, label)| self.keys(*c).first().map(|k| (k.to_string(), *label)))
            .collect()
    }
}

pub fn default_table() -> BTreeMap<Command, Vec<String>> {
    let t = |keys: &[&str]| keys.iter().map(|k| k.to_string()).collect::<Vec<_>>();
    BTreeMap::from([
        (Command::Run, t(&["F5", "Ctrl-R"])),
        (Command::Cancel, t(&["Esc"])),
        (Command::Quit, t(&["Ctrl-Q", "Ctrl-C"])),
        (Command::Help, t(&["F1"])),
        (Command::FocusNext, t(&["Tab"])),
        (Command::FocusPrev, t(&["BackTab", "Shift-Tab"])),
        (Command::MaskSelection, t(&["Ctrl-K"])),
        (Command::Unmask, t(&["Ctrl-U"])),
        (Command::SpanGrow, t(&["Ctrl-Up", "Alt-Up"])),
        (Command::SpanShrink, t(&["Ctrl-Down", "Alt-Down"])),
        (Command::Undo, t(&["Ctrl-Z"])),
        (Command::Redo, t(&["Ctrl-Y"])),
        (Command::SelectAll, t(&["Ctrl-A"])),
        (Command::ScrubBack, t(&["PageUp"])),
        (Command::ScrubForward, t(&["PageDown"])),
        (Command::ScrubFirst, t(&["Ctrl-PageUp"])),
        (Command::ScrubLast, t(&["Ctrl-PageDown"])),
        (Command::ToggleConfidence, t(&["F2", "Ctrl-F"])),
        (Command::ToggleCompare, t(&["F7", "Ctrl-X"])),
        (Command::ToggleChat, t(&["F3", "Ctrl-T"])),
        (Command::ApplyResult, t(&["F6", "Ctrl-P"])),
        (Command::CycleTheme, t(&["F8", "Ctrl-N"])),
        (Command::Export, t(&["F9", "Ctrl-E"])),
        (Command::Reroll, t(&["F4", "Ctrl-G"])),
        (Command::CopyResult, t(&["Ctrl-O"])),
        (Command::CyclePreset, t(&["Ctrl-L"])),
        (Command::ToggleCharts, t(&["Ctrl-D"])),
        (Command::PickModel, t(&["F10", "Alt-m"])),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(code: KeyCode, m: KeyModifiers) -> KeyEvent {
        KeyEvent::new(code, m)
    }

    #[test]
    fn parses_and_prints_keys() {
        for text in [
            "F5",
            "Ctrl-R",
            "Esc",
            "Shift-Tab",
            "Ctrl-PageUp",
            "Ctrl-Up",
            "Alt-x",
            "Space",
        ] {
            assert_eq!(Key::parse(text).unwrap().to_string(), text);
        }
        assert_eq!(Key::parse("ctrl--").unwrap().code, KeyCodeKey::Char('-'));
        assert!(Key::parse("Hyper-X").is_err());
        assert!(Key::parse("Banana").is_err());
    }

    #[test]
    fn events_map_to_commands() {
        let km = KeyMap::defaults();
        assert_eq!(
            km.command(&ev(KeyCode::F(5), KeyModifiers::NONE)),
            Some(Command::Run)
        );
        assert_eq!(
            km.command(&ev(KeyCode::Char('r'), KeyModifiers::CONTROL)),
            Some(Command::Run)
        );
        assert_eq!(
            km.command(&ev(KeyCode::Char('R'), KeyModifiers::CONTROL)),
            Some(Command::Run)
        );
        assert_eq!(
            km.command(&ev(KeyCode::Char('r'), KeyModifiers::NONE)),
            None
        );
        assert_eq!(
            km.command(&ev(KeyCode::BackTab, KeyModifiers::SHIFT)),
            Some(Command::FocusPrev)
        );
    }

    #[test]
    fn a_keymap_must_quit_and_must_not_steal_typing() {
        let set = |command: Command, keys: &[&str]| {
            let mut o = BTreeMap::new();
            o.insert(command, keys.iter().map(|k| k.to_string()).collect());
            KeyMap::with_overrides(&o)
        };
        let e = set(Command::Quit, &[]).unwrap_err();
        assert!(format!("{e:#}").contains("nothing would close"), "{e:#}");
        for key in ["x", "Shift-X", "Space", "1"] {
            let e = set(Command::Run, &[key]).unwrap_err();
            assert!(format!("{e:#}").contains("types text"), "{key}: {e:#}");
        }
        assert!(set(Command::Run, &["Alt-r", "F12"]).is_ok());
        assert!(set(Command::Quit, &["Ctrl-W"]).is_ok());
    }

    #[test]
    fn every_command_has_a_default_key_and_help_row() {
        let km = KeyMap::defaults();
        assert_eq!(km.help_rows().len(), Command::ALL.len());
    }

    #[test]
    fn overrides_rebind_and_conflicts_are_refused() {
        let mut o = BTreeMap::new();
        o.insert(Command::Run, vec!["F12".to_string()]);
        let km = KeyMap::with_overrides(&o).unwrap();
        assert_eq!(
            km.command(&ev(KeyCode::F(12), KeyModifiers::NONE)),
            Some(Command::Run)
        );
        assert_eq!(km.command(&ev(KeyCode::F(5), KeyModifiers::NONE)), None);
        o.insert(Command::Quit, vec!["F12".to_string()]);
        let err = KeyMap::with_overrides(&o).unwrap_err().to_string();
        assert!(err.contains("F12"), "{err}");
    }
}
