//! The worker-thread count, fixed once per process. candle asks for it on every CPU op and, unless
//! `RAYON_NUM_THREADS` is set, re-reads /proc/cpuinfo to answer (measured: thousands of file opens a
//! second, most of a small model's run time spent in the kernel). Setting the variable once, before
//! any worker thread starts, answers it from the environment instead. The count also decides the
//! order of floating-point reductions, as do the processor's vector extensions, so runs record both
//! (the count, and [`cpu_description`]).

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

/// The processor a CPU run used: its model, vector extensions and cache sizes, e.g.
/// `AMD EPYC (avx2 fma; L1d 32K L2 512K L3 32768K)`. Besides the thread count, the processor decides
/// the rounding of CPU training: the matrix-product crate (gemm) sizes its blocks from the detected
/// caches, which orders the sums. Measured: the four CI training gates, same code, same thread
/// count, moved by −0.55 to +0.10 points on a 2026-12-07 AMD EPYC machine against the numbers an
/// earlier AMD EPYC blessed and an Intel Xeon reproduced exactly (README, "What is reproducible"),
/// so run logs and evaluation summaries record it.
pub fn cpu_description() -> &'static str {
    static DESCRIPTION: OnceLock<String> = OnceLock::new();
    DESCRIPTION.get_or_init(|| {
        let model = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|info| {
                info.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, name)| name.trim().to_string())
            })
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| std::env::consts::ARCH.to_string());
        format!(
            "{model} ({}; {})",
            vector_extensions().join(" "),
            cache_sizes()
        )
    })
}

/// [`cpu_description`] for a run on the CPU, `None` on a GPU.
#[cfg(feature = "train")]
pub fn cpu_of(device: &candle_core::Device) -> Option<&'static str> {
    (!device.is_cuda()).then(cpu_description)
}

/// `L1d 32K L2 512K L3 32768K` from Linux's sysfs (data and unified caches of CPU 0); "caches
/// unknown" elsewhere.
fn cache_sizes() -> String {
    let read = |dir: &std::path::Path, name: &str| {
        std::fs::read_to_string(dir.join(name))
            .ok()
            .map(|t| t.trim().to_string())
    };
    let mut found = Vec::new();
    for index in 0..8 {
        let dir =
            std::path::PathBuf::from(format!("/sys/devices/system/cpu/cpu0/cache/index{index}"));
        let (Some(level), Some(kind), Some(size)) =
            (read(&dir, "level"), read(&dir, "type"), read(&dir, "size"))
        else {
            continue;
        };
        match kind.as_str() {
            "Data" => found.push(format!("L{level}d {size}")),
            "Unified" => found.push(format!("L{level} {size}")),
            _ => {}
        }
    }
    if found.is_empty() {
        "caches unknown".into()
    } else {
        found.join(" ")
    }
}

#[cfg(target_arch = "x86_64")]
fn vector_extensions() -> Vec<&'static str> {
    let mut found = Vec::new();
    if std::arch::is_x86_feature_detected!("avx512f") {
        found.push("avx512f");
    }
    if std::arch::is_x86_feature_detected!("avx2") {
        found.push("avx2");
    }
    if std::arch::is_x86_feature_detected!("fma") {
        found.push("fma");
    }
    found
}

#[cfg(not(target_arch = "x86_64"))]
fn vector_extensions() -> Vec<&'static str> {
    Vec::new()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_cpu_description_names_a_processor_and_its_extensions() {
        let d = super::cpu_description();
        let (model, rest) = d.split_once(" (").expect("model (extensions)");
        assert!(!model.trim().is_empty(), "{d}");
        assert!(rest.ends_with(')'), "{d}");
        #[cfg(target_arch = "x86_64")]
        assert_eq!(
            rest.contains("avx2"),
            std::arch::is_x86_feature_detected!("avx2"),
            "{d}"
        );
    }
}
