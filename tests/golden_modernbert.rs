//! Golden tests for ModernBERT masked LMs (the architecture of dLLM's ModernBERT chat DLMs),
//! against tiny models built by transformers' `ModernBertForMaskedLM`
//! (tests/fixtures/make_modernbert_fixtures.py): logits within 1e-4, with sliding-window layers
//! that matter on these canvases, and LLaDA's `generate.py` on them token for token.

mod common;

use common::{assert_generate_case, assert_logits_case, fixtures, golden};

use dlm_tui::model::loader::{load_dir, Precision};

#[test]
fn modernbert_folders_load_unshifted_with_the_tokenizers_mask() {
    for name in ["modernbert-tiny-a", "modernbert-tiny-b"] {
        let loaded = load_dir(&fixtures().join(name), Precision::F32, &common::device()).unwrap();
        let info = loaded.model.info();
        assert_eq!(info.family, "modernbert");
        assert!(!info.shift_logits);
        assert_eq!(info.mask_id, loaded.codec.token_id("<|mask|>").unwrap());
    }
}

#[test]
fn logits_match_transformers_modernbert_within_1e_4() {
    let cases = golden("modernbert_logits.json");
    assert_eq!(cases.len(), 4);
    cases.iter().for_each(assert_logits_case);
}

#[test]
fn generate_matches_llada_generate_py_on_modernbert() {
    for case in golden("modernbert_generate.json") {
        assert_generate_case(&case, |_, _| {});
    }
}
