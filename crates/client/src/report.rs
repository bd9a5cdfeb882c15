//! `client report RUN_DIR|JOB [--open]`: the page a person reads after a run (`report.html`), or
//! after a sweep (`sweep.html`). A folder is read as it is; anything else is a job or sweep id,
//! fetched first (into a folder named after it, as `client fetch` does) from the worker or, with
//! --store, from object storage.

use anyhow::{Context, bail};
use easel_spec::outputs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::remote::WorkerArgs;
use crate::remote::fetch::FetchArgs;
use crate::remote::sweep::fetch::PAGE_NAME as SWEEP_PAGE;

#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// A run folder (from `train --local` or `fetch`), a fetched sweep's folder, or a job or
    /// sweep id to fetch first.
    pub run: String,
    /// Open the page in the default browser.
    #[arg(long)]
    pub open: bool,
    /// Where a fetched job goes (default: a folder named after it).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Fetch from this object store instead of the worker (s3://bucket/prefix, file:///dir...).
    #[arg(long)]
    pub store: Option<String>,
    #[command(flatten)]
    pub worker: WorkerArgs,
}

pub fn run(args: ReportArgs) -> anyhow::Result<ExitCode> {
    let folder = PathBuf::from(&args.run);
    let folder = if folder.is_dir() {
        folder
    } else {
        let out = args.out.clone().unwrap_or_else(|| PathBuf::from(&args.run));
        let fetch = FetchArgs {
            job: args.run.clone(),
            out: Some(out.clone()),
            worker: args.worker.clone(),
            store: args.store.clone(),
            all: false,
            json: false,
            best: false,
        };
        let fetched = if crate::remote::sweep::is_sweep_id(&args.run) {
            crate::remote::sweep::fetch::run(fetch)
        } else {
            crate::remote::fetch::run(fetch)
        };
        fetched.with_context(|| format!("{} is not a folder, and fetching it failed", args.run))?;
        out
    };
    let page = page_in(&folder)?;
    println!("{}", page.display());
    if args.open {
        open_in_browser(&page)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The run's or the sweep's page in `folder`.
fn page_in(folder: &Path) -> anyhow::Result<PathBuf> {
    for name in [outputs::REPORT_PAGE, SWEEP_PAGE] {
        let page = folder.join(name);
        if page.is_file() {
            return Ok(page);
        }
    }
    if folder.join(outputs::REPORT).is_file() {
        bail!(
            "{} has a report.json but no {}: the run finished before Easel wrote report pages \
             (train it again to get one)",
            folder.display(),
            outputs::REPORT_PAGE
        );
    }
    bail!(
        "{} has neither {} nor {}: it is not a finished run's or a fetched sweep's folder",
        folder.display(),
        outputs::REPORT_PAGE,
        SWEEP_PAGE
    )
}

/// Hands `page` to the desktop's opener (`open` on macOS, `xdg-open` elsewhere).
fn open_in_browser(page: &Path) -> anyhow::Result<()> {
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    let status = std::process::Command::new(opener)
        .arg(page)
        .status()
        .with_context(|| format!("cannot run {opener} to open {}", page.display()))?;
    if !status.success() {
        bail!("{opener} could not open {} ({status})", page.display());
    }
    Ok(())
}
