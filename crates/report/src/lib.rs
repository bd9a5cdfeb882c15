//! What a person looks at after a run or a sweep: one self-contained HTML page each (styles,
//! plots and thumbnails inline; no script, no font or image from anywhere else, and a content
//! security policy that forbids any), and the SVG plots the pages and the run directory share.
//!
//! - [`RunPage`]: `report.html`, the run's headline, curves, confusion heat map, per-class
//!   scores, its mistakes as thumbnails, its data, spec and environment.
//! - [`SweepPage`]: `sweep.html`, the trials side by side.
//! - [`plots`]: the SVG plots (learning curves, learning rate, confusion matrix).

pub mod plots;
mod run_page;
mod scores;
mod style;
mod sweep_page;
mod trial;

pub use run_page::{ClassCounts, Mistake, RunPage};
pub use scores::{ClassScores, class_scores};
pub use sweep_page::SweepPage;
pub use trial::Trial;

/// The page's content security policy: nothing may be fetched, from anywhere. Images are
/// `data:` URIs, styles are inline, and there is no script.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'";

/// Thumbnails a run page shows at most: a large dataset's mistakes are cut to the most confident
/// ones, and the page says so.
pub const MAX_THUMBNAILS: usize = 200;

/// `data:` URI of a JPEG.
fn jpeg_data_uri(jpeg: &[u8]) -> String {
    use base64::Engine;
    format!(
        "data:image/jpeg;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(jpeg)
    )
}

/// A rate as a percentage with one decimal, or a dash where there is none.
fn percent(value: Option<f64>) -> String {
    match value {
        Some(v) if v.is_finite() => format!("{:.1} %", 100.0 * v),
        _ => "—".to_string(),
    }
}

/// Seconds as "1 h 02 min", "3 min 05 s" or "12.3 s".
fn duration(seconds: f64) -> String {
    if !seconds.is_finite() || seconds < 0.0 {
        return "—".to_string();
    }
    let whole = seconds.round() as u64;
    match whole {
        0..60 => format!("{seconds:.1} s"),
        60..3600 => format!("{} min {:02} s", whole / 60, whole % 60),
        _ => format!("{} h {:02} min", whole / 3600, (whole % 3600) / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_percentages_read_as_a_person_writes_them() {
        assert_eq!(duration(12.34), "12.3 s");
        assert_eq!(duration(185.0), "3 min 05 s");
        assert_eq!(duration(3720.0), "1 h 02 min");
        assert_eq!(duration(f64::NAN), "—");
        assert_eq!(percent(Some(0.9234)), "92.3 %");
        assert_eq!(percent(None), "—");
        assert_eq!(percent(Some(f64::NAN)), "—");
    }
}
