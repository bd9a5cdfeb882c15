//! The scan on small generated datasets, one behaviour per test.

mod common;

use common::{png, png_header_only, write, write_zip};
use easel_dataset::{
    BlobStoreSource, Error, ImageSource, Manifest, ManifestEntry, ScanOptions, Subset, SubsetRoots,
    blob_path, digest_bytes, scan, scan_subsets, split, stratified_subset, stratified_subset_of,
    verify_blob,
};
use std::path::{Path, PathBuf};

fn scan_one(root: &Path) -> easel_dataset::ScanReport {
    scan(&[root.to_owned()], &ScanOptions::default()).unwrap()
}

/// Whether some warning of the scan contains `text`.
fn warns(report: &easel_dataset::ScanReport, text: &str) -> bool {
    report.warnings().iter().any(|w| w.contains(text))
}

fn paths(report: &easel_dataset::ScanReport) -> Vec<&str> {
    report
        .manifest
        .entries
        .iter()
        .map(|e| e.path.as_str())
        .collect()
}

#[test]
fn hidden_files_and_non_images_are_skipped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, "cat/1.png", &png(4, 4, 1));
    write(root, "cat/.DS_Store", b"finder data");
    write(root, "cat/._1.png", &png(4, 4, 9)); // macOS resource fork next to a real file
    write(root, "cat/.thumbs/a.png", &png(4, 4, 2));
    write(root, "cat/notes.txt", b"these are cats");
    write(root, "cat/no_extension", &png(4, 4, 3)); // an image by its magic bytes
    write(root, "dog/2.png", &png(4, 4, 4));
    write(root, "dog/data.csv", b"a,b\n1,2\n");
    write(root, ".git/config", b"[core]");
    write(root, "__MACOSX/dog/._2.png", b"resource fork");
    write(root, "README.md", b"# cats and dogs");

    let report = scan_one(root);
    assert_eq!(report.manifest.classes, ["cat", "dog"]);
    assert_eq!(
        paths(&report),
        ["cat/1.png", "cat/no_extension", "dog/2.png"]
    );
    // .DS_Store, ._1.png, .thumbs/ (once), .git/ (once), __MACOSX/ (once)
    assert_eq!(report.hidden_skipped, 5);
    let mut non_images: Vec<String> = report
        .non_images
        .iter()
        .map(|p| p.replace('\\', "/"))
        .collect();
    non_images.sort();
    assert_eq!(non_images.len(), 2, "{non_images:?}");
    assert!(non_images[0].ends_with("cat/notes.txt") && non_images[1].ends_with("dog/data.csv"));
    assert_eq!(report.loose_files.len(), 1);
    assert!(report.loose_files[0].ends_with("README.md"));
    assert!(warns(&report, "README.md: not inside a class folder"));
}

#[test]
fn corrupt_images_are_reported_with_their_path_and_left_out() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, "a/good.png", &png(8, 8, 1));
    write(root, "a/garbage.png", b"this is not a png at all");
    let mut truncated = png(8, 8, 2);
    truncated.truncate(20); // signature plus a cut-off header
    write(root, "a/truncated.png", &truncated);
    write(root, "b/good.png", &png(8, 8, 3));
    write(root, "b/scan.tif", b"II*\x00\x08\x00\x00\x00");

    let report = scan_one(root);
    assert_eq!(paths(&report), ["a/good.png", "b/good.png"]);
    let mut unreadable: Vec<(String, String)> = report
        .unreadable
        .iter()
        .map(|p| {
            (
                Path::new(&p.path)
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
                p.reason.clone(),
            )
        })
        .collect();
    unreadable.sort();
    assert_eq!(unreadable.len(), 3, "{unreadable:?}");
    let expected = [
        ("garbage.png", "not a JPEG, PNG"),
        ("scan.tif", "Tiff images are not supported"),
        ("truncated.png", "bad image header"),
    ];
    for ((file, reason), (expected_file, expected_reason)) in unreadable.iter().zip(expected) {
        assert_eq!(file, expected_file);
        assert!(reason.contains(expected_reason), "{reason}");
    }
    assert!(warns(&report, "garbage.png: unreadable image"));
}

#[test]
fn images_over_the_pixel_limit_are_reported_without_decoding() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, "a/small.png", &png(10, 10, 1));
    write(root, "a/large.png", &png(30, 20, 2));
    // 100,000 x 100,000 pixels claimed by a file of under 100 bytes.
    write(root, "b/bomb.png", &png_header_only(100_000, 100_000));
    write(root, "b/small.png", &png(10, 10, 3));

    let options = ScanOptions {
        max_image_pixels: 500,
        ..ScanOptions::default()
    };
    let report = scan(&[root.to_owned()], &options).unwrap();
    assert_eq!(paths(&report), ["a/small.png", "b/small.png"]);
    let mut oversized: Vec<(String, u32, u32)> = report
        .oversized
        .iter()
        .map(|o| {
            (
                Path::new(&o.path)
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
                o.width,
                o.height,
            )
        })
        .collect();
    oversized.sort();
    assert_eq!(
        oversized,
        [
            ("bomb.png".into(), 100_000, 100_000),
            ("large.png".into(), 30, 20)
        ],
        "{:?}",
        report.unreadable
    );
    assert!(warns(
        &report,
        "bomb.png: 100000x100000 pixels is over the limit"
    ));
}

#[test]
fn duplicate_files_are_listed_and_optionally_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let same = png(6, 6, 42);
    write(root, "cat/a.png", &same);
    write(root, "cat/copy-of-a.png", &same);
    write(root, "dog/also-a.png", &same);
    write(root, "dog/b.png", &png(6, 6, 43));

    let report = scan_one(root);
    assert_eq!(report.manifest.entries.len(), 4);
    assert_eq!(report.duplicates.len(), 1);
    let group = &report.duplicates[0];
    assert_eq!(group.digest, digest_bytes(&same));
    let classes: Vec<&str> = group.files.iter().map(|f| f.class.as_str()).collect();
    assert_eq!(classes, ["cat", "cat", "dog"]);
    assert!(group.crosses_classes());
    assert!(
        report
            .warnings()
            .iter()
            .any(|w| w.contains("filed under different classes") && w.contains("copy-of-a.png"))
    );

    let options = ScanOptions {
        deduplicate: true,
        ..ScanOptions::default()
    };
    let deduplicated = scan(&[root.to_owned()], &options).unwrap();
    // One copy per class survives: the cross-class conflict stays for the user to resolve.
    assert_eq!(
        paths(&deduplicated),
        ["cat/a.png", "dog/also-a.png", "dog/b.png"]
    );
    assert_eq!(deduplicated.duplicates_dropped, 1);
}

#[test]
fn empty_classes_are_reported_and_left_out_of_the_class_list() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, "a/1.png", &png(4, 4, 1));
    write(root, "b/2.png", &png(4, 4, 2));
    std::fs::create_dir_all(root.join("c")).unwrap();
    write(root, "d/readme.txt", b"no images here");

    let report = scan_one(root);
    assert_eq!(report.manifest.classes, ["a", "b"]);
    assert_eq!(report.empty_classes, ["c", "d"]);
    assert!(
        report
            .warnings()
            .contains(&"class `c` has no usable images and is left out".to_owned())
    );

    let only_one = tempfile::tempdir().unwrap();
    write(only_one.path(), "a/1.png", &png(4, 4, 1));
    let errors = scan_one(only_one.path()).errors();
    assert!(
        errors[0].contains("at least 2 classes with images; found 1"),
        "{errors:?}"
    );
}

#[test]
fn a_zip_archive_with_a_wrapping_folder_is_a_dataset() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("art.zip");
    write_zip(
        &archive,
        &[
            ("dataset/", None),
            ("dataset/drawings/", None),
            ("dataset/drawings/1.png", Some(png(5, 5, 1))),
            ("dataset/drawings/2.png", Some(png(5, 5, 2))),
            ("dataset/painting/3.png", Some(png(5, 5, 3))),
            ("dataset/painting/sub/4.png", Some(png(5, 5, 4))),
            ("dataset/sculpture/", None),
            ("__MACOSX/dataset/drawings/._1.png", Some(b"fork".to_vec())),
            ("dataset/.DS_Store", Some(b"finder".to_vec())),
        ],
    );

    let report = scan_one(&archive);
    assert_eq!(report.manifest.classes, ["drawings", "painting"]);
    assert_eq!(report.empty_classes, ["sculpture"]);
    assert_eq!(report.roots[0].stepped_into.as_deref(), Some("dataset"));
    assert_eq!(
        paths(&report),
        [
            "dataset/drawings/1.png",
            "dataset/drawings/2.png",
            "dataset/painting/3.png",
            "dataset/painting/sub/4.png",
        ]
    );
    assert_eq!(report.hidden_skipped, 2);

    // Entries are read back from the open archive by many threads at once.
    use rayon::prelude::*;
    let source = report.source();
    report.manifest.entries.par_iter().for_each(|entry| {
        let bytes = source.read(entry).unwrap();
        assert_eq!(digest_bytes(&bytes), entry.digest);
    });

    // A folder inside the archive can be named as the root.
    let inner = scan_one(&archive.join("dataset"));
    assert_eq!(inner.manifest, report.manifest);
    let missing = scan(&[archive.join("nope")], &ScanOptions::default()).unwrap_err();
    assert!(
        missing
            .to_string()
            .contains("the folder `nope` is not inside the archive"),
        "{missing}"
    );
}

#[test]
fn zip_entries_that_escape_the_root_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("evil.zip");
    write_zip(
        &archive,
        &[
            ("a/1.png", Some(png(4, 4, 1))),
            ("b/2.png", Some(png(4, 4, 2))),
            ("../outside.png", Some(png(4, 4, 3))),
            ("a/../../climb.png", Some(png(4, 4, 4))),
            ("/etc/absolute.png", Some(png(4, 4, 5))),
        ],
    );

    let report = scan_one(&archive);
    assert_eq!(paths(&report), ["a/1.png", "b/2.png"]);
    let mut reasons: Vec<&str> = report.rejected.iter().map(|p| p.reason.as_str()).collect();
    reasons.sort();
    assert_eq!(
        reasons,
        [
            "absolute path inside the archive",
            "path inside the archive climbs out with `..`",
            "path inside the archive climbs out with `..`",
        ]
    );
    let errors = report.errors();
    assert!(
        errors
            .iter()
            .any(|e| e.contains("../outside.png") && e.contains("climbs out")),
        "{errors:?}"
    );
}

#[cfg(unix)]
#[test]
fn symlinks_out_of_the_root_are_rejected_and_links_inside_are_followed() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    let secret = write(dir.path(), "outside/secret.png", &png(4, 4, 9));
    write(&root, "a/1.png", &png(4, 4, 1));
    write(&root, "b/2.png", &png(4, 4, 2));
    std::os::unix::fs::symlink(&secret, root.join("a/leak.png")).unwrap();
    std::os::unix::fs::symlink(dir.path().join("outside"), root.join("b/leaked-folder")).unwrap();
    std::os::unix::fs::symlink(root.join("a/1.png"), root.join("b/alias.png")).unwrap();

    let report = scan_one(&root);
    assert_eq!(paths(&report), ["a/1.png", "b/2.png", "b/alias.png"]);
    let mut rejected: Vec<String> = report
        .rejected
        .iter()
        .map(|p| {
            Path::new(&p.path)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    rejected.sort();
    assert_eq!(rejected, ["leak.png", "leaked-folder"]);
    assert!(
        report
            .errors()
            .iter()
            .any(|e| e.contains("leads outside the dataset root"))
    );
}

#[test]
fn two_roots_merge_classes_by_name_ignoring_case() {
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("museum");
    write(&first, "Drawings/1.png", &png(4, 4, 1));
    write(&first, "Painting/2.png", &png(4, 4, 2));
    let second = dir.path().join("extra.zip");
    write_zip(
        &second,
        &[
            ("drawings/1.png", Some(png(4, 4, 3))),
            ("sculpture/4.png", Some(png(4, 4, 4))),
        ],
    );

    let report = scan(&[first.clone(), second.clone()], &ScanOptions::default()).unwrap();
    assert_eq!(
        report.manifest.classes,
        ["Drawings", "Painting", "sculpture"]
    );
    assert_eq!(report.manifest.class_counts(), [2, 1, 1]);
    // Same relative path in both roots: the root label keeps manifest paths distinct.
    assert_eq!(
        paths(&report),
        [
            "extra.zip/drawings/1.png",
            "museum/Drawings/1.png",
            "museum/Painting/2.png",
            "extra.zip/sculpture/4.png",
        ]
    );
    assert_eq!(report.merged_classes.len(), 1);
    let message = report.merged_classes[0].to_string();
    assert_eq!(
        message,
        format!(
            "class `Drawings` merged from `Drawings` from {} and `drawings` from {}",
            first.display(),
            second.display()
        )
    );
    assert!(report.warnings().contains(&message));
    for entry in &report.manifest.entries {
        assert_eq!(
            digest_bytes(&report.source().read(entry).unwrap()),
            entry.digest
        );
    }
}

#[test]
fn explicit_subsets_are_kept_and_missing_classes_reported() {
    let dir = tempfile::tempdir().unwrap();
    let train = dir.path().join("training_set");
    let validation = dir.path().join("validation_set");
    for i in 0..6 {
        write(&train, &format!("cat/{i}.png"), &png(4, 4, i));
        write(&train, &format!("dog/{i}.png"), &png(4, 4, 100 + i));
    }
    write(&validation, "Cat/v.png", &png(4, 4, 50));

    let roots = SubsetRoots {
        train: vec![train],
        validation: vec![validation],
        test: vec![],
    };
    let report = scan_subsets(&roots, &ScanOptions::default()).unwrap();
    assert_eq!(report.manifest.classes, ["cat", "dog"]);
    let validation_entries: Vec<&ManifestEntry> = report
        .manifest
        .entries
        .iter()
        .filter(|e| e.subset == Some(Subset::Validation))
        .collect();
    assert_eq!(validation_entries.len(), 1);
    assert_eq!(validation_entries[0].path, "validation_set/Cat/v.png");
    assert_eq!(report.missing_from_subsets.len(), 1);
    assert_eq!(report.missing_from_subsets[0].class, "dog");
    assert!(
        report
            .warnings()
            .iter()
            .any(|w| w == "class `dog` has no images in the validation set")
    );
    assert!(warns(&report, "class `cat` merged from"));

    // The explicit validation set is used as is; the test set, not given, is drawn from train.
    let split = split(&report.manifest, 0.5, 0.2, 1).unwrap();
    let validation_paths: Vec<&str> = split
        .validation
        .iter()
        .map(|&i| report.manifest.entries[i].path.as_str())
        .collect();
    assert_eq!(validation_paths, ["validation_set/Cat/v.png"]);
    assert_eq!(split.test.len(), 2); // round(6 x 0.2) = 1 per class
    assert_eq!(split.train.len(), 10);
    assert!(
        split
            .test
            .iter()
            .all(|&i| report.manifest.entries[i].subset == Some(Subset::Train))
    );
}

fn synthetic_manifest(per_class: &[usize]) -> Manifest {
    let classes = (0..per_class.len()).map(|c| format!("class{c}")).collect();
    let mut entries = Vec::new();
    for (class, &count) in per_class.iter().enumerate() {
        for i in 0..count {
            let path = format!("class{class}/{i}.png");
            entries.push(ManifestEntry {
                digest: digest_bytes(path.as_bytes()),
                path,
                class: class as u32,
                size: 100 + i as u64,
                subset: None,
            });
        }
    }
    Manifest::new(classes, entries)
}

#[test]
fn split_is_deterministic_and_stratified_with_small_classes() {
    let manifest = synthetic_manifest(&[2, 3, 10, 41]);
    let a = split(&manifest, 0.1, 0.0, 5).unwrap();
    assert_eq!(a, split(&manifest, 0.1, 0.0, 5).unwrap());
    let per_class = |indices: &[usize]| manifest.select(indices).class_counts();
    // Every class with 2+ images gets a validation image, even where 10% rounds to 0.
    assert_eq!(per_class(&a.validation), [1, 1, 1, 4]);
    assert_eq!(per_class(&a.train), [1, 2, 9, 37]);
    assert!(a.test.is_empty());
    // Different seeds pick different images.
    let differs =
        (0..20u64).any(|seed| split(&manifest, 0.1, 0.0, seed).unwrap().validation != a.validation);
    assert!(differs);

    for (validation, test) in [(1.0, 0.0), (-0.1, 0.0), (0.6, 0.5), (f64::NAN, 0.0)] {
        let err = split(&manifest, validation, test, 0).unwrap_err();
        assert!(matches!(err, Error::InvalidSplit { .. }), "{err}");
    }
}

#[test]
fn stratified_subset_follows_class_sizes_and_keeps_every_class() {
    let manifest = synthetic_manifest(&[2, 3, 10, 41]);
    let subset = stratified_subset(&manifest, 10, 9);
    assert_eq!(subset, stratified_subset(&manifest, 10, 9));
    assert_eq!(manifest.select(&subset).class_counts(), [1, 1, 1, 7]);
    let pool: Vec<usize> = (0..manifest.entries.len()).filter(|i| i % 2 == 0).collect();
    let from_pool = stratified_subset_of(&manifest, &pool, 8, 9);
    assert_eq!(from_pool.len(), 8);
    assert!(from_pool.iter().all(|i| pool.contains(i)));
    assert_eq!(stratified_subset(&manifest, 1000, 9).len(), 56);
}

#[test]
fn manifest_digest_ignores_entry_order_and_tracks_content() {
    let manifest = synthetic_manifest(&[3, 2]);
    let digest = manifest.digest();
    assert_eq!(digest.len(), 64);

    let mut reordered = manifest.clone();
    reordered.entries.reverse();
    assert_eq!(reordered.digest(), digest);
    reordered.sort();
    assert_eq!(reordered, manifest);

    let mut changed = manifest.clone();
    changed.entries[0].digest = digest_bytes(b"other content");
    assert_ne!(changed.digest(), digest);
    let mut relabelled = manifest.clone();
    relabelled.entries[0].class = 1;
    assert_ne!(relabelled.digest(), digest);
    let mut renamed = manifest.clone();
    renamed.classes[0] = "other".into();
    assert_ne!(renamed.digest(), digest);
    let mut subset = manifest.clone();
    subset.entries[0].subset = Some(Subset::Test);
    assert_ne!(subset.digest(), digest);

    // Pinned: a change here changes every cache key and upload check built on it.
    let pinned = Manifest::new(
        vec!["a".into()],
        vec![ManifestEntry {
            path: "a/1.png".into(),
            class: 0,
            size: 3,
            digest: digest_bytes(b"abc"),
            subset: None,
        }],
    );
    assert_eq!(pinned.digest(), pinned_digest());
}

fn pinned_digest() -> &'static str {
    "6384b3db932ba9ebb8504aa8f0c3317259b410eb72d53c7b2feefe52506357f3"
}

#[test]
fn manifest_json_round_trips_and_bad_manifests_are_refused() {
    let manifest = synthetic_manifest(&[2, 2]);
    let parsed = Manifest::from_json(&manifest.to_json()).unwrap();
    assert_eq!(parsed, manifest);
    assert_eq!(manifest.total_bytes(), 100 + 101 + 100 + 101);
    assert_eq!(manifest.unique_blobs().len(), 4);

    let mut bad_class = manifest.clone();
    bad_class.entries[1].class = 7;
    let err = Manifest::from_json(&bad_class.to_json()).unwrap_err();
    assert!(
        err.to_string()
            .contains("has class 7 but there are 2 classes"),
        "{err}"
    );

    let mut bad_digest = manifest.clone();
    bad_digest.entries[0].digest = "../../etc/passwd".into();
    let err = Manifest::from_json(&bad_digest.to_json()).unwrap_err();
    assert!(err.to_string().contains("not a blake3 hex digest"), "{err}");

    let mut twice = manifest.clone();
    twice.classes[1] = "CLASS0".into();
    let err = Manifest::from_json(&twice.to_json()).unwrap_err();
    assert!(
        err.to_string().contains("class `CLASS0` is listed twice"),
        "{err}"
    );
}

#[test]
fn missing_roots_and_non_archives_are_errors_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-folder");
    let err = scan(std::slice::from_ref(&missing), &ScanOptions::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("{}: no such folder or zip archive", missing.display())
    );

    let text = write(dir.path(), "notes.txt", b"not an archive");
    let err = scan(std::slice::from_ref(&text), &ScanOptions::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("{}: not a folder or a zip archive", text.display())
    );

    assert!(matches!(
        scan(&[], &ScanOptions::default()),
        Err(Error::NoRoots)
    ));
}

#[test]
fn local_source_refuses_a_file_changed_after_the_scan() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let file = write(root, "a/1.png", &png(4, 4, 1));
    write(root, "b/2.png", &png(4, 4, 2));
    let report = scan_one(root);
    std::fs::write(&file, png(4, 4, 77)).unwrap();
    let err = report
        .source()
        .read(&report.manifest.entries[0])
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
    assert!(err.to_string().contains("1.png: content changed"), "{err}");
}

#[test]
fn blob_store_source_reads_by_digest_and_checks_content() {
    let dir = tempfile::tempdir().unwrap();
    let blobs: PathBuf = dir.path().join("blobs");
    let bytes = png(4, 4, 1);
    let digest = digest_bytes(&bytes);
    let path = blob_path(&blobs, &digest).unwrap();
    write(
        &blobs,
        path.strip_prefix(&blobs).unwrap().to_str().unwrap(),
        &bytes,
    );
    verify_blob(&path, &digest).unwrap();

    let entry = ManifestEntry {
        path: "a/1.png".into(),
        class: 0,
        size: bytes.len() as u64,
        digest,
        subset: None,
    };
    let source = BlobStoreSource::new(&blobs);
    assert_eq!(source.read(&entry).unwrap(), bytes);

    std::fs::write(&path, b"damaged").unwrap();
    let err = source.read(&entry).unwrap_err();
    assert!(err.to_string().contains("content changed"), "{err}");
    let missing = ManifestEntry {
        digest: digest_bytes(b"never stored"),
        ..entry
    };
    let err = source.read(&missing).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
    assert!(err.to_string().contains("blob of `a/1.png`"), "{err}");
}
