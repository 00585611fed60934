//! The parameters panel: one row per schedule parameter, adjusted with arrows or typed in, each
//! validated with a message that names it.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use crate::run::{Field, Settings};

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

    /// Keys while a value is typed; `None` when the key is not the form's (Ctrl and Alt keys
    /// are never typed: Ctrl-Q still quits).
    pub fn edit_key(&mut self, key: KeyEvent, s: &mut Settings) -> Option<Result<(), String>> {
        let field = self.selected();
        let buffer = self.buffer.as_mut()?;
        let plain = !key
            .modifiers
            .intersects(KeyModifiers::CONTROL | KeyModifiers::ALT);
        match key.code {
            KeyCode::Char(c) if plain => {
                if !field.accepts(c) {
                    return Some(Err(format!(
                        "{}: a whole number (digits only)",
                        field.label()
                    )));
                }
                if std::mem::take(&mut self.replacing) {
                    buffer.clear();
                }
                buffer.push(c)
            }
            KeyCode::Backspace => {
                if std::mem::take(&mut self.replacing) {
                    buffer.clear();
                } else {
                    buffer.pop();
                }
            }
            KeyCode::Left | KeyCode::Right | KeyCode::End => self.replacing = false,
            KeyCode::Esc => {
                self.buffer = None;
                self.replacing = false;
            }
            KeyCode::Enter => {
                self.replacing = false;
                let text = self.buffer.take().unwrap_or_default();
                // Enter on an empty field cancels the edit.
                if text.trim().is_empty() {
                    return Some(Ok(()));
                }
                return Some(self.selected().set(s, &text));
            }
            _ => return None,
        }
        Some(Ok(()))
    }

    /// Keys while browsing rows; `auto_steps` is what "auto" steps mean for the next run.
    pub fn key(
        &mut self,
        key: KeyEvent,
        s: &mut Settings,
        auto_steps: usize,
    ) -> Result<(), String> {
        match key.code {
            KeyCode::Up => self.row = self.row.saturating_sub(1),
            KeyCode::Down => self.row = (self.row + 1).min(Field::ALL.len() - 1),
            KeyCode::Left | KeyCode::Char('-') => {
                return self.selected().adjust_from(s, false, auto_steps)
            }
            KeyCode::Right | KeyCode::Char('+') | KeyCode::Char('=') => {
                return self.selected().adjust_from(s, true, auto_steps)
            }
            // Enter opens the value for editing, selected (typing replaces it); typing a
            // character starts a new one.
            KeyCode::Enter => {
                self.buffer = Some(self.selected().value(s));
                self.replacing = true;
            }
            KeyCode::Char(c)
                if (c.is_ascii_alphanumeric() || c == '.')
                    && !key
                        .modifiers
                        .intersects(KeyModifiers::CONTROL | KeyModifiers::ALT) =>
            {
                if !self.selected().accepts(c) {
                    return Err(format!(
                        "{}: a whole number (digits only)",
                        self.selected().label()
                    ));
                }
                self.buffer = Some(c.to_string());
                self.replacing = false;
            }
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn enter_on_an_empty_field_cancels() {
        let mut form = ParamsForm::default();
        let mut s = Settings {
            steps: Some(12),
            ..Settings::default()
        };
        form.row = Field::ALL.iter().position(|f| *f == Field::Steps).unwrap();
        form.key(KeyEvent::from(KeyCode::Enter), &mut s, 64)
            .unwrap();
        assert!(form.editing());
        form.edit_key(KeyEvent::from(KeyCode::Enter), &mut s)
            .unwrap()
            .unwrap();
        assert!(!form.editing());
        assert_eq!(s.steps, Some(12));
    }

    fn typed(form: &mut ParamsForm, s: &mut Settings, keys: &[KeyEvent]) -> Result<(), String> {
        for &key in keys {
            match form.edit_key(key, s) {
                Some(result) => result?,
                None => form.key(key, s, 64)?,
            }
        }
        Ok(())
    }

    fn chars(text: &str) -> Vec<KeyEvent> {
        text.chars()
            .map(|c| KeyEvent::from(KeyCode::Char(c)))
            .collect()
    }

    /// Issue 29, item 5: Enter opens the old value selected, and typing replaces it.
    #[test]
    fn enter_then_typing_replaces_the_old_value() {
        let mut form = ParamsForm::default();
        let mut s = Settings::default();
        form.row = Field::ALL
            .iter()
            .position(|f| *f == Field::Threshold)
            .unwrap();
        let mut keys = vec![KeyEvent::from(KeyCode::Enter)];
        keys.extend(chars("0.9"));
        keys.push(KeyEvent::from(KeyCode::Enter));
        typed(&mut form, &mut s, &keys).unwrap();
        assert_eq!(
            s.params.parallel,
            Some(crate::sampler::Parallel::Threshold(0.9))
        );
        form.row = Field::ALL
            .iter()
            .position(|f| *f == Field::Temperature)
            .unwrap();
        let mut keys = vec![KeyEvent::from(KeyCode::Enter)];
        keys.extend(chars("1"));
        keys.push(KeyEvent::from(KeyCode::Enter));
        typed(&mut form, &mut s, &keys).unwrap();
        assert_eq!(s.params.temperature, 1.0);
        // Right first keeps the old value and types after it.
        let mut keys = vec![
            KeyEvent::from(KeyCode::Enter),
            KeyEvent::from(KeyCode::Right),
        ];
        keys.extend(chars("5"));
        keys.push(KeyEvent::from(KeyCode::Enter));
        typed(&mut form, &mut s, &keys).unwrap();
        assert_eq!(s.params.temperature, 15.0);
    }

    /// Issue 29, item 4: Ctrl keys are not typed into a value, and a whole-number field takes
    /// digits only.
    #[test]
    fn ctrl_keys_are_not_typed_and_numbers_take_digits() {
        let mut form = ParamsForm::default();
        let mut s = Settings::default();
        form.row = Field::ALL.iter().position(|f| *f == Field::Length).unwrap();
        typed(&mut form, &mut s, &[KeyEvent::from(KeyCode::Enter)]).unwrap();
        let ctrl_q = KeyEvent::new(KeyCode::Char('q'), KeyModifiers::CONTROL);
        assert!(
            form.edit_key(ctrl_q, &mut s).is_none(),
            "Ctrl-Q is the app's"
        );
        assert!(typed(&mut form, &mut s, &chars("1x")).is_err());
        assert_eq!(form.buffer.as_deref(), Some("1"));
        form.buffer = None;
        assert!(form
            .key(KeyEvent::from(KeyCode::Char('a')), &mut s, 64)
            .is_err());
        assert!(!form.editing());
    }
}
