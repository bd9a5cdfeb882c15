//! The access token never crosses the network in clear text unless the user says so: the real
//! `client` binary, given a plaintext address beyond loopback, refuses before it opens any
//! connection, and sends its request there only with `--allow-plaintext`,
//! `EASEL_ALLOW_PLAINTEXT=1` or `allow_plaintext = true` in client.toml.
//!
//! The address is `0.0.0.0:PORT`: not a loopback name, so the client must refuse it, yet on
//! Linux a connection to it reaches a listener on 127.0.0.1:PORT, so the test can see whether
//! one was made without any packet leaving the machine.

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

const TOKEN: &str = "a-token-that-must-stay-on-this-machine";

/// HTTP/2's connection preface: what a client sends first, right before its request headers.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// `client list` against `worker`, with nothing from the user's own environment or config.
fn list(home: &Path, worker: &str, extra: &[&str], env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_client"));
    command
        .args(["list", "--worker", worker, "--token", TOKEN])
        .args(extra)
        .env("HOME", home)
        .env("EASEL_CLIENT_CONFIG", home.join("client.toml"))
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("EASEL_WORKER")
        .env_remove("EASEL_TOKEN")
        .env_remove("EASEL_FINGERPRINT")
        .env_remove("EASEL_ALLOW_PLAINTEXT");
    for (name, value) in env {
        command.env(name, value);
    }
    command
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A listener on 127.0.0.1 that the test polls, and the `0.0.0.0` address that reaches it.
fn listener() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    (listener, format!("http://0.0.0.0:{port}"))
}

/// What `client` does first: exits without connecting to `listener` (its output), or connects
/// (the connection, with the client still running).
fn first_of(client: &mut Child, listener: &TcpListener) -> Result<Output, TcpStream> {
    loop {
        match listener.accept() {
            Ok((stream, _)) => return Err(stream),
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(error) => panic!("accept failed: {error}"),
        }
        if let Some(status) = client.try_wait().unwrap() {
            // A connection it made just before exiting would be waiting here now.
            if let Ok((stream, _)) = listener.accept() {
                return Err(stream);
            }
            let mut stderr = Vec::new();
            if let Some(mut errors) = client.stderr.take() {
                errors.read_to_end(&mut stderr).unwrap();
            }
            return Ok(Output {
                status,
                stdout: Vec::new(),
                stderr,
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn spawn(mut command: Command) -> Child {
    command
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn the_token_is_not_sent_in_clear_text_beyond_loopback_and_no_connection_is_made() {
    let home = tempfile::tempdir().unwrap();
    let (listener, worker) = listener();
    let mut client = spawn(list(home.path(), &worker, &[], &[]));
    let output = match first_of(&mut client, &listener) {
        Ok(output) => output,
        Err(_) => {
            let _ = client.kill();
            client.wait().unwrap();
            panic!("the client connected to a plaintext address beyond loopback");
        }
    };
    assert!(!output.status.success(), "the plaintext address was used");
    let message = stderr(&output);
    for expected in [
        &format!("refusing to send the access token in clear text to {worker}"),
        "--fingerprint sha256:",
        "--allow-plaintext",
        "EASEL_ALLOW_PLAINTEXT=1",
        "allow_plaintext = true",
    ] {
        assert!(
            message.contains(expected),
            "{expected:?} missing: {message}"
        );
    }
    assert!(!message.contains(TOKEN), "{message}");
}

/// One way to allow plaintext: flags, environment variables, client.toml's text.
type Way = (
    &'static [&'static str],
    &'static [(&'static str, &'static str)],
    &'static str,
);

#[test]
fn each_way_of_allowing_plaintext_lets_the_request_go() {
    let home = tempfile::tempdir().unwrap();
    let config = home.path().join("client.toml");
    let ways: [Way; 3] = [
        (&["--allow-plaintext"], &[], ""),
        (&[], &[("EASEL_ALLOW_PLAINTEXT", "1")], ""),
        (&[], &[], "allow_plaintext = true\n"),
    ];
    for (flags, env, file) in ways {
        std::fs::write(&config, file).unwrap();
        let (listener, worker) = listener();
        let mut client = spawn(list(home.path(), &worker, flags, env));
        let mut stream = match first_of(&mut client, &listener) {
            Err(stream) => stream,
            Ok(output) => panic!(
                "{flags:?} {env:?} {file:?}: the client exited without connecting: {}",
                stderr(&output)
            ),
        };
        stream.set_nonblocking(false).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        let mut preface = vec![0u8; PREFACE.len()];
        stream.read_exact(&mut preface).unwrap();
        assert_eq!(preface, PREFACE, "{flags:?} {env:?} {file:?}");
        // No worker answers here; the client has shown what it would send.
        let _ = client.kill();
        client.wait().unwrap();
    }
}
