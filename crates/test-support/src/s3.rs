//! The loopback S3 server the S3 tests share: SeaweedFS started by `deploy/seaweedfs.sh start DIR`
//! (deploy/test.sh and CI do), named by EASEL_TEST_S3_ENDPOINT (+ _BUCKET, _ACCESS_KEY_ID,
//! _SECRET_ACCESS_KEY). Its absence fails the tests, unless EASEL_SKIP_S3=1 skips them explicitly.

use std::time::{SystemTime, UNIX_EPOCH};

/// True (and says so) when EASEL_SKIP_S3=1 asks to skip the S3 tests.
pub fn skip_requested(what: &str) -> bool {
    let skip = std::env::var("EASEL_SKIP_S3").as_deref() == Ok("1");
    if skip {
        eprintln!("skipped: {what} (EASEL_SKIP_S3=1)");
    }
    skip
}

#[derive(Debug, Clone)]
pub struct S3Settings {
    pub endpoint: String,
    pub bucket: String,
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl S3Settings {
    /// The shared loopback server, or None (said on stderr) when EASEL_SKIP_S3=1 asks to skip
    /// `what`; panics with how to start the server otherwise.
    pub fn shared(what: &str) -> Option<S3Settings> {
        if skip_requested(what) {
            return None;
        }
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let endpoint = var("EASEL_TEST_S3_ENDPOINT").unwrap_or_else(|| {
            panic!(
                "EASEL_TEST_S3_ENDPOINT is not set: start the loopback S3 server with \
                 `eval \"$(deploy/seaweedfs.sh start target/seaweedfs)\"` (CI does this), \
                 or set EASEL_SKIP_S3=1 to skip the S3 tests explicitly"
            )
        });
        Some(S3Settings {
            endpoint,
            bucket: var("EASEL_TEST_S3_BUCKET").unwrap_or_else(|| "easel-test".into()),
            access_key_id: var("EASEL_TEST_S3_ACCESS_KEY_ID")
                .unwrap_or_else(|| "easel-test-key".into()),
            secret_access_key: var("EASEL_TEST_S3_SECRET_ACCESS_KEY")
                .unwrap_or_else(|| "easel-test-secret".into()),
        })
    }

    /// A fresh prefix name, so runs never see each other's objects.
    pub fn unique_prefix(what: &str) -> String {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        format!("{what}-{}-{nanos}", std::process::id())
    }
}
