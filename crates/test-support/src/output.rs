//! Checking a finished command: a failure shows its status and both streams, so the test log
//! says why without a rerun.

use std::process::Output;

/// Panics unless the command succeeded, showing both streams; returns its stdout.
pub fn assert_success(output: &Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "status {:?}\nstdout:\n{stdout}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// Stdout then stderr, as a person at the terminal reads them.
pub fn output_text(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr)
}

/// Runs `client train --local SPEC --out OUT --device cpu` with the client binary at `client`
/// (a test's `env!("CARGO_BIN_EXE_client")`) and panics unless it succeeds; returns its stdout.
pub fn train_locally(client: &str, spec: &std::path::Path, out: &std::path::Path) -> String {
    let output = std::process::Command::new(client)
        .args(["train", "--local", "--device", "cpu"])
        .arg(spec)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap();
    assert_success(&output)
}
