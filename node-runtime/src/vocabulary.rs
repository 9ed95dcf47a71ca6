//! What sampling and constrained decoding need to know of a model's
//! vocabulary, whatever tokenizer stands behind it.

/// The vocabulary as the sampler and the grammar engine see it.
pub trait Vocabulary {
    /// The bytes token `id` writes (empty for control tokens).
    fn piece(&self, id: u32) -> &[u8];
    /// Whether `id` ends the generation.
    fn ends_generation(&self, id: u32) -> bool;
    /// A token that ends the generation.
    fn end_token(&self) -> Option<u32>;
}
