//! The scheduler: one thread per model that owns every running sequence and steps them together
//! (continuous batching).
//!
//! Every iteration is one forward call: one token for each decoding sequence, plus the next chunk of
//! the oldest prompt still being prefilled. Sequences join the batch the step after they are admitted
//! and leave it as soon as they finish or their consumer disconnects, so one call reads the weights once
//! for everything in flight, and a long prompt is prefilled in [`SchedulerConfig::prefill_chunk`]-sized
//! pieces between decode steps instead of stalling the running streams (alone, it takes
//! [`PREFILL_CHUNK`] at a time).
//!
//! Admission: waiting requests are taken by priority (higher first, then oldest), as long as the batch
//! has a free slot and the KV-cache budget can hold the request's worst case (prompt + `max_tokens`
//! positions). What does not fit waits; the queue in front is bounded, and when it is full `submit`
//! fails at once with [`EngineError::Busy`] (the server's 503 with `Retry-After`).
//!
//! Several choices of one request (OpenAI's `n`, [`SchedulerHandle::submit_choices`]) share one prefill:
//! the request is admitted with room for all its choices (slots and KV budget), its prompt is computed
//! once, and when the prefill ends the sequence forks — each other choice gets a copy of the prompt's
//! keys and values and samples its first token from the same logits with its own seed
//! ([`crate::SamplingParams::for_choice`]). A device cache cannot be copied; there a choice computes the
//! prompt itself ([`SchedulerStats::prefilled_prompt_tokens`] shows which happened).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender, TryRecvError};
use std::time::{Duration, Instant};

use crate::error::{EngineError, Result};
use crate::kernels::team::Team;
use crate::llama::model::{LlamaModel, SequenceBatch, last_logits};
use crate::serving::generation::{GenerationEvent, GenerationRequest, GenerationStream};
use crate::serving::prefix_cache::PrefixCache;
use crate::serving::sequence::{ActiveSequence, StepResult};
use crate::text::tokenizer::Tokenizer;

/// Prompt tokens per forward call when no other sequence is decoding: bounds the attention scratch
/// memory (chunk × context × heads) so a long prompt cannot allocate gigabytes at once.
pub const PREFILL_CHUNK: usize = 512;

/// Seconds a refused caller is told to wait: about the time a running sequence takes to free a slot.
const RETRY_AFTER_SECS: u64 = 1;

/// Scheduler limits.
#[derive(Debug, Clone, Copy)]
pub struct SchedulerConfig {
    /// Sequences decoded together in one step.
    pub max_batch: usize,
    /// Requests that may wait for a batch slot before `submit` refuses more with
    /// [`EngineError::Busy`].
    pub queue_capacity: usize,
    /// KV-cache memory the running sequences may reserve, in bytes. A sequence reserves its worst case
    /// (prompt + `max_tokens` positions) when it is admitted and releases it when it ends; requests
    /// that do not fit wait in the queue. `None`: room for `max_batch` sequences of the full context.
    pub kv_budget_bytes: Option<usize>,
    /// Prompt tokens per forward call while other sequences are decoding: long prompts are prefilled
    /// in chunks of this size interleaved with decode steps, so running streams keep flowing.
    pub prefill_chunk: usize,
    /// Memory for the keys and values of recently prefilled prompts, in bytes: a request that starts
    /// with the same tokens copies them instead of computing them (see `prefix_cache.rs`). 0 turns it off.
    pub prefix_cache_bytes: usize,
    /// Waiting this long raises a request's priority by one level, so a low tier is served later under
    /// sustained load but never starved (a soak saw free-tier streams wait 115 s with strict priorities).
    /// Zero turns ageing off.
    pub priority_ageing: Duration,
    /// Threads of this model's CPU pass (the scheduler's thread counts as one); `None`: the engine's
    /// shared team (`--threads`). Giving two models their own counts keeps them off each other's cores.
    pub threads: Option<usize>,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            max_batch: 8,
            queue_capacity: 64,
            kv_budget_bytes: None,
            prefill_chunk: 64,
            prefix_cache_bytes: DEFAULT_PREFIX_CACHE_BYTES,
            priority_ageing: DEFAULT_PRIORITY_AGEING,
            threads: None,
        }
    }
}

/// One priority level per 10 s waited: the tiers' levels (0–3 by default) keep their order over short
/// bursts, and a free-tier request waits at most about half a minute longer than an enterprise one.
const DEFAULT_PRIORITY_AGEING: Duration = Duration::from_secs(10);

/// 32 MiB: about 1,400 positions of the default model, its system prompt thousands of times over.
pub const DEFAULT_PREFIX_CACHE_BYTES: usize = 32 << 20;

/// Live counters, for metrics and for tests that check cancellation really stops work.
#[derive(Debug, Default)]
pub struct SchedulerStats {
    active: AtomicUsize,
    generated_tokens: AtomicU64,
    reused_prompt_tokens: AtomicU64,
    prefilled_prompt_tokens: AtomicU64,
}

impl SchedulerStats {
    /// Sequences in the running batch right now.
    pub fn active_sequences(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }

    /// Tokens sampled since the model was loaded.
    pub fn generated_tokens(&self) -> u64 {
        self.generated_tokens.load(Ordering::Relaxed)
    }

    /// Prompt tokens whose keys and values were copied from an earlier prompt instead of computed.
    pub fn reused_prompt_tokens(&self) -> u64 {
        self.reused_prompt_tokens.load(Ordering::Relaxed)
    }

    /// Prompt tokens run through the model since it was loaded (what prefill computed, not what it copied):
    /// a request for several choices adds its prompt once.
    pub fn prefilled_prompt_tokens(&self) -> u64 {
        self.prefilled_prompt_tokens.load(Ordering::Relaxed)
    }
}

type EventSender = tokio::sync::mpsc::UnboundedSender<GenerationEvent>;

struct Job {
    request: GenerationRequest,
    tx: EventSender,
    /// The other choices of the request (`n - 1` of them), forked from it after its prefill.
    forks: Vec<Fork>,
    submitted: Instant,
}

impl Job {
    /// Batch slots the request takes once forked.
    fn slots(&self) -> usize {
        1 + self.forks.len()
    }

    /// Whether every consumer of the request has gone away.
    fn is_cancelled(&self) -> bool {
        self.tx.is_closed() && self.forks.iter().all(|f| f.tx.is_closed())
    }
}

/// A choice waiting for its request's prefill: its own parameters (its seed) and its own stream.
struct Fork {
    request: GenerationRequest,
    tx: EventSender,
}

/// Handle for submitting work; cloneable and cheap. The thread stops when every handle is dropped.
#[derive(Clone)]
pub struct SchedulerHandle {
    jobs: Sender<Job>,
    /// Submitted but not yet admitted; bounded by the queue capacity.
    queued: Arc<AtomicUsize>,
    queue_capacity: usize,
    /// Sequences one step runs: the most choices one request may ask for.
    max_batch: usize,
    /// The KV budget and its unit, to refuse at once a request that could never be admitted.
    kv_budget: usize,
    kv_bytes_per_position: usize,
    stats: Arc<SchedulerStats>,
}

impl SchedulerHandle {
    /// Starts the scheduler thread for `model`.
    pub fn spawn(model: Arc<LlamaModel>, tokenizer: Arc<Tokenizer>, config: SchedulerConfig) -> Result<Self> {
        let (jobs, rx) = std::sync::mpsc::channel();
        let stats = Arc::new(SchedulerStats::default());
        let queued = Arc::new(AtomicUsize::new(0));
        let max_batch = config.max_batch.max(1);
        let threads = config.threads;
        let bytes_per_position = model.kv_bytes_per_position();
        let budget = config.kv_budget_bytes.unwrap_or_else(|| {
            max_batch.saturating_mul(model.hparams().context_length).saturating_mul(bytes_per_position)
        });
        // Freed KV pages are kept for the next sequences up to what the running ones and the prefix
        // cache may hold at once, so resident memory stops following the load up and down.
        model.keep_freed_kv_pages(budget.saturating_add(config.prefix_cache_bytes));
        let scheduler = Scheduler {
            model,
            tokenizer,
            max_batch,
            prefill_chunk: config.prefill_chunk.max(1),
            priority_ageing: config.priority_ageing,
            rx,
            queued: queued.clone(),
            waiting: Vec::new(),
            prefilling: VecDeque::new(),
            active: Vec::new(),
            kv: KvBudget { budget, bytes_per_position },
            prefixes: PrefixCache::new(config.prefix_cache_bytes / bytes_per_position.max(1)),
            stats: stats.clone(),
        };
        std::thread::Builder::new()
            .name("llamagate-scheduler".into())
            .spawn(move || {
                if let Some(threads) = threads {
                    Team::use_on_this_thread(threads);
                }
                scheduler.run()
            })
            .map_err(|e| EngineError::Unavailable(format!("cannot start the scheduler thread: {e}")))?;
        Ok(Self {
            jobs,
            queued,
            queue_capacity: config.queue_capacity.max(1),
            max_batch,
            kv_budget: budget,
            kv_bytes_per_position: bytes_per_position,
            stats,
        })
    }

    /// Live counters.
    pub fn stats(&self) -> &SchedulerStats {
        &self.stats
    }

    /// The live counters, shared: for a metrics collector that outlives any one borrow of the model.
    pub fn shared_stats(&self) -> Arc<SchedulerStats> {
        self.stats.clone()
    }

    /// Queues a request; fails at once with [`EngineError::Busy`] when the queue is full, and with
    /// [`EngineError::InvalidRequest`] when its worst case (prompt + `max_tokens`) exceeds the whole KV
    /// budget, so it could never be admitted.
    pub fn submit(&self, request: GenerationRequest) -> Result<GenerationStream> {
        let mut streams = self.submit_choices(request, 1)?;
        streams.pop().ok_or_else(|| EngineError::Unavailable("no stream for the request".into()))
    }

    /// Queues a request for `n` choices that share one prefill (see the module docs): one stream per
    /// choice, in order; choice `i` samples with [`crate::SamplingParams::for_choice`]`(i)`. Refused
    /// like [`SchedulerHandle::submit`], and with [`EngineError::InvalidRequest`] when `n` is 0 or the
    /// choices could never run together (more than the batch holds).
    pub fn submit_choices(&self, request: GenerationRequest, n: usize) -> Result<Vec<GenerationStream>> {
        if n == 0 || n > self.max_batch {
            return Err(EngineError::InvalidRequest(format!(
                "n must be between 1 and {} (the model's batch size); got {n}",
                self.max_batch
            )));
        }
        let need = kv_need(&request, self.kv_bytes_per_position).saturating_mul(n);
        if need > self.kv_budget {
            let what =
                if n == 1 { "prompt + max_tokens".to_string() } else { format!("{n} choices of prompt + max_tokens") };
            return Err(EngineError::InvalidRequest(format!(
                "{what} need {} MiB of KV cache; the server's budget is {} MiB (lower max_tokens)",
                need.div_ceil(1 << 20),
                self.kv_budget >> 20
            )));
        }
        if self.queued.fetch_add(1, Ordering::AcqRel) >= self.queue_capacity {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            return Err(EngineError::Busy {
                reason: format!("the generation queue is full ({} requests waiting)", self.queue_capacity),
                retry_after_secs: RETRY_AFTER_SECS,
            });
        }
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let mut streams = vec![GenerationStream { rx }];
        let forks = (1..n)
            .map(|i| {
                let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
                streams.push(GenerationStream { rx });
                let request = GenerationRequest { sampling: request.sampling.for_choice(i), ..request.clone() };
                Fork { request, tx }
            })
            .collect();
        match self.jobs.send(Job { request, tx, forks, submitted: Instant::now() }) {
            Ok(()) => Ok(streams),
            Err(_) => {
                self.queued.fetch_sub(1, Ordering::AcqRel);
                Err(EngineError::Unavailable("the scheduler has stopped".into()))
            }
        }
    }
}

/// The KV-cache budget; what is reserved is the sum over the sequences in flight
/// ([`Scheduler::reserved`]).
struct KvBudget {
    budget: usize,
    bytes_per_position: usize,
}

impl KvBudget {
    /// Bytes a request reserves: each of its choices' worst case.
    fn need(&self, job: &Job) -> usize {
        kv_need(&job.request, self.bytes_per_position).saturating_mul(job.slots())
    }
}

/// Bytes of KV cache a request reserves: its worst case, prompt + `max_tokens` positions.
fn kv_need(request: &GenerationRequest, bytes_per_position: usize) -> usize {
    (request.prompt_ids.len() + request.max_tokens).saturating_mul(bytes_per_position)
}

/// A sequence whose prompt is still being fed through the model, `done` tokens so far.
struct Prefill {
    seq: ActiveSequence,
    done: usize,
    /// KV bytes reserved for the sequence and its forks.
    reserved: usize,
    /// The request's other choices, started from this prefill when it ends.
    forks: Vec<Fork>,
}

impl Prefill {
    /// Batch slots it holds: its sequence and the forks to come.
    fn slots(&self) -> usize {
        1 + self.forks.len()
    }

    /// Whether every consumer of the request has gone away.
    fn is_cancelled(&self) -> bool {
        self.seq.is_cancelled() && self.forks.iter().all(|f| f.tx.is_closed())
    }
}

/// A sequence generating tokens.
struct Running {
    seq: ActiveSequence,
    reserved: usize,
}

struct Scheduler {
    model: Arc<LlamaModel>,
    tokenizer: Arc<Tokenizer>,
    max_batch: usize,
    prefill_chunk: usize,
    /// [`SchedulerConfig::priority_ageing`].
    priority_ageing: Duration,
    rx: Receiver<Job>,
    queued: Arc<AtomicUsize>,
    waiting: Vec<Job>,
    prefilling: VecDeque<Prefill>,
    active: Vec<Running>,
    kv: KvBudget,
    prefixes: PrefixCache,
    stats: Arc<SchedulerStats>,
}

impl Scheduler {
    /// Starts one more choice of `parent`'s request: a copy of its prompt's keys and values, and its first
    /// token sampled from the prompt's last `logits`. Where the cache cannot be copied (a device cache)
    /// the choice is queued to prefill its prompt itself.
    fn start_fork(&mut self, parent: &ActiveSequence, fork: Fork, reserved: usize, logits: &[f32]) {
        let prompt_len = parent.prompt_ids.len();
        let capacity = prompt_len + fork.request.max_tokens;
        let tokenizer = self.tokenizer.clone();
        match parent.cache.copy_prefix(prompt_len, capacity) {
            Some(cache) => {
                let mut seq = ActiveSequence::new(fork.request, cache, tokenizer, fork.tx, parent.submitted());
                self.stats.generated_tokens.fetch_add(1, Ordering::Relaxed);
                if seq.step(&mut logits.to_vec()) == StepResult::Running {
                    self.active.push(Running { seq, reserved });
                }
            }
            None => match self.model.new_cache(capacity) {
                Ok(cache) => {
                    let seq = ActiveSequence::new(fork.request, cache, tokenizer, fork.tx, parent.submitted());
                    self.prefilling.push_back(Prefill { seq, done: 0, reserved, forks: Vec::new() });
                }
                Err(e) => {
                    let _ = fork.tx.send(GenerationEvent::Failed(e.to_string()));
                }
            },
        }
    }

    fn run(mut self) {
        loop {
            if self.waiting.is_empty() && self.prefilling.is_empty() && self.active.is_empty() {
                match self.rx.recv() {
                    Ok(job) => self.waiting.push(job),
                    Err(_) => return,
                }
            }
            loop {
                match self.rx.try_recv() {
                    Ok(job) => self.waiting.push(job),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        if self.waiting.is_empty() && self.prefilling.is_empty() && self.active.is_empty() {
                            return;
                        }
                        break;
                    }
                }
            }
            self.drop_cancelled();
            self.admit();
            if !self.prefilling.is_empty() || !self.active.is_empty() {
                self.step();
            }
            self.stats.active.store(self.active.len() + self.prefilling.len(), Ordering::Relaxed);
        }
    }

    /// Forgets work whose consumer has gone away, releasing its KV reservation.
    fn drop_cancelled(&mut self) {
        let before = self.waiting.len();
        self.waiting.retain(|job| !job.is_cancelled());
        self.queued.fetch_sub(before - self.waiting.len(), Ordering::AcqRel);
        self.prefilling.retain(|p| !p.is_cancelled());
        self.active.retain(|r| !r.seq.is_cancelled());
    }

    /// KV-cache bytes reserved by the sequences in flight (at most `max_batch` of them).
    fn reserved(&self) -> usize {
        self.prefilling.iter().map(|p| p.reserved).chain(self.active.iter().map(|r| r.reserved)).sum()
    }

    /// Batch slots held by the sequences in flight, forks still to come included.
    fn slots_taken(&self) -> usize {
        self.active.len() + self.prefilling.iter().map(Prefill::slots).sum::<usize>()
    }

    /// Moves waiting requests into the batch, highest priority first (raised by the time waited), while
    /// slots and KV budget last; the oldest first among equals.
    fn admit(&mut self) {
        let now = Instant::now();
        let ageing = self.priority_ageing;
        self.waiting.sort_by_key(|job| {
            let waited = now.duration_since(job.submitted);
            let raised = if ageing.is_zero() { 0 } else { (waited.as_nanos() / ageing.as_nanos()) as u64 };
            (std::cmp::Reverse(u64::from(job.request.priority) + raised), job.submitted)
        });
        while !self.waiting.is_empty() && self.slots_taken() + self.waiting[0].slots() <= self.max_batch {
            // `submit` refused anything larger than the whole budget or batch, so this only waits for releases.
            let need = self.kv.need(&self.waiting[0]);
            if self.reserved() + need > self.kv.budget {
                break; // waits for running sequences to release memory
            }
            let job = self.waiting.remove(0);
            self.queued.fetch_sub(1, Ordering::AcqRel);
            let capacity = job.request.prompt_ids.len() + job.request.max_tokens;
            let cache = match self.model.new_cache(capacity) {
                Ok(c) => c,
                Err(e) => {
                    let _ = job.tx.send(GenerationEvent::Failed(e.to_string()));
                    continue;
                }
            };
            // A remembered prompt that starts the same way saves computing that much of this one.
            let (done, cache) =
                self.prefixes.lookup(job.request.prefix_scope, &job.request.prompt_ids, capacity).unwrap_or((0, cache));
            self.stats.reused_prompt_tokens.fetch_add(done as u64, Ordering::Relaxed);
            let seq = ActiveSequence::new(job.request, cache, self.tokenizer.clone(), job.tx, job.submitted);
            self.prefilling.push_back(Prefill { seq, done, reserved: need, forks: job.forks });
        }
    }

    /// One forward call: a token for every decoding sequence and the next chunk of the oldest prompt.
    fn step(&mut self) {
        let chunk_len = if self.active.is_empty() { PREFILL_CHUNK } else { self.prefill_chunk };
        let inputs: Vec<[u32; 1]> = self.active.iter().map(|r| [r.seq.last_token]).collect();
        let Self { model, active, prefilling, stats, .. } = self;
        let result = {
            let mut batch: Vec<SequenceBatch<'_>> = active
                .iter_mut()
                .zip(&inputs)
                .map(|(r, t)| SequenceBatch { tokens: t, cache: &mut r.seq.cache, all_logits: false })
                .collect();
            if let Some(p) = prefilling.front_mut() {
                let end = (p.done + chunk_len).min(p.seq.prompt_ids.len());
                let tokens = &p.seq.prompt_ids[p.done..end];
                stats.prefilled_prompt_tokens.fetch_add(tokens.len() as u64, Ordering::Relaxed);
                batch.push(SequenceBatch { tokens, cache: &mut p.seq.cache, all_logits: false });
            }
            let chunk = batch.last().map_or(0, |b| b.tokens.len());
            model
                .forward(&mut batch)
                .and_then(|out| out.iter().map(last_logits).collect::<Result<Vec<_>>>())
                .map(|rows| (rows, chunk))
        };
        let (mut rows, chunk) = match result {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "forward step failed");
                for r in self.active.drain(..) {
                    r.seq.fail(&e.to_string());
                }
                if let Some(p) = self.prefilling.pop_front() {
                    p.seq.fail(&e.to_string());
                    for fork in p.forks {
                        let _ = fork.tx.send(GenerationEvent::Failed(e.to_string()));
                    }
                }
                return;
            }
        };

        let prefill_logits = if self.prefilling.is_empty() { None } else { rows.pop() };
        self.stats.generated_tokens.fetch_add(rows.len() as u64, Ordering::Relaxed);
        let mut rows = rows.into_iter();
        self.active.retain_mut(|r| {
            let mut logits = rows.next().unwrap_or_default();
            r.seq.step(&mut logits) == StepResult::Running
        });

        if let (Some(mut logits), Some(p)) = (prefill_logits, self.prefilling.front_mut()) {
            p.done += chunk;
            if p.done >= p.seq.prompt_ids.len() {
                let Some(mut p) = self.prefilling.pop_front() else { return };
                self.prefixes.insert(p.seq.prefix_scope, &p.seq.prompt_ids, &p.seq.cache);
                // Each choice's share of the reservation goes with it, so a choice that ends early frees its own.
                let share = p.reserved / p.slots();
                let forks = std::mem::take(&mut p.forks);
                for fork in forks {
                    self.start_fork(&p.seq, fork, share, &logits);
                }
                self.stats.generated_tokens.fetch_add(1, Ordering::Relaxed);
                if p.seq.step(&mut logits) == StepResult::Running {
                    self.active.push(Running { seq: p.seq, reserved: share });
                }
            }
        }
    }
}
