//! `report.html`: one run, for a person. The headline figure first (held-out test accuracy when
//! the run kept a test split, else validation, and the page says which), then the curves, the
//! confusion heat map, per-class scores, the images the model got wrong, the data, the spec and
//! the environment.

use crate::plots::{curves_svg, learning_rate_svg};
use crate::scores::class_scores;
use crate::style::page;
use crate::{MAX_THUMBNAILS, duration, jpeg_data_uri, percent};
use easel_events::{EpochMetrics, RunReport};
use maud::{Markup, PreEscaped, html};

/// Images of one class in each split.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClassCounts {
    pub train: u64,
    pub validation: u64,
    pub test: u64,
}

/// An image the model got wrong.
#[derive(Debug, Clone, PartialEq)]
pub struct Mistake {
    /// The split it is from: `validation` or `test`.
    pub split: &'static str,
    /// Its path in the dataset.
    pub path: String,
    pub true_class: usize,
    /// The most likely classes with their probabilities, most likely first: the first is the
    /// (wrong) prediction.
    pub top: Vec<(usize, f64)>,
    /// A small JPEG of the image as the model saw it (resized).
    pub thumbnail_jpeg: Vec<u8>,
}

impl Mistake {
    fn predicted(&self) -> usize {
        self.top.first().map_or(usize::MAX, |&(class, _)| class)
    }

    fn confidence(&self) -> f64 {
        self.top.first().map_or(0.0, |&(_, p)| p)
    }
}

/// Everything `report.html` shows.
pub struct RunPage<'a> {
    pub report: &'a RunReport,
    pub history: &'a [EpochMetrics],
    /// The confusion matrix shown (`[true][predicted]`), and whose it is ("the 270 test images,
    /// best weights").
    pub confusion: &'a [Vec<u64>],
    pub confusion_of: &'a str,
    /// Per class, in the run's class order.
    pub class_counts: &'a [ClassCounts],
    /// What the dataset's scan left out: (why, how many files), the reasons with any.
    pub skipped: &'a [(&'a str, u64)],
    /// The first few of those files: (path, why).
    pub left_out_files: &'a [(String, String)],
    /// What the machine costs an hour (any currency), when known: the page shows the training
    /// time's cost.
    pub price_per_hour: Option<f64>,
    /// The run's resolved spec (`spec.toml`).
    pub spec_toml: &'a str,
    /// (what, value): Easel's version, libtorch's, the device.
    pub environment: &'a [(&'a str, String)],
    /// The mistakes to show as thumbnails (the page shows at most [`MAX_THUMBNAILS`], the most
    /// confident first).
    pub mistakes: &'a [Mistake],
    /// How many images were examined for mistakes.
    pub images_examined: usize,
    /// Every mistake's (true, predicted) classes, the ones not shown too.
    pub all_mistakes: &'a [(usize, usize)],
}

impl RunPage<'_> {
    pub fn render(&self) -> String {
        let report = self.report;
        let title = format!("{} · Easel run report", report.name);
        let body = html! {
            (self.headline())
            h2 { "Learning curves" }
            div.plots {
                (PreEscaped(curves_svg(self.history)))
                (PreEscaped(learning_rate_svg(self.history)))
            }
            (self.confusion_table())
            (self.scores_table())
            (self.mistakes_section())
            (self.data_section())
            h2 { "Spec" }
            pre { (self.spec_toml) }
            h2 { "Environment" }
            dl {
                @for (what, value) in self.environment {
                    dt { (what) } dd { (value) }
                }
                dt { "dataset digest" } dd { code { (report.dataset_digest) } }
            }
        };
        page(&title, body)
    }

    fn headline(&self) -> Markup {
        let report = self.report;
        let (accuracy, which) = match report.test_accuracy {
            Some(test) => (test, "test accuracy (held out, best weights)".to_string()),
            None => (
                report.best_validation_accuracy,
                format!(
                    "validation accuracy (best epoch, {}; no test split)",
                    report.best_epoch
                ),
            ),
        };
        let stopped = if report.stopped_early {
            " (stopped early)"
        } else {
            ""
        };
        html! {
            h1 { (report.name) }
            p.muted { (report.classes.len()) " classes · trained on " (report.device) }
            div.headline {
                div.figure #headline {
                    div.value { (percent(Some(accuracy))) }
                    div.label { (which) }
                }
                @if report.test_accuracy.is_some() {
                    div.figure {
                        div.value { (percent(Some(report.best_validation_accuracy))) }
                        div.label { "validation accuracy, best epoch " (report.best_epoch) }
                    }
                }
                div.figure {
                    div.value { (report.epochs_run) }
                    div.label { "epochs" (stopped) }
                }
                div.figure {
                    div.value { (duration(report.seconds)) }
                    div.label { "training time" }
                }
                @if let Some(price) = self.price_per_hour {
                    div.figure #cost {
                        div.value { (format!("{:.2}", price * report.seconds.max(0.0) / 3600.0)) }
                        div.label { "cost of that time at " (format!("{price:.2}")) " an hour" }
                    }
                }
                div.figure {
                    div.value { (self.all_mistakes.len()) }
                    div.label { "wrong of " (self.images_examined) " held-out images" }
                }
            }
        }
    }

    fn confusion_table(&self) -> Markup {
        let classes = &self.report.classes;
        html! {
            h2 { "Confusion matrix" }
            p.muted { "Rows: true class. Columns: predicted. Shade: share of the row. Counted on " (self.confusion_of) "." }
            div.scroll {
                table.heat #confusion {
                    tr {
                        th.name { "true \\ predicted" }
                        @for class in classes { th { (class) } }
                    }
                    @for (row, counts) in self.confusion.iter().enumerate() {
                        @let total: u64 = counts.iter().sum();
                        tr {
                            th.name { (classes.get(row).map_or("?", String::as_str)) }
                            @for (column, count) in counts.iter().enumerate() {
                                @let share = if total == 0 { 0.0 } else { *count as f64 / total as f64 };
                                @let ink = if share > 0.55 { "color:#fff;" } else { "" };
                                td.diagonal[row == column]
                                    style=(format!("background:rgba(var(--cell),{share:.3});{ink}"))
                                    title=(format!("{} of {total}", count)) { (count) }
                            }
                        }
                    }
                }
            }
        }
    }

    fn scores_table(&self) -> Markup {
        let scores = class_scores(self.confusion);
        html! {
            h2 { "Per class" }
            div.scroll {
                table #scores {
                    tr { th.name { "class" } th { "precision" } th { "recall" } th { "F1" } th { "support" } }
                    @for (class, score) in self.report.classes.iter().zip(&scores) {
                        tr {
                            td.name { (class) }
                            td { (percent(score.precision)) }
                            td { (percent(score.recall)) }
                            td { (percent(score.f1)) }
                            td { (score.support) }
                        }
                    }
                }
            }
        }
    }

    fn mistakes_section(&self) -> Markup {
        let classes = &self.report.classes;
        let name = |class: usize| classes.get(class).map_or("?", String::as_str);
        let mut shown: Vec<&Mistake> = self.mistakes.iter().collect();
        shown.sort_by(|a, b| b.confidence().total_cmp(&a.confidence()));
        shown.truncate(MAX_THUMBNAILS);
        // Groups by (true, predicted): the most frequent confusion first.
        let mut groups: Vec<((usize, usize), Vec<&Mistake>)> = Vec::new();
        for mistake in shown.iter().copied() {
            let key = (mistake.true_class, mistake.predicted());
            match groups.iter_mut().find(|(k, _)| *k == key) {
                Some((_, members)) => members.push(mistake),
                None => groups.push((key, vec![mistake])),
            }
        }
        let total_of =
            |key: (usize, usize)| self.all_mistakes.iter().filter(|&&k| k == key).count();
        groups.sort_by_key(|(key, members)| std::cmp::Reverse((total_of(*key), members.len())));
        html! {
            h2 #mistakes { "Mistakes" }
            @if self.all_mistakes.is_empty() {
                p { "No mistakes among the " (self.images_examined) " held-out images." }
            } @else {
                p.muted {
                    (self.all_mistakes.len()) " of " (self.images_examined) " held-out images are wrong"
                    @if shown.len() < self.all_mistakes.len() {
                        "; the " (shown.len()) " most confident mistakes are shown"
                    }
                    ". Grouped by true → predicted class, most confident first."
                }
                div.groups {
                    @for ((truth, predicted), members) in &groups {
                        @let total = total_of((*truth, *predicted)).max(members.len());
                        h3 {
                            (name(*truth)) " → " (name(*predicted)) " (" (total)
                            @if members.len() < total { ", " (members.len()) " shown" }
                            ")"
                        }
                        div.grid {
                            @for mistake in members {
                                figure.thumb {
                                    @if !mistake.thumbnail_jpeg.is_empty() {
                                        img.mistake src=(jpeg_data_uri(&mistake.thumbnail_jpeg))
                                            alt=(format!("{} (true {}, predicted {})", mistake.path, name(mistake.true_class), name(mistake.predicted())));
                                    }
                                    figcaption {
                                        code { (mistake.path) }
                                        span.muted { " · " (mistake.split) }
                                        ol {
                                            @for (class, probability) in mistake.top.iter().take(3) {
                                                li.wrong[*class == mistake.predicted()]
                                                    .truth[*class == mistake.true_class] {
                                                    (name(*class)) " " (format!("{:.1} %", 100.0 * probability))
                                                }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    fn data_section(&self) -> Markup {
        let total = |pick: fn(&ClassCounts) -> u64| self.class_counts.iter().map(pick).sum::<u64>();
        html! {
            h2 { "Data" }
            p.muted #skipped {
                @if self.skipped.is_empty() {
                    "The dataset's scan left no file out."
                } @else {
                    "Left out by the dataset's scan: "
                    @for (index, (why, count)) in self.skipped.iter().enumerate() {
                        @if index > 0 { ", " }
                        (count) " " (why)
                    }
                    " (`client validate` names them all)."
                }
            }
            @if !self.left_out_files.is_empty() {
                details #left-out {
                    summary { "Which files (the first of each reason)" }
                    ul {
                        @for (path, why) in self.left_out_files {
                            li { code { (path) } " — " (why) }
                        }
                    }
                }
            }
            div.scroll {
                table #balance {
                    tr { th.name { "class" } th { "train" } th { "validation" } th { "test" } }
                    @for (class, counts) in self.report.classes.iter().zip(self.class_counts) {
                        tr {
                            td.name { (class) }
                            td { (counts.train) } td { (counts.validation) } td { (counts.test) }
                        }
                    }
                    tr {
                        th.name { "all" }
                        th { (total(|c| c.train)) } th { (total(|c| c.validation)) } th { (total(|c| c.test)) }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(seconds: f64) -> RunReport {
        let epoch = EpochMetrics {
            epoch: 1,
            train_loss: 0.5,
            train_accuracy: 0.8,
            validation_loss: 0.6,
            validation_accuracy: 0.75,
            per_class_accuracy: vec![0.5, 1.0],
            confusion: vec![vec![1, 1], vec![0, 2]],
            images_per_second: 10.0,
            learning_rate: 0.01,
            seconds,
        };
        RunReport {
            name: "cats <and> dogs".into(),
            classes: vec!["cat".into(), "dog".into()],
            device: "cuda:0".into(),
            epochs_run: 1,
            best_epoch: 1,
            best_validation_accuracy: 0.75,
            final_metrics: epoch,
            test_accuracy: None,
            test_loss: None,
            stopped_early: false,
            seconds,
            dataset_digest: "abc".into(),
        }
    }

    fn mistake(path: &str, confidence: f64) -> Mistake {
        Mistake {
            split: "validation",
            path: path.into(),
            true_class: 0,
            top: vec![(1, confidence), (0, 1.0 - confidence)],
            thumbnail_jpeg: vec![0xff, 0xd8],
        }
    }

    fn page(
        report: &RunReport,
        price: Option<f64>,
        shown: &[Mistake],
        all: &[(usize, usize)],
    ) -> String {
        page_left_out(report, price, shown, all, &[], &[])
    }

    fn page_left_out(
        report: &RunReport,
        price: Option<f64>,
        shown: &[Mistake],
        all: &[(usize, usize)],
        skipped: &[(&str, u64)],
        left_out_files: &[(String, String)],
    ) -> String {
        let history = [report.final_metrics.clone()];
        RunPage {
            report,
            history: &history,
            confusion: &report.final_metrics.confusion,
            confusion_of: "the 4 validation images",
            class_counts: &[ClassCounts {
                train: 8,
                validation: 2,
                test: 0,
            }; 2],
            skipped,
            left_out_files,
            price_per_hour: price,
            spec_toml: "[data]\npath = \"<pets>\"\n",
            environment: &[("Easel", "0.1.0".to_string())],
            mistakes: shown,
            images_examined: 4,
            all_mistakes: all,
        }
        .render()
    }

    #[test]
    fn the_page_says_which_accuracy_it_leads_with_and_what_the_time_cost() {
        let report = report(7200.0);
        let html = page(&report, Some(2.5), &[], &[]);
        assert!(html.contains("validation accuracy (best epoch, 1; no test split)"));
        assert!(
            html.contains(r#"id="cost""#) && html.contains("5.00"),
            "2 h at 2.50"
        );
        assert!(html.contains("cats &lt;and&gt; dogs") && html.contains("&lt;pets&gt;"));
        assert!(html.contains("No mistakes among the 4 held-out images."));
        assert!(!page(&report, None, &[], &[]).contains(r#"id="cost""#));
    }

    #[test]
    fn mistakes_are_grouped_most_confident_first_and_a_cut_group_says_so() {
        let report = report(10.0);
        let shown = [mistake("cat/b.png", 0.6), mistake("cat/a.png", 0.9)];
        // Three cat -> dog mistakes in all, two of them shown.
        let html = page(&report, None, &shown, &[(0, 1); 3]);
        assert_eq!(html.matches(r#"class="mistake""#).count(), 2);
        assert!(html.contains("cat → dog (3, 2 shown)"), "{html}");
        assert!(html.find("cat/a.png").unwrap() < html.find("cat/b.png").unwrap());
        assert!(html.contains("3 of 4 held-out images are wrong"));
    }

    #[test]
    fn the_files_the_scan_left_out_are_counted_and_named_escaped() {
        let report = report(10.0);
        let named = [("cat/<b>notes.txt".to_string(), "not an image".to_string())];
        let html = page_left_out(&report, None, &[], &[], &[("not images", 12)], &named);
        assert!(html.contains("Left out by the dataset's scan: 12 not images"));
        assert!(
            html.contains("<code>cat/&lt;b&gt;notes.txt</code> — not an image"),
            "{html}"
        );
        let none = page(&report, None, &[], &[]);
        assert!(
            none.contains("The dataset's scan left no file out.") && !none.contains("left-out")
        );
    }
}
