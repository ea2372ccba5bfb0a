//! Runs the roles in this process on sockets the caller chose, under one shutdown token. `chorus dev` runs one
//! of each; tests run as many as they need (two edges, two fanouts) on port 0.

use std::net::SocketAddr;

use chorus_edge::{EdgeConfig, EdgeListeners};
use chorus_fanout::FanoutConfig;
use chorus_ingest::IngestConfig;
use chorus_service::KafkaArgs;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A role running in this process.
#[derive(Debug)]
pub struct Role {
    /// Its public address (ingest API, edge viewers), or its admin address for fanout.
    pub addr: SocketAddr,
    /// Its admin address (metrics, health).
    pub admin: SocketAddr,
    /// An edge's internal address (where fanout pushes).
    pub internal: Option<SocketAddr>,
    /// Cancelling it stops this role alone.
    pub shutdown: CancellationToken,
    pub task: JoinHandle<anyhow::Result<()>>,
}

async fn bind(addr: SocketAddr) -> anyhow::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
    let local = listener.local_addr()?;
    Ok((listener, local))
}

pub async fn spawn_ingest(
    config: IngestConfig,
    kafka: KafkaArgs,
    shutdown: CancellationToken,
) -> anyhow::Result<Role> {
    let (listener, addr) = bind(config.listen).await?;
    let (admin_listener, admin) = bind(config.admin_listen).await?;
    let token = shutdown.clone();
    let task = tokio::spawn(async move {
        chorus_ingest::run(config, kafka, listener, admin_listener, token)
            .await
            .map_err(anyhow::Error::from)
    });
    Ok(Role {
        addr,
        admin,
        internal: None,
        shutdown,
        task,
    })
}

pub async fn spawn_edge(
    config: EdgeConfig,
    kafka: KafkaArgs,
    shutdown: CancellationToken,
) -> anyhow::Result<Role> {
    let (public, addr) = bind(config.listen).await?;
    let (internal, internal_addr) = bind(config.internal_listen).await?;
    let (admin_listener, admin) = bind(config.admin_listen).await?;
    let token = shutdown.clone();
    let listeners = EdgeListeners {
        public,
        internal,
        admin: admin_listener,
    };
    let task = tokio::spawn(async move {
        chorus_edge::run(config, kafka, listeners, token)
            .await
            .map_err(anyhow::Error::from)
    });
    Ok(Role {
        addr,
        admin,
        internal: Some(internal_addr),
        shutdown,
        task,
    })
}

/// A role that serves only its admin port: binds it and runs `run(admin listener, token)`.
async fn spawn_admin_only<F, Fut, E>(
    admin_listen: SocketAddr,
    shutdown: CancellationToken,
    run: F,
) -> anyhow::Result<Role>
where
    F: FnOnce(TcpListener, CancellationToken) -> Fut,
    Fut: std::future::Future<Output = Result<(), E>> + Send + 'static,
    E: Into<anyhow::Error>,
{
    let (admin_listener, admin) = bind(admin_listen).await?;
    let running = run(admin_listener, shutdown.clone());
    let task = tokio::spawn(async move { running.await.map_err(Into::into) });
    Ok(Role {
        addr: admin,
        admin,
        internal: None,
        shutdown,
        task,
    })
}

pub async fn spawn_fanout(
    config: FanoutConfig,
    kafka: KafkaArgs,
    shutdown: CancellationToken,
) -> anyhow::Result<Role> {
    spawn_admin_only(config.admin_listen, shutdown, |admin, token| {
        chorus_fanout::run(config, kafka, admin, token)
    })
    .await
}

pub async fn spawn_analytics(
    config: chorus_analytics::AnalyticsConfig,
    kafka: KafkaArgs,
    shutdown: CancellationToken,
) -> anyhow::Result<Role> {
    spawn_admin_only(config.admin_listen, shutdown, |admin, token| async move {
        chorus_analytics::run(config, kafka, admin, token)
            .await
            .map(|_| ())
    })
    .await
}

pub async fn spawn_mirror(
    config: chorus_mirror::MirrorConfig,
    kafka: KafkaArgs,
    shutdown: CancellationToken,
) -> anyhow::Result<Role> {
    spawn_admin_only(config.admin_listen, shutdown, |admin, token| {
        chorus_mirror::run(config, kafka, admin, token)
    })
    .await
}

/// Waits until `GET http://{admin}/readyz` answers 200, polling every 50 ms, for at most `timeout`.
pub async fn wait_ready(admin: SocketAddr, timeout: std::time::Duration) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let url = format!("http://{admin}/readyz");
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last = String::new();
    while tokio::time::Instant::now() < deadline {
        match client.get(&url).send().await {
            Ok(response) if response.status().is_success() => return Ok(()),
            Ok(response) => last = response.text().await.unwrap_or_default(),
            Err(error) => last = error.to_string(),
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    anyhow::bail!("{url} not ready within {timeout:?}: {}", last.trim())
}
