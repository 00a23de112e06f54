//! The threads the CPU pass splits its work over: a fixed team that waits for the next job by spinning.
//!
//! Why not rayon, which the rest of the engine uses: one decoded token is about 150 parallel jobs of
//! 20–200 µs each, separated by a few microseconds of serial work. rayon's idle workers go to sleep
//! within tens of microseconds, so many jobs started by waking a thread; on a virtual machine a sleeping
//! vCPU is halted, and waking it goes through the host's scheduler. Two-thread decoding swung between
//! 34 and 71 tok/s from one round to the next while llama.cpp, whose threads spin between jobs, held
//! 52–55 (benches/RESULTS.md). Team threads spin for `SPIN` after each job, long enough to cover the
//! gaps inside a forward pass, then sleep until the next job, so an idle engine costs no CPU.
//!
//! A job is a function of a task index, run for every index in `0..tasks`; the caller's thread works on
//! it too, and every thread claims the next unclaimed index until none is left (a thread the host
//! pauses holds up one task, not a fixed share of them).

use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long a team thread keeps spinning for the next job before it sleeps.
const SPIN: Duration = Duration::from_micros(300);

thread_local! {
    /// This thread's own team, when [`Team::use_on_this_thread`] gave it one.
    static THREAD_TEAM: std::cell::Cell<Option<&'static Team>> = const { std::cell::Cell::new(None) };
}

/// The job the team works on: `&&dyn Fn` behind a thin pointer, published by [`Team::run`].
type Job<'a> = &'a (dyn Fn(usize) + Sync);

/// State shared by the caller and the team threads.
struct Shared {
    /// `generation << 32 | tasks << 16 | next`: which job, how many tasks it has, the next unclaimed
    /// one. Claiming is one compare-and-swap on the whole word, so a thread can never claim a task of a
    /// job other than the one it read.
    work: AtomicU64,
    /// The current job (a `*const Job`), valid while its `run` call has unfinished tasks.
    job: AtomicPtr<()>,
    /// Tasks of the current job finished.
    completed: AtomicUsize,
    /// Whether a task of the current job panicked.
    panicked: AtomicBool,
    /// Team threads asleep, and where they sleep.
    sleepers: Mutex<usize>,
    wake: Condvar,
}

/// A team of `threads - 1` helper threads plus the caller.
pub struct Team {
    shared: Arc<Shared>,
    helpers: usize,
    /// One job at a time: a second caller (another model's scheduler) runs its job alone instead.
    busy: Mutex<()>,
}

/// The most tasks one job may have (the task count is 16 bits of `Shared::work`).
pub const MAX_TASKS: usize = u16::MAX as usize;

impl Team {
    /// The engine's team, sized by the engine's thread count (`RAYON_NUM_THREADS`, set by `--threads`)
    /// when first used.
    pub fn global() -> &'static Team {
        static TEAM: OnceLock<Team> = OnceLock::new();
        TEAM.get_or_init(|| Team::new(rayon::current_num_threads()))
    }

    /// The team the CPU pass on this thread uses: the one [`Team::use_on_this_thread`] gave it (a model
    /// configured with its own thread count), else [`Team::global`].
    pub fn current() -> &'static Team {
        THREAD_TEAM.get().unwrap_or_else(Team::global)
    }

    /// Makes a new team of `threads` this thread's [`Team::current`]: a model's scheduler thread calls it
    /// when the model has its own thread count, so two models on one machine can be given separate
    /// cores. The team lives as long as the process (its threads sleep when idle), as models do.
    pub fn use_on_this_thread(threads: usize) {
        let team: &'static Team = Box::leak(Box::new(Team::new(threads)));
        THREAD_TEAM.set(Some(team));
    }

    /// A team of `threads` (the caller counts as one). If a thread cannot be started the team is
    /// smaller; with none, jobs run on the caller alone.
    pub fn new(threads: usize) -> Self {
        let shared = Arc::new(Shared {
            work: AtomicU64::new(0),
            job: AtomicPtr::new(std::ptr::null_mut()),
            completed: AtomicUsize::new(0),
            panicked: AtomicBool::new(false),
            sleepers: Mutex::new(0),
            wake: Condvar::new(),
        });
        let mut helpers = 0;
        for index in 1..threads.max(1) {
            let shared = shared.clone();
            let started =
                std::thread::Builder::new().name(format!("llamagate-cpu-{index}")).spawn(move || helper(&shared));
            match started {
                Ok(_) => helpers += 1,
                Err(error) => {
                    tracing::warn!(%error, "could not start an engine thread; running with fewer");
                    break;
                }
            }
        }
        Self { shared, helpers, busy: Mutex::new(()) }
    }

    /// Threads working on a job, the caller included.
    pub fn threads(&self) -> usize {
        self.helpers + 1
    }

    /// Runs `task(i)` for every `i` in `0..tasks` on the team and returns when all have finished. A
    /// panic in a task is raised again here, after every other task has finished.
    pub fn run(&self, tasks: usize, task: &(dyn Fn(usize) + Sync)) {
        let guard = if self.helpers > 0 && tasks > 1 && tasks <= MAX_TASKS { self.busy.try_lock().ok() } else { None };
        let Some(_guard) = guard else {
            (0..tasks).for_each(task);
            return;
        };
        let shared = &*self.shared;
        let job: Job<'_> = task;
        shared.completed.store(0, Ordering::Relaxed);
        shared.panicked.store(false, Ordering::Relaxed);
        shared.job.store((&raw const job).cast_mut().cast(), Ordering::Release);
        let generation = (shared.work.load(Ordering::Relaxed) >> 32).wrapping_add(1) & 0xFFFF_FFFF;
        shared.work.store(generation << 32 | (tasks as u64) << 16, Ordering::Release);
        if *lock(&shared.sleepers) > 0 {
            shared.wake.notify_all();
        }

        // The caller works too, then waits for tasks other threads still hold.
        while let Some(index) = claim(shared, generation) {
            run_task(shared, job, index);
        }
        let mut spins = 0u32;
        while shared.completed.load(Ordering::Acquire) < tasks {
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(4096) {
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
        shared.job.store(std::ptr::null_mut(), Ordering::Relaxed);
        if shared.panicked.load(Ordering::Acquire) {
            resume_unwind(Box::new("a task of the CPU pass panicked"));
        }
    }
}

/// Runs `task(index, item)` for every item on the engine's [`Team`], each item handed to exactly one
/// task (items are usually disjoint `&mut` pieces of one output buffer).
pub fn for_each_item<T: Send>(items: Vec<T>, task: impl Fn(usize, T) + Sync) {
    let slots: Vec<Mutex<Option<T>>> = items.into_iter().map(|item| Mutex::new(Some(item))).collect();
    let team = Team::current();
    let run_one = |index: usize| {
        if let Some(item) = lock(&slots[index]).take() {
            task(index, item);
        }
    };
    if slots.len() <= MAX_TASKS {
        team.run(slots.len(), &run_one);
    } else {
        (0..slots.len()).for_each(run_one);
    }
}

/// Claims the next task of job `generation`, if it has one left.
fn claim(shared: &Shared, generation: u64) -> Option<usize> {
    let mut word = shared.work.load(Ordering::Acquire);
    loop {
        let (tasks, next) = ((word >> 16) & 0xFFFF, word & 0xFFFF);
        if word >> 32 != generation || next >= tasks {
            return None;
        }
        match shared.work.compare_exchange_weak(word, word + 1, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return Some(next as usize),
            Err(current) => word = current,
        }
    }
}

/// Runs one claimed task, recording a panic instead of unwinding through the team.
fn run_task(shared: &Shared, job: Job<'_>, index: usize) {
    if catch_unwind(AssertUnwindSafe(|| job(index))).is_err() {
        shared.panicked.store(true, Ordering::Release);
    }
    shared.completed.fetch_add(1, Ordering::Release);
}

/// A team thread: waits for a job (spinning, then asleep), claims its tasks until none is left.
fn helper(shared: &Shared) {
    let mut done_generation = 0u64;
    loop {
        let generation = wait_for_job(shared, done_generation);
        while let Some(index) = claim(shared, generation) {
            // SAFETY: a claimed task keeps its job's `run` call from returning (it waits for
            // `completed` to count this task), so the job, published before the task could be
            // claimed, is alive and is this generation's.
            let job: Job<'_> = unsafe { *shared.job.load(Ordering::Acquire).cast::<Job<'_>>() };
            run_task(shared, job, index);
        }
        done_generation = generation;
    }
}

/// The generation of the next job after `done`, once it has tasks to claim.
fn wait_for_job(shared: &Shared, done: u64) -> u64 {
    let ready = |word: u64| word >> 32 != done && (word & 0xFFFF) < ((word >> 16) & 0xFFFF);
    let started = Instant::now();
    let mut spins = 0u32;
    loop {
        let word = shared.work.load(Ordering::Acquire);
        if ready(word) {
            return word >> 32;
        }
        spins = spins.wrapping_add(1);
        if !spins.is_multiple_of(256) || started.elapsed() < SPIN {
            std::hint::spin_loop();
            continue;
        }
        let mut sleepers = lock(&shared.sleepers);
        // Checked again under the lock the caller takes to wake us: no job can slip in between.
        if !ready(shared.work.load(Ordering::Acquire)) {
            *sleepers += 1;
            sleepers = shared.wake.wait(sleepers).unwrap_or_else(std::sync::PoisonError::into_inner);
            *sleepers -= 1;
        }
        drop(sleepers);
        spins = 0;
        let word = shared.work.load(Ordering::Acquire);
        if ready(word) {
            return word >> 32;
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_task_runs_once_across_many_jobs() {
        let team = Team::new(3);
        for tasks in [0usize, 1, 2, 7, 300] {
            for _ in 0..50 {
                let counts: Vec<AtomicUsize> = (0..tasks).map(|_| AtomicUsize::new(0)).collect();
                team.run(tasks, &|i| {
                    counts[i].fetch_add(1, Ordering::Relaxed);
                });
                assert!(counts.iter().all(|c| c.load(Ordering::Relaxed) == 1), "{tasks} tasks");
            }
        }
    }

    #[test]
    fn sleeping_threads_wake_for_the_next_job() {
        let team = Team::new(2);
        std::thread::sleep(SPIN * 4);
        let ran = AtomicUsize::new(0);
        team.run(64, &|_| {
            ran.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(ran.load(Ordering::Relaxed), 64);
    }

    #[test]
    fn a_panicking_task_panics_in_the_caller_after_the_others_finish() {
        let team = Team::new(2);
        let finished = AtomicUsize::new(0);
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            team.run(16, &|i| {
                if i == 3 {
                    panic!("task 3");
                }
                finished.fetch_add(1, Ordering::Relaxed);
            })
        }));
        assert!(outcome.is_err());
        assert_eq!(finished.load(Ordering::Relaxed), 15);
        // The team still works afterwards.
        let ran = AtomicUsize::new(0);
        team.run(8, &|_| {
            ran.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(ran.load(Ordering::Relaxed), 8);
    }

    #[test]
    fn two_callers_at_once_both_finish() {
        let team = Team::new(2);
        std::thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| {
                    for _ in 0..200 {
                        let ran = AtomicUsize::new(0);
                        team.run(9, &|_| {
                            ran.fetch_add(1, Ordering::Relaxed);
                        });
                        assert_eq!(ran.load(Ordering::Relaxed), 9);
                    }
                });
            }
        });
    }
}
