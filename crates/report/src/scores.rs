//! Per-class precision, recall, F1 and support from a confusion matrix.

/// One class's scores; a score with nothing to divide by (no image of the class, or none
/// predicted as it) is `None`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClassScores {
    pub precision: Option<f64>,
    pub recall: Option<f64>,
    pub f1: Option<f64>,
    /// Images of the class.
    pub support: u64,
}

/// Scores of every class of `confusion[true][predicted]`.
pub fn class_scores(confusion: &[Vec<u64>]) -> Vec<ClassScores> {
    let ratio = |part: u64, whole: u64| (whole > 0).then(|| part as f64 / whole as f64);
    (0..confusion.len())
        .map(|class| {
            let correct = confusion[class].get(class).copied().unwrap_or(0);
            let support: u64 = confusion[class].iter().sum();
            let predicted: u64 = confusion
                .iter()
                .map(|row| row.get(class).copied().unwrap_or(0))
                .sum();
            let precision = ratio(correct, predicted);
            let recall = ratio(correct, support);
            // 2·tp / (support + predicted): 0 for a class with images that is never predicted.
            let f1 = ratio(2 * correct, support + predicted);
            ClassScores {
                precision,
                recall,
                f1,
                support,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_follow_the_rows_and_columns_of_the_confusion_matrix() {
        // true a: 8 right, 2 called b; true b: 1 called a, 4 right; true c: never seen, never said.
        let scores = class_scores(&[vec![8, 2, 0], vec![1, 4, 0], vec![0, 0, 0]]);
        assert_eq!(scores[0].support, 10);
        assert_eq!(scores[0].recall, Some(0.8));
        assert_eq!(scores[0].precision, Some(8.0 / 9.0));
        let f1 = scores[0].f1.unwrap();
        assert!((f1 - 2.0 * 0.8 * (8.0 / 9.0) / (0.8 + 8.0 / 9.0)).abs() < 1e-12);
        assert_eq!(scores[1].precision, Some(4.0 / 6.0));
        assert_eq!(scores[2].support, 0);
        assert_eq!(scores[2].precision, None);
        assert_eq!(scores[2].f1, None);
        // A class with images that is never predicted: recall and F1 are 0, precision unknown.
        let never_said = class_scores(&[vec![3, 0], vec![2, 0]]);
        assert_eq!(never_said[1].recall, Some(0.0));
        assert_eq!(never_said[1].precision, None);
        assert_eq!(never_said[1].f1, Some(0.0));
    }
}
