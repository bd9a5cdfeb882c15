//! `report.html`, opened in a real headless browser (Chromium): a run with known mistakes (light
//! images filed under `dark` in its validation and test folders) shows exactly those images as
//! thumbnails, with their paths, and counts the files the scan left out; the page loads with no
//! console message and no network request, and reads light on dark in the dark colour scheme;
//! `client report` finds it. Screenshots go to `target/test-artifacts/report.png` and
//! `report-dark.png`.
#![cfg(feature = "engine")]

use easel_test_support::{
    ColorScheme, assert_success, dark_and_light_dataset, load_in_chromium, screenshot_in_chromium,
    train_locally,
};
use std::path::{Path, PathBuf};
use std::process::Command;

fn client() -> Command {
    Command::new(env!("CARGO_BIN_EXE_client"))
}

/// `dark`/`light` folders of 32 px images under `root`, plus `wrong` light images filed under
/// `dark` (named `mislabelled-N.png`); returns their paths relative to `root`.
fn split_folder(root: &Path, per_class: u32, wrong: u32, scratch: &Path) -> Vec<String> {
    dark_and_light_dataset(root, per_class, 32);
    // Light images not among the folder's own (a different index range gives other pixels).
    dark_and_light_dataset(scratch, per_class + wrong, 32);
    (0..wrong)
        .map(|n| {
            let name = format!("mislabelled-{n}.png");
            std::fs::copy(
                scratch.join(format!("light/{:03}.png", per_class + n)),
                root.join("dark").join(&name),
            )
            .unwrap();
            format!("dark/{name}")
        })
        .collect()
}

fn artifact_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("../test-artifacts")
}

#[test]
fn a_runs_report_page_shows_its_known_mistakes_and_loads_with_nothing_from_outside() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    dark_and_light_dataset(&data.join("train"), 24, 32);
    // Two files the scan leaves out, which the page counts.
    std::fs::write(data.join("train/dark/.DS_Store"), b"hidden").unwrap();
    std::fs::write(data.join("train/light/notes.txt"), b"not an image").unwrap();
    let validation = split_folder(&data.join("validation"), 8, 2, &dir.path().join("s1"));
    let test = split_folder(&data.join("test"), 6, 1, &dir.path().join("s2"));
    let spec = dir.path().join("experiment.toml");
    std::fs::write(
        &spec,
        "name = \"dark or light\"\n\
         [data]\ntrain = \"data/train\"\nvalidation = \"data/validation\"\ntest = \"data/test\"\n\
         image_size = 32\n\
         [model]\narchitecture = \"small_cnn\"\nhead = [16]\n\
         [augment]\nflip = false\n\
         [train]\nepochs = 4\nbatch_size = 8\noptimizer = \"adam\"\nlearning_rate = 0.002\n\
         precision = \"fp32\"\nseed = 5\n",
    )
    .unwrap();
    let run = dir.path().join("run");
    train_locally(env!("CARGO_BIN_EXE_client"), &spec, &run);

    // mistakes.json lists exactly the mislabelled images, most confident first.
    let mistakes: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(run.join("mistakes.json")).unwrap()).unwrap();
    let mut wrong: Vec<(String, String)> = mistakes
        .iter()
        .map(|m| {
            let split = m["split"].as_str().unwrap().to_owned();
            (split, m["path"].as_str().unwrap().to_owned())
        })
        .collect();
    wrong.sort();
    let mut expected: Vec<(String, String)> = test
        .iter()
        .map(|p| ("test".to_owned(), p.clone()))
        .chain(
            validation
                .iter()
                .map(|p| ("validation".to_owned(), p.clone())),
        )
        .collect();
    expected.sort();
    // Paths in the manifest carry their root's label (`validation/dark/...`) or not, depending
    // on how the roots were scanned: compare their endings.
    assert_eq!(wrong.len(), expected.len(), "{mistakes:#?}");
    for ((split, path), (want_split, want_path)) in wrong.iter().zip(&expected) {
        assert!(
            split == want_split && path.ends_with(want_path.as_str()),
            "{wrong:?}"
        );
    }
    assert!(
        mistakes
            .iter()
            .all(|m| m["true"] == "dark" && m["predicted"] == "light")
    );

    let page = run.join("report.html");
    let shot = artifact_dir().join("report.png");
    let loaded = load_in_chromium(&page, &shot, 1280, 2200);
    assert!(loaded.console.is_empty(), "console: {:#?}", loaded.console);
    assert!(
        loaded.page_requests.is_empty(),
        "the page fetched {:?}",
        loaded.page_requests
    );
    assert_eq!(
        loaded.dom.matches(r#"class="mistake""#).count(),
        3,
        "one thumbnail per mistake"
    );
    for path in validation.iter().chain(&test) {
        assert!(loaded.dom.contains(path.as_str()), "{path} not on the page");
    }
    assert!(loaded.dom.contains("test accuracy (held out"));
    assert!(loaded.dom.contains("dark → light (3)"));
    assert!(
        loaded
            .dom
            .contains("Left out by the dataset's scan: 1 hidden, 1 not images"),
        "the scan's left-out files are counted"
    );
    assert!(
        loaded.dom.contains("notes.txt</code> — not an image"),
        "the scan's left-out files are named"
    );
    let size = std::fs::metadata(&page).unwrap().len();
    assert!(size < 5_000_000, "report.html is {size} bytes");
    readable_in_both_schemes(&page, &shot);

    // `client report` finds the page.
    let said = assert_success(&client().arg("report").arg(&run).output().unwrap());
    assert_eq!(said.trim(), page.display().to_string());
}

/// The page follows the reader's colour scheme: a light background in the light one (the
/// screenshot `light_shot` already taken), and in the dark one a dark background under light
/// text (the heading at the top of the page).
fn readable_in_both_schemes(page: &Path, light_shot: &Path) {
    let luma = |[r, g, b]: [u8; 3]| (u32::from(r) * 3 + u32::from(g) * 6 + u32::from(b)) / 10;
    let light = image::open(light_shot).unwrap().to_rgb8();
    assert!(
        luma(light.get_pixel(4, 4).0) > 230,
        "light scheme's background"
    );

    let dark_shot = artifact_dir().join("report-dark.png");
    screenshot_in_chromium(page, &dark_shot, (1280, 800), ColorScheme::Dark);
    let dark = image::open(&dark_shot).unwrap().to_rgb8();
    assert!(
        luma(dark.get_pixel(4, 4).0) < 40,
        "dark scheme's background"
    );
    let bright_in_heading = (0..1280)
        .flat_map(|x| (0..80).map(move |y| (x, y)))
        .filter(|&(x, y)| luma(dark.get_pixel(x, y).0) > 200)
        .count();
    assert!(
        bright_in_heading > 50,
        "the dark scheme's heading is light on dark ({bright_in_heading} bright pixels)"
    );
}

#[test]
fn client_report_on_a_folder_without_a_run_says_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let output = client().arg("report").arg(dir.path()).output().unwrap();
    let text = easel_test_support::output_text(&output);
    assert!(!output.status.success(), "{text}");
    assert!(
        text.contains("report.html") && text.contains("sweep.html"),
        "{text}"
    );
}
