//! Token log-probabilities as OpenAI writes them: chat's `logprobs.content`
//! (one entry per token, its bytes and its alternatives) and the legacy
//! completions' columns (`tokens`, `token_logprobs`, `top_logprobs`,
//! `text_offset`).

use greenthread_core::TokenLogprob;
use serde_json::{Map, Value, json};

fn entry(token: &greenthread_core::TokenText, logprob: f32) -> Value {
    json!({"token": token.text, "logprob": logprob, "bytes": token.bytes})
}

/// Chat's `logprobs` of a choice (or of one streamed chunk).
pub fn chat(tokens: &[TokenLogprob]) -> Value {
    let content: Vec<Value> = tokens
        .iter()
        .map(|t| {
            let mut e = entry(&t.token, t.logprob);
            e["top_logprobs"] = t.top.iter().map(|(alt, lp)| entry(alt, *lp)).collect();
            e
        })
        .collect();
    json!({"content": content, "refusal": null})
}

/// The completions API's `logprobs` of `tokens`, whose text starts at
/// character `offset` of the choice's text.
pub fn completion(tokens: &[TokenLogprob], offset: usize) -> Value {
    let mut at = offset;
    let mut offsets = Vec::with_capacity(tokens.len());
    for t in tokens {
        offsets.push(at);
        at += t.token.text.chars().count();
    }
    let top: Vec<Value> = tokens
        .iter()
        .map(|t| Value::Object(t.top.iter().map(|(alt, lp)| (alt.text.clone(), json!(lp))).collect::<Map<_, _>>()))
        .collect();
    json!({
        "tokens": tokens.iter().map(|t| t.token.text.as_str()).collect::<Vec<_>>(),
        "token_logprobs": tokens.iter().map(|t| t.logprob).collect::<Vec<_>>(),
        "top_logprobs": top,
        "text_offset": offsets,
    })
}

#[cfg(test)]
mod tests {
    use greenthread_core::TokenText;

    use super::*;

    fn token(text: &str, logprob: f32) -> TokenLogprob {
        TokenLogprob {
            token: TokenText::new(text.as_bytes()),
            logprob,
            top: vec![(TokenText::new(text.as_bytes()), logprob), (TokenText::new(b"x"), -3.0)],
        }
    }

    #[test]
    fn chat_and_completions_shapes() {
        let tokens = [token("Hé", -0.5), token("llo", -0.25)];
        let chat = chat(&tokens);
        assert_eq!(chat["content"][0]["token"], "Hé");
        assert_eq!(chat["content"][0]["bytes"], json!([72, 195, 169]));
        assert_eq!(chat["content"][1]["top_logprobs"][1], json!({"token": "x", "logprob": -3.0, "bytes": [120]}));
        let legacy = completion(&tokens, 4);
        assert_eq!(legacy["tokens"], json!(["Hé", "llo"]));
        assert_eq!(legacy["token_logprobs"], json!([-0.5, -0.25]));
        assert_eq!(legacy["text_offset"], json!([4, 6]));
        assert_eq!(legacy["top_logprobs"][0], json!({"Hé": -0.5, "x": -3.0}));
    }
}
