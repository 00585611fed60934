//! Text <-> token ids with a Hugging Face `tokenizer.json`, and the display helpers the CLI and the
//! UI share (canvas text with visible masks, per-token text).

use std::path::Path;

use anyhow::{anyhow, Context, Result};
use tokenizers::{Encoding, Token, Tokenizer};

use crate::prompt::Segment;

/// How a masked position is shown in text output.
pub const MASK_GLYPH: &str = "[MASK]";

pub struct TextCodec {
    tokenizer: Tokenizer,
}

impl TextCodec {
    pub fn from_file(path: &Path) -> Result<Self> {
        let tokenizer = Tokenizer::from_file(path)
            .map_err(|e| anyhow!("{}: not a usable tokenizer.json: {e}", path.display()))?;
        Ok(Self::new(tokenizer))
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let tokenizer = Tokenizer::from_bytes(bytes)
            .map_err(|e| anyhow!("not a usable tokenizer.json: {e}"))?;
        Ok(Self::new(tokenizer))
    }

    fn new(mut tokenizer: Tokenizer) -> Self {
        // `tokenizer(text)` in transformers neither truncates nor pads unless asked to.
        tokenizer.with_padding(None);
        let _ = tokenizer.with_truncation(None);
        Self { tokenizer }
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// Encodes a parsed prompt: each literal piece on its own, masks as `mask_id`, then the
    /// tokenizer's post-processor once over the whole (e.g. LLaDA's BOS), exactly as
    /// `tokenizer(text)` would for a prompt without masks.
    pub fn encode_segments(&self, segments: &[Segment], mask_id: u32) -> Result<Vec<u32>> {
        let mut pieces = Vec::with_capacity(segments.len());
        for segment in segments {
            let encoding = match segment {
                Segment::Text(text) => self
                    .tokenizer
                    .encode(text.as_str(), false)
                    .map_err(|e| anyhow!("tokenizing {text:?}: {e}"))?,
                Segment::Masks(n) => Encoding::from_tokens(
                    vec![Token::new(mask_id, MASK_GLYPH.to_string(), (0, 0)); *n],
                    0,
                ),
            };
            pieces.push(encoding);
        }
        let merged = Encoding::merge(pieces, false);
        let processed = self
            .tokenizer
            .post_process(merged, None, true)
            .map_err(|e| anyhow!("applying the tokenizer's post-processor: {e}"))?;
        Ok(processed.get_ids().to_vec())
    }

    pub fn encode(&self, text: &str, special_tokens: bool) -> Result<Vec<u32>> {
        let enc = self
            .tokenizer
            .encode(text, special_tokens)
            .map_err(|e| anyhow!("tokenizing: {e}"))
            .context("encode")?;
        Ok(enc.get_ids().to_vec())
    }

    pub fn decode(&self, ids: &[u32], skip_special: bool) -> String {
        self.tokenizer
            .decode(ids, skip_special)
            .unwrap_or_else(|_| ids.iter().map(|_| "\u{fffd}").collect())
    }

    /// The text of one token as it reads inside running text (byte-level pieces decoded).
    pub fn token_text(&self, id: u32) -> String {
        self.decode(&[id], false)
    }

    /// The canvas as text, each masked position shown as [`MASK_GLYPH`].
    pub fn canvas_text(&self, tokens: &[u32], mask_id: u32) -> String {
        let mut out = String::new();
        for (is_mask, run) in runs(tokens, mask_id) {
            if is_mask {
                out.push_str(&MASK_GLYPH.repeat(run.len()));
            } else {
                out.push_str(&self.decode(run, false));
            }
        }
        out
    }

    pub fn vocab_size(&self) -> usize {
        self.tokenizer.get_vocab_size(true)
    }
}

/// Splits a canvas into maximal runs of masked / unmasked tokens.
fn runs(tokens: &[u32], mask_id: u32) -> impl Iterator<Item = (bool, &[u32])> {
    tokens
        .chunk_by(move |a, b| (*a == mask_id) == (*b == mask_id))
        .map(move |run| (run[0] == mask_id, run))
}
