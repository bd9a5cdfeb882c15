//! Named tokens against the real worker binary: `worker token add/list/revoke`, jobs seen only by
//! the token name that submitted them (and admins), and a revoked token refused by name with its
//! open streams ended.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use easel_e2e::{
    CLIENT_POLL_INTERVAL, HANG_GUARD, Worker, binary, client_with, eventually, eventually_within,
    json_lines, sample_subset, write_spec,
};

/// `worker ARGS --data-dir DIR`, asserting success; its stdout.
fn worker_command(data_dir: &Path, args: &[&str]) -> String {
    let output = Command::new(binary("worker"))
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .output()
        .expect("worker runs");
    assert!(
        output.status.success(),
        "worker {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn named_tokens_own_their_jobs_and_a_revoked_one_is_refused_and_its_stream_ends() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let data = sample_subset(tmp.path(), 12);
    let spec = write_spec(tmp.path(), "alices-run", &data, 500);
    let data_dir = tmp.path().join("worker");
    let worker = Worker::start(&data_dir);

    // Tokens are added beside the running worker, printed once and stored only hashed.
    let alice = worker_command(&data_dir, &["token", "add", "alice"])
        .trim()
        .to_owned();
    let bob = worker_command(&data_dir, &["token", "add", "bob"])
        .trim()
        .to_owned();
    assert_eq!(alice.len(), 64);
    let stored = std::fs::read_to_string(data_dir.join("tokens.json")).unwrap();
    assert!(
        !stored.contains(&alice) && !stored.contains(&bob),
        "{stored}"
    );
    let listed = worker_command(&data_dir, &["token", "list"]);
    assert!(
        listed.contains("alice") && listed.contains("bob"),
        "{listed}"
    );

    let as_user = |token: &str| {
        vec![
            ("EASEL_WORKER", worker.address.clone()),
            ("EASEL_TOKEN", token.to_owned()),
        ]
    };
    let run = |token: &str, args: &[&str]| {
        let env = as_user(token);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        client_with(&home, args, &env)
    };
    // The running worker reads the changed file again by itself: each new token is accepted
    // once it has.
    for (name, token) in [("alice", &alice), ("bob", &bob)] {
        eventually_within(
            HANG_GUARD,
            CLIENT_POLL_INTERVAL,
            || {
                run(token, &["list", "--json"])
                    .status
                    .success()
                    .then_some(())
            },
            || {
                format!(
                    "the running worker never accepted {name}'s new token; log:\n{}",
                    worker.log_text()
                )
            },
        );
    }
    let submitted = run(
        &alice,
        &[
            "submit",
            spec.to_str().unwrap(),
            "--detach",
            "--json",
            "--no-poc",
        ],
    );
    assert!(
        submitted.status.success(),
        "{}",
        String::from_utf8_lossy(&submitted.stderr)
    );
    let job = json_lines(&String::from_utf8_lossy(&submitted.stdout))[0]["job_id"]
        .as_str()
        .unwrap()
        .to_owned();

    // Bob neither lists nor reaches Alice's job: it is as unknown to him as a missing one.
    let bobs_list = run(&bob, &["list", "--json"]);
    assert_eq!(String::from_utf8_lossy(&bobs_list.stdout).trim(), "[]");
    for args in [
        vec!["status", job.as_str()],
        vec!["cancel", job.as_str()],
        vec!["watch", job.as_str(), "--json"],
        vec!["rm", job.as_str()],
    ] {
        let output = run(&bob, &args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "bob ran {args:?}");
        assert!(
            stderr.contains(&format!("no job `{job}`")),
            "{args:?}: {stderr}"
        );
    }
    // Alice and the worker's own (admin) token see it, owned by alice.
    let alices = json_lines(&String::from_utf8_lossy(
        &run(&alice, &["list", "--json"]).stdout,
    ));
    assert_eq!(alices[0].as_array().map(Vec::len), Some(1), "{alices:?}");
    let admins = worker.client_ok(&home, &["status", &job, "--json"]);
    assert_eq!(json_lines(&admins)[0]["owner"], "alice", "{admins}");

    // Alice follows her job; revoking her token ends the stream and refuses her by name.
    let env = as_user(&alice);
    let mut watch = Command::new(binary("client"))
        .args(["watch", &job, "--json"])
        .env("HOME", &home)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // An event shown means the stream is open: the revocation below ends a stream, rather than
    // refusing one not yet opened. The rest of the output is drained so the watch never blocks
    // on a full pipe.
    let (shown, events) = std::sync::mpsc::channel();
    let stdout = watch.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = shown.send(line);
        }
    });
    let first = events.recv_timeout(HANG_GUARD).unwrap_or_else(|_| {
        panic!(
            "the watch showed no event; worker log:\n{}",
            worker.log_text()
        )
    });
    assert!(json_lines(&first)[0]["kind"].is_string(), "{first}");
    assert!(watch.try_wait().unwrap().is_none(), "the watch ended early");
    worker_command(&data_dir, &["token", "revoke", "alice"]);
    let ended = eventually(
        || watch.try_wait().unwrap(),
        || {
            format!(
                "the watch outlived the token; worker log:\n{}",
                worker.log_text()
            )
        },
    );
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut watch.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!ended.success());
    assert!(stderr.contains("`alice` was revoked"), "{stderr}");
    let refused = run(&alice, &["list"]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("`alice` was revoked"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    // The job itself runs on, and the admin can still stop it.
    worker.client_ok(&home, &["cancel", &job]);
}
