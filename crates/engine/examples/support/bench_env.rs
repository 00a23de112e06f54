//! What the benchmark examples read from and report about the process they run in, shared by every
//! speed example (included with `#[path]`; cargo does not build this directory as an example).

use llamagate_engine::KvCacheType;

/// The KV cache type to run: `KV_CACHE_TYPE` (`f16` or `q8_0`), f16 when unset.
pub fn kv_cache_type() -> Result<KvCacheType, String> {
    std::env::var("KV_CACHE_TYPE").map_or(Ok(KvCacheType::F16), |v| v.parse())
}

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
