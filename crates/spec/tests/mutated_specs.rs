//! Property: whatever a spec or worker config file holds, reading it gives a spec or errors that
//! say where, never a panic. Mutants of the shipped configs (flipped bits, cut and repeated runs,
//! stray quotes and brackets, a cut-off end), a bounded, seeded run.

use easel_spec::parse_experiment;
use easel_spec::worker::WorkerConfig;
use easel_test_support::mutations::mutants;

const MUTANTS_PER_FILE: usize = 400;

fn config(name: &str) -> String {
    let path = easel_test_support::repo_root().join("configs").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn mutated_experiment_specs_parse_or_say_where_they_are_wrong() {
    for (seed, name) in [
        "demo-cpu.toml",
        "vgg16-art.toml",
        "experiment-reference.toml",
    ]
    .into_iter()
    .enumerate()
    {
        for (index, mutant) in mutants(config(name).as_bytes(), MUTANTS_PER_FILE, seed as u64)
            .into_iter()
            .enumerate()
        {
            let text = String::from_utf8_lossy(&mutant);
            if let Err(errors) = parse_experiment(&text, "x.toml") {
                let message = errors.to_string();
                assert!(
                    message.contains("x.toml"),
                    "{name} mutant {index} (seed {seed}): error without its file: {message}"
                );
            }
        }
    }
}

#[test]
fn mutated_worker_configs_parse_or_say_where_they_are_wrong() {
    for (index, mutant) in mutants(config("worker.toml").as_bytes(), MUTANTS_PER_FILE, 11)
        .into_iter()
        .enumerate()
    {
        let text = String::from_utf8_lossy(&mutant);
        if let Err(errors) = WorkerConfig::from_toml(&text, "worker.toml") {
            let message = errors.to_string();
            assert!(
                message.contains("worker.toml"),
                "mutant {index}: error without its file: {message}"
            );
        }
    }
}
