//! `sweep.html`: a sweep's trials side by side, best first: the varied values, the metric, a small
//! validation curve per trial, the metric against each varied value, and a link to each trial's
//! own report.

use crate::Trial;
use crate::duration;
use crate::plots::sweep_svg;
use crate::style::page;
use easel_events::EpochMetrics;
use maud::{Markup, PreEscaped, html};
use std::fmt::Write;

/// Everything `sweep.html` shows; `trials` best first.
pub struct SweepPage<'a> {
    pub id: &'a str,
    pub name: &'a str,
    /// `val_accuracy`, `val_loss` or `test_accuracy`.
    pub metric: &'a str,
    pub trials: &'a [Trial],
}

impl SweepPage<'_> {
    pub fn render(&self) -> String {
        let keys: Vec<&str> = self
            .trials
            .first()
            .map(|trial| trial.params.iter().map(|(key, _)| key.as_str()).collect())
            .unwrap_or_default();
        let title = format!("{} · Easel sweep", self.name);
        let body = html! {
            h1 { (self.name) }
            p.muted {
                "sweep " code { (self.id) } " · " (self.trials.len()) " trials · sorted by "
                (self.metric) ", best first"
            }
            h2 { "Trials" }
            div.scroll {
                table #trials {
                    tr {
                        th { "trial" }
                        @for key in &keys { th.name { (key) } }
                        th { (self.metric) } th { "epochs" } th { "time" } th.name { "state" }
                        th.name { "validation curve" } th.name { "report" }
                    }
                    @for trial in self.trials { (trial_row(trial, &keys, self.metric)) }
                }
            }
            h2 { "The metric against each varied value" }
            div.plots { (PreEscaped(sweep_svg(self.metric, self.trials))) }
        };
        page(&title, body)
    }
}

fn trial_row(trial: &Trial, keys: &[&str], metric: &str) -> Markup {
    let value = |key: &str| {
        trial
            .params
            .iter()
            .find(|(k, _)| k == key)
            .map_or(String::new(), |(_, v)| v.trim_matches('"').to_owned())
    };
    html! {
        tr.trial {
            td { (trial.number) @if trial.best { " ★" } }
            @for key in keys { td.name { (value(key)) } }
            td { (trial.metric.map_or("—".to_owned(), |m| format!("{m:.4}"))) }
            td { (trial.epochs) }
            td { (trial.seconds.map_or("—".to_owned(), duration)) }
            td.name { (trial.state) }
            td.name { (PreEscaped(sparkline(&trial.history, metric == "val_loss"))) }
            td.name {
                @match &trial.report {
                    Some(href) => a href=(href) { "report" },
                    None => span.muted { "not fetched" },
                }
            }
        }
    }
}

/// A 120x28 line of the validation accuracy (or loss) over the epochs.
fn sparkline(history: &[EpochMetrics], loss: bool) -> String {
    let values: Vec<f64> = history
        .iter()
        .map(|m| {
            if loss {
                m.validation_loss
            } else {
                m.validation_accuracy
            }
        })
        .filter(|v| v.is_finite())
        .collect();
    let (width, height) = (120.0, 28.0);
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="sparkline" width="{width}" height="{height}" viewBox="0 0 {width} {height}">"#
    );
    if !values.is_empty() {
        let low = values.iter().copied().fold(f64::MAX, f64::min);
        let high = values.iter().copied().fold(f64::MIN, f64::max);
        let spread = (high - low).max(1e-9);
        let step = width / (values.len().max(2) - 1) as f64;
        let points: Vec<String> = values
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let y = height - 3.0 - (v - low) / spread * (height - 6.0);
                format!("{:.1},{y:.1}", i as f64 * step)
            })
            .collect();
        let _ = write!(
            svg,
            r#"<polyline fill="none" stroke="currentColor" stroke-width="1.5" points="{}"/>"#,
            points.join(" ")
        );
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    fn epoch(epoch: u32, accuracy: f64) -> EpochMetrics {
        EpochMetrics {
            epoch,
            train_loss: 1.0,
            train_accuracy: accuracy,
            validation_loss: 1.0,
            validation_accuracy: accuracy,
            per_class_accuracy: vec![],
            confusion: vec![],
            images_per_second: 1.0,
            learning_rate: 0.01,
            seconds: 1.0,
        }
    }

    #[test]
    fn the_page_has_a_row_per_trial_with_its_values_link_and_curve() {
        let trials = vec![
            Trial {
                number: 2,
                params: vec![("train.learning_rate".into(), "0.01".into())],
                metric: Some(0.91),
                best: true,
                state: "succeeded".into(),
                epochs: 2,
                seconds: Some(12.0),
                history: vec![epoch(1, 0.5), epoch(2, 0.91)],
                report: Some("trial-02-j2/report.html".into()),
            },
            Trial {
                number: 1,
                params: vec![("train.learning_rate".into(), "0.1".into())],
                metric: None,
                best: false,
                state: "failed".into(),
                epochs: 0,
                seconds: None,
                history: vec![],
                report: None,
            },
        ];
        let html = SweepPage {
            id: "s1",
            name: "lr <search>",
            metric: "val_accuracy",
            trials: &trials,
        }
        .render();
        assert_eq!(html.matches(r#"<tr class="trial">"#).count(), 2);
        assert!(html.contains(r#"href="trial-02-j2/report.html""#));
        assert!(html.contains("lr &lt;search&gt;"), "names are escaped");
        assert!(html.contains("0.9100") && html.contains("not fetched"));
        assert_eq!(html.matches(r#"class="sparkline""#).count(), 2);
        assert!(html.contains(crate::CONTENT_SECURITY_POLICY));
    }
}
