//! The channel over real TLS on loopback: the worker's self-signed certificate, pinned by its
//! SHA-256 fingerprint, carries a whole submit -> watch -> fetch; a wrong fingerprint, a
//! plaintext client and a wrong token are each refused with what to do; a plaintext listen
//! beyond loopback is refused before anything binds.

use easel_e2e::{Worker, binary, client_with, sample_subset, state, write_spec};
use std::process::Command;
use std::time::Duration;

fn tls_worker(dir: &std::path::Path) -> Worker {
    Worker::start_with_env(&dir.join("worker"), &[], &[("EASEL_TLS", "on")])
}

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn a_job_runs_over_tls_with_the_pinned_fingerprint_and_the_token_stays_out_of_the_log() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let worker = tls_worker(tmp.path());
    assert!(worker.address.starts_with("https://127.0.0.1:"));
    let data = sample_subset(tmp.path(), 6);
    let spec = write_spec(tmp.path(), "tls", &data, 1);
    let submitted = worker.submit_detached(&home, &spec, &[]);
    let job = submitted["job_id"].as_str().unwrap().to_owned();
    let status = worker.wait_until_finished(&home, &job, Duration::from_secs(300));
    assert_eq!(state(&status), "succeeded", "{status}");
    let out = tmp.path().join("fetched");
    worker.client_ok(&home, &["fetch", &job, "--out", out.to_str().unwrap()]);
    assert!(out.join("weights/best.safetensors").is_file());

    // A bare HOST:PORT with a fingerprint means https.
    let bare = worker.address.trim_start_matches("https://").to_owned();
    let fingerprint = worker.fingerprint.clone().unwrap();
    let listed = client_with(
        &home,
        &["list"],
        &[
            ("EASEL_WORKER", &bare),
            ("EASEL_TOKEN", &worker.token),
            ("EASEL_FINGERPRINT", &fingerprint),
        ],
    );
    assert!(listed.status.success(), "{}", stderr(&listed));

    let log = worker.log_text();
    assert!(
        log.contains(&format!(
            "worker: TLS certificate fingerprint {fingerprint}"
        )),
        "{log}"
    );
    assert!(
        !log.contains(&worker.token),
        "the token is never logged:\n{log}"
    );
}

#[test]
fn a_wrong_fingerprint_a_plaintext_client_and_a_wrong_token_are_refused_saying_what_to_do() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let worker = tls_worker(tmp.path());
    let right = worker.fingerprint.clone().unwrap();
    let wrong = format!("sha256:{}", "00".repeat(32));
    let plaintext = worker.address.replacen("https://", "http://", 1);
    let cases: [(Vec<(&str, &str)>, &str); 4] = [
        (
            vec![
                ("EASEL_WORKER", &worker.address),
                ("EASEL_TOKEN", &worker.token),
                ("EASEL_FINGERPRINT", &wrong),
            ],
            "not the pinned sha256:0000",
        ),
        (
            vec![
                ("EASEL_WORKER", &worker.address),
                ("EASEL_TOKEN", &worker.token),
            ],
            "no certificate fingerprint is pinned: pass --fingerprint",
        ),
        (
            vec![("EASEL_WORKER", &plaintext), ("EASEL_TOKEN", &worker.token)],
            "may be serving TLS (the default): use https://",
        ),
        (
            vec![
                ("EASEL_WORKER", &worker.address),
                ("EASEL_TOKEN", "0000"),
                ("EASEL_FINGERPRINT", &right),
            ],
            "the worker refused the token (wrong or missing): pass --token or set EASEL_TOKEN",
        ),
    ];
    for (env, expected) in cases {
        let output = client_with(&home, &["list"], &env);
        assert!(!output.status.success(), "{env:?} was accepted");
        assert!(
            stderr(&output).contains(expected),
            "{env:?}: {}",
            stderr(&output)
        );
    }
}

#[test]
fn a_plaintext_listen_beyond_loopback_is_refused_before_binding() {
    let tmp = tempfile::tempdir().unwrap();
    let output = Command::new(binary("worker"))
        .args(["--listen", "0.0.0.0:0", "--data-dir"])
        .arg(tmp.path().join("worker"))
        .env("EASEL_TLS", "off")
        .env("EASEL_DEVICES", "cpu")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let text = stderr(&output);
    assert!(
        text.contains("tls.enabled: listening on 0.0.0.0:0 without TLS would send the access token in the clear"),
        "{text}"
    );
    assert!(
        !text.contains("worker: listening on"),
        "nothing bound: {text}"
    );
}
