//! Key bindings: one table maps `(scope, key)` to a command. Every key the playground answers is
//! translated here, once ([`KeyMap::translate`]); the same table draws the help overlay, so the
//! help can never disagree with the behaviour, and `[keys]` can rebind every command.

mod commands;

pub use commands::{Command, Scope};

use std::collections::BTreeMap;
use std::fmt;

use anyhow::{bail, Result};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

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

impl Key {
    /// The terminal event this key is (the inverse of [`Key::from_event`]): scripted input in
    /// tests, and the keys the help names.
    pub fn to_event(&self) -> KeyEvent {
        let code = match self.code {
            KeyCodeKey::Char(c) => KeyCode::Char(c),
            KeyCodeKey::F(n) => KeyCode::F(n),
            KeyCodeKey::Esc => KeyCode::Esc,
            KeyCodeKey::Tab => KeyCode::Tab,
            KeyCodeKey::BackTab => KeyCode::BackTab,
            KeyCodeKey::Enter => KeyCode::Enter,
            KeyCodeKey::Backspace => KeyCode::Backspace,
            KeyCodeKey::Delete => KeyCode::Delete,
            KeyCodeKey::Insert => KeyCode::Insert,
            KeyCodeKey::Up => KeyCode::Up,
            KeyCodeKey::Down => KeyCode::Down,
            KeyCodeKey::Left => KeyCode::Left,
            KeyCodeKey::Right => KeyCode::Right,
            KeyCodeKey::Home => KeyCode::Home,
            KeyCodeKey::End => KeyCode::End,
            KeyCodeKey::PageUp => KeyCode::PageUp,
            KeyCodeKey::PageDown => KeyCode::PageDown,
        };
        let mut modifiers = KeyModifiers::NONE;
        modifiers.set(KeyModifiers::CONTROL, self.ctrl);
        modifiers.set(KeyModifiers::ALT, self.alt);
        modifiers.set(
            KeyModifiers::SHIFT,
            self.shift || self.code == KeyCodeKey::BackTab,
        );
        KeyEvent::new(code, modifiers)
    }
}

/// The terminal event for a key written as in `[keys]` (`"Ctrl-K"`, `"Shift-Left"`, `"x"`).
pub fn event(text: &str) -> Result<KeyEvent> {
    Ok(Key::parse(text)?.to_event())
}

/// What a key means where it was pressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    Command(Command),
    /// A printable key no scope in effect binds: typing.
    Text(char),
    /// Nothing here answers it.
    Unbound,
}

/// The scopes in effect when `top` is the innermost, in the order they are asked: the
/// overlays, a value being typed and the parameters panel come before the global keys (Esc
/// closes them; PageUp pages the parameters), the other panels after (a global key works
/// whatever has focus).
pub fn stack(top: Scope) -> &'static [Scope] {
    use Scope::*;
    match top {
        Global => &[Global],
        Editor => &[Global, Editor],
        // The panel's own PageUp/PageDown page its rows (the global ones scrub the run).
        Params => &[Params, Global],
        Value => &[Value, Global],
        Live => &[Global, Live],
        Inspector => &[Inspector, Global, Live],
        Picker => &[Picker, Global],
        Download => &[Download, Global],
        Help => &[Help],
    }
}

/// Whether a global command works over the modal panel `top` (the picker and the download
/// panel answer only their own keys, quitting, and the picker's own key closing it).
fn passes(top: Scope, command: Command) -> bool {
    command.scope() != Scope::Global
        || match top {
            Scope::Picker => matches!(command, Command::Quit | Command::PickModel),
            Scope::Download => command == Command::Quit,
            _ => true,
        }
}

/// Bindings: several keys may run one command; in each scope a key runs one command.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyMap {
    by_key: BTreeMap<(Scope, Key), Command>,
    /// Keys of each command in the order they were configured (the first is shown in legends).
    listed: BTreeMap<Command, Vec<Key>>,
}

impl KeyMap {
    pub fn defaults() -> Self {
        Self::from_table(&default_table()).expect("the default bindings parse")
    }

    /// Builds a map from `command name -> keys`, e.g. from `[keys]` in config.toml; each
    /// command's keys are bound in its scope.
    pub fn from_table(table: &BTreeMap<Command, Vec<String>>) -> Result<Self> {
        let mut by_key = BTreeMap::new();
        let mut listed: BTreeMap<Command, Vec<Key>> = BTreeMap::new();
        for (command, keys) in table {
            for text in keys {
                let key = Key::parse(text)?;
                listed.entry(*command).or_default().push(key);
                if let Some(previous) = by_key.insert((command.scope(), key), *command) {
                    if previous != *command {
                        bail!(
                            "key {text} is bound to both {} and {} in {}",
                            previous.name(),
                            command.name(),
                            command.scope().name()
                        );
                    }
                }
            }
        }
        Ok(Self { by_key, listed })
    }

    /// Default bindings with some commands rebound. Refused: a map that leaves no way to quit
    /// from some panel; a key that types text bound where text is typed (or a global command
    /// left with only such keys, which the editor would never let through); and a key that can
    /// never reach its command because a scope asked first binds it.
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
        for top in Scope::ALL {
            if top != Scope::Help && !map.quits_from(top) {
                bail!(
                    "quit has no key that works in {}: nothing would close the app (keep at least \
                     one, e.g. \"Ctrl-Q\")",
                    top.name()
                );
            }
        }
        for (&(scope, key), command) in &map.by_key {
            if key.types_text() && scope.types_text() {
                bail!(
                    "{} is bound to {key}, which types text in {}: use a key with Ctrl or Alt, \
                     or a function key",
                    command.name(),
                    scope.name()
                );
            }
        }
        for &command in Command::ALL {
            let keys = map.keys(command);
            if command.scope() == Scope::Global
                && !keys.is_empty()
                && keys.iter().all(Key::types_text)
            {
                bail!(
                    "{} is bound to {}, which types text in the editor: use a key with Ctrl or \
                     Alt, or a function key",
                    command.name(),
                    keys[0]
                );
            }
        }
        for command in overrides.keys() {
            for key in map.keys(*command) {
                if !map.reachable(command.scope(), key) {
                    let shadow = stack(command.scope())
                        .iter()
                        .find_map(|&s| map.by_key.get(&(s, key)).filter(|&&c| c != *command))
                        .map_or_else(String::new, |c| {
                            format!(" and {} ({}, asked first)", c.name(), c.scope().name())
                        });
                    bail!(
                        "key {key} is bound to both {}{shadow}: it would never reach {}",
                        command.name(),
                        command.name()
                    );
                }
            }
        }
        Ok(map)
    }

    /// What `event` means with `top` the innermost scope in effect (see [`stack`]).
    pub fn translate(&self, top: Scope, event: &KeyEvent) -> Input {
        let Some(key) = Key::from_event(event) else {
            return Input::Unbound;
        };
        let scopes = stack(top);
        let typing = scopes.iter().any(|s| s.types_text());
        for &scope in scopes {
            // Where text is typed, printable keys are text unless that scope binds them.
            if typing && key.types_text() && !scope.types_text() {
                continue;
            }
            if let Some(&command) = self.by_key.get(&(scope, key)) {
                return if passes(top, command) {
                    Input::Command(command)
                } else {
                    Input::Unbound
                };
            }
        }
        match key.code {
            KeyCodeKey::Char(c) if key.types_text() => Input::Text(c),
            _ => Input::Unbound,
        }
    }

    /// Whether `key`, bound in `scope`, reaches its command somewhere: pressed with some
    /// scope innermost, [`KeyMap::translate`] gives that command (a command has one scope).
    fn reachable(&self, scope: Scope, key: Key) -> bool {
        let Some(&command) = self.by_key.get(&(scope, key)) else {
            return false;
        };
        let event = key.to_event();
        Scope::ALL
            .iter()
            .any(|&top| self.translate(top, &event) == Input::Command(command))
    }

    /// Whether some key quits when `top` is the innermost scope.
    fn quits_from(&self, top: Scope) -> bool {
        self.keys(Command::Quit)
            .iter()
            .any(|key| self.translate(top, &key.to_event()) == Input::Command(Command::Quit))
    }

    /// The global command `event` runs, wherever it is pressed outside the editor (`None`
    /// for panel keys and typing).
    pub fn command(&self, event: &KeyEvent) -> Option<Command> {
        match self.translate(Scope::Global, event) {
            Input::Command(c) => Some(c),
            _ => None,
        }
    }

    /// Keys of a command, in display order.
    pub fn keys(&self, command: Command) -> Vec<Key> {
        self.listed.get(&command).cloned().unwrap_or_default()
    }

    /// The first key of a command that works, as hints and messages name it, short
    /// (`PgUp`; `"?"` when it has none).
    pub fn key_name(&self, command: Command) -> String {
        self.keys(command)
            .into_iter()
            .find(|&k| self.reachable(command.scope(), k))
            .map_or_else(
                || "?".to_string(),
                |k| match k.code {
                    KeyCodeKey::PageUp => k.to_string().replace("PageUp", "PgUp"),
                    KeyCodeKey::PageDown => k.to_string().replace("PageDown", "PgDn"),
                    _ => k.to_string(),
                },
            )
    }

    /// The keys of a command that reach it somewhere, in display order.
    pub fn working_keys(&self, command: Command) -> Vec<Key> {
        self.keys(command)
            .into_iter()
            .filter(|&k| self.reachable(command.scope(), k))
            .collect()
    }

    /// The help rows of one scope: keys that work, and the command's description.
    pub fn help_rows(&self, scope: Scope) -> Vec<(String, &'static str)> {
        Command::ALL
            .iter()
            .filter(|c| c.scope() == scope)
            .filter_map(|&c| {
                let keys: Vec<String> = self.working_keys(c).iter().map(Key::to_string).collect();
                (!keys.is_empty()).then(|| (keys.join(", "), c.description()))
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

/// Every command's default keys, as `[keys]` is written.
pub fn default_table() -> BTreeMap<Command, Vec<String>> {
    Command::ALL
        .iter()
        .map(|&c| (c, c.default_keys().iter().map(|k| k.to_string()).collect()))
        .collect()
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
        let rows: usize = Scope::ALL.iter().map(|&s| km.help_rows(s).len()).sum();
        assert_eq!(rows, Command::ALL.len());
    }

    fn key(text: &str) -> KeyEvent {
        event(text).unwrap()
    }

    /// One key means different things by scope, and the scopes asked first win.
    #[test]
    fn keys_translate_by_scope() {
        let km = KeyMap::defaults();
        let t = |top: Scope, k: &str| km.translate(top, &key(k));
        assert_eq!(
            t(Scope::Editor, "Left"),
            Input::Command(Command::CursorLeft)
        );
        assert_eq!(t(Scope::Live, "Left"), Input::Command(Command::StepBack));
        assert_eq!(
            t(Scope::Inspector, "Left"),
            Input::Command(Command::TokenLeft)
        );
        assert_eq!(
            t(Scope::Params, "Left"),
            Input::Command(Command::ParamDecrease)
        );
        assert_eq!(t(Scope::Value, "Left"), Input::Command(Command::ValueKeep));
        // Esc closes what is open before it cancels a run.
        assert_eq!(
            t(Scope::Inspector, "Esc"),
            Input::Command(Command::CloseInspector)
        );
        assert_eq!(t(Scope::Value, "Esc"), Input::Command(Command::ValueCancel));
        assert_eq!(t(Scope::Live, "Esc"), Input::Command(Command::Cancel));
        // `?` is help except where it is typed.
        assert_eq!(t(Scope::Live, "?"), Input::Command(Command::Help));
        assert_eq!(t(Scope::Params, "?"), Input::Command(Command::Help));
        assert_eq!(t(Scope::Editor, "?"), Input::Text('?'));
        assert_eq!(t(Scope::Value, "?"), Input::Text('?'));
        assert_eq!(
            t(Scope::Editor, "Shift-Left"),
            Input::Command(Command::SelectLeft)
        );
        assert_eq!(
            t(Scope::Editor, "Ctrl-Shift-Right"),
            Input::Command(Command::SelectWordRight)
        );
        assert_eq!(
            t(Scope::Editor, "Ctrl-K"),
            Input::Command(Command::MaskSelection)
        );
        assert_eq!(t(Scope::Live, "x"), Input::Text('x'));
        // The picker answers its keys, quitting and its own key only.
        assert_eq!(t(Scope::Picker, "F5"), Input::Unbound);
        assert_eq!(t(Scope::Picker, "F10"), Input::Command(Command::PickModel));
        assert_eq!(t(Scope::Picker, "Ctrl-Q"), Input::Command(Command::Quit));
        assert_eq!(
            t(Scope::Download, "q"),
            Input::Command(Command::CancelDownload)
        );
        assert_eq!(t(Scope::Help, "F1"), Input::Unbound);
    }

    /// `[keys]` rebinds panel keys too, and the help follows.
    #[test]
    fn panel_keys_can_be_rebound() {
        let mut o = BTreeMap::new();
        o.insert(Command::Inspect, vec!["x".to_string()]);
        let km = KeyMap::with_overrides(&o).unwrap();
        assert_eq!(
            km.translate(Scope::Live, &key("x")),
            Input::Command(Command::Inspect)
        );
        assert_eq!(km.translate(Scope::Live, &key("i")), Input::Text('i'));
        let live = km.help_rows(Scope::Live);
        assert!(
            live.iter()
                .any(|(k, what)| k == "x" && what.contains("inspector")),
            "{live:?}"
        );
        assert_eq!(km.key_name(Command::Inspect), "x");
    }

    /// A key that could never reach its command is refused, naming what takes it.
    #[test]
    fn a_binding_shadowed_everywhere_is_refused() {
        let set = |command: Command, keys: &[&str]| {
            let mut o = BTreeMap::new();
            o.insert(command, keys.iter().map(|k| k.to_string()).collect());
            KeyMap::with_overrides(&o)
        };
        let e = set(Command::Inspect, &["F5"]).unwrap_err().to_string();
        assert!(e.contains("F5") && e.contains("run"), "{e}");
        let e = set(Command::Newline, &["x"]).unwrap_err().to_string();
        assert!(e.contains("types text"), "{e}");
        // Restating a default is fine, shadowed or not where the inspector is open.
        assert!(set(Command::StepBack, &["Left"]).is_ok());
    }

    /// Every key the help names for the default map does what the help says.
    #[test]
    fn the_help_names_keys_that_work() {
        let km = KeyMap::defaults();
        for scope in Scope::ALL {
            for &command in Command::ALL.iter().filter(|c| c.scope() == scope) {
                for k in km.keys(command) {
                    let works = Scope::ALL
                        .iter()
                        .any(|&top| km.translate(top, &k.to_event()) == Input::Command(command));
                    assert!(works, "{k} for {}", command.name());
                }
            }
        }
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
