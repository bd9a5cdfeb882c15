//! The names of what a run writes, relative to its run directory (and, in the store, to its
//! job's prefix). The engine writes them, the worker stores and serves them, the client fetches
//! them, so they live here, where all three (and a client built without libtorch) can read them.

pub const SPEC: &str = "spec.toml";
pub const MANIFEST: &str = "manifest.json";
pub const CLASSES: &str = "classes.json";
pub const METRICS: &str = "metrics.jsonl";
/// Everything under it is needed only to resume a run; `client fetch` skips it unless `--all`.
pub const CHECKPOINTS_DIR: &str = "checkpoints/";
pub const CHECKPOINT: &str = "checkpoints/last.ckpt";
pub const BEST_WEIGHTS: &str = "weights/best.safetensors";
pub const LAST_WEIGHTS: &str = "weights/last.safetensors";
pub const CURVES_PLOT: &str = "plots/curves.svg";
pub const CONFUSION_PLOT: &str = "plots/confusion.svg";
/// A run's events, one JSON object per line.
pub const EVENTS: &str = "events.jsonl";
/// Written just before [`REPORT`]: every artifact's name, size and blake3 digest.
pub const INDEX: &str = "artifacts.json";
/// The run's page for a person (self-contained HTML), written just before [`INDEX`].
pub const REPORT_PAGE: &str = "report.html";
/// Every image the best weights got wrong on the validation and test splits, most confident
/// first (JSON), beside [`REPORT_PAGE`].
pub const MISTAKES: &str = "mistakes.json";
/// Written last; in the store its presence marks a job's artifacts as complete.
pub const REPORT: &str = "report.json";

#[cfg(test)]
mod tests {
    #[test]
    fn the_checkpoint_is_under_the_checkpoints_folder() {
        assert!(super::CHECKPOINT.starts_with(super::CHECKPOINTS_DIR));
    }
}
