//! The live leaderboard: one line per trial (its values, state, epoch, metric so far, time,
//! device), best first with the best marked, redrawn as the sweep moves on a terminal and
//! written as one line per change elsewhere (a log, a pipe). Ctrl-C detaches.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::time::Duration;

use easel_proto::v1 as pb;

use crate::remote::connection::Connection;

/// How often the leaderboard asks the worker for the sweep.
const REFRESH: Duration = Duration::from_secs(1);

/// How following a sweep ended.
pub enum FollowedSweep {
    Finished(Box<pb::Sweep>),
    Detached,
}

/// Follows the sweep until every trial is over (or Ctrl-C), showing its leaderboard when `show`
/// (`--json` shows only the final sweep).
pub async fn follow(
    connection: &mut Connection,
    sweep_id: &str,
    show: bool,
) -> anyhow::Result<FollowedSweep> {
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut view = BoardView::new(std::io::stdout().is_terminal());
    loop {
        let sweep = connection.sweep(sweep_id).await?;
        if show {
            view.show(&sweep);
        }
        if super::finished(&sweep) {
            if show {
                view.close(&sweep);
            }
            return Ok(FollowedSweep::Finished(Box::new(sweep)));
        }
        tokio::select! {
            _ = &mut ctrl_c => {
                eprintln!("detached; the sweep keeps running. Re-attach with: client watch {sweep_id}");
                return Ok(FollowedSweep::Detached);
            }
            () = tokio::time::sleep(REFRESH) => {}
        }
    }
}

/// Where the leaderboard is drawn: redrawn in place on a terminal, one line per change
/// otherwise.
struct BoardView {
    terminal: bool,
    drawn_lines: usize,
    /// What each trial last showed (state, epoch), off a terminal.
    shown: HashMap<String, (i32, u32)>,
}

impl BoardView {
    fn new(terminal: bool) -> BoardView {
        BoardView {
            terminal,
            drawn_lines: 0,
            shown: HashMap::new(),
        }
    }

    fn show(&mut self, sweep: &pb::Sweep) {
        if self.terminal {
            self.redraw(sweep);
            return;
        }
        let mut trials: Vec<&pb::Trial> = sweep.trials.iter().collect();
        trials.sort_by_key(|trial| trial.number);
        for trial in trials {
            let job = trial.job.clone().unwrap_or_default();
            let now = (job.state, job.epochs_done);
            if self.shown.insert(job.id.clone(), now) != Some(now) {
                println!(
                    "trial {} ({}): {}, epoch {}/{}{}",
                    trial.number,
                    params_label(trial),
                    job.state().name(),
                    job.epochs_done,
                    job.epochs_total,
                    trial
                        .metric
                        .map(|value| format!(
                            ", {} {}",
                            sweep.metric,
                            metric_text(&sweep.metric, value)
                        ))
                        .unwrap_or_default()
                );
            }
        }
    }

    fn redraw(&mut self, sweep: &pb::Sweep) {
        // One screen row a line, or moving up by the line count would leave wrapped rows behind.
        let columns = console::Term::stdout().size().1.max(20) as usize;
        let lines: Vec<String> = table(sweep)
            .iter()
            .map(|line| clip(line, columns - 1))
            .collect();
        let mut out = String::new();
        if self.drawn_lines > 0 {
            // Up to the board's first line, and clear what was drawn below.
            out.push_str(&format!("\x1b[{}A\x1b[J", self.drawn_lines));
        }
        for line in &lines {
            out.push_str(line);
            out.push('\n');
        }
        print!("{out}");
        self.drawn_lines = lines.len();
    }

    /// The final board (off a terminal, whole once) and the best trial.
    fn close(&mut self, sweep: &pb::Sweep) {
        if !self.terminal {
            for line in table(sweep) {
                println!("{line}");
            }
        }
        match super::best_trial(sweep) {
            Some(best) => println!(
                "best: trial {} ({}), job {}, {} {}",
                best.number,
                params_label(best),
                sweep.best_job,
                sweep.metric,
                best.metric
                    .map(|v| metric_text(&sweep.metric, v))
                    .unwrap_or_default()
            ),
            None => println!("no trial has a value of {}", sweep.metric),
        }
    }
}

/// The leaderboard: a header, then one line per trial, best first, the best marked `*`.
pub fn table(sweep: &pb::Sweep) -> Vec<String> {
    let done = super::done_count(sweep);
    let mut lines = vec![
        format!(
            "sweep {} ({}): {done}/{} trials done, best by {}",
            sweep.id,
            sweep.name,
            sweep.trials.len(),
            sweep.metric
        ),
        format!(
            "  {:>3}  {:<34} {:<10} {:>7} {:>9} {:>8}  {:<7} {}",
            "#", "values", "state", "epoch", sweep.metric, "time", "device", "job"
        ),
    ];
    for trial in &sweep.trials {
        let job = trial.job.clone().unwrap_or_default();
        let best = if !job.id.is_empty() && job.id == sweep.best_job {
            "*"
        } else {
            " "
        };
        let mut line = format!(
            "{best} {:>3}  {:<34} {:<10} {:>7} {:>9} {:>8}  {:<7} {}",
            trial.number,
            clip(&params_label(trial), 34),
            job.state().name(),
            format!("{}/{}", job.epochs_done, job.epochs_total),
            trial
                .metric
                .map(|v| metric_text(&sweep.metric, v))
                .unwrap_or_else(|| "-".into()),
            super::trial_seconds(&job)
                .map(duration_text)
                .unwrap_or_else(|| "-".into()),
            clip(&job.device, 7),
            job.id,
        );
        if !job.reason.is_empty() {
            line.push_str(&format!("  {}", clip(&job.reason, 90)));
        }
        lines.push(line);
    }
    lines
}

/// `architecture="vgg16" batch_size=64`: each key by its last part.
pub fn params_label(trial: &pb::Trial) -> String {
    trial
        .params
        .iter()
        .map(|param| {
            let key = param.key.rsplit('.').next().unwrap_or(&param.key);
            format!("{key}={}", param.value)
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Accuracies as percentages, losses as they are.
pub fn metric_text(metric: &str, value: f64) -> String {
    if metric.ends_with("accuracy") {
        format!("{:.2}%", value * 100.0)
    } else {
        format!("{value:.4}")
    }
}

fn duration_text(seconds: f64) -> String {
    if seconds < 60.0 {
        format!("{seconds:.0}s")
    } else {
        format!("{}m{:02}s", (seconds / 60.0) as u64, seconds as u64 % 60)
    }
}

fn clip(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        text.to_owned()
    } else {
        let kept: String = text.chars().take(width.saturating_sub(1)).collect();
        format!("{kept}…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trial(number: u32, id: &str, state: pb::JobState, metric: Option<f64>) -> pb::Trial {
        pb::Trial {
            number,
            params: vec![pb::SweepParam {
                key: "train.batch_size".into(),
                value: (16 * number).to_string(),
            }],
            job: Some(pb::Job {
                id: id.into(),
                state: state as i32,
                epochs_total: 2,
                epochs_done: 2,
                ..pb::Job::default()
            }),
            metric,
        }
    }

    #[test]
    fn the_board_marks_the_best_trial_and_shows_what_each_varies() {
        let sweep = pb::Sweep {
            id: "sweep-x".into(),
            name: "digits".into(),
            metric: "val_accuracy".into(),
            best_job: "b".into(),
            trials: vec![
                trial(2, "b", pb::JobState::Succeeded, Some(0.9)),
                trial(1, "a", pb::JobState::Running, Some(0.5)),
            ],
            ..pb::Sweep::default()
        };
        let lines = table(&sweep);
        assert!(lines[0].contains("1/2 trials done"), "{}", lines[0]);
        assert!(lines[2].starts_with("*   2  batch_size=32"), "{}", lines[2]);
        assert!(lines[2].contains("90.00%"), "{}", lines[2]);
        assert!(lines[3].starts_with("    1  batch_size=16"), "{}", lines[3]);
    }
}
