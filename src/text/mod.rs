//! Text <-> token ids with a Hugging Face `tokenizer.json`, and the display helpers the CLI and the
//! UI share (canvas text with visible masks, per-token text).

use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use tokenizers::{Encoding, Token, Tokenizer};

use crate::prompt::Segment;

mod gguf;

pub use gguf::GgufVocab;

/// How a byte-level BPE splits text before merging: the regexes of GPT-2 (inside `ByteLevel`),
/// Qwen2 and Llama 3 (their tokenizer.json `Split` patterns).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Split {
    Gpt2,
    Qwen2,
    Llama3,
}

const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// A byte-level BPE tokenizer (tokenizer.json's pipeline, no prefix space) from a vocabulary
/// (token -> id), merges ("a b"), added tokens (id, text, special), the pre-split and an optional
/// BOS put before every text.
fn byte_level_bpe(
    vocab: serde_json::Value,
    merges: Vec<String>,
    added: &[(u64, String, bool)],
    split: Split,
    bos: Option<(u32, String)>,
) -> std::result::Result<Tokenizer, tokenizers::Error> {
    let added_tokens: Vec<serde_json::Value> = added
        .iter()
        .map(|(id, content, special)| {
            serde_json::json!({"id": id, "content": content, "single_word": false,
                "lstrip": false, "rstrip": false, "normalized": false, "special": special})
        })
        .collect();
    let byte_level = |use_regex: bool| {
        serde_json::json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true,
            "use_regex": use_regex})
    };
    let regex_split = |pattern: &str| {
        serde_json::json!({"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Isolated",
             "invert": false},
            byte_level(false)
        ]})
    };
    let (normalizer, pre_tokenizer) = match split {
        Split::Gpt2 => (serde_json::Value::Null, byte_level(true)),
        Split::Qwen2 => (serde_json::json!({"type": "NFC"}), regex_split(QWEN2_SPLIT)),
        Split::Llama3 => (serde_json::Value::Null, regex_split(LLAMA3_SPLIT)),
    };
    let post_processor = match bos {
        Some((id, text)) => serde_json::json!({"type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": text, "type_id": 0}},
                       {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": text, "type_id": 0}},
                     {"Sequence": {"id": "A", "type_id": 0}},
                     {"Sequence": {"id": "B", "type_id": 0}}],
            "special_tokens": {text.clone(): {"id": text, "ids": [id], "tokens": [text]}}}),
        None => serde_json::json!({"type": "ByteLevel", "add_prefix_space": false,
            "trim_offsets": false, "use_regex": false}),
    };
    let json = serde_json::json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added_tokens,
        "normalizer": normalizer,
        "pre_tokenizer": pre_tokenizer,
        "post_processor": post_processor,
        "decoder": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true,
            "use_regex": false},
        "model": {"type": "BPE", "dropout": null, "unk_token": null,
            "continuing_subword_prefix": null, "end_of_word_suffix": null,
            "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
            "vocab": vocab, "merges": merges}
    });
    Tokenizer::from_bytes(serde_json::to_vec(&json).map_err(|e| e.to_string())?)
}

/// Qwen2's pre-tokenizer split (tokenization_qwen2.py's PRETOKENIZE_REGEX).
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// How a masked position is shown in text output.
pub const MASK_GLYPH: &str = "[MASK]";

/// Text <-> token ids with one model's tokenizer, and how masked spans sit in text.
#[derive(Clone)]
pub struct TextCodec {
    tokenizer: Tokenizer,
    /// The same tokenizer with special tokens read as plain text: a user who types
    /// `<|mdm_mask|>` means those characters, not a mask (the marker syntax is `[MASK]`).
    literal: Tokenizer,
    /// Whether a space before a word belongs to that word's token (byte-level BPE's `" park"`,
    /// SentencePiece's `"▁park"`), found by asking the tokenizer whether a trailing space is a
    /// token of its own. Then the space before a masked span is the span's: the model never saw
    /// a lone space token before a word in training, and fills the span with junk after one.
    space_joins_next: bool,
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
        let added: Vec<(u64, String, bool)> = added
            .into_iter()
            .map(|(id, (content, special))| (id, content, special))
            .collect();
        let tokenizer = byte_level_bpe(vocab, merges, &added, Split::Qwen2, None).map_err(|e| {
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
        let count = |text: &str| literal.encode(text, false).map(|e| e.get_ids().len());
        let space_joins_next = matches!((count("ran"), count("ran ")), (Ok(a), Ok(b)) if b > a);
        Self {
            tokenizer,
            literal,
            space_joins_next,
        }
    }

    /// Whether the space before a masked span is part of the span (see the field): true for
    /// byte-level BPEs (LLaDA's, Qwen's, dlm-tui's own) and SentencePiece, false for WordPiece,
    /// which drops spaces.
    pub fn span_takes_space(&self) -> bool {
        self.space_joins_next
    }

    /// How many tokens `text` takes as a masked span: after a space (`after_space`), as the
    /// tokenizer writes the words of running text, the space joined to the first word's token
    /// where it joins words (`" to the park"`, not `"to the park"`).
    pub fn span_tokens(&self, text: &str, after_space: bool) -> usize {
        let text = if after_space && self.space_joins_next {
            format!(" {text}")
        } else {
            text.to_string()
        };
        self.literal
            .encode(text.as_str(), false)
            .map(|e| e.get_ids().len())
            .unwrap_or(1)
            .max(1)
    }

    /// `segments` with the one space before each masked span taken into the span (dropped from
    /// the text), where the tokenizer joins a space to the word after it: `ran [MASK:3] and` is
    /// encoded as `ran` + 3 masks + ` and`, the tokens of `ran to the park and`, not with a lone
    /// space token the model never saw before a word. Typed, Ctrl-K and continued spans alike.
    fn spans_take_spaces(&self, segments: &[Segment]) -> Vec<Segment> {
        let mut out: Vec<Segment> = segments.to_vec();
        if !self.space_joins_next {
            return out;
        }
        for i in 0..out.len().saturating_sub(1) {
            if matches!(out[i + 1], Segment::Masks(_)) {
                if let Segment::Text(text) = &mut out[i] {
                    if text.ends_with(' ') {
                        text.pop();
                    }
                }
            }
        }
        out.retain(|s| !matches!(s, Segment::Text(t) if t.is_empty()));
        out
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// Encodes a parsed prompt: each literal piece on its own, masks as `mask_id`, then the
    /// tokenizer's post-processor once over the whole (e.g. LLaDA's BOS), exactly as
    /// `tokenizer(text)` would for a prompt without masks. The space before a span is the span's
    /// where the tokenizer joins spaces to words ([`Self::span_takes_space`]).
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
        let segments = self.spans_take_spaces(segments);
        let mut pieces = Vec::with_capacity(segments.len());
        for segment in &segments {
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

    /// The tokenizers of every family dlm-tui loads: the embedded model's byte-level BPE,
    /// LLaDA's (GPT-2 split, BOS added), Dream's and the A2D models' (Qwen2 split, from
    /// tokenizer.json and from vocab.json + merges.txt), ModernBERT's, and a WordPiece.
    fn every_family() -> Vec<(&'static str, super::TextCodec)> {
        let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        let file =
            |dir: &str| super::TextCodec::from_file(&fixtures.join(dir).join("tokenizer.json"));
        let wordpiece = serde_json::json!({
            "version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
            "normalizer": {"type": "BertNormalizer", "clean_text": true,
                "handle_chinese_chars": true, "strip_accents": null, "lowercase": true},
            "pre_tokenizer": {"type": "BertPreTokenizer"}, "post_processor": null,
            "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": true},
            "model": {"type": "WordPiece", "unk_token": "[UNK]",
                "continuing_subword_prefix": "##", "max_input_chars_per_word": 100,
                "vocab": {"[UNK]": 0, "the": 1, "little": 2, "dog": 3, "ran": 4, "to": 5,
                    "park": 6, "and": 7, "played": 8, ".": 9, "with": 10, "ball": 11,
                    "red": 12, "a": 13}}
        });
        vec![
            ("embedded", crate::model::embedded::codec().unwrap()),
            ("llada", file("llada-tiny-tied").unwrap()),
            ("dream", file("dream-tiny-tied").unwrap()),
            (
                "dream vocab+merges",
                super::TextCodec::from_vocab_and_merges(&fixtures.join("dream-tiny-tied")).unwrap(),
            ),
            ("a2d-qwen3", file("a2d-qwen3-tiny-tied").unwrap()),
            ("modernbert", file("modernbert-tiny-a").unwrap()),
            (
                "wordpiece",
                super::TextCodec::from_bytes(&serde_json::to_vec(&wordpiece).unwrap()).unwrap(),
            ),
        ]
    }

    /// A span masked out of running text (Ctrl-K on "to the park", or `[MASK:N]` typed after a
    /// space) is encoded as the model saw such text in training: the same tokens as the whole
    /// sentence, with exactly the span's tokens masked, and no lone space token before it.
    #[test]
    fn a_masked_span_is_tokenized_as_the_words_it_replaces() {
        let sentence = "The little dog ran to the park and played with the red ball.";
        for (family, codec) in every_family() {
            let mask = u32::MAX - 1;
            let whole = codec
                .encode_segments(&[Segment::Text(sentence.into())], mask)
                .unwrap();
            for (before, span, after) in [
                (
                    "The little dog ran ",
                    "to the park",
                    " and played with the red ball.",
                ),
                (
                    "The little dog ran to the park and played with the ",
                    "red",
                    " ball.",
                ),
                (
                    "",
                    "The little",
                    " dog ran to the park and played with the red ball.",
                ),
                (
                    "The little dog ran to the park and played with the red ",
                    "ball.",
                    "",
                ),
            ] {
                let n = codec.span_tokens(span, before.ends_with(' '));
                let mut segments = vec![Segment::Text(before.into()), Segment::Masks(n)];
                segments.push(Segment::Text(after.into()));
                segments.retain(|s| !matches!(s, Segment::Text(t) if t.is_empty()));
                let canvas = codec.encode_segments(&segments, mask).unwrap();
                assert_eq!(
                    canvas.len(),
                    whole.len(),
                    "{family}: {before:?}[{n}]{after:?}"
                );
                let masked: Vec<bool> = canvas.iter().map(|&t| t == mask).collect();
                assert_eq!(masked.iter().filter(|&&m| m).count(), n, "{family}");
                for (i, (&got, &want)) in canvas.iter().zip(&whole).enumerate() {
                    assert!(
                        masked[i] || got == want,
                        "{family}: {before:?}[{n}]{after:?} at {i}"
                    );
                }
                // The masked tokens are the span's, space included where the family joins it.
                let first = masked.iter().position(|&m| m).unwrap();
                let text = codec.decode(&whole[first..first + n], true);
                let expected = if codec.span_takes_space() && before.ends_with(' ') {
                    format!(" {span}")
                } else {
                    span.to_string()
                };
                assert_eq!(text.to_lowercase(), expected.to_lowercase(), "{family}");
            }
        }
    }

    /// Byte-level BPEs join a space to the next word; WordPiece drops spaces.
    #[test]
    fn which_families_join_a_space_to_the_span() {
        for (family, codec) in every_family() {
            assert_eq!(codec.span_takes_space(), family != "wordpiece", "{family}");
        }
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
