//! Scans dataset roots and prints the report, the manifest digest and the scan rate.
//!
//! `cargo run -p easel-dataset --example scan -- ROOT [ROOT...]`

use easel_dataset::{ScanOptions, scan};
use std::path::PathBuf;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let roots: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    if roots.is_empty() {
        eprintln!("usage: scan ROOT [ROOT...]   (folders or zip archives, one folder per class)");
        std::process::exit(2);
    }
    let started = Instant::now();
    let report = scan(&roots, &ScanOptions::default())?;
    let seconds = started.elapsed().as_secs_f64();
    print!("{report}");
    println!("manifest digest: {}", report.manifest.digest());
    let images = report.manifest.entries.len();
    println!(
        "scanned {images} images ({:.1} MB) in {seconds:.3} s: {:.0} images/s, {:.0} MB/s, {} threads",
        report.manifest.total_bytes() as f64 / 1e6,
        images as f64 / seconds,
        report.manifest.total_bytes() as f64 / 1e6 / seconds,
        rayon::current_num_threads()
    );
    Ok(())
}
