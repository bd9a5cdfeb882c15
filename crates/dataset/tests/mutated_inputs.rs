//! Property: whatever bytes arrive as images, manifests or manifest blobs, the dataset readers
//! answer with a value that holds together or with one of the errors meant for bad input, never
//! a panic, and a blob never inflates past its cap. Seeded mutants of real files (a PNG, a JPEG,
//! a scanned manifest), a bounded run. Each test also counts what was accepted and what was
//! refused, so a reader that refuses everything (or accepts everything) fails it.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Cursor;
use std::path::Path;

use easel_dataset::{
    Error, ImageSource, Manifest, ScanOptions, ScanReport, digest_bytes, manifest_blob_json, scan,
};
use easel_test_support::mutations::mutants;

fn encoded(format: image::ImageFormat) -> Vec<u8> {
    let image =
        image::RgbImage::from_fn(24, 16, |x, y| image::Rgb([x as u8 * 9, y as u8 * 13, 77]));
    let mut bytes = Cursor::new(Vec::new());
    image.write_to(&mut bytes, format).unwrap();
    bytes.into_inner()
}

/// Writes the files of one class folder; returns them keyed by their manifest path.
fn write_class(root: &Path, class: &str, files: &[(String, Vec<u8>)]) -> BTreeMap<String, Vec<u8>> {
    let folder = root.join(class);
    std::fs::create_dir_all(&folder).unwrap();
    let mut written = BTreeMap::new();
    for (name, bytes) in files {
        std::fs::write(folder.join(name), bytes).unwrap();
        written.insert(format!("{class}/{name}"), bytes.clone());
    }
    written
}

/// How many mutants a reader took and how many it refused.
#[derive(Debug, Default)]
struct Tally {
    accepted: usize,
    refused: usize,
}

impl Tally {
    /// Both outcomes must occur at least `least` times. The runs are seeded, so the counts are
    /// fixed; `least` is about a third of what they are, room for an image encoder or a
    /// manifest format that shifts them a little.
    fn assert_both_at_least(&self, least: usize, what: &str) {
        assert!(
            self.accepted >= least && self.refused >= least,
            "{what}: {self:?}, expected at least {least} of each"
        );
    }
}

/// A manifest path for a file the scan reported by its full path.
fn manifest_path(root: &Path, display: &str) -> String {
    Path::new(display)
        .strip_prefix(root)
        .unwrap_or_else(|_| panic!("{display} is not under {}", root.display()))
        .to_string_lossy()
        .replace('\\', "/")
}

/// The manifest paths of every file the scan reported as not an image, unreadable (with a
/// reason) or over the pixel limit (truly over it), each reported once.
fn refusals(report: &ScanReport, root: &Path) -> BTreeSet<String> {
    let mut refused = BTreeSet::new();
    let mut refuse = |display: &str| {
        let first = refused.insert(manifest_path(root, display));
        assert!(first, "{display} reported twice");
    };
    for path in &report.non_images {
        refuse(path);
    }
    for problem in &report.unreadable {
        assert!(!problem.reason.is_empty(), "{}: no reason", problem.path);
        refuse(&problem.path);
    }
    for image in &report.oversized {
        assert!(
            u64::from(image.width) * u64::from(image.height)
                > ScanOptions::default().max_image_pixels,
            "{}: {}x{} is within the limit",
            image.path,
            image.width,
            image.height
        );
        refuse(&image.path);
    }
    refused
}

#[test]
fn mutated_images_are_kept_or_reported_and_never_stop_the_scan() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    let mut written = BTreeMap::new();
    for (seed, (class, format, extension)) in [
        ("pngs", image::ImageFormat::Png, "png"),
        ("jpegs", image::ImageFormat::Jpeg, "jpg"),
    ]
    .into_iter()
    .enumerate()
    {
        let valid = encoded(format);
        let mut files = vec![(format!("valid.{extension}"), valid.clone())];
        // Half named as images, half without an extension (sniffed from their first bytes).
        for (index, mutant) in mutants(&valid, 300, seed as u64).into_iter().enumerate() {
            let name = if index % 2 == 0 {
                format!("{index}.{extension}")
            } else {
                format!("{index}")
            };
            files.push((name, mutant));
        }
        written.extend(write_class(&root, class, &files));
    }
    let report = scan(std::slice::from_ref(&root), &ScanOptions::default())
        .expect("a folder of damaged images is scanned, not refused");
    assert!(report.rejected.is_empty() && report.loose_files.is_empty());
    assert_eq!(report.hidden_skipped, 0);
    assert_eq!(report.manifest.classes, ["jpegs", "pngs"]);

    // A kept file is listed with its own size and digest, and reads back as written.
    let mut tally = Tally::default();
    for entry in &report.manifest.entries {
        let bytes = &written[&entry.path];
        assert_eq!(entry.size, bytes.len() as u64, "{}", entry.path);
        assert_eq!(entry.digest, digest_bytes(bytes), "{}", entry.path);
        let class = &report.manifest.classes[entry.class as usize];
        assert!(
            entry.path.starts_with(&format!("{class}/")),
            "{}",
            entry.path
        );
        assert_eq!(&report.source().read(entry).unwrap(), bytes);
        tally.accepted += 1;
    }
    for path in ["pngs/valid.png", "jpegs/valid.jpg"] {
        assert!(report.manifest.entries.iter().any(|e| e.path == path));
    }

    // Every other file is reported once, as one of the kinds of refusal, and none is lost.
    let refused = refusals(&report, &root);
    tally.refused = refused.len();
    for path in &refused {
        assert!(written.contains_key(path), "{path} was never written");
        assert!(
            report.manifest.entries.iter().all(|e| &e.path != path),
            "{path} is both kept and reported"
        );
    }
    assert_eq!(tally.accepted + tally.refused, written.len(), "{tally:?}");
    tally.assert_both_at_least(100, "mutated images");
}

/// Reads a mutated manifest: `Some` when accepted, `None` when refused as bad input; any other
/// error fails the test.
fn read_manifest(text: &str) -> Option<Manifest> {
    match Manifest::from_json(text) {
        Ok(manifest) => Some(manifest),
        Err(Error::ManifestJson { .. } | Error::InvalidManifest { .. }) => None,
        Err(other) => panic!("a bad manifest refused with an unexpected error: {other}"),
    }
}

/// An accepted manifest is a valid one that survives being written and read again, as JSON
/// and as a blob, with the same content digest.
fn assert_round_trips(manifest: &Manifest) {
    manifest.validate().unwrap();
    let again = Manifest::from_json(&manifest.to_json()).unwrap();
    assert_eq!(&again, manifest);
    assert_eq!(again.digest(), manifest.digest());
    let from_blob = manifest_blob_json(&manifest.to_blob(), u64::MAX).unwrap();
    assert_eq!(&Manifest::from_json(&from_blob).unwrap(), manifest);
}

fn scanned_manifest() -> Manifest {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    for class in ["a", "b"] {
        let files: Vec<(String, Vec<u8>)> = (0..3u8)
            .map(|i| {
                let mut bytes = encoded(image::ImageFormat::Png);
                bytes.push(i); // distinct files
                (format!("{class}{i}.png"), bytes)
            })
            .collect();
        write_class(&root, class, &files);
    }
    scan(&[root], &ScanOptions::default()).unwrap().manifest
}

#[test]
fn mutated_manifests_and_manifest_blobs_are_read_or_refused() {
    let manifest = scanned_manifest();
    mutated_manifests_are_refused_as_bad_input_or_read_back_whole(&manifest);
    mutated_blobs_stay_under_the_cap_and_are_read_back_whole_or_refused(&manifest);
}

fn mutated_manifests_are_refused_as_bad_input_or_read_back_whole(manifest: &Manifest) {
    let mut tally = Tally::default();
    // Most edits break the JSON or a digest, so it takes many mutants for enough to be read.
    for mutant in mutants(manifest.to_json().as_bytes(), 5000, 21) {
        match read_manifest(&String::from_utf8_lossy(&mutant)) {
            Some(parsed) => {
                assert_round_trips(&parsed);
                tally.accepted += 1;
            }
            None => tally.refused += 1,
        }
    }
    tally.assert_both_at_least(50, "mutated manifest JSON");
}

fn mutated_blobs_stay_under_the_cap_and_are_read_back_whole_or_refused(manifest: &Manifest) {
    const CAP: u64 = 64 << 10;
    // Gzipped as this client sends it, and plain JSON as earlier clients did. The gzip trailer's
    // checksum refuses nearly every edit past the header, hence the larger run.
    for (blob, count, seed, least) in [
        (manifest.to_blob(), 10_000, 22, 12),
        (manifest.to_json().into_bytes(), 5000, 23, 35),
    ] {
        let mut tally = Tally::default();
        for mutant in mutants(&blob, count, seed) {
            let text = match manifest_blob_json(&mutant, CAP) {
                Ok(text) => text,
                Err(Error::InvalidManifest { .. }) => {
                    tally.refused += 1;
                    continue;
                }
                Err(other) => panic!("a bad blob refused with an unexpected error: {other}"),
            };
            assert!(
                text.len() as u64 <= CAP,
                "{} bytes past the cap",
                text.len()
            );
            match read_manifest(&text) {
                Some(parsed) => {
                    assert_round_trips(&parsed);
                    tally.accepted += 1;
                }
                None => tally.refused += 1,
            }
        }
        tally.assert_both_at_least(least, &format!("mutated manifest blobs (seed {seed})"));
    }
}
