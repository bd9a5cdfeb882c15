//! `[sweep]`: many experiments as one. A sweep document is an ordinary experiment spec (the base)
//! plus a `[sweep]` table naming spec keys and the values to try. [`Sweep::parse`] expands it into
//! its trials, each an ordinary [`ExperimentSpec`] checked by the same rules as any spec, and
//! reports every problem at once, naming the trial and its key (a problem every trial shares is
//! named once).

use std::collections::{BTreeMap, HashMap};

use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use std::path::Path;

use crate::error::{SpecError, SpecErrors};
use crate::experiment::ExperimentSpec;
use crate::load::{read_text, read_toml};
use crate::resolve::{parse_experiment, spec_folder};

/// Sweep ids start so (the worker makes them) and job ids never do: the client tells one
/// argument of `status`, `cancel` or `fetch` apart by it.
pub const SWEEP_ID_PREFIX: &str = "sweep-";

/// Trials a sweep may have unless a worker says otherwise: enough for a search a person reads
/// as a table, few enough that a typo (a list of 1,000 learning rates) is caught.
pub const DEFAULT_MAX_TRIALS: usize = 256;

/// Whether a spec file's text has a `[sweep]` table (unreadable text is no sweep: the spec's
/// own reading then says what is wrong with it).
pub fn is_sweep(text: &str) -> bool {
    text.parse::<toml::Table>()
        .is_ok_and(|table| table.contains_key("sweep"))
}

/// How a sweep runs and what it tries.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepSettings {
    /// What "best" means.
    #[serde(default)]
    pub metric: SweepMetric,
    /// Trials training at once; 0: one per free training slot.
    #[serde(default)]
    pub max_concurrent: u32,
    #[serde(default)]
    pub method: SweepMethod,
    /// Trials drawn by `method = "random"`.
    #[serde(default)]
    pub trials: Option<u32>,
    /// Seed of `method = "random"`'s draws: the same seed draws the same trials.
    #[serde(default)]
    pub seed: u64,
    #[serde(default)]
    pub early_stop: Option<EarlyStopRule>,
    /// Epochs every trial trains before `early_stop` may judge it.
    #[serde(default = "default_grace_epochs")]
    pub grace_epochs: u32,
    /// Dotted spec keys (`"train.batch_size"`), each with the values to try.
    #[serde(default)]
    pub grid: BTreeMap<String, Choices>,
}

fn default_grace_epochs() -> u32 {
    2
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SweepMetric {
    #[default]
    ValAccuracy,
    ValLoss,
    TestAccuracy,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SweepMethod {
    /// Every combination of the listed values.
    #[default]
    Grid,
    /// `trials` draws, each value picked from its list or range.
    Random,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EarlyStopRule {
    /// Stop a trial that falls behind the median of the others at the same epoch.
    Median,
}

impl SweepMetric {
    /// The name a spec writes it by: `val_accuracy`, `val_loss`, `test_accuracy`.
    pub fn name(self) -> &'static str {
        match self {
            SweepMetric::ValAccuracy => "val_accuracy",
            SweepMetric::ValLoss => "val_loss",
            SweepMetric::TestAccuracy => "test_accuracy",
        }
    }

    /// Whether a larger value is better (accuracies) or a smaller one (loss).
    pub fn higher_is_better(self) -> bool {
        self != SweepMetric::ValLoss
    }

    /// Whether `candidate` is better than `than`.
    pub fn better(self, candidate: f64, than: f64) -> bool {
        if self.higher_is_better() {
            candidate > than
        } else {
            candidate < than
        }
    }
}

/// The values one key takes: a list, or (random sweeps only) a range to draw from.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum Choices {
    Values(Vec<toml::Value>),
    Range(Range),
}

#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Range {
    Uniform([f64; 2]),
    LogUniform([f64; 2]),
    /// Both ends included.
    IntUniform([i64; 2]),
}

/// One experiment of a sweep: its number (1-based), the values it varies, and its spec.
#[derive(Debug, Clone, PartialEq)]
pub struct Trial {
    pub number: usize,
    pub params: Vec<(String, toml::Value)>,
    pub spec: ExperimentSpec,
    /// The trial's spec written out (the base with its values set, no `[sweep]`): what a
    /// worker keeps as the trial's `spec.toml`, read again as any job's spec.
    pub spec_toml: String,
}

impl Trial {
    /// `model.architecture = "vgg16", train.batch_size = 64`.
    pub fn label(&self) -> String {
        label(&self.params)
    }
}

/// A sweep document, expanded.
#[derive(Debug, Clone, PartialEq)]
pub struct Sweep {
    pub settings: SweepSettings,
    pub trials: Vec<Trial>,
}

/// The document as read: the sweep's settings beside the base spec's tables.
#[derive(Deserialize)]
struct SweepDocument {
    sweep: SweepSettings,
    #[serde(flatten)]
    base: toml::Table,
}

impl Sweep {
    /// Reads a sweep file, expands its trials and, as for any spec file, makes their relative
    /// paths absolute against the file's folder and checks that datasets and weights exist.
    pub fn load(path: &Path, max_trials: usize) -> Result<Sweep, SpecErrors> {
        let origin = path.display().to_string();
        let mut sweep = Sweep::parse(&read_text(path)?, &origin, max_trials)?;
        let base_dir = spec_folder(path);
        let mut failures = Vec::new();
        for trial in &mut sweep.trials {
            trial.spec.resolve_paths(&base_dir);
            let missing = trial.spec.missing_files();
            if !missing.is_empty() {
                let trial_origin = format!("{origin}, trial {} ({})", trial.number, trial.label());
                failures.push(SpecErrors {
                    errors: missing
                        .into_iter()
                        .map(|problem| SpecError {
                            origin: trial_origin.clone(),
                            path: problem.path,
                            position: None,
                            message: problem.message,
                        })
                        .collect(),
                });
            }
        }
        if failures.is_empty() {
            Ok(sweep)
        } else {
            let valid = sweep.trials.len() - failures.len();
            Err(merge_failures(&origin, failures, valid))
        }
    }

    /// Reads a sweep document (`origin` names it in errors) and expands its trials, refusing
    /// more than `max_trials` (a worker's `limits.max_trials_per_sweep`).
    pub fn parse(text: &str, origin: &str, max_trials: usize) -> Result<Sweep, SpecErrors> {
        let document = read_toml::<SweepDocument>(text, origin).finish()?;
        let settings = document.sweep;
        let problems = settings_problems(&settings, max_trials);
        if !problems.is_empty() {
            return Err(at_file(origin, problems));
        }
        let mut trials = Vec::new();
        let mut failures = Vec::new();
        for (index, params) in draws(&settings).into_iter().enumerate() {
            let number = index + 1;
            let trial_origin = format!("{origin}, trial {number} ({})", label(&params));
            match trial_spec(&document.base, &params, &trial_origin) {
                Ok((spec, spec_toml)) => trials.push(Trial {
                    number,
                    params,
                    spec,
                    spec_toml,
                }),
                Err(errors) => failures.push(errors),
            }
        }
        if failures.is_empty() {
            Ok(Sweep { settings, trials })
        } else {
            Err(merge_failures(origin, failures, trials.len()))
        }
    }
}

/// What is wrong with the `[sweep]` table itself, by key.
fn settings_problems(settings: &SweepSettings, max_trials: usize) -> Vec<(String, String)> {
    let mut problems = Vec::new();
    if settings.grid.is_empty() {
        problems.push((
            "sweep.grid".to_owned(),
            "names no key to vary (e.g. \"train.batch_size\" = [16, 32, 64])".to_owned(),
        ));
    }
    for (key, choices) in &settings.grid {
        let at = format!("sweep.grid.\"{key}\"");
        if key.split('.').next() == Some("sweep") || key.split('.').any(str::is_empty) {
            problems.push((at.clone(), "is not a key of the experiment spec".to_owned()));
        }
        match choices {
            Choices::Values(values) if values.is_empty() => {
                problems.push((at, "an empty list tries nothing".to_owned()));
            }
            Choices::Values(_) => {}
            Choices::Range(_) if settings.method == SweepMethod::Grid => problems.push((
                at,
                "a range is drawn from: it needs method = \"random\" (a grid takes lists)".into(),
            )),
            Choices::Range(range) => {
                if let Some(problem) = range_problem(range) {
                    problems.push((at, problem));
                }
            }
        }
    }
    let count = match settings.method {
        SweepMethod::Grid => settings.grid.values().fold(1usize, |count, choices| {
            let values = match choices {
                Choices::Values(values) => values.len().max(1),
                Choices::Range(_) => 1,
            };
            count.saturating_mul(values)
        }),
        SweepMethod::Random => match settings.trials {
            Some(0) | None => {
                problems.push((
                    "sweep.trials".to_owned(),
                    "a random sweep needs the number of trials to draw (trials = N)".to_owned(),
                ));
                0
            }
            Some(trials) => trials as usize,
        },
    };
    if count > max_trials {
        problems.push((
            "sweep".to_owned(),
            format!(
                "{count} trials is more than the {max_trials} a sweep may have \
                 (limits.max_trials_per_sweep)"
            ),
        ));
    }
    problems
}

fn range_problem(range: &Range) -> Option<String> {
    match *range {
        Range::Uniform([low, high]) | Range::LogUniform([low, high])
            if !(low.is_finite() && high.is_finite() && low < high) =>
        {
            Some(format!(
                "[{low}, {high}] is not a range (low < high, both finite)"
            ))
        }
        Range::LogUniform([low, _]) if low <= 0.0 => {
            Some(format!("a log-uniform range starts above 0, not at {low}"))
        }
        Range::IntUniform([low, high]) if low > high => {
            Some(format!("[{low}, {high}] is not a range (low <= high)"))
        }
        _ => None,
    }
}

/// Each trial's values, in trial order: every combination for a grid (the last key varying
/// fastest, keys in name order), `trials` seeded draws for a random sweep.
fn draws(settings: &SweepSettings) -> Vec<Vec<(String, toml::Value)>> {
    match settings.method {
        SweepMethod::Grid => {
            let mut combinations: Vec<Vec<(String, toml::Value)>> = vec![Vec::new()];
            for (key, choices) in &settings.grid {
                let Choices::Values(values) = choices else {
                    continue;
                };
                combinations = combinations
                    .into_iter()
                    .flat_map(|done| {
                        values.iter().map(move |value| {
                            let mut next = done.clone();
                            next.push((key.clone(), value.clone()));
                            next
                        })
                    })
                    .collect();
            }
            combinations
        }
        SweepMethod::Random => {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(settings.seed);
            (0..settings.trials.unwrap_or(0))
                .map(|_| {
                    settings
                        .grid
                        .iter()
                        .map(|(key, choices)| (key.clone(), draw(choices, &mut rng)))
                        .collect()
                })
                .collect()
        }
    }
}

fn draw(choices: &Choices, rng: &mut impl Rng) -> toml::Value {
    match choices {
        Choices::Values(values) => values[rng.random_range(0..values.len())].clone(),
        Choices::Range(Range::Uniform([low, high])) => {
            toml::Value::Float(rng.random_range(*low..*high))
        }
        Choices::Range(Range::LogUniform([low, high])) => {
            toml::Value::Float(rng.random_range(low.ln()..high.ln()).exp())
        }
        Choices::Range(Range::IntUniform([low, high])) => {
            toml::Value::Integer(rng.random_range(*low..=*high))
        }
    }
}

/// The base spec with one trial's values set, read and checked as any spec is.
fn trial_spec(
    base: &toml::Table,
    params: &[(String, toml::Value)],
    origin: &str,
) -> Result<(ExperimentSpec, String), SpecErrors> {
    let mut table = base.clone();
    for (key, value) in params {
        set_dotted(&mut table, key, value.clone())
            .map_err(|message| SpecErrors::whole_file(origin, format!("{key}: {message}")))?;
    }
    let text = toml::to_string(&table)
        .map_err(|e| SpecErrors::whole_file(origin, format!("cannot be written out: {e}")))?;
    // Positions would point into the written-out trial, not the user's file: left out.
    match parse_experiment(&text, origin) {
        Ok(spec) => Ok((spec, text)),
        Err(errors) => Err(SpecErrors {
            errors: errors
                .errors
                .into_iter()
                .map(|error| SpecError {
                    position: None,
                    ..error
                })
                .collect(),
        }),
    }
}

fn set_dotted(table: &mut toml::Table, key: &str, value: toml::Value) -> Result<(), String> {
    let mut parts: Vec<&str> = key.split('.').collect();
    let leaf = parts.pop().unwrap_or(key);
    let mut current = table;
    for part in parts {
        let entry = current
            .entry(part.to_owned())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        current = entry
            .as_table_mut()
            .ok_or_else(|| format!("`{part}` is a value in the spec, not a table"))?;
    }
    current.insert(leaf.to_owned(), value);
    Ok(())
}

/// Every trial's problems; one that every trial has is named once, for every trial.
fn merge_failures(origin: &str, failures: Vec<SpecErrors>, valid_trials: usize) -> SpecErrors {
    let failed = failures.len();
    let errors: Vec<SpecError> = failures.into_iter().flat_map(|f| f.errors).collect();
    if valid_trials > 0 || failed < 2 {
        return SpecErrors { errors };
    }
    let mut trials_with: HashMap<(&str, &str), usize> = HashMap::new();
    for error in &errors {
        *trials_with
            .entry((error.path.as_str(), error.message.as_str()))
            .or_default() += 1;
    }
    let everywhere =
        |error: &SpecError| trials_with[&(error.path.as_str(), error.message.as_str())] == failed;
    // Named once (the first trial's copy, for every trial), then the trials' own.
    let shared = errors
        .iter()
        .take_while(|error| error.origin == errors[0].origin)
        .filter(|error| everywhere(error))
        .map(|error| SpecError {
            origin: format!("{origin}, every trial"),
            ..error.clone()
        });
    let own = errors.iter().filter(|error| !everywhere(error)).cloned();
    SpecErrors {
        errors: shared.chain(own).collect(),
    }
}

fn at_file(origin: &str, problems: Vec<(String, String)>) -> SpecErrors {
    SpecErrors {
        errors: problems
            .into_iter()
            .map(|(path, message)| SpecError {
                origin: origin.to_owned(),
                path,
                position: None,
                message,
            })
            .collect(),
    }
}

/// `model.architecture = "vgg16", train.batch_size = 64`: how a trial's values read in errors
/// and tables.
pub fn label(params: &[(String, toml::Value)]) -> String {
    params
        .iter()
        .map(|(key, value)| format!("{key} = {value}"))
        .collect::<Vec<_>>()
        .join(", ")
}
