//! What a training run reports, as plain values, defined once in `easel-events` for the engine,
//! the worker and the client alike. No tch types here.

pub use easel_events::{EpochMetrics, RunInfo, StepProgress};

/// The events the engine emits: `Started`, `Step`, `Epoch`, `CheckpointWritten`,
/// `ArtifactWritten` and `Note` of the one event vocabulary (the worker adds the queue's and the
/// store's).
pub type TrainEvent = easel_events::EventKind;
