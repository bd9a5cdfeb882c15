//! Upload and download throughput of one large artifact, per backend, with the ratio to file://.
//!
//! `cargo bench -p easel-store --bench transfer` — the S3 row needs the loopback server
//! (`eval "$(deploy/seaweedfs.sh start target/seaweedfs)"`); EASEL_BENCH_MB sets the size (256).

use std::time::Instant;

use easel_store::{ArtifactStore, StoreOptions};

fn main() {
    let megabytes: usize = std::env::var("EASEL_BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let scratch = tempfile::tempdir().expect("temporary folder");
    let source = scratch.path().join("weights.bin");
    let mut data = vec![0u8; megabytes * 1024 * 1024];
    blake3::Hasher::new()
        .update(b"bench")
        .finalize_xof()
        .fill(&mut data);
    std::fs::write(&source, &data).expect("write the source file");
    drop(data);

    let mut backends = vec![("file://".to_owned(), StoreOptions::default())];
    match std::env::var("EASEL_TEST_S3_ENDPOINT") {
        Ok(endpoint) => {
            let bucket =
                std::env::var("EASEL_TEST_S3_BUCKET").unwrap_or_else(|_| "easel-test".into());
            let options = StoreOptions {
                endpoint: Some(endpoint),
                access_key_id: std::env::var("EASEL_TEST_S3_ACCESS_KEY_ID").ok(),
                secret_access_key: std::env::var("EASEL_TEST_S3_SECRET_ACCESS_KEY").ok(),
                ..StoreOptions::default()
            };
            backends.push((
                format!("s3://{bucket}/bench-{}", std::process::id()),
                options,
            ));
        }
        Err(_) => println!("(no EASEL_TEST_S3_ENDPOINT: S3 row skipped)"),
    }

    println!("{megabytes} MiB artifact");
    println!(
        "{:<40} {:>12} {:>12} {:>10} {:>10}",
        "backend", "upload MB/s", "download MB/s", "up ratio", "down ratio"
    );
    let mut baseline: Option<(f64, f64)> = None;
    for (url, options) in backends {
        let url = if url == "file://" {
            format!("file://{}/store", scratch.path().display())
        } else {
            url
        };
        let store = ArtifactStore::open(&url, &options).expect("open store");
        let out = scratch.path().join(format!("out-{}", baseline.is_some()));
        let (up, down) = runtime.block_on(async {
            let started = Instant::now();
            store
                .put_file("bench", "weights/last.safetensors", &source)
                .await
                .expect("upload");
            let up = megabytes as f64 * 1.048576 / started.elapsed().as_secs_f64();
            let started = Instant::now();
            store
                .download_job("bench", &["weights/last.safetensors"], &out)
                .await
                .expect("download");
            let down = megabytes as f64 * 1.048576 / started.elapsed().as_secs_f64();
            (up, down)
        });
        let (base_up, base_down) = *baseline.get_or_insert((up, down));
        let label = if url.starts_with("file://") {
            "file://"
        } else {
            "s3:// (loopback SeaweedFS)"
        };
        println!(
            "{label:<40} {up:>12.0} {down:>12.0} {:>10.2} {:>10.2}",
            up / base_up,
            down / base_down
        );
    }
}
