//! Training the byte-level BPE tokenizer of the default model.

use anyhow::{anyhow, Result};
use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
use tokenizers::models::TrainerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, Tokenizer};

use crate::text::TextCodec;

/// End-of-text and mask tokens of the default model (the same strings as LLaDA's).
pub const EOS_TOKEN: &str = "<|endoftext|>";
pub const MASK_TOKEN: &str = "<|mdm_mask|>";

/// A byte-level BPE with `vocab_size` entries trained on `texts`; ids 0 and 1 are EOS and mask.
pub fn train_bpe(texts: &[String], vocab_size: usize) -> Result<TextCodec> {
    let mut tokenizer = Tokenizer::new(BPE::default());
    tokenizer.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
    tokenizer.with_decoder(Some(ByteLevel::default()));
    let mut trainer: TrainerWrapper = BpeTrainerBuilder::new()
        .vocab_size(vocab_size)
        .min_frequency(2)
        .show_progress(false)
        .special_tokens(vec![
            AddedToken::from(EOS_TOKEN, true),
            AddedToken::from(MASK_TOKEN, true),
        ])
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .build()
        .into();
    tokenizer
        .train(&mut trainer, texts.iter())
        .map_err(|e| anyhow!("training the tokenizer: {e}"))?;
    let json = tokenizer
        .to_string(false)
        .map_err(|e| anyhow!("serialising the tokenizer: {e}"))?;
    TextCodec::from_bytes(json.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trained_tokenizer_round_trips_and_has_special_ids() {
        let texts: Vec<String> = (0..50)
            .map(|i| format!("Once upon a time, a cat named Tom {i} found a red ball.\n\nThe end."))
            .collect();
        let codec = train_bpe(&texts, 300).unwrap();
        let tok = codec.tokenizer();
        assert_eq!(tok.token_to_id(EOS_TOKEN), Some(0));
        assert_eq!(tok.token_to_id(MASK_TOKEN), Some(1));
        for text in [
            "Once upon a time, Tom found a ball.",
            "Zebra café ünïcode 😀\n\nok",
        ] {
            let ids = codec.encode(text, false).unwrap();
            assert_eq!(codec.decode(&ids, false), text);
        }
        // Merges were learned: a frequent word is one token.
        assert_eq!(codec.encode(" upon", false).unwrap().len(), 1);
    }
}
