//! A real OpenSSH server on loopback for `client up` tests: Debian's `sshd` with a host key and
//! a user key made for the test, logging in as the user running the tests, and an ssh_config
//! naming it `box`, so the client reaches it as it would a rented machine.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use easel_test_support::eventually;

/// Stops a worker a test started through SSH (the pid file `client up` left), even when an
/// assertion failed first.
pub struct Supervised(pub PathBuf);

impl Drop for Supervised {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(&self.0) {
            let _ = Command::new("kill").arg("-TERM").arg(pid.trim()).status();
        }
    }
}

pub struct Sshd {
    child: Child,
    pub dir: PathBuf,
    /// `ssh -F <config>`: what EASEL_SSH is set to so the client finds `box`.
    pub ssh_command: String,
    pub log: PathBuf,
}

fn run(command: &mut Command) -> String {
    let output = command.output().expect("command runs");
    assert!(
        output.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// A TCP port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn keygen(path: &Path) {
    run(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path));
}

impl Sshd {
    /// Starts sshd; `env` is set in every session (the machine's environment, e.g. where its
    /// PyTorch is).
    pub fn start(dir: &Path, env: &[(&str, &str)]) -> Sshd {
        let sshd = Path::new("/usr/sbin/sshd");
        assert!(
            sshd.is_file(),
            "these tests need OpenSSH's server at /usr/sbin/sshd: apt-get install openssh-server (deploy/test.sh does)"
        );
        std::fs::create_dir_all(dir).unwrap();
        let user = run(Command::new("id").arg("-un"));
        if run(Command::new("id").arg("-u")) == "0" {
            // sshd started by root insists on its privilege-separation folder.
            std::fs::create_dir_all("/run/sshd").unwrap();
        }
        let host_key = dir.join("host_key");
        let user_key = dir.join("user_key");
        keygen(&host_key);
        keygen(&user_key);
        std::fs::copy(user_key.with_extension("pub"), dir.join("authorized_keys")).unwrap();
        let port = free_port();
        let mut config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nAuthorizedKeysFile {}\n\
             PidFile none\nUsePAM no\nStrictModes no\nPasswordAuthentication no\n\
             KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n",
            host_key.display(),
            dir.join("authorized_keys").display()
        );
        let path = std::env::var("PATH").unwrap_or_default();
        let mut session_env = vec![format!("PATH={path}")];
        session_env.extend(env.iter().map(|(k, v)| format!("{k}={v}")));
        config.push_str(&format!("SetEnv {}\n", session_env.join(" ")));
        let sshd_config = dir.join("sshd_config");
        std::fs::write(&sshd_config, config).unwrap();
        let log = dir.join("sshd.log");
        let child = Command::new(sshd)
            .args(["-D", "-e", "-f"])
            .arg(&sshd_config)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::options().append(true).open(&log).unwrap())
            .spawn()
            .expect("sshd starts");
        let ssh_config = dir.join("ssh_config");
        std::fs::write(
            &ssh_config,
            format!(
                "Host box\n  HostName 127.0.0.1\n  Port {port}\n  User {user}\n  IdentityFile {}\n  \
                 IdentitiesOnly yes\n  UserKnownHostsFile {}\n  StrictHostKeyChecking accept-new\n  \
                 BatchMode yes\n  LogLevel ERROR\n",
                user_key.display(),
                dir.join("known_hosts").display()
            ),
        )
        .unwrap();
        let sshd = Sshd {
            child,
            dir: dir.to_owned(),
            ssh_command: format!("ssh -F {}", ssh_config.display()),
            log,
        };
        eventually(
            || std::net::TcpStream::connect(("127.0.0.1", port)).ok(),
            || {
                format!(
                    "sshd did not listen: {}",
                    std::fs::read_to_string(&sshd.log).unwrap_or_default()
                )
            },
        );
        sshd
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
