//! The worker bundle as a GPU machine gets it: packed by `deploy/bundle.sh`, checksummed,
//! unpacked into a fresh home, installed against the PyTorch 2.11 already there, then serving.

use easel_e2e::{Worker, binary, machine_pytorch, repo_root};
use std::path::Path;
use std::process::Command;

fn bash(script: &Path, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    Command::new("bash")
        .arg(script)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

fn ok(output: std::process::Output) -> String {
    easel_test_support::assert_success(&output);
    easel_test_support::output_text(&output)
}

#[test]
fn the_bundle_installs_against_the_machines_pytorch_and_serves() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("dist");
    let worker = binary("worker");
    let packed = ok(bash(
        &repo_root().join("deploy/bundle.sh"),
        &[
            "--binary",
            worker.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
        &[],
    ));
    let version = env!("CARGO_PKG_VERSION");
    let archive = out.join(format!("easel-worker-{version}-linux-x86_64.tar.gz"));
    assert!(packed.contains(archive.to_str().unwrap()), "{packed}");
    let checked = Command::new("sha256sum")
        .arg("-c")
        .arg(archive.with_extension("gz.sha256"))
        .current_dir(&out)
        .output()
        .unwrap();
    assert!(ok(checked).contains(": OK"));

    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    ok(Command::new("tar")
        .arg("-xzf")
        .arg(&archive)
        .arg("-C")
        .arg(&home)
        .output()
        .unwrap());
    let install = home.join(format!("easel-worker-{version}"));

    // Nothing points back at the machine that built it: alone, the binary finds no libtorch.
    let alone = Command::new(install.join("bin/worker"))
        .arg("--version")
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .unwrap();
    assert!(!alone.status.success());
    assert!(String::from_utf8_lossy(&alone.stderr).contains("libtorch"));
    let not_installed = Command::new(install.join("easel-worker")).output().unwrap();
    assert!(String::from_utf8_lossy(&not_installed.stderr).contains("run "));

    let site = machine_pytorch();
    let data = dir.path().join("data");
    let installed = ok(bash(
        &install.join("install.sh"),
        &["--data-dir", data.to_str().unwrap()],
        &[("PYTHONPATH", site.to_str().unwrap())],
    ));
    assert!(
        installed.contains("using the machine's PyTorch 2.11.0"),
        "{installed}"
    );
    assert!(installed.contains(&format!("worker {version} (libtorch 2.11.0")));
    let libtorch = std::fs::read_to_string(install.join("libtorch.path")).unwrap();
    assert_eq!(Path::new(libtorch.trim()), site.join("torch/lib"));
    let unit = std::fs::read_to_string(install.join("easel-worker.service.installed")).unwrap();
    assert!(unit.contains(&format!(
        "ExecStart={}/easel-worker --config {}/worker.toml --data-dir {}",
        install.display(),
        install.display(),
        data.display()
    )));

    // A second run keeps the install; a libtorch folder without libtorch is refused by name.
    let again = ok(bash(
        &install.join("install.sh"),
        &["--data-dir", data.to_str().unwrap()],
        &[("PYTHONPATH", site.to_str().unwrap())],
    ));
    assert!(again.contains("installed in"), "{again}");
    let wrong = bash(
        &install.join("install.sh"),
        &["--libtorch", "/nonexistent"],
        &[],
    );
    assert!(!wrong.status.success());
    assert!(
        String::from_utf8_lossy(&wrong.stderr).contains("/nonexistent holds no libtorch_cpu.so")
    );
    // The refused run left the working install as it was.
    assert_eq!(
        std::fs::read_to_string(install.join("libtorch.path")).unwrap(),
        libtorch
    );

    let serving = Worker::start_program(&install.join("easel-worker"), &data, &[], &[]);
    let listed = serving.client_ok(&dir.path().join("client-home"), &["list"]);
    assert!(listed.contains("no jobs on http://127.0.0.1:"), "{listed}");
}
