//! Job states as people and scripts read them: one table of names for `client list`, `client
//! status` and every `--json` output, spelled as the worker's `state.json` spells them, so a
//! script reads the same word from either.

use easel_events::Outcome;

use crate::v1::JobState;

impl JobState {
    /// The state's word (`running`); a state this build does not know reads `unknown`.
    pub fn name(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
            JobState::Unspecified => "unknown",
        }
    }

    /// How a job in this state ended; `None` while it is queued or running.
    pub fn outcome(self) -> Option<Outcome> {
        match self {
            JobState::Succeeded => Some(Outcome::Succeeded),
            JobState::Failed => Some(Outcome::Failed),
            JobState::Cancelled => Some(Outcome::Cancelled),
            JobState::Queued | JobState::Running | JobState::Unspecified => None,
        }
    }

    /// The job is over: it succeeded, failed or was cancelled.
    pub fn is_terminal(self) -> bool {
        self.outcome().is_some()
    }

    /// The state a word names (as `name` spells it; `state.json` holds these words).
    pub fn from_name(word: &str) -> Option<JobState> {
        KNOWN.into_iter().find(|state| state.name() == word)
    }
}

/// Every state a job can be in.
const KNOWN: [JobState; 5] = [
    JobState::Queued,
    JobState::Running,
    JobState::Succeeded,
    JobState::Failed,
    JobState::Cancelled,
];

/// A job state in a file or a `--json` line: its word, read back with [`JobState::from_name`].
pub mod as_name {
    use super::JobState;

    pub fn serialize<S: serde::Serializer>(state: &JobState, to: S) -> Result<S::Ok, S::Error> {
        to.serialize_str(state.name())
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(from: D) -> Result<JobState, D::Error> {
        let word = <String as serde::Deserialize>::deserialize(from)?;
        JobState::from_name(&word)
            .ok_or_else(|| serde::de::Error::custom(format!("`{word}` is not a job state")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_the_words_users_see_and_terminal_states_carry_their_outcome() {
        let names: Vec<&str> = [
            JobState::Queued,
            JobState::Running,
            JobState::Succeeded,
            JobState::Failed,
            JobState::Cancelled,
            JobState::Unspecified,
        ]
        .into_iter()
        .map(JobState::name)
        .collect();
        assert_eq!(
            names,
            [
                "queued",
                "running",
                "succeeded",
                "failed",
                "cancelled",
                "unknown"
            ]
        );
        for state in [JobState::Succeeded, JobState::Failed, JobState::Cancelled] {
            assert_eq!(state.outcome().map(Outcome::name), Some(state.name()));
        }
        assert!(!JobState::Running.is_terminal());
        for state in KNOWN {
            assert_eq!(JobState::from_name(state.name()), Some(state));
        }
        assert_eq!(JobState::from_name("unknown"), None);
        // The generated getter reads a state from a newer worker as unspecified: `unknown`.
        let from_a_newer_worker = crate::v1::Job {
            state: 99,
            ..Default::default()
        };
        assert_eq!(from_a_newer_worker.state().name(), "unknown");
    }
}
