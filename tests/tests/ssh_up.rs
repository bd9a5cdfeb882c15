//! `client up` against a real OpenSSH server on loopback, as against a rented GPU machine: it
//! installs the bundle into a fresh Easel folder, starts the worker, bootstraps trust (token,
//! TLS fingerprint) over SSH and saves a profile; a submit -> watch -> fetch then runs over TLS
//! with nothing but that profile; `client down` stops it and a second `client up` reuses the
//! install.

use easel_e2e::sshd::{Sshd, Supervised, free_port};
use easel_e2e::{
    client_with, machine_pytorch, pack_bundle, sample_subset, submit_detached_with, write_spec,
};
use std::process::Output;

use easel_test_support::output_text as text;

fn ok(output: Output) -> String {
    easel_test_support::assert_success(&output);
    text(&output)
}

#[test]
fn up_installs_and_starts_a_tls_worker_that_submit_watch_and_fetch_use_and_down_stops_it() {
    let tmp = tempfile::tempdir().unwrap();
    let sshd = Sshd::start(
        &tmp.path().join("sshd"),
        &[("PYTHONPATH", machine_pytorch().to_str().unwrap())],
    );
    let archive = pack_bundle(tmp.path());
    let home = tmp.path().join("laptop");
    let easel_dir = tmp.path().join("machine/.easel");
    let _cleanup = Supervised(easel_dir.join("data/worker.pid"));
    let port = free_port().to_string();
    let env = [("EASEL_SSH", sshd.ssh_command.as_str())];
    let up_args = [
        "up",
        "box",
        "--bundle",
        archive.to_str().unwrap(),
        "--remote-dir",
        easel_dir.to_str().unwrap(),
        "--port",
        &port,
    ];

    let up = ok(client_with(&home, &up_args, &env));
    for line in [
        "[1/6] check   ",
        "no GPU",
        "PyTorch 2.11.0 there (reused)",
        "[2/6] install copied easel-worker-",
        "[3/6] start   worker started as a background process",
        "[4/6] trust   access token and TLS fingerprint sha256:",
        &format!(
            "[5/6] health  worker {} answers at https://127.0.0.1:{port}",
            env!("CARGO_PKG_VERSION")
        ),
        "[6/6] profile saved as worker `box`",
    ] {
        assert!(up.contains(line), "missing {line:?} in:\n{up}");
    }
    let config = std::fs::read_to_string(home.join(".config/easel/client.toml")).unwrap();
    let token = std::fs::read_to_string(easel_dir.join("data/token")).unwrap();
    let fingerprint = std::fs::read_to_string(easel_dir.join("data/tls/fingerprint")).unwrap();
    assert!(config.contains("worker = \"box\""), "{config}");
    assert!(
        config.contains(token.trim()) && config.contains(fingerprint.trim()),
        "{config}"
    );
    let worker_config = std::fs::read_to_string(easel_dir.join("worker.toml")).unwrap();
    assert!(
        worker_config.contains(&format!("listen = \"0.0.0.0:{port}\"")),
        "{worker_config}"
    );

    // Nothing but the saved profile: no address, token or fingerprint passed.
    let data = sample_subset(tmp.path(), 6);
    let spec = write_spec(tmp.path(), "up", &data, 1);
    let submitted = submit_detached_with(&home, &spec, &[]);
    let job = submitted["job_id"].as_str().unwrap().to_owned();
    let watched = ok(client_with(&home, &["watch", &job], &[]));
    assert!(watched.contains("succeeded"), "{watched}");
    let fetched = tmp.path().join("fetched");
    ok(client_with(
        &home,
        &["fetch", &job, "--out", fetched.to_str().unwrap()],
        &[],
    ));
    assert!(fetched.join("weights/best.safetensors").is_file());

    let listed = ok(client_with(&home, &["workers"], &[]));
    assert!(
        listed.contains("* box") && listed.contains("up: worker"),
        "{listed}"
    );

    let down = ok(client_with(&home, &["down", "box"], &[]));
    assert!(down.contains("stopped;"), "{down}");
    assert!(!easel_dir.join("data/worker.pid").exists());
    let listed = ok(client_with(&home, &["workers", "--json"], &[]));
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed[0]["reachable"], false, "{listed}");

    // Again: the install is reused, the same token and certificate come back, the job is there.
    let again = ok(client_with(&home, &up_args, &env));
    assert!(again.contains("already installed in"), "{again}");
    assert!(!again.contains("copied"), "{again}");
    assert!(again.contains("[3/6] start   worker started"), "{again}");
    let jobs = ok(client_with(&home, &["list"], &[]));
    assert!(jobs.contains(&job), "{jobs}");
    // A third up while it runs keeps the running worker.
    let third = ok(client_with(&home, &up_args, &env));
    assert!(third.contains("already running"), "{third}");
    ok(client_with(&home, &["down"], &[]));
}

#[test]
fn up_says_which_step_failed_and_what_to_do() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("laptop");
    let archive = tmp.path().join(format!(
        "easel-worker-{}-linux-x86_64.tar.gz",
        env!("CARGO_PKG_VERSION")
    ));
    std::fs::write(&archive, b"not really a bundle").unwrap();
    // Nothing listens on this port: ssh cannot connect.
    let closed = format!("127.0.0.1:{}", free_port());
    let output = client_with(
        &home,
        &["up", &closed, "--bundle", archive.to_str().unwrap()],
        &[("EASEL_SSH", "ssh -o BatchMode=yes -o ConnectTimeout=5")],
    );
    assert!(!output.status.success());
    let said = text(&output);
    assert!(
        said.contains("client up stopped at step 1/6 (check)"),
        "{said}"
    );
    assert!(
        said.contains(&format!("ssh could not reach {closed}")),
        "{said}"
    );
    assert!(said.contains("check that `ssh"), "{said}");

    let missing = client_with(
        &home,
        &[
            "up",
            "box",
            "--bundle",
            tmp.path().join("nope.tar.gz").to_str().unwrap(),
        ],
        &[],
    );
    assert!(!missing.status.success());
    assert!(
        text(&missing).contains("is not a worker bundle"),
        "{}",
        text(&missing)
    );

    let down = client_with(&home, &["down", "nowhere"], &[]);
    assert!(!down.status.success());
    assert!(
        text(&down).contains("no worker profile named `nowhere`"),
        "{}",
        text(&down)
    );
    let listed = ok(client_with(&home, &["workers"], &[]));
    assert!(listed.contains("client up [user@]host"), "{listed}");

    // The profile of a machine that is gone can still be forgotten.
    let config = home.join(".config/easel/client.toml");
    std::fs::create_dir_all(config.parent().unwrap()).unwrap();
    std::fs::write(
        &config,
        format!(
            "worker = \"gone\"\n[workers.gone]\naddress = \"https://{closed}\"\nssh = \"{closed}\"\nssh_command = \"ssh -o BatchMode=yes -o ConnectTimeout=5\"\nremote_dir = \"/nowhere\"\n"
        ),
    )
    .unwrap();
    let kept = client_with(&home, &["down", "gone"], &[]);
    assert!(!kept.status.success());
    assert!(
        text(&kept).contains("ssh could not reach"),
        "{}",
        text(&kept)
    );
    let forgotten = ok(client_with(&home, &["down", "gone", "--forget"], &[]));
    assert!(
        forgotten.contains("warning: could not stop it"),
        "{forgotten}"
    );
    assert!(
        forgotten.contains("removed the profile `gone`"),
        "{forgotten}"
    );
    let listed = ok(client_with(&home, &["workers"], &[]));
    assert!(listed.contains("no worker profiles"), "{listed}");
}
