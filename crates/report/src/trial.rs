//! A sweep's trial as its page and plot show it.

use easel_events::EpochMetrics;

/// One trial of a sweep, as the page shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Trial {
    /// 1-based, in the order the sweep expanded.
    pub number: u32,
    /// The varied keys and their values here, as the sweep file wrote them.
    pub params: Vec<(String, String)>,
    /// The sweep's metric for this trial, when it has one.
    pub metric: Option<f64>,
    /// The sweep's best trial.
    pub best: bool,
    /// Its job's state (`succeeded`, `failed`, ...).
    pub state: String,
    pub epochs: u32,
    pub seconds: Option<f64>,
    pub history: Vec<EpochMetrics>,
    /// The trial's `report.html`, relative to the sweep page, when it was fetched.
    pub report: Option<String>,
}
