use greenthread_core::grammar::{OutputFormat, ToolDef, ToolMode};
use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;

/// Grammars over single bytes: text is checked byte by byte.
fn bytes() -> Grammars {
    let env = ApproximateTokEnv::single_byte_env();
    let eos = env.tok_trie().eos_token();
    Grammars::for_env(env, eos).unwrap()
}

/// Whether the whole of `text` matches `grammar`.
fn matches(grammar: &OutputGrammar, text: &str) -> bool {
    let mut c = bytes().constraint(grammar).unwrap();
    for &b in text.as_bytes() {
        match c.allowed() {
            Ok(mask) if mask.is_allowed(u32::from(b)) => {}
            _ => return false,
        }
        if c.advance(u32::from(b)).is_err() {
            return false;
        }
    }
    c.allowed().is_ok_and(|mask| mask.is_allowed(c.end_token()))
}

fn schema(s: Value) -> OutputGrammar {
    OutputGrammar::json_schema(&s).unwrap()
}

/// JSON as the grammars write it: one space after `,` and `:`.
fn spaced(value: &Value) -> String {
    match value {
        Value::Array(items) => format!("[{}]", items.iter().map(spaced).collect::<Vec<_>>().join(", ")),
        Value::Object(map) => format!(
            "{{{}}}",
            map.iter().map(|(k, v)| format!("{}: {}", json!(k), spaced(v))).collect::<Vec<_>>().join(", ")
        ),
        other => other.to_string(),
    }
}

#[test]
fn json_object_takes_objects_and_nothing_else() {
    let g = OutputGrammar::json_object();
    assert!(matches(&g, r#"{"a": [1, 2.5e-3, -0, true, null], "b": {"c": "dé\n"}}"#));
    assert!(matches(&g, "{}"));
    // Laid out as models write it, within a line break and 32 blanks a gap.
    assert!(matches(&g, "{\"a\":1,\"b\":[1,2]}"));
    assert!(matches(&g, "{\n  \"a\": 1,\n  \"b\": [\n    1\n  ]\n}"));
    let blanks = |n: usize| format!("{{{}\"a\": 1}}", " ".repeat(n));
    assert!(matches(&g, &blanks(32)));
    for bad in [
        "[1]",
        "\"s\"",
        "{\"a\": 01}",
        "{\"a\": }",
        "{\"a\" 1}",
        "{a: 1}",
        "{\"a\": 1,}",
        "{\n\n  \"a\": 1}",
        blanks(33).as_str(),
    ] {
        assert!(!matches(&g, bad), "{bad} must not match");
    }
}

#[test]
fn full_json_schema_is_enforced_bounds_patterns_and_formats_included() {
    let g = schema(json!({
        "type": "object",
        "properties": {
            "id": {"type": "string", "pattern": "^[A-Z]{2}-[0-9]{3}$"},
            "age": {"type": "integer", "minimum": 0, "maximum": 130},
            "day": {"type": "string", "format": "date"},
            "tags": {"type": "array", "items": {"type": "string", "maxLength": 3}, "minItems": 1, "maxItems": 2}
        },
        "required": ["id", "age", "day", "tags"],
        "additionalProperties": false
    }));
    assert!(matches(&g, r#"{"id": "AB-123", "age": 36, "day": "2026-12-06", "tags": ["a"]}"#));
    for bad in [
        r#"{"id": "ab-123", "age": 36, "day": "2026-12-06", "tags": ["a"]}"#,
        r#"{"id": "AB-123", "age": 131, "day": "2026-12-06", "tags": ["a"]}"#,
        r#"{"id": "AB-123", "age": 36, "day": "yesterday", "tags": ["a"]}"#,
        r#"{"id": "AB-123", "age": 36, "day": "2026-12-06", "tags": []}"#,
        r#"{"id": "AB-123", "age": 36, "day": "2026-12-06", "tags": ["long"]}"#,
        r#"{"id": "AB-123", "age": 36, "day": "2026-12-06"}"#,
    ] {
        assert!(!matches(&g, bad), "{bad} must not match");
    }
}

#[test]
fn enums_unions_and_recursive_references() {
    let g = schema(json!({"anyOf": [{"enum": ["x", 1]}, {"type": "null"}]}));
    assert!(matches(&g, "\"x\"") && matches(&g, "1") && matches(&g, "null") && !matches(&g, "2"));
    let tree = json!({"$defs": {"node": {"type": "object", "properties": {
        "children": {"type": "array", "items": {"$ref": "#/$defs/node"}}}, "required": ["children"],
        "additionalProperties": false}}, "$ref": "#/$defs/node"});
    assert!(matches(&schema(tree), r#"{"children": [{"children": []}]}"#));
}

#[test]
fn regexes_and_choices_match_whole_outputs() {
    let rx = OutputGrammar::Regex("[0-9]{3}-[a-z]+".into());
    assert!(matches(&rx, "123-abc") && !matches(&rx, "12-abc") && !matches(&rx, "123-abc!"));
    let choice = OutputGrammar::choice(&["yes".into(), "no".into()]).unwrap();
    assert!(matches(&choice, "yes") && matches(&choice, "no") && !matches(&choice, "maybe"));
}

fn weather() -> Vec<ToolDef> {
    vec![
        ToolDef {
            name: "get_weather".into(),
            parameters: json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}),
        },
        ToolDef { name: "get_time".into(), parameters: json!({"type": "object", "properties": {}}) },
    ]
}

#[test]
fn a_forced_tool_call_is_hermes_markup_around_the_tools_arguments() {
    let one = ToolMode::Required { parallel: false };
    let g = OutputGrammar::for_output(&OutputFormat::Text, Some((&weather(), &one))).unwrap().unwrap();
    assert!(matches(
        &g,
        "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>"
    ));
    assert!(matches(&g, "<tool_call>\n{\"name\": \"get_time\", \"arguments\": {}}\n</tool_call>"));
    assert!(!matches(&g, "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {}}\n</tool_call>"));
    assert!(!matches(&g, "Sure!"));
    let two = "<tool_call>\n{\"name\": \"get_time\", \"arguments\": {}}\n</tool_call>\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>";
    assert!(!matches(&g, two), "parallel_tool_calls: false allows one call");
    let many = ToolMode::Required { parallel: true };
    let parallel = OutputGrammar::for_output(&OutputFormat::Text, Some((&weather(), &many))).unwrap().unwrap();
    assert!(matches(&parallel, two), "parallel calls, one after another");
    assert!(matches(&parallel, "<tool_call>\n{\"name\": \"get_time\", \"arguments\": {}}\n</tool_call>"));
    let named = ToolMode::Named("get_time".into());
    let g = OutputGrammar::for_output(&OutputFormat::Text, Some((&weather(), &named))).unwrap().unwrap();
    assert!(!matches(
        &g,
        "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>"
    ));
    let both =
        OutputGrammar::for_output(&OutputFormat::JsonObject, Some((&weather(), &ToolMode::Auto))).unwrap().unwrap();
    assert!(matches(&both, r#"{"answer": 42}"#));
    assert!(matches(&both, "<tool_call>\n{\"name\": \"get_time\", \"arguments\": {}}\n</tool_call>"));
}

#[test]
fn what_cannot_be_enforced_is_refused_with_a_reason() {
    for impossible in [
        json!({"type": "array", "minItems": 5, "maxItems": 2}),
        json!({"type": "string", "minLength": 5, "maxLength": 2}),
        json!({"$ref": "#"}),
        json!({"type": "integer", "minimum": 5, "maximum": 2}),
    ] {
        let refused = check(&schema(impossible.clone()));
        assert!(refused.is_err(), "{impossible} must be refused");
    }
    assert!(check(&schema(json!({"type": "object", "properties": {"a": {"type": "string"}}}))).is_ok());
    assert!(check(&OutputGrammar::Lark("start: nope".into())).is_err(), "an undefined rule");
    let unknown = check(&schema(json!({"type": "array", "uniqueItems": true}))).unwrap_err();
    assert!(unknown.contains("uniqueItems") && !unknown.contains('\n') && !unknown.contains("x-guidance"), "{unknown}");
    let remote = check(&schema(json!({"$ref": "https://example.com/s.json"}))).unwrap_err();
    assert!(remote.contains("does not fetch"), "remote references are never fetched: {remote}");
    assert!(OutputGrammar::lark(&"a".repeat(20_000)).is_err(), "grammars given as text are bounded");
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i32>().prop_map(|n| json!(n)),
        "[a-zA-Z0-9 é]{0,8}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map("[a-z]{1,5}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn every_object_matches_json_object(value in json_value()) {
        let object = json!({"v": value});
        prop_assert!(matches(&OutputGrammar::json_object(), &spaced(&object)), "{}", spaced(&object));
    }
}
