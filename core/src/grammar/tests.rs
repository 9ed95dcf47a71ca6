use serde_json::json;

use super::*;

#[test]
fn grammars_embed_their_schemas_with_compact_json() {
    let OutputGrammar::Lark(lark) = OutputGrammar::json_schema(&json!({"type": "integer"})).unwrap() else {
        panic!("a JSON schema is a Lark grammar")
    };
    assert!(lark.starts_with("start: answer\nanswer: %json {"), "{lark}");
    assert!(lark.contains("\"whitespace_flexible\":false"), "{lark}");
    assert_eq!(OutputGrammar::for_output(&OutputFormat::Text, None).unwrap(), None);
}

#[test]
fn schemas_that_are_not_schemas_or_nest_too_deep_are_refused() {
    assert!(OutputGrammar::json_schema(&json!(false)).unwrap_err().message.contains("matches nothing"));
    assert!(OutputGrammar::json_schema(&json!(3)).is_err());
    let mut deep = json!({"type": "string"});
    for _ in 0..40 {
        deep = json!({"type": "object", "properties": {"a": deep}});
    }
    assert!(OutputGrammar::json_schema(&deep).unwrap_err().message.contains("nests more than"));
    assert!(OutputGrammar::json_schema(&json!(true)).is_ok());
    let wide: serde_json::Map<String, Value> =
        (0..10_000).map(|i| (format!("p{i}"), json!({"type": "integer"}))).collect();
    let refused = OutputGrammar::json_schema(&json!({"type": "object", "properties": wide})).unwrap_err();
    assert!(refused.message.contains("too large"), "{refused}");
}

#[test]
fn objects_that_declare_properties_take_no_others_unless_told() {
    let closed = guided_schema(&json!({"type": "object", "properties": {
        "a": {"type": "object", "properties": {"b": {"type": "integer"}}},
        "c": {"type": "object", "properties": {}, "additionalProperties": true},
        "d": {"allOf": [{"properties": {"x": {}}}, {"properties": {"y": {}}}]}
    }}))
    .unwrap();
    assert_eq!(closed["additionalProperties"], false);
    assert_eq!(closed["properties"]["a"]["additionalProperties"], false, "nested objects too");
    assert_eq!(closed["properties"]["c"]["additionalProperties"], true, "what the schema says stands");
    assert!(closed["properties"]["d"]["allOf"][0].get("additionalProperties").is_none(), "allOf members stay open");
}

#[test]
fn choices_are_quoted_literals() {
    let OutputGrammar::Lark(lark) = OutputGrammar::choice(&["yes".into(), "a \"quoted\" no".into()]).unwrap() else {
        panic!()
    };
    assert_eq!(lark, "start: \"yes\" | \"a \\\"quoted\\\" no\"\n");
    assert!(OutputGrammar::choice(&[]).is_err());
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
fn tool_modes_choose_the_start_rule() {
    let lark = |format, mode: &ToolMode| match OutputGrammar::for_output(&format, Some((&weather(), mode))).unwrap() {
        Some(OutputGrammar::Lark(l)) => Some(l),
        _ => None,
    };
    assert_eq!(lark(OutputFormat::Text, &ToolMode::Auto), None, "free text with tools needs no grammar");
    let one = ToolMode::Required { parallel: false };
    assert!(lark(OutputFormat::Text, &one).unwrap().starts_with("start: tool_call\n"));
    let many = ToolMode::Required { parallel: true };
    assert!(lark(OutputFormat::Text, &many).unwrap().starts_with("start: tool_call (\"\\n\" tool_call)*\n"));
    assert!(lark(OutputFormat::JsonObject, &ToolMode::Auto).unwrap().starts_with("start: tool_call | answer\n"));
    let named = lark(OutputFormat::Text, &ToolMode::Named("get_time".into())).unwrap();
    assert!(named.contains("get_time") && !named.contains("get_weather"), "{named}");
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
    // Cut off by max_tokens: the partial call is dropped, not left as markup.
    let unclosed = "Checking.<tool_call>\n{\"name\": \"get_weather\", \"argu";
    assert_eq!(HermesToolCalls::parse(unclosed, &names()), ("Checking.".to_owned(), vec![]));
    let whole_but_unclosed = "<tool_call>\n{\"name\": \"f\", \"arguments\": {}}";
    assert_eq!(HermesToolCalls::parse(whole_but_unclosed, &names()).1.len(), 1);
}

#[test]
fn a_fenced_call_of_an_offered_tool_is_a_call_and_other_code_is_text() {
    let fenced = "Here you go:\n```json\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n```\nDone.";
    let (text, calls) = HermesToolCalls::parse(fenced, &names());
    assert_eq!(text, "Here you go:\n\nDone.");
    assert_eq!(calls, vec![ParsedToolCall { name: "get_weather".into(), arguments: json!({"city": "Paris"}) }]);
    let two =
        "```\n{\"name\": \"f\", \"arguments\": {}}\n```\n```json\n{\"name\": \"get_weather\", \"arguments\": {}}\n```";
    assert_eq!(HermesToolCalls::parse(two, &names()).1.len(), 2, "parallel calls, one fence each");
    let code = "Use this:\n```python\nprint({\"name\": 1})\n```";
    assert_eq!(HermesToolCalls::parse(code, &names()), (code.to_owned(), vec![]));
    let undeclared = "```json\n{\"name\": \"rm_rf\", \"arguments\": {}}\n```";
    assert_eq!(HermesToolCalls::parse(undeclared, &names()), (undeclared.to_owned(), vec![]));
    let unclosed = "Code:\n```rust\nfn main() {}";
    assert_eq!(HermesToolCalls::parse(unclosed, &names()), (unclosed.to_owned(), vec![]));
    let llama = "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}";
    assert_eq!(HermesToolCalls::parse(llama, &names()).1[0].arguments, json!({"city": "Paris"}));
    let array =
        "[{\"name\": \"f\", \"arguments\": {}}, {\"name\": \"get_weather\", \"arguments\": {\"city\": \"Rome\"}}]";
    assert_eq!(HermesToolCalls::parse(array, &names()).1.len(), 2, "a bare array of calls");
    let mistral = format!("[TOOL_CALLS] {array}");
    assert_eq!(HermesToolCalls::parse(&mistral, &names()), (String::new(), HermesToolCalls::parse(array, &names()).1));
    let cut = "Sure.[TOOL_CALLS] [{\"name\": \"f\", \"argum";
    assert_eq!(HermesToolCalls::parse(cut, &names()), ("Sure.".to_owned(), vec![]), "a cut call is dropped");
    let numbers = "[1, 2, 3]";
    assert_eq!(HermesToolCalls::parse(numbers, &names()), (numbers.to_owned(), vec![]));
    let after = "Here is the call:\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n{\"type\": 1}\n";
    let (text, calls) = HermesToolCalls::parse(after, &names());
    assert_eq!((text.as_str(), calls.len()), ("Here is the call:\n{\"type\": 1}\n", 1), "a call on a line of its own");
    let mut s = ToolCallSplitter::new(names());
    assert_eq!(s.push("Sure ``"), vec![ToolSplit::Text("Sure ".into())], "a fence may be starting");
    assert_eq!(s.push("`json\n{\"name\": \"f\", \"arguments\": {}}\n"), vec![]);
    assert!(matches!(&s.push("```")[..], [ToolSplit::Call(c)] if c.name == "f"));
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
fn a_bare_call_straight_after_a_closing_tag_is_a_call() {
    // Qwen2.5-Coder 0.5B at temperature 0.7 wrote this, the call again
    // between two tagged ones, without a newline before it.
    let call = "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}";
    let output =
        format!("Here is the response:\n<tool_call>\n{call}\n</tool_call>{call}\n<tool_call>\n{call}\n</tool_call>");
    let (text, calls) = HermesToolCalls::parse(&output, &names());
    assert_eq!((text.as_str(), calls.len()), ("Here is the response:\n", 3));
    let spaced = format!("<tool_call>{call}</tool_call> \n {call}");
    assert_eq!(HermesToolCalls::parse(&spaced, &names()).1.len(), 2, "whitespace between them");
    let not_a_call = format!("<tool_call>{call}</tool_call>{{\"type\": 1}}");
    assert_eq!(HermesToolCalls::parse(&not_a_call, &names()), ("{\"type\": 1}".to_owned(), vec![calls[0].clone()]));
    let after_text = format!("<tool_call>{call}</tool_call> Done. {call}");
    assert_eq!(HermesToolCalls::parse(&after_text, &names()).1.len(), 1, "text in between: not a line of its own");
    let mut s = ToolCallSplitter::new(names());
    let mut parts = s.push(&format!("Sure.<tool_call>{call}</tool_call>\n"));
    parts.extend(s.push("{\"name\": \"f\", "));
    parts.extend(s.push("\"arguments\": {}}"));
    parts.extend(s.finish());
    let names_called: Vec<&str> = parts
        .iter()
        .filter_map(|p| match p {
            ToolSplit::Call(c) => Some(c.name.as_str()),
            ToolSplit::Text(_) => None,
        })
        .collect();
    assert_eq!(names_called, ["get_weather", "f"], "streamed in pieces: {parts:?}");
}

#[test]
fn an_answer_that_opens_with_calls_is_its_calls() {
    let output = "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n\
                  {\"name\": \"get_weather_args\", \"type\": \"object\"}";
    let (text, calls) = HermesToolCalls::parse(output, &names());
    assert_eq!(calls, vec![ParsedToolCall { name: "get_weather".into(), arguments: json!({"city": "Paris"}) }]);
    assert_eq!(text, "", "a schema echoed after the call is dropped");
    let two = "{\"name\": \"f\", \"arguments\": {}}\n{\"name\": \"get_weather\", \"arguments\": {}} Done.\n\
               <tool_call>{\"name\": \"f\", \"arguments\": {\"x\": 1}}</tool_call>";
    let (text, calls) = HermesToolCalls::parse(two, &names());
    assert_eq!((text.as_str(), calls.len()), ("", 3));
    let mut s = ToolCallSplitter::new(names());
    assert_eq!(s.push(two), vec![]);
    assert_eq!(s.finish().len(), 3);
}

#[test]
fn each_familys_form_is_read_and_its_template_names_its_format() {
    let gemma = "Let me check.\n```tool_code\nget_weather(city=\"Paris\")\n```";
    let (text, calls) = HermesToolCalls::parse(gemma, &names());
    assert_eq!((text.as_str(), calls[0].arguments.clone()), ("Let me check.\n", json!({"city": "Paris"})));
    let llama = "<|python_tag|>{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Rome\"}}";
    assert_eq!(HermesToolCalls::parse(llama, &names()).1[0].arguments, json!({"city": "Rome"}));
    let mistral = "[TOOL_CALLS][{\"name\": \"f\", \"arguments\": {}}, {\"name\": \"nope\", \"arguments\": {}}]";
    assert!(HermesToolCalls::parse(mistral, &names()).1.is_empty(), "a call of an undeclared tool voids the list");
    for (template, format) in [
        ("{% if tools %}<tool_call>{% endif %}", Some(ToolCallFormat::Hermes)),
        ("{% if tools %}[AVAILABLE_TOOLS]{% endif %}[TOOL_CALLS]", Some(ToolCallFormat::Mistral)),
        ("{% if tools %}<|start_header_id|>ipython{% endif %}", Some(ToolCallFormat::Llama3)),
        ("{% for tool in tools %}{{ tool | tojson }}{% endfor %}", Some(ToolCallFormat::Json)),
        ("{{ messages[0].content }}", None),
    ] {
        assert_eq!(ToolCallFormat::of_template(template), format, "{template}");
    }
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

proptest::proptest! {
    #[test]
    fn the_splitter_streamed_in_any_pieces_splits_as_the_whole_parse(
        parts in proptest::collection::vec(proptest::sample::select(vec![
            "Hello ", "\n", "<tool_call>\n", "\n</tool_call>", "```json\n", "```", "```\n",
            "{\"name\": \"f\", \"arguments\": {}}", "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}",
            "{\"name\": \"nope\", \"arguments\": {}}", "<tool", "`", "{\"broken\": ", " done.", "\n{",
            "[TOOL_CALLS]", "[", "]", ", ",
        ]), 0..12),
        cuts in proptest::collection::vec(1usize..7, 0..40),
    ) {
        let output: String = parts.concat();
        let whole = HermesToolCalls::parse(&output, &names());
        let mut splitter = ToolCallSplitter::new(names());
        let mut pieces = Vec::new();
        let mut rest = output.as_str();
        for cut in cuts.iter().cycle().take(output.len() + 1) {
            if rest.is_empty() {
                break;
            }
            let mut at = (*cut).min(rest.len());
            while !rest.is_char_boundary(at) {
                at += 1;
            }
            pieces.extend(splitter.push(&rest[..at]));
            rest = &rest[at..];
        }
        if !rest.is_empty() {
            pieces.extend(splitter.push(rest));
        }
        pieces.extend(splitter.finish());
        let mut text = String::new();
        let mut calls = Vec::new();
        for piece in pieces {
            match piece {
                ToolSplit::Text(t) => text.push_str(&t),
                ToolSplit::Call(c) => calls.push(c),
            }
        }
        proptest::prop_assert_eq!((text, calls), whole);
    }
}
