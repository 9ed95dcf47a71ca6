//! Output grammars for constrained decoding: JSON values shaped by a JSON
//! Schema, literal framing around them (tool-call markup), and a byte-level
//! matcher the sampler asks, token by token, whether a piece of text may
//! come next.

mod check;
mod matcher;
mod schema;
mod tool_calls;

pub use matcher::Matcher;
pub use schema::SchemaError;
pub use tool_calls::{HermesToolCalls, ParsedToolCall, ToolCallSplitter, ToolDef, ToolSplit};

/// Index of a node in its [`Grammar`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NodeId(u32);

/// Whitespace between JSON tokens is one space, or a line break and up to
/// this many spaces or tabs of indentation: enough for pretty-printed JSON,
/// and bounded so a model cannot spend its whole budget on blanks.
pub const MAX_INDENT: u8 = 20;
/// Digits and signs in one number; longer numbers are not JSON a model means.
pub const MAX_NUMBER_BYTES: u8 = 24;
/// Most rules one grammar may have. A rule costs the matcher work at every
/// step it is live, and a request's grammar is compiled on the request's own
/// time; about 3,000 properties or enum values fit, far more than a schema
/// meant for a model.
pub const MAX_NODES: usize = 20_000;
/// Deepest nesting of schemas inside schemas (`properties`, `items`,
/// `anyOf`, …). Each level is a frame of every live parse stack, so depth
/// multiplies the cost of every token; real tool and output schemas stay
/// under ten.
pub const MAX_SCHEMA_DEPTH: usize = 24;

/// What a chat answer must be (`response_format`).
#[derive(Debug, Clone, PartialEq)]
pub enum OutputFormat {
    Text,
    JsonObject,
    JsonSchema(serde_json::Value),
}

/// Whether the model may, must, or must with one tool, call a tool (`tool_choice`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolMode {
    Auto,
    Required,
    Named(String),
}

/// One rule of a grammar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// Exactly these bytes.
    Literal(Vec<u8>),
    /// Each in turn.
    Seq(Vec<NodeId>),
    /// Any one of them.
    Alt(Vec<NodeId>),
    /// Nothing, one space, or a line break and up to [`MAX_INDENT`] spaces or tabs.
    Ws,
    /// A JSON string, quotes included, of `min..=max` characters.
    String { min: u32, max: Option<u32> },
    /// A JSON number; `integer` forbids fraction and exponent.
    Number { integer: bool },
    /// `open item (, item)* close` with whitespace around, `min..=max` items:
    /// JSON arrays (`[`, `]`) and free-form objects (`{`, `}`, members).
    List { open: u8, close: u8, item: NodeId, min: u32, max: Option<u32> },
}

/// A set of rules with a root: what the whole output must match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grammar {
    nodes: Vec<Node>,
    root: NodeId,
}

impl Grammar {
    /// The grammar of one JSON value matching `schema` (a JSON Schema).
    ///
    /// # Errors
    /// [`SchemaError`] naming the keyword or reference that cannot be enforced.
    pub fn json_schema(schema: &serde_json::Value) -> Result<Self, SchemaError> {
        let mut b = Builder::default();
        let root = schema::compile(&mut b, schema)?;
        b.finish_checked(root)
    }

    /// The grammar of any JSON object (`response_format: json_object`).
    pub fn json_object() -> Self {
        let mut b = Builder::default();
        let root = b.any_object();
        b.finish(root)
    }

    /// The grammar of a chat answer: `format` and, unless `tools` is `None`
    /// (no tools, or `tool_choice: none`), a tool call as `mode` allows.
    /// `None` when the output is free text.
    ///
    /// # Errors
    /// [`SchemaError`] when a schema cannot be enforced.
    pub fn for_output(
        format: &OutputFormat,
        tools: Option<(&[ToolDef], &ToolMode)>,
    ) -> Result<Option<Self>, SchemaError> {
        let mut b = Builder::default();
        let answer = match format {
            OutputFormat::Text => None,
            OutputFormat::JsonObject => Some(b.any_object()),
            OutputFormat::JsonSchema(schema) => Some(schema::compile(&mut b, schema)?),
        };
        let root = match (tools, answer) {
            (None, None) | (Some((_, ToolMode::Auto)), None) => return Ok(None),
            (None, Some(answer)) => answer,
            (Some((tools, ToolMode::Required)), _) => HermesToolCalls::call(&mut b, tools)?,
            (Some((tools, ToolMode::Named(name))), _) => {
                let named: Vec<ToolDef> = tools.iter().filter(|t| &t.name == name).cloned().collect();
                HermesToolCalls::call(&mut b, &named)?
            }
            (Some((tools, ToolMode::Auto)), Some(answer)) => {
                let call = HermesToolCalls::call(&mut b, tools)?;
                b.add(Node::Alt(vec![call, answer]))
            }
        };
        b.finish_checked(root).map(Some)
    }

    pub(crate) fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id.0 as usize]
    }

    pub fn root(&self) -> NodeId {
        self.root
    }

    /// A matcher at the start of the output.
    pub fn matcher(self: &std::sync::Arc<Self>) -> Matcher {
        Matcher::new(self.clone())
    }

    /// Whether the whole of `text` is a complete match (tests and validation).
    pub fn matches(self: &std::sync::Arc<Self>, text: &str) -> bool {
        let mut m = self.matcher();
        m.advance(text.as_bytes()) && m.is_complete()
    }
}

/// Builds a [`Grammar`] node by node.
#[derive(Debug, Default)]
pub struct Builder {
    nodes: Vec<Node>,
}

impl Builder {
    pub fn add(&mut self, node: Node) -> NodeId {
        self.nodes.push(node);
        NodeId((self.nodes.len() - 1) as u32)
    }

    /// A slot filled later with [`Builder::set`]: how recursive schemas refer to themselves.
    pub fn reserve(&mut self) -> NodeId {
        self.add(Node::Seq(Vec::new()))
    }

    pub fn set(&mut self, id: NodeId, node: Node) {
        self.nodes[id.0 as usize] = node;
    }

    pub fn literal(&mut self, text: &str) -> NodeId {
        self.add(Node::Literal(text.as_bytes().to_vec()))
    }

    pub fn ws(&mut self) -> NodeId {
        self.add(Node::Ws)
    }

    /// An object with exactly these members, in this order.
    pub fn object(&mut self, members: &[(String, NodeId)]) -> NodeId {
        let mut seq = vec![self.literal("{"), self.ws()];
        for (i, (key, value)) in members.iter().enumerate() {
            if i > 0 {
                seq.extend([self.literal(","), self.ws()]);
            }
            let key = serde_json::to_string(key).unwrap_or_default();
            seq.extend([self.literal(&key), self.ws(), self.literal(":"), self.ws(), *value, self.ws()]);
        }
        seq.push(self.literal("}"));
        self.add(Node::Seq(seq))
    }

    /// Any JSON value.
    pub fn any_value(&mut self) -> NodeId {
        let value = self.reserve();
        let string = self.add(Node::String { min: 0, max: None });
        let number = self.add(Node::Number { integer: false });
        let literals = ["true", "false", "null"].map(|l| self.literal(l));
        let array = self.add(Node::List { open: b'[', close: b']', item: value, min: 0, max: None });
        let object = self.free_object(value);
        let mut alts = vec![string, number, array, object];
        alts.extend(literals);
        self.set(value, Node::Alt(alts));
        value
    }

    /// Any JSON object.
    pub fn any_object(&mut self) -> NodeId {
        let value = self.any_value();
        self.free_object(value)
    }

    /// An object with any keys, each value matching `value`.
    pub fn free_object(&mut self, value: NodeId) -> NodeId {
        let key = self.add(Node::String { min: 0, max: None });
        let parts = vec![key, self.ws(), self.literal(":"), self.ws(), value];
        let member = self.add(Node::Seq(parts));
        self.add(Node::List { open: b'{', close: b'}', item: member, min: 0, max: None })
    }

    pub fn finish(self, root: NodeId) -> Grammar {
        Grammar { nodes: self.nodes, root }
    }

    /// How many rules the grammar has so far.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The grammar, if some output can match it and the matcher can run it:
    /// see [`check::satisfiable`].
    ///
    /// # Errors
    /// [`SchemaError`] for a grammar that matches nothing or recurses
    /// before writing anything.
    pub fn finish_checked(self, root: NodeId) -> Result<Grammar, SchemaError> {
        if self.nodes.len() > MAX_NODES {
            return Err(SchemaError {
                path: "#".into(),
                message: format!("the schema is too large to enforce (over {MAX_NODES} grammar rules)"),
            });
        }
        let grammar = self.finish(root);
        check::satisfiable(&grammar)?;
        Ok(grammar)
    }
}

#[cfg(test)]
mod tests;
