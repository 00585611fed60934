//! The parameters panel: one row per schedule parameter, adjusted with arrows or typed in, each
//! validated with a message that names it.

use super::keymap::Command;
use crate::run::{Field, Settings};

/// Rows PageUp and PageDown move (the panel shows about this many at 80x24).
const PAGE: usize = 10;

/// Cursor and typing state of the panel.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ParamsForm {
    pub row: usize,
    /// Text being typed for the selected row.
    pub buffer: Option<String>,
    /// The buffer is the old value, selected (Enter opened the edit): typing replaces it,
    /// Backspace clears it, Left/Right keep it and move into it.
    pub replacing: bool,
}

impl ParamsForm {
    pub fn selected(&self) -> Field {
        Field::ALL[self.row.min(Field::ALL.len() - 1)]
    }

    pub fn editing(&self) -> bool {
        self.buffer.is_some()
    }

    pub fn type_text(&mut self, text: &str) {
        let field = self.selected();
        let text: String = text.trim().chars().filter(|&c| field.accepts(c)).collect();
        let buffer = self.buffer.get_or_insert_with(String::new);
        if std::mem::take(&mut self.replacing) {
            buffer.clear();
        }
        buffer.push_str(&text);
    }

    /// A printable key: typed into the value being edited; else a digit or a point starts a
    /// new value, and a letter jumps to the next parameter whose name starts with it.
    pub fn type_char(&mut self, c: char) -> Result<(), String> {
        let field = self.selected();
        let editing = self.editing();
        if !editing && c.is_alphabetic() {
            let n = Field::ALL.len();
            let lower = c.to_lowercase().to_string();
            if let Some(next) = (1..=n)
                .map(|k| (self.row + k) % n)
                .find(|&r| Field::ALL[r].label().starts_with(&lower))
            {
                self.row = next;
            }
            return Ok(());
        }
        if !(editing || c.is_ascii_digit() || c == '.') {
            return Ok(());
        }
        if !field.accepts(c) {
            return Err(format!("{}: a whole number (digits only)", field.label()));
        }
        let buffer = self.buffer.get_or_insert_with(String::new);
        if std::mem::take(&mut self.replacing) {
            buffer.clear();
        }
        buffer.push(c);
        Ok(())
    }

    /// The panel's commands while browsing rows and while a value is typed; `auto_steps` is
    /// what "auto" steps mean for the next run.
    pub fn command(
        &mut self,
        command: Command,
        s: &mut Settings,
        auto_steps: usize,
    ) -> Result<(), String> {
        match command {
            Command::ParamUp => self.row = self.row.saturating_sub(1),
            Command::ParamDown => self.row = (self.row + 1).min(Field::ALL.len() - 1),
            Command::ParamFirst => self.row = 0,
            Command::ParamLast => self.row = Field::ALL.len() - 1,
            Command::ParamPageUp => self.row = self.row.saturating_sub(PAGE),
            Command::ParamPageDown => self.row = (self.row + PAGE).min(Field::ALL.len() - 1),
            Command::ParamDecrease => return self.selected().adjust_from(s, false, auto_steps),
            Command::ParamIncrease => return self.selected().adjust_from(s, true, auto_steps),
            // The value opens selected: typing replaces it.
            Command::ParamEdit => {
                self.buffer = Some(self.selected().value(s));
                self.replacing = true;
            }
            Command::ValueBackspace => {
                let replacing = std::mem::take(&mut self.replacing);
                if let Some(buffer) = self.buffer.as_mut() {
                    if replacing {
                        buffer.clear();
                    } else {
                        buffer.pop();
                    }
                }
            }
            Command::ValueKeep => self.replacing = false,
            Command::ValueCancel => {
                self.buffer = None;
                self.replacing = false;
            }
            Command::ValueConfirm => {
                self.replacing = false;
                let text = self.buffer.take().unwrap_or_default();
                // Enter on an empty field cancels the edit.
                if !text.trim().is_empty() {
                    return self.selected().set(s, &text);
                }
            }
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tui::keymap::{event, Input, KeyMap, Scope};

    /// Presses keys as the app does: translated in the panel's scope, then run.
    fn typed(form: &mut ParamsForm, s: &mut Settings, keys: &[&str]) -> Result<(), String> {
        let map = KeyMap::defaults();
        for key in keys {
            let scope = if form.editing() {
                Scope::Value
            } else {
                Scope::Params
            };
            match map.translate(scope, &event(key).unwrap()) {
                Input::Command(c) => form.command(c, s, 64)?,
                Input::Text(c) => form.type_char(c)?,
                Input::Unbound => {}
            }
        }
        Ok(())
    }

    fn row(field: Field) -> usize {
        Field::ALL.iter().position(|f| *f == field).unwrap()
    }

    #[test]
    fn enter_on_an_empty_field_cancels() {
        let mut form = ParamsForm::default();
        let mut s = Settings {
            steps: Some(12),
            ..Settings::default()
        };
        form.row = row(Field::Steps);
        typed(&mut form, &mut s, &["Enter"]).unwrap();
        assert!(form.editing());
        form.buffer = Some(String::new());
        typed(&mut form, &mut s, &["Enter"]).unwrap();
        assert!(!form.editing());
        assert_eq!(s.steps, Some(12));
    }

    /// Issue 29, item 5: Enter opens the old value selected, and typing replaces it.
    #[test]
    fn enter_then_typing_replaces_the_old_value() {
        let mut form = ParamsForm::default();
        let mut s = Settings::default();
        form.row = row(Field::Threshold);
        typed(&mut form, &mut s, &["Enter", "0", ".", "9", "Enter"]).unwrap();
        assert_eq!(
            s.params.parallel,
            Some(crate::sampler::Parallel::Threshold(0.9))
        );
        form.row = row(Field::Temperature);
        typed(&mut form, &mut s, &["Enter", "1", "Enter"]).unwrap();
        assert_eq!(s.params.temperature, 1.0);
        // Right first keeps the old value and types after it.
        typed(&mut form, &mut s, &["Enter", "Right", "5", "Enter"]).unwrap();
        assert_eq!(s.params.temperature, 15.0);
    }

    /// Issue 29, item 4: Ctrl keys are not typed into a value, and a whole-number field takes
    /// digits only.
    #[test]
    fn ctrl_keys_are_not_typed_and_numbers_take_digits() {
        let mut form = ParamsForm::default();
        let mut s = Settings::default();
        form.row = row(Field::Length);
        typed(&mut form, &mut s, &["Enter"]).unwrap();
        assert_eq!(
            KeyMap::defaults().translate(Scope::Value, &event("Ctrl-Q").unwrap()),
            Input::Command(Command::Quit),
            "Ctrl-Q is the app's"
        );
        assert!(typed(&mut form, &mut s, &["1", "x"]).is_err());
        assert_eq!(form.buffer.as_deref(), Some("1"));
        form.buffer = None;
        assert!(
            typed(&mut form, &mut s, &["a"]).is_ok(),
            "a letter jumps, it is not typed"
        );
        assert!(!form.editing());
    }

    /// Issue 29, item 9: Home/End/PageUp/PageDown move in the list, and a letter jumps to the
    /// next parameter it starts (again: the one after).
    #[test]
    fn the_list_pages_and_letters_jump() {
        let mut form = ParamsForm::default();
        let mut s = Settings::default();
        typed(&mut form, &mut s, &["End"]).unwrap();
        assert_eq!(form.row, Field::ALL.len() - 1);
        typed(&mut form, &mut s, &["Home", "PageDown"]).unwrap();
        assert_eq!(form.row, PAGE);
        typed(&mut form, &mut s, &["PageUp"]).unwrap();
        assert_eq!(form.row, 0);
        typed(&mut form, &mut s, &["c"]).unwrap();
        assert_eq!(form.selected().label().chars().next(), Some('c'));
        let first = form.row;
        typed(&mut form, &mut s, &["c"]).unwrap();
        assert!(form.row != first && form.selected().label().starts_with('c'));
        assert!(!form.editing());
        // A digit still starts a new value.
        typed(&mut form, &mut s, &["Home", "7"]).unwrap();
        assert_eq!(form.buffer.as_deref(), Some("7"));
    }
}
