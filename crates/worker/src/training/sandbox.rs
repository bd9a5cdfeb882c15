//! What a job's training process may reach. It runs the code that parses uploaded bytes (image
//! decoders, weights readers, libtorch), so a bug there must not hand it the worker's secrets:
//! its environment keeps only what training needs (no object-store credentials, no tokens), and
//! Landlock lets it read the machine except the worker's secrets and other processes' `/proc`
//! entries, write only its own run folder, the decoded-image cache, its temporary folder and the
//! devices, and open no TCP connection.
//!
//! Landlock allows and never denies, and allowing a folder allows everything beneath it. So
//! "everything but the data directory" is built as one rule for each sibling along the way from
//! `/` down to each hidden path, and the folders a job needs inside the data directory are
//! allowed one by one. The worker, which knows its configuration, says what is hidden and what is
//! granted ([`Confinement::for_job`]); the training process applies it to itself ([`enter`])
//! before it reads any input.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use easel_spec::worker::WorkerConfig;
use landlock::{
    ABI, Access as _, AccessFs, AccessNet, BitFlags, CompatLevel, Compatible, PathBeneath, PathFd,
    Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetStatus,
};
use serde::{Deserialize, Serialize};

/// The Landlock ABI whose rights are handled: v5 (Linux 6.10) adds ioctl on devices, which the
/// GPU driver's device files need granted. An older kernel enforces what it knows (best effort).
const HANDLED_ABI: ABI = ABI::V5;

/// What the worker's user may keep in its home that a training process has no use for: cloud and
/// SSH credentials, the client's own profiles (tokens) in `~/.config`.
const HOME_SECRETS: &[&str] = &[
    ".aws",
    ".azure",
    ".config",
    ".docker",
    ".git-credentials",
    ".gnupg",
    ".kube",
    ".netrc",
    ".ssh",
];

/// Variables a training process keeps from the worker's environment: where programs and
/// libraries are, the locale, its log settings.
const KEPT_VARIABLES: &[&str] = &[
    "PATH",
    "LD_LIBRARY_PATH",
    "LANG",
    "LANGUAGE",
    "TZ",
    "EASEL_LOG",
    "RUST_LOG",
    "RUST_BACKTRACE",
];

/// Prefixes of the variables it keeps besides: the settings of CUDA (device selection), the
/// driver, libtorch and its math and threading libraries.
const KEPT_PREFIXES: &[&str] = &[
    "LC_",
    "CUDA_",
    "NVIDIA_",
    "CUBLAS_",
    "CUDNN_",
    "NCCL_",
    "PYTORCH_",
    "TORCH_",
    "OMP_",
    "GOMP_",
    "KMP_",
    "MKL_",
    "OPENBLAS_",
];

/// What a grant allows beneath its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Access {
    /// Read files, list folders, run programs.
    Read,
    /// Read, and move or remove files (the blob store's quarantine of a damaged blob), without
    /// writing into any file.
    ReadAndMove,
    /// Everything: create, write, remove.
    ReadWrite,
}

impl Access {
    fn rights(self) -> BitFlags<AccessFs> {
        let read = AccessFs::from_read(HANDLED_ABI);
        match self {
            Access::Read => read,
            Access::ReadAndMove => {
                read | AccessFs::RemoveFile
                    | AccessFs::MakeDir
                    | AccessFs::MakeReg
                    | AccessFs::Refer
            }
            Access::ReadWrite => AccessFs::from_all(HANDLED_ABI),
        }
    }
}

/// `access` beneath `path`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub path: PathBuf,
    pub access: Access,
}

impl Grant {
    pub fn new(path: impl Into<PathBuf>, access: Access) -> Grant {
        Grant {
            path: path.into(),
            access,
        }
    }
}

/// What a training process may reach: its grants, except the hidden paths wherever a grant
/// would open them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confinement {
    /// Never opened by a grant that holds them: the worker's data directory, its config file, its
    /// TLS key. A grant inside a hidden path opens that part only (a job's folder inside the data
    /// directory).
    pub hidden: Vec<PathBuf>,
    pub grants: Vec<Grant>,
    /// Hides `/proc/<pid>` of every other process, found when the rules are made: the worker's
    /// environment holds the credentials the training process starts without, and Landlock
    /// keeps another process's memory from it but not its `environ`.
    pub hide_other_processes: bool,
}

/// The folders one job's training uses.
pub struct JobFolders<'a> {
    /// The job's own folder (its manifest); read only.
    pub job: &'a Path,
    /// Where its run writes checkpoints and artifacts.
    pub run: &'a Path,
    /// The decoded-image caches, shared by jobs.
    pub cache: &'a Path,
    /// The blob store: the images and uploaded weights it names.
    pub blobs: &'a Path,
    /// A copied object-store dataset it reads instead of blobs.
    pub dataset: Option<&'a Path>,
}

impl Confinement {
    /// A job's confinement: the machine to read, less `hidden`; its own folders; scratch files in
    /// `temp_dir` (the process's TMPDIR and HOME); the devices (GPUs); its own `/proc` entry.
    pub fn for_job(hidden: &[PathBuf], folders: &JobFolders, temp_dir: &Path) -> Confinement {
        let mut grants = vec![
            Grant::new("/", Access::Read),
            Grant::new("/dev", Access::ReadWrite),
            // Naming another of its threads writes /proc/self/task/<id>/comm.
            Grant::new("/proc/self", Access::ReadWrite),
            Grant::new(temp_dir, Access::ReadWrite),
            Grant::new(folders.job, Access::Read),
            Grant::new(folders.run, Access::ReadWrite),
            Grant::new(folders.cache, Access::ReadWrite),
            Grant::new(folders.blobs, Access::ReadAndMove),
        ];
        grants.extend(folders.dataset.map(|dir| Grant::new(dir, Access::Read)));
        Confinement {
            hidden: hidden.to_vec(),
            grants,
            hide_other_processes: true,
        }
    }
}

/// What the worker keeps from its training processes: its data directory (tokens, the TLS key,
/// every job and blob), its config file (it may hold store credentials), a TLS key kept
/// elsewhere, and the credentials its user may keep at home.
pub fn hidden_paths(config: &WorkerConfig, config_file: Option<&Path>) -> Vec<PathBuf> {
    let mut hidden = vec![config.data_dir.clone()];
    hidden.extend(config_file.map(Path::to_path_buf));
    hidden.extend(config.tls.key.clone());
    if let Some(home) = std::env::var_os("HOME").filter(|home| !home.is_empty()) {
        hidden.extend(HOME_SECRETS.iter().map(|name| Path::new(&home).join(name)));
    }
    hidden
}

/// The environment a training process starts with, from the worker's: only the variables in
/// `KEPT_VARIABLES` and `KEPT_PREFIXES`, and HOME and TMPDIR set to `temp_dir` so that
/// libraries' caches and scratch files land where the process may write.
pub fn child_environment(
    worker: impl IntoIterator<Item = (OsString, OsString)>,
    temp_dir: &Path,
) -> Vec<(OsString, OsString)> {
    let mut kept: Vec<(OsString, OsString)> = worker
        .into_iter()
        .filter(|(name, _)| is_kept(name))
        .collect();
    kept.push(("HOME".into(), temp_dir.into()));
    kept.push(("TMPDIR".into(), temp_dir.into()));
    kept
}

fn is_kept(name: &std::ffi::OsStr) -> bool {
    let Some(name) = name.to_str() else {
        return false;
    };
    KEPT_VARIABLES.contains(&name) || KEPT_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// One Landlock rule: `access` beneath `path`, a folder or a single file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub path: PathBuf,
    pub access: Access,
    pub folder: bool,
}

/// The rules that grant `confinement`: each grant as one rule where no hidden path lies beneath
/// it, else one rule for each entry of its folder, recursively, leaving the hidden paths out.
/// Paths are compared as the kernel sees them (links resolved); what does not exist is skipped.
pub fn rules(confinement: &Confinement) -> Vec<Rule> {
    let mut hidden: Vec<PathBuf> = confinement
        .hidden
        .iter()
        .filter_map(|path| std::fs::canonicalize(path).ok())
        .collect();
    if confinement.hide_other_processes {
        hidden.extend(other_processes());
    }
    let mut rules = Vec::new();
    for grant in &confinement.grants {
        let Ok(path) = std::fs::canonicalize(&grant.path) else {
            continue;
        };
        let folder = path.is_dir();
        allow_around(&path, folder, grant.access, &hidden, &mut rules);
    }
    rules
}

fn allow_around(
    path: &Path,
    folder: bool,
    access: Access,
    hidden: &[PathBuf],
    rules: &mut Vec<Rule>,
) {
    if hidden.iter().any(|secret| secret == path) {
        return;
    }
    if !hidden.iter().any(|secret| secret.starts_with(path)) {
        rules.push(Rule {
            path: path.to_owned(),
            access,
            folder,
        });
        return;
    }
    // A folder that cannot be listed cannot be opened entry by entry: it stays closed.
    let Ok(entries) = std::fs::read_dir(path) else {
        return;
    };
    for entry in entries.flatten() {
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        // A link leads where it points, which is allowed or not where it really lies.
        if kind.is_symlink() {
            continue;
        }
        allow_around(&entry.path(), kind.is_dir(), access, hidden, rules);
    }
}

/// `/proc/<pid>` of every process but this one.
fn other_processes() -> Vec<PathBuf> {
    let own = std::process::id().to_string();
    let entries = std::fs::read_dir("/proc").into_iter().flatten().flatten();
    entries
        .filter(|entry| {
            let name = entry.file_name();
            name.to_str()
                .is_some_and(|name| name != own && name.bytes().all(|b| b.is_ascii_digit()))
        })
        .map(|entry| entry.path())
        .collect()
}

/// How far the kernel confines the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SandboxStatus {
    /// Landlock enforces every rule.
    Enforced { rules: usize },
    /// This kernel's Landlock enforces part of the rights (an older version).
    Partial { rules: usize },
    /// This kernel has no Landlock (or it is turned off): nothing is enforced.
    NotEnforced,
}

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("cannot create {}: {source}", path.display())]
    Folder {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("landlock refused the rules: {0}")]
    Landlock(#[from] landlock::RulesetError),
}

/// Confines the calling thread, and the threads and processes it starts from now on, to
/// `confinement` (the training process calls it before it starts any thread); TCP connections and listening are refused too (training needs no network).
/// Folders granted for writing are created first: once confined, the process could not.
pub fn confine(confinement: &Confinement) -> Result<SandboxStatus, SandboxError> {
    for grant in &confinement.grants {
        if grant.access == Access::ReadWrite && !grant.path.exists() {
            std::fs::create_dir_all(&grant.path).map_err(|source| SandboxError::Folder {
                path: grant.path.clone(),
                source,
            })?;
        }
    }
    let rules = rules(confinement);
    let mut ruleset = Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(AccessFs::from_all(HANDLED_ABI))?
        .handle_access(AccessNet::from_all(HANDLED_ABI))?
        .create()?;
    let mut added = 0;
    for rule in &rules {
        // Gone since it was listed: nothing to allow.
        let Ok(fd) = PathFd::new(&rule.path) else {
            continue;
        };
        let mut rights = rule.access.rights();
        if !rule.folder {
            rights &= AccessFs::from_file(HANDLED_ABI);
        }
        ruleset = ruleset.add_rule(PathBeneath::new(fd, rights))?;
        added += 1;
    }
    let status = ruleset.restrict_self()?;
    Ok(match status.ruleset {
        RulesetStatus::FullyEnforced => SandboxStatus::Enforced { rules: added },
        RulesetStatus::PartiallyEnforced => SandboxStatus::Partial { rules: added },
        RulesetStatus::NotEnforced => SandboxStatus::NotEnforced,
    })
}

/// [`confine`] for the training process of the run in `run_dir`, saying in the log (the worker
/// copies it into its own) which sandbox applies; an error is the job's reason.
pub fn enter(confinement: &Confinement, run_dir: &Path) -> Result<(), String> {
    let run = run_dir.display();
    match confine(confinement) {
        Ok(SandboxStatus::Enforced { rules }) => tracing::info!(
            %run,
            rules,
            "training process sandboxed by landlock: it reads the machine except the worker's \
             secrets and writes only its run folder, the cache and its temporary folder"
        ),
        Ok(SandboxStatus::Partial { rules }) => tracing::warn!(
            %run,
            rules,
            "training process sandboxed by landlock in part: this kernel's landlock is older \
             and enforces only some of the rights"
        ),
        Ok(SandboxStatus::NotEnforced) => tracing::warn!(
            %run,
            "the filesystem sandbox is not in force: this kernel has no landlock, so the training \
             process can read whatever the worker's user can"
        ),
        Err(error) => {
            return Err(format!(
                "the training process could not sandbox itself: {error}"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(path: &Path) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b"x").unwrap();
    }

    #[test]
    fn a_grant_holding_a_hidden_path_opens_every_sibling_along_the_way_and_nothing_of_it() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().canonicalize().unwrap();
        let data = root.join("srv/data");
        touch(&root.join("bin/tool"));
        touch(&root.join("srv/other/file"));
        touch(&root.join("srv/notes.txt"));
        touch(&data.join("token"));
        touch(&data.join("jobs/mine/manifest.json"));
        touch(&data.join("jobs/theirs/manifest.json"));
        std::fs::create_dir_all(data.join("jobs/mine/run")).unwrap();
        // A link to the data directory opens nothing: the kernel checks where it leads.
        std::os::unix::fs::symlink(&data, root.join("srv/shortcut")).unwrap();
        let confinement = Confinement {
            hide_other_processes: false,
            hidden: vec![data.clone(), root.join("not/there")],
            grants: vec![
                Grant::new(&root, Access::Read),
                Grant::new(data.join("jobs/mine"), Access::Read),
                Grant::new(data.join("jobs/mine/run"), Access::ReadWrite),
            ],
        };

        let mut rules = rules(&confinement);
        rules.sort_by(|a, b| a.path.cmp(&b.path));
        let rule = |path: PathBuf, access, folder| Rule {
            path,
            access,
            folder,
        };
        assert_eq!(
            rules,
            vec![
                rule(root.join("bin"), Access::Read, true),
                rule(data.join("jobs/mine"), Access::Read, true),
                rule(data.join("jobs/mine/run"), Access::ReadWrite, true),
                rule(root.join("srv/notes.txt"), Access::Read, false),
                rule(root.join("srv/other"), Access::Read, true),
            ]
        );
    }

    #[test]
    fn a_grant_that_is_itself_hidden_opens_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let secret = tmp.path().join("tls");
        std::fs::create_dir_all(&secret).unwrap();
        let confinement = Confinement {
            hidden: vec![secret.clone()],
            grants: vec![Grant::new(&secret, Access::ReadWrite)],
            hide_other_processes: false,
        };
        assert_eq!(rules(&confinement), Vec::new());
    }

    #[test]
    fn the_training_environment_keeps_library_settings_and_drops_credentials() {
        let worker = [
            ("PATH", "/usr/bin"),
            ("LD_LIBRARY_PATH", "/opt/torch/lib"),
            ("CUDA_VISIBLE_DEVICES", "1"),
            ("NVIDIA_VISIBLE_DEVICES", "all"),
            ("OMP_NUM_THREADS", "4"),
            ("EASEL_LOG", "debug"),
            ("AWS_SECRET_ACCESS_KEY", "secret"),
            ("AWS_ACCESS_KEY_ID", "id"),
            ("GOOGLE_APPLICATION_CREDENTIALS", "/etc/key.json"),
            ("AZURE_STORAGE_ACCOUNT_KEY", "key"),
            ("EASEL_TOKEN", "token"),
            ("EASEL_STORE", "s3://bucket"),
            ("HOME", "/home/worker"),
            ("TMPDIR", "/home/worker/tmp"),
        ]
        .map(|(name, value)| (OsString::from(name), OsString::from(value)));

        let kept = child_environment(worker, Path::new("/tmp"));
        let names: Vec<&str> = kept.iter().map(|(n, _)| n.to_str().unwrap()).collect();
        assert_eq!(
            names,
            [
                "PATH",
                "LD_LIBRARY_PATH",
                "CUDA_VISIBLE_DEVICES",
                "NVIDIA_VISIBLE_DEVICES",
                "OMP_NUM_THREADS",
                "EASEL_LOG",
                "HOME",
                "TMPDIR"
            ]
        );
        let value = |name: &str| kept.iter().find(|(n, _)| n == name).unwrap().1.clone();
        assert_eq!(value("HOME"), "/tmp");
        assert_eq!(value("TMPDIR"), "/tmp");
    }

    #[test]
    fn the_hidden_paths_are_the_data_dir_the_config_and_a_key_kept_elsewhere() {
        let mut config = WorkerConfig {
            data_dir: "/srv/easel/data".into(),
            ..WorkerConfig::default()
        };
        config.tls.key = Some("/etc/easel/key.pem".into());
        let hidden = hidden_paths(&config, Some(Path::new("/etc/easel/worker.toml")));
        assert_eq!(
            hidden[..3],
            [
                PathBuf::from("/srv/easel/data"),
                "/etc/easel/worker.toml".into(),
                "/etc/easel/key.pem".into()
            ]
        );
    }
}
