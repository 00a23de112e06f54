//! A chat answer's tool calls: the model's output read in its [`ToolCallFormat`] and shaped as OpenAI's
//! `message.tool_calls` — whole for a plain answer ([`ToolReader::read`]), or, for a stream, with text
//! held back while it may still be a call ([`HeldOutput`]) and the calls sent as `delta.tool_calls` when
//! the choice ends.
//!
//! A stream cannot take text back, so whatever may be the start of a call waits: the whole output for
//! the JSON and pythonic formats (their calls open the output) until it cannot be a call any more, and
//! for Hermes everything from `<tool_call>` (or its first characters at the end of the text so far).
//! An output that turns out not to be calls is then sent as content, so the streamed text equals the
//! plain answer's (but for the whitespace around text before a Hermes call, which the plain answer trims).

use llamagate_engine::{FinishReason, ParsedCall, ToolCallFormat};
use serde::Serialize;
use utoipa::ToSchema;

use crate::routes::chat_tools::ToolMode;

/// One call in `message.tool_calls`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ToolCallBody {
    /// `call_…`, unique: the `tool_call_id` the tool's answer is sent back with.
    pub id: String,
    /// Always `function`.
    #[serde(rename = "type")]
    #[schema(rename = "type")]
    pub kind: &'static str,
    /// What the model called.
    pub function: FunctionCallBody,
}

/// The function and arguments of a call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct FunctionCallBody {
    /// One of the request's tools.
    pub name: String,
    /// The arguments as JSON text, as the model wrote them (OpenAI: they may not be valid JSON, or may
    /// not match the schema; check them before calling the function).
    pub arguments: String,
}

/// One call in a stream's `delta.tool_calls`: here always the whole call in one delta.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ToolCallDelta {
    /// The call's position in the message's `tool_calls`.
    pub index: u32,
    /// `call_…`.
    pub id: String,
    /// Always `function`.
    #[serde(rename = "type")]
    #[schema(rename = "type")]
    pub kind: &'static str,
    /// The function's name and all of its arguments.
    pub function: FunctionCallBody,
}

/// How a request's answers are read for calls.
#[derive(Debug, Clone)]
pub struct ToolReader {
    format: ToolCallFormat,
    mode: ToolMode,
}

/// An answer's message: its text, and its calls when it made any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadAnswer {
    /// Null when the answer is only calls.
    pub content: Option<String>,
    /// The calls, in order; `None` when it made none.
    pub tool_calls: Option<Vec<ToolCallBody>>,
}

impl ToolReader {
    /// A reader for `mode` in the model's `format`; `None` when no tools are in play.
    pub fn new(format: ToolCallFormat, mode: ToolMode) -> Option<Self> {
        (mode != ToolMode::Off).then_some(Self { format, mode })
    }

    /// The calls in a whole output, or `None` when it is text. A forced call is always read as that
    /// call; with `auto`, calls to functions that are not among the tools make the output text, and
    /// `parallel_tool_calls: false` keeps the first of several.
    fn calls(&self, text: &str) -> Option<(Option<String>, Vec<ParsedCall>)> {
        match &self.mode {
            ToolMode::Off => None,
            ToolMode::Forced(name) => Some((None, vec![self.format.parse_primed(name, text)])),
            ToolMode::Required(call) => {
                let name = call.chosen.get()?;
                Some((None, vec![self.format.parse_primed(name, text)]))
            }
            ToolMode::Auto { names, single } => {
                let mut parsed = self.format.parse(text)?;
                if !parsed.calls.iter().all(|call| names.contains(&call.name)) {
                    return None;
                }
                if *single {
                    parsed.calls.truncate(1);
                }
                Some((parsed.content, parsed.calls))
            }
        }
    }

    /// The message of a plain answer.
    pub fn read(&self, text: String) -> ReadAnswer {
        match self.calls(&text) {
            Some((content, calls)) => ReadAnswer { content, tool_calls: Some(calls.into_iter().map(body).collect()) },
            None => ReadAnswer { content: Some(text), tool_calls: None },
        }
    }

    /// Whether the answer is a primed call (named, or chosen for `required`).
    fn primed(&self) -> bool {
        matches!(self.mode, ToolMode::Forced(_) | ToolMode::Required(_))
    }

    /// Where a stream's held text starts (see [`ToolCallFormat::held_from`]); a primed call holds all.
    fn held_from(&self, text: &str) -> Option<usize> {
        if self.primed() { Some(0) } else { self.format.held_from(text) }
    }
}

/// The finish reason of a choice: `tool_calls` when it ended on its own with calls, otherwise the
/// engine's (a call cut by `max_tokens` still says `length`).
pub fn finish_reason(reason: FinishReason, made_calls: bool) -> &'static str {
    if made_calls && reason == FinishReason::Stop { "tool_calls" } else { reason.as_str() }
}

fn body(call: ParsedCall) -> ToolCallBody {
    ToolCallBody {
        id: format!("call_{:024x}", rand::random::<u128>() >> 32),
        kind: "function",
        function: FunctionCallBody { name: call.name, arguments: call.arguments },
    }
}

/// One streamed choice's output so far, and how much of it was sent.
#[derive(Debug, Default)]
pub struct HeldOutput {
    text: String,
    released: usize,
    /// No call can start any more: every piece goes straight out.
    passing: bool,
}

/// How a streamed choice ends.
#[derive(Debug, PartialEq, Eq)]
pub enum StreamEnd {
    /// The held text was calls: sent as `delta.tool_calls`.
    Calls(Vec<ToolCallDelta>),
    /// The rest of the text, which turned out not to be calls (possibly empty).
    Text(String),
}

impl HeldOutput {
    /// Adds a piece of output; the text that can be sent now.
    pub fn push(&mut self, reader: &ToolReader, piece: &str) -> String {
        if self.passing {
            return piece.to_string();
        }
        self.text.push_str(piece);
        // What was sent holds no call's start (nor the first characters of one at its end), so only the
        // rest is searched: the JSON and pythonic formats send nothing while they hold, and Hermes
        // output is not searched from its start on every token.
        let until = match reader.held_from(&self.text[self.released..]) {
            Some(at) => self.released + at,
            None => {
                self.passing = reader.format.calls_open_the_output() && !reader.primed();
                self.text.len()
            }
        };
        let out = self.text[self.released..until].to_string();
        self.released = until;
        if self.passing {
            self.text = String::new();
            self.released = 0;
        }
        out
    }

    /// The end of the choice: its calls (unless `read_calls` is false: the output check cut it), or
    /// the text still held.
    pub fn finish(&mut self, reader: &ToolReader, read_calls: bool) -> StreamEnd {
        if read_calls
            && !self.passing
            && let Some((_, calls)) = reader.calls(&self.text)
        {
            let deltas = calls
                .into_iter()
                .enumerate()
                .map(|(index, call)| {
                    let ToolCallBody { id, kind, function } = body(call);
                    ToolCallDelta { index: index as u32, id, kind, function }
                })
                .collect();
            return StreamEnd::Calls(deltas);
        }
        StreamEnd::Text(self.text[self.released..].to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auto(format: ToolCallFormat) -> ToolReader {
        ToolReader::new(format, ToolMode::Auto { names: names(), single: false }).unwrap()
    }

    fn names() -> Vec<String> {
        vec!["a".into(), "b".into()]
    }

    /// Feeds `pieces`; what was sent as text on the way, and the end.
    fn stream(reader: &ToolReader, pieces: &[&str]) -> (String, StreamEnd) {
        let mut held = HeldOutput::default();
        let sent: String = pieces.iter().map(|p| held.push(reader, p)).collect();
        (sent, held.finish(reader, true))
    }

    #[test]
    fn a_plain_answer_reads_calls_or_text() {
        let reader = auto(ToolCallFormat::Llama3Json);
        let answer = reader.read(r#"{"name": "a", "parameters": {}}; {"name": "b", "parameters": {"x": 1}}"#.into());
        assert_eq!(answer.content, None);
        let calls = answer.tool_calls.unwrap();
        assert_eq!(calls.iter().map(|c| c.function.name.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(calls[1].function.arguments, r#"{"x":1}"#);
        assert!(calls[0].id.starts_with("call_") && calls[0].id != calls[1].id);
        let text = reader.read("{not a call".into());
        assert_eq!(text, ReadAnswer { content: Some("{not a call".into()), tool_calls: None });
        let single =
            ToolReader::new(ToolCallFormat::Llama3Json, ToolMode::Auto { names: names(), single: true }).unwrap();
        let answer = single.read(r#"{"name": "a", "parameters": {}}; {"name": "b", "parameters": {}}"#.into());
        assert_eq!(answer.tool_calls.unwrap().len(), 1);
        assert!(ToolReader::new(ToolCallFormat::Llama3Json, ToolMode::Off).is_none());
        // A call to a function the request did not offer is text.
        let unknown = r#"{"name": "rm_rf", "parameters": {}}"#;
        assert_eq!(reader.read(unknown.into()), ReadAnswer { content: Some(unknown.into()), tool_calls: None });
        assert_eq!(stream(&reader, &[unknown]), (String::new(), StreamEnd::Text(unknown.into())));
    }

    #[test]
    fn a_forced_call_is_always_that_call() {
        let reader = ToolReader::new(ToolCallFormat::Llama3Json, ToolMode::Forced("get_weather".into())).unwrap();
        let answer = reader.read(r#"{"city": "Paris"}}"#.into());
        let calls = answer.tool_calls.unwrap();
        assert_eq!(
            (calls[0].function.name.as_str(), calls[0].function.arguments.as_str()),
            ("get_weather", r#"{"city":"Paris"}"#)
        );
        let (sent, end) = stream(&reader, &["{\"city\"", ": \"Paris\"}}"]);
        assert_eq!(sent, "");
        assert!(matches!(end, StreamEnd::Calls(ref deltas) if deltas[0].function.arguments == r#"{"city":"Paris"}"#));
    }

    #[test]
    fn a_stream_holds_a_call_back_and_releases_text() {
        let reader = auto(ToolCallFormat::Llama3Json);
        let (sent, end) = stream(&reader, &[" {\"name\": \"a\",", " \"parameters\": {\"x\": 1}}"]);
        assert_eq!(sent, "");
        let StreamEnd::Calls(deltas) = end else { panic!("{end:?}") };
        assert_eq!((deltas[0].index, deltas[0].function.arguments.as_str()), (0, r#"{"x":1}"#));
        // Not a call from the first word: sent as it comes.
        assert_eq!(stream(&reader, &["Hello", " there"]), ("Hello there".into(), StreamEnd::Text(String::new())));
        // Looked like a call, was not: released at the end, whole.
        assert_eq!(stream(&reader, &["{", "oops} ok"]), (String::new(), StreamEnd::Text("{oops} ok".into())));
    }

    #[test]
    fn hermes_text_before_the_tag_goes_out_at_once() {
        let reader = auto(ToolCallFormat::Hermes);
        let (sent, end) =
            stream(&reader, &["Checking. <tool", "_call>\n{\"name\": \"a\", \"arguments\": {}}\n</tool_call>"]);
        assert_eq!(sent, "Checking. ");
        assert!(matches!(end, StreamEnd::Calls(ref d) if d.len() == 1 && d[0].function.name == "a"));
        assert_eq!(stream(&reader, &["a <", "b"]), ("a <b".into(), StreamEnd::Text(String::new())));
    }

    #[test]
    fn finish_reasons() {
        assert_eq!(finish_reason(FinishReason::Stop, true), "tool_calls");
        assert_eq!(finish_reason(FinishReason::Stop, false), "stop");
        assert_eq!(finish_reason(FinishReason::Length, true), "length");
    }
}
