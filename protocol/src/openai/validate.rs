//! From OpenAI request bodies to validated requests: every range and
//! combination is checked here, once, and inner layers trust the result.

use std::sync::Arc;

use greenthread_core::grammar::OutputGrammar;
use greenthread_core::{ChatMessage, Role, SamplingParams, SamplingRequest, ToolCall, ToolCallFunction};
use serde_json::Value;

use super::tools::{self, Enforceable, ValidOutput};
use super::types::{
    ChatCompletionRequest, ChatMessageIn, CompletionRequest, MessageContent, PromptField, SamplingFields, StopField,
};
use crate::error::{ApiError, ApiResult};

/// OpenAI's limit on stop sequences.
const MAX_STOP_SEQUENCES: usize = 4;
/// Longest stop sequence, in bytes. Output is held back while it could
/// still grow into a stop sequence, so a long one delays streaming and costs
/// a comparison per token; real stop strings are a few words at most.
const MAX_STOP_BYTES: usize = 256;
/// The completions API's default `max_tokens`, as OpenAI documents it.
const COMPLETIONS_DEFAULT_MAX_TOKENS: u32 = 16;

/// How to generate, shared by chat and completions.
#[derive(Debug, Clone)]
pub struct ValidGeneration {
    pub sampling: SamplingParams,
    /// `None`: until the model stops or the context is full.
    pub max_tokens: Option<u32>,
    pub stop: Vec<String>,
    pub n: u32,
    pub stream: bool,
    pub include_usage: bool,
    /// Usage on every streamed chunk.
    pub continuous_usage: bool,
    /// What the output must match (structured output, forced tool calls).
    pub grammar: Option<Arc<OutputGrammar>>,
    /// Each token's log-probability, with this many alternatives.
    pub logprobs: Option<u8>,
}

impl ValidGeneration {
    /// Sampling of choice `index`: with a seed, each choice gets its own
    /// stream, so `n` seeded choices differ but repeat across requests.
    pub fn sampling_for_choice(&self, index: u32) -> SamplingParams {
        let mut s = self.sampling.clone();
        s.seed = s.seed.map(|seed| seed.wrapping_add(u64::from(index)));
        s
    }
}

#[derive(Debug, Clone)]
pub struct ValidChat {
    pub messages: Vec<ChatMessage>,
    pub output: ValidOutput,
    pub generation: ValidGeneration,
}

#[derive(Debug, Clone)]
pub enum ValidPrompt {
    Text(String),
    Tokens(Vec<u32>),
}

#[derive(Debug, Clone)]
pub struct ValidCompletion {
    pub prompts: Vec<ValidPrompt>,
    pub echo: bool,
    /// The code after the gap a fill-in-the-middle prompt fills.
    pub suffix: Option<String>,
    pub generation: ValidGeneration,
}

/// What validation needs from the server: its limits, and whether the engine
/// can enforce a grammar.
#[derive(Clone, Copy)]
pub struct Rules<'a> {
    /// Most choices (`n`, or prompts × `n`) one request may ask for.
    pub max_choices: u32,
    pub enforceable: Enforceable<'a>,
}

fn generation(fields: &SamplingFields, max_tokens: Option<u32>, limits: &Rules<'_>) -> ApiResult<ValidGeneration> {
    let sampling = SamplingRequest {
        temperature: fields.temperature,
        top_p: fields.top_p,
        top_k: fields.top_k,
        min_p: fields.min_p,
        presence_penalty: fields.presence_penalty,
        frequency_penalty: fields.frequency_penalty,
        repetition_penalty: fields.repetition_penalty,
        seed: fields.seed,
        logit_bias: fields.logit_bias.iter().flatten().map(|(k, v)| (k.clone(), *v)).collect(),
    }
    .validate()
    .map_err(|e| ApiError::invalid(e.param, e.message))?;
    if max_tokens == Some(0) {
        return Err(ApiError::invalid("max_tokens", "max_tokens must be at least 1"));
    }
    let stop = match &fields.stop {
        None => Vec::new(),
        Some(StopField::One(s)) => vec![s.clone()],
        Some(StopField::Many(v)) => v.clone(),
    };
    if stop.len() > MAX_STOP_SEQUENCES {
        return Err(ApiError::invalid("stop", format!("At most {MAX_STOP_SEQUENCES} stop sequences are allowed")));
    }
    if stop.iter().any(String::is_empty) {
        return Err(ApiError::invalid("stop", "Stop sequences must not be empty"));
    }
    if stop.iter().any(|s| s.len() > MAX_STOP_BYTES) {
        return Err(ApiError::invalid("stop", format!("A stop sequence may be at most {MAX_STOP_BYTES} bytes long")));
    }
    let n = fields.n.unwrap_or(1);
    if n == 0 || n > limits.max_choices {
        return Err(ApiError::invalid("n", format!("n must be between 1 and {}", limits.max_choices)));
    }
    let stream = fields.stream.unwrap_or(false);
    if fields.stream_options.is_some() && !stream {
        return Err(ApiError::invalid("stream_options", "stream_options is only allowed when stream is true"));
    }
    Ok(ValidGeneration {
        sampling,
        max_tokens,
        stop,
        n,
        stream,
        include_usage: fields.stream_options.as_ref().is_some_and(|o| o.include_usage),
        continuous_usage: fields.stream_options.as_ref().is_some_and(|o| o.continuous_usage_stats),
        grammar: None,
        logprobs: None,
    })
}

/// Most alternatives reported per token (`top_logprobs`, completions' `logprobs`).
pub const MAX_TOP_LOGPROBS: u32 = 20;

fn top_logprobs(param: &'static str, top: u32) -> ApiResult<u8> {
    u8::try_from(top)
        .ok()
        .filter(|&n| u32::from(n) <= MAX_TOP_LOGPROBS)
        .ok_or_else(|| ApiError::invalid(param, format!("{param} must be between 0 and {MAX_TOP_LOGPROBS}")))
}

/// Validates a chat completion request.
///
/// # Errors
/// [`ApiError::InvalidParam`] or [`ApiError::Unsupported`] naming the field.
pub fn chat(req: ChatCompletionRequest, limits: &Rules<'_>) -> ApiResult<ValidChat> {
    if req.messages.is_empty() {
        return Err(ApiError::invalid("messages", "messages must contain at least one message"));
    }
    if req.max_tokens.is_some() && req.max_completion_tokens.is_some() {
        return Err(ApiError::invalid("max_tokens", "Set max_tokens or max_completion_tokens, not both"));
    }
    let max_tokens = req.max_completion_tokens.or(req.max_tokens);
    let mut generation = generation(&req.sampling(), max_tokens, limits)?;
    generation.logprobs = match (req.logprobs, req.top_logprobs) {
        (Some(true), top) => Some(top_logprobs("top_logprobs", top.unwrap_or(0))?),
        (_, Some(top)) if top > 0 => {
            return Err(ApiError::invalid("top_logprobs", "top_logprobs requires logprobs to be true"));
        }
        _ => None,
    };
    let guided = super::guided::grammar(&req.guided, limits.enforceable)?;
    let output = tools::output(
        req.tools,
        req.tool_choice.as_ref(),
        req.parallel_tool_calls,
        req.response_format.as_ref(),
        limits.enforceable,
    )?;
    if guided.is_some() && (output.grammar.is_some() || output.callable.is_some()) {
        return Err(ApiError::invalid(
            "structured_outputs",
            "vLLM's structured outputs cannot be combined with response_format or tools",
        ));
    }
    generation.grammar = guided.or_else(|| output.grammar.clone());
    let messages = req.messages.into_iter().enumerate().map(|(i, m)| message(i, m)).collect::<ApiResult<Vec<_>>>()?;
    Ok(ValidChat { messages, output, generation })
}

fn message(i: usize, m: ChatMessageIn) -> ApiResult<ChatMessage> {
    let at = |field: &str| format!("messages[{i}].{field}");
    let role = Role::parse(&m.role).ok_or_else(|| {
        ApiError::invalid(
            at("role"),
            format!("Invalid role {:?}; expected system, developer, user, assistant or tool", m.role),
        )
    })?;
    let content = match m.content {
        None => None,
        Some(MessageContent::Text(t)) => Some(t),
        Some(MessageContent::Parts(parts)) => {
            let mut text = String::new();
            for (j, part) in parts.into_iter().enumerate() {
                match (part.kind.as_str(), part.text) {
                    ("text", Some(t)) => text.push_str(&t),
                    ("text", None) => {
                        return Err(ApiError::invalid(at(&format!("content[{j}].text")), "missing text"));
                    }
                    (other, _) => {
                        return Err(ApiError::invalid(
                            at(&format!("content[{j}].type")),
                            format!("content parts of type {other:?} are not supported by this model"),
                        ));
                    }
                }
            }
            Some(text)
        }
    };
    let tool_calls = m
        .tool_calls
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(j, call)| {
            let arguments: Value = serde_json::from_str(&call.function.arguments).map_err(|e| {
                ApiError::invalid(at(&format!("tool_calls[{j}].function.arguments")), format!("not valid JSON: {e}"))
            })?;
            Ok(ToolCall {
                id: call.id.unwrap_or_default(),
                kind: "function",
                function: ToolCallFunction { name: call.function.name, arguments },
            })
        })
        .collect::<ApiResult<Vec<_>>>()?;
    if role != Role::Assistant && !tool_calls.is_empty() {
        return Err(ApiError::invalid(at("tool_calls"), "only assistant messages may carry tool_calls"));
    }
    if content.is_none() && tool_calls.is_empty() {
        return Err(ApiError::invalid(at("content"), "content is required"));
    }
    Ok(ChatMessage { role, content, name: m.name, tool_calls, tool_call_id: m.tool_call_id })
}

/// Validates a (legacy) completion request.
///
/// # Errors
/// [`ApiError::InvalidParam`] or [`ApiError::Unsupported`] naming the field.
pub fn completion(req: CompletionRequest, limits: &Rules<'_>) -> ApiResult<ValidCompletion> {
    let logprobs = req.logprobs.map(|n| top_logprobs("logprobs", n)).transpose()?;
    if logprobs.is_some() && req.echo == Some(true) {
        return Err(ApiError::Unsupported {
            param: "echo",
            message: "echo with logprobs (the prompt's own log-probabilities) is not supported".into(),
        });
    }
    if req.best_of.is_some_and(|b| b > 1) {
        return Err(ApiError::Unsupported {
            param: "best_of",
            message: "best_of greater than 1 is not supported".into(),
        });
    }
    let fields = req.sampling();
    let prompts = match req.prompt {
        PromptField::Text(t) => vec![ValidPrompt::Text(t)],
        PromptField::Texts(ts) => ts.into_iter().map(ValidPrompt::Text).collect(),
        PromptField::Tokens(ids) => vec![ValidPrompt::Tokens(ids)],
        PromptField::TokenLists(lists) => lists.into_iter().map(ValidPrompt::Tokens).collect(),
    };
    if prompts.is_empty() {
        return Err(ApiError::invalid("prompt", "prompt must not be an empty list"));
    }
    let max_tokens = Some(req.max_tokens.unwrap_or(COMPLETIONS_DEFAULT_MAX_TOKENS));
    let mut generation = generation(&fields, max_tokens, limits)?;
    // Structured output as on chat; completions have no tools.
    let format = tools::output(None, None, None, req.response_format.as_ref(), limits.enforceable)?.grammar;
    let guided = super::guided::grammar(&req.guided, limits.enforceable)?;
    if guided.is_some() && format.is_some() {
        return Err(ApiError::invalid("structured_outputs", "ask for one structured output, not response_format too"));
    }
    generation.grammar = guided.or(format);
    generation.logprobs = logprobs;
    if prompts.len() as u64 * u64::from(generation.n) > u64::from(limits.max_choices) {
        return Err(ApiError::invalid(
            "prompt",
            format!("prompts × n may be at most {} choices per request", limits.max_choices),
        ));
    }
    let suffix = req.suffix.filter(|s| !s.is_empty());
    if suffix.is_some() && prompts.iter().any(|p| matches!(p, ValidPrompt::Tokens(_))) {
        return Err(ApiError::invalid("suffix", "suffix needs a text prompt: the code before the gap"));
    }
    Ok(ValidCompletion { prompts, echo: req.echo.unwrap_or(false), suffix, generation })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::parse;

    fn chat_req(body: &str) -> ApiResult<ValidChat> {
        let rules = Rules { max_choices: 8, enforceable: &greenthread_node_runtime::constraint::check };
        chat(parse(body.as_bytes())?, &rules)
    }

    fn param_of(r: ApiResult<ValidChat>) -> String {
        match r {
            Err(ApiError::InvalidParam { param, .. }) => param,
            Err(ApiError::Unsupported { param, .. }) => param.to_owned(),
            other => panic!("expected a parameter error, got {other:?}"),
        }
    }

    #[test]
    fn a_plain_chat_request_gets_defaults() {
        let v = chat_req(r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#).unwrap();
        assert_eq!(v.messages, [ChatMessage::text(Role::User, "hi")]);
        assert_eq!(v.generation.n, 1);
        assert!(!v.generation.stream);
        assert_eq!(v.generation.max_tokens, None);
    }

    #[test]
    fn content_parts_are_joined_and_the_developer_role_is_system() {
        let v = chat_req(
            r#"{"messages":[{"role":"developer","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}]}"#,
        )
        .unwrap();
        assert_eq!(v.messages, [ChatMessage::text(Role::System, "ab")]);
    }

    #[test]
    fn bad_fields_are_named() {
        assert_eq!(param_of(chat_req(r#"{"messages":[]}"#)), "messages");
        assert_eq!(param_of(chat_req(r#"{"messages":[{"role":"wizard","content":"x"}]}"#)), "messages[0].role");
        assert_eq!(param_of(chat_req(r#"{"messages":[{"role":"user"}]}"#)), "messages[0].content");
        assert_eq!(
            param_of(chat_req(r#"{"messages":[{"role":"user","content":"x"}],"temperature":3}"#)),
            "temperature"
        );
        assert_eq!(param_of(chat_req(r#"{"messages":[{"role":"user","content":"x"}],"n":99}"#)), "n");
        assert_eq!(param_of(chat_req(r#"{"messages":[{"role":"user","content":"x"}],"max_tokens":0}"#)), "max_tokens");
        assert_eq!(
            param_of(chat_req(r#"{"messages":[{"role":"user","content":"x"}],"stop":["a","b","c","d","e"]}"#)),
            "stop"
        );
        assert_eq!(
            param_of(chat_req(
                r#"{"messages":[{"role":"user","content":"x"}],"stream_options":{"include_usage":true}}"#
            )),
            "stream_options"
        );
        assert_eq!(
            param_of(chat_req(
                r#"{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}}]}]}"#
            )),
            "messages[0].content[0].type"
        );
    }

    #[test]
    fn logprobs_ask_for_alternatives_within_bounds() {
        let body = |extra: &str| format!(r#"{{"messages":[{{"role":"user","content":"x"}}],{extra}}}"#);
        assert_eq!(chat_req(&body(r#""logprobs":true"#)).unwrap().generation.logprobs, Some(0));
        assert_eq!(chat_req(&body(r#""logprobs":true,"top_logprobs":3"#)).unwrap().generation.logprobs, Some(3));
        assert_eq!(chat_req(&body(r#""logprobs":false"#)).unwrap().generation.logprobs, None);
        assert_eq!(param_of(chat_req(&body(r#""top_logprobs":2"#))), "top_logprobs");
        assert_eq!(param_of(chat_req(&body(r#""logprobs":true,"top_logprobs":21"#))), "top_logprobs");
        let rules = Rules { max_choices: 8, enforceable: &greenthread_node_runtime::constraint::check };
        let completion_req =
            |extra: &str| completion(parse(format!(r#"{{"prompt":"x",{extra}}}"#).as_bytes()).unwrap(), &rules);
        assert_eq!(completion_req(r#""logprobs":2"#).unwrap().generation.logprobs, Some(2));
        assert!(matches!(
            completion_req(r#""logprobs":1,"echo":true"#),
            Err(ApiError::Unsupported { param: "echo", .. })
        ));
    }

    #[test]
    fn max_completion_tokens_is_the_newer_name_for_max_tokens() {
        let v = chat_req(r#"{"messages":[{"role":"user","content":"x"}],"max_completion_tokens":5}"#).unwrap();
        assert_eq!(v.generation.max_tokens, Some(5));
    }

    #[test]
    fn assistant_tool_call_arguments_must_be_json() {
        let body = r#"{"messages":[{"role":"assistant","content":null,"tool_calls":[{"id":"1","type":"function","function":{"name":"f","arguments":"{oops"}}]}]}"#;
        assert_eq!(param_of(chat_req(body)), "messages[0].tool_calls[0].function.arguments");
    }

    #[test]
    fn completions_default_to_sixteen_tokens_and_accept_token_prompts() {
        let v = completion(
            parse(br#"{"model":"m","prompt":[1,2,3]}"#).unwrap(),
            &Rules { max_choices: 8, enforceable: &greenthread_node_runtime::constraint::check },
        )
        .unwrap();
        assert_eq!(v.generation.max_tokens, Some(16));
        assert!(matches!(&v.prompts[..], [ValidPrompt::Tokens(t)] if t == &[1, 2, 3]));
    }

    #[test]
    fn seeded_choices_get_distinct_streams() {
        let v = chat_req(r#"{"messages":[{"role":"user","content":"x"}],"seed":5,"n":2}"#).unwrap();
        assert_eq!(v.generation.sampling_for_choice(0).seed, Some(5));
        assert_eq!(v.generation.sampling_for_choice(1).seed, Some(6));
    }
}
