use std::sync::Arc;

use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;

fn schema(s: Value) -> Arc<Grammar> {
    Arc::new(Grammar::json_schema(&s).unwrap())
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i32>().prop_map(|n| json!(n)),
        (-1.0e6f64..1.0e6).prop_map(|f| json!(f)),
        "[a-zA-Z0-9 \"\\\\é\\n\u{1F600}]{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(5, 40, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            proptest::collection::btree_map("[a-z]{0,6}", inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

#[test]
fn json_object_takes_objects_compact_and_pretty_and_nothing_else() {
    let g = Arc::new(Grammar::json_object());
    assert!(g.matches(r#"{"a": [1, 2.5e-3, -0, true, null], "b": {"c": "d\u00e9\n"}}"#));
    assert!(g.matches("{\n  \"a\": 1\n}"));
    assert!(g.matches("{}"));
    for bad in ["[1]", "\"s\"", "{\"a\": 01}", "{\"a\": }", "{\"a\" 1}", "{a: 1}", "{\"a\": 1,}", "{\"a\": tru}"] {
        assert!(!g.matches(bad), "{bad} must not match");
    }
}

#[test]
fn an_unfinished_object_is_a_valid_prefix_but_not_complete() {
    let g = Arc::new(Grammar::json_object());
    let mut m = g.matcher();
    assert!(m.advance(br#"{"a": [1, "#));
    assert!(!m.is_complete());
    assert!(m.accepts(b"2"));
    assert!(!m.accepts(b"}"));
    assert!(m.advance(b"2]}"));
    assert!(m.is_complete());
    assert!(!m.accepts(b" "), "nothing may follow the closing brace");
}

#[test]
fn whitespace_runs_are_bounded() {
    let g = Arc::new(Grammar::json_object());
    let mut m = g.matcher();
    assert!(m.advance(b"{"));
    assert!(!m.accepts(b"  "), "one space at most");
    assert!(m.advance(b"\n"));
    assert!(m.advance(&[b' '; MAX_INDENT as usize]));
    assert!(!m.accepts(b" "), "indentation is bounded");
    assert!(m.advance(b"}"));
}

#[test]
fn declared_properties_are_written_in_order_with_their_types() {
    let g = schema(json!({
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"],
        "additionalProperties": false
    }));
    assert!(g.matches(r#"{"name": "Ada", "age": 36}"#));
    assert!(g.matches("{\n  \"name\": \"Ada\",\n  \"age\": -3\n}"));
    assert!(!g.matches(r#"{"age": 36, "name": "Ada"}"#), "order is the declared one");
    assert!(!g.matches(r#"{"name": "Ada"}"#), "every property is written");
    assert!(!g.matches(r#"{"name": "Ada", "age": 36.5}"#), "integer has no fraction");
    assert!(!g.matches(r#"{"name": 1, "age": 36}"#));
    assert!(!g.matches(r#"{"name": "Ada", "age": 36, "x": 1}"#));
}

#[test]
fn strings_hold_only_valid_utf8() {
    let g = schema(json!({"type": "string"}));
    let mut m = g.matcher();
    assert!(m.advance(b"\"caf"));
    assert!(!m.accepts(&[0xFF]), "never a UTF-8 byte");
    assert!(!m.accepts(&[0x80]), "a continuation without a lead");
    assert!(!m.accepts(&[0xC0, 0x80]), "overlong");
    assert!(!m.accepts(&[0xED, 0xA0, 0x80]), "a surrogate");
    assert!(m.accepts(&[0xC3]), "a lead byte may end a token");
    assert!(!m.accepts(&[0xC3, b'"']), "but the character must be finished before the quote");
    assert!(m.advance("é\"".as_bytes()) && m.is_complete());
}

#[test]
fn enums_consts_and_unions_are_literal_choices() {
    let g = schema(json!({"enum": ["red", "green", 3, null]}));
    for ok in [r#""red""#, r#""green""#, "3", "null"] {
        assert!(g.matches(ok), "{ok}");
    }
    assert!(!g.matches(r#""blue""#));
    let g = schema(json!({"anyOf": [{"type": "string"}, {"type": "null"}]}));
    assert!(g.matches(r#""x""#) && g.matches("null") && !g.matches("1"));
    let g = schema(json!({"type": ["integer", "boolean"]}));
    assert!(g.matches("7") && g.matches("false") && !g.matches("\"7\""));
    let g = schema(json!({"const": {"a": 1}}));
    assert!(g.matches(r#"{"a":1}"#) && !g.matches(r#"{"a":2}"#));
}

#[test]
fn lengths_and_item_counts_are_enforced() {
    let g = schema(json!({"type": "string", "minLength": 2, "maxLength": 3}));
    assert!(g.matches(r#""ab""#) && g.matches(r#""aé\n""#));
    assert!(!g.matches(r#""a""#) && !g.matches(r#""abcd""#));
    let g = schema(json!({"type": "array", "items": {"type": "boolean"}, "minItems": 1, "maxItems": 2}));
    assert!(g.matches("[true]") && g.matches("[true, false]"));
    assert!(!g.matches("[]") && !g.matches("[true,true,true]") && !g.matches("[1]"));
}

#[test]
fn references_resolve_and_may_recurse() {
    let g = schema(json!({
        "$defs": {"Node": {"type": "object", "properties": {
            "value": {"type": "integer"},
            "children": {"type": "array", "items": {"$ref": "#/$defs/Node"}}
        }}},
        "$ref": "#/$defs/Node"
    }));
    assert!(g.matches(r#"{"value": 1, "children": [{"value": 2, "children": []}]}"#));
    assert!(!g.matches(r#"{"value": 1, "children": [{"value": "x", "children": []}]}"#));
}

#[test]
fn what_cannot_be_enforced_is_refused_by_name() {
    let e = Grammar::json_schema(&json!({"type": "object", "properties": {"n": {"type": "integer", "minimum": 0}}}))
        .unwrap_err();
    assert_eq!(e.path, "#/properties/n");
    assert!(e.message.contains("minimum"), "{e}");
    let e = Grammar::json_schema(&json!({"$ref": "https://example.com/s.json"})).unwrap_err();
    assert!(e.message.contains("does not resolve"), "{e}");
    let e = Grammar::json_schema(&json!({"type": "object", "properties": {}, "required": ["x"]})).unwrap_err();
    assert!(e.message.contains("\"x\""), "{e}");
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
    let g =
        Arc::new(Grammar::for_output(&OutputFormat::Text, Some((&weather(), &ToolMode::Required))).unwrap().unwrap());
    assert!(g.matches("<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>"));
    assert!(g.matches("<tool_call>\n{\"name\": \"get_time\", \"arguments\": {}}\n</tool_call>"));
    assert!(!g.matches("<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {}}\n</tool_call>"));
    assert!(!g.matches("Sure!"));
    let named = ToolMode::Named("get_time".into());
    let g = Arc::new(Grammar::for_output(&OutputFormat::Text, Some((&weather(), &named))).unwrap().unwrap());
    assert!(!g.matches("<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>"));
}

#[test]
fn auto_tools_with_free_text_need_no_grammar_but_with_json_offer_both() {
    assert_eq!(Grammar::for_output(&OutputFormat::Text, Some((&weather(), &ToolMode::Auto))).unwrap(), None);
    let g =
        Arc::new(Grammar::for_output(&OutputFormat::JsonObject, Some((&weather(), &ToolMode::Auto))).unwrap().unwrap());
    assert!(g.matches(r#"{"answer": 42}"#));
    assert!(g.matches("<tool_call>\n{\"name\": \"get_time\", \"arguments\": {}}\n</tool_call>"));
}

#[test]
fn parsing_output_separates_text_from_calls_and_keeps_broken_blocks_as_text() {
    let (text, calls) = HermesToolCalls::parse(
        "Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>",
        &names(),
    );
    assert_eq!(text, "Let me check.\n");
    assert_eq!(calls, vec![ParsedToolCall { name: "get_weather".into(), arguments: json!({"city": "Paris"}) }]);
    let broken = "<tool_call>\n{\"name\": oops}\n</tool_call>";
    assert_eq!(HermesToolCalls::parse(broken, &names()), (broken.to_owned(), vec![]));
    let unclosed = "<tool_call>\n{\"name\": \"x\"";
    assert_eq!(HermesToolCalls::parse(unclosed, &names()), (unclosed.to_owned(), vec![]));
}

fn names() -> Vec<String> {
    vec!["get_weather".into(), "f".into()]
}

#[test]
fn an_untagged_call_of_an_offered_tool_is_a_call_and_other_json_is_text() {
    let bare = " {\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n";
    let (text, calls) = HermesToolCalls::parse(bare, &names());
    assert_eq!((text.as_str(), calls.len()), ("", 1));
    let other = "{\"name\": \"delete_everything\", \"arguments\": {}}";
    assert_eq!(HermesToolCalls::parse(other, &names()), (other.to_owned(), vec![]));
    let mut s = ToolCallSplitter::new(names());
    assert_eq!(s.push(bare), vec![], "held back until the end decides");
    assert!(matches!(&s.finish()[..], [ToolSplit::Call(c)] if c.name == "get_weather"));
}

#[test]
fn the_splitter_holds_back_only_what_may_start_a_tag() {
    let mut s = ToolCallSplitter::new(names());
    assert_eq!(s.push("Hello <tool"), vec![ToolSplit::Text("Hello ".into())]);
    assert_eq!(s.push("box>"), vec![ToolSplit::Text("<toolbox>".into())]);
    assert_eq!(s.push("<tool_call>{\"name\":\"f\",\"arguments\":{}}"), vec![]);
    assert_eq!(
        s.push("</tool_call>"),
        vec![ToolSplit::Call(ParsedToolCall { name: "f".into(), arguments: json!({}) })]
    );
    assert_eq!(s.finish(), vec![]);
}

proptest! {
    #[test]
    fn every_json_object_matches_json_object(value in json_value()) {
        let object = json!({"v": value});
        let g = Arc::new(Grammar::json_object());
        prop_assert!(g.matches(&serde_json::to_string(&object).unwrap()));
    }

    #[test]
    fn everything_json_object_accepts_parses_as_an_object(text in r#"[{}\[\]",:0-9a-z \-.eE\\]{0,24}"#) {
        let g = Arc::new(Grammar::json_object());
        if g.matches(&text) {
            let parsed: Value = serde_json::from_str(&text).unwrap();
            prop_assert!(parsed.is_object());
        }
    }

    #[test]
    fn a_value_matches_the_schema_of_its_own_shape(value in json_value()) {
        let g = schema(shape_of(&value));
        prop_assert!(g.matches(&serde_json::to_string(&value).unwrap()));
    }

    #[test]
    fn streaming_splits_like_a_whole_parse(
        text in "(ab|<tool_call>|</tool_call>|\\{\"name\": \"f\", \"arguments\": \\{\\}\\}| |<tool)*",
        cut in proptest::collection::vec(0usize..64, 0..6),
    ) {
        let whole = HermesToolCalls::parse(&text, &names());
        let mut s = ToolCallSplitter::new(names());
        let mut parts = Vec::new();
        let mut at = 0;
        for c in cut {
            let end = (at + c).min(text.len());
            parts.extend(s.push(&text[at..end]));
            at = end;
        }
        parts.extend(s.push(&text[at..]));
        parts.extend(s.finish());
        let mut streamed = (String::new(), Vec::new());
        for p in parts {
            match p {
                ToolSplit::Text(t) => streamed.0.push_str(&t),
                ToolSplit::Call(c) => streamed.1.push(c),
            }
        }
        prop_assert_eq!(streamed, whole);
    }
}

/// A schema every value of `value`'s shape satisfies.
fn shape_of(value: &Value) -> Value {
    match value {
        Value::Null => json!({"type": "null"}),
        Value::Bool(_) => json!({"type": "boolean"}),
        Value::Number(n) if n.is_i64() || n.is_u64() => json!({"type": "integer"}),
        Value::Number(_) => json!({"type": "number"}),
        Value::String(_) => json!({"type": "string"}),
        Value::Array(items) if items.is_empty() => json!({"type": "array"}),
        Value::Array(items) => {
            json!({"type": "array", "items": {"anyOf": items.iter().map(shape_of).collect::<Vec<_>>()}})
        }
        Value::Object(members) => json!({
            "type": "object",
            "properties": members.iter().map(|(k, v)| (k.clone(), shape_of(v))).collect::<serde_json::Map<_, _>>(),
        }),
    }
}

#[test]
fn schemas_no_value_can_satisfy_are_refused() {
    let refused =
        |s: Value| Grammar::json_schema(&s).err().map(|e| e.message).unwrap_or_else(|| panic!("{s} must be refused"));
    assert!(refused(json!({"$ref": "#"})).contains("no value"));
    let looping = json!({"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"});
    assert!(refused(looping).contains("no value"));
    let left = json!({"anyOf": [{"$ref": "#"}, {"type": "string"}]});
    assert!(refused(left).contains("before any value"));
    assert!(
        refused(json!({"type": "array", "minItems": 5, "maxItems": 2}))
            .contains("minItems 5 is greater than maxItems 2")
    );
    assert!(refused(json!({"type": "string", "minLength": 5, "maxLength": 2})).contains("minLength 5"));
    let unfillable =
        json!({"type": "object", "properties": {"a": {"type": "array", "minItems": 1, "items": {"$ref": "#"}}}});
    assert!(refused(unfillable).contains("no value"), "every value needs another inside it, forever");
}

#[test]
fn recursion_through_written_bytes_is_fine() {
    let tree = json!({"$defs": {"node": {"type": "object", "properties": {
        "children": {"type": "array", "items": {"$ref": "#/$defs/node"}}}}}, "$ref": "#/$defs/node"});
    let g = schema(tree);
    assert!(g.matches(r#"{"children": [{"children": []}]}"#));
}

#[test]
fn schemas_past_the_size_and_depth_bounds_are_refused() {
    let mut deep = json!({"type": "string"});
    for _ in 0..MAX_SCHEMA_DEPTH {
        deep = json!({"type": "object", "properties": {"a": deep}});
    }
    let refusal = |s: &Value| Grammar::json_schema(s).err().map(|e| e.message).unwrap_or_default();
    assert!(refusal(&deep).contains("nest more than"));
    let properties: serde_json::Map<String, Value> =
        (0..10_000).map(|i| (format!("p{i}"), json!({"type": "integer"}))).collect();
    let wide = json!({"type": "object", "properties": properties});
    assert!(refusal(&wide).contains("too large"), "{}", refusal(&wide));
    let values: Vec<Value> = (0..=MAX_NODES).map(|i| json!(i)).collect();
    assert!(refusal(&json!({"enum": values})).contains("too many values"));
    let mut fine = json!({"type": "string"});
    for _ in 0..MAX_SCHEMA_DEPTH - 1 {
        fine = json!({"type": "object", "properties": {"a": fine}});
    }
    assert!(Grammar::json_schema(&fine).is_ok());
}
