//! What the benchmark examples report about the process they ran in, shared by `throughput.rs` and
//! `decode_at.rs` (included with `#[path]`; cargo does not build this directory as an example).

/// `RAYON_NUM_THREADS` as a JSON number, or the string "default" when unset or not a number.
pub fn threads_json() -> String {
    match std::env::var("RAYON_NUM_THREADS").ok().and_then(|s| s.parse::<usize>().ok()) {
        Some(n) => n.to_string(),
        None => "\"default\"".into(),
    }
}

/// `VmHWM` from /proc/self/status: the peak resident set, in MB.
pub fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).map(str::to_string))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|kb| kb.parse::<f64>().ok()))
        .map_or(0.0, |kb| kb / 1024.0)
}
