//! What a scan leaves out travels with its manifest: counted by reason, the first files of each
//! reason named (path and what was wrong), so the worker's run page can say which files they were.

mod common;

use common::{png, png_header_only, write};
use easel_dataset::{LeftOutFile, LeftOutReason, Manifest, ScanOptions, Skipped, scan};

fn named(skipped: &Skipped, reason: LeftOutReason) -> Vec<&LeftOutFile> {
    let mut files: Vec<&LeftOutFile> = skipped
        .named
        .iter()
        .filter(|file| file.reason == reason)
        .collect();
    files.sort_by(|a, b| a.path.cmp(&b.path));
    files
}

#[test]
fn the_manifest_counts_every_left_out_file_and_names_the_first_of_each_reason() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, "cat/1.png", &png(4, 4, 1));
    write(root, "dog/2.png", &png(4, 4, 2));
    for n in 0..12 {
        write(root, &format!("cat/notes-{n:02}.txt"), b"not a picture");
    }
    write(root, "dog/broken.png", b"this is not a png at all");
    write(root, "dog/bomb.png", &png_header_only(100_000, 100_000));
    write(root, "README.md", b"# cats and dogs");
    write(root, "cat/.DS_Store", b"finder data");
    let options = ScanOptions {
        max_image_pixels: 1_000_000,
        ..ScanOptions::default()
    };

    let skipped = scan(&[root.to_owned()], &options).unwrap().manifest.skipped;
    assert_eq!(
        (
            skipped.not_images,
            skipped.unreadable,
            skipped.over_pixel_limit
        ),
        (12, 1, 1)
    );
    assert_eq!((skipped.outside_class_folders, skipped.hidden), (1, 1));

    let not_images = named(&skipped, LeftOutReason::NotImage);
    assert_eq!(
        not_images.len(),
        Skipped::NAMED_PER_REASON,
        "{not_images:#?}"
    );
    assert!(
        not_images
            .iter()
            .all(|file| file.path.contains("cat/notes-"))
    );
    let unreadable = named(&skipped, LeftOutReason::Unreadable);
    assert!(unreadable[0].path.ends_with("dog/broken.png"));
    let why = unreadable[0].detail.as_deref().unwrap_or_default();
    assert!(why.contains("not a JPEG, PNG"), "{why}");
    let oversized = named(&skipped, LeftOutReason::OverPixelLimit);
    assert!(oversized[0].path.ends_with("dog/bomb.png"));
    assert_eq!(oversized[0].detail.as_deref(), Some("100000x100000"));
    let loose = named(&skipped, LeftOutReason::OutsideClassFolders);
    assert!(loose[0].path.ends_with("README.md"), "{loose:#?}");
}

#[test]
fn named_files_survive_the_manifests_json_and_an_older_manifest_still_reads() {
    let mut manifest = Manifest::new(vec!["cat".into()], Vec::new());
    manifest.skipped.unreadable = 1;
    manifest.skipped.named.push(LeftOutFile {
        reason: LeftOutReason::Unreadable,
        path: "cat/broken.png".into(),
        detail: Some("bad image header".into()),
    });
    let read = Manifest::from_json(&manifest.to_json()).unwrap();
    assert_eq!(read.skipped, manifest.skipped);

    // A manifest written before files were named: counts only.
    let older = r#"{"classes":["cat"],"entries":[],"skipped":{"hidden":2,"not_images":0,
        "unreadable":0,"over_pixel_limit":0,"outside_class_folders":0,"duplicates":0}}"#;
    let read = Manifest::from_json(older).unwrap();
    assert_eq!(read.skipped.hidden, 2);
    assert!(read.skipped.named.is_empty());
}

#[test]
fn a_manifest_naming_more_than_the_limit_is_cut_to_it_for_the_page() {
    let mut skipped = Skipped::default();
    for n in 0..25 {
        skipped.named.push(LeftOutFile {
            reason: LeftOutReason::NotImage,
            path: format!("cat/{n}.txt"),
            detail: None,
        });
    }
    skipped.named.push(LeftOutFile {
        reason: LeftOutReason::OutsideClassFolders,
        path: "README.md".into(),
        detail: None,
    });
    let shown: Vec<&str> = skipped
        .named_within_limit()
        .map(|file| file.path.as_str())
        .collect();
    assert_eq!(shown.len(), Skipped::NAMED_PER_REASON + 1);
    assert_eq!(shown.last(), Some(&"README.md"));
}

#[test]
fn a_manifest_naming_too_many_or_too_long_left_out_files_is_refused_saying_so() {
    let file = |path: String| LeftOutFile {
        reason: LeftOutReason::NotImage,
        path,
        detail: None,
    };
    let mut manifest = Manifest::new(vec!["cat".into()], Vec::new());
    manifest.skipped.named = (0..=Skipped::MAX_NAMED)
        .map(|n| file(format!("{n}.txt")))
        .collect();
    let error = Manifest::from_json(&manifest.to_json())
        .unwrap_err()
        .to_string();
    assert!(error.contains("names 1001 left-out files"), "{error}");

    manifest.skipped.named = vec![file("a.txt".into()), file("x".repeat(5_000))];
    let error = Manifest::from_json(&manifest.to_json())
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("left-out file 1 has a path or detail over 4096 bytes"),
        "{error}"
    );
}
