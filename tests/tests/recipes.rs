//! The deploy recipes, run as far as this machine allows: the cloud-init set-up script installs
//! and starts a real worker from the bundle (driver step off, no systemd here), which then
//! serves over TLS and stops through the bundle's own machine script; every recipe names this
//! release. The container and the Kubernetes manifest cannot run here (no container engine, no
//! cluster): deploy/check-recipes.sh validates the manifest against Kubernetes' schemas.

use easel_e2e::sshd::free_port;
use easel_e2e::{client_with, machine_pytorch, pack_bundle, repo_root};
use std::process::Command;

const VERSION: &str = env!("CARGO_PKG_VERSION");

fn recipe(name: &str) -> String {
    std::fs::read_to_string(repo_root().join("deploy/recipes").join(name)).unwrap()
}

/// The `content: |` block of cloud-init's write_files entry: the set-up script.
fn setup_script(cloud_init: &str) -> String {
    let mut lines = cloud_init
        .lines()
        .skip_while(|line| !line.trim_start().starts_with("content: |"));
    lines
        .next()
        .expect("cloud-init.yaml writes the set-up script");
    let mut script = String::new();
    for line in lines {
        if !line.is_empty() && !line.starts_with("      ") {
            break;
        }
        script.push_str(line.strip_prefix("      ").unwrap_or(line));
        script.push('\n');
    }
    script
}

#[test]
fn every_recipe_names_this_release() {
    assert!(recipe("cloud-init.yaml").starts_with("#cloud-config\n"));
    assert!(recipe("cloud-init.yaml").contains(&format!("\"EASEL_VERSION={VERSION}\"")));
    assert!(recipe("Containerfile").contains(&format!("ARG VERSION={VERSION}\n")));
    assert!(recipe("kubernetes.yaml").contains(&format!("image: easel-worker:{VERSION}\n")));
    // The container runs what the bundle holds.
    let containerfile = recipe("Containerfile");
    assert!(containerfile.contains("/opt/easel/install.sh --data-dir /data"));
    assert!(containerfile.contains("ENTRYPOINT [\"/opt/easel/easel-worker\""));
    assert!(
        repo_root()
            .join("deploy/worker-bundle/easel-worker")
            .is_file()
    );
}

#[test]
fn the_cloud_init_script_installs_and_starts_a_worker_that_serves_over_tls() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = pack_bundle(tmp.path());
    let sha256 = std::fs::read_to_string(archive.with_extension("gz.sha256")).unwrap();
    let sha256 = sha256.split_whitespace().next().unwrap().to_owned();
    let easel_dir = tmp.path().join("vm/.easel");
    let port = free_port().to_string();
    let user = String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout).unwrap();
    let script = setup_script(&recipe("cloud-init.yaml"));
    let output = Command::new("sh")
        .arg("-c")
        .arg(&script)
        .env("EASEL_VERSION", VERSION)
        .env("EASEL_BUNDLE_URL", format!("file://{}", archive.display()))
        .env("EASEL_BUNDLE_SHA256", &sha256)
        .env("EASEL_USER", user.trim())
        .env("EASEL_DIR", &easel_dir)
        .env("EASEL_PORT", &port)
        .env("EASEL_INSTALL_DRIVER", "no")
        .env("PYTHONPATH", machine_pytorch())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    let machine_script = easel_dir.join(format!("easel-worker-{VERSION}/easel-machine.sh"));
    let stop = || {
        Command::new("sh")
            .arg(&machine_script)
            .arg("stop")
            .arg(&easel_dir)
            .output()
            .unwrap()
    };
    if !output.status.success() {
        stop();
        panic!("the set-up script failed:\n{said}");
    }
    assert!(said.contains("easel: worker installed in"), "{said}");

    let token = std::fs::read_to_string(easel_dir.join("data/token")).unwrap();
    let fingerprint = std::fs::read_to_string(easel_dir.join("data/tls/fingerprint")).unwrap();
    let address = format!("https://127.0.0.1:{port}");
    let listed = client_with(
        &tmp.path().join("laptop"),
        &["list"],
        &[
            ("EASEL_WORKER", &address),
            ("EASEL_TOKEN", token.trim()),
            ("EASEL_FINGERPRINT", fingerprint.trim()),
        ],
    );
    let stopped = stop();
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    assert!(String::from_utf8_lossy(&listed.stdout).contains("no jobs on https://127.0.0.1:"));
    assert!(
        String::from_utf8_lossy(&stopped.stdout).contains("stopped=yes"),
        "{}",
        String::from_utf8_lossy(&stopped.stderr)
    );
    assert!(!easel_dir.join("data/worker.pid").exists());
}
