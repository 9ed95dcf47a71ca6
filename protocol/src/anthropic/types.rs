//! Anthropic Messages request bodies. Fields the API defines that
//! GreenThread has no use for (`metadata`, `service_tier`, …) are not
//! declared, so they are accepted and ignored.

use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Clone, Deserialize)]
pub struct TextBlockIn {
    #[serde(rename = "type")]
    pub kind: String,
    pub text: Option<String>,
}

/// `system`: a string or text blocks.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum SystemField {
    Text(String),
    Blocks(Vec<TextBlockIn>),
}

/// A message's content: a string or content blocks.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum ContentField {
    Text(String),
    Blocks(Vec<ContentBlockIn>),
}

/// A content block of a message: `text`, `tool_use` (assistant) or
/// `tool_result` (user); the fields of each kind are checked where it is read.
#[derive(Debug, Clone, Deserialize)]
pub struct ContentBlockIn {
    #[serde(rename = "type")]
    pub kind: String,
    pub text: Option<String>,
    /// `tool_use`: the call's id.
    pub id: Option<String>,
    /// `tool_use`: the tool's name.
    pub name: Option<String>,
    /// `tool_use`: the arguments object.
    pub input: Option<Value>,
    /// `tool_result`: the call it answers.
    pub tool_use_id: Option<String>,
    /// `tool_result`: a string or text blocks.
    pub content: Option<Value>,
    /// `tool_result`: whether the tool failed.
    pub is_error: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct InputMessage {
    pub role: String,
    pub content: ContentField,
}

#[derive(Debug, Clone, Deserialize)]
pub struct MessagesRequest {
    /// Required on the unified route; the per-model route takes it from the URL.
    pub model: Option<String>,
    /// Required, as in Anthropic's API; checked with a clear error.
    pub max_tokens: Option<u32>,
    pub messages: Vec<InputMessage>,
    pub system: Option<SystemField>,
    pub stop_sequences: Option<Vec<String>>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub top_k: Option<i64>,
    pub stream: Option<bool>,
    pub tools: Option<Vec<Value>>,
    pub tool_choice: Option<Value>,
}

/// `POST /v1/messages/count_tokens`: a Messages request without `max_tokens`.
#[derive(Debug, Clone, Deserialize)]
pub struct CountTokensRequest {
    pub model: Option<String>,
    pub messages: Vec<InputMessage>,
    pub system: Option<SystemField>,
    pub tools: Option<Vec<Value>>,
}
