//! Dataset upload over loopback with the real binaries, against a plain copy of the same files
//! measured in the same run: `tar -c | TCP | tar -x` through a loopback socket (what a person
//! would otherwise do with `tar | ssh` or `nc`, minus the encryption).
//!
//! Two datasets: many small images (default 100,000 noise PNGs of 32x32, about 3 kB each) and a
//! few large files (default 8 x 250 MB noise BMPs, 2 GB). For each: files/s and MB/s of the
//! baseline and of `client submit`'s upload (TLS off, as the baseline has none), their ratio, and
//! how long a second submit of the same data takes (it uploads nothing).
//!
//!   cargo bench -p easel-e2e --bench upload_throughput
//!   EASEL_BENCH_SMALL_FILES=20000 EASEL_BENCH_LARGE_MB=500 cargo bench ...   (a quicker run)
//!   EASEL_BENCH_SUBMIT_ARGS="--streams 8" cargo bench ...                   (other settings)

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use easel_e2e::Worker;
use rand::{RngCore, SeedableRng};

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `count` 32x32 noise PNGs in 10 class folders.
fn small_images(root: &Path, count: u64) -> PathBuf {
    let dir = root.join("small");
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    for i in 0..count {
        let class = dir.join(format!("class{}", i % 10));
        if i < 10 {
            std::fs::create_dir_all(&class).unwrap();
        }
        let image = image::RgbImage::from_fn(32, 32, |_, _| {
            image::Rgb([rng.next_u32() as u8, rng.next_u32() as u8, 0])
        });
        image.save(class.join(format!("{i}.png"))).unwrap();
    }
    dir
}

/// Noise BMPs of about `each_mb` MB in two class folders, `total_mb` in all: a 24-bit BMP is a
/// 54-byte header and raw rows, so a large valid image costs nothing to make.
fn large_images(root: &Path, total_mb: u64, each_mb: u64) -> PathBuf {
    let dir = root.join("large");
    let side = (((each_mb * 1_000_000 / 3) as f64).sqrt() as u32) / 4 * 4;
    let pixels = side as usize * side as usize * 3;
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let mut row = vec![0u8; side as usize * 3];
    for i in 0..(total_mb / each_mb).max(2) {
        let class = dir.join(format!("class{}", i % 2));
        std::fs::create_dir_all(&class).unwrap();
        let file = std::fs::File::create(class.join(format!("{i}.bmp"))).unwrap();
        let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
        let mut header = Vec::with_capacity(54);
        header.extend_from_slice(b"BM");
        header.extend_from_slice(&(54 + pixels as u32).to_le_bytes());
        header.extend_from_slice(&[0; 4]);
        header.extend_from_slice(&54u32.to_le_bytes());
        header.extend_from_slice(&40u32.to_le_bytes());
        header.extend_from_slice(&side.to_le_bytes());
        header.extend_from_slice(&side.to_le_bytes());
        header.extend_from_slice(&1u16.to_le_bytes());
        header.extend_from_slice(&24u16.to_le_bytes());
        header.extend_from_slice(&[0; 4]);
        header.extend_from_slice(&(pixels as u32).to_le_bytes());
        header.extend_from_slice(&[0; 16]);
        out.write_all(&header).unwrap();
        for _ in 0..side {
            rng.fill_bytes(&mut row);
            out.write_all(&row).unwrap();
        }
        out.flush().unwrap();
    }
    dir
}

/// Waits for what was written so far to reach the disk.
fn settle() {
    let synced = Command::new("sync").status().unwrap();
    assert!(synced.success(), "sync failed");
}

/// Files and bytes below `dir`.
fn census(dir: &Path) -> (u64, u64) {
    let mut files = 0;
    let mut bytes = 0;
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let meta = entry.metadata().unwrap();
        if meta.is_dir() {
            let (f, b) = census(&entry.path());
            files += f;
            bytes += b;
        } else {
            files += 1;
            bytes += meta.len();
        }
    }
    (files, bytes)
}

/// Seconds to copy `source` into `dest` as `tar -c | loopback TCP | tar -x`.
fn tar_over_tcp(source: &Path, dest: &Path) -> f64 {
    std::fs::create_dir_all(dest).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let started = Instant::now();
    let dest = dest.to_owned();
    let receiver = std::thread::spawn(move || {
        let (mut socket, _) = listener.accept().unwrap();
        let mut untar = Command::new("tar")
            .args(["-x", "-f", "-", "-C"])
            .arg(&dest)
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        std::io::copy(&mut socket, untar.stdin.as_mut().unwrap()).unwrap();
        drop(untar.stdin.take());
        assert!(untar.wait().unwrap().success(), "tar -x failed");
    });
    let mut tar = Command::new("tar")
        .args(["-c", "-f", "-", "-C"])
        .arg(source)
        .arg(".")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut socket = TcpStream::connect(address).unwrap();
    std::io::copy(tar.stdout.as_mut().unwrap(), &mut socket).unwrap();
    drop(socket);
    assert!(tar.wait().unwrap().success(), "tar -c failed");
    receiver.join().unwrap();
    started.elapsed().as_secs_f64()
}

fn spec_for(dir: &Path, name: &str, data: &Path) -> PathBuf {
    let text = format!(
        "name = \"{name}\"\n\n[data]\npath = \"{}\"\nimage_size = 32\nmax_image_pixels = \
         100000000\n\n[model]\narchitecture = \"small_cnn\"\n\n[train]\nepochs = 1\n",
        data.display()
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

struct Upload {
    seconds: f64,
    files: u64,
    bytes: u64,
    resubmit_seconds: f64,
    resubmit_bytes: u64,
}

/// Submits `data` to a fresh worker twice (the second uploads nothing), cancelling each job so
/// training does not compete with the measurement.
fn easel_upload(root: &Path, name: &str, data: &Path) -> Upload {
    let worker = Worker::start_with_env(&root.join(format!("worker-{name}")), &[], &[]);
    let home = root.join("home");
    let spec = spec_for(root, name, data);
    // e.g. EASEL_BENCH_SUBMIT_ARGS="--streams 8" to try other settings.
    let extra_text = std::env::var("EASEL_BENCH_SUBMIT_ARGS").unwrap_or_default();
    let extra: Vec<&str> = extra_text.split_whitespace().collect();
    let submit = || {
        let started = Instant::now();
        let summary = worker.submit_detached(&home, &spec, &extra);
        let seconds = started.elapsed().as_secs_f64();
        let job = summary["job_id"].as_str().unwrap().to_owned();
        worker.client_ok(&home, &["cancel", &job]);
        // A running job stops at its next step, after it has decoded the dataset.
        worker.wait_until_finished(&home, &job, std::time::Duration::from_secs(600));
        (summary, seconds)
    };
    let (first, _) = submit();
    let (second, resubmit_seconds) = submit();
    Upload {
        seconds: first["upload"]["seconds"].as_f64().unwrap(),
        files: first["upload"]["files"].as_u64().unwrap(),
        bytes: first["upload"]["bytes_sent"].as_u64().unwrap(),
        resubmit_seconds,
        resubmit_bytes: second["upload"]["bytes_sent"].as_u64().unwrap()
            + second["manifest"]["bytes_sent"].as_u64().unwrap(),
    }
}

fn main() {
    let root = tempfile::tempdir().unwrap();
    let small_count = setting("EASEL_BENCH_SMALL_FILES", 100_000);
    let large_mb = setting("EASEL_BENCH_LARGE_MB", 2_000);
    let started = Instant::now();
    let small = small_images(root.path(), small_count);
    let large = large_images(root.path(), large_mb, 250);
    println!("datasets made in {:.1} s", started.elapsed().as_secs_f64());
    println!(
        "{:<8} {:>8} {:>9} | {:>12} {:>9} | {:>12} {:>9} | {:>6} | {:>13}",
        "dataset",
        "files",
        "MB",
        "tar files/s",
        "MB/s",
        "Easel files/s",
        "MB/s",
        "ratio",
        "resubmit"
    );
    for (name, data) in [("small", &small), ("large", &large)] {
        let (files, bytes) = census(data);
        // Each side starts with nothing of an earlier write still going to disk.
        settle();
        let tar_seconds = tar_over_tcp(data, &root.path().join(format!("copy-{name}")));
        settle();
        let easel = easel_upload(root.path(), name, data);
        assert_eq!(easel.files, files, "every file uploaded once");
        let mb = bytes as f64 / 1e6;
        println!(
            "{:<8} {:>8} {:>9.1} | {:>12.0} {:>9.1} | {:>12.0} {:>9.1} | {:>5.2}x | {:>6.2} s {:>3} B",
            name,
            files,
            mb,
            files as f64 / tar_seconds,
            mb / tar_seconds,
            easel.files as f64 / easel.seconds,
            easel.bytes as f64 / 1e6 / easel.seconds,
            tar_seconds / easel.seconds,
            easel.resubmit_seconds,
            easel.resubmit_bytes,
        );
    }
    println!(
        "ratio: Easel's upload speed / tar over TCP in the same run (above 1: Easel is faster); \
         resubmit: a second submit of the same data, whole command (scan included), bytes sent"
    );
}
