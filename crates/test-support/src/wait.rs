//! Waiting for something a test needs to happen without betting on how long it takes: a loaded
//! machine may take many times longer than an idle one, so a wait looks again until the thing has
//! happened, and its only bound is a hang guard that ends a test which would otherwise never end.
//! No test asserts how long something took.

use std::time::{Duration, Instant};

/// How long a wait may last before the test fails as hung: far past what anything a test waits
/// for takes on a loaded machine, so only a broken build ever reaches it.
pub const HANG_GUARD: Duration = Duration::from_secs(120);

/// Between two looks when nothing else is said: short next to what tests wait for, long enough
/// that looking costs the machine little.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// The first `Some` that `poll` returns, asked every [`POLL_INTERVAL`]; panics with `hung()`
/// once [`HANG_GUARD`] has passed without one.
pub fn eventually<T>(poll: impl FnMut() -> Option<T>, hung: impl FnOnce() -> String) -> T {
    eventually_within(HANG_GUARD, POLL_INTERVAL, poll, hung)
}

/// Like [`eventually`], with its own hang guard (a long training run) and interval between looks
/// (a look that starts a process).
pub fn eventually_within<T>(
    hang_guard: Duration,
    interval: Duration,
    mut poll: impl FnMut() -> Option<T>,
    hung: impl FnOnce() -> String,
) -> T {
    let started = Instant::now();
    loop {
        if let Some(value) = poll() {
            return value;
        }
        if started.elapsed() > hang_guard {
            panic!("still waiting after {hang_guard:?}: {}", hung());
        }
        std::thread::sleep(interval);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wait_returns_the_first_value_the_poll_gives() {
        let mut looks = 0;
        let found = eventually(
            || {
                looks += 1;
                (looks == 3).then_some(looks)
            },
            || "the third look".into(),
        );
        assert_eq!(found, 3);
    }

    #[test]
    fn a_wait_that_never_ends_fails_naming_what_it_waited_for() {
        let failed = std::panic::catch_unwind(|| {
            eventually_within(
                Duration::ZERO,
                Duration::ZERO,
                || None::<()>,
                || "the sky to fall".into(),
            )
        })
        .unwrap_err();
        let message = failed.downcast_ref::<String>().unwrap();
        assert!(message.contains("the sky to fall"), "{message}");
    }
}
