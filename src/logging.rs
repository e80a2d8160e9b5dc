//! Logging set-up shared by the `fewshot` binary and `cargo xtask`: quiet by default (warnings only),
//! `-v` for progress detail, `-vv` for debugging; `RUST_LOG` overrides both.

/// Installs the `tracing` subscriber on stderr for the given `-v` count.
pub fn init(verbosity: u8) {
    let level = match verbosity {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .without_time()
        .try_init();
}
