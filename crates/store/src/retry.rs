//! Whole-operation retries with exponential backoff, on top of `object_store`'s per-request ones.

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use crate::{ArtifactStore, Error, Result};

/// How often and how patiently to retry an upload that failed for a transient reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first one included (at least one is always made).
    pub max_attempts: u32,
    pub first_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// Six attempts over about a minute (1 s, 2 s, 4 s, 8 s, 16 s between them).
    fn default() -> Self {
        Self {
            max_attempts: 6,
            first_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// The wait after failed attempt `attempt` (1-based).
    pub fn delay_after(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1));
        self.first_delay.saturating_mul(factor).min(self.max_delay)
    }
}

/// Uploads `file` like [`ArtifactStore::put_file`], retrying transient failures (network,
/// server errors) with exponential backoff. `on_retry(attempt, &error)` is called before each
/// wait, so the caller can report it. Permanent failures (bad credentials, missing local file,
/// invalid name) and the last transient one are returned.
pub async fn put_file_with_retry(
    store: &ArtifactStore,
    job: &str,
    name: &str,
    file: &Path,
    policy: &RetryPolicy,
    on_retry: impl FnMut(u32, &Error),
) -> Result<()> {
    retry_transient(policy, on_retry, || store.put_file(job, name, file)).await
}

/// Runs `operation` until it succeeds, fails permanently, or `policy.max_attempts` is reached.
pub async fn retry_transient<T, F, Fut>(
    policy: &RetryPolicy,
    mut on_retry: impl FnMut(u32, &Error),
    mut operation: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let mut attempt = 1;
    loop {
        match operation().await {
            Ok(value) => return Ok(value),
            Err(error) if error.is_transient() && attempt < policy.max_attempts => {
                on_retry(attempt, &error);
                let delay = policy.delay_after(attempt);
                tracing::warn!(attempt, delay_ms = delay.as_millis() as u64, error = %error, "store operation retried");
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
            Err(error) => return Err(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let policy = RetryPolicy {
            max_attempts: 10,
            first_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(500),
        };
        let delays: Vec<u64> = (1..=5)
            .map(|a| policy.delay_after(a).as_millis() as u64)
            .collect();
        assert_eq!(delays, [100, 200, 400, 500, 500]);
    }

    fn transient() -> Error {
        Error::Backend {
            url: "memory://".into(),
            key: "k".into(),
            source: object_store::Error::Generic {
                store: "test",
                source: "connection refused".into(),
            },
        }
    }

    #[tokio::test(start_paused = true)]
    async fn retries_transient_errors_until_success() {
        let policy = RetryPolicy::default();
        let mut calls = 0;
        let mut reported = Vec::new();
        let result = retry_transient(
            &policy,
            |attempt, _| reported.push(attempt),
            || {
                calls += 1;
                let outcome = if calls < 3 {
                    Err(transient())
                } else {
                    Ok(calls)
                };
                async move { outcome }
            },
        )
        .await;
        assert_eq!(result.unwrap(), 3);
        assert_eq!(reported, [1, 2]);
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_after_max_attempts_and_never_retries_permanent_errors() {
        let policy = RetryPolicy {
            max_attempts: 3,
            ..RetryPolicy::default()
        };
        let mut calls = 0;
        let result: Result<()> = retry_transient(
            &policy,
            |_, _| {},
            || {
                calls += 1;
                async { Err(transient()) }
            },
        )
        .await;
        assert!(result.unwrap_err().is_transient());
        assert_eq!(calls, 3);

        let mut calls = 0;
        let result: Result<()> = retry_transient(
            &policy,
            |_, _| panic!("no retry expected"),
            || {
                calls += 1;
                async {
                    Err(Error::NotFound {
                        url: "memory://".into(),
                        key: "k".into(),
                    })
                }
            },
        )
        .await;
        assert!(matches!(result, Err(Error::NotFound { .. })));
        assert_eq!(calls, 1);
    }
}
