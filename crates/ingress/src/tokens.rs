//! Counting prompt tokens with a real BPE tokenizer (tiktoken's vocabularies, embedded in
//! the binary by `tiktoken-rs`, so this works offline): `o200k_base` for the GPT-4o / o-series
//! / GPT-4.1+ families, `cl100k_base` for everything else, where it is an estimate of the
//! backend's own tokenizer. Chat messages add OpenAI's documented overhead (3 tokens per
//! message, 3 for the reply).

use std::sync::OnceLock;
use tiktoken_rs::CoreBPE;

use crate::openai::PromptField;

/// Which vocabulary a model uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vocabulary {
    /// GPT-4o, o1/o3/o4, GPT-4.1, GPT-5.
    O200k,
    /// GPT-4, GPT-3.5 and the default for other models.
    Cl100k,
}

/// The vocabulary for a model name.
pub fn vocabulary(model: &str) -> Vocabulary {
    let m = model.to_ascii_lowercase();
    let m = m.rsplit('/').next().unwrap_or(&m);
    if [
        "gpt-4o",
        "gpt-4.1",
        "gpt-4.5",
        "gpt-5",
        "o1",
        "o3",
        "o4",
        "chatgpt-4o",
        "gpt-oss",
    ]
    .iter()
    .any(|p| m.starts_with(p))
    {
        Vocabulary::O200k
    } else {
        Vocabulary::Cl100k
    }
}

fn bpe(v: Vocabulary) -> Option<&'static CoreBPE> {
    static O200K: OnceLock<Option<CoreBPE>> = OnceLock::new();
    static CL100K: OnceLock<Option<CoreBPE>> = OnceLock::new();
    match v {
        Vocabulary::O200k => O200K.get_or_init(|| tiktoken_rs::o200k_base().ok()),
        Vocabulary::Cl100k => CL100K.get_or_init(|| tiktoken_rs::cl100k_base().ok()),
    }
    .as_ref()
}

/// Loads both vocabularies now (they take a moment), so the first request does not wait.
pub fn preload() {
    let _ = bpe(Vocabulary::O200k);
    let _ = bpe(Vocabulary::Cl100k);
}

/// Tokens in one text (4 characters a token if the vocabulary failed to load).
pub fn count(model: &str, text: &str) -> u64 {
    match bpe(vocabulary(model)) {
        Some(b) => b.encode_ordinary(text).len() as u64,
        None => (text.chars().count() as u64).div_ceil(4),
    }
}

/// Prompt tokens of a request: every prompt field plus the per-message overhead.
pub fn prompt_tokens(model: &str, prompts: &[PromptField]) -> u64 {
    let texts: u64 = prompts.iter().map(|p| count(model, &p.text)).sum();
    let chat = prompts
        .iter()
        .any(|p| p.role != "prompt" && p.role != "input");
    if chat {
        texts + 3 * prompts.len() as u64 + 3
    } else {
        texts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_with_the_right_vocabulary() {
        assert_eq!(vocabulary("gpt-4o-mini"), Vocabulary::O200k);
        assert_eq!(vocabulary("openai/gpt-oss-20b"), Vocabulary::O200k);
        assert_eq!(vocabulary("llama-3-8b"), Vocabulary::Cl100k);
        // Known tiktoken results.
        assert_eq!(count("gpt-4", "hello world"), 2);
        assert_eq!(count("gpt-4o", "tiktoken is great!"), 6);
    }

    #[test]
    fn chat_overhead() {
        let p = vec![PromptField {
            role: "user".into(),
            text: "hello world".into(),
        }];
        assert_eq!(prompt_tokens("gpt-4", &p), 2 + 3 + 3);
    }
}
