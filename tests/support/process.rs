//! A role as its own `chorus` process, for tests that kill, freeze or measure it.

use std::net::SocketAddr;
use std::time::Duration;

use chorus::stack;

use super::{INTERNAL_TOKEN, WAIT};

/// A role running as its own `chorus` process, so a test can kill it without any clean shutdown.
pub struct Process {
    child: tokio::process::Child,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
}

impl Process {
    /// Starts `chorus <role> <args>` with fresh local ports and waits until its admin port answers ready.
    pub async fn start(role: &str, args: &[String]) -> Process {
        let port = || chorus::broker::free_port().expect("free port");
        let addr = SocketAddr::from(([127, 0, 0, 1], port()));
        let admin = SocketAddr::from(([127, 0, 0, 1], port()));
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_chorus"));
        command
            .arg(format!(
                "--log={}",
                std::env::var("CHORUS_TEST_PROCESS_LOG").unwrap_or_else(|_| "warn".into())
            ))
            .arg(role)
            .arg(format!("--admin-listen={admin}"))
            .args(args)
            .kill_on_drop(true);
        if matches!(role, "edge" | "fanout") {
            // In the environment, as a deployment would pass it (a flag in `args` wins).
            command.env("CHORUS_INTERNAL_TOKEN", INTERNAL_TOKEN);
        }
        match role {
            "edge" => {
                command
                    .arg(format!("--listen={addr}"))
                    .arg(format!("--internal-listen=127.0.0.1:{}", port()));
            }
            "ingest" => {
                command.arg(format!("--listen={addr}"));
                if !args
                    .iter()
                    .any(|a| a.starts_with("--jwt") || a.starts_with("--auth"))
                {
                    command.arg("--auth=trusted-header");
                }
            }
            "fanout" if !args.iter().any(|a| a.starts_with("--comment-budget")) => {
                command.arg("--comment-budget=0");
            }
            _ => {}
        }
        let child = command.spawn().expect("spawn chorus");
        stack::wait_ready(admin, WAIT).await.expect("process ready");
        Process { child, addr, admin }
    }

    /// Resident memory of the process, in KiB (from /proc).
    pub fn rss_kib(&self) -> u64 {
        self.child.id().map_or(0, chorus::procstat::rss_kib)
    }

    /// CPU time the process used so far (user and system), from /proc.
    pub fn cpu(&self) -> Duration {
        self.child
            .id()
            .map_or(Duration::ZERO, chorus::procstat::cpu)
    }

    /// SIGKILL: no clean shutdown, no tombstones, no group leave.
    /// Freezes the process (SIGSTOP), or thaws it (SIGCONT): alive but unresponsive, as in a long GC pause
    /// or a partition.
    pub fn freeze(&self, frozen: bool) {
        let pid = self.child.id().expect("running").to_string();
        let signal = if frozen { "-STOP" } else { "-CONT" };
        let status = std::process::Command::new("kill")
            .args([signal, &pid])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {signal} {pid}");
    }

    pub async fn kill(mut self) {
        self.child.start_kill().expect("kill");
        let _ = self.child.wait().await;
    }
}
