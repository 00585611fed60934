//! Tokenizers as GGUF files hold them (`tokenizer.ggml.*`): read into a [`TextCodec`] for a
//! `.gguf` model, and written from one by `dlm-tui convert`.

use anyhow::{anyhow, bail, Result};

use super::{byte_level_bpe, Split, TextCodec, LLAMA3_SPLIT, QWEN2_SPLIT};

/// A tokenizer as GGUF metadata holds it (`tokenizer.ggml.*`).
#[derive(Debug, Clone)]
pub struct GgufVocab {
    /// One per id; unused ids are "[PADn]".
    pub tokens: Vec<String>,
    /// llama.cpp's token types: 1 normal, 3 control, 4 user-defined, 5 unused.
    pub types: Vec<i32>,
    /// "a b" pairs, in merge order.
    pub merges: Vec<String>,
    /// llama.cpp's name for the pre-tokenizer split (`tokenizer.ggml.pre`).
    pub pre: &'static str,
    /// The BOS the tokenizer puts before every text, if it does.
    pub bos: Option<u32>,
}

/// llama.cpp's name of the split a tokenizer.json pre-tokenizer makes, if it is one it knows.
fn split_of(pre: &serde_json::Value) -> Option<&'static str> {
    if pre["type"] == "ByteLevel" && pre["use_regex"].as_bool().unwrap_or(true) {
        return Some("gpt-2");
    }
    let parts = pre["pretokenizers"].as_array()?;
    let [split, byte_level] = parts.as_slice() else {
        return None;
    };
    if split["type"] != "Split" || byte_level["type"] != "ByteLevel" {
        return None;
    }
    match split["pattern"]["Regex"].as_str()? {
        QWEN2_SPLIT => Some("qwen2"),
        LLAMA3_SPLIT => Some("llama-bpe"),
        _ => None,
    }
}

impl TextCodec {
    /// The byte-level BPE a GGUF file describes (`tokenizer.ggml.model` "gpt2"): its tokens (by
    /// id), their llama.cpp types (1 normal, 3 control, 4 user-defined, 5 unused, ...), its
    /// merges and the name of its pre-tokenizer split (`tokenizer.ggml.pre`), plus the BOS to
    /// put before every text when the file says `add_bos_token`. Control and user-defined
    /// tokens become added tokens (special for control ones), as in the tokenizer.json they were
    /// converted from; unused padding entries get no text.
    pub fn from_gguf_vocab(
        tokens: &[String],
        types: &[i64],
        merges: Vec<String>,
        pre: &str,
        bos: Option<u32>,
    ) -> Result<Self> {
        let split = match pre {
            "gpt-2" | "gpt2" | "default" => Split::Gpt2,
            "qwen2" => Split::Qwen2,
            "llama-bpe" | "llama3" => Split::Llama3,
            other => bail!(
                "its tokenizer splits text the way llama.cpp calls \"{other}\", which dlm-tui does \
                 not reproduce (it knows gpt-2, qwen2 and llama-bpe): put the model's \
                 tokenizer.json beside the .gguf and it is used instead"
            ),
        };
        let mut vocab = serde_json::Map::new();
        let mut added = Vec::new();
        for (id, token) in tokens.iter().enumerate() {
            match types.get(id).copied().unwrap_or(1) {
                3 => added.push((id as u64, token.clone(), true)),
                4 => added.push((id as u64, token.clone(), false)),
                5 => continue,
                _ => {}
            }
            vocab.insert(token.clone(), serde_json::Value::from(id as u64));
        }
        let bos = bos
            .map(|id| {
                tokens
                    .get(id as usize)
                    .map(|t| (id, t.clone()))
                    .ok_or_else(|| {
                        anyhow!("its BOS id {id} is not one of its {} tokens", tokens.len())
                    })
            })
            .transpose()?;
        let tokenizer =
            byte_level_bpe(serde_json::Value::Object(vocab), merges, &added, split, bos)
                .map_err(|e| anyhow!("its vocabulary does not make a tokenizer: {e}"))?;
        Ok(Self::new(tokenizer))
    }

    /// This tokenizer as a GGUF file describes one (the inverse of [`Self::from_gguf_vocab`]),
    /// its token list padded with unused entries to `rows` (llama.cpp wants one token per row of
    /// the embedding). Only byte-level BPEs whose split llama.cpp knows by name can be written.
    pub fn gguf_vocab(&self, rows: usize) -> Result<GgufVocab> {
        let json: serde_json::Value = serde_json::from_str(
            &self
                .tokenizer
                .to_string(false)
                .map_err(|e| anyhow!("the tokenizer does not serialise: {e}"))?,
        )?;
        let model = &json["model"];
        if model["type"] != "BPE" || json["decoder"]["type"] != "ByteLevel" {
            bail!(
                "only byte-level BPE tokenizers (LLaDA's, Dream's, dlm-tui's own) can be written \
                 to GGUF; this one is a {} model",
                model["type"].as_str().unwrap_or("different")
            );
        }
        let pre = split_of(&json["pre_tokenizer"]).ok_or_else(|| {
            anyhow!(
                "its pre-tokenizer is not one llama.cpp knows by name (GPT-2's, Qwen2's or Llama \
                 3's byte-level split)"
            )
        })?;
        let mut tokens: Vec<Option<(String, i32)>> = Vec::new();
        let mut put = |id: usize, token: String, kind: i32| {
            if tokens.len() <= id {
                tokens.resize(id + 1, None);
            }
            tokens[id] = Some((token, kind));
        };
        for (token, id) in model["vocab"].as_object().into_iter().flatten() {
            let id = id
                .as_u64()
                .ok_or_else(|| anyhow!("vocabulary id of {token:?}"))?;
            put(id as usize, token.clone(), 1);
        }
        for added in json["added_tokens"].as_array().into_iter().flatten() {
            let (Some(id), Some(content)) = (added["id"].as_u64(), added["content"].as_str())
            else {
                continue;
            };
            let kind = if added["special"].as_bool().unwrap_or(false) {
                3
            } else {
                4
            };
            put(id as usize, content.to_string(), kind);
        }
        if tokens.len() > rows {
            bail!(
                "the tokenizer has ids up to {} but the model only {rows} rows",
                tokens.len() - 1
            );
        }
        tokens.resize(rows, None);
        let (tokens, types) = tokens
            .into_iter()
            .enumerate()
            .map(|(id, t)| t.unwrap_or_else(|| (format!("[PAD{id}]"), 5)))
            .unzip();
        let merges = model["merges"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|m| match m {
                serde_json::Value::String(s) => Ok(s.clone()),
                serde_json::Value::Array(pair) => Ok(pair
                    .iter()
                    .filter_map(|p| p.as_str())
                    .collect::<Vec<_>>()
                    .join(" ")),
                other => Err(anyhow!("a merge is neither a string nor a pair: {other}")),
            })
            .collect::<Result<Vec<_>>>()?;
        let bos = json["post_processor"]["single"]
            .as_array()
            .and_then(|single| single.first())
            .and_then(|first| first["SpecialToken"]["id"].as_str())
            .and_then(|text| self.token_id(text));
        Ok(GgufVocab {
            tokens,
            types,
            merges,
            pre,
            bos,
        })
    }
}
