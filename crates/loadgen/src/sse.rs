//! Reading a streamed completion: server-sent events in, token timings out.
//!
//! [`SseParser`] splits the byte stream into events (WHATWG "event stream" framing: events end at a
//! blank line, `data:` lines of one event are joined with `\n`, lines starting with `:` are comments —
//! the keep-alives servers send to slow streams). Network chunks can end anywhere, even inside a
//! line, so the parser keeps the unfinished tail until the next chunk.
//!
//! [`StreamTally`] reads each event's data the way the OpenAI and Llama Stack streaming formats
//! define it: `[DONE]` ends the stream, a chunk with non-empty `choices[0].delta.content` (chat) or
//! `choices[0].text` (completions) is generated text, a chunk with `usage` carries the server's
//! token count, and `{"error": …}` is a failure reported after the status line was already sent.
//! Time to first token is measured to the first chunk that carries text (not to the role-only
//! opening chunk); inter-token latency is the gap between consecutive text chunks.

use std::time::{Duration, Instant};

use serde::Deserialize;

/// Splits a byte stream into the `data` payloads of its events.
#[derive(Debug, Default)]
pub struct SseParser {
    /// Bytes of the line that has not ended yet.
    partial: Vec<u8>,
    /// The `data` lines of the event that has not ended yet, joined by `\n`.
    data: String,
    /// Whether the current event has any `data` line (an empty `data:` still makes an event).
    has_data: bool,
}

impl SseParser {
    /// A parser at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds one network chunk and calls `on_event` with the data of every event it completes.
    pub fn push(&mut self, bytes: &[u8], mut on_event: impl FnMut(&str)) {
        let mut rest = bytes;
        while let Some(end) = rest.iter().position(|&b| b == b'\n') {
            let (line, tail) = rest.split_at(end);
            rest = &tail[1..];
            if self.partial.is_empty() {
                self.line(line, &mut on_event);
            } else {
                let mut joined = std::mem::take(&mut self.partial);
                joined.extend_from_slice(line);
                self.line(&joined, &mut on_event);
            }
        }
        self.partial.extend_from_slice(rest);
    }

    /// Handles one complete line (without its `\n`).
    fn line(&mut self, line: &[u8], on_event: &mut impl FnMut(&str)) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            if self.has_data {
                on_event(&self.data);
            }
            self.data.clear();
            self.has_data = false;
            return;
        }
        let Some(value) = line.strip_prefix(b"data:") else {
            // Comments (`:`), `event:`, `id:` and `retry:` lines carry nothing we measure.
            return;
        };
        let value = value.strip_prefix(b" ").unwrap_or(value);
        if self.has_data {
            self.data.push('\n');
        }
        self.data.push_str(&String::from_utf8_lossy(value));
        self.has_data = true;
    }
}

/// What the stream said so far.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    /// A chunk that carried no text (the role announcement, the finish reason, usage).
    Quiet,
    /// A chunk with generated text.
    Text,
    /// `[DONE]`: the stream is complete.
    Done,
}

/// Why a stream did not complete.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamError {
    /// An `{"error": …}` event: the server failed after sending the status line.
    Server(String),
    /// A data payload that is not JSON.
    Malformed(String),
}

/// Timings and counts of one streamed response.
#[derive(Debug, Clone)]
pub struct StreamTally {
    started: Instant,
    first_text: Option<Instant>,
    last_text: Option<Instant>,
    gaps: Vec<Duration>,
    text_chunks: u64,
    usage_tokens: Option<u64>,
    done: bool,
}

/// The parts of a stream chunk we read; everything else is ignored.
#[derive(Deserialize)]
struct Chunk {
    #[serde(default)]
    choices: Vec<ChunkChoice>,
    #[serde(default)]
    usage: Option<Usage>,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct ChunkChoice {
    #[serde(default)]
    delta: Option<Delta>,
    #[serde(default)]
    text: Option<String>,
}

#[derive(Deserialize)]
struct Delta {
    #[serde(default)]
    content: Option<String>,
}

/// OpenAI's `usage` object (only the field we need).
#[derive(Deserialize)]
pub struct Usage {
    /// Tokens the model generated.
    #[serde(default)]
    pub completion_tokens: Option<u64>,
}

impl StreamTally {
    /// A tally for a request sent at `started`.
    pub fn new(started: Instant) -> Self {
        Self {
            started,
            first_text: None,
            last_text: None,
            gaps: Vec::new(),
            text_chunks: 0,
            usage_tokens: None,
            done: false,
        }
    }

    /// Reads one event's data, received at `now`.
    pub fn on_data(&mut self, data: &str, now: Instant) -> Result<StreamEvent, StreamError> {
        if data.trim() == "[DONE]" {
            self.done = true;
            return Ok(StreamEvent::Done);
        }
        let chunk: Chunk = serde_json::from_str(data).map_err(|e| StreamError::Malformed(e.to_string()))?;
        if let Some(error) = chunk.error {
            return Err(StreamError::Server(error.to_string()));
        }
        if let Some(tokens) = chunk.usage.and_then(|u| u.completion_tokens) {
            self.usage_tokens = Some(tokens);
        }
        let has_text = chunk.choices.iter().any(|choice| {
            let delta = choice.delta.as_ref().and_then(|d| d.content.as_deref());
            delta.or(choice.text.as_deref()).is_some_and(|t| !t.is_empty())
        });
        if !has_text {
            return Ok(StreamEvent::Quiet);
        }
        self.text_chunks += 1;
        match self.last_text {
            None => self.first_text = Some(now),
            Some(last) => self.gaps.push(now.saturating_duration_since(last)),
        }
        self.last_text = Some(now);
        Ok(StreamEvent::Text)
    }

    /// Whether `[DONE]` arrived.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Time from sending the request to the first text chunk.
    pub fn ttft(&self) -> Option<Duration> {
        self.first_text.map(|t| t.saturating_duration_since(self.started))
    }

    /// Gaps between consecutive text chunks.
    pub fn inter_token_gaps(&self) -> &[Duration] {
        &self.gaps
    }

    /// Generated tokens: the server's `usage.completion_tokens` when it sent one, else the number of
    /// text chunks (one token per chunk is how OpenAI-compatible servers stream).
    pub fn output_tokens(&self) -> u64 {
        self.usage_tokens.unwrap_or(self.text_chunks)
    }

    /// Consumes the tally, keeping the gaps.
    pub fn into_gaps(self) -> Vec<Duration> {
        self.gaps
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(chunks: &[&str]) -> Vec<String> {
        let mut parser = SseParser::new();
        let mut out = Vec::new();
        for chunk in chunks {
            parser.push(chunk.as_bytes(), |data| out.push(data.to_string()));
        }
        out
    }

    #[test]
    fn events_split_anywhere_are_reassembled() {
        let body = "data: {\"a\":1}\n\n: keep-alive\n\ndata: {\"b\":2}\r\n\r\ndata: [DONE]\n\n";
        let whole = events(&[body]);
        assert_eq!(whole, vec!["{\"a\":1}", "{\"b\":2}", "[DONE]"]);
        for split in 0..body.len() {
            assert_eq!(events(&[&body[..split], &body[split..]]), whole, "split at {split}");
        }
    }

    #[test]
    fn multi_line_data_is_joined() {
        assert_eq!(events(&["event: x\ndata: a\ndata:b\nid: 1\n\n"]), vec!["a\nb"]);
    }

    #[test]
    fn tally_counts_text_chunks_and_prefers_usage() {
        let start = Instant::now();
        let at = |ms| start + Duration::from_millis(ms);
        let mut tally = StreamTally::new(start);
        let role = r#"{"choices":[{"delta":{"role":"assistant","content":""}}]}"#;
        assert_eq!(tally.on_data(role, at(5)), Ok(StreamEvent::Quiet));
        for (i, ms) in [10, 30, 60].into_iter().enumerate() {
            let text = format!(r#"{{"choices":[{{"delta":{{"content":"t{i}"}}}}]}}"#);
            assert_eq!(tally.on_data(&text, at(ms)), Ok(StreamEvent::Text));
        }
        assert_eq!(tally.ttft(), Some(Duration::from_millis(10)));
        assert_eq!(tally.inter_token_gaps(), &[Duration::from_millis(20), Duration::from_millis(30)]);
        assert_eq!(tally.output_tokens(), 3);
        tally.on_data(r#"{"choices":[],"usage":{"completion_tokens":4}}"#, at(61)).unwrap();
        assert_eq!(tally.output_tokens(), 4);
        assert_eq!(tally.on_data("[DONE]", at(62)), Ok(StreamEvent::Done));
        assert!(tally.is_done());
    }

    #[test]
    fn completions_text_and_errors() {
        let start = Instant::now();
        let mut tally = StreamTally::new(start);
        assert_eq!(tally.on_data(r#"{"choices":[{"text":"hi"}]}"#, start), Ok(StreamEvent::Text));
        assert!(matches!(tally.on_data(r#"{"error":{"message":"boom"}}"#, start), Err(StreamError::Server(_))));
        assert!(matches!(tally.on_data("not json", start), Err(StreamError::Malformed(_))));
    }
}
