//! The worker-thread count, fixed once per process. candle asks for it on every CPU op and, unless
//! `RAYON_NUM_THREADS` is set, re-reads /proc/cpuinfo to answer (measured: thousands of file opens a
//! second, most of a small model's run time spent in the kernel). Setting the variable once, before
//! any worker thread starts, answers it from the environment instead. The count also decides the
//! order of floating-point reductions, so runs record it.

use std::sync::OnceLock;

/// Sets `RAYON_NUM_THREADS` to the available parallelism if the user has not set it, and returns the
/// count in force. Call it first thing in `main`, before any thread is spawned.
pub fn pin_thread_count() -> usize {
    static COUNT: OnceLock<usize> = OnceLock::new();
    *COUNT.get_or_init(|| {
        if let Some(n) = std::env::var("RAYON_NUM_THREADS")
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .filter(|n| *n > 0)
        {
            return n;
        }
        let n = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
        n
    })
}
