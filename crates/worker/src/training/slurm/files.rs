//! A job's Slurm run in its folder, on the filesystem the compute nodes share: the request the
//! training process reads, the batch script, the Slurm job id, the process's messages (one JSON
//! line each, appended by every run of the job: a requeued or resubmitted one goes on after the
//! last) and how far the worker has read them, and Slurm's own log of the job.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// The folder, in the job's.
pub const DIR: &str = "slurm";
pub const REQUEST: &str = "request.json";
pub const SCRIPT: &str = "job.sh";
pub const JOB_ID: &str = "slurm-job-id";
pub const OUTPUT: &str = "output.jsonl";
pub const READ_UP_TO: &str = "output-read";
pub const SLURM_LOG: &str = "slurm.log";

/// `<job>/slurm/`, beside the job's run directory.
#[derive(Debug, Clone)]
pub struct RunFiles {
    pub dir: PathBuf,
}

impl RunFiles {
    pub fn of(run_dir: &Path) -> RunFiles {
        let job_dir = run_dir.parent().unwrap_or(run_dir);
        RunFiles {
            dir: job_dir.join(DIR),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The Slurm job this Easel job was last submitted as, if any.
    pub fn job_id(&self) -> Option<String> {
        let text = std::fs::read_to_string(self.path(JOB_ID)).ok()?;
        let id = text.trim();
        (!id.is_empty()).then(|| id.to_owned())
    }

    pub fn save_job_id(&self, id: &str) -> std::io::Result<()> {
        easel_store::private_file::write_replacing(&self.path(JOB_ID), id.as_bytes())
    }

    /// Where the worker stopped reading the output (0 for a run it never followed).
    pub fn read_up_to(&self) -> u64 {
        std::fs::read_to_string(self.path(READ_UP_TO))
            .ok()
            .and_then(|text| text.trim().parse().ok())
            .unwrap_or(0)
    }

    pub fn save_read_up_to(&self, offset: u64) {
        let _ = std::fs::write(self.path(READ_UP_TO), offset.to_string());
    }

    /// Whole lines appended to the output after `offset`, and the offset after the last one
    /// (a line still being written waits for its newline).
    pub fn new_lines(&self, offset: u64) -> (Vec<String>, u64) {
        let Ok(mut file) = std::fs::File::open(self.path(OUTPUT)) else {
            return (Vec::new(), offset);
        };
        let mut text = Vec::new();
        if file.seek(SeekFrom::Start(offset)).is_err() || file.read_to_end(&mut text).is_err() {
            return (Vec::new(), offset);
        }
        let complete = text
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |at| at + 1);
        let lines = String::from_utf8_lossy(&text[..complete])
            .lines()
            .filter(|line| !line.trim().is_empty())
            .map(str::to_owned)
            .collect();
        (lines, offset + complete as u64)
    }

    /// The last lines of Slurm's log of the job (what the process printed on stderr).
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(self.path(SLURM_LOG)).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}
