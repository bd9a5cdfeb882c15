//! `client validate experiment.toml`: everything that can be checked on the laptop before
//! paying for a GPU. The spec (every problem at once, with lines), the dataset (classes, counts,
//! skipped and unreadable files, duplicates), whether the model fits the image size, what the
//! full run will cost, and a proof-of-concept training of a few CPU steps whose loss must be
//! finite and falling. Writes nothing.

mod outcome;
mod print;
mod sweep;

use crate::spec_data::scan_spec_data;
use easel_dataset::{Manifest, ScanReport, Split};
use easel_engine::PocReport;
use easel_spec::ExperimentSpec;
use indicatif::{ProgressBar, ProgressStyle};
use outcome::{DatasetSummary, Outcome, SplitSummary};
use print::{describe_model, plural, print_dataset, print_estimate, print_poc, print_split};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    /// The experiment spec (experiment.toml).
    pub spec: PathBuf,
    /// Print one JSON object instead of the report (for scripts).
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: ValidateArgs) -> anyhow::Result<ExitCode> {
    if std::fs::read_to_string(&args.spec).is_ok_and(|text| easel_spec::sweep::is_sweep(&text)) {
        return sweep::run(args);
    }
    let mut validation = Validation::new(&args);
    validation.check(&args.spec);
    validation.finish()
}

/// One run of `validate`: what it found so far, and whether it reports to a person as it goes
/// (else one JSON object at the end).
struct Validation {
    outcome: Outcome,
    human: bool,
    started: Instant,
}

impl Validation {
    fn new(args: &ValidateArgs) -> Validation {
        Validation {
            outcome: Outcome {
                spec: args.spec.display().to_string(),
                ..Outcome::default()
            },
            human: !args.json,
            started: Instant::now(),
        }
    }

    /// The checks in order; each step records its problems and hands the next what it needs,
    /// or ends the checks when nothing after it could be checked.
    fn check(&mut self, spec_path: &Path) -> Option<()> {
        let spec = self.spec(spec_path)?;
        let scan = self.dataset(&spec)?;
        let split = self.split(&spec, &scan.manifest)?;
        self.estimate(&spec, &scan.manifest, &split);
        if self.outcome.problems.is_empty() {
            self.proof_of_concept(&spec, &scan);
        } else if self.human {
            println!("proof of concept skipped: fix the problems above first");
        }
        Some(())
    }

    fn spec(&mut self, path: &Path) -> Option<ExperimentSpec> {
        let spec = match easel_spec::load_experiment(path) {
            Ok(spec) => spec,
            Err(errors) => {
                self.spec_problems(&errors, path);
                return None;
            }
        };
        if self.human {
            println!(
                "spec      {}: `{}`, {}",
                path.display(),
                spec.name,
                describe_model(&spec)
            );
        }
        Some(spec)
    }

    /// The local dataset scanned; `None` when it has problems, or when it is in object storage
    /// (the worker scans it, so there is nothing more to check here).
    fn dataset(&mut self, spec: &ExperimentSpec) -> Option<ScanReport> {
        if let Some(url) = spec.data.object_store_url() {
            if self.human {
                println!(
                    "dataset   {url}: in object storage; the worker scans it when the job starts \
                     (no local scan or proof of concept)"
                );
            }
            self.outcome.object_store_dataset = Some(url.to_owned());
            return None;
        }
        let scan = match scan_spec_data(spec) {
            Ok(scan) => scan,
            Err(error) => {
                self.problem(format!("{error:#}"));
                return None;
            }
        };
        let summary = DatasetSummary::of(&scan);
        self.outcome.warnings.extend(scan.warnings());
        let dataset_errors = scan.errors();
        if self.human {
            print_dataset(&summary, &self.outcome.warnings, &dataset_errors);
        }
        self.outcome.problems.extend(dataset_errors);
        self.outcome.dataset = Some(summary);
        self.outcome.problems.is_empty().then_some(scan)
    }

    fn split(&mut self, spec: &ExperimentSpec, manifest: &Manifest) -> Option<Split> {
        let data = &spec.data;
        let split =
            easel_dataset::split(manifest, data.validation_split, data.test_split, data.seed);
        let split = match split {
            Ok(split) => split,
            Err(error) => {
                self.problem(format!("cannot split the dataset: {error}"));
                return None;
            }
        };
        if self.human {
            print_split(&split, spec);
        }
        self.outcome.split = Some(SplitSummary::of(&split));
        if split.validation.is_empty() {
            self.problem(
                "the split leaves no validation images: raise data.validation_split or add images"
                    .into(),
            );
        }
        Some(split)
    }

    fn estimate(&mut self, spec: &ExperimentSpec, manifest: &Manifest, split: &Split) {
        match easel_engine::estimate(spec, manifest.classes.len(), split.train.len() as u64) {
            Ok(estimate) => {
                if self.human {
                    print_estimate(&estimate, spec);
                }
                self.outcome.estimate = Some(estimate);
            }
            Err(error) => self.problem(error.to_string()),
        }
    }

    fn proof_of_concept(&mut self, spec: &ExperimentSpec, scan: &ScanReport) {
        let report = match train_a_few_steps(spec, scan, self.human) {
            Ok(report) => report,
            Err(error) => {
                self.problem(format!("proof of concept failed: {error}"));
                return;
            }
        };
        if self.human {
            print_poc(&report);
        }
        if !report.loss_finite {
            let message = "proof of concept: the loss is not finite (NaN or infinite): the images or the model produce invalid values";
            self.problem(message.into());
        } else if !report.loss_fell {
            self.problem(format!(
                "proof of concept: the loss did not fall over {} steps ({:.4} -> {:.4}): the model cannot fit even one batch; check the images and the model settings",
                report.steps, report.first_loss, report.last_loss
            ));
        }
        self.outcome.proof_of_concept = Some(report);
    }

    /// Records a spec file's problems, after which nothing else can be checked.
    fn spec_problems(&mut self, errors: &easel_spec::SpecErrors, path: &Path) {
        self.outcome.record_spec_errors(errors);
        if self.human {
            println!("{errors}");
            println!(
                "{} in {}; nothing else was checked",
                plural(errors.len(), "problem"),
                path.display()
            );
        }
    }

    /// Records a problem, and shows it at once to a person following the report.
    fn problem(&mut self, message: String) {
        if self.human {
            println!("error: {message}");
        }
        self.outcome.problems.push(message);
    }

    fn finish(self) -> anyhow::Result<ExitCode> {
        let Validation {
            mut outcome,
            human,
            started,
        } = self;
        outcome.ok = outcome.problems.is_empty();
        outcome.seconds = started.elapsed().as_secs_f64();
        if human {
            if outcome.ok {
                println!("ok        ready for a full run ({:.1} s)", outcome.seconds);
            } else if outcome.spec_errors.is_empty() {
                // Each problem was printed where it was found; spec problems with their own count.
                println!("not ready: {}", plural(outcome.problems.len(), "problem"));
            }
        } else {
            println!("{}", serde_json::to_string_pretty(&outcome)?);
        }
        Ok(if outcome.ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        })
    }
}

/// The proof-of-concept training, with a progress bar for a person watching.
fn train_a_few_steps(
    spec: &ExperimentSpec,
    scan: &ScanReport,
    human: bool,
) -> easel_engine::Result<PocReport> {
    let bar = if human {
        ProgressBar::new(spec.local.steps.max(0) as u64)
    } else {
        ProgressBar::hidden()
    };
    if let Ok(style) =
        ProgressStyle::with_template("proof of concept {bar:30} {pos}/{len} steps  loss {msg}")
    {
        bar.set_style(style);
    }
    let report =
        easel_engine::proof_of_concept(spec, &scan.manifest, scan.source(), &mut |step, loss| {
            bar.set_position(u64::from(step));
            bar.set_message(format!("{loss:.4}"));
        });
    bar.finish_and_clear();
    report
}
