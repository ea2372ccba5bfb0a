//! A local Kafka-compatible broker (Tansu, memory engine) for `chorus dev` and the tests, started through
//! `scripts/broker`, the same script the README and CI use. It is killed when dropped.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

/// How long a started broker may take to open its port.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("cannot run {script}: {source}")]
    Spawn {
        script: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`scripts/broker install` failed ({0}); see its output above")]
    Install(std::process::ExitStatus),
    #[error("the broker exited before opening its port ({0})")]
    Exited(std::process::ExitStatus),
    #[error("the broker did not open {0} within {READY_TIMEOUT:?}")]
    NotReady(SocketAddr),
    #[error("no free local port: {0}")]
    NoPort(#[source] std::io::Error),
}

#[derive(Debug)]
pub struct LocalBroker {
    child: Child,
    /// Where clients connect: the broker's port, or the address it advertises instead.
    addr: SocketAddr,
}

/// `scripts/broker`: `$CHORUS_BROKER_SCRIPT`, else the one in this source tree.
pub fn script() -> PathBuf {
    std::env::var_os("CHORUS_BROKER_SCRIPT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/broker")))
}

impl LocalBroker {
    /// Installs the broker if needed, starts it on `port` (a free one when `None`) and waits for its port.
    pub async fn start(port: Option<u16>, cluster_id: &str) -> Result<Self, BrokerError> {
        Self::start_advertising(port, None, cluster_id).await
    }

    /// As [`LocalBroker::start`], but clients are told to connect to `127.0.0.1:advertised` (when given), where
    /// something else (a proxy) forwards to the broker.
    pub async fn start_advertising(
        port: Option<u16>,
        advertised: Option<u16>,
        cluster_id: &str,
    ) -> Result<Self, BrokerError> {
        let script = script();
        let spawn_error = |source| BrokerError::Spawn {
            script: script.display().to_string(),
            source,
        };
        let status = Command::new("bash")
            .arg(&script)
            .arg("install")
            .status()
            .await
            .map_err(spawn_error)?;
        if !status.success() {
            return Err(BrokerError::Install(status));
        }
        let port = match port {
            Some(port) => port,
            None => free_port()?,
        };
        let listen = SocketAddr::from(([127, 0, 0, 1], port));
        let addr = SocketAddr::from(([127, 0, 0, 1], advertised.unwrap_or(port)));
        let mut child = Command::new("bash")
            .arg(&script)
            .arg("start")
            .arg(port.to_string())
            .arg(cluster_id)
            .arg(addr.port().to_string())
            .env_remove("RUST_LOG")
            // A group of its own: the Ctrl-C a terminal sends to `chorus dev` must not stop the broker before
            // the roles that use it have stopped; `chorus dev` stops it last.
            .process_group(0)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(spawn_error)?;
        let started = Instant::now();
        loop {
            if tokio::net::TcpStream::connect(listen).await.is_ok() {
                return Ok(LocalBroker { child, addr });
            }
            if let Ok(Some(status)) = child.try_wait() {
                return Err(BrokerError::Exited(status));
            }
            if started.elapsed() > READY_TIMEOUT {
                return Err(BrokerError::NotReady(listen));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The broker's process id (for its CPU time and memory).
    pub fn pid(&self) -> u32 {
        self.child.id().unwrap_or(0)
    }

    /// The bootstrap address, `127.0.0.1:PORT`.
    pub fn bootstrap(&self) -> String {
        self.addr.to_string()
    }

    /// Stops the broker and waits for it to exit.
    pub async fn stop(mut self) {
        if let Err(error) = self.child.kill().await {
            tracing::warn!(%error, "could not stop the local broker");
        }
    }
}

/// A port that was free a moment ago (the broker needs a real port number in its advertised address).
pub fn free_port() -> Result<u16, BrokerError> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(BrokerError::NoPort)?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(BrokerError::NoPort)
}
