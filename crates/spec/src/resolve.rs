//! Loading an `experiment.toml` from disk: relative paths are resolved against the folder that
//! holds the spec (not the shell's working directory), and the dataset and weights files are
//! checked to exist, all reported together with the spec's other problems.

use crate::error::{Problem, SpecErrors};
use crate::experiment::{DataSpec, ExperimentSpec, PretrainedWeights};
use crate::load::{read_text, read_toml};
use std::path::{Path, PathBuf};

/// Parses and validates spec text without touching the file system (data paths stay as
/// written). Used for text that did not come from a file, e.g. a spec received by a worker.
pub fn parse_experiment(text: &str, origin: &str) -> Result<ExperimentSpec, SpecErrors> {
    read_toml::<ExperimentSpec>(text, origin)
        .validated()
        .finish()
}

/// Reads, parses and validates `path`, resolves the spec's relative paths against its folder
/// and checks that the dataset folders/zips and the pretrained weights exist. The returned spec
/// holds absolute paths.
pub fn load_experiment(path: &Path) -> Result<ExperimentSpec, SpecErrors> {
    let origin = path.display().to_string();
    let text = read_text(path)?;
    let base_dir = spec_folder(path);
    let mut parsed = read_toml::<ExperimentSpec>(&text, &origin).validated();
    if let Some(spec) = parsed.value.as_mut() {
        spec.resolve_paths(&base_dir);
        let missing = spec.missing_files();
        parsed.add_problems(missing);
    }
    parsed.finish()
}

/// The absolute folder holding the spec file (relative paths in it are relative to this).
pub fn spec_folder(spec_path: &Path) -> PathBuf {
    let folder = spec_path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::path::absolute(folder).unwrap_or_else(|_| folder.to_path_buf())
}

/// Where the images come from, with the spec's two ways of saying it told apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataSources {
    /// One or more roots (folder per class, or zips) merged by class name, then split by seed.
    Split { roots: Vec<PathBuf> },
    /// Explicit subsets.
    Explicit {
        train: PathBuf,
        validation: Option<PathBuf>,
        test: Option<PathBuf>,
    },
    /// A dataset already in object storage (`s3://bucket/prefix`, one folder per class below
    /// the prefix), kept as written: the worker reads it, nothing is scanned or uploaded here.
    ObjectStore { url: String },
}

/// URL schemes a dataset may be read from (those the store crate opens).
const OBJECT_STORE_SCHEMES: [&str; 8] = ["s3", "s3a", "gs", "az", "azure", "abfs", "abfss", "file"];

/// The URL when `path` is written as an object-store URL (`s3://bucket/prefix`, `gs://…`,
/// `az://…`, `file:///…`) rather than a local path.
pub fn object_store_url(path: &Path) -> Option<&str> {
    let text = path.to_str()?;
    let (scheme, _) = text.split_once("://")?;
    OBJECT_STORE_SCHEMES
        .iter()
        .any(|known| scheme.eq_ignore_ascii_case(known))
        .then_some(text)
}

impl DataSpec {
    /// The dataset locations as given (absolute after [`ExperimentSpec::resolve_paths`]);
    /// `None` when the spec names no data (which `validate()` reports).
    pub fn sources(&self) -> Option<DataSources> {
        if let Some(url) = self.object_store_url() {
            return Some(DataSources::ObjectStore {
                url: url.to_owned(),
            });
        }
        if let Some(train) = &self.train {
            return Some(DataSources::Explicit {
                train: train.clone(),
                validation: self.validation.clone(),
                test: self.test.clone(),
            });
        }
        let roots: Vec<PathBuf> = self.path.iter().chain(&self.paths).cloned().collect();
        (!roots.is_empty()).then_some(DataSources::Split { roots })
    }

    /// The dataset's object-store URL when `data.path` (or the single entry of `data.paths`)
    /// is one; `validate()` refuses a URL anywhere else or beside other roots.
    pub fn object_store_url(&self) -> Option<&str> {
        self.path
            .iter()
            .chain(&self.paths)
            .find_map(|path| object_store_url(path))
    }

    /// Every dataset path with the key that names it.
    pub(crate) fn keyed_paths(&self) -> Vec<(String, &PathBuf)> {
        let mut keyed = Vec::new();
        keyed.extend(self.path.iter().map(|path| ("data.path".to_string(), path)));
        keyed.extend(
            self.paths
                .iter()
                .enumerate()
                .map(|(index, path)| (format!("data.paths[{index}]"), path)),
        );
        keyed.extend(
            self.train
                .iter()
                .map(|path| ("data.train".to_string(), path)),
        );
        keyed.extend(
            self.validation
                .iter()
                .map(|path| ("data.validation".to_string(), path)),
        );
        keyed.extend(self.test.iter().map(|path| ("data.test".to_string(), path)));
        keyed
    }
}

impl ExperimentSpec {
    /// Makes every relative path (dataset roots, pretrained weights) absolute against `base_dir`,
    /// normally the folder that holds the spec file ([`spec_folder`]).
    pub fn resolve_paths(&mut self, base_dir: &Path) {
        let resolve = |path: &mut PathBuf| {
            // A URL is not a path: it stays exactly as written.
            if path.is_relative() && object_store_url(path).is_none() {
                let joined = base_dir.join(&*path);
                *path = std::path::absolute(&joined).unwrap_or(joined);
            }
        };
        let data = &mut self.data;
        data.path
            .iter_mut()
            .chain(data.paths.iter_mut())
            .for_each(resolve);
        data.train
            .iter_mut()
            .chain(data.validation.iter_mut())
            .chain(data.test.iter_mut())
            .for_each(resolve);
        if let Some(PretrainedWeights::File(path)) = &mut self.model.pretrained {
            resolve(path);
        }
    }

    /// Dataset folders/zips and weights files that do not exist (paths as currently held, so
    /// resolve them first).
    pub fn missing_files(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        for (key, path) in self.data.keyed_paths() {
            if object_store_url(path).is_some() {
                // Read by the worker from object storage; nothing local to check.
                continue;
            }
            if !path.exists() {
                let what = if is_zip(path) {
                    "dataset archive"
                } else {
                    "dataset folder"
                };
                let hint = similar_sibling(path)
                    .map(|name| format!(" (did you mean `{name}`?)"))
                    .unwrap_or_default();
                problems.push(Problem::new(
                    key,
                    format!("{what} not found: {}{hint}", path.display()),
                ));
            } else if path.is_file() && !is_zip(path) {
                problems.push(Problem::new(
                    key,
                    format!(
                        "must be a folder with one sub-folder per class or a .zip archive: {}",
                        path.display()
                    ),
                ));
            }
        }
        if let Some(PretrainedWeights::Blob(digest)) = &self.model.pretrained {
            problems.push(Problem::new(
                "model.pretrained",
                format!(
                    "`blob:{digest}` names weights uploaded to a worker; on this machine name the \
                     weights file"
                ),
            ));
        }
        if let Some(weights) = self
            .model
            .pretrained
            .as_ref()
            .and_then(PretrainedWeights::file)
            && !weights.is_file()
        {
            problems.push(Problem::new(
                "model.pretrained",
                format!("pretrained weights file not found: {}", weights.display()),
            ));
        }
        problems
    }

    /// The resolved spec as TOML, every default written out: saved as `spec.toml` beside a
    /// run's artifacts so the run can be repeated exactly.
    pub fn to_toml_string(&self) -> Result<String, toml::ser::Error> {
        toml::to_string_pretty(self)
    }
}

/// A file or folder beside a missing path whose name is a likely typo of it.
fn similar_sibling(path: &Path) -> Option<String> {
    let wanted = path.file_name()?.to_str()?;
    let siblings: Vec<String> = std::fs::read_dir(path.parent()?)
        .ok()?
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| !name.starts_with('.'))
        .collect();
    let names: Vec<&str> = siblings.iter().map(String::as_str).collect();
    crate::messages::closest(wanted, &names).map(str::to_owned)
}

fn is_zip(path: &Path) -> bool {
    path.extension()
        .is_some_and(|extension| extension.eq_ignore_ascii_case("zip"))
}
