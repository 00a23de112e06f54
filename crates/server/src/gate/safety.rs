//! Content safety on chat and completions (docs/architecture.md, steps "input safety" and "output
//! safety").
//!
//! [`SafetyGate`] exists when `oauth_config.enforce_content_safety` is on and a shield is configured:
//! the top-level `safety_shield` names it, else the first shield. Per request, [`SafetyChecks`] holds
//! the gate and the caller's safety level (picked from its scopes by the authentication layer, or
//! `default_safety_level` without a token)
//! and applies it twice:
//!
//! - **Input**, after the rate-limit reservation and before generation: the conversation (normalised as
//!   for `run-shield`, its last turn judged) is scored by the shield and decided by
//!   [`llamagate_authz::SafetyPolicy`]. A refusal is [`ApiError::ContentPolicy`] (400,
//!   `type: content_policy_violation`, the violated categories) and a `security_safety_refusal` audit
//!   record; the rate-limit admission is charged the request and its prompt tokens (what the check read),
//!   nothing for generation. Checking after the reservation means a caller over its limit gets its 429
//!   without costing a guard pass.
//! - **Output**, by wrapping the engine stream in a [`GuardedGeneration`]. Streaming: text is held back
//!   until a sentence ends ([`sentence_end`]); then everything generated so far is judged as the
//!   assistant's turn, and the sentence is released only if it passes — so refused text never reaches
//!   the client. A refusal ends the stream with `finish_reason: "content_filter"` (usage counts what was
//!   generated; the engine's generation is cancelled). Non-streaming: the whole text is judged once, and
//!   a refusal answers 200 with the refusal message as the content and `finish_reason: "content_filter"`.
//!
//! Each check is one guard prefill (see `shields`), so an output check per sentence is costly with a real
//! Llama Guard model on a CPU; the trade is deliberate: nothing unchecked is ever sent.

use std::collections::VecDeque;
use std::sync::Arc;

use llamagate_authz::SafetyPolicy;
use llamagate_engine::{
    ChatMessage, FinishReason, GenerationEvent, GenerationOutput, GenerationStream, GenerationSummary, Timings,
    TokenLogprobs, Usage, normalize_conversation,
};

use crate::backends::shields::{REFUSAL_MESSAGE, ServedShield, ShieldRegistry};
use crate::gate::caller::Caller;
use crate::gate::limits::Admission;
use crate::http::error::ApiError;

/// The shield that guards generation, and the policy that decides its scores.
#[derive(Debug)]
pub struct SafetyGate {
    shield: Arc<ServedShield>,
    policy: Arc<SafetyPolicy>,
}

impl SafetyGate {
    /// The gate, or `None` when enforcement is off (`policy` is `None`) or there is no shield to run.
    /// `chosen` is the config's `safety_shield` (already validated to name a shield).
    pub fn new(policy: Option<Arc<SafetyPolicy>>, chosen: Option<&str>, shields: &ShieldRegistry) -> Option<Arc<Self>> {
        let policy = policy?;
        let shield = match chosen {
            Some(id) => shields.get(id),
            None => shields.all().first().cloned(),
        };
        let Some(shield) = shield else {
            tracing::warn!("enforce_content_safety is on but no shield is configured: chat is not checked");
            return None;
        };
        tracing::info!(shield = %shield.id, default_level = %policy.level_name_for(None), "content safety enforced");
        Some(Arc::new(Self { shield, policy }))
    }

    /// The violated categories of the last turn of `conversation` at `level`, or `None` when it passes.
    async fn violations(
        &self,
        caller: &Caller,
        level: &str,
        conversation: Vec<ChatMessage>,
    ) -> Result<Option<Vec<String>>, ApiError> {
        let level_table = self
            .policy
            .level(level)
            .ok_or_else(|| ApiError::Internal(format!("safety level `{level}` is not configured")))?;
        let scores = self.shield.score(conversation, caller.prefix_scope()).await?;
        let decision =
            self.policy.decide(scores.categories.iter().map(|c| (c.category.code, c.probability)), level_table);
        Ok((!decision.allowed).then(|| decision.violated_names().into_iter().map(String::from).collect()))
    }
}

/// One request's safety checks: nothing when there is no gate.
#[derive(Debug)]
pub struct SafetyChecks {
    active: Option<Active>,
}

#[derive(Debug, Clone)]
struct Active {
    gate: Arc<SafetyGate>,
    level: String,
    caller: Caller,
}

impl SafetyChecks {
    /// The checks for `caller`, at the level its scopes picked (the default level without a token).
    pub fn new(gate: Option<&Arc<SafetyGate>>, caller: &Caller) -> Self {
        let active = gate.map(|gate| {
            let level = caller.safety_level().unwrap_or_else(|| gate.policy.level_name_for(None)).to_string();
            Active { gate: gate.clone(), level, caller: caller.clone() }
        });
        Self { active }
    }

    /// Checks the input conversation; a refusal is audited and returned as [`ApiError::ContentPolicy`],
    /// and `admission` is then charged the request and its prompt tokens (what the check read) — never
    /// the generation that did not happen.
    pub async fn check_input(&self, conversation: &[ChatMessage], admission: &mut Admission) -> Result<(), ApiError> {
        let Some(active) = &self.active else { return Ok(()) };
        let conversation = normalize_conversation(conversation.to_vec())?;
        match active.gate.violations(&active.caller, &active.level, conversation).await? {
            None => Ok(()),
            Some(categories) => {
                active.refused("input", &categories);
                admission.started();
                Err(ApiError::ContentPolicy { level: active.level.clone(), categories })
            }
        }
    }

    /// Wraps `generation` so that its output is checked as the assistant's reply to `conversation`;
    /// `prompt_tokens` is what a mid-stream refusal reports as usage. Called once per choice: each
    /// choice of a request is checked on its own.
    pub fn guard_output(
        &self,
        generation: GenerationStream,
        conversation: &[ChatMessage],
        prompt_tokens: usize,
    ) -> GuardedGeneration {
        let check = self.active.clone().map(|active| OutputCheck {
            judge: ReplyJudge { active, conversation: conversation.to_vec() },
            released: String::new(),
            held: String::new(),
            held_logprobs: Vec::new(),
            prompt_tokens,
            completion_tokens: 0,
            queued: VecDeque::new(),
            ended: false,
        });
        GuardedGeneration { inner: generation, check }
    }
}

impl Active {
    fn refused(&self, stage: &str, categories: &[String]) {
        let categories = categories.join(",");
        tracing::info!(stage, level = %self.level, %categories, "content safety refusal");
        self.caller.note_safety_refusal(&categories);
    }
}

/// An engine stream whose text passes the output check before anyone sees it (see the module docs).
#[derive(Debug)]
pub struct GuardedGeneration {
    inner: GenerationStream,
    check: Option<OutputCheck<ReplyJudge>>,
}

/// Judges the assistant's text so far: the violated categories, or `None` when it passes. A trait so the
/// holding-back logic of [`OutputCheck`] can be tested without a guard model.
trait OutputJudge {
    fn violations(&self, text: &str) -> impl Future<Output = Result<Option<Vec<String>>, ApiError>> + Send;
}

/// The real judge: the text as the assistant's reply to the request's conversation, through the gate;
/// a refusal is audited.
#[derive(Debug)]
struct ReplyJudge {
    active: Active,
    conversation: Vec<ChatMessage>,
}

impl OutputJudge for ReplyJudge {
    async fn violations(&self, text: &str) -> Result<Option<Vec<String>>, ApiError> {
        let mut conversation = normalize_conversation(self.conversation.clone())?;
        conversation.push(ChatMessage::new("assistant", text));
        let violations = self.active.gate.violations(&self.active.caller, &self.active.level, conversation).await?;
        if let Some(categories) = &violations {
            self.active.refused("output", categories);
        }
        Ok(violations)
    }
}

#[derive(Debug)]
struct OutputCheck<J> {
    judge: J,
    /// Text already judged safe and handed on.
    released: String,
    /// Text since the last sentence that passed, not yet judged.
    held: String,
    /// The log-probabilities of the tokens behind `held` (they would spell it): released with it,
    /// dropped with it when it is refused.
    held_logprobs: Vec<TokenLogprobs>,
    prompt_tokens: usize,
    completion_tokens: usize,
    /// Events to hand on before reading the engine again.
    queued: VecDeque<GenerationEvent>,
    /// The check ended the stream (refusal or failure): nothing more is read.
    ended: bool,
}

impl<J: OutputJudge> OutputCheck<J> {
    /// The summary of a stream cut short by a refusal: what was generated, `content_filter`.
    fn filtered(&self, usage: Option<Usage>) -> GenerationEvent {
        let usage =
            usage.unwrap_or(Usage { prompt_tokens: self.prompt_tokens, completion_tokens: self.completion_tokens });
        GenerationEvent::Done(GenerationSummary {
            finish_reason: FinishReason::ContentFilter,
            usage,
            timings: Timings::default(),
        })
    }

    /// The next event after the engine produced `event`.
    async fn on_event(&mut self, event: GenerationEvent) -> GenerationEvent {
        match event {
            GenerationEvent::Text { text, token, logprobs } => {
                self.completion_tokens += usize::from(token.is_some());
                self.held.push_str(&text);
                self.held_logprobs.extend(logprobs);
                let Some(end) = sentence_end(&self.held) else {
                    // Nothing to release yet; the token is still handed on so that it is counted.
                    return GenerationEvent::Text { text: String::new(), token, logprobs: Vec::new() };
                };
                let candidate = format!("{}{}", self.released, &self.held[..end]);
                match self.judge.violations(&candidate).await {
                    Ok(None) => {
                        let sentence: String = self.held.drain(..end).collect();
                        self.released.push_str(&sentence);
                        // A sentence ends inside the last token's text at most: the tokens held so far
                        // go with it (the rest of that token's text follows with the next sentence).
                        let logprobs = std::mem::take(&mut self.held_logprobs);
                        GenerationEvent::Text { text: sentence, token, logprobs }
                    }
                    Ok(Some(_)) => {
                        self.ended = true;
                        self.filtered(None)
                    }
                    Err(e) => self.failed(e),
                }
            }
            GenerationEvent::Done(summary) => {
                self.ended = true;
                if self.held.trim().is_empty() {
                    self.queued.push_back(GenerationEvent::Done(summary));
                    return self.release_held();
                }
                let whole = format!("{}{}", self.released, self.held);
                match self.judge.violations(&whole).await {
                    Ok(None) => {
                        self.queued.push_back(GenerationEvent::Done(summary));
                        self.release_held()
                    }
                    Ok(Some(_)) => self.filtered(Some(summary.usage)),
                    Err(e) => self.failed(e),
                }
            }
            other => {
                self.ended = true;
                other
            }
        }
    }

    /// The text still held, with its tokens' log-probabilities, once the whole text passed.
    fn release_held(&mut self) -> GenerationEvent {
        let logprobs = std::mem::take(&mut self.held_logprobs);
        GenerationEvent::Text { text: std::mem::take(&mut self.held), token: None, logprobs }
    }

    fn failed(&mut self, error: ApiError) -> GenerationEvent {
        self.ended = true;
        GenerationEvent::Failed(format!("output safety check failed: {error}"))
    }
}

impl GuardedGeneration {
    /// The next event, as [`GenerationStream::next`], with unchecked text held back.
    pub async fn next(&mut self) -> Option<GenerationEvent> {
        let Some(check) = &mut self.check else { return self.inner.next().await };
        if let Some(event) = check.queued.pop_front() {
            return Some(event);
        }
        if check.ended {
            return None;
        }
        let event = self.inner.next().await?;
        Some(check.on_event(event).await)
    }

    /// The whole generation, its text judged once; a refused text is replaced by the refusal message
    /// and `finish_reason` becomes `content_filter`. `on_token` runs for every generated token as it
    /// comes, so a caller that goes away mid-generation is charged what was generated until then.
    pub async fn collect(mut self, mut on_token: impl FnMut()) -> Result<GenerationOutput, ApiError> {
        let mut output = GenerationOutput::default();
        loop {
            let Some(event) = self.inner.next().await else {
                return Err(ApiError::Unavailable("the generation ended without a result".into()));
            };
            if matches!(event, GenerationEvent::Text { token: Some(_), .. }) {
                on_token();
            }
            if output.absorb(event)? {
                break;
            }
        }
        let Some(check) = self.check else { return Ok(output) };
        if output.text.trim().is_empty() {
            return Ok(output);
        }
        if check.judge.violations(&output.text).await?.is_some() {
            output.text = REFUSAL_MESSAGE.to_string();
            // The refused text's tokens would spell it: they go with it.
            output.logprobs.clear();
            output.summary.finish_reason = FinishReason::ContentFilter;
        }
        Ok(output)
    }
}

/// The byte offset just past the last complete sentence in `text`, or `None` when no sentence has ended.
/// A sentence ends at `.`, `!`, `?` or `…` followed by whitespace (the whitespace is included, and
/// must have arrived: "3." may still become "3.14"), at a line break, or at CJK `。！？`.
pub fn sentence_end(text: &str) -> Option<usize> {
    let mut end = None;
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let next = chars.peek().map(|&(_, n)| n);
        match c {
            '\n' | '。' | '！' | '？' => end = Some(i + c.len_utf8()),
            '.' | '!' | '?' | '…' => {
                if let Some(space) = next.filter(|n| n.is_whitespace()) {
                    end = Some(i + c.len_utf8() + space.len_utf8());
                }
            }
            _ => {}
        }
    }
    end
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentences_end_at_punctuation_followed_by_whitespace_or_at_a_line_break() {
        assert_eq!(sentence_end("Hello there"), None);
        assert_eq!(sentence_end("Hello."), None, "the next piece may continue the token (3.14, e.g.)");
        assert_eq!(sentence_end("Pi is 3.14"), None);
        assert_eq!(sentence_end("Hi. Then"), Some(4));
        assert_eq!(sentence_end("Hi! What? Now"), Some(10), "the last boundary wins");
        assert_eq!(sentence_end("a list:\n- item"), Some(8));
        assert_eq!(sentence_end("Wait… ok"), Some("Wait… ".len()));
        assert_eq!(sentence_end("你好。再见"), Some("你好。".len()));
        assert_eq!(sentence_end("Hi.\u{a0}x"), Some(5), "any Unicode whitespace counts");
    }

    /// Refuses any text containing `word` (as violence); counts its calls.
    struct Refuses {
        word: &'static str,
        calls: std::sync::atomic::AtomicUsize,
    }

    impl OutputJudge for Refuses {
        async fn violations(&self, text: &str) -> Result<Option<Vec<String>>, ApiError> {
            self.calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Ok(text.contains(self.word).then(|| vec!["violence".to_string()]))
        }
    }

    fn check(word: &'static str) -> OutputCheck<Refuses> {
        OutputCheck {
            judge: Refuses { word, calls: Default::default() },
            released: String::new(),
            held: String::new(),
            held_logprobs: Vec::new(),
            prompt_tokens: 5,
            completion_tokens: 0,
            queued: VecDeque::new(),
            ended: false,
        }
    }

    fn text(text: &str) -> GenerationEvent {
        GenerationEvent::Text { text: text.to_string(), token: Some(7), logprobs: Vec::new() }
    }

    fn done(finish_reason: FinishReason, completion_tokens: usize) -> GenerationEvent {
        let usage = Usage { prompt_tokens: 5, completion_tokens };
        GenerationEvent::Done(GenerationSummary { finish_reason, usage, timings: Timings::default() })
    }

    fn calls(check: &OutputCheck<Refuses>) -> usize {
        check.judge.calls.load(std::sync::atomic::Ordering::Relaxed)
    }

    #[tokio::test]
    async fn a_sentence_is_sent_only_after_the_text_so_far_passes_and_a_refusal_ends_the_stream() {
        let mut check = check("bad");
        // No sentence has ended: nothing is sent or judged, but the token is handed on to be counted.
        assert_eq!(check.on_event(text("Hello")).await, text(""));
        assert_eq!(calls(&check), 0);
        assert_eq!(check.on_event(text(" there. The")).await, text("Hello there. "));
        assert_eq!((calls(&check), check.held.as_str()), (1, "The"));
        // The next sentence is refused: the stream ends with `content_filter` and the tokens so far.
        assert_eq!(check.on_event(text(" bad part. More")).await, done(FinishReason::ContentFilter, 3));
        assert!(check.ended);
        assert_eq!(check.released, "Hello there. ", "the refused sentence was never released");
    }

    #[tokio::test]
    async fn the_rest_after_the_last_sentence_is_judged_when_generation_ends() {
        let mut passing = check("bad");
        assert_eq!(passing.on_event(text("All fine")).await, text(""));
        assert_eq!(
            passing.on_event(done(FinishReason::Stop, 1)).await,
            GenerationEvent::Text { text: "All fine".into(), token: None, logprobs: Vec::new() }
        );
        assert_eq!(passing.queued.pop_front(), Some(done(FinishReason::Stop, 1)));
        assert_eq!(calls(&passing), 1);

        let mut refused = check("bad");
        refused.on_event(text("A bad end")).await;
        // The engine's real usage is kept; only the finish reason changes.
        assert_eq!(refused.on_event(done(FinishReason::Length, 9)).await, done(FinishReason::ContentFilter, 9));
        assert!(refused.queued.is_empty());
    }

    fn with_logprob(piece: &str) -> GenerationEvent {
        let chosen = llamagate_engine::LogprobToken {
            id: 7,
            text: piece.to_string(),
            bytes: piece.as_bytes().to_vec(),
            logprob: -0.5,
        };
        GenerationEvent::Text {
            text: piece.to_string(),
            token: Some(7),
            logprobs: vec![TokenLogprobs { chosen, top: Vec::new() }],
        }
    }

    fn spelled(event: &GenerationEvent) -> String {
        match event {
            GenerationEvent::Text { logprobs, .. } => logprobs.iter().map(|l| l.chosen.text.as_str()).collect(),
            _ => String::new(),
        }
    }

    #[tokio::test]
    async fn logprobs_are_held_with_their_text_and_dropped_with_a_refused_sentence() {
        let mut check = check("bad");
        let held = check.on_event(with_logprob("Hello")).await;
        assert_eq!(spelled(&held), "", "held text's tokens are held too");
        let released = check.on_event(with_logprob(" there. The")).await;
        assert_eq!(spelled(&released), "Hello there. The", "released with the sentence they end in");
        // The refused sentence's tokens never leave the check: the stream ends with `content_filter`.
        assert_eq!(spelled(&check.on_event(with_logprob(" bad")).await), "");
        assert_eq!(check.on_event(with_logprob(" part. More")).await, done(FinishReason::ContentFilter, 4));
        assert!(check.queued.is_empty() && check.ended);
    }

    #[test]
    fn without_a_gate_nothing_is_checked() {
        let checks = SafetyChecks::new(None, &Caller::default());
        assert!(checks.active.is_none());
    }
}
