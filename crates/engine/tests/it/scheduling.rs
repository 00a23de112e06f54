//! Continuous batching on the default model: chunked prefill interleaved with decoding, priorities,
//! the KV-cache budget and the bounded queue.

use std::time::{Duration, Instant};

use crate::support::*;
use llamagate_engine::{
    ChatMessage, EngineError, GenerateParams, GenerationEvent, GenerationOutput, GenerationStream, KvCacheType, Model,
    ModelOptions, ModelSource, SchedulerConfig,
};

fn model(scheduler: SchedulerConfig) -> Model {
    model_with_cache(scheduler, KvCacheType::F16)
}

fn model_with_cache(scheduler: SchedulerConfig, kv_cache_type: KvCacheType) -> Model {
    let options = ModelOptions { scheduler, kv_cache_type, ..Default::default() };
    Model::load(&ModelSource::Gguf(default_gguf()), &options).unwrap()
}

fn chat(m: &Model, user: &str) -> Vec<u32> {
    m.tokenize(&m.render_chat(&[ChatMessage::new("user", user)]).unwrap()).unwrap()
}

fn params(max_tokens: usize, priority: u8) -> GenerateParams {
    GenerateParams { max_tokens: Some(max_tokens), priority, ..Default::default() }
}

/// What happened, in the order the scheduler did it: `(stream index, event)`. Streams are polled in
/// index order, and before an event of stream `i` is logged every earlier stream is drained, so an
/// event the scheduler sent earlier on a lower-numbered stream is never logged after a later one.
fn event_log(
    streams: &mut [GenerationStream],
    until: impl Fn(&[(usize, GenerationEvent)]) -> bool,
) -> Vec<(usize, GenerationEvent)> {
    let mut log = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(300);
    while !until(&log) {
        assert!(Instant::now() < deadline, "timed out; log so far: {log:?}");
        let mut idle = true;
        for i in 0..streams.len() {
            if let Some(event) = streams[i].try_next() {
                for (j, earlier) in streams[..i].iter_mut().enumerate() {
                    while let Some(e) = earlier.try_next() {
                        log.push((j, e));
                    }
                }
                log.push((i, event));
                idle = false;
                break;
            }
        }
        if idle {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    log
}

fn is_text(e: &GenerationEvent) -> bool {
    matches!(e, GenerationEvent::Text { token: Some(_), .. })
}

fn done_count(log: &[(usize, GenerationEvent)]) -> usize {
    log.iter().filter(|(_, e)| matches!(e, GenerationEvent::Done(_) | GenerationEvent::Failed(_))).count()
}

#[test]
fn a_long_prompt_is_prefilled_between_decode_steps_of_running_streams() {
    let m = model(SchedulerConfig { prefill_chunk: 32, ..Default::default() });
    let running = m.prepare(chat(&m, "Tell me a very long story about a dragon."), params(400, 0)).unwrap();
    let mut streams = vec![m.submit(running).unwrap()];
    event_log(&mut streams, |log| log.iter().filter(|(_, e)| is_text(e)).count() >= 2);

    // About 400 prompt tokens: 13 chunks of 32 at one chunk per step.
    let long = chat(&m, &"The llama crossed the bridge and looked at the river below. ".repeat(30));
    assert!(long.len() > 350, "{}", long.len());
    streams.push(m.submit(m.prepare(long.clone(), params(1, 0)).unwrap()).unwrap());
    let log = event_log(&mut streams, |log| log.iter().any(|(i, e)| *i == 1 && is_text(e)));
    let tokens_during_prefill = log.iter().filter(|(i, e)| *i == 0 && is_text(e)).count();
    assert!(
        tokens_during_prefill >= long.len() / 32 - 2,
        "the running stream got {tokens_during_prefill} tokens while a {}-token prompt was prefilled",
        long.len()
    );
}

#[test]
fn higher_priority_requests_are_admitted_first() {
    let m = model(SchedulerConfig { max_batch: 1, ..Default::default() });
    let first = m.submit(m.prepare(chat(&m, "Count from one to twenty."), params(24, 0)).unwrap()).unwrap();
    let mut streams = vec![first];
    event_log(&mut streams, |log| log.iter().any(|(_, e)| is_text(e)));
    // While the only batch slot is busy: a low-priority request, then a high-priority one.
    streams.push(m.submit(m.prepare(chat(&m, "Say hello."), params(3, 0)).unwrap()).unwrap());
    streams.push(m.submit(m.prepare(chat(&m, "Say goodbye."), params(3, 9)).unwrap()).unwrap());
    let log = event_log(&mut streams, |log| done_count(log) == 3);
    let first_event = |stream: usize| log.iter().position(|(i, _)| *i == stream).unwrap();
    let done =
        |stream: usize| log.iter().position(|(i, e)| *i == stream && matches!(e, GenerationEvent::Done(_))).unwrap();
    assert!(done(0) < first_event(2), "the running request finishes before anything else starts");
    assert!(done(2) < first_event(1), "priority 9 ran before the earlier priority-0 request: {log:?}");
}

#[test]
fn a_long_wait_raises_a_request_above_fresher_higher_priority_ones() {
    // Ageing of one level per 20 ms: the priority-0 request has waited for several levels by the time
    // the slot frees, more than the priority-1 request submitted just before that.
    let ageing = std::time::Duration::from_millis(20);
    let m = model(SchedulerConfig { max_batch: 1, priority_ageing: ageing, ..Default::default() });
    let first = m.submit(m.prepare(chat(&m, "Count from one to twenty."), params(24, 0)).unwrap()).unwrap();
    let mut streams = vec![first];
    event_log(&mut streams, |log| log.iter().any(|(_, e)| is_text(e)));
    streams.push(m.submit(m.prepare(chat(&m, "Say hello."), params(3, 0)).unwrap()).unwrap());
    std::thread::sleep(ageing * 5);
    streams.push(m.submit(m.prepare(chat(&m, "Say goodbye."), params(3, 1)).unwrap()).unwrap());
    let log = event_log(&mut streams, |log| done_count(log) == 3);
    let first_event = |stream: usize| log.iter().position(|(i, _)| *i == stream).unwrap();
    let done =
        |stream: usize| log.iter().position(|(i, e)| *i == stream && matches!(e, GenerationEvent::Done(_))).unwrap();
    assert!(done(1) < first_event(2), "the long-waiting priority-0 request ran first: {log:?}");
}

#[test]
fn the_kv_budget_holds_back_requests_that_do_not_fit() {
    let probe = model(SchedulerConfig::default());
    let prompt = chat(&probe, "Name a colour.");
    let per_request = (prompt.len() + 8) * probe.kv_bytes_per_position();
    drop(probe);
    // Room for one such request, not two, although the batch has eight slots.
    let m = model(SchedulerConfig { kv_budget_bytes: Some(per_request + per_request / 2), ..Default::default() });
    let mut streams = vec![
        m.submit(m.prepare(prompt.clone(), params(8, 0)).unwrap()).unwrap(),
        m.submit(m.prepare(prompt.clone(), params(8, 0)).unwrap()).unwrap(),
    ];
    let log = event_log(&mut streams, |log| done_count(log) == 2);
    let done0 = log.iter().position(|(i, e)| *i == 0 && matches!(e, GenerationEvent::Done(_))).unwrap();
    let first1 = log.iter().position(|(i, _)| *i == 1).unwrap();
    assert!(done0 < first1, "the second request started before the first released its KV memory: {log:?}");

    // A request that can never fit is refused at once, with a reason, instead of waiting forever.
    let huge = m.prepare(prompt, params(1000, 0)).unwrap();
    match m.submit(huge) {
        Err(EngineError::InvalidRequest(reason)) => assert!(reason.contains("KV cache"), "{reason}"),
        other => panic!("expected InvalidRequest, got {other:?}"),
    }
}

#[test]
fn a_full_queue_refuses_at_once_with_busy() {
    let m = model(SchedulerConfig { max_batch: 1, queue_capacity: 1, ..Default::default() });
    let mut running = vec![m.submit(m.prepare(chat(&m, "Tell me a long story."), params(200, 0)).unwrap()).unwrap()];
    event_log(&mut running, |log| log.iter().any(|(_, e)| is_text(e)));
    let waiting = m.submit(m.prepare(chat(&m, "Hi."), params(2, 0)).unwrap()).unwrap();
    match m.submit(m.prepare(chat(&m, "Hello."), params(2, 0)).unwrap()) {
        Err(EngineError::Busy { retry_after_secs, .. }) => assert!(retry_after_secs >= 1),
        other => panic!("expected Busy, got {other:?}"),
    }
    drop(running);
    let out: GenerationOutput = waiting.collect_blocking().unwrap();
    assert!(!out.token_ids.is_empty(), "the queued request still runs once the slot frees");
}

#[test]
fn a_prompt_starting_like_an_earlier_one_reuses_its_keys_and_values_and_generates_the_same() {
    prefix_reuse_gives_what_a_fresh_prefill_gives(KvCacheType::F16);
}

#[test]
fn the_8bit_cache_is_reused_by_prefix_too() {
    prefix_reuse_gives_what_a_fresh_prefill_gives(KvCacheType::Q8_0);
}

/// Requests of different prefix scopes (the server's tenants) never reuse each other's prompts: a
/// reused prompt answers sooner, which would tell one tenant what another asked.
#[test]
fn prompts_are_reused_only_within_their_scope() {
    let m = model_with_cache(SchedulerConfig::default(), KvCacheType::F16);
    let prompt = chat(&m, "A secret question only one tenant asks?");
    let generate = |scope: u64| {
        let request = m.prepare(prompt.clone(), GenerateParams { prefix_scope: scope, ..params(2, 0) }).unwrap();
        m.submit(request).unwrap().collect_blocking().unwrap()
    };
    generate(1);
    generate(2);
    assert_eq!(m.stats().reused_prompt_tokens(), 0, "another scope reuses nothing");
    generate(1);
    assert_eq!(m.stats().reused_prompt_tokens(), (prompt.len() - 2) as u64, "the same scope reuses its prompt");
}

fn prefix_reuse_gives_what_a_fresh_prefill_gives(kv_cache_type: KvCacheType) {
    let m = model_with_cache(SchedulerConfig::default(), kv_cache_type);
    let question = "Name three colours of the rainbow and say which one is in the middle.";
    let prompt = chat(&m, question);
    let generate = |prompt: Vec<u32>| -> GenerationOutput {
        m.submit(m.prepare(prompt, params(12, 0)).unwrap()).unwrap().collect_blocking().unwrap()
    };
    let first = generate(prompt.clone());
    assert_eq!(m.stats().reused_prompt_tokens(), 0, "nothing to reuse yet");
    let again = generate(prompt.clone());
    // All but the last two tokens came from the first request's cache, and the answer is the same.
    assert_eq!(m.stats().reused_prompt_tokens(), (prompt.len() - 2) as u64);
    assert_eq!(again.token_ids, first.token_ids);

    // Another question shares the chat template's start: that much is reused, and the answer equals
    // the one a model without the earlier prompts gives.
    let other = chat(&m, "What is the capital of France?");
    let shared = other.iter().zip(&prompt).take_while(|(a, b)| a == b).count();
    assert!(shared >= 8, "the template's start is shared ({shared} tokens)");
    let reused_before = m.stats().reused_prompt_tokens();
    let answer = generate(other.clone());
    assert_eq!(m.stats().reused_prompt_tokens() - reused_before, shared as u64);
    let fresh =
        model_with_cache(SchedulerConfig { prefix_cache_bytes: 0, ..SchedulerConfig::default() }, kv_cache_type);
    let expected = fresh.submit(fresh.prepare(other, params(12, 0)).unwrap()).unwrap().collect_blocking().unwrap();
    assert_eq!(answer.token_ids, expected.token_ids);
    assert_eq!(fresh.stats().reused_prompt_tokens(), 0);
}

/// Names of this process's threads (Linux: `/proc/self/task/*/comm`).
fn thread_names() -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .map(|name| name.trim_end().to_string())
        .collect()
}

#[test]
fn a_model_with_its_own_thread_count_runs_on_its_own_team_and_answers_the_same() {
    let shared = model(SchedulerConfig::default());
    let own = model(SchedulerConfig { threads: Some(3), ..Default::default() });
    let prompt = chat(&shared, "Name three colours of the rainbow.");
    let generate = |m: &Model| m.submit(m.prepare(prompt.clone(), params(16, 0)).unwrap()).unwrap().collect_blocking();
    let expected = generate(&shared).unwrap();
    let answer = generate(&own).unwrap();
    // The work is split differently, the arithmetic per row and head is not: the same tokens.
    assert_eq!(answer.token_ids, expected.token_ids);
    // The tests run the shared team on one thread (no helpers); the model's own team of three is the
    // scheduler's thread and two helpers, started when its scheduler started.
    let helpers = thread_names().iter().filter(|name| name.starts_with("llamagate-cpu-")).count();
    assert!(helpers >= 2, "{:?}", thread_names());
}

/// `n` choices share one prefill: the prompt is computed once (the scheduler's counter grows by the
/// prompt, not by n prompts), each choice samples with its own seed — reproducible, different from the
/// others at temperature 1. (Choice 0 keeps the request's seed, but is not compared with a single
/// request's answer: a batch of three rounds its logits differently than a batch of one, and a draw near a
/// boundary can then go the other way.)
#[test]
fn choices_fork_after_one_prefill_and_sample_with_their_own_seeds() {
    let m = model(SchedulerConfig { prefix_cache_bytes: 0, ..SchedulerConfig::default() });
    let prompt = chat(&m, "Write a short poem about the sea.");
    let sampled = GenerateParams {
        max_tokens: Some(16),
        sampling: llamagate_engine::SamplingParams { temperature: 1.0, seed: Some(42), ..Default::default() },
        ..Default::default()
    };
    let choices = |n: usize| -> Vec<Vec<u32>> {
        let before = m.stats().prefilled_prompt_tokens();
        let request = m.prepare(prompt.clone(), sampled.clone()).unwrap();
        let streams = m.submit_choices(request, n).unwrap();
        assert_eq!(streams.len(), n);
        let outputs: Vec<_> = streams.into_iter().map(|s| s.collect_blocking().unwrap()).collect();
        assert_eq!(m.stats().prefilled_prompt_tokens() - before, prompt.len() as u64, "the prompt ran once");
        for output in &outputs {
            assert_eq!(output.summary.usage.prompt_tokens, prompt.len());
            assert!(output.summary.usage.completion_tokens > 0);
        }
        outputs.into_iter().map(|o| o.token_ids).collect()
    };
    let three = choices(3);
    assert_ne!(three[0], three[1]);
    assert_ne!(three[1], three[2]);
    assert_eq!(choices(3), three, "same seed, same choices");
    let request = m.prepare(prompt.clone(), sampled).unwrap();
    assert!(matches!(m.submit_choices(request.clone(), 0), Err(EngineError::InvalidRequest(_))));
    assert!(matches!(m.submit_choices(request, 9), Err(EngineError::InvalidRequest(_))), "more than the batch");
}

/// A finished sequence's KV pages wait in the model for the next one instead of going back to the
/// allocator (resident memory then stops swinging with the load), and a sequence built on reused pages
/// answers exactly as one on fresh pages: reused pages come back zeroed.
#[test]
fn freed_kv_pages_are_reused_by_the_next_sequence_and_change_nothing() {
    freed_kv_pages_are_reused(KvCacheType::F16);
}

#[test]
fn freed_8bit_kv_pages_are_reused_too() {
    freed_kv_pages_are_reused(KvCacheType::Q8_0);
}

fn freed_kv_pages_are_reused(kv_cache_type: KvCacheType) {
    // No prefix cache: a finished sequence's cache is dropped whole, not kept for its prompt.
    let m = model_with_cache(SchedulerConfig { prefix_cache_bytes: 0, ..SchedulerConfig::default() }, kv_cache_type);
    assert_eq!(m.freed_kv_page_bytes(), 0);
    let prompt = chat(&m, "Name three colours of the rainbow and say which one is in the middle.");
    let generate = || m.submit(m.prepare(prompt.clone(), params(24, 0)).unwrap()).unwrap().collect_blocking().unwrap();
    // The cache is dropped on the scheduler's thread just after the last event: wait for its pages.
    let settled_free_bytes = || {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let free = m.freed_kv_page_bytes();
            if free > 0 || Instant::now() > deadline {
                return free;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    let first = generate();
    let kept = settled_free_bytes();
    assert!(kept > 0, "the finished sequence's pages are kept");
    let again = generate();
    assert_eq!(again.token_ids, first.token_ids, "reused pages answer as fresh ones");
    assert_eq!(settled_free_bytes(), kept, "the second sequence took the kept pages rather than new ones");
}
