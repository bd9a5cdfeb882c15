//! Upload throughput over loopback with the real binaries: a synthetic dataset of noise PNGs
//! (incompressible, ~0.8 MB each) submitted to a fresh worker; prints MB/s for the default
//! 1 MiB chunks and for 64 KiB chunks, and the ratio between them.
//!
//!   cargo bench -p easel-e2e --bench upload_throughput

use easel_e2e::{Worker, noise_dataset, write_spec};

fn upload_mb_per_s(chunk_bytes: usize) -> (f64, u64) {
    let tmp = tempfile::tempdir().unwrap();
    let data = noise_dataset(tmp.path(), 20, 512, 11);
    let spec = write_spec(tmp.path(), "bench", &data, 1);
    let worker = Worker::start(&tmp.path().join("worker"));
    let home = tmp.path().join("home");
    let chunk = chunk_bytes.to_string();
    let summary = worker.submit_detached(&home, &spec, &["--chunk-bytes", &chunk]);
    let bytes = summary["upload"]["bytes_sent"].as_u64().unwrap();
    let seconds = summary["upload"]["seconds"].as_f64().unwrap();
    (bytes as f64 / 1e6 / seconds, bytes)
}

fn main() {
    let (large, bytes) = upload_mb_per_s(1 << 20);
    let (small, _) = upload_mb_per_s(64 << 10);
    println!(
        "upload over loopback, {:.1} MB of noise PNGs:",
        bytes as f64 / 1e6
    );
    println!("  1 MiB chunks:  {large:.1} MB/s");
    println!("  64 KiB chunks: {small:.1} MB/s");
    println!("  ratio 1 MiB / 64 KiB: {:.2}", large / small);
}
