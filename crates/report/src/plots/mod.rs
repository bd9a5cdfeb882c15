//! Hand-written SVG plots: learning curves, the learning rate and the confusion matrix. Plain
//! text, no dependency, readable in any browser; the run directory keeps them as files and the
//! pages carry them inline.

mod sweep;

pub use sweep::sweep_svg;

use easel_events::EpochMetrics;
use std::fmt::Write;

const PANEL_WIDTH: f64 = 420.0;
const PANEL_HEIGHT: f64 = 280.0;
const MARGIN: f64 = 50.0;
const TRAIN_COLOUR: &str = "#1f77b4";
const VALIDATION_COLOUR: &str = "#ff7f0e";

/// Loss and accuracy per epoch, train and validation, side by side.
pub fn curves_svg(history: &[EpochMetrics]) -> String {
    let width = 2.0 * (PANEL_WIDTH + MARGIN) + MARGIN;
    let height = PANEL_HEIGHT + 2.0 * MARGIN;
    let mut svg = header(width, height);
    let epochs: Vec<f64> = history.iter().map(|m| f64::from(m.epoch)).collect();
    let series = |f: fn(&EpochMetrics) -> f64| history.iter().map(f).collect::<Vec<f64>>();
    let (train_loss, validation_loss) = (series(|m| m.train_loss), series(|m| m.validation_loss));
    let max_loss = train_loss
        .iter()
        .chain(&validation_loss)
        .cloned()
        .filter(|v| v.is_finite())
        .fold(0.0, f64::max);
    panel(
        &mut svg,
        MARGIN,
        "loss",
        &epochs,
        &[
            (&train_loss, TRAIN_COLOUR),
            (&validation_loss, VALIDATION_COLOUR),
        ],
        max_loss.max(1e-6),
        three_decimals,
    );
    let (train_accuracy, validation_accuracy) = (
        series(|m| m.train_accuracy),
        series(|m| m.validation_accuracy),
    );
    panel(
        &mut svg,
        2.0 * MARGIN + PANEL_WIDTH,
        "accuracy",
        &epochs,
        &[
            (&train_accuracy, TRAIN_COLOUR),
            (&validation_accuracy, VALIDATION_COLOUR),
        ],
        1.0,
        three_decimals,
    );
    let legend_y = height - 12.0;
    let _ = write!(
        svg,
        r#"<text x="{MARGIN}" y="{legend_y}" fill="{TRAIN_COLOUR}">— train</text><text x="{}" y="{legend_y}" fill="{VALIDATION_COLOUR}">— validation</text>"#,
        MARGIN + 80.0
    );
    svg.push_str("</svg>\n");
    svg
}

/// The learning rate of each epoch (warm-up, decay and plateau cuts show here).
pub fn learning_rate_svg(history: &[EpochMetrics]) -> String {
    let width = PANEL_WIDTH + 2.0 * MARGIN + 20.0;
    let height = PANEL_HEIGHT + 2.0 * MARGIN;
    let mut svg = header(width, height);
    let epochs: Vec<f64> = history.iter().map(|m| f64::from(m.epoch)).collect();
    let rates: Vec<f64> = history.iter().map(|m| m.learning_rate).collect();
    let highest = rates
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .fold(0.0, f64::max);
    panel(
        &mut svg,
        MARGIN + 20.0,
        "learning rate",
        &epochs,
        &[(&rates, TRAIN_COLOUR)],
        highest.max(1e-12),
        |value| format!("{value:.1e}"),
    );
    svg.push_str("</svg>\n");
    svg
}

fn three_decimals(value: f64) -> String {
    format!("{value:.3}")
}

fn panel(
    svg: &mut String,
    left: f64,
    title: &str,
    epochs: &[f64],
    lines: &[(&Vec<f64>, &str)],
    y_max: f64,
    label: fn(f64) -> String,
) {
    let top = MARGIN;
    let bottom = top + PANEL_HEIGHT;
    let x_max = epochs.last().copied().unwrap_or(1.0).max(1.0);
    let x_of = |epoch: f64| {
        left + if x_max > 1.0 {
            (epoch - 1.0) / (x_max - 1.0) * PANEL_WIDTH
        } else {
            PANEL_WIDTH / 2.0
        }
    };
    let y_of = |value: f64| bottom - (value / y_max).clamp(0.0, 1.0) * PANEL_HEIGHT;
    let _ = write!(
        svg,
        r##"<rect x="{left}" y="{top}" width="{PANEL_WIDTH}" height="{PANEL_HEIGHT}" fill="none" stroke="#999"/><text x="{}" y="{}" text-anchor="middle" font-weight="bold">{title}</text>"##,
        left + PANEL_WIDTH / 2.0,
        top - 12.0
    );
    for tick in 0..=4 {
        let value = y_max * f64::from(tick) / 4.0;
        let _ = write!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="end" font-size="11">{}</text>"#,
            left - 4.0,
            y_of(value) + 4.0,
            label(value)
        );
    }
    for epoch in epochs {
        let _ = write!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="middle" font-size="11">{epoch}</text>"#,
            x_of(*epoch),
            bottom + 15.0
        );
    }
    for (values, colour) in lines {
        let points: Vec<String> = epochs
            .iter()
            .zip(values.iter())
            .filter(|(_, v)| v.is_finite())
            .map(|(e, v)| format!("{:.1},{:.1}", x_of(*e), y_of(*v)))
            .collect();
        let _ = write!(
            svg,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{}"/>"#,
            points.join(" ")
        );
        for point in &points {
            let (x, y) = point.split_once(',').unwrap_or(("0", "0"));
            let _ = write!(svg, r#"<circle cx="{x}" cy="{y}" r="3" fill="{colour}"/>"#);
        }
    }
}

/// The confusion matrix (`confusion[true][predicted]`), cells shaded by their share of the row.
pub fn confusion_svg(classes: &[String], confusion: &[Vec<u64>]) -> String {
    let n = classes.len().max(1) as f64;
    let cell = (480.0 / n).clamp(18.0, 60.0);
    let label_space = 140.0;
    let size = label_space + cell * n + MARGIN;
    let mut svg = header(size, size + 20.0);
    let _ = write!(
        svg,
        r#"<text x="{}" y="20" text-anchor="middle" font-weight="bold">confusion matrix (rows: true class, columns: predicted)</text>"#,
        size / 2.0
    );
    for (row, counts) in confusion.iter().enumerate() {
        let total: u64 = counts.iter().sum();
        for (column, &count) in counts.iter().enumerate() {
            let share = if total == 0 {
                0.0
            } else {
                count as f64 / total as f64
            };
            let shade = (255.0 * (1.0 - share)).round() as u8;
            let (x, y) = (
                label_space + column as f64 * cell,
                label_space + row as f64 * cell,
            );
            let text_colour = if share > 0.5 { "#fff" } else { "#000" };
            let _ = write!(
                svg,
                r##"<rect x="{x}" y="{y}" width="{cell}" height="{cell}" fill="rgb({shade},{shade},255)" stroke="#ccc"/><text x="{}" y="{}" text-anchor="middle" font-size="{}" fill="{text_colour}">{count}</text>"##,
                x + cell / 2.0,
                y + cell / 2.0 + 4.0,
                (cell / 3.0).min(13.0)
            );
        }
    }
    for (index, class) in classes.iter().enumerate() {
        let name = escape(class);
        let middle = label_space + (index as f64 + 0.5) * cell;
        let _ = write!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="end" font-size="11">{name}</text>"#,
            label_space - 6.0,
            middle + 4.0
        );
        let _ = write!(
            svg,
            r#"<text x="{middle}" y="{}" text-anchor="start" font-size="11" transform="rotate(-60 {middle} {})">{name}</text>"#,
            label_space - 6.0,
            label_space - 6.0
        );
    }
    svg.push_str("</svg>\n");
    svg
}

fn header(width: f64, height: f64) -> String {
    format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="13"><rect width="100%" height="100%" fill="white"/>"#
    )
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confusion_has_a_cell_per_pair_and_escapes_names() {
        let svg = confusion_svg(&["a<b".into(), "c".into()], &[vec![3, 1], vec![0, 4]]);
        assert_eq!(svg.matches("<rect x=").count(), 4);
        assert!(svg.contains("a&lt;b"));
        assert!(svg.ends_with("</svg>\n"));
    }
}
