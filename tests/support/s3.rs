//! The loopback S3 server the S3 tests share: SeaweedFS started by `deploy/seaweedfs.sh start DIR`
//! (deploy/test.sh and CI do), named by EASEL_TEST_S3_ENDPOINT (+ _BUCKET, _ACCESS_KEY_ID,
//! _SECRET_ACCESS_KEY). Its absence fails the tests, unless EASEL_SKIP_S3=1 skips them explicitly.

use std::time::{SystemTime, UNIX_EPOCH};

use easel_store::{ArtifactStore, StoreOptions};
use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;

#[derive(Clone)]
pub struct S3 {
    pub endpoint: String,
    pub bucket: String,
    pub access_key_id: String,
    pub secret_access_key: String,
}

/// True (and says so) when EASEL_SKIP_S3=1 asks to skip the S3 tests.
pub fn skip_requested(what: &str) -> bool {
    let skip = std::env::var("EASEL_SKIP_S3").as_deref() == Ok("1");
    if skip {
        eprintln!("skipped: {what} (EASEL_SKIP_S3=1)");
    }
    skip
}

impl S3 {
    /// The shared loopback server, or None when EASEL_SKIP_S3=1; panics with how to start it.
    pub fn shared(what: &str) -> Option<S3> {
        if skip_requested(what) {
            return None;
        }
        let endpoint = std::env::var("EASEL_TEST_S3_ENDPOINT")
            .ok()
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| {
                panic!(
                    "EASEL_TEST_S3_ENDPOINT is not set: start the loopback S3 server with \
                     `eval \"$(deploy/seaweedfs.sh start target/seaweedfs)\"` (CI does this), \
                     or set EASEL_SKIP_S3=1 to skip the S3 tests explicitly"
                )
            });
        let var =
            |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.to_owned());
        Some(S3 {
            endpoint,
            bucket: var("EASEL_TEST_S3_BUCKET", "easel-test"),
            access_key_id: var("EASEL_TEST_S3_ACCESS_KEY_ID", "easel-test-key"),
            secret_access_key: var("EASEL_TEST_S3_SECRET_ACCESS_KEY", "easel-test-secret"),
        })
    }

    /// What the worker and client read: credentials never go on a command line.
    pub fn env(&self) -> [(&'static str, &str); 3] {
        [
            ("EASEL_S3_ENDPOINT", self.endpoint.as_str()),
            ("EASEL_S3_ACCESS_KEY_ID", self.access_key_id.as_str()),
            (
                "EASEL_S3_SECRET_ACCESS_KEY",
                self.secret_access_key.as_str(),
            ),
        ]
    }

    /// A fresh prefix in the bucket, so runs never see each other's objects.
    pub fn unique_url(&self, what: &str) -> String {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        format!("s3://{}/{what}-{}-{nanos}", self.bucket, std::process::id())
    }

    /// An artifact store on this server.
    pub fn store(&self, url: &str) -> ArtifactStore {
        let options = StoreOptions {
            endpoint: Some(self.endpoint.clone()),
            access_key_id: Some(self.access_key_id.clone()),
            secret_access_key: Some(self.secret_access_key.clone()),
            ..StoreOptions::default()
        };
        ArtifactStore::open(url, &options).unwrap()
    }

    /// The raw bucket, for putting objects the way another tool would.
    pub fn bucket_store(&self) -> impl ObjectStore {
        AmazonS3Builder::new()
            .with_bucket_name(&self.bucket)
            .with_endpoint(&self.endpoint)
            .with_allow_http(true)
            .with_virtual_hosted_style_request(false)
            .with_region("us-east-1")
            .with_access_key_id(&self.access_key_id)
            .with_secret_access_key(&self.secret_access_key)
            .build()
            .unwrap()
    }
}
