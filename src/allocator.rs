//! The allocator the `fewshot` binary and the benches run on: mimalloc, told to keep the pages it
//! frees. candle's CPU kernels allocate and free buffers of up to hundreds of MB on every op; with
//! mimalloc's default (freed memory handed back to the OS after a second) each new buffer is fresh
//! pages the kernel must zero, which was 39% of a Conv-4 training step's CPU time (perf, 2-core
//! machine, 2026-11-28). Keeping them costs nothing but a resident set that stays at its peak.

use std::os::raw::{c_int, c_long};

pub use mimalloc::MiMalloc;

extern "C" {
    fn mi_option_set(option: c_int, value: c_long);
    fn mi_option_get(option: c_int) -> c_long;
}

/// `mi_option_purge_delay` in mimalloc v3's `mi_option_e` (the C library libmimalloc-sys 0.1.49
/// builds by default): the delay in ms before freed memory goes back to the OS, −1 for never.
const PURGE_DELAY: c_int = 15;

/// Never hand freed memory back to the OS (call once, first thing in `main`).
pub fn keep_freed_pages() {
    // SAFETY: mi_option_set only stores an integer in mimalloc's option table; any thread may call it
    unsafe { mi_option_set(PURGE_DELAY, -1) }
}

/// The current purge delay in ms (1,000 by default, −1 after [`keep_freed_pages`]).
pub fn purge_delay_ms() -> i64 {
    // SAFETY: reads mimalloc's option table
    unsafe { mi_option_get(PURGE_DELAY) as i64 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_option_index_is_the_purge_delay() {
        // no neighbouring option defaults to 1,000 (eager_commit_delay: 1, use_numa_nodes: 0), so
        // the default identifies purge_delay and a wrong index cannot pass unnoticed
        assert_eq!(purge_delay_ms(), 1000);
        keep_freed_pages();
        assert_eq!(purge_delay_ms(), -1);
    }
}
