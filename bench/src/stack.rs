//! A Chorus deployment for one measurement: a local broker and `chorus` processes (ingest, fanout, edges), each
//! its own process so its CPU time and memory can be read apart.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::Context;
use chorus::broker::{free_port, LocalBroker};
use chorus_service::credential::Secret;
use chorus_service::{parse_args, KafkaArgs};
use tokio::process::{Child, Command};

/// The `chorus` binary beside this one (`cargo build --workspace --bins` builds both).
pub fn chorus_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("the bench executable")?;
    let chorus = exe.with_file_name("chorus");
    anyhow::ensure!(
        chorus.exists(),
        "{} is missing: build it with `cargo build --release --workspace --bins` (or without --release)",
        chorus.display()
    );
    Ok(chorus)
}

/// One `chorus` process.
#[derive(Debug)]
pub struct Role {
    child: Child,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
}

impl Role {
    pub fn pid(&self) -> u32 {
        self.child.id().unwrap_or(0)
    }
}

fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// The internal token of this run's fanouts and edges, fresh per bench process.
fn internal_token() -> &'static str {
    static TOKEN: OnceLock<Secret> = OnceLock::new();
    TOKEN.get_or_init(Secret::generate).expose()
}

async fn spawn(kafka: &KafkaArgs, role: &str, flags: &[String]) -> anyhow::Result<Role> {
    let addr = local(free_port()?);
    let admin = local(free_port()?);
    let mut command = Command::new(chorus_binary()?);
    command
        .arg("--log=warn")
        .arg(role)
        .arg(format!("--kafka={}", kafka.brokers))
        .arg(format!("--topic-prefix={}", kafka.topic_prefix))
        .arg(format!("--partitions={}", kafka.partitions))
        .arg(format!("--admin-listen={admin}"))
        .args(flags)
        .kill_on_drop(true);
    if matches!(role, "edge" | "fanout") {
        // In the environment, not on the command line other users can read.
        command.env("CHORUS_INTERNAL_TOKEN", internal_token());
    }
    match role {
        "edge" => {
            command
                .arg(format!("--listen={addr}"))
                .arg(format!("--internal-listen={}", local(free_port()?)));
        }
        "ingest" => {
            // The load comes from many users named in `x-user-id`, as from a gateway.
            command
                .arg(format!("--listen={addr}"))
                .arg("--auth=trusted-header");
        }
        _ => {}
    }
    let child = command
        .spawn()
        .with_context(|| format!("start chorus {role}"))?;
    chorus::stack::wait_ready(admin, Duration::from_secs(60)).await?;
    Ok(Role { child, addr, admin })
}

/// Reads one metric from an admin port's `/metrics` (summed over its label sets).
pub async fn metric(admin: SocketAddr, name: &str) -> f64 {
    let Ok(response) = reqwest::get(format!("http://{admin}/metrics")).await else {
        return 0.0;
    };
    let text = response.text().await.unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter(|l| {
            let rest = &l[name.len()..];
            rest.starts_with(' ') || rest.starts_with('{')
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Waits (at most `timeout`) until a metric satisfies `ok`.
pub async fn wait_metric(
    admin: SocketAddr,
    name: &str,
    ok: impl Fn(f64) -> bool,
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let value = metric(admin, name).await;
        if ok(value) {
            return Ok(());
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "{name} on {admin} stayed at {value}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A broker and the roles: one ingest, one fanout, `edges` edges with `edge_flags`.
#[derive(Debug)]
pub struct Stack {
    pub broker: LocalBroker,
    pub kafka: KafkaArgs,
    pub ingest: Role,
    pub fanout: Role,
    pub edges: Vec<Role>,
}

impl Stack {
    pub async fn start(edges: usize, edge_flags: &[String]) -> anyhow::Result<Stack> {
        let broker = LocalBroker::start(None, "chorus-bench").await?;
        let prefix = format!("bench{}.", std::process::id());
        let kafka: KafkaArgs = parse_args(&[
            "--kafka",
            &broker.bootstrap(),
            "--topic-prefix",
            &prefix,
            "--partitions",
            "4",
        ])?;
        kafka.ensure_topics(Duration::from_secs(10)).await?;
        // Measurements load these on purpose: no rate limit, no comment budget.
        let ingest = spawn(&kafka, "ingest", &["--rate-limits=off".to_owned()]).await?;
        let mut edge_roles = Vec::new();
        for _ in 0..edges {
            let mut flags = vec![
                "--max-connections=20000".to_owned(),
                "--max-connections-per-address=20000".to_owned(),
            ];
            flags.extend_from_slice(edge_flags);
            edge_roles.push(spawn(&kafka, "edge", &flags).await?);
        }
        let fanout = spawn(
            &kafka,
            "fanout",
            &[
                "--comment-budget=0".to_owned(),
                format!("--group=bench-{prefix}"),
            ],
        )
        .await?;
        for edge in &edge_roles {
            wait_metric(
                edge.admin,
                "chorus_edge_push_sessions",
                |v| v >= 1.0,
                Duration::from_secs(30),
            )
            .await?;
        }
        Ok(Stack {
            broker,
            kafka,
            ingest,
            fanout,
            edges: edge_roles,
        })
    }

    /// Where a publisher posts comments to `stream` through this stack's ingest.
    pub fn publish_target(&self, stream: &str) -> crate::publish::Target {
        crate::publish::Target::Chorus {
            ingest: format!("http://{}", self.ingest.addr),
            stream: stream.to_owned(),
        }
    }

    /// The viewer WebSocket URL of a stream on edge `i`.
    pub fn ws_url(&self, i: usize, stream: &str) -> String {
        format!("ws://{}/v1/streams/{stream}/ws", self.edges[i].addr)
    }

    pub fn broker_pid(&self) -> u32 {
        self.broker.pid()
    }

    pub async fn stop(self) {
        drop(self.edges);
        drop(self.fanout);
        drop(self.ingest);
        self.broker.stop().await;
    }
}
