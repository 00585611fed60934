//! Text <-> token ids with a Hugging Face `tokenizer.json`, and the display helpers the CLI and the
//! UI share (canvas text with visible masks, per-token text).

use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use tokenizers::{Encoding, Token, Tokenizer};

use crate::prompt::Segment;

/// Qwen2's pre-tokenizer split (tokenization_qwen2.py's PRETOKENIZE_REGEX).
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// How a masked position is shown in text output.
pub const MASK_GLYPH: &str = "[MASK]";

pub struct TextCodec {
    tokenizer: Tokenizer,
    /// The same tokenizer with special tokens read as plain text: a user who types
    /// `<|mdm_mask|>` means those characters, not a mask (the marker syntax is `[MASK]`).
    literal: Tokenizer,
}

impl TextCodec {
    pub fn from_file(path: &Path) -> Result<Self> {
        let tokenizer = Tokenizer::from_file(path)
            .map_err(|e| anyhow!("{}: not a usable tokenizer.json: {e}", path.display()))?;
        Ok(Self::new(tokenizer))
    }

    /// A Qwen2-style byte-level BPE from `vocab.json`, `merges.txt` and the added tokens of
    /// `added_tokens.json` / `tokenizer_config.json` (Dream's hub repos ship no tokenizer.json).
    /// The pipeline is Qwen2's fast tokenizer: NFC, the Qwen2 pre-split regex, byte-level mapping
    /// without a prefix space, no BOS or EOS added.
    pub fn from_vocab_and_merges(dir: &Path) -> Result<Self> {
        let read_json = |name: &str| crate::files::read_json_if_present(&dir.join(name));
        let vocab = read_json("vocab.json")?
            .ok_or_else(|| anyhow!("{} has no vocab.json", dir.display()))?;
        let merges_path = dir.join("merges.txt");
        let merges: Vec<String> = std::fs::read_to_string(&merges_path)
            .with_context(|| format!("reading {}", merges_path.display()))?
            .lines()
            .filter(|l| !l.starts_with("#version") && !l.trim().is_empty())
            .map(str::to_string)
            .collect();
        // id -> (content, special): added_tokens.json, with flags from tokenizer_config.json.
        let mut added: std::collections::BTreeMap<u64, (String, bool)> = Default::default();
        if let Some(map) = read_json("added_tokens.json")? {
            for (content, id) in map.as_object().into_iter().flatten() {
                if let Some(id) = id.as_u64() {
                    added.insert(id, (content.clone(), true));
                }
            }
        }
        if let Some(cfg) = read_json("tokenizer_config.json")? {
            for (id, tok) in cfg["added_tokens_decoder"]
                .as_object()
                .into_iter()
                .flatten()
            {
                if let (Ok(id), Some(content)) = (id.parse::<u64>(), tok["content"].as_str()) {
                    let special = tok["special"].as_bool().unwrap_or(true);
                    added.insert(id, (content.to_string(), special));
                }
            }
        }
        let added_tokens: Vec<serde_json::Value> = added
            .into_iter()
            .map(|(id, (content, special))| {
                serde_json::json!({"id": id, "content": content, "single_word": false,
                    "lstrip": false, "rstrip": false, "normalized": false, "special": special})
            })
            .collect();
        let json = serde_json::json!({
            "version": "1.0",
            "truncation": null,
            "padding": null,
            "added_tokens": added_tokens,
            "normalizer": {"type": "NFC"},
            "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": QWEN2_SPLIT}, "behavior": "Isolated",
                 "invert": false},
                {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true,
                 "use_regex": false}
            ]},
            "post_processor": {"type": "ByteLevel", "add_prefix_space": false,
                "trim_offsets": false, "use_regex": false},
            "decoder": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true,
                "use_regex": false},
            "model": {"type": "BPE", "dropout": null, "unk_token": null,
                "continuing_subword_prefix": null, "end_of_word_suffix": null,
                "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                "vocab": vocab, "merges": merges}
        });
        let tokenizer = Tokenizer::from_bytes(serde_json::to_vec(&json)?).map_err(|e| {
            anyhow!(
                "{}: vocab.json and merges.txt do not make a tokenizer: {e}",
                dir.display()
            )
        })?;
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
        let mut literal = tokenizer.clone();
        literal.set_encode_special_tokens(true);
        Self { tokenizer, literal }
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// Encodes a parsed prompt: each literal piece on its own, masks as `mask_id`, then the
    /// tokenizer's post-processor once over the whole (e.g. LLaDA's BOS), exactly as
    /// `tokenizer(text)` would for a prompt without masks.
    pub fn encode_segments(&self, segments: &[Segment], mask_id: u32) -> Result<Vec<u32>> {
        self.encode_segments_with(segments, mask_id, true)
    }

    /// As [`Self::encode_segments`]; without `add_special` the tokenizer's post-processor (which
    /// may add BOS) is skipped, as transformers does for a rendered chat template, which carries
    /// its own special tokens. With `add_special` the text is the user's, and special-token
    /// strings in it are encoded as the characters they are.
    pub fn encode_segments_with(
        &self,
        segments: &[Segment],
        mask_id: u32,
        add_special: bool,
    ) -> Result<Vec<u32>> {
        let mut pieces = Vec::with_capacity(segments.len());
        for segment in segments {
            let encoding = match segment {
                Segment::Text(text) => if add_special {
                    &self.literal
                } else {
                    &self.tokenizer
                }
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
        if !add_special {
            return Ok(merged.get_ids().to_vec());
        }
        let processed = self
            .tokenizer
            .post_process(merged, None, true)
            .map_err(|e| anyhow!("applying the tokenizer's post-processor: {e}"))?;
        Ok(processed.get_ids().to_vec())
    }

    /// A canvas for the sampler: the segments (as [`Self::encode_segments_with`]) followed by
    /// `length` masks; returns it and the prompt's length. The masks are counted, with checked
    /// arithmetic, against `max_context` before anything is allocated, so an absurd count is an
    /// error rather than an abort.
    pub fn encode_canvas(
        &self,
        segments: &[Segment],
        length: usize,
        mask_id: u32,
        add_special: bool,
        max_context: usize,
    ) -> Result<(Vec<u32>, usize)> {
        let masks = crate::prompt::mask_total(segments).and_then(|m| m.checked_add(length));
        match masks {
            Some(m) if m <= max_context => {}
            Some(m) => {
                bail!("the masks alone need {m} tokens but the model accepts at most {max_context}")
            }
            None => bail!(
                "the mask count is too large (the model accepts at most {max_context} tokens)"
            ),
        }
        let mut canvas = self.encode_segments_with(segments, mask_id, add_special)?;
        let prompt_len = canvas.len();
        canvas.extend(std::iter::repeat_n(mask_id, length));
        if canvas.len() > max_context {
            bail!(
                "the text and generation region need {} tokens but the model accepts at most {max_context}",
                canvas.len()
            );
        }
        Ok((canvas, prompt_len))
    }

    pub fn encode(&self, text: &str, special_tokens: bool) -> Result<Vec<u32>> {
        let enc = self
            .tokenizer
            .encode(text, special_tokens)
            .map_err(|e| anyhow!("tokenizing: {e}"))
            .context("encode")?;
        Ok(enc.get_ids().to_vec())
    }

    /// The id of a token, if the vocabulary has it.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.tokenizer.token_to_id(token)
    }

    /// The text of `ids`. An id the tokenizer does not know (a model whose output rows outnumber
    /// its tokenizer's entries can propose one) is written `[id N]`, never dropped.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> String {
        let known = |id: u32| self.tokenizer.id_to_token(id).is_some();
        let mut out = String::new();
        for run in ids.chunk_by(|a, b| known(*a) == known(*b)) {
            if known(run[0]) {
                let text = self.tokenizer.decode(run, skip_special);
                out.push_str(&text.unwrap_or_else(|_| "\u{fffd}".repeat(run.len())));
            } else {
                for id in run {
                    out.push_str(&format!("[id {id}]"));
                }
            }
        }
        out
    }

    /// The text of one token as it reads inside running text (byte-level pieces decoded).
    pub fn token_text(&self, id: u32) -> String {
        self.decode(&[id], false)
    }

    /// The canvas as text, each masked position shown as [`MASK_GLYPH`]; `skip_special` leaves
    /// special tokens (end-of-text and the like) out.
    pub fn canvas_text(&self, tokens: &[u32], mask_id: u32, skip_special: bool) -> String {
        let mut out = String::new();
        for (is_mask, run) in runs(tokens, mask_id) {
            if is_mask {
                out.push_str(&MASK_GLYPH.repeat(run.len()));
            } else {
                out.push_str(&self.decode(run, skip_special));
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

#[cfg(test)]
mod tests {
    use crate::prompt::Segment;

    /// Typed special-token strings are text; only the `[MASK]` syntax makes masks. A rendered
    /// chat template (no post-processing) still reads its special tokens.
    #[test]
    fn ids_the_tokenizer_lacks_are_shown_not_dropped() {
        let codec = crate::model::embedded::codec().unwrap();
        let once = codec.encode("Once", false).unwrap();
        let mut ids = once.clone();
        ids.extend([70_000, 70_001]);
        ids.extend(&once);
        assert_eq!(codec.decode(&ids, true), "Once[id 70000][id 70001]Once");
        assert_eq!(codec.token_text(70_000), "[id 70000]");
    }

    #[test]
    fn typed_special_tokens_are_text() {
        let codec = crate::model::embedded::codec().unwrap();
        let mask = codec.token_id("<|mdm_mask|>").unwrap();
        let eos = codec.token_id("<|endoftext|>").unwrap();
        let typed = [Segment::Text("a <|mdm_mask|> b <|endoftext|>".into())];
        let ids = codec.encode_segments(&typed, mask).unwrap();
        assert!(!ids.contains(&mask) && !ids.contains(&eos), "{ids:?}");
        assert_eq!(codec.decode(&ids, false), "a <|mdm_mask|> b <|endoftext|>");
        let rendered = codec.encode_segments_with(&typed, mask, false).unwrap();
        assert!(
            rendered.contains(&mask) && rendered.contains(&eos),
            "{rendered:?}"
        );
    }
}
