//! Progress bars for long work (downloads, hashing, decoding). They draw on stderr only when it is a
//! terminal, so logs and CI output stay clean.

use indicatif::{ProgressBar, ProgressStyle};

/// A bar counting bytes, for downloads and hashing.
pub fn bytes_bar(label: &str, total: Option<u64>) -> ProgressBar {
    let bar = match total {
        Some(t) => ProgressBar::new(t),
        None => ProgressBar::new_spinner(),
    };
    let template = if total.is_some() {
        "{msg:<38} [{bar:28}] {bytes:>10}/{total_bytes:<10} {bytes_per_sec:>12} {eta:>4}"
    } else {
        "{msg:<38} {spinner} {bytes:>10} {bytes_per_sec:>12}"
    };
    bar.set_style(
        ProgressStyle::with_template(template)
            .expect("static template")
            .progress_chars("=> "),
    );
    bar.set_message(label.to_string());
    bar
}

/// A bar counting items (images decoded, episodes written).
pub fn count_bar(label: &str, total: u64) -> ProgressBar {
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "{msg:<38} [{bar:28}] {pos:>7}/{len:<7} {per_sec:>12} {eta:>4}",
        )
        .expect("static template")
        .progress_chars("=> "),
    );
    bar.set_message(label.to_string());
    bar
}
