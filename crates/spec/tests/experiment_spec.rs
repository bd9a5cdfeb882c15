//! experiment.toml parsing as a user meets it: the shipped examples, defaults, and the exact
//! messages for each kind of mistake.

use easel_spec::*;
use std::path::{Path, PathBuf};

fn configs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs")
}

fn read_config(name: &str) -> String {
    std::fs::read_to_string(configs().join(name)).unwrap()
}

fn error_lines(errors: &SpecErrors) -> Vec<String> {
    errors.iter().map(ToString::to_string).collect()
}

fn parse_errors(text: &str) -> Vec<String> {
    error_lines(&parse_experiment(text, "x.toml").unwrap_err())
}

const MINIMAL: &str = "[data]\npath = \"images\"\n";

#[test]
fn vgg16_example_mirrors_the_write_up() {
    let spec = parse_experiment(&read_config("vgg16-art.toml"), "vgg16-art.toml").unwrap();
    assert_eq!(spec.model.architecture, Architecture::Vgg16);
    assert_eq!(spec.model.head, vec![32, 64, 128, 64]);
    assert_eq!(spec.data.image_size, ImageSize::Square(150));
    assert_eq!(spec.train.optimizer, Optimizer::Sgd);
    assert_eq!(spec.train.precision, Precision::Auto);
    assert!(spec.train.early_stopping.is_some());
    assert!(spec.augment.flip);
    assert_eq!(spec.data.path.as_deref(), Some(Path::new("../data/art")));
}

#[test]
fn demo_example_is_small_and_points_at_the_sample_dataset() {
    let mut spec = parse_experiment(&read_config("demo-cpu.toml"), "demo-cpu.toml").unwrap();
    assert_eq!(spec.model.architecture, Architecture::SmallCnn);
    assert!(spec.data.image_size.height() <= 32);
    assert!(spec.train.epochs <= 5);
    spec.resolve_paths(&spec_folder(&configs().join("demo-cpu.toml")));
    let expected = std::path::absolute(configs().join("../.easel-data/mnist-sample")).unwrap();
    assert_eq!(
        spec.data.sources(),
        Some(DataSources::Split {
            roots: vec![expected]
        })
    );
}

#[test]
fn missing_keys_take_the_documented_defaults() {
    let minimal = parse_experiment(MINIMAL, "minimal.toml").unwrap();
    assert_eq!(minimal.train.epochs, 10);
    assert_eq!(minimal.train.optimizer, Optimizer::Adam);
    assert_eq!(minimal.data.validation_split, 0.2);
    assert_eq!(minimal.model.head, vec![64, 128]);
    assert_eq!(minimal.local.steps, 20);

    // The reference file writes every default out: reading it must give the same spec.
    let reference =
        parse_experiment(&read_config("experiment-reference.toml"), "reference").unwrap();
    let mut expected = minimal;
    expected.data.path = reference.data.path.clone();
    assert_eq!(reference, expected);
}

#[test]
fn reference_commented_keys_are_real_keys() {
    // Uncommenting every optional key must not produce an unknown key or a wrong type (the
    // alternatives it lists may conflict with each other, which validation reports).
    let uncommented: String = read_config("experiment-reference.toml")
        .lines()
        .map(|line| match line.strip_prefix("# ") {
            Some(rest)
                if rest.starts_with('[')
                    || rest
                        .split_once(" = ")
                        .is_some_and(|(k, _)| !k.contains(' ')) =>
            {
                rest
            }
            _ => line,
        })
        .map(|line| format!("{line}\n"))
        .collect();
    let parsed = read_toml::<ExperimentSpec>(&uncommented, "reference");
    assert!(parsed.errors().is_empty(), "{:?}", parsed.errors());
    let spec = parsed.value.unwrap();
    assert!(spec.train.early_stopping.is_some());
    assert!(spec.model.pretrained.is_some());
    assert_eq!(spec.data.paths.len(), 2);
}

#[test]
fn unknown_key_is_reported_with_a_suggestion() {
    assert_eq!(
        parse_errors("[data]\npath = \"images\"\n\n[train]\nepoch = 3\n"),
        ["x.toml:5:1: train.epoch: unknown key `epoch` (did you mean `epochs`?)"]
    );
}

#[test]
fn unknown_key_far_from_any_lists_the_valid_ones() {
    assert_eq!(
        parse_errors("[data]\npath = \"images\"\n[augment]\nmirror = true\n"),
        [
            "x.toml:4:1: augment.mirror: unknown key `mirror`; expected one of: flip, random_crop, color_jitter"
        ]
    );
}

#[test]
fn wrong_type_names_what_was_expected() {
    assert_eq!(
        parse_errors("[data]\npath = \"images\"\n[train]\nbatch_size = \"large\"\n"),
        ["x.toml:4:14: train.batch_size: expected an integer, found string \"large\""]
    );
    assert_eq!(
        parse_errors("[data]\npath = \"images\"\n[model]\nhead = [32, -64]\n"),
        ["x.toml:4:13: model.head[1]: expected a whole number from 0 to 4294967295, found -64"]
    );
    assert_eq!(
        parse_errors("[data]\npath = \"images\"\nimage_size = \"big\"\n"),
        [
            "x.toml:3:14: data.image_size: expected a side in pixels (150) or [height, width], found string \"big\""
        ]
    );
    assert_eq!(
        parse_errors("[data]\npath = \"images\"\n[train]\noptimizer = \"sdg\"\n"),
        ["x.toml:4:13: train.optimizer: unknown value `sdg` (did you mean `sgd`?)"]
    );
}

#[test]
fn negative_epochs_fail_validation() {
    assert_eq!(
        parse_errors("[data]\npath = \"images\"\n\n[train]\nepochs = -3\n"),
        ["x.toml:5:10: train.epochs: must be at least 1, got -3"]
    );
}

#[test]
fn semantic_problems_are_all_reported() {
    let text = "\
[data]
path = \"images\"
train = \"train\"
validation_split = 0.7
test_split = 0.4
image_size = [4, 64]

[model]
head = []
dropout = 1.5
unfreeze_after_epochs = 2

[train]
learning_rate = 0.0
batch_size = 0
";
    assert_eq!(
        parse_errors(text),
        [
            "x.toml:3:9: data.train: give either `path`/`paths` (split by validation_split) or explicit `train`/`validation`/`test` folders, not both",
            "x.toml:5:14: data.test_split: validation_split + test_split must be below 1 (some images must be left to train on), got 1.1",
            "x.toml:6:15: data.image_size[0]: image height must be at least 8 pixels, got 4",
            "x.toml:9:8: model.head: must list at least one dense layer width, e.g. [64, 128]",
            "x.toml:10:11: model.dropout: must be at least 0 and below 1, got 1.5",
            "x.toml:11:25: model.unfreeze_after_epochs: needs `pretrained` weights to fine-tune",
            "x.toml:14:17: train.learning_rate: must be above 0, got 0",
            "x.toml:15:14: train.batch_size: must be at least 1, got 0",
        ]
    );
}

#[test]
fn a_spec_without_data_says_how_to_give_it() {
    assert_eq!(
        parse_errors("name = \"x\"\n"),
        [
            "x.toml: data: no dataset given: set `path` to a folder with one sub-folder per class (or a .zip), or `train` and `validation` folders"
        ]
    );
}

#[test]
fn syntax_errors_stop_before_type_checks() {
    assert_eq!(
        parse_errors("[data]\npath = \"images\"\n[train\nepochs = 3\n"),
        ["x.toml:3:7: invalid TOML: unclosed table, expected `]`"]
    );
}

#[test]
fn a_bad_value_hides_only_checks_of_that_value() {
    // The default standing in for `epochs` is not checked again, but the table-wide "no dataset"
    // is still reported beside the type error in the same table.
    assert_eq!(
        parse_errors("[data]\nimage_size = \"big\"\n[train]\nepochs = \"x\"\n"),
        [
            "x.toml:1:2: data: no dataset given: set `path` to a folder with one sub-folder per class (or a .zip), or `train` and `validation` folders",
            "x.toml:2:14: data.image_size: expected a side in pixels (150) or [height, width], found string \"big\"",
            "x.toml:4:10: train.epochs: expected an integer, found string \"x\"",
        ]
    );
}

#[test]
fn duplicate_keys_are_named() {
    assert_eq!(
        parse_errors("[data]\npath = \"a\"\npath = \"b\"\n"),
        ["x.toml:3:1: invalid TOML: duplicate key `path`"]
    );
}

#[test]
fn missing_dataset_folder_is_reported_at_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let spec_path = dir.path().join("exp.toml");
    std::fs::write(
        &spec_path,
        "[data]\npath = \"art\"\n\n[model]\npretrained = \"w.safetensors\"\n",
    )
    .unwrap();
    let lines = error_lines(&load_experiment(&spec_path).unwrap_err());
    let folder = std::path::absolute(dir.path().join("art")).unwrap();
    let weights = std::path::absolute(dir.path().join("w.safetensors")).unwrap();
    let origin = spec_path.display();
    assert_eq!(
        lines,
        [
            format!(
                "{origin}:2:8: data.path: dataset folder not found: {}",
                folder.display()
            ),
            format!(
                "{origin}:5:14: model.pretrained: pretrained weights file not found: {}",
                weights.display()
            ),
        ]
    );

    std::fs::create_dir(dir.path().join("arts")).unwrap();
    let lines = error_lines(&load_experiment(&spec_path).unwrap_err());
    assert_eq!(
        lines[0],
        format!(
            "{origin}:2:8: data.path: dataset folder not found: {} (did you mean `arts`?)",
            folder.display()
        )
    );

    std::fs::create_dir(dir.path().join("art")).unwrap();
    std::fs::write(dir.path().join("w.safetensors"), b"weights").unwrap();
    let spec = load_experiment(&spec_path).unwrap();
    assert_eq!(
        spec.data.path,
        Some(folder),
        "relative to the spec's folder, not the working directory"
    );
    assert_eq!(
        spec.model.pretrained,
        Some(easel_spec::PretrainedWeights::File(weights))
    );
}

#[test]
fn four_kinds_of_problem_are_reported_together_in_file_order() {
    let dir = tempfile::tempdir().unwrap();
    let spec_path = dir.path().join("broken.toml");
    let text = "\
name = \"broken\"

[data]
path = \"no-such-folder\"
image_size = 150

[model]
architecture = \"vgg16\"
haed = [32, 64]

[train]
epochs = -3
learning_rate = \"fast\"
";
    std::fs::write(&spec_path, text).unwrap();
    let errors = load_experiment(&spec_path).unwrap_err();
    let origin = spec_path.display();
    let folder = std::path::absolute(dir.path().join("no-such-folder")).unwrap();
    assert_eq!(
        error_lines(&errors),
        [
            format!(
                "{origin}:4:8: data.path: dataset folder not found: {}",
                folder.display()
            ),
            format!("{origin}:9:1: model.haed: unknown key `haed` (did you mean `head`?)"),
            format!("{origin}:12:10: train.epochs: must be at least 1, got -3"),
            format!(
                "{origin}:13:17: train.learning_rate: expected a number, found string \"fast\""
            ),
        ]
    );
    assert_eq!(errors.to_string().lines().count(), 4);
}

#[test]
fn resolved_spec_round_trips_through_toml() {
    let spec = parse_experiment(&read_config("vgg16-art.toml"), "vgg16-art.toml").unwrap();
    let text = spec.to_toml_string().unwrap();
    assert_eq!(parse_experiment(&text, "spec.toml").unwrap(), spec);
    // Defaults are written out, not left implicit.
    assert!(text.contains("label_smoothing = 0.0"), "{text}");
    assert!(text.contains("max_images = 200"), "{text}");
}

#[test]
fn rectangular_image_sizes_are_accepted() {
    let spec =
        parse_experiment("[data]\npath = \"x\"\nimage_size = [120, 160]\n", "x.toml").unwrap();
    assert_eq!(
        (spec.data.image_size.height(), spec.data.image_size.width()),
        (120, 160)
    );
}

/// The generic loader works for any `deny_unknown_fields` type, as worker.toml uses it.
#[test]
fn generic_loader_reports_type_and_validation_problems_together() {
    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    struct Settings {
        listen: String,
        #[serde(default)]
        slots: i64,
    }
    impl Validate for Settings {
        fn validate(&self) -> Vec<Problem> {
            if self.slots < 1 {
                vec![Problem::new(
                    "slots",
                    format!("must be at least 1, got {}", self.slots),
                )]
            } else {
                vec![]
            }
        }
    }
    let errors = parse_toml::<Settings>(
        "listen = \"0.0.0.0:7070\"\nslots = 0\nslot = 2\n",
        "worker.toml",
    )
    .unwrap_err();
    assert_eq!(
        error_lines(&errors),
        [
            "worker.toml:2:9: slots: must be at least 1, got 0",
            "worker.toml:3:1: slot: unknown key `slot` (did you mean `slots`?)",
        ]
    );
    let good =
        parse_toml::<Settings>("listen = \"[::1]:7070\"\nslots = 2\n", "worker.toml").unwrap();
    assert_eq!((good.listen.as_str(), good.slots), ("[::1]:7070", 2));
    let missing = parse_toml::<Settings>("slots = 2\n", "worker.toml").unwrap_err();
    assert_eq!(
        error_lines(&missing),
        ["worker.toml: missing required key `listen`"]
    );
}

#[test]
fn an_object_store_dataset_is_kept_verbatim_and_not_checked_locally() {
    let dir = tempfile::tempdir().unwrap();
    let spec_path = dir.path().join("exp.toml");
    std::fs::write(
        &spec_path,
        "[data]\npath = \"s3://bucket/datasets/digits\"\n",
    )
    .unwrap();
    let spec = load_experiment(&spec_path).unwrap();
    assert_eq!(
        spec.data.path,
        Some(PathBuf::from("s3://bucket/datasets/digits"))
    );
    assert_eq!(
        spec.data.sources(),
        Some(DataSources::ObjectStore {
            url: "s3://bucket/datasets/digits".into()
        })
    );
    assert_eq!(
        spec.data.object_store_url(),
        Some("s3://bucket/datasets/digits")
    );

    std::fs::write(&spec_path, "[data]\npaths = [\"file:///srv/digits\"]\n").unwrap();
    let spec = load_experiment(&spec_path).unwrap();
    assert_eq!(spec.data.object_store_url(), Some("file:///srv/digits"));
    assert_eq!(object_store_url(Path::new("images/cats")), None);
    assert_eq!(object_store_url(Path::new("http://example.com/x")), None);
}

#[test]
fn an_object_store_url_beside_local_roots_is_refused() {
    assert_eq!(
        parse_errors("[data]\npaths = [\"s3://bucket/digits\", \"more\"]\n"),
        [
            "x.toml:2:10: data.paths[0]: an object-store dataset (s3://bucket/digits) must be the only dataset root: it cannot be mixed with other roots"
        ]
    );
    assert_eq!(
        parse_errors("[data]\ntrain = \"gs://bucket/train\"\nvalidation_split = 0.2\n"),
        [
            "x.toml:2:9: data.train: an object-store URL (gs://bucket/train) can only be given as `data.path`; `train`/`validation`/`test` must be local folders"
        ]
    );
    assert_eq!(
        parse_errors("[data]\npath = \"s3:///digits\"\n"),
        [
            "x.toml:2:8: data.path: object-store URL needs a bucket: e.g. s3://bucket/datasets/pets, got s3:///digits"
        ]
    );
}

#[test]
fn non_finite_values_are_refused_at_their_key() {
    let errors = parse_errors(
        "[data]\npath = \"images\"\nvalidation_split = inf\n\n[model]\ndropout = nan\n\n[train]\nlearning_rate = nan\n",
    );
    for (line, key, value) in [
        (3, "data.validation_split", "inf"),
        (6, "model.dropout", "NaN"),
        (9, "train.learning_rate", "NaN"),
    ] {
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with(&format!("x.toml:{line}:"))
                    && e.contains(key)
                    && e.contains(&format!("got {value}"))),
            "{key} = {value}: {errors:?}"
        );
    }
}

#[test]
fn pretrained_weights_name_a_file_or_an_uploaded_blob() {
    use easel_spec::PretrainedWeights;
    let spec = parse_experiment(
        "[data]\npath = \"/d\"\n[model]\npretrained = \"blob:0a1b\"\n",
        "submitted spec",
    )
    .unwrap();
    let weights = spec.model.pretrained.clone().unwrap();
    assert_eq!(weights, PretrainedWeights::Blob("0a1b".into()));
    assert_eq!((weights.blob(), weights.file()), (Some("0a1b"), None));
    // Written back as it was read, so the worker's `spec.toml` says what was sent.
    let again = parse_experiment(&spec.to_toml_string().unwrap(), "again").unwrap();
    assert_eq!(again.model.pretrained, Some(weights));

    // On the laptop a blob names nothing readable: refused at its key.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("art")).unwrap();
    let spec_path = dir.path().join("experiment.toml");
    std::fs::write(
        &spec_path,
        "[data]\npath = \"art\"\n\n[model]\npretrained = \"blob:0a1b\"\n",
    )
    .unwrap();
    let lines = error_lines(&load_experiment(&spec_path).unwrap_err());
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].contains("model.pretrained: `blob:0a1b` names weights uploaded to a worker"),
        "{lines:?}"
    );
}

#[test]
fn a_spec_sent_to_the_training_process_as_json_comes_back_exactly() {
    // 17 significant digits and far exponents: a float read back one bit off would change the
    // run's identity, and a checkpoint made for it would no longer resume.
    let spec = parse_experiment(
        "[data]\npath = \"/d\"\nimage_size = [48, 64]\n\
         [model]\npretrained = \"blob:0a1b\"\ndropout = 0.30000000000000004\n\
         [train]\nlearning_rate = 0.0012345678901234567\nweight_decay = 1.0000000000000002e-23\n",
        "submitted spec",
    )
    .unwrap();
    let json = serde_json::to_string(&spec).unwrap();
    let back: ExperimentSpec = serde_json::from_str(&json).unwrap();
    assert_eq!(back, spec, "{json}");
    assert_eq!(
        back.train.learning_rate.to_bits(),
        spec.train.learning_rate.to_bits()
    );
}
