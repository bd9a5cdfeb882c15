//! `sweep.svg`: the comparison a person looks at first. Top row: the sweep's metric against each
//! varied value (one panel per key, one dot per trial, the best ringed). Bottom: every trial's
//! validation curve (accuracy, or loss for a loss metric) over its epochs, numbered by trial.
//! Hand-written SVG, like the run's own plots: no dependency, any browser reads it.

use std::fmt::Write;

use crate::Trial;
use easel_events::EpochMetrics;

const PANEL_WIDTH: f64 = 300.0;
const PANEL_HEIGHT: f64 = 200.0;
const MARGIN: f64 = 50.0;
const PALETTE: [&str; 10] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf",
];

/// The plot of a sweep of `metric` over `trials` (their epochs make the bottom panel).
pub fn sweep_svg(metric: &str, trials: &[Trial]) -> String {
    let keys: Vec<&str> = trials
        .first()
        .map(|trial| trial.params.iter().map(|(key, _)| key.as_str()).collect())
        .unwrap_or_default();
    let columns = keys.len().max(1) as f64;
    let width = columns * (PANEL_WIDTH + MARGIN) + MARGIN;
    let curves_width = (width - 2.0 * MARGIN).max(PANEL_WIDTH);
    let height = 2.0 * (PANEL_HEIGHT + 2.0 * MARGIN);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" \
         font-family=\"sans-serif\" font-size=\"11\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    );
    let values: Vec<f64> = trials.iter().filter_map(|t| t.metric).collect();
    let (low, high) = span(values.iter().copied());
    for (column, key) in keys.iter().enumerate() {
        let left = MARGIN + column as f64 * (PANEL_WIDTH + MARGIN);
        metric_panel(&mut svg, metric, trials, key, left, (low, high));
    }
    let top = PANEL_HEIGHT + 2.0 * MARGIN + MARGIN;
    curves_panel(&mut svg, metric, trials, top, curves_width);
    svg.push_str("</svg>\n");
    svg
}

/// The smallest and largest of `values`, apart by at least a little.
fn span(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (low, high) = values
        .filter(|v| v.is_finite())
        .fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if low > high {
        (0.0, 1.0)
    } else if high - low < 1e-9 {
        (low - 0.5, high + 0.5)
    } else {
        (low, high)
    }
}

fn frame(svg: &mut String, left: f64, top: f64, width: f64, title: &str, low: f64, high: f64) {
    let _ = writeln!(
        svg,
        "<rect x=\"{left}\" y=\"{top}\" width=\"{width}\" height=\"{PANEL_HEIGHT}\" fill=\"none\" stroke=\"#888\"/>\n\
         <text x=\"{}\" y=\"{}\" text-anchor=\"middle\" font-size=\"13\">{}</text>\n\
         <text x=\"{}\" y=\"{}\" text-anchor=\"end\">{:.3}</text>\n\
         <text x=\"{}\" y=\"{}\" text-anchor=\"end\">{:.3}</text>",
        left + width / 2.0,
        top - 10.0,
        escape(title),
        left - 4.0,
        top + 10.0,
        high,
        left - 4.0,
        top + PANEL_HEIGHT,
        low
    );
}

fn metric_panel(
    svg: &mut String,
    metric: &str,
    trials: &[Trial],
    key: &str,
    left: f64,
    range: (f64, f64),
) {
    let top = MARGIN;
    frame(
        svg,
        left,
        top,
        PANEL_WIDTH,
        &format!("{metric} by {key}"),
        range.0,
        range.1,
    );
    // Each distinct value a place on the axis, in sorted order (numbers by size).
    let mut distinct: Vec<String> = trials
        .iter()
        .filter_map(|t| value_of(t, key).map(str::to_owned))
        .collect();
    distinct.sort_by(|a, b| match (a.parse::<f64>(), b.parse::<f64>()) {
        (Ok(x), Ok(y)) => x.total_cmp(&y),
        _ => a.cmp(b),
    });
    distinct.dedup();
    let step = PANEL_WIDTH / (distinct.len() as f64 + 1.0);
    for (index, value) in distinct.iter().enumerate() {
        let _ = writeln!(
            svg,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>",
            left + step * (index as f64 + 1.0),
            top + PANEL_HEIGHT + 14.0,
            escape(value.trim_matches('"'))
        );
    }
    for trial in trials {
        let (Some(metric), Some(value)) = (trial.metric, value_of(trial, key)) else {
            continue;
        };
        let index = distinct.iter().position(|v| v == value).unwrap_or(0);
        let x = left + step * (index as f64 + 1.0);
        let y = top + PANEL_HEIGHT * (1.0 - (metric - range.0) / (range.1 - range.0));
        let best = trial.best;
        let colour = PALETTE[(trial.number as usize).saturating_sub(1) % PALETTE.len()];
        let _ = writeln!(
            svg,
            "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"4\" fill=\"{colour}\"{}><title>trial {}: {metric:.4}</title></circle>",
            if best {
                " stroke=\"black\" stroke-width=\"2\""
            } else {
                ""
            },
            trial.number
        );
    }
}

/// `trial`'s value of the varied `key`.
fn value_of<'t>(trial: &'t Trial, key: &str) -> Option<&'t str> {
    trial
        .params
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, value)| value.as_str())
}

fn curves_panel(svg: &mut String, metric: &str, trials: &[Trial], top: f64, width: f64) {
    let loss = metric == "val_loss";
    let curves: Vec<(u32, &[EpochMetrics])> = trials
        .iter()
        .map(|trial| (trial.number, trial.history.as_slice()))
        .collect();
    let value = |m: &EpochMetrics| {
        if loss {
            m.validation_loss
        } else {
            m.validation_accuracy
        }
    };
    let (low, high) = span(curves.iter().flat_map(|(_, c)| c.iter().map(value)));
    let last_epoch = curves
        .iter()
        .flat_map(|(_, c)| c.iter().map(|m| m.epoch))
        .max()
        .unwrap_or(1)
        .max(2);
    let title = if loss {
        "validation loss by epoch, every trial"
    } else {
        "validation accuracy by epoch, every trial"
    };
    frame(svg, MARGIN, top, width, title, low, high);
    let x = |epoch: u32| MARGIN + width * f64::from(epoch - 1) / f64::from(last_epoch - 1);
    let y = |v: f64| top + PANEL_HEIGHT * (1.0 - (v - low) / (high - low));
    for (number, curve) in &curves {
        let points: Vec<String> = curve
            .iter()
            .filter(|m| value(m).is_finite())
            .map(|m| format!("{:.1},{:.1}", x(m.epoch.max(1)), y(value(m))))
            .collect();
        let Some(end) = points.last() else { continue };
        let colour = PALETTE[(*number as usize).saturating_sub(1) % PALETTE.len()];
        let _ = writeln!(
            svg,
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"1.5\" points=\"{}\"/>\n\
             <text x=\"{}\" y=\"{}\" fill=\"{colour}\">{number}</text>",
            points.join(" "),
            end.split(',')
                .next()
                .unwrap_or("0")
                .parse::<f64>()
                .unwrap_or(0.0)
                + 4.0,
            end.split(',').nth(1).unwrap_or("0")
        );
    }
    let _ = writeln!(
        svg,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">epoch (1 to {last_epoch})</text>",
        MARGIN + width / 2.0,
        top + PANEL_HEIGHT + 16.0
    );
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
