//! A Python function call with keyword arguments, as Gemma writes a tool
//! call in a ` ```tool_code ` fence: `get_weather(city="Paris", days=3)`.
//! Arguments are Python literals (strings, numbers, `True`/`False`/`None`,
//! lists and dicts of them); anything else is no call.
//!
//! Hand-written rather than taken from a Python parser crate
//! (`rustpython-parser`, `ruff_python_parser`): those parse all of Python
//! and pull a large dependency into the pure core for one call expression
//! of literals, which this reads in under 200 lines with a depth bound.

use serde_json::{Map, Number, Value};

use super::tool_calls::ParsedToolCall;

/// The call in `source`, or `None` when it is not one call of literals.
pub fn parse(source: &str) -> Option<ParsedToolCall> {
    let source = source.trim();
    let open = source.find('(')?;
    let name = source[..open].trim();
    let identifier = |s: &str| s.chars().next().is_some_and(|c| c.is_alphabetic() || c == '_');
    if !identifier(name) || !name.chars().all(|c| c.is_alphanumeric() || c == '_' || c == '.') {
        return None;
    }
    let mut reader = Reader { chars: source[open + 1..].chars().collect(), at: 0 };
    let mut arguments = Map::new();
    loop {
        reader.skip_space();
        if reader.eat(')') {
            break;
        }
        let key = reader.identifier()?;
        reader.skip_space();
        if !reader.eat('=') {
            return None;
        }
        arguments.insert(key, reader.literal(0)?);
        reader.skip_space();
        if !reader.eat(',') && reader.peek() != Some(')') {
            return None;
        }
    }
    reader.skip_space();
    (reader.at == reader.chars.len())
        .then(|| ParsedToolCall { name: name.to_owned(), arguments: Value::Object(arguments) })
}

/// Deepest nesting of lists and dicts read.
const MAX_DEPTH: usize = 32;

struct Reader {
    chars: Vec<char>,
    at: usize,
}

impl Reader {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.at).copied()
    }

    fn eat(&mut self, c: char) -> bool {
        let found = self.peek() == Some(c);
        self.at += usize::from(found);
        found
    }

    fn skip_space(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.at += 1;
        }
    }

    fn identifier(&mut self) -> Option<String> {
        let start = self.at;
        while self.peek().is_some_and(|c| c.is_alphanumeric() || c == '_') {
            self.at += 1;
        }
        (self.at > start).then(|| self.chars[start..self.at].iter().collect())
    }

    fn literal(&mut self, depth: usize) -> Option<Value> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.skip_space();
        match self.peek()? {
            quote @ ('"' | '\'') => self.string(quote).map(Value::String),
            '[' => {
                self.at += 1;
                let mut items = Vec::new();
                while !self.closes(']') {
                    items.push(self.literal(depth + 1)?);
                    self.separator(']')?;
                }
                Some(Value::Array(items))
            }
            '{' => {
                self.at += 1;
                let mut fields = Map::new();
                while !self.closes('}') {
                    self.skip_space();
                    let key = match self.peek()? {
                        quote @ ('"' | '\'') => self.string(quote)?,
                        _ => return None,
                    };
                    self.skip_space();
                    if !self.eat(':') {
                        return None;
                    }
                    fields.insert(key, self.literal(depth + 1)?);
                    self.separator('}')?;
                }
                Some(Value::Object(fields))
            }
            _ => {
                let word = self.word();
                match word.as_str() {
                    "True" => Some(Value::Bool(true)),
                    "False" => Some(Value::Bool(false)),
                    "None" => Some(Value::Null),
                    number => number
                        .parse::<i64>()
                        .ok()
                        .map(Number::from)
                        .or_else(|| number.parse::<f64>().ok().and_then(Number::from_f64))
                        .map(Value::Number),
                }
            }
        }
    }

    /// Whether the list or dict ends here (consumed if so).
    fn closes(&mut self, close: char) -> bool {
        self.skip_space();
        self.eat(close)
    }

    /// A comma, or the closing bracket next.
    fn separator(&mut self, close: char) -> Option<()> {
        self.skip_space();
        (self.eat(',') || self.peek() == Some(close)).then_some(())
    }

    fn word(&mut self) -> String {
        let start = self.at;
        while self.peek().is_some_and(|c| c.is_alphanumeric() || matches!(c, '.' | '-' | '+' | '_')) {
            self.at += 1;
        }
        self.chars[start..self.at].iter().collect()
    }

    fn string(&mut self, quote: char) -> Option<String> {
        self.at += 1;
        let mut out = String::new();
        loop {
            let c = self.peek()?;
            self.at += 1;
            match c {
                '\\' => {
                    let escaped = self.peek()?;
                    self.at += 1;
                    out.push(match escaped {
                        'n' => '\n',
                        't' => '\t',
                        other => other,
                    });
                }
                c if c == quote => return Some(out),
                c => out.push(c),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn keyword_arguments_of_literals_are_a_call() {
        let call = parse("get_weather(city='Paris', days=3, units=\"metric\", detail=True, extra=None)").unwrap();
        assert_eq!(call.name, "get_weather");
        assert_eq!(
            call.arguments,
            json!({"city": "Paris", "days": 3, "units": "metric", "detail": true, "extra": null})
        );
        let nested = parse("f(xs=[1, 2.5, 'a'], d={'k': [True]}, s='it\\'s')").unwrap();
        assert_eq!(nested.arguments, json!({"xs": [1, 2.5, "a"], "d": {"k": [true]}, "s": "it's"}));
        assert_eq!(parse("  now()\n").unwrap().arguments, json!({}));
    }

    #[test]
    fn anything_else_is_no_call() {
        for source in ["f('positional')", "f(x=y)", "f(x=1", "f(x=1) + 2", "1f(x=1)", "print", "f(x=open('/etc'))"] {
            assert!(parse(source).is_none(), "{source}");
        }
    }
}
