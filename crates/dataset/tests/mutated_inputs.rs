//! Property: whatever bytes arrive as images, manifests or manifest blobs, the dataset readers
//! answer with a value or an error, never a panic, and a blob never inflates past its cap.
//! Seeded mutants of real files (a PNG, a JPEG, a scanned manifest), a bounded run.

use std::io::Cursor;
use std::path::Path;

use easel_dataset::{Manifest, ScanOptions, manifest_blob_json, scan};
use easel_test_support::mutations::mutants;

fn encoded(format: image::ImageFormat) -> Vec<u8> {
    let image =
        image::RgbImage::from_fn(24, 16, |x, y| image::Rgb([x as u8 * 9, y as u8 * 13, 77]));
    let mut bytes = Cursor::new(Vec::new());
    image.write_to(&mut bytes, format).unwrap();
    bytes.into_inner()
}

fn write_class(root: &Path, class: &str, files: &[(String, Vec<u8>)]) {
    let folder = root.join(class);
    std::fs::create_dir_all(&folder).unwrap();
    for (name, bytes) in files {
        std::fs::write(folder.join(name), bytes).unwrap();
    }
}

#[test]
fn mutated_images_are_kept_or_reported_and_never_stop_the_scan() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    let mut total = 0;
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
        total += files.len();
        write_class(&root, class, &files);
    }
    let report = scan(std::slice::from_ref(&root), &ScanOptions::default())
        .expect("a folder of damaged images is scanned, not refused");
    let kept = report.manifest.entries.len();
    assert!(kept >= 2 && kept <= total, "{kept} of {total} kept");
}

#[test]
fn mutated_manifests_and_manifest_blobs_are_read_or_refused() {
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
    let manifest = scan(&[root], &ScanOptions::default()).unwrap().manifest;
    let json = manifest.to_json();
    for mutant in mutants(json.as_bytes(), 2000, 21) {
        if let Ok(parsed) = Manifest::from_json(&String::from_utf8_lossy(&mutant)) {
            let _ = parsed.validate();
        }
    }
    const CAP: u64 = 64 << 10;
    for mutant in mutants(&manifest.to_blob(), 2000, 22) {
        if let Ok(text) = manifest_blob_json(&mutant, CAP) {
            assert!(
                text.len() as u64 <= CAP,
                "{} bytes past the cap",
                text.len()
            );
        }
    }
}
