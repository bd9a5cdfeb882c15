//! `client validate sweep.toml`: a spec with a `[sweep]` table. Every trial is expanded and
//! checked as a spec (every problem at once, naming the trial and its key); each distinct dataset
//! is scanned and split once; every trial gets its estimate, the whole sweep its total; and the
//! proof of concept trains once per distinct model and data, not once per trial.

use std::process::ExitCode;

use easel_dataset::{ScanReport, Split};
use easel_spec::ExperimentSpec;
use easel_spec::sweep::{DEFAULT_MAX_TRIALS, Sweep, Trial};

use super::outcome::TrialOutcome;
use super::print::plural;
use super::{ValidateArgs, Validation};

pub(super) fn run(args: ValidateArgs) -> anyhow::Result<ExitCode> {
    let mut validation = Validation::new(&args);
    match Sweep::load(&args.spec, DEFAULT_MAX_TRIALS) {
        Ok(sweep) => check_trials(&mut validation, &sweep),
        Err(errors) => validation.spec_problems(&errors, &args.spec),
    }
    validation.finish()
}

/// A dataset scanned and split for the trials that read it.
struct Scanned {
    data: easel_spec::DataSpec,
    found: Option<(ScanReport, Split)>,
}

fn check_trials(validation: &mut Validation, sweep: &Sweep) {
    if validation.human {
        println!(
            "sweep     {} ({:?}, best by {:?})",
            plural(sweep.trials.len(), "trial"),
            sweep.settings.method,
            sweep.settings.metric
        );
    }
    let mut scanned: Vec<Scanned> = Vec::new();
    let mut tried: Vec<(usize, ExperimentSpec)> = Vec::new();
    let mut total_steps = 0u64;
    for trial in &sweep.trials {
        if validation.human {
            println!("trial {:<3} {}", trial.number, trial.label());
        }
        let at = match scanned.iter().position(|s| s.data == trial.spec.data) {
            Some(at) => at,
            None => {
                let found = scan_and_split(validation, &trial.spec);
                scanned.push(Scanned {
                    data: trial.spec.data.clone(),
                    found,
                });
                scanned.len() - 1
            }
        };
        let Some((scan, split)) = &scanned[at].found else {
            continue;
        };
        validation.estimate(&trial.spec, &scan.manifest, split);
        let estimate = validation.outcome.estimate.take();
        total_steps += estimate.as_ref().map_or(0, |e| e.total_steps);
        let stands_in = tried
            .iter()
            .find(|(_, spec)| same_first_steps(spec, &trial.spec))
            .map(|(number, _)| *number);
        if stands_in.is_none() && validation.outcome.problems.is_empty() {
            validation.proof_of_concept(&trial.spec, scan);
            tried.push((trial.number, trial.spec.clone()));
        } else if let Some(number) = stands_in
            && validation.human
        {
            println!("proof     as trial {number}'s (the same model and data)");
        }
        validation.outcome.trials.push(trial_outcome(
            trial,
            estimate,
            stands_in.or(Some(trial.number)),
        ));
    }
    if validation.human {
        println!(
            "whole sweep {} in all, {} proof-of-concept run(s) for {}",
            plural(total_steps as usize, "training step"),
            tried.len(),
            plural(sweep.trials.len(), "trial")
        );
    }
}

fn scan_and_split(
    validation: &mut Validation,
    spec: &ExperimentSpec,
) -> Option<(ScanReport, Split)> {
    let scan = validation.dataset(spec)?;
    let split = validation.split(spec, &scan.manifest)?;
    Some((scan, split))
}

/// Whether two trials' proofs of concept train the same steps: the proof of concept trains the
/// model on the images at its own small size, batch, optimizer and step count, so only the
/// model, the data, the seeds, the precision and the local settings tell two apart.
fn same_first_steps(a: &ExperimentSpec, b: &ExperimentSpec) -> bool {
    a.model == b.model
        && a.data == b.data
        && a.local == b.local
        && a.train.seed == b.train.seed
        && a.train.precision == b.train.precision
}

fn trial_outcome(
    trial: &Trial,
    estimate: Option<easel_engine::Estimate>,
    proof_of_concept_of_trial: Option<usize>,
) -> TrialOutcome {
    TrialOutcome {
        number: trial.number,
        params: trial.params.iter().cloned().collect(),
        estimate,
        proof_of_concept_of_trial,
    }
}
