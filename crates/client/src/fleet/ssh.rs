//! The user's own OpenSSH client, so their keys, agent, `~/.ssh/config` aliases and jump hosts
//! all work: `EASEL_SSH` replaces the plain `ssh` program and its options (words split on spaces,
//! no shell quoting: put elaborate options in ~/.ssh/config).

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, anyhow, bail};

/// The machine's side of every fleet verb, sent with each call (nothing to keep in sync there).
const ON_MACHINE: &str = include_str!("../../../../deploy/worker-bundle/easel-machine.sh");

/// `ssh` exits with 255 when it could not connect or authenticate.
const SSH_FAILED: i32 = 255;

pub struct Ssh {
    program: Vec<String>,
    /// `[user@]host`, as ssh takes it.
    destination: String,
    port: Option<u16>,
    /// The destination as the user wrote it, for messages.
    pub shown: String,
}

/// What the machine answered: its `key=value` lines.
pub struct Answer {
    lines: Vec<(String, String)>,
}

impl Answer {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.lines
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn all(&self, key: &str) -> Vec<&str> {
        self.lines
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// Splits `[user@]host[:port]` (IPv6 hosts in brackets) into ssh's destination and port. The
/// user and host are checked whole: ssh reads a word starting with `-` as an option (e.g.
/// `-oProxyCommand=…`, which runs a command here), wherever in the destination it hides.
pub fn parse_destination(text: &str) -> anyhow::Result<(String, Option<u16>)> {
    let (user, rest) = match text.rsplit_once('@') {
        Some((user, rest)) => (Some(user), rest),
        None => (None, text),
    };
    let (host, port) = if let Some(bracketed) = rest.strip_prefix('[') {
        let (host, after) = bracketed
            .split_once(']')
            .ok_or_else(|| anyhow!("`{text}`: an IPv6 host in brackets needs its closing `]`"))?;
        match after.strip_prefix(':') {
            Some(port) => (host, Some(port)),
            None if after.is_empty() => (host, None),
            None => bail!("`{text}` is not [user@]host[:port]"),
        }
    } else if rest.matches(':').count() == 1 {
        let (host, port) = rest.split_once(':').expect("one colon");
        (host, Some(port))
    } else {
        (rest, None)
    };
    if host.is_empty() || user.is_some_and(str::is_empty) {
        bail!("`{text}` is not [user@]host[:port]");
    }
    if let Some(user) = user {
        check_user(text, user)?;
    }
    check_host(text, host)?;
    let port = port
        .map(|port| {
            port.parse::<u16>()
                .map_err(|_| anyhow!("`{text}`: `{port}` is not an SSH port number"))
        })
        .transpose()?;
    let destination = match user {
        Some(user) => format!("{user}@{host}"),
        None => host.to_owned(),
    };
    Ok((destination, port))
}

/// A user name as Unix systems make them (`-`, `.`, `_`, `@` and `+`, `$` for machine accounts),
/// never starting with `-`.
fn check_user(text: &str, user: &str) -> anyhow::Result<()> {
    if user.starts_with('-') {
        bail!(
            "`{}`: the user `{}` starts with `-`, which ssh would read as an option",
            text.escape_debug(),
            user.escape_debug()
        );
    }
    let allowed =
        |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '@' | '+' | '$');
    if let Some(bad) = user.chars().find(|&c| !allowed(c)) {
        bail!(
            "`{}`: the user `{}` holds {}; a user name is letters, digits, `-`, `.`, `_`, `@`, `+` and `$`",
            text.escape_debug(),
            user.escape_debug(),
            describe(bad)
        );
    }
    Ok(())
}

/// A host name, an ~/.ssh/config alias, an IPv4 address or an IPv6 one (with a `%zone`), never
/// starting with `-`.
fn check_host(text: &str, host: &str) -> anyhow::Result<()> {
    if host.starts_with('-') {
        bail!(
            "`{}`: the host `{}` starts with `-`, which ssh would read as an option",
            text.escape_debug(),
            host.escape_debug()
        );
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | ':' | '%');
    if let Some(bad) = host.chars().find(|&c| !allowed(c)) {
        bail!(
            "`{}`: the host `{}` holds {}; a host is a name or ~/.ssh/config alias (letters, digits, `-`, `.`, `_`) or an IP address",
            text.escape_debug(),
            host.escape_debug(),
            describe(bad)
        );
    }
    Ok(())
}

/// A character named so a message shows it even when it is blank or invisible.
fn describe(c: char) -> String {
    if c.is_whitespace() {
        "whitespace".to_owned()
    } else if c.is_control() {
        format!("the control character {}", c.escape_unicode())
    } else {
        format!("`{c}`")
    }
}

/// Quoted for the remote login shell, which re-splits the command line ssh sends.
fn quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

impl Ssh {
    /// `command` is the ssh program line to use (EASEL_SSH or a profile's), else plain `ssh`.
    pub fn new(destination: &str, command: Option<&str>) -> anyhow::Result<Ssh> {
        let (host, port) = parse_destination(destination)?;
        let program: Vec<String> = command
            .unwrap_or("ssh")
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        if program.is_empty() {
            bail!("EASEL_SSH is empty: unset it, or set it to an ssh command line");
        }
        Ok(Ssh {
            program,
            destination: host,
            port,
            shown: destination.to_owned(),
        })
    }

    /// The EASEL_SSH line, when it is not plain `ssh` (kept in the profile for `client down`).
    pub fn custom_program(&self) -> Option<String> {
        (self.program != ["ssh"]).then(|| self.program.join(" "))
    }

    /// `ssh [EASEL_SSH options] -T [-p PORT] -- DESTINATION REMOTE`: after `--` ssh takes no
    /// more options, whatever the destination looks like.
    fn command(&self, remote: &str) -> Command {
        let mut command = Command::new(&self.program[0]);
        command.args(&self.program[1..]).arg("-T");
        if let Some(port) = self.port {
            command.arg("-p").arg(port.to_string());
        }
        command.arg("--").arg(&self.destination).arg(remote);
        command
    }

    /// `ssh [EASEL_SSH options] -N -o ExitOnForwardFailure=yes -L 127.0.0.1:LOCAL:REMOTE [-p
    /// PORT] -- DESTINATION`: a port forward and nothing else.
    pub fn forward_command(&self, local_port: u16, remote: &str) -> Command {
        let mut command = Command::new(&self.program[0]);
        command
            .args(&self.program[1..])
            .args(["-N", "-o", "ExitOnForwardFailure=yes", "-L"])
            .arg(format!("127.0.0.1:{local_port}:{remote}"));
        if let Some(port) = self.port {
            command.arg("-p").arg(port.to_string());
        }
        command.arg("--").arg(&self.destination);
        command
    }

    /// `ssh [EASEL_SSH options] -G [-p PORT] -- DESTINATION`: the configuration ssh would use.
    fn config_command(&self) -> Command {
        let mut command = Command::new(&self.program[0]);
        command.args(&self.program[1..]).arg("-G");
        if let Some(port) = self.port {
            command.arg("-p").arg(port.to_string());
        }
        command.arg("--").arg(&self.destination);
        command
    }

    fn spawn_failed(&self, error: std::io::Error) -> anyhow::Error {
        anyhow!(
            "cannot run `{}`: {error} (client up uses the OpenSSH client: install it, or point EASEL_SSH at one)",
            self.program[0]
        )
    }

    /// The host name ssh really connects to (aliases in ~/.ssh/config resolved), by `ssh -G`.
    pub fn hostname(&self) -> anyhow::Result<String> {
        let output = self
            .config_command()
            .stdin(Stdio::null())
            .output()
            .map_err(|e| self.spawn_failed(e))?;
        let text = String::from_utf8_lossy(&output.stdout);
        text.lines()
            .find_map(|line| line.strip_prefix("hostname "))
            .map(|host| host.trim().to_owned())
            .ok_or_else(|| {
                anyhow!(
                    "`ssh -G {}` named no host name: {}",
                    self.destination,
                    String::from_utf8_lossy(&output.stderr).trim()
                )
            })
    }

    /// Runs one verb of the machine's script. With `live`, the machine's progress lines show as
    /// they come (an install can take minutes); otherwise they are only shown on failure.
    pub fn run(&self, verb: &str, args: &[&str], live: bool) -> anyhow::Result<Answer> {
        let mut remote = format!("sh -s -- {}", quote(verb));
        for arg in args {
            remote.push(' ');
            remote.push_str(&quote(arg));
        }
        let mut child = self
            .command(&remote)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(if live {
                Stdio::inherit()
            } else {
                Stdio::piped()
            })
            .spawn()
            .map_err(|e| self.spawn_failed(e))?;
        // `sh -s` runs what it has read while reading on: in one brace group the whole script
        // is parsed before any of it runs, and what it runs then reads /dev/null, not the script.
        let mut stdin = child.stdin.take().expect("piped");
        let _ = stdin.write_all(format!("{{\nexec </dev/null\n{ON_MACHINE}\n}}\n").as_bytes());
        drop(stdin);
        let output = child.wait_with_output()?;
        let stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
        if !output.status.success() {
            return Err(self.failure(output.status.code(), &stderr));
        }
        let lines = String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter_map(|line| line.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        Ok(Answer { lines })
    }

    fn failure(&self, code: Option<i32>, stderr: &str) -> anyhow::Error {
        if code == Some(SSH_FAILED) {
            anyhow!(
                "ssh could not reach {}: {}\ncheck that `ssh {}` works from this terminal (keys, agent, ~/.ssh/config)",
                self.shown,
                if stderr.is_empty() {
                    "no message"
                } else {
                    stderr
                },
                self.shown
            )
        } else if stderr.is_empty() {
            anyhow!("the command on {} failed (see the lines above)", self.shown)
        } else {
            anyhow!("on {}: {stderr}", self.shown)
        }
    }

    /// Copies `local` to `remote_path` on the machine (written whole, then renamed), calling
    /// `progress` with the bytes sent so far.
    pub fn upload(
        &self,
        local: &Path,
        remote_path: &str,
        mut progress: impl FnMut(u64),
    ) -> anyhow::Result<()> {
        let folder = remote_path
            .rsplit_once('/')
            .map_or(".", |(folder, _)| folder);
        let partial = format!("{remote_path}.partial");
        let remote = format!(
            "mkdir -p {} && cat > {} && mv {} {}",
            quote(folder),
            quote(&partial),
            quote(&partial),
            quote(remote_path)
        );
        let mut file = std::fs::File::open(local)
            .with_context(|| format!("cannot read {}", local.display()))?;
        let mut child = self
            .command(&remote)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| self.spawn_failed(e))?;
        let mut stdin = child.stdin.take().expect("piped");
        let mut buffer = vec![0u8; 1 << 20];
        let mut sent = 0u64;
        let copied: std::io::Result<()> = (|| {
            loop {
                let n = file.read(&mut buffer)?;
                if n == 0 {
                    return Ok(());
                }
                stdin.write_all(&buffer[..n])?;
                sent += n as u64;
                progress(sent);
            }
        })();
        drop(stdin);
        let output = child.wait_with_output()?;
        let stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
        if !output.status.success() {
            return Err(self.failure(output.status.code(), &stderr));
        }
        copied.with_context(|| format!("copying {} to {} stopped", local.display(), self.shown))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations() {
        let cases = [
            ("gpu", ("gpu", None)),
            ("ubuntu@gpu", ("ubuntu@gpu", None)),
            (
                "ubuntu@203.0.113.7:2222",
                ("ubuntu@203.0.113.7", Some(2222)),
            ),
            ("[::1]:22", ("::1", Some(22))),
            ("root@[fe80::1]", ("root@fe80::1", None)),
            ("fe80::1", ("fe80::1", None)),
        ];
        for (text, (destination, port)) in cases {
            assert_eq!(
                parse_destination(text).unwrap(),
                (destination.to_owned(), port),
                "{text}"
            );
        }
        for bad in [
            "",
            "@gpu",
            "gpu:http",
            "[::1",
            "-oProxyCommand=x",
            "gpu:99999",
        ] {
            assert!(parse_destination(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_option_or_odd_characters_anywhere_in_the_destination_are_refused_by_part() {
        let refused = |text: &str| parse_destination(text).unwrap_err().to_string();
        let message = refused("-oProxyCommand=touch /tmp/x@gpu");
        assert!(
            message.contains("the user `-oProxyCommand=touch /tmp/x` starts with `-`"),
            "{message}"
        );
        let message = refused("-oProxyCommand=x@gpu:22");
        assert!(message.contains("starts with `-`"), "{message}");
        let message = refused("ubuntu@-oFoo");
        assert!(
            message.contains("the host `-oFoo` starts with `-`"),
            "{message}"
        );
        let message = refused("ubuntu@[-oFoo]:22");
        assert!(
            message.contains("the host `-oFoo` starts with `-`"),
            "{message}"
        );
        let message = refused("ubu ntu@gpu");
        assert!(
            message.contains("the user `ubu ntu` holds whitespace"),
            "{message}"
        );
        let message = refused("ubuntu@gpu\nProxyCommand");
        assert!(
            message.contains("the host `gpu\\nProxyCommand` holds whitespace"),
            "{message}"
        );
        let message = refused("ubuntu@gpu\tx");
        assert!(message.contains("holds whitespace"), "{message}");
        let message = refused("ubuntu@gpu\u{7}");
        assert!(message.contains("the control character"), "{message}");
        let message = refused("a;b@gpu");
        assert!(message.contains("holds `;`"), "{message}");
        let message = refused("ubuntu@gpu$(id)");
        assert!(message.contains("holds `$`"), "{message}");
        // Ordinary names, aliases and addresses still pass.
        for fine in [
            "deploy_user@gpu_box.internal",
            "svc$@gpu",
            "first.last+ci@gpu-1",
            "root@[fe80::1%eth0]:22",
            "my-alias",
        ] {
            parse_destination(fine).unwrap_or_else(|e| panic!("{fine}: {e}"));
        }
    }

    #[test]
    fn every_ssh_command_ends_its_options_before_the_destination() {
        let ssh = Ssh::new("ubuntu@gpu:2222", Some("ssh -o BatchMode=yes")).unwrap();
        let words = |command: &Command| -> Vec<String> {
            std::iter::once(command.get_program())
                .chain(command.get_args())
                .map(|word| word.to_string_lossy().into_owned())
                .collect()
        };
        assert_eq!(
            words(&ssh.command("sh -s -- 'probe'")),
            [
                "ssh",
                "-o",
                "BatchMode=yes",
                "-T",
                "-p",
                "2222",
                "--",
                "ubuntu@gpu",
                "sh -s -- 'probe'"
            ]
        );
        assert_eq!(
            words(&ssh.config_command()),
            [
                "ssh",
                "-o",
                "BatchMode=yes",
                "-G",
                "-p",
                "2222",
                "--",
                "ubuntu@gpu"
            ]
        );
        let plain = Ssh::new("gpu", None).unwrap();
        assert_eq!(
            words(&plain.command("true")),
            ["ssh", "-T", "--", "gpu", "true"]
        );
    }

    #[test]
    fn quoting_survives_the_remote_shell() {
        let output = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "printf '%s|' {} {}",
                quote("a b"),
                quote("it's ~/x")
            ))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&output.stdout), "a b|it's ~/x|");
    }
}
