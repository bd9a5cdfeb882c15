//! One conformance suite, run against every backend: `memory://`, `file://` (a temporary folder)
//! and a real S3 server (SeaweedFS on loopback, started by `deploy/seaweedfs.sh start DIR`).
//!
//! The S3 variant reads EASEL_TEST_S3_ENDPOINT, EASEL_TEST_S3_BUCKET, EASEL_TEST_S3_ACCESS_KEY_ID
//! and EASEL_TEST_S3_SECRET_ACCESS_KEY. Without them it fails, unless EASEL_SKIP_S3=1 says to skip.

use easel_test_support::S3Settings;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use easel_store::{
    ArtifactStore, Error, INDEX_NAME, MULTIPART_THRESHOLD, REPORT_NAME, RetryPolicy, StoreOptions,
    put_file_with_retry,
};

/// Larger than 20 MiB and not a multiple of the part size, so the last part is short.
const LARGE: usize = 21 * 1024 * 1024 + 12_345;

struct Backend {
    store: ArtifactStore,
    _dir: Option<tempfile::TempDir>,
}

fn memory() -> Option<Backend> {
    Some(Backend {
        store: ArtifactStore::open("memory://", &StoreOptions::default()).unwrap(),
        _dir: None,
    })
}

fn file() -> Option<Backend> {
    let dir = tempfile::tempdir().unwrap();
    // A folder that does not exist yet: opening creates it.
    let url = format!("file://{}/artifacts", dir.path().display());
    let store = ArtifactStore::open(&url, &StoreOptions::default()).unwrap();
    assert!(dir.path().join("artifacts").is_dir());
    Some(Backend {
        store,
        _dir: Some(dir),
    })
}

fn s3() -> Option<Backend> {
    let env = S3Settings::shared("S3 conformance test")?;
    let options = StoreOptions {
        endpoint: Some(env.endpoint),
        access_key_id: Some(env.access_key_id),
        secret_access_key: Some(env.secret_access_key),
        ..StoreOptions::default()
    };
    let url = format!(
        "s3://{}/{}",
        env.bucket,
        S3Settings::unique_prefix("conformance")
    );
    Some(Backend {
        store: ArtifactStore::open(&url, &options).unwrap(),
        _dir: None,
    })
}

/// Deterministic pseudo-random bytes (blake3's extendable output), distinct per seed.
fn pattern(seed: &str, len: usize) -> Vec<u8> {
    let mut out = vec![0; len];
    blake3::Hasher::new()
        .update(seed.as_bytes())
        .finalize_xof()
        .fill(&mut out);
    out
}

fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

async fn put_get_roundtrip(store: &ArtifactStore) {
    store
        .put_bytes(
            "job-a",
            "classes.json",
            Bytes::from_static(b"[\"cat\",\"dog\"]"),
        )
        .await
        .unwrap();
    let back = store.get_bytes("job-a", "classes.json").await.unwrap();
    assert_eq!(&back[..], b"[\"cat\",\"dog\"]");

    // Overwriting replaces the whole object.
    store
        .put_bytes("job-a", "classes.json", Bytes::from_static(b"[]"))
        .await
        .unwrap();
    assert_eq!(
        &store.get_bytes("job-a", "classes.json").await.unwrap()[..],
        b"[]"
    );

    // Nested names and files.
    let dir = tempfile::tempdir().unwrap();
    let small = pattern("small", 100_000);
    let path = write_file(dir.path(), "best.safetensors", &small);
    store
        .put_file("job-a", "weights/best.safetensors", &path)
        .await
        .unwrap();
    assert_eq!(
        store
            .get_bytes("job-a", "weights/best.safetensors")
            .await
            .unwrap(),
        small
    );

    match store.get_bytes("job-a", "missing.json").await {
        Err(Error::NotFound { key, .. }) => {
            assert!(key.ends_with("jobs/job-a/missing.json"), "{key}")
        }
        other => panic!("expected NotFound, got {other:?}"),
    }
    let err = store
        .put_bytes("job-a", "../escape", Bytes::new())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("artifact name"), "{err}");
}

async fn multipart_large_artifact(store: &ArtifactStore) {
    let dir = tempfile::tempdir().unwrap();
    let large = pattern("large", LARGE);
    assert!(large.len() as u64 > MULTIPART_THRESHOLD);
    let path = write_file(dir.path(), "last.safetensors", &large);
    store
        .put_file("job-big", "weights/last.safetensors", &path)
        .await
        .unwrap();

    let back = store
        .get_bytes("job-big", "weights/last.safetensors")
        .await
        .unwrap();
    assert_eq!(back.len(), LARGE);
    assert_eq!(blake3::hash(&back), blake3::hash(&large));
    let listed = store.list_artifacts("job-big").await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].name.as_str(), listed[0].size),
        ("weights/last.safetensors", LARGE as u64)
    );
}

async fn listing(store: &ArtifactStore) {
    assert!(store.list_jobs().await.unwrap().is_empty());
    for (job, name) in [
        ("job-1", "metrics.jsonl"),
        ("job-1", "weights/best.safetensors"),
        ("job-2", "events.jsonl"),
    ] {
        store
            .put_bytes(job, name, Bytes::from(pattern(name, 1000)))
            .await
            .unwrap();
    }
    store
        .put_bytes(
            "job-1",
            REPORT_NAME,
            Bytes::from_static(b"{\"accuracy\":0.9}"),
        )
        .await
        .unwrap();

    let names: Vec<String> = store
        .list_artifacts("job-1")
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.name)
        .collect();
    assert_eq!(
        names,
        [
            INDEX_NAME,
            "metrics.jsonl",
            REPORT_NAME,
            "weights/best.safetensors"
        ]
    );
    assert!(store.list_artifacts("job-none").await.unwrap().is_empty());

    let jobs = store.list_jobs().await.unwrap();
    let summary: Vec<(&str, bool, usize)> = jobs
        .iter()
        .map(|j| (j.job_id.as_str(), j.complete, j.artifacts))
        .collect();
    assert_eq!(summary, [("job-1", true, 4), ("job-2", false, 1)]);

    // report.json came with an index of every other artifact and its digest.
    let index = store
        .read_index("job-1")
        .await
        .unwrap()
        .expect("artifacts.json written");
    let indexed: Vec<&str> = index.artifacts.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(indexed, ["metrics.jsonl", "weights/best.safetensors"]);
    let best = index.get("weights/best.safetensors").unwrap();
    assert_eq!(
        best.blake3,
        blake3::hash(&pattern("weights/best.safetensors", 1000))
            .to_hex()
            .as_str()
    );
    assert_eq!(best.size, 1000);

    // A second handle (another process) hashes what it did not upload itself.
    let other = store.clone();
    let index_again = other.write_index("job-1").await.unwrap();
    assert_eq!(index_again, index);
}

/// While a large multipart upload runs, a reader polling the key sees only "not found" or the
/// whole object with the right digest, never a prefix of it.
async fn reader_never_sees_partial(store: &ArtifactStore) {
    let dir = tempfile::tempdir().unwrap();
    let large = pattern("atomic", LARGE);
    let expected = blake3::hash(&large);
    let path = write_file(dir.path(), "last.safetensors", &large);

    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let (store, done) = (store.clone(), done.clone());
        tokio::spawn(async move {
            let (mut absent, mut complete) = (0u32, 0u32);
            loop {
                let finished = done.load(Ordering::SeqCst);
                match store
                    .get_bytes("job-atomic", "weights/last.safetensors")
                    .await
                {
                    Err(Error::NotFound { .. }) => absent += 1,
                    Ok(bytes) => {
                        assert_eq!(bytes.len(), LARGE, "reader saw a partial object");
                        assert_eq!(blake3::hash(&bytes), expected, "reader saw a mixed object");
                        complete += 1;
                    }
                    Err(e) => panic!("reader failed: {e}"),
                }
                // One more read after the upload returned, which must see the whole object.
                if finished {
                    return (absent, complete);
                }
                tokio::task::yield_now().await;
            }
        })
    };
    store
        .put_file("job-atomic", "weights/last.safetensors", &path)
        .await
        .unwrap();
    done.store(true, Ordering::SeqCst);
    let (absent, complete) = reader.await.unwrap();
    assert!(complete >= 1, "the finished upload must be visible");
    eprintln!("reader polls: {absent} not found, {complete} complete");
}

async fn download_resumes_and_verifies(store: &ArtifactStore) {
    let src = tempfile::tempdir().unwrap();
    let large = pattern("download", LARGE);
    let path = write_file(src.path(), "best.safetensors", &large);
    store
        .put_file("job-dl", "weights/best.safetensors", &path)
        .await
        .unwrap();
    store
        .put_bytes(
            "job-dl",
            "metrics.jsonl",
            Bytes::from_static(b"{\"epoch\":1}\n"),
        )
        .await
        .unwrap();
    store
        .put_bytes("job-dl", REPORT_NAME, Bytes::from_static(b"{}"))
        .await
        .unwrap();

    let out = tempfile::tempdir().unwrap();
    let report = store.download_job("job-dl", &[], out.path()).await.unwrap();
    assert!(report.complete);
    assert_eq!(report.files.len(), 4);
    let best = out.path().join("weights/best.safetensors");
    assert_eq!(std::fs::read(&best).unwrap(), large);
    let weights = report
        .files
        .iter()
        .find(|f| f.name == "weights/best.safetensors")
        .unwrap();
    assert!(weights.digest_verified && weights.resumed_from == 0);

    // An interrupted earlier download left the first bytes as `.part`: only the rest is fetched.
    std::fs::remove_file(&best).unwrap();
    let kept = 7 * 1024 * 1024 + 3;
    std::fs::write(
        out.path().join("weights/best.safetensors.part"),
        &large[..kept],
    )
    .unwrap();
    let report = store
        .download_job("job-dl", &["weights/best.safetensors"], out.path())
        .await
        .unwrap();
    assert_eq!(report.files[0].resumed_from, kept as u64);
    assert_eq!(report.bytes_transferred, (LARGE - kept) as u64);
    assert_eq!(
        blake3::hash(&std::fs::read(&best).unwrap()),
        blake3::hash(&large)
    );
    assert!(!out.path().join("weights/best.safetensors.part").exists());

    // A `.part` holding wrong bytes fails the digest check and is fetched again from the start.
    std::fs::remove_file(&best).unwrap();
    std::fs::write(
        out.path().join("weights/best.safetensors.part"),
        vec![0u8; kept],
    )
    .unwrap();
    let report = store
        .download_job("job-dl", &["weights/best.safetensors"], out.path())
        .await
        .unwrap();
    assert!(report.files[0].digest_verified);
    assert_eq!(report.files[0].resumed_from, 0);
    assert_eq!(
        blake3::hash(&std::fs::read(&best).unwrap()),
        blake3::hash(&large)
    );

    // Everything already in place: nothing is transferred.
    let report = store.download_job("job-dl", &[], out.path()).await.unwrap();
    assert_eq!(report.bytes_transferred, 0);
    assert!(report.files.iter().all(|f| f.already_present));

    let err = store
        .download_job("job-dl", &["nope.bin"], out.path())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err}");
    let err = store
        .download_job("job-unknown", &[], out.path())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err}");
}

/// A dataset already in the store is copied to a local folder; a second call fetches nothing.
async fn mirror_prefix(store: &ArtifactStore) {
    let files = [
        ("train/cat/1.png", 3000),
        ("train/dog/2.png", 5000),
        ("val/cat/3.png", 0),
    ];
    for (name, len) in files {
        store
            .put_bytes("data-set", name, Bytes::from(pattern(name, len)))
            .await
            .unwrap();
    }
    let out = tempfile::tempdir().unwrap();
    let mut heard = Vec::new();
    let report = store
        .mirror_to_dir_with_progress("jobs/data-set", out.path(), |done, found| {
            heard.push((done.files, found.files, found.total_bytes));
        })
        .await
        .unwrap();
    assert_eq!(heard, [(1, 3, 8000), (2, 3, 8000), (3, 3, 8000)]);
    assert_eq!(
        (report.files, report.total_bytes, report.bytes_transferred),
        (3, 8000, 8000)
    );
    for (name, len) in files {
        assert_eq!(
            std::fs::read(out.path().join(name)).unwrap(),
            pattern(name, len),
            "{name}"
        );
    }
    let again = store
        .mirror_to_dir("jobs/data-set", out.path())
        .await
        .unwrap();
    assert_eq!((again.bytes_transferred, again.already_present), (0, 3));
    let err = store
        .mirror_to_dir("jobs/absent", out.path())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err}");
}

macro_rules! conformance {
    ($backend:ident) => {
        mod $backend {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn put_get() {
                let Some(backend) = super::$backend() else {
                    return;
                };
                put_get_roundtrip(&backend.store).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn multipart_over_20_mib() {
                let Some(backend) = super::$backend() else {
                    return;
                };
                multipart_large_artifact(&backend.store).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn list_jobs_and_artifacts() {
                let Some(backend) = super::$backend() else {
                    return;
                };
                listing(&backend.store).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_reader_never_sees_a_partial_artifact() {
                let Some(backend) = super::$backend() else {
                    return;
                };
                reader_never_sees_partial(&backend.store).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn download_resume_and_verify() {
                let Some(backend) = super::$backend() else {
                    return;
                };
                download_resumes_and_verifies(&backend.store).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn mirror_a_prefix_to_a_folder() {
                let Some(backend) = super::$backend() else {
                    return;
                };
                mirror_prefix(&backend.store).await;
            }
        }
    };
}

conformance!(memory);
conformance!(file);
conformance!(s3);

#[tokio::test]
async fn s3_wrong_secret_is_a_clear_auth_error() {
    let Some(env) = S3Settings::shared("S3 conformance test") else {
        return;
    };
    let options = StoreOptions {
        endpoint: Some(env.endpoint),
        access_key_id: Some(env.access_key_id),
        secret_access_key: Some("not-the-secret".into()),
        ..StoreOptions::default()
    };
    let store = ArtifactStore::open(
        &format!(
            "s3://{}/{}",
            env.bucket,
            S3Settings::unique_prefix("conformance")
        ),
        &options,
    )
    .unwrap();
    let err = store
        .put_bytes("job", "report.json", Bytes::from_static(b"{}"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::AccessDenied { .. }), "{err:?}");
    assert!(!err.is_transient());
    let message = err.to_string();
    assert!(
        message.contains("refused") && message.contains("secret"),
        "{message}"
    );
    let err = store.list_jobs().await.unwrap_err();
    assert!(matches!(err, Error::AccessDenied { .. }), "{err:?}");
}

#[tokio::test]
async fn unreachable_server_is_retried_then_reported() {
    // Nothing listens on port 1: every attempt fails with a connection error.
    let options = StoreOptions {
        endpoint: Some("http://127.0.0.1:1".into()),
        access_key_id: Some("k".into()),
        secret_access_key: Some("s".into()),
        ..StoreOptions::default()
    };
    let store = ArtifactStore::open("s3://bucket/prefix", &options).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(dir.path(), "m.jsonl", b"{}");
    let policy = RetryPolicy {
        max_attempts: 2,
        first_delay: std::time::Duration::from_millis(10),
        max_delay: std::time::Duration::from_millis(10),
    };
    let mut retries = Vec::new();
    let err = put_file_with_retry(
        &store,
        "job",
        "metrics.jsonl",
        &path,
        &policy,
        |attempt, e| retries.push((attempt, e.is_transient())),
    )
    .await
    .unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    assert_eq!(retries, [(1, true)]);

    // A local file that is not there is permanent: no retry.
    let err = put_file_with_retry(
        &store,
        "job",
        "x",
        &dir.path().join("gone"),
        &policy,
        |_, _| panic!("a missing local file is not retried"),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("gone"), "{err}");
}

#[test]
fn plain_http_to_a_remote_host_is_refused() {
    let options = StoreOptions {
        endpoint: Some("http://192.0.2.7:8333".into()),
        allow_http: true,
        ..Default::default()
    };
    let err = ArtifactStore::open("s3://bucket", &options)
        .unwrap_err()
        .to_string();
    assert!(err.contains("loopback"), "{err}");
}
