//! Responses API request bodies. Fields the API defines that GreenThread
//! has no use for (`reasoning`, `include`, `truncation`, `service_tier`, …)
//! are not declared, so they are accepted and ignored.

use serde::Deserialize;
use serde_json::Value;

/// `text`: how the answer's text is shaped.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct TextConfig {
    /// `{"type": "text" | "json_object" | "json_schema", "name", "schema", "strict"}`.
    pub format: Option<Value>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ResponsesRequest {
    /// Required on the unified route; the per-model route takes it from the URL.
    pub model: Option<String>,
    /// A string (one user message) or a list of items.
    pub input: Option<Value>,
    /// A system message ahead of the input, not carried into continuations.
    pub instructions: Option<String>,
    pub tools: Option<Vec<Value>>,
    pub tool_choice: Option<Value>,
    pub parallel_tool_calls: Option<bool>,
    pub text: Option<TextConfig>,
    pub max_output_tokens: Option<u32>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub stream: Option<bool>,
    /// Whether the response is kept for `GET` and continuations (default true).
    pub store: Option<bool>,
    pub previous_response_id: Option<String>,
    pub metadata: Option<Value>,
    pub user: Option<String>,
}

impl ResponsesRequest {
    /// Whether the answer is to be stored (the API's default is yes).
    pub fn stored(&self) -> bool {
        self.store != Some(false)
    }
}
