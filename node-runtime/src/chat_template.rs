//! Rendering a conversation into a prompt with the model's own Jinja chat
//! template, with the settings and helpers Hugging Face templates expect.

use greenthread_core::ChatMessage;
use minijinja::syntax::SyntaxConfig;
use minijinja::value::Serde;
use minijinja::{Environment, ErrorKind, Value};

use crate::{Error, Result};

/// Gemma's turn format, for Gemma files that carry no template (the base
/// models). The assistant's turns are the `model` role.
pub const GEMMA_TURNS: &str = "{{ bos_token }}{%- for message in messages %}{{- '<start_of_turn>' + ('model' if message.role == 'assistant' else 'user' if message.role == 'system' else message.role) + '\n' + message.content + '<end_of_turn>\n' }}{%- endfor %}{%- if add_generation_prompt %}{{- '<start_of_turn>model\n' }}{%- endif %}";

/// Rendering budget: a template from a model file is untrusted code, and a
/// loop over a 100k-message conversation must not pin a core.
const TEMPLATE_FUEL: u64 = 50_000_000;

/// A compiled chat template.
pub struct ChatTemplate {
    env: Environment<'static>,
    bos: String,
    eos: String,
    tool_format: Option<greenthread_core::grammar::ToolCallFormat>,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate").finish_non_exhaustive()
    }
}

impl ChatTemplate {
    /// Compiles `source`.
    ///
    /// # Errors
    /// [`Error::Template`] with the syntax error.
    pub fn new(source: &str, bos: &str, eos: &str) -> Result<Self> {
        let mut env = Environment::new();
        // jinja2 settings of transformers' apply_chat_template.
        let syntax = SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .map_err(|e| Error::Template(describe(&e)))?;
        env.set_syntax(syntax);
        env.set_fuel(Some(TEMPLATE_FUEL));
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", |msg: String| -> std::result::Result<Value, minijinja::Error> {
            Err(minijinja::Error::new(ErrorKind::InvalidOperation, msg))
        });
        env.add_function("strftime_now", |fmt: String| strftime_now(&fmt));
        env.add_template_owned("chat", source.to_owned()).map_err(|e| Error::Template(describe(&e)))?;
        let tool_format = greenthread_core::grammar::ToolCallFormat::of_template(source);
        Ok(Self { env, bos: bos.to_owned(), eos: eos.to_owned(), tool_format })
    }

    /// How the template teaches the model to call tools; `None` when it offers none.
    pub fn tool_format(&self) -> Option<greenthread_core::grammar::ToolCallFormat> {
        self.tool_format
    }

    /// Renders `messages` (and `tools`, a JSON list of tool definitions) into a prompt.
    ///
    /// # Errors
    /// [`Error::Template`] when the template raises (e.g. roles that do not
    /// alternate) or fails.
    pub fn render(
        &self,
        messages: &[ChatMessage],
        tools: Option<&serde_json::Value>,
        add_generation_prompt: bool,
    ) -> Result<String> {
        let template = self.env.get_template("chat").map_err(|e| Error::Template(describe(&e)))?;
        let ctx = minijinja::context! {
            messages => Value::from(Serde(messages)),
            tools => tools.map(|t| Value::from(Serde(t))),
            add_generation_prompt => add_generation_prompt,
            bos_token => self.bos.as_str(),
            eos_token => self.eos.as_str(),
        };
        template.render(ctx).map_err(|e| Error::Template(describe(&e)))
    }
}

/// The error's own message and, where it has one, the template's.
fn describe(e: &minijinja::Error) -> String {
    match e.detail() {
        Some(detail) if e.kind() == ErrorKind::InvalidOperation => detail.to_owned(),
        _ => e.to_string(),
    }
}

/// `strftime_now` of transformers, for the specifiers chat templates use
/// (Llama 3 prints today's date into its system prompt).
fn strftime_now(fmt: &str) -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    format_utc(secs, fmt)
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

fn format_utc(secs: u64, fmt: &str) -> String {
    let days = (secs / 86_400) as i64;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let (h, m, s) = ((secs / 3600) % 24, (secs / 60) % 60, secs % 60);
    let name = MONTHS[(month - 1) as usize];
    let mut out = String::new();
    let mut chars = fmt.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('d') => out.push_str(&format!("{day:02}")),
            Some('m') => out.push_str(&format!("{month:02}")),
            Some('Y') => out.push_str(&year.to_string()),
            Some('y') => out.push_str(&format!("{:02}", year % 100)),
            Some('b') => out.push_str(&name[..3]),
            Some('B') => out.push_str(name),
            Some('H') => out.push_str(&format!("{h:02}")),
            Some('M') => out.push_str(&format!("{m:02}")),
            Some('S') => out.push_str(&format!("{s:02}")),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use greenthread_core::Role;

    use super::*;
    use crate::fixtures::vocab::CHATML_TEMPLATE;

    fn conversation() -> Vec<ChatMessage> {
        vec![ChatMessage::text(Role::System, "Be brief."), ChatMessage::text(Role::User, "Hi")]
    }

    #[test]
    fn chatml_renders_with_a_generation_prompt() {
        let t = ChatTemplate::new(CHATML_TEMPLATE, "", "<|im_end|>").unwrap();
        assert_eq!(
            t.render(&conversation(), None, true).unwrap(),
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn gemma_turns_start_with_bos_and_call_the_assistant_model() {
        let t = ChatTemplate::new(GEMMA_TURNS, "<bos>", "<eos>").unwrap();
        let msgs = vec![ChatMessage::text(Role::User, "Hi"), ChatMessage::text(Role::Assistant, "Hello")];
        assert_eq!(
            t.render(&msgs, None, true).unwrap(),
            "<bos><start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\nHello<end_of_turn>\n<start_of_turn>model\n"
        );
    }

    #[test]
    fn raise_exception_in_a_template_is_a_template_error_with_its_message() {
        let src =
            "{% if messages[0].role != 'user' %}{{ raise_exception('Conversation must start with user') }}{% endif %}";
        let t = ChatTemplate::new(src, "", "").unwrap();
        match t.render(&conversation(), None, true) {
            Err(Error::Template(msg)) => assert_eq!(msg, "Conversation must start with user"),
            other => panic!("expected a template error, got {other:?}"),
        }
    }

    #[test]
    fn python_string_methods_and_tools_json_are_available() {
        let src = "{{ messages[0].content.strip().upper() }}|{{ tools | tojson }}";
        let t = ChatTemplate::new(src, "", "").unwrap();
        let msgs = vec![ChatMessage::text(Role::User, "  hi  ")];
        let tools = serde_json::json!([{"type": "function", "function": {"name": "f"}}]);
        assert_eq!(
            t.render(&msgs, Some(&tools), false).unwrap(),
            // Python's json.dumps spacing and the caller's key order, as transformers renders it.
            r#"HI|[{"type": "function", "function": {"name": "f"}}]"#
        );
    }

    #[test]
    fn a_runaway_template_runs_out_of_fuel_instead_of_hanging() {
        let t = ChatTemplate::new("{% for i in range(100000000) %}x{% endfor %}", "", "").unwrap();
        assert!(matches!(t.render(&conversation(), None, false), Err(Error::Template(_))));
    }

    #[test]
    fn syntax_errors_are_reported_at_compile_time() {
        assert!(matches!(ChatTemplate::new("{% for %}", "", ""), Err(Error::Template(_))));
    }

    #[test]
    fn strftime_formats_a_known_instant() {
        // 2024-07-26 13:05:09 UTC
        assert_eq!(format_utc(1_722_000_309, "%d %b %Y %H:%M:%S"), "26 Jul 2024 13:25:09");
    }
}
