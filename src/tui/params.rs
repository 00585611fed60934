//! The parameters panel: one row per schedule parameter, adjusted with arrows or typed in, each
//! validated with a message that names it.

use crossterm::event::{KeyCode, KeyEvent};

use crate::run::{Field, Settings};

/// Cursor and typing state of the panel.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ParamsForm {
    pub row: usize,
    /// Text being typed for the selected row.
    pub buffer: Option<String>,
}

impl ParamsForm {
    pub fn selected(&self) -> Field {
        Field::ALL[self.row.min(Field::ALL.len() - 1)]
    }

    pub fn editing(&self) -> bool {
        self.buffer.is_some()
    }

    pub fn type_text(&mut self, text: &str) {
        self.buffer
            .get_or_insert_with(String::new)
            .push_str(text.trim());
    }

    /// Keys while a value is typed; `None` when the key is not the form's.
    pub fn edit_key(&mut self, key: KeyEvent, s: &mut Settings) -> Option<Result<(), String>> {
        let buffer = self.buffer.as_mut()?;
        match key.code {
            KeyCode::Char(c) => buffer.push(c),
            KeyCode::Backspace => {
                buffer.pop();
            }
            KeyCode::Esc => self.buffer = None,
            KeyCode::Enter => {
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
            // Enter edits the value in place; typing a character starts a new one.
            KeyCode::Enter => self.buffer = Some(self.selected().value(s)),
            KeyCode::Char(c) if c.is_ascii_alphanumeric() || c == '.' => {
                self.buffer = Some(c.to_string())
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
}
