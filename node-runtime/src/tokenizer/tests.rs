use proptest::prelude::*;

use super::*;
use crate::fixtures::vocab::{bpe_vocab, spm_vocab};

fn bpe() -> Tokenizer {
    Tokenizer::new(bpe_vocab()).unwrap()
}

fn spm() -> Tokenizer {
    Tokenizer::new(spm_vocab()).unwrap()
}

fn texts(t: &Tokenizer, ids: &[u32]) -> Vec<String> {
    ids.iter().map(|&id| t.token_text(id).unwrap().to_owned()).collect()
}

#[test]
fn bpe_merges_follow_the_merge_list() {
    let t = bpe();
    assert_eq!(texts(&t, &t.encode("Hello world", false)), ["Hello", "Ġworld"]);
    assert_eq!(texts(&t, &t.encode(" the", false)), ["Ġthe"]);
    // No merge makes "xq": it stays two byte tokens.
    assert_eq!(texts(&t, &t.encode("xq", false)), ["x", "q"]);
}

#[test]
fn bpe_parses_chat_markup_only_when_asked() {
    let t = bpe();
    let ids = t.encode("<|im_start|>user\nHello<|im_end|>", true);
    assert_eq!(texts(&t, &ids), ["<|im_start|>", "u", "s", "er", "Ċ", "Hello", "<|im_end|>"]);
    let plain = t.encode("<|im_start|>", false);
    assert!(plain.len() > 1, "markup in user text must not become a control token");
}

#[test]
fn control_tokens_render_as_nothing_and_user_defined_as_text() {
    let t = bpe();
    let ids = t.encode("<tool_call>Hello<|im_end|>", true);
    assert_eq!(t.decode(&ids), "<tool_call>Hello");
    assert!(ids.last().is_some_and(|&id| t.is_end_of_generation(id)));
}

#[test]
fn an_echoed_prompt_keeps_its_control_markup() {
    let t = bpe();
    let prompt = "<|im_start|>user\nHello<|im_end|>";
    let ids = t.encode(prompt, true);
    assert_eq!(t.decode_with_markup(&ids), prompt);
    assert_eq!(t.decode(&ids), "user\nHello", "generated text leaves control tokens out");
}

#[test]
fn spm_merges_by_score_and_adds_bos() {
    let t = spm();
    let ids = t.encode("the world", false);
    assert_eq!(texts(&t, &ids), ["<bos>", "t", "he", "▁world"]);
    assert_eq!(t.decode(&ids), "the world");
}

#[test]
fn spm_falls_back_to_bytes_for_unknown_characters() {
    let t = spm();
    let ids = t.encode("é", false);
    assert_eq!(texts(&t, &ids), ["<bos>", "<0xC3>", "<0xA9>"]);
    assert_eq!(t.decode(&ids), "é");
}

#[test]
fn spm_turn_markers_are_control_tokens_and_end_of_turn_ends_generation() {
    let t = spm();
    let ids = t.encode("<start_of_turn>user\nhi<end_of_turn>", true);
    assert_eq!(t.token_text(ids[1]), Some("<start_of_turn>"));
    assert!(t.is_end_of_generation(*ids.last().unwrap()));
    assert_eq!(t.decode(&ids), "user\nhi");
}

#[test]
fn inconsistent_metadata_is_refused() {
    let mut spec = bpe_vocab();
    spec.token_types.pop();
    assert!(matches!(Tokenizer::new(spec), Err(TokenizerError::Inconsistent(_))));
    let mut spec = spm_vocab();
    spec.eos = Some(1 << 30);
    assert!(matches!(Tokenizer::new(spec), Err(TokenizerError::Inconsistent(_))));
    let spec = TokenizerSpec { model: "rwkv".into(), tokens: vec!["a".into()], ..Default::default() };
    assert!(matches!(Tokenizer::new(spec), Err(TokenizerError::UnsupportedModel(_))));
}

proptest! {
    #[test]
    fn bpe_decoding_inverts_encoding(text in "\\PC{0,64}") {
        let t = bpe();
        prop_assert_eq!(t.decode(&t.encode(&text, false)), text);
    }

    #[test]
    fn spm_decoding_inverts_encoding(text in "[^\u{2581}]{0,64}") {
        let t = spm();
        prop_assert_eq!(t.decode(&t.encode(&text, false)), text);
    }
}
