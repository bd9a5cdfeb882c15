//! `client workers`: the worker profiles in the client config, each asked whether it answers.

use std::process::ExitCode;
use std::time::Duration;

use crate::config;
use crate::remote::WorkerArgs;

#[derive(Debug, clap::Args)]
pub struct WorkersArgs {
    /// Machine-readable output (a JSON array on stdout).
    #[arg(long)]
    pub json: bool,
}

/// How long an unreachable worker may hold the listing up.
const PATIENCE: Duration = Duration::from_secs(5);

pub fn run(args: WorkersArgs) -> anyhow::Result<ExitCode> {
    let config = config::read_config()?;
    if config.workers.is_empty() {
        if args.json {
            println!("[]");
        } else {
            println!(
                "no worker profiles in {}: `client up [user@]host` starts a worker and saves one",
                config::config_path_text()
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let names: Vec<String> = config.workers.keys().cloned().collect();
    let answers = crate::remote::block_on(async {
        let asks = names.iter().map(|name| {
            let worker = WorkerArgs {
                worker: Some(name.clone()),
                token: None,
                fingerprint: None,
                allow_plaintext: false,
            };
            async move { crate::remote::hello_within(&worker, PATIENCE).await }
        });
        Ok::<_, anyhow::Error>(futures::future::join_all(asks).await)
    })?;
    let default = config.worker.as_deref();
    let mut rows = Vec::new();
    for (name, answer) in names.iter().zip(answers) {
        let profile = &config.workers[name];
        let (reachable, state) = match &answer {
            Ok(hello) => (
                true,
                format!(
                    "up: worker {}, {}{}",
                    hello.worker_version,
                    if hello.cuda_available { "CUDA" } else { "CPU" },
                    if hello.devices.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", hello.devices.join(", "))
                    }
                ),
            ),
            Err(error) => (false, format!("unreachable: {}", first_line(error))),
        };
        rows.push((name, profile, reachable, state));
    }
    if args.json {
        let items: Vec<serde_json::Value> = rows
            .iter()
            .map(|(name, profile, reachable, state)| {
                serde_json::json!({
                    "name": name,
                    "default": Some(name.as_str()) == default,
                    "address": profile.address,
                    "ssh": profile.ssh,
                    "reachable": reachable,
                    "state": state,
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(items));
        return Ok(ExitCode::SUCCESS);
    }
    let width = names.iter().map(String::len).max().unwrap_or(4).max(4);
    println!(
        "  {:<width$}  {:<32} {:<24} STATE",
        "NAME", "ADDRESS", "SSH"
    );
    for (name, profile, _, state) in rows {
        let mark = if Some(name.as_str()) == default {
            '*'
        } else {
            ' '
        };
        println!(
            "{mark} {name:<width$}  {:<32} {:<24} {state}",
            profile.address,
            profile.ssh.as_deref().unwrap_or("-")
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn first_line(error: &anyhow::Error) -> String {
    format!("{error:#}")
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}
