//! Chat templates of instruct models: the Jinja template in the model's `tokenizer_config.json`
//! (`chat_template`), rendered with minijinja the way transformers' `apply_chat_template` does
//! (with Python string methods, `raise_exception`, and the special tokens as variables).

use std::path::Path;

use anyhow::{anyhow, Context, Result};
use minijinja::{context, Environment, Error, ErrorKind};

use crate::files::{read_json_if_present, special_token};

/// One chat message.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub role: String,
    pub content: String,
}

impl Message {
    pub fn user(content: &str) -> Self {
        Self {
            role: "user".into(),
            content: content.into(),
        }
    }
}

/// A model's chat template with the special tokens it refers to.
#[derive(Debug, Clone)]
pub struct ChatTemplate {
    source: String,
    bos_token: String,
    eos_token: String,
}

fn token(value: &serde_json::Value) -> String {
    special_token(value).unwrap_or_default().to_string()
}

impl ChatTemplate {
    /// The template's Jinja source.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// A template with the BOS and EOS texts it may refer to (a GGUF file's metadata).
    pub fn new(source: String, bos_token: String, eos_token: String) -> Self {
        Self {
            source,
            bos_token,
            eos_token,
        }
    }

    /// Reads `tokenizer_config.json` of a model folder; `Ok(None)` when it has no template.
    pub fn from_model_dir(dir: &Path) -> Result<Option<Self>> {
        let path = dir.join("tokenizer_config.json");
        // Newer repositories keep the template in a file of its own.
        let jinja = dir.join("chat_template.jinja");
        let separate = if jinja.is_file() {
            Some(
                std::fs::read_to_string(&jinja)
                    .with_context(|| format!("reading {}", jinja.display()))?,
            )
        } else {
            None
        };
        let Some(cfg) = read_json_if_present(&path)? else {
            return Ok(separate.map(|source| Self {
                source,
                bos_token: String::new(),
                eos_token: String::new(),
            }));
        };
        // A string, or a list of named templates of which "default" is the chat one.
        let source = match &cfg["chat_template"] {
            _ if separate.is_some() => separate,
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Array(list) => list
                .iter()
                .find(|t| t["name"] == "default")
                .and_then(|t| t["template"].as_str())
                .map(str::to_string),
            _ => None,
        };
        Ok(source.map(|source| Self {
            source,
            bos_token: token(&cfg["bos_token"]),
            eos_token: token(&cfg["eos_token"]),
        }))
    }

    /// The prompt for `messages`, ending with the assistant's turn opened when
    /// `add_generation_prompt` is set.
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String> {
        let mut env = Environment::new();
        minijinja_contrib::add_to_environment(&mut env);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function(
            "raise_exception",
            |message: String| -> Result<String, Error> {
                Err(Error::new(ErrorKind::InvalidOperation, message))
            },
        );
        env.add_template("chat", &self.source)
            .map_err(|e| anyhow!("the model's chat template does not parse: {e}"))?;
        let template = env.get_template("chat").expect("just added");
        template
            .render(context! {
                messages => messages
                    .iter()
                    .map(|m| minijinja::Value::from_pairs([
                        ("role", m.role.as_str()),
                        ("content", m.content.as_str()),
                    ]))
                    .collect::<Vec<_>>(),
                add_generation_prompt => add_generation_prompt,
                bos_token => &self.bos_token,
                eos_token => &self.eos_token,
            })
            .map_err(|e| anyhow!("rendering the model's chat template failed: {e}"))
    }
}
