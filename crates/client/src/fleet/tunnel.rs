//! An SSH port forward the client opens itself (`ssh -N -L`), for a worker that listens on
//! loopback: behind a cluster's login node, or a firewall that lets only SSH through. OpenSSH
//! does the work, so the user's keys, agent, jump hosts and `~/.ssh/config` apply. The forward
//! lives as long as the connection that uses it.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};

use super::ssh::Ssh;

/// How long ssh may take to log in and open the forward.
const OPEN_WITHIN: Duration = Duration::from_secs(30);

pub struct Tunnel {
    child: Child,
    /// Where the forward listens on this machine (loopback, a free port).
    pub local: SocketAddr,
}

impl Tunnel {
    /// Forwards a free loopback port here to `remote` (`host:port` as the machine at the other
    /// end of `destination` sees it), once ssh has opened it.
    pub fn open(
        destination: &str,
        ssh_command: Option<&str>,
        remote: &str,
    ) -> anyhow::Result<Tunnel> {
        let ssh = Ssh::new(destination, ssh_command)?;
        let local = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .context("no free port on this machine for the SSH tunnel")?;
        let mut child = ssh
            .forward_command(local.port(), remote)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| anyhow!("cannot run ssh for the tunnel to {destination}: {e}"))?;
        let started = Instant::now();
        loop {
            if TcpStream::connect_timeout(&local, Duration::from_millis(200)).is_ok() {
                return Ok(Tunnel { child, local });
            }
            if let Some(status) = child.try_wait()? {
                let mut said = String::new();
                if let Some(mut stderr) = child.stderr.take() {
                    use std::io::Read;
                    let _ = stderr.read_to_string(&mut said);
                }
                return Err(anyhow!(
                    "the SSH tunnel to {remote} through {destination} closed ({status}): {}",
                    said.trim()
                ));
            }
            if started.elapsed() > OPEN_WITHIN {
                let _ = child.kill();
                return Err(anyhow!(
                    "the SSH tunnel to {remote} through {destination} did not open within {} s",
                    OPEN_WITHIN.as_secs()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tunnel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
