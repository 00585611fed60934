//! The training corpus: stories split into a training and a held-out validation part, tokenised
//! into one stream with an end-of-text token after each story.

use std::path::Path;

use anyhow::{bail, Context, Result};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::text::TextCodec;

/// Stories in the corpus file. In the TinyStories dump a story ends at a single newline;
/// paragraphs inside a story are separated by blank lines.
pub fn read_stories(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the corpus {}", path.display()))?;
    let mut stories = Vec::new();
    let mut current = String::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        current.push_str(line);
        match lines.peek() {
            // A blank line: the story goes on with a new paragraph.
            Some(next) if next.is_empty() || line.is_empty() => current.push('\n'),
            _ => {
                let story = current.trim();
                if !story.is_empty() {
                    stories.push(story.to_string());
                }
                current.clear();
            }
        }
    }
    if stories.len() < 20 {
        bail!(
            "{} holds only {} stories; the corpus needs at least 20",
            path.display(),
            stories.len()
        );
    }
    Ok(stories)
}

/// Train / validation split: the last `fraction` of the stories are held out and never trained on.
pub fn split(stories: &[String], fraction: f64) -> (&[String], &[String]) {
    let held_out = ((stories.len() as f64 * fraction).ceil() as usize).clamp(1, stories.len() - 1);
    stories.split_at(stories.len() - held_out)
}

/// A tokenised split: one stream of ids, and where each story starts in it.
#[derive(Debug, Clone)]
pub struct TokenStream {
    pub ids: Vec<u32>,
    pub story_starts: Vec<usize>,
    pub chars: usize,
}

impl TokenStream {
    pub fn encode(codec: &TextCodec, stories: &[String], eos: u32) -> Result<Self> {
        let mut ids = Vec::new();
        let mut story_starts = Vec::with_capacity(stories.len());
        let mut chars = 0;
        for story in stories {
            story_starts.push(ids.len());
            ids.extend(codec.encode(story, false)?);
            ids.push(eos);
            chars += story.chars().count() + 1;
        }
        Ok(Self {
            ids,
            story_starts,
            chars,
        })
    }

    /// A training window of `len` tokens: half the time starting at a story's first token (the
    /// way prompts start), otherwise anywhere. Windows wrap around the end of the stream.
    pub fn sample_window(&self, len: usize, rng: &mut ChaCha8Rng) -> Vec<u32> {
        let start = if rng.random_bool(0.5) {
            self.story_starts[rng.random_range(0..self.story_starts.len())]
        } else {
            rng.random_range(0..self.ids.len())
        };
        (0..len)
            .map(|i| self.ids[(start + i) % self.ids.len()])
            .collect()
    }

    /// Consecutive non-overlapping windows (the held-out evaluation set), at most `max` of them.
    pub fn windows(&self, len: usize, max: usize) -> Vec<Vec<u32>> {
        self.ids
            .chunks_exact(len)
            .take(max)
            .map(|w| w.to_vec())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stories_end_at_single_newlines_and_keep_paragraphs() {
        let dir = std::env::temp_dir().join(format!("dlm-corpus-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.txt");
        let mut text = String::new();
        for i in 0..25 {
            text.push_str(&format!("Story {i} starts.\n\nIt goes on.\n"));
        }
        std::fs::write(&path, text).unwrap();
        let stories = read_stories(&path).unwrap();
        assert_eq!(stories.len(), 25);
        assert_eq!(stories[3], "Story 3 starts.\n\nIt goes on.");
        let (train, val) = split(&stories, 0.05);
        assert_eq!((train.len(), val.len()), (23, 2));
        assert_eq!(val[1], stories[24]);
        std::fs::remove_dir_all(dir).ok();
    }
}
