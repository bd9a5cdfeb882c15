//! `client down NAME`: stops the worker a profile names, over the same SSH `client up` used.
//! Jobs, artifacts, the install and the token stay on the machine, so `client up` brings the
//! same worker back.

use std::process::ExitCode;

use anyhow::anyhow;

use super::ssh::Ssh;
use crate::config;

#[derive(Debug, clap::Args)]
pub struct DownArgs {
    /// The worker profile (`client workers` lists them; default: the default worker).
    pub name: Option<String>,
    /// Also remove the profile from the client config.
    #[arg(long)]
    pub forget: bool,
}

pub fn run(args: DownArgs) -> anyhow::Result<ExitCode> {
    let config = config::read_config()?;
    let name = args
        .name
        .clone()
        .or_else(|| config.worker.clone())
        .ok_or_else(|| anyhow!("which worker? `client down NAME` (`client workers` lists them)"))?;
    let profile = config.workers.get(&name).ok_or_else(|| {
        anyhow!(
            "no worker profile named `{name}` in {} (`client workers` lists them)",
            config::config_path_text()
        )
    })?;
    let (Some(destination), Some(dir)) = (&profile.ssh, &profile.remote_dir) else {
        return Err(anyhow!(
            "worker `{name}` was not started by `client up` (its profile has no SSH destination): stop it on its machine"
        ));
    };
    let program = std::env::var("EASEL_SSH")
        .ok()
        .or_else(|| profile.ssh_command.clone());
    let ssh = Ssh::new(destination, program.as_deref())?;
    println!("stopping the worker `{name}` on {destination} (running jobs stop at a checkpoint)");
    match ssh.run("stop", &[dir.as_str()], true) {
        Ok(stopped) if stopped.get("stopped") == Some("not-running") => {
            println!("it was not running")
        }
        Ok(_) => println!(
            "stopped; jobs, artifacts and the install stay in {dir} (`client up {destination}` starts it again)"
        ),
        // A rented machine that is gone can still be forgotten.
        Err(error) if args.forget => eprintln!("warning: could not stop it: {error:#}"),
        Err(error) => return Err(error),
    }
    if args.forget {
        config::forget_profile(&name)?;
        println!(
            "removed the profile `{name}` from {}",
            config::config_path_text()
        );
    }
    Ok(ExitCode::SUCCESS)
}
