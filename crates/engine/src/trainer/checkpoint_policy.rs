//! When a run saves its resumable checkpoint.

/// A checkpoint every `every` epochs, after the last epoch and when early stopping ends the run;
/// and when the run is cancelled, one more if epochs finished since the last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointPolicy {
    every: u32,
    last_epoch: u32,
}

impl CheckpointPolicy {
    pub fn new(every: u32, last_epoch: u32) -> Self {
        CheckpointPolicy {
            every: every.max(1),
            last_epoch,
        }
    }

    /// After `epoch` finished; `stopping` when early stopping ends the run there.
    pub fn due_after(&self, epoch: u32, stopping: bool) -> bool {
        epoch == self.last_epoch || stopping || epoch.is_multiple_of(self.every)
    }

    /// On cancel, with `completed` epochs finished and the checkpoint on disk holding `saved`.
    pub fn due_on_cancel(&self, saved: u32, completed: u32) -> bool {
        saved < completed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_nth_the_last_and_a_stopping_epoch_are_saved() {
        let policy = CheckpointPolicy::new(3, 7);
        let due: Vec<u32> = (1..=7).filter(|&e| policy.due_after(e, false)).collect();
        assert_eq!(due, [3, 6, 7]);
        assert!(policy.due_after(2, true));
    }

    #[test]
    fn a_cancel_saves_only_epochs_the_checkpoint_lacks() {
        let policy = CheckpointPolicy::new(2, 5);
        assert!(policy.due_on_cancel(2, 3));
        assert!(!policy.due_on_cancel(3, 3));
        assert!(!policy.due_on_cancel(0, 0));
    }
}
