//! The scheduler: one thread per model that owns every running sequence and steps them together.
//!
//! Each iteration admits waiting requests (prefilling each prompt in chunks), then runs one decode step
//! for all running sequences in a single forward call, so the weights are read once per step whatever
//! the batch size. Sequences leave the batch as soon as they finish or their consumer disconnects.
//! The queue in front is bounded: when it is full, `submit` fails at once instead of piling up work.
//! Interleaving prefill chunks with decode steps, KV-memory admission and tier priorities are the next
//! steps (see the engine-speed issue).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError};
use std::time::Instant;

use crate::error::{EngineError, Result};
use crate::generation::{GenerationEvent, GenerationRequest, GenerationStream};
use crate::model::{LlamaModel, SequenceBatch, last_logits, logits_rows};
use crate::sequence::{ActiveSequence, StepResult};
use crate::tokenizer::Tokenizer;

/// Prompt tokens processed per forward call at prefill: bounds the attention score matrix (chunk ×
/// context × heads) so a long prompt cannot allocate gigabytes at once.
const PREFILL_CHUNK: usize = 512;

/// Scheduler limits.
#[derive(Debug, Clone, Copy)]
pub struct SchedulerConfig {
    /// Sequences decoded together in one step.
    pub max_batch: usize,
    /// Requests that may wait for a batch slot before `submit` refuses more.
    pub queue_capacity: usize,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self { max_batch: 8, queue_capacity: 64 }
    }
}

/// Live counters, for metrics and for tests that check cancellation really stops work.
#[derive(Debug, Default)]
pub struct SchedulerStats {
    active: AtomicUsize,
    generated_tokens: AtomicU64,
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
}

struct Job {
    request: GenerationRequest,
    tx: tokio::sync::mpsc::UnboundedSender<GenerationEvent>,
    submitted: Instant,
}

/// Handle for submitting work; cloneable and cheap. The thread stops when every handle is dropped.
#[derive(Clone)]
pub struct SchedulerHandle {
    jobs: SyncSender<Job>,
    stats: Arc<SchedulerStats>,
}

impl SchedulerHandle {
    /// Starts the scheduler thread for `model`.
    pub fn spawn(model: Arc<LlamaModel>, tokenizer: Arc<Tokenizer>, config: SchedulerConfig) -> Result<Self> {
        let (jobs, rx) = std::sync::mpsc::sync_channel(config.queue_capacity.max(1));
        let stats = Arc::new(SchedulerStats::default());
        let scheduler = Scheduler { model, tokenizer, config, rx, active: Vec::new(), stats: stats.clone() };
        std::thread::Builder::new()
            .name("llamagate-scheduler".into())
            .spawn(move || scheduler.run())
            .map_err(|e| EngineError::Unavailable(format!("cannot start the scheduler thread: {e}")))?;
        Ok(Self { jobs, stats })
    }

    /// Live counters.
    pub fn stats(&self) -> &SchedulerStats {
        &self.stats
    }

    /// Queues a request; fails at once with [`EngineError::Unavailable`] when the queue is full.
    pub fn submit(&self, request: GenerationRequest) -> Result<GenerationStream> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        match self.jobs.try_send(Job { request, tx, submitted: Instant::now() }) {
            Ok(()) => Ok(GenerationStream { rx }),
            Err(TrySendError::Full(_)) => Err(EngineError::Unavailable("the generation queue is full".into())),
            Err(TrySendError::Disconnected(_)) => Err(EngineError::Unavailable("the scheduler has stopped".into())),
        }
    }
}

struct Scheduler {
    model: Arc<LlamaModel>,
    tokenizer: Arc<Tokenizer>,
    config: SchedulerConfig,
    rx: Receiver<Job>,
    active: Vec<ActiveSequence>,
    stats: Arc<SchedulerStats>,
}

impl Scheduler {
    fn run(mut self) {
        loop {
            if self.active.is_empty() {
                match self.rx.recv() {
                    Ok(job) => self.admit(job),
                    Err(_) => return,
                }
            }
            while self.active.len() < self.config.max_batch {
                match self.rx.try_recv() {
                    Ok(job) => self.admit(job),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        if self.active.is_empty() {
                            return;
                        }
                        break;
                    }
                }
            }
            self.active.retain(|s| !s.is_cancelled());
            if !self.active.is_empty() {
                self.decode_step();
            }
            self.stats.active.store(self.active.len(), Ordering::Relaxed);
        }
    }

    /// Prefills a new request and samples its first token.
    fn admit(&mut self, job: Job) {
        if job.tx.is_closed() {
            return;
        }
        let capacity = job.request.prompt_ids.len() + job.request.max_tokens;
        let cache = match self.model.new_cache(capacity) {
            Ok(c) => c,
            Err(e) => {
                let _ = job.tx.send(GenerationEvent::Failed(e.to_string()));
                return;
            }
        };
        let mut seq = ActiveSequence::new(job.request, cache, self.tokenizer.clone(), job.tx, job.submitted);
        match self.prefill(&mut seq) {
            Ok(mut logits) => {
                self.stats.generated_tokens.fetch_add(1, Ordering::Relaxed);
                if seq.step(&mut logits) == StepResult::Running {
                    self.active.push(seq);
                }
            }
            Err(e) => seq.fail(&e.to_string()),
        }
    }

    fn prefill(&self, seq: &mut ActiveSequence) -> Result<Vec<f32>> {
        let prompt = seq.prompt_ids.clone();
        let mut logits = None;
        for chunk in prompt.chunks(PREFILL_CHUNK) {
            if seq.is_cancelled() {
                return Err(EngineError::Unavailable("cancelled".into()));
            }
            let mut batch = [SequenceBatch { tokens: chunk, cache: &mut seq.cache, all_logits: false }];
            logits = Some(self.model.forward(&mut batch)?.remove(0));
        }
        let logits = logits.ok_or_else(|| EngineError::InvalidRequest("empty prompt".into()))?;
        last_logits(&logits)
    }

    /// One token for every running sequence, in one forward call.
    fn decode_step(&mut self) {
        let inputs: Vec<[u32; 1]> = self.active.iter().map(|s| [s.last_token]).collect();
        let result = {
            let mut batch: Vec<SequenceBatch<'_>> = self
                .active
                .iter_mut()
                .zip(&inputs)
                .map(|(s, t)| SequenceBatch { tokens: t, cache: &mut s.cache, all_logits: false })
                .collect();
            self.model.forward(&mut batch).and_then(|out| out.iter().map(logits_rows).collect::<Result<Vec<_>>>())
        };
        match result {
            Ok(rows) => {
                self.stats.generated_tokens.fetch_add(rows.len() as u64, Ordering::Relaxed);
                let mut finished = vec![false; self.active.len()];
                for (i, (seq, mut row)) in self.active.iter_mut().zip(rows).enumerate() {
                    let logits = row.first_mut().map(Vec::as_mut_slice).unwrap_or_default();
                    finished[i] = seq.step(logits) == StepResult::Finished;
                }
                let mut idx = 0;
                self.active.retain(|_| {
                    idx += 1;
                    !finished[idx - 1]
                });
            }
            Err(e) => {
                tracing::error!(error = %e, "decode step failed");
                for seq in self.active.drain(..) {
                    seq.fail(&e.to_string());
                }
            }
        }
    }
}
