//! The progress bar: entries copied, bytes and rate (indicatif), hidden
//! with `--quiet` or when stderr is not a terminal.

use indicatif::{ProgressBar, ProgressStyle};

pub fn bar(what: &str, quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new_spinner();
    let style =
        ProgressStyle::with_template("{spinner} {msg} {pos} copied, {per_sec} [{elapsed_precise}]")
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
    pb.set_style(style);
    pb.set_message(what.to_string());
    pb.enable_steady_tick(std::time::Duration::from_millis(200));
    pb
}
