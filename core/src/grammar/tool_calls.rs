//! Tool calls in the Hermes format that Qwen 2.5/3, Hermes and many other
//! chat templates teach their models:
//! `<tool_call>\n{"name": …, "arguments": {…}}\n</tool_call>`.
//! The grammar rules that force one, and the parsers that find them in
//! output, whole or streamed — also as small models often write them
//! instead: the bare object (the whole output, a line of its own after a
//! sentence, or straight after another call's closing tag), or the object
//! in a Markdown code fence (` ```json … ``` `),
//! when it names one of the offered tools; Llama 3's `parameters` for
//! `arguments`; and a JSON array of calls, bare or after Mistral's
//! `[TOOL_CALLS]`, for several at once. A call cut
//! off before its closing tag (by `max_tokens`) is dropped, not left in the
//! text as markup.

use serde_json::Value;

use super::SchemaError;

const OPEN: &str = "<tool_call>";
const CLOSE: &str = "</tool_call>";
/// A Markdown code fence, opening and closing.
const FENCE: &str = "```";

/// A tool the caller offers: its name and the JSON Schema of its arguments.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolDef {
    pub name: String,
    pub parameters: Value,
}

/// A tool call found in output.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedToolCall {
    pub name: String,
    /// The arguments object.
    pub arguments: Value,
}

/// How a model family's chat template teaches it to call tools. Every
/// family's form is read from any model's output (small models mix them);
/// the format says whether a template offers tools at all, and forced calls
/// use the Hermes tags, which every format's parser reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolCallFormat {
    /// `<tool_call>{…}</tool_call>`: Qwen 2.5/3, Hermes, many others.
    Hermes,
    /// `[TOOL_CALLS][{…}]`: Mistral.
    Mistral,
    /// `{"name": …, "parameters": {…}}`, after `<|python_tag|>` where written: Llama 3.1+.
    Llama3,
    /// Gemma's ` ```tool_code ` fence holding a Python call.
    Gemma,
    /// A template that renders the tools without naming a format: JSON objects.
    Json,
}

impl ToolCallFormat {
    /// The format `template` teaches, or `None` when it offers no tools.
    pub fn of_template(template: &str) -> Option<Self> {
        if !template.contains("tools") {
            return None;
        }
        Some(if template.contains(OPEN) {
            Self::Hermes
        } else if template.contains(MISTRAL) {
            Self::Mistral
        } else if template.contains(PYTHON_TAG) || template.contains("ipython") {
            Self::Llama3
        } else if template.contains("tool_code") {
            Self::Gemma
        } else {
            Self::Json
        })
    }
}

/// The Hermes tool-call format.
pub struct HermesToolCalls;

impl HermesToolCalls {
    /// The grammar rules of one call of any of `tools`, as the rule
    /// `tool_call` (Lark in llguidance's dialect): the tags around a JSON
    /// object holding the tool's name and arguments that fit its schema.
    ///
    /// # Errors
    /// [`SchemaError`] when a tool's parameters are not a schema.
    pub fn lark_rules(tools: &[ToolDef]) -> Result<String, SchemaError> {
        let calls = tools
            .iter()
            .map(|tool| {
                let arguments = super::guided_schema(&tool.parameters).map_err(|e| SchemaError {
                    path: format!("tools[{}].parameters{}", tool.name, e.path.trim_start_matches('#')),
                    message: e.message,
                })?;
                Ok(serde_json::json!({
                    "type": "object",
                    "properties": {"name": {"const": tool.name}, "arguments": arguments},
                    "required": ["name", "arguments"],
                    "additionalProperties": false,
                }))
            })
            .collect::<Result<Vec<Value>, SchemaError>>()?;
        let call = super::with_json_options(serde_json::json!({"anyOf": calls}));
        let open = serde_json::to_string(&format!("{OPEN}\n")).unwrap_or_default();
        let close = serde_json::to_string(&format!("\n{CLOSE}")).unwrap_or_default();
        Ok(format!("tool_call: {open} tool_call_json {close}\ntool_call_json: %json {call}\n"))
    }

    /// Splits finished output into its text and its tool calls. A block whose
    /// JSON does not parse stays text, as the model wrote it. Output that is
    /// nothing but a call's JSON object, without the tags, naming one of
    /// `tools`, is a call too: small models often drop the tags.
    pub fn parse(output: &str, tools: &[String]) -> (String, Vec<ParsedToolCall>) {
        collect(Self::whole(output, tools))
    }

    fn whole(output: &str, tools: &[String]) -> Vec<ToolSplit> {
        let (leading, rest) = leading_calls(output, tools);
        if !leading.is_empty() {
            // An answer that opens with calls is its calls: what a small model
            // writes after them (schemas echoed, the call again) is dropped,
            // as vLLM's parsers keep only the text before the first call.
            let (_, more) = Self::split_tagged(rest, tools);
            return leading.into_iter().chain(more).map(ToolSplit::Call).collect();
        }
        let (text, calls) = Self::split_tagged(output, tools);
        if calls.is_empty()
            && let Some(call) = parse_call(&text).filter(|c| tools.contains(&c.name))
        {
            return vec![ToolSplit::Call(call)];
        }
        if calls.is_empty()
            && let Some(calls) = parse_calls(&text).filter(|cs| cs.iter().all(|c| tools.contains(&c.name)))
        {
            return calls.into_iter().map(ToolSplit::Call).collect();
        }
        let mut out = Vec::new();
        if !text.is_empty() {
            out.push(ToolSplit::Text(text));
        }
        out.extend(calls.into_iter().map(ToolSplit::Call));
        out
    }

    fn split_tagged(output: &str, tools: &[String]) -> (String, Vec<ParsedToolCall>) {
        let mut tagged = TagSplitter::new(tools.to_vec());
        let mut parts = tagged.push(output);
        parts.extend(tagged.finish());
        collect(parts)
    }
}

/// The text and the calls of `parts`, each in order.
fn collect(parts: Vec<ToolSplit>) -> (String, Vec<ParsedToolCall>) {
    let mut text = String::new();
    let mut calls = Vec::new();
    for part in parts {
        match part {
            ToolSplit::Text(t) => text.push_str(&t),
            ToolSplit::Call(call) => calls.push(call),
        }
    }
    (text, calls)
}

/// A piece of streamed output: text to pass on, or a complete tool call.
#[derive(Debug, Clone, PartialEq)]
pub enum ToolSplit {
    Text(String),
    Call(ParsedToolCall),
}

/// Separates tool calls from text as output streams in: text is passed on
/// at once except a tail that may be the start of `<tool_call>`; a call is
/// passed on when its closing tag arrives. Output that opens with `{` may be
/// an untagged call and is held back until it ends.
#[derive(Debug)]
pub struct ToolCallSplitter {
    tools: Vec<String>,
    /// `None` until the first non-whitespace character decides.
    untagged: Option<bool>,
    held: String,
    tagged: TagSplitter,
}

impl ToolCallSplitter {
    /// A splitter for output that may call `tools` (their names).
    pub fn new(tools: Vec<String>) -> Self {
        Self { tagged: TagSplitter::new(tools.clone()), tools, untagged: None, held: String::new() }
    }

    pub fn push(&mut self, text: &str) -> Vec<ToolSplit> {
        if self.untagged.is_none() {
            self.held.push_str(text);
            match self.held.trim_start().chars().next() {
                None => return Vec::new(),
                Some(first) => self.untagged = Some(first == '{' || first == '['),
            }
            if self.untagged == Some(true) {
                return Vec::new();
            }
            let held = std::mem::take(&mut self.held);
            return self.tagged.push(&held);
        }
        if self.untagged == Some(true) {
            self.held.push_str(text);
            return Vec::new();
        }
        self.tagged.push(text)
    }

    /// What is left when the output ends.
    pub fn finish(&mut self) -> Vec<ToolSplit> {
        if self.untagged == Some(false) {
            return self.tagged.finish();
        }
        HermesToolCalls::whole(&std::mem::take(&mut self.held), &self.tools)
    }
}

/// What opened the block being read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Block {
    /// `<tool_call>`, closed by `</tool_call>`.
    Tag,
    /// A code fence, closed by the next fence: a call when its content is
    /// one naming an offered tool, else the text it was.
    Fence,
    /// A line that starts with `{` after other text, closed by its newline:
    /// a call when it is one naming an offered tool.
    Line,
    /// Mistral's `[TOOL_CALLS]` or Llama 3's `<|python_tag|>`, followed by
    /// the calls as JSON (an array, or objects one after another) to the
    /// end of the output.
    Marker,
}

/// Mistral's marker before its calls.
const MISTRAL: &str = "[TOOL_CALLS]";

/// Llama 3's marker before a call (where its tokenizer writes it out).
const PYTHON_TAG: &str = "<|python_tag|>";

/// A line of its own that may hold an untagged call.
const LINE: &str = "\n{";

/// Splits `<tool_call>` blocks and fenced calls from text as it streams in.
#[derive(Debug)]
struct TagSplitter {
    tools: Vec<String>,
    buffer: String,
    open: Option<Block>,
    /// Whether a call ended and only whitespace has come since: a `{` now
    /// opens a bare call as a new line would (`</tool_call>{"name": …}`).
    after_call: bool,
}

impl TagSplitter {
    fn new(tools: Vec<String>) -> Self {
        Self { tools, buffer: String::new(), open: None, after_call: false }
    }

    /// `part`, noting whether it was a call.
    fn emit(&mut self, out: &mut Vec<ToolSplit>, part: ToolSplit) {
        match &part {
            ToolSplit::Call(_) => self.after_call = true,
            ToolSplit::Text(text) if !text.trim().is_empty() => self.after_call = false,
            ToolSplit::Text(_) => {}
        }
        out.push(part);
    }

    pub fn push(&mut self, text: &str) -> Vec<ToolSplit> {
        self.buffer.push_str(text);
        let mut out = Vec::new();
        loop {
            match self.open {
                Some(Block::Tag) => {
                    let Some(end) = self.buffer.find(CLOSE) else { break };
                    let block: String = self.buffer.drain(..end + CLOSE.len()).collect();
                    self.open = None;
                    let part = match parse_call(&block[..end]) {
                        Some(call) => ToolSplit::Call(call),
                        None => ToolSplit::Text(format!("{OPEN}{block}")),
                    };
                    self.emit(&mut out, part);
                }
                Some(Block::Fence) => {
                    let Some(end) = self.buffer.find(FENCE) else { break };
                    let block: String = self.buffer.drain(..end + FENCE.len()).collect();
                    self.open = None;
                    let part = match self.fenced_call(&block[..end]) {
                        Some(call) => ToolSplit::Call(call),
                        None => ToolSplit::Text(format!("{FENCE}{block}")),
                    };
                    self.emit(&mut out, part);
                }
                Some(Block::Marker) => break,
                Some(Block::Line) => {
                    let Some(end) = self.buffer.find('\n') else { break };
                    let line: String = self.buffer.drain(..=end).collect();
                    self.open = None;
                    let part = match parse_call(&line).filter(|call| self.tools.contains(&call.name)) {
                        Some(call) => ToolSplit::Call(call),
                        None => ToolSplit::Text(line),
                    };
                    self.emit(&mut out, part);
                }
                None => {
                    if self.after_call {
                        let rest = self.buffer.trim_start();
                        let start = self.buffer.len() - rest.len();
                        if rest.starts_with('{') {
                            let space: String = self.buffer.drain(..start).collect();
                            if !space.is_empty() {
                                out.push(ToolSplit::Text(space));
                            }
                            self.after_call = false;
                            self.open = Some(Block::Line);
                            continue;
                        }
                        if rest.is_empty() {
                            // Only whitespace so far: pass it on, and wait for what follows.
                            let space = std::mem::take(&mut self.buffer);
                            if !space.is_empty() {
                                out.push(ToolSplit::Text(space));
                            }
                            break;
                        }
                        self.after_call = false;
                    }
                    let tag = self.buffer.find(OPEN).map(|at| (at, Block::Tag, OPEN.len()));
                    let fence = self.buffer.find(FENCE).map(|at| (at, Block::Fence, FENCE.len()));
                    // The newline stays text; the line's `{` begins the block.
                    let line = self.buffer.find(LINE).map(|at| (at + 1, Block::Line, 0));
                    let marker = [MISTRAL, PYTHON_TAG]
                        .into_iter()
                        .filter_map(|m| self.buffer.find(m).map(|at| (at, Block::Marker, m.len())))
                        .min_by_key(|(at, _, _)| *at);
                    let first = [tag, fence, line, marker].into_iter().flatten().min_by_key(|(at, _, _)| *at);
                    if let Some((start, block, len)) = first {
                        let before: String = self.buffer.drain(..start).collect();
                        self.buffer.drain(..len);
                        if !before.is_empty() {
                            self.emit(&mut out, ToolSplit::Text(before));
                        }
                        self.open = Some(block);
                        continue;
                    }
                    let keep = partial_opener_len(&self.buffer);
                    let ready: String = self.buffer.drain(..self.buffer.len() - keep).collect();
                    if !ready.is_empty() {
                        self.emit(&mut out, ToolSplit::Text(ready));
                    }
                    break;
                }
            }
        }
        out
    }

    /// A fence's content as a call of an offered tool (after an optional
    /// language tag such as `json`); Gemma's `tool_code` fences hold a
    /// Python call, `get_weather(city="Paris")`.
    fn fenced_call(&self, content: &str) -> Option<ParsedToolCall> {
        let (tag, body) = match content.split_once('\n') {
            Some((tag, rest)) if tag.trim().chars().all(|c| c.is_ascii_alphanumeric() || c == '_') => {
                (tag.trim(), rest)
            }
            _ => ("", content),
        };
        let call = if tag == "tool_code" { super::python_call::parse(body) } else { parse_call(body) };
        call.filter(|call| self.tools.contains(&call.name))
    }

    /// What is left when the output ends: a call cut off before its closing
    /// tag is dropped (unless its JSON is already whole), an unclosed fence
    /// is the text it was.
    pub fn finish(&mut self) -> Vec<ToolSplit> {
        let rest = std::mem::take(&mut self.buffer);
        let part = match self.open.take() {
            Some(Block::Tag) => return parse_call(&rest).map(ToolSplit::Call).into_iter().collect(),
            Some(Block::Fence) => format!("{FENCE}{rest}"),
            // The marker says calls follow: what does not parse as them is dropped, not shown.
            Some(Block::Marker) => {
                return leading_calls(&rest, &self.tools).0.into_iter().map(ToolSplit::Call).collect();
            }
            Some(Block::Line) => match parse_call(&rest).filter(|call| self.tools.contains(&call.name)) {
                Some(call) => return vec![ToolSplit::Call(call)],
                None => rest,
            },
            None => rest,
        };
        if part.is_empty() { Vec::new() } else { vec![ToolSplit::Text(part)] }
    }
}

/// Length of the longest tail of `text` that may begin `<tool_call>` or a fence.
fn partial_opener_len(text: &str) -> usize {
    [OPEN, FENCE, LINE, MISTRAL, PYTHON_TAG]
        .into_iter()
        .map(|opener| {
            (1..opener.len().min(text.len() + 1))
                .rev()
                .find(|&n| text.is_char_boundary(text.len() - n) && opener.starts_with(&text[text.len() - n..]))
                .unwrap_or(0)
        })
        .max()
        .unwrap_or(0)
}

/// The calls that open `output` as bare JSON, one value after another (a
/// call, or an array of calls, each naming an offered tool), and the text
/// after them.
fn leading_calls<'a>(output: &'a str, tools: &[String]) -> (Vec<ParsedToolCall>, &'a str) {
    let mut calls = Vec::new();
    let mut rest = output;
    loop {
        let value_start = rest.trim_start();
        if !value_start.starts_with(['{', '[']) {
            break;
        }
        let mut values = serde_json::Deserializer::from_str(value_start).into_iter::<Value>();
        let Some(Ok(value)) = values.next() else { break };
        let found = match value {
            Value::Array(items) => items.into_iter().map(call_of).collect::<Option<Vec<_>>>(),
            one => call_of(one).map(|call| vec![call]),
        };
        let Some(found) = found.filter(|cs| !cs.is_empty() && cs.iter().all(|c| tools.contains(&c.name))) else {
            break;
        };
        calls.extend(found);
        rest = &value_start[values.byte_offset()..];
    }
    (calls, rest)
}

fn parse_call(body: &str) -> Option<ParsedToolCall> {
    call_of(serde_json::from_str(body.trim()).ok()?)
}

/// A JSON array of calls, each whole; `None` when it is not one.
fn parse_calls(body: &str) -> Option<Vec<ParsedToolCall>> {
    let Value::Array(items) = serde_json::from_str(body.trim()).ok()? else { return None };
    let calls: Vec<ParsedToolCall> = items.into_iter().map(call_of).collect::<Option<_>>()?;
    (!calls.is_empty()).then_some(calls)
}

fn call_of(value: Value) -> Option<ParsedToolCall> {
    let name = value.get("name")?.as_str()?.to_owned();
    // Llama 3's templates teach `parameters` where OpenAI says `arguments`.
    let arguments = match value.get("arguments").or_else(|| value.get("parameters")) {
        None | Some(Value::Null) => Value::Object(serde_json::Map::new()),
        // Some models write the arguments as a JSON string, as OpenAI sends them.
        Some(Value::String(s)) => serde_json::from_str(s).ok()?,
        Some(v) => v.clone(),
    };
    arguments.is_object().then_some(ParsedToolCall { name, arguments })
}
