//! Structured output the way vLLM's clients ask for it, beside OpenAI's
//! `response_format`: `structured_outputs: {json | regex | choice | grammar
//! | json_object}` and the older `guided_json`, `guided_regex`,
//! `guided_choice` and `guided_grammar`. Grammars are Lark in llguidance's
//! dialect (vLLM's llguidance backend takes the same).

use std::sync::Arc;

use greenthread_core::grammar::OutputGrammar;
use serde::Deserialize;
use serde_json::Value;

use super::tools::{Enforceable, checked};
use crate::error::{ApiError, ApiResult};

/// The request fields that may ask for structured output, vLLM's way.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct GuidedFields {
    pub structured_outputs: Option<StructuredOutputs>,
    pub guided_json: Option<Value>,
    pub guided_regex: Option<String>,
    pub guided_choice: Option<Vec<String>>,
    pub guided_grammar: Option<String>,
}

/// `structured_outputs`: one of its fields.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct StructuredOutputs {
    pub json: Option<Value>,
    pub regex: Option<String>,
    pub choice: Option<Vec<String>>,
    pub grammar: Option<String>,
    pub json_object: Option<bool>,
}

/// The grammar these fields ask for, checked; `None` when they ask for none.
///
/// # Errors
/// [`ApiError::InvalidParam`] naming the field: more than one asked for,
/// or a grammar that cannot be enforced.
pub fn grammar(fields: &GuidedFields, enforceable: Enforceable<'_>) -> ApiResult<Option<Arc<OutputGrammar>>> {
    let s = fields.structured_outputs.clone().unwrap_or_default();
    let mut asked: Vec<(&str, Result<OutputGrammar, String>)> = [
        s.json.as_ref().map(|j| ("structured_outputs.json", json(j))),
        s.regex.as_ref().map(|r| ("structured_outputs.regex", built(OutputGrammar::regex(r)))),
        s.choice.as_ref().map(|c| ("structured_outputs.choice", choice(c))),
        s.grammar.as_ref().map(|g| ("structured_outputs.grammar", built(OutputGrammar::lark(g)))),
        s.json_object.filter(|&o| o).map(|_| ("structured_outputs.json_object", Ok(OutputGrammar::json_object()))),
        fields.guided_json.as_ref().map(|j| ("guided_json", json(j))),
        fields.guided_regex.as_ref().map(|r| ("guided_regex", built(OutputGrammar::regex(r)))),
        fields.guided_choice.as_ref().map(|c| ("guided_choice", choice(c))),
        fields.guided_grammar.as_ref().map(|g| ("guided_grammar", built(OutputGrammar::lark(g)))),
    ]
    .into_iter()
    .flatten()
    .collect();
    if let [(param, _), (other, _), ..] = asked.as_slice() {
        return Err(ApiError::invalid(*param, format!("ask for one structured output, not {param} and {other}")));
    }
    let Some((param, built)) = asked.pop() else { return Ok(None) };
    let grammar = built.map_err(|message| ApiError::invalid(param, message))?;
    checked(&grammar, param, enforceable)?;
    Ok(Some(Arc::new(grammar)))
}

fn json(schema: &Value) -> Result<OutputGrammar, String> {
    // A schema may come as its JSON text, as some clients send it.
    let parsed;
    let schema = match schema {
        Value::String(text) => {
            parsed = serde_json::from_str::<Value>(text).map_err(|e| e.to_string())?;
            &parsed
        }
        other => other,
    };
    OutputGrammar::json_schema(schema).map_err(|e| e.to_string())
}

fn built(grammar: Result<OutputGrammar, greenthread_core::grammar::SchemaError>) -> Result<OutputGrammar, String> {
    grammar.map_err(|e| e.message)
}

fn choice(options: &[String]) -> Result<OutputGrammar, String> {
    OutputGrammar::choice(options).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use greenthread_node_runtime::constraint;
    use serde_json::json;

    use super::*;

    fn grammar(fields: &GuidedFields) -> ApiResult<Option<Arc<OutputGrammar>>> {
        super::grammar(fields, &constraint::check)
    }

    fn fields(body: Value) -> GuidedFields {
        serde_json::from_value(body).unwrap()
    }

    fn param(r: ApiResult<Option<Arc<OutputGrammar>>>) -> String {
        match r {
            Err(ApiError::InvalidParam { param, .. }) => param,
            other => panic!("expected a parameter error, got {other:?}"),
        }
    }

    #[test]
    fn each_way_of_asking_gives_its_grammar() {
        assert!(grammar(&fields(json!({}))).unwrap().is_none());
        let rx = grammar(&fields(json!({"guided_regex": "[0-9]+"}))).unwrap().unwrap();
        assert_eq!(*rx, OutputGrammar::Regex("[0-9]+".into()));
        let so = grammar(&fields(json!({"structured_outputs": {"choice": ["yes", "no"]}}))).unwrap().unwrap();
        assert_eq!(*so, OutputGrammar::choice(&["yes".into(), "no".into()]).unwrap());
        assert!(grammar(&fields(json!({"guided_json": "{\"type\": \"integer\"}"}))).unwrap().is_some());
        let lark = json!({"structured_outputs": {"grammar": "start: \"a\" b\nb: /[0-9]+/"}});
        assert!(grammar(&fields(lark)).unwrap().is_some());
    }

    #[test]
    fn two_asks_or_a_broken_grammar_are_refused_by_name() {
        assert_eq!(param(grammar(&fields(json!({"guided_regex": "a", "guided_choice": ["b"]})))), "guided_regex");
        assert_eq!(param(grammar(&fields(json!({"guided_regex": "(unclosed"})))), "guided_regex");
        assert_eq!(
            param(grammar(&fields(json!({"structured_outputs": {"grammar": "start: missing"}})))),
            "structured_outputs.grammar"
        );
        assert_eq!(param(grammar(&fields(json!({"guided_choice": []})))), "guided_choice");
        let long = "a".repeat(20_000);
        assert_eq!(param(grammar(&fields(json!({"guided_regex": long})))), "guided_regex");
    }
}
