//! Slurm's commands, run where the worker runs: `sbatch` to submit, `squeue` for a job's state
//! while it is known, `scontrol show job` for how it ended, `scancel` to cancel. Each failure
//! comes back as a sentence naming the command and what it said.

use std::path::{Path, PathBuf};

use easel_spec::executor::SlurmConfig;

/// A job as `squeue` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queued {
    /// `PENDING`, `RUNNING`, `COMPLETING`, `REQUEUED`, …
    pub state: String,
    /// Why it waits (`Priority`, `Resources`, `QOSMaxJobsPerUserLimit`…), or `None`.
    pub reason: String,
    pub nodes: String,
}

/// How a job that left the queue ended, as `scontrol show job` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ended {
    /// `COMPLETED`, `FAILED`, `CANCELLED`, `TIMEOUT`, `OUT_OF_MEMORY`, `NODE_FAIL`, …
    pub state: String,
    pub reason: String,
    /// `ExitCode=2:0` as (status, signal).
    pub exit_code: (i32, i32),
}

#[derive(Debug)]
pub struct SlurmCommands {
    config: SlurmConfig,
}

impl SlurmCommands {
    pub fn new(config: SlurmConfig) -> SlurmCommands {
        SlurmCommands { config }
    }

    pub fn config(&self) -> &SlurmConfig {
        &self.config
    }

    fn program(&self, name: &str) -> PathBuf {
        if self.config.bin_dir.is_empty() {
            PathBuf::from(name)
        } else {
            Path::new(&self.config.bin_dir).join(name)
        }
    }

    async fn run(&self, name: &str, args: &[String]) -> Result<String, String> {
        let program = self.program(name);
        let output = tokio::process::Command::new(&program)
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .map_err(|error| match error.kind() {
                std::io::ErrorKind::NotFound => format!(
                    "`{}` was not found (executor.slurm.bin_dir, or the PATH): the Slurm \
                     executor runs where Slurm's commands are, a cluster's login node",
                    program.display()
                ),
                _ => format!("`{}` could not be run: {error}", program.display()),
            })?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
        } else {
            let said = String::from_utf8_lossy(&output.stderr).trim().to_owned();
            Err(format!("{name} failed ({}): {said}", output.status))
        }
    }

    /// Submits `script` as one Slurm job named `name`; its id.
    pub async fn submit(&self, script: &Path, name: &str, log: &Path) -> Result<String, String> {
        let config = &self.config;
        let mut args = vec![
            "--parsable".to_owned(),
            format!("--job-name={name}"),
            format!("--output={}", log.display()),
            "--open-mode=append".to_owned(),
            // The worker's environment (credentials, tokens) stays behind; the script sets
            // what training needs.
            "--export=NONE".to_owned(),
            // Preempted, it goes back to the queue and resumes from its checkpoint.
            "--requeue".to_owned(),
            format!("--signal=B:TERM@{}", config.signal_before_end_seconds),
        ];
        for (option, value) in [
            ("partition", &config.partition),
            ("account", &config.account),
            ("qos", &config.qos),
            ("time", &config.time),
            ("constraint", &config.constraint),
        ] {
            if !value.is_empty() {
                args.push(format!("--{option}={value}"));
            }
        }
        if config.gpus_per_job > 0 {
            args.push(format!("--gres=gpu:{}", config.gpus_per_job));
        }
        args.extend(config.extra_args.iter().cloned());
        args.push(script.display().to_string());
        let printed = self.run("sbatch", &args).await?;
        // `--parsable` prints `id` or `id;cluster`.
        let id = printed.split(';').next().unwrap_or("").trim();
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_digit() || c == '_') {
            return Err(format!("sbatch printed no job id: `{printed}`"));
        }
        Ok(id.to_owned())
    }

    /// The job as the queue shows it; `None` once it has left the queue.
    pub async fn queued(&self, id: &str) -> Result<Option<Queued>, String> {
        let args = ["-h", "-j", id, "-o", "%T|%r|%N"].map(str::to_owned);
        match self.run("squeue", &args).await {
            Ok(printed) => Ok(printed.lines().next().and_then(parse_queued)),
            // A job that left the queue long ago is "invalid" to squeue.
            Err(error) if error.contains("Invalid job id") => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// How the job ended: from the controller while it still remembers the job (`MinJobAge`),
    /// else from accounting (`sacct`), where the cluster runs it.
    pub async fn ended(&self, id: &str) -> Option<Ended> {
        let args = ["show", "job", "-o", id].map(str::to_owned);
        if let Some(ended) = self
            .run("scontrol", &args)
            .await
            .ok()
            .and_then(|p| parse_ended(&p))
        {
            return Some(ended);
        }
        let args = ["-n", "-P", "-X", "-j", id, "-o", "State,ExitCode,Reason"].map(str::to_owned);
        let printed = self.run("sacct", &args).await.ok()?;
        parse_accounted(printed.lines().next()?)
    }

    pub async fn cancel(&self, id: &str) -> Result<(), String> {
        self.run("scancel", &[id.to_owned()]).await.map(|_| ())
    }
}

fn parse_queued(line: &str) -> Option<Queued> {
    let mut fields = line.splitn(3, '|');
    Some(Queued {
        state: fields.next()?.trim().to_owned(),
        reason: fields.next().unwrap_or("").trim().to_owned(),
        nodes: fields.next().unwrap_or("").trim().to_owned(),
    })
}

fn parse_ended(text: &str) -> Option<Ended> {
    let field = |name: &str| {
        text.split_whitespace()
            .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
            .map(str::to_owned)
    };
    Some(Ended {
        state: field("JobState")?,
        reason: field("Reason").unwrap_or_default(),
        exit_code: exit_code(&field("ExitCode").unwrap_or_default()),
    })
}

/// Slurm's `status:signal` exit code; a missing or unreadable part reads 0.
fn exit_code(text: &str) -> (i32, i32) {
    let (status, signal) = text.split_once(':').unwrap_or((text, "0"));
    (status.parse().unwrap_or(0), signal.parse().unwrap_or(0))
}

/// `sacct -P` line `STATE|status:signal|reason` (a state may read `CANCELLED by 0`).
fn parse_accounted(line: &str) -> Option<Ended> {
    let mut fields = line.split('|');
    let state = fields.next()?.split_whitespace().next()?.to_owned();
    let code = exit_code(fields.next().unwrap_or("0:0"));
    Some(Ended {
        state,
        reason: fields.next().unwrap_or("").to_owned(),
        exit_code: code,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn squeue_and_scontrol_lines_read_as_states() {
        assert_eq!(
            parse_queued("PENDING|QOSMaxJobsPerUserLimit|"),
            Some(Queued {
                state: "PENDING".into(),
                reason: "QOSMaxJobsPerUserLimit".into(),
                nodes: String::new(),
            })
        );
        let ended = parse_ended(
            "JobId=7 JobName=easel JobState=OUT_OF_MEMORY Reason=OutOfMemory Dependency=(null) \
             Requeue=1 Restarts=0 BatchFlag=1 ExitCode=0:125",
        )
        .unwrap();
        assert_eq!(ended.state, "OUT_OF_MEMORY");
        assert_eq!(ended.reason, "OutOfMemory");
        assert_eq!(ended.exit_code, (0, 125));
        assert_eq!(parse_ended("no such job"), None);
        let accounted = parse_accounted("CANCELLED by 0|0:15|None").unwrap();
        assert_eq!(
            (accounted.state.as_str(), accounted.exit_code),
            ("CANCELLED", (0, 15))
        );
        let timed_out = parse_accounted("TIMEOUT|0:0|").unwrap();
        assert_eq!(timed_out.state, "TIMEOUT");
    }
}
