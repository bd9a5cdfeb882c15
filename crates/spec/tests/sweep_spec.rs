//! `[sweep]` documents: expanded into trials that are ordinary specs, every problem named with
//! its trial and key, and refused before anything runs.

use easel_spec::sweep::{Choices, Sweep, SweepMethod, SweepMetric};

const BASE: &str = "name = \"digits\"\n[data]\npath = \"/data/digits\"\n[train]\nepochs = 3\n";

fn sweep(table: &str) -> String {
    format!("{BASE}\n[sweep]\n{table}")
}

#[test]
fn a_grid_expands_to_every_combination_each_an_ordinary_spec() {
    let text = sweep(
        "metric = \"val_loss\"\n[sweep.grid]\n\"model.architecture\" = [\"small_cnn\", \"deep_cnn\"]\n\
         \"train.batch_size\" = [16, 32, 64]\n",
    );
    let sweep = Sweep::parse(&text, "sweep.toml", 100).unwrap();
    assert_eq!(sweep.settings.metric, SweepMetric::ValLoss);
    assert_eq!(sweep.settings.method, SweepMethod::Grid);
    assert_eq!(sweep.trials.len(), 6);
    let shapes: Vec<(String, i64)> = sweep
        .trials
        .iter()
        .map(|t| {
            (
                format!("{:?}", t.spec.model.architecture),
                t.spec.train.batch_size,
            )
        })
        .collect();
    assert_eq!(
        shapes,
        [
            ("SmallCnn".into(), 16),
            ("SmallCnn".into(), 32),
            ("SmallCnn".into(), 64),
            ("DeepCnn".into(), 16),
            ("DeepCnn".into(), 32),
            ("DeepCnn".into(), 64),
        ],
        "keys in name order, each key's values in the order written, the last key fastest"
    );
    // What is not varied is the base's.
    assert!(sweep.trials.iter().all(|t| t.spec.train.epochs == 3));
    assert_eq!(
        sweep.trials[5].label(),
        "model.architecture = \"deep_cnn\", train.batch_size = 64"
    );
    assert_eq!(sweep.trials[5].number, 6);
}

#[test]
fn a_random_sweep_draws_the_same_trials_for_the_same_seed() {
    let text = sweep(
        "method = \"random\"\ntrials = 5\nseed = 7\n[sweep.grid]\n\
         \"train.learning_rate\" = { log_uniform = [1e-4, 1e-2] }\n\
         \"train.batch_size\" = { int_uniform = [8, 12] }\n\"model.dropout\" = [0.0, 0.5]\n",
    );
    let first = Sweep::parse(&text, "sweep.toml", 100).unwrap();
    let again = Sweep::parse(&text, "sweep.toml", 100).unwrap();
    assert_eq!(first, again);
    assert_eq!(first.trials.len(), 5);
    for trial in &first.trials {
        let train = &trial.spec.train;
        assert!((1e-4..1e-2).contains(&train.learning_rate), "{train:?}");
        assert!((8..=12).contains(&train.batch_size), "{train:?}");
        assert!([0.0, 0.5].contains(&trial.spec.model.dropout));
    }
    let other_seed =
        Sweep::parse(&text.replace("seed = 7", "seed = 8"), "sweep.toml", 100).unwrap();
    assert_ne!(first.trials, other_seed.trials);
    assert!(matches!(
        first.settings.grid["train.learning_rate"],
        Choices::Range(_)
    ));
}

fn problems(text: &str, max_trials: usize) -> Vec<String> {
    Sweep::parse(text, "sweep.toml", max_trials)
        .unwrap_err()
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn bad_sweep_tables_are_refused_with_every_problem_by_key() {
    let found = problems(
        &sweep("metric = \"accuracy\"\n[sweep.grid]\n\"train.batch_size\" = []\n"),
        100,
    );
    assert!(
        found.iter().any(|p| p.contains("sweep.metric")),
        "{found:?}"
    );

    let found = problems(
        &sweep(
            "[sweep.grid]\n\"train.batch_size\" = []\n\"train.learning_rate\" = { uniform = [0.1, 0.01] }\n",
        ),
        100,
    );
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(
        found[0].contains("sweep.grid.\"train.batch_size\": an empty list tries nothing"),
        "{found:?}"
    );
    assert!(found[1].contains("needs method = \"random\""), "{found:?}");

    let found = problems(
        &sweep("[sweep.grid]\n\"train.batch_size\" = [1, 2, 3, 4]\n\"train.epochs\" = [1, 2, 3]\n"),
        10,
    );
    assert_eq!(
        found,
        [
            "sweep.toml: sweep: 12 trials is more than the 10 a sweep may have (limits.max_trials_per_sweep)"
        ]
    );

    let found = problems(
        &sweep("method = \"random\"\n[sweep.grid]\n\"model.dropout\" = [0.1]\n"),
        10,
    );
    assert!(
        found[0].contains("sweep.trials: a random sweep needs the number of trials"),
        "{found:?}"
    );
}

#[test]
fn a_value_that_breaks_one_trial_names_that_trial_and_its_key() {
    let found = problems(
        &sweep("[sweep.grid]\n\"train.batch_size\" = [16, 0]\n"),
        100,
    );
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].starts_with("sweep.toml, trial 2 (train.batch_size = 0): train.batch_size:"),
        "{found:?}"
    );
}

#[test]
fn a_misspelt_key_is_named_once_for_every_trial_and_a_mistyped_value_in_its_trial() {
    let found = problems(
        &sweep("[sweep.grid]\n\"model.architecure\" = [\"small_cnn\", \"vgg16\"]\n"),
        100,
    );
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].starts_with("sweep.toml, every trial: model.architecure"),
        "{found:?}"
    );
    assert!(
        found[0].contains("architecture"),
        "the nearest valid key is suggested: {found:?}"
    );

    let found = problems(
        &sweep("[sweep.grid]\n\"train.batch_size\" = [\"big\", \"small\"]\n"),
        100,
    );
    assert_eq!(
        found,
        [
            "sweep.toml, trial 1 (train.batch_size = \"big\"): train.batch_size: expected an integer, found string \"big\"",
            "sweep.toml, trial 2 (train.batch_size = \"small\"): train.batch_size: expected an integer, found string \"small\"",
        ]
    );
}

/// The README's example: the write-up's own search, three models by three batch sizes. Each
/// trial's written-out spec reads back as the spec it was expanded into (a worker keeps it as the
/// trial's `spec.toml`).
#[test]
fn the_readme_search_over_models_expands_into_nine_trials_that_read_back_as_specs() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/search-art.toml");
    let text = std::fs::read_to_string(path).unwrap();
    let sweep = Sweep::parse(&text, "configs/search-art.toml", 256).unwrap();
    assert_eq!(sweep.trials.len(), 9);
    assert_eq!(sweep.settings.metric, SweepMetric::ValAccuracy);
    assert_eq!(sweep.settings.grace_epochs, 5);
    let last = &sweep.trials[8];
    assert_eq!(
        last.label(),
        "model.architecture = \"vgg16\", train.batch_size = 64"
    );
    for trial in &sweep.trials {
        let read_back = easel_spec::parse_experiment(&trial.spec_toml, "trial").unwrap();
        assert_eq!(read_back, trial.spec, "trial {}", trial.number);
        assert!(!trial.spec_toml.contains("[sweep"), "{}", trial.spec_toml);
    }
}
