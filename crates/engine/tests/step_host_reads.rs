//! A lint over the training step's code path (and validation's batches): no read from the device
//! to the host (each one waits for every queued kernel, so on a GPU the step stalls) outside the
//! counted reads `train_epoch` makes, the progress read at most once per interval and the
//! epoch's totals, and validation's totals after its last batch.
//! A new `double_value` or a blocking `to_device` in a function the step runs fails here,
//! naming the file, the function and the line.

use std::path::Path;

/// Calls that copy device memory to the host, or block on the device. `to_device_(…, true, …)`
/// (non-blocking) is not among them.
const HOST_READS: &[&str] = &[
    "double_value(",
    "int64_value(",
    "f_double_value(",
    "f_int64_value(",
    ".to_device(",
    "bincount(",
    "nonzero(",
    "copy_data(",
    "copy_data_u8(",
    "Vec::try_from(",
    "Vec::<f32>::try_from(",
    "Vec::<f64>::try_from(",
    "Vec::<i64>::try_from(",
    "is_nonzero(",
    "synchronize(",
];

/// A host read a function may make, and how many times.
type Allowed = &'static [(&'static str, usize)];

/// (file under src/, function, reads it may make): every function a training step runs.
const STEP_PATH: &[(&str, &str, Allowed)] = &[
    // The progress event's loss (throttled) and the epoch's loss and accuracy, once each.
    (
        "trainer/epoch.rs",
        "train_epoch",
        &[("double_value(", 2), ("int64_value(", 1)],
    ),
    ("trainer/epoch.rs", "train_step_on", &[]),
    ("trainer/epoch.rs", "train_step", &[]),
    ("trainer/trainee.rs", "logits", &[]),
    ("trainer/trainee.rs", "computing_net", &[]),
    ("trainer/precision.rs", "pull_trainable_weights", &[]),
    ("trainer/precision.rs", "pull", &[]),
    ("trainer/precision.rs", "zero_grad", &[]),
    ("trainer/precision.rs", "gradient", &[]),
    ("trainer/optimizer/mod.rs", "zero_grad", &[]),
    ("trainer/optimizer/mod.rs", "step", &[]),
    ("trainer/optimizer/mod.rs", "step_with", &[]),
    ("trainer/optimizer/fused.rs", "buckets", &[]),
    ("trainer/optimizer/fused.rs", "key_of", &[]),
    ("trainer/optimizer/fused.rs", "update", &[]),
    ("trainer/optimizer/fused.rs", "adam", &[]),
    ("trainer/optimizer/per_parameter.rs", "update", &[]),
    ("trainer/optimizer/per_parameter.rs", "sgd", &[]),
    ("trainer/optimizer/per_parameter.rs", "adam", &[]),
    ("trainer/schedule.rs", "learning_rate", &[]),
    ("trainer/feature_cache.rs", "batch", &[]),
    ("pipeline/batches.rs", "batch", &[]),
    ("pipeline/batches.rs", "prepare", &[]),
    ("pipeline/batches.rs", "next_batch", &[]),
    ("pipeline/augment.rs", "apply", &[]),
    ("pipeline/augment.rs", "random_flip", &[]),
    ("pipeline/augment.rs", "random_crop", &[]),
    ("pipeline/augment.rs", "color_jitter", &[]),
    ("pipeline/mod.rs", "channels_last", &[]),
    // Validation reads its totals once, after the last batch: the loss and the confusion matrix.
    (
        "trainer/validation.rs",
        "evaluate_batches",
        &[
            (".to_device(", 1),
            ("double_value(", 1),
            ("Vec::try_from(", 1),
        ],
    ),
];

/// The body of the first non-test `fn name` in `source` (from its `{` to the matching `}`) and
/// the line it starts on; braces inside the body's strings come in pairs, as `format!` needs.
fn function_body<'a>(source: &'a str, name: &str) -> Option<(usize, &'a str)> {
    let tests_start = source.find("#[cfg(test)]").unwrap_or(source.len());
    let code = &source[..tests_start];
    let mut search = 0;
    while let Some(found) = code[search..].find(&format!("fn {name}")) {
        let start = search + found;
        let after = &code[start + 3 + name.len()..];
        search = start + 1;
        if !after.starts_with(['(', '<']) {
            continue;
        }
        let open = start + code[start..].find('{')?;
        let mut depth = 0usize;
        for (offset, character) in code[open..].char_indices() {
            match character {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        let line = code[..start].lines().count() + 1;
                        return Some((line, &code[open..=open + offset]));
                    }
                }
                _ => {}
            }
        }
        return None;
    }
    None
}

/// Code without its `//` comments (a comment may name a host read it explains).
fn without_comments(body: &str) -> String {
    body.lines()
        .map(|line| line.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_training_step_reads_nothing_back_from_the_device_but_its_counted_progress() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut problems = Vec::new();
    for (file, function, allowed) in STEP_PATH {
        let source = std::fs::read_to_string(src.join(file)).expect("a source file");
        let Some((line, body)) = function_body(&source, function) else {
            problems.push(format!(
                "src/{file}: no fn {function} (moved? update STEP_PATH)"
            ));
            continue;
        };
        let code = without_comments(body);
        for read in HOST_READS {
            let count = code.matches(read).count();
            let expected = allowed
                .iter()
                .find(|(name, _)| name == read)
                .map_or(0, |(_, n)| *n);
            if count != expected {
                problems.push(format!(
                    "src/{file}:{line}: fn {function} has {count} `{read}` (allowed {expected})"
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "host reads in the step:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_lint_finds_a_host_read_where_one_is_written() {
    let source = "fn step(x: &Tensor) -> f64 {\n    let y = format!(\"{x}\");\n    \
                  x.sum(Kind::Float).double_value(&[])\n}\n#[cfg(test)]\nfn step() {}";
    let (line, body) = function_body(source, "step").unwrap();
    assert_eq!(line, 1);
    assert_eq!(without_comments(body).matches("double_value(").count(), 1);
    assert!(function_body(source, "missing").is_none());
    assert_eq!(
        without_comments("{ // x.double_value(&[]) explained\n}")
            .matches("double_value(")
            .count(),
        0
    );
}
