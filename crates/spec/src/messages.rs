//! Turns serde's messages ("invalid type: string \"ten\", expected i64") into ones a person
//! editing a TOML file can act on ("expected an integer, found string \"ten\""), and suggests the
//! closest valid name for a misspelt key or value.

/// Rewrites a deserialization message; unknown forms pass through unchanged.
pub(crate) fn humanize(message: &str) -> String {
    if let Some(rest) = message.strip_prefix("unknown field ") {
        return unknown_name("key", rest);
    }
    if let Some(rest) = message.strip_prefix("unknown variant ") {
        return unknown_name("value", rest);
    }
    if let Some(rest) = message.strip_prefix("invalid type: ")
        && let Some((found, expected)) = rest.split_once(", expected ")
    {
        return format!("expected {}, found {}", describe_expected(expected), found);
    }
    if let Some(rest) = message.strip_prefix("invalid value: ")
        && let Some((found, expected)) = rest.split_once(", expected ")
    {
        return format!(
            "expected {}, found {}",
            describe_expected(expected),
            strip_kind(found)
        );
    }
    if let Some(rest) = message.strip_prefix("invalid length ")
        && let Some((found, expected)) = rest.split_once(", expected ")
    {
        return format!("expected {expected}, found an array of {found}");
    }
    if message == "wanted string or table" {
        // An enum (a name from a fixed list) was given a number, array or boolean.
        return "expected a name in quotes (a string)".to_string();
    }
    if let Some(field) = message.strip_prefix("missing field ") {
        return format!("missing required key {field}");
    }
    message.to_string()
}

/// `unknown field `epoch`, expected one of `epochs`, `batch_size``.
fn unknown_name(what: &str, rest: &str) -> String {
    let (given, expected) = rest.split_once(", ").unwrap_or((rest, ""));
    let given = given.trim_matches('`');
    let valid = names_in_backticks(expected);
    match closest_all(given, &valid).as_slice() {
        [] if valid.is_empty() => format!("unknown {what} `{given}`; none are allowed here"),
        [] => format!(
            "unknown {what} `{given}`; expected one of: {}",
            valid.join(", ")
        ),
        [best] => format!("unknown {what} `{given}` (did you mean `{best}`?)"),
        [first @ .., last] => {
            let first: Vec<String> = first.iter().map(|name| format!("`{name}`")).collect();
            format!(
                "unknown {what} `{given}` (did you mean {} or `{last}`?)",
                first.join(", ")
            )
        }
    }
}

fn names_in_backticks(text: &str) -> Vec<&str> {
    text.split('`').skip(1).step_by(2).collect()
}

/// The valid name closest to `given`, when it is close enough to be a likely typo.
pub(crate) fn closest<'a>(given: &str, valid: &[&'a str]) -> Option<&'a str> {
    closest_all(given, valid).first().copied()
}

/// The valid names closest to `given` (several when equally close, e.g. `vgg17`), when close
/// enough to be likely typos: a letter or two wrong, missing or swapped, or a long shared
/// beginning (`lr` is too far from `learning_rate`).
fn closest_all<'a>(given: &str, valid: &[&'a str]) -> Vec<&'a str> {
    let given = given.to_ascii_lowercase();
    let allowed_edits = (given.chars().count() / 3).max(1);
    let scored: Vec<(usize, f64, &str)> = valid
        .iter()
        .map(|candidate| {
            let candidate_lower = candidate.to_ascii_lowercase();
            (
                strsim::osa_distance(&given, &candidate_lower),
                strsim::jaro_winkler(&given, &candidate_lower),
                *candidate,
            )
        })
        .filter(|(edits, similarity, _)| *edits <= allowed_edits || *similarity >= 0.85)
        .collect();
    let Some(best) = scored.iter().map(|(edits, _, _)| *edits).min() else {
        return Vec::new();
    };
    let best_similarity = scored
        .iter()
        .filter(|(edits, _, _)| *edits == best)
        .map(|(_, s, _)| *s)
        .fold(0.0, f64::max);
    scored
        .into_iter()
        .filter(|(edits, similarity, _)| *edits == best && *similarity >= best_similarity - 1e-9)
        .map(|(_, _, name)| name)
        .collect()
}

fn describe_expected(expected: &str) -> String {
    let integer_range = |min: i128, max: i128| format!("a whole number from {min} to {max}");
    match expected {
        "i64" | "i32" | "isize" => "an integer".to_string(),
        "u8" => integer_range(0, u8::MAX.into()),
        "u16" => integer_range(0, u16::MAX.into()),
        "u32" => integer_range(0, u32::MAX.into()),
        "u64" | "usize" => integer_range(0, u64::MAX.into()),
        "f64" | "f32" => "a number".to_string(),
        "path string" | "a string" => "a string".to_string(),
        "a sequence" => "an array".to_string(),
        "a boolean" => "true or false".to_string(),
        other if other.starts_with("struct ") => "a table".to_string(),
        other => other.to_string(),
    }
}

/// `integer `-2`` -> `-2`.
fn strip_kind(found: &str) -> &str {
    match found.split_once(' ') {
        Some((_, value)) if value.starts_with('`') => value.trim_matches('`'),
        _ => found,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn misspelt_key_gets_a_suggestion() {
        assert_eq!(
            humanize("unknown field `epoch`, expected one of `epochs`, `batch_size`"),
            "unknown key `epoch` (did you mean `epochs`?)"
        );
    }

    #[test]
    fn unrelated_key_lists_the_valid_ones() {
        assert_eq!(
            humanize("unknown field `colour`, expected `flip` or `random_crop`"),
            "unknown key `colour`; expected one of: flip, random_crop"
        );
    }

    #[test]
    fn type_errors_name_the_toml_type() {
        assert_eq!(
            humanize("invalid type: string \"ten\", expected i64"),
            "expected an integer, found string \"ten\""
        );
        assert_eq!(
            humanize("invalid value: integer `-2`, expected u32"),
            "expected a whole number from 0 to 4294967295, found -2"
        );
        assert_eq!(
            humanize("invalid type: integer `5`, expected struct TrainSpec"),
            "expected a table, found integer `5`"
        );
    }

    #[test]
    fn suggestions_need_a_close_match() {
        let keys = ["epochs", "batch_size", "learning_rate", "momentum"];
        assert_eq!(closest("epoch", &keys), Some("epochs"));
        assert_eq!(closest("batchsize", &keys), Some("batch_size"));
        assert_eq!(closest("learning_rte", &keys), Some("learning_rate"));
        assert_eq!(closest("lr", &keys), None);
        assert_eq!(closest("colour", &keys), None);
    }

    #[test]
    fn equally_close_names_are_all_suggested() {
        assert_eq!(
            humanize(
                "unknown variant `vgg17`, expected one of `small_cnn`, `vgg11`, `vgg13`, `vgg16`, `vgg19`"
            ),
            "unknown value `vgg17` (did you mean `vgg11`, `vgg13`, `vgg16` or `vgg19`?)"
        );
    }

    #[test]
    fn misspelt_value_gets_a_suggestion() {
        assert_eq!(
            humanize("unknown variant `sgdd`, expected one of `sgd`, `adam`, `adamw`"),
            "unknown value `sgdd` (did you mean `sgd`?)"
        );
    }
}
