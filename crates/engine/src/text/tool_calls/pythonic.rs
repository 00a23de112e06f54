//! Llama 3.2's pythonic tool calls: a Python list of calls with keyword arguments,
//! `[get_weather(city="Paris", days=2), get_time(zone='CET')]`, the arguments Python literals (strings
//! in either quotes, numbers, `True`/`False`/`None`, lists, dicts). Llama 4 wraps the list in
//! `<|python_start|>` … `<|python_end|>` when the tokenizer shows them; both are read.
//!
//! A small recursive-descent reader rather than a Python parser: only literals are accepted (an
//! expression such as `days=1+1` makes the output plain text), and nesting is bounded so a hostile
//! or degenerate output cannot exhaust the stack.

use serde_json::{Map, Number, Value};

use super::ParsedCall;

/// Deepest nesting of lists and dicts read in one argument.
const MAX_DEPTH: usize = 32;

/// The output's calls, or `None` unless all of it is one list of calls.
pub fn parse(text: &str) -> Option<Vec<ParsedCall>> {
    let mut text = text.trim();
    if let Some(inner) = text.strip_prefix("<|python_start|>") {
        text = inner.trim_start();
        text = text.strip_suffix("<|python_end|>").unwrap_or(text).trim_end();
    }
    let mut reader = Reader { text, at: 0 };
    reader.expect('[')?;
    let mut calls = Vec::new();
    loop {
        reader.skip_space();
        if reader.eat(']') {
            break;
        }
        if !calls.is_empty() {
            reader.expect(',')?;
            reader.skip_space();
            // A trailing comma before `]`.
            if reader.eat(']') {
                break;
            }
        }
        let name = reader.identifier()?;
        reader.expect('(')?;
        let arguments = reader.keyword_arguments()?;
        calls.push(ParsedCall { name, arguments: Value::Object(arguments).to_string() });
    }
    reader.skip_space();
    (reader.at == text.len() && !calls.is_empty()).then_some(calls)
}

/// Whether an output that has begun like `text` may still turn out to be calls.
pub fn may_be_call(text: &str) -> bool {
    let start = text.trim_start();
    start.is_empty()
        || start.starts_with('[')
        || start.starts_with("<|python_start|>")
        || "<|python_start|>".starts_with(start)
}

/// The keyword arguments a primed call's continuation (`city="Paris")…`) wrote, up to its `)`.
pub fn primed_arguments(continuation: &str) -> Option<Value> {
    let mut reader = Reader { text: continuation, at: 0 };
    reader.keyword_arguments().map(Value::Object)
}

/// `name(key=literal, …)` for an arguments object (an earlier call shown back to the model).
pub fn write_call(name: &str, arguments: &Value) -> String {
    let keywords = match arguments {
        Value::Object(map) => map.iter().map(|(key, value)| format!("{key}={}", literal(value))).collect::<Vec<_>>(),
        _ => Vec::new(),
    };
    format!("{name}({})", keywords.join(", "))
}

/// A JSON value as a Python literal.
fn literal(value: &Value) -> String {
    match value {
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Number(n) => n.to_string(),
        // JSON's string escapes are Python's.
        Value::String(_) => value.to_string(),
        Value::Array(items) => format!("[{}]", items.iter().map(literal).collect::<Vec<_>>().join(", ")),
        Value::Object(map) => format!(
            "{{{}}}",
            map.iter()
                .map(|(k, v)| format!("{}: {}", Value::String(k.clone()), literal(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// A cursor over the output.
struct Reader<'a> {
    text: &'a str,
    at: usize,
}

impl Reader<'_> {
    fn rest(&self) -> &str {
        &self.text[self.at..]
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn skip_space(&mut self) {
        let rest = self.rest();
        self.at += rest.len() - rest.trim_start().len();
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.at += c.len_utf8();
            true
        } else {
            false
        }
    }

    fn expect(&mut self, c: char) -> Option<()> {
        self.skip_space();
        self.eat(c).then_some(())
    }

    /// A Python identifier (dots allowed, for `module.function`).
    fn identifier(&mut self) -> Option<String> {
        self.skip_space();
        let rest = self.rest();
        let len = rest.find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '.' || c == '-')).unwrap_or(rest.len());
        let name = rest[..len].to_string();
        if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
            return None;
        }
        self.at += len;
        Some(name)
    }

    /// `key=literal, …)` — after the opening parenthesis, through the closing one.
    fn keyword_arguments(&mut self) -> Option<Map<String, Value>> {
        let mut arguments = Map::new();
        loop {
            self.skip_space();
            if self.eat(')') {
                return Some(arguments);
            }
            if !arguments.is_empty() {
                self.expect(',')?;
                self.skip_space();
                if self.eat(')') {
                    return Some(arguments);
                }
            }
            let key = self.identifier()?;
            self.expect('=')?;
            let value = self.value(0)?;
            arguments.insert(key, value);
        }
    }

    fn value(&mut self, depth: usize) -> Option<Value> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.skip_space();
        match self.peek()? {
            '"' | '\'' => self.string().map(Value::String),
            '[' => {
                self.at += 1;
                self.sequence(']', depth).map(Value::Array)
            }
            '(' => {
                self.at += 1;
                self.sequence(')', depth).map(Value::Array)
            }
            '{' => {
                self.at += 1;
                self.dict(depth).map(Value::Object)
            }
            _ => self.word(),
        }
    }

    fn sequence(&mut self, close: char, depth: usize) -> Option<Vec<Value>> {
        let mut items = Vec::new();
        loop {
            self.skip_space();
            if self.eat(close) {
                return Some(items);
            }
            if !items.is_empty() {
                self.expect(',')?;
                self.skip_space();
                if self.eat(close) {
                    return Some(items);
                }
            }
            items.push(self.value(depth + 1)?);
        }
    }

    fn dict(&mut self, depth: usize) -> Option<Map<String, Value>> {
        let mut map = Map::new();
        loop {
            self.skip_space();
            if self.eat('}') {
                return Some(map);
            }
            if !map.is_empty() {
                self.expect(',')?;
                self.skip_space();
                if self.eat('}') {
                    return Some(map);
                }
            }
            let key = match self.value(depth + 1)? {
                Value::String(key) => key,
                Value::Number(n) => n.to_string(),
                _ => return None,
            };
            self.expect(':')?;
            map.insert(key, self.value(depth + 1)?);
        }
    }

    /// A quoted string with Python's common escapes.
    fn string(&mut self) -> Option<String> {
        let quote = self.peek()?;
        self.at += 1;
        let mut out = String::new();
        let mut chars = self.rest().char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    let (_, escaped) = chars.next()?;
                    match escaped {
                        'n' => out.push('\n'),
                        't' => out.push('\t'),
                        'r' => out.push('\r'),
                        '0' => out.push('\0'),
                        'u' => {
                            let hex: String = (0..4).map(|_| chars.next().map(|(_, h)| h)).collect::<Option<_>>()?;
                            out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
                        }
                        other => out.push(other),
                    }
                }
                c if c == quote => {
                    self.at += i + 1;
                    return Some(out);
                }
                c => out.push(c),
            }
        }
        None
    }

    /// A number, `True`, `False` or `None`.
    fn word(&mut self) -> Option<Value> {
        let rest = self.rest();
        let len =
            rest.find(|c: char| !(c.is_alphanumeric() || matches!(c, '.' | '-' | '+' | '_'))).unwrap_or(rest.len());
        let value = match &rest[..len] {
            "True" | "true" => Value::Bool(true),
            "False" | "false" => Value::Bool(false),
            "None" | "null" => Value::Null,
            word => Value::Number(serde_json::from_str::<Number>(word).ok()?),
        };
        self.at += len;
        Some(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(name: &str, arguments: &str) -> ParsedCall {
        ParsedCall { name: name.into(), arguments: arguments.into() }
    }

    #[test]
    fn a_list_of_calls_as_llama_3_2_writes_it() {
        let out =
            r#"[get_weather(city="San Francisco", metric=True), get_time(zone='PST', offsets=[-8, -7.5], extra=None)]"#;
        assert_eq!(
            parse(out).unwrap(),
            [
                call("get_weather", r#"{"city":"San Francisco","metric":true}"#),
                call("get_time", r#"{"zone":"PST","offsets":[-8,-7.5],"extra":null}"#),
            ]
        );
    }

    #[test]
    fn no_arguments_nested_dicts_escapes_and_llama_4_markers() {
        assert_eq!(parse("[now()]").unwrap(), [call("now", "{}")]);
        let out = r#"<|python_start|>[search(q="it's \"here\"\n", filters={'lang': 'en', "n": (1, 2)})]<|python_end|>"#;
        assert_eq!(
            parse(out).unwrap(),
            [call("search", r#"{"q":"it's \"here\"\n","filters":{"lang":"en","n":[1,2]}}"#)]
        );
    }

    #[test]
    fn anything_but_a_list_of_calls_is_plain_text() {
        for out in [
            "",
            "[]",
            "The answer is 4.",
            "get_weather(city=\"Paris\")",
            "[get_weather(city=\"Paris\")",
            "[get_weather(city=\"Par",
            "[get_weather(city=\"Paris\")] and more",
            "[get_weather(\"Paris\")]",
            "[get_weather(days=1+1)]",
            "[get_weather(city=Paris)]",
            "[1, 2, 3]",
            "[3rd(x=1)]",
            "[f(x=[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]])]",
        ] {
            assert_eq!(parse(out), None, "{out}");
        }
    }

    #[test]
    fn a_stream_holds_back_only_what_may_be_a_call() {
        assert!(may_be_call("") && may_be_call(" [get_") && may_be_call("<|python_st"));
        assert!(!may_be_call("Sure") && !may_be_call("{\"name\""));
    }
}
