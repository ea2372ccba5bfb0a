//! Shared by the integration tests: a real broker per test (or `CHORUS_TEST_KAFKA`), unique topic names, the
//! roles running in-process on port 0, and a viewer client. Every wait is bounded.

// Each test binary uses part of what is here.
#![allow(dead_code, unused_imports)]

pub mod ingest;
pub mod load;
pub mod process;
pub mod proxy;
pub mod regions;
pub mod resume;
pub mod sse;
pub mod stored;
pub mod viewer;

pub use ingest::{post, start_ingest, Answer, Ingest};
pub use process::Process;
pub use sse::SseReader;
pub use stored::{read_events, read_from_start, stored_before};
pub use viewer::Viewer;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use chorus::broker::LocalBroker;
use chorus::stack::{self, Role};
use chorus_service::{parse_args, KafkaArgs};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

pub const WAIT: Duration = Duration::from_secs(20);

/// The internal token every test's fanouts and edges share (`--internal-token`).
pub const INTERNAL_TOKEN: &str = "chorus-test-internal-token";

/// A Kafka cluster for one test: its own Tansu process, or a shared cluster with a unique topic prefix.
pub struct TestKafka {
    _broker: Option<LocalBroker>,
    pub args: KafkaArgs,
}

impl TestKafka {
    pub async fn start() -> TestKafka {
        let prefix = format!("t{}.", uuid::Uuid::new_v4().simple());
        match std::env::var("CHORUS_TEST_KAFKA") {
            Ok(bootstrap) => Self::on(None, &bootstrap, &prefix, "local").await,
            Err(_) => Self::start_region(&prefix, "local").await,
        }
    }

    /// A region of its own whose clients all reach its broker through a [`proxy::Proxy`], to take the
    /// cluster away and bring it back.
    pub async fn start_region_behind_proxy(
        prefix: &str,
        region: &str,
    ) -> (TestKafka, proxy::Proxy) {
        let port = || chorus::broker::free_port().expect("free port");
        let (real, advertised) = (port(), port());
        let broker = LocalBroker::start_advertising(
            Some(real),
            Some(advertised),
            &format!("chorus-{region}"),
        )
        .await
        .expect("start a local broker (scripts/broker)");
        let proxy = proxy::Proxy::start(
            SocketAddr::from(([127, 0, 0, 1], advertised)),
            SocketAddr::from(([127, 0, 0, 1], real)),
        )
        .await;
        let bootstrap = broker.bootstrap();
        (
            Self::on(Some(broker), &bootstrap, prefix, region).await,
            proxy,
        )
    }

    /// A region of its own: always its own broker, with the given topic prefix and region name.
    pub async fn start_region(prefix: &str, region: &str) -> TestKafka {
        let broker = LocalBroker::start(None, &format!("chorus-{region}"))
            .await
            .expect("start a local broker (scripts/broker)");
        let bootstrap = broker.bootstrap();
        Self::on(Some(broker), &bootstrap, prefix, region).await
    }

    async fn on(
        broker: Option<LocalBroker>,
        bootstrap: &str,
        prefix: &str,
        region: &str,
    ) -> TestKafka {
        chorus_service::telemetry::init("warn", false);
        let args: KafkaArgs = parse_args(&[
            "--kafka",
            bootstrap,
            "--topic-prefix",
            prefix,
            "--partitions",
            "4",
            "--region",
            region,
        ])
        .expect("kafka args");
        args.ensure_topics(Duration::from_secs(10))
            .await
            .expect("create topics");
        TestKafka {
            _broker: broker,
            args,
        }
    }
}

/// The whole path in this process: one ingest, `fanouts` fanout instances, `edges` edges.
pub struct Cluster {
    pub kafka: TestKafka,
    pub shutdown: CancellationToken,
    pub ingest: Role,
    pub fanouts: Vec<Role>,
    pub edges: Vec<Role>,
    pub http: reqwest::Client,
    /// Extra flags of every fanout started by [`Cluster::add_fanout`].
    pub fanout_args: Vec<String>,
    /// Stops every role when the cluster is dropped without [`Cluster::stop`] (a test that failed), so that
    /// no role's blocking consumer thread keeps the test's runtime from ending.
    _stop_on_drop: tokio_util::sync::DropGuard,
}

const LOCAL: &str = "127.0.0.1:0";

impl Cluster {
    pub async fn start(edges: usize, fanouts: usize) -> Cluster {
        Self::start_with(edges, fanouts, &[]).await
    }

    /// Starts the roles (extra edge flags in `edge_args`) and waits until fanout is ready and connected to
    /// every edge.
    pub async fn start_with(edges: usize, fanouts: usize, edge_args: &[&str]) -> Cluster {
        Self::start_on(TestKafka::start().await, edges, fanouts, edge_args).await
    }

    pub async fn start_on(
        kafka: TestKafka,
        edges: usize,
        fanouts: usize,
        edge_args: &[&str],
    ) -> Cluster {
        Self::start_full(kafka, edges, fanouts, edge_args, &[]).await
    }

    pub async fn start_full(
        kafka: TestKafka,
        edges: usize,
        fanouts: usize,
        edge_args: &[&str],
        fanout_args: &[String],
    ) -> Cluster {
        let shutdown = CancellationToken::new();
        // Rate limits have tests of their own; the other tests load ingest from one address.
        let mut ingest_args = vec![
            "--listen",
            LOCAL,
            "--admin-listen",
            LOCAL,
            "--rate-limits=off",
            "--auth=trusted-header",
        ];
        // The regions fanout reads mirrored events of: their bans and settings apply here too.
        let mirrored = fanout_args
            .iter()
            .find(|a| a.starts_with("--mirrored-regions="));
        ingest_args.extend(mirrored.map(String::as_str));
        let ingest = stack::spawn_ingest(
            parse_args(&ingest_args).expect("ingest args"),
            kafka.args.clone(),
            shutdown.child_token(),
        )
        .await
        .expect("start ingest");
        let mut cluster = Cluster {
            kafka,
            _stop_on_drop: shutdown.clone().drop_guard(),
            shutdown,
            ingest,
            fanouts: Vec::new(),
            edges: Vec::new(),
            http: reqwest::Client::new(),
            fanout_args: fanout_args.to_vec(),
        };
        for _ in 0..edges {
            cluster.add_edge(edge_args).await;
        }
        for _ in 0..fanouts {
            cluster.add_fanout().await;
        }
        stack::wait_ready(cluster.ingest.admin, WAIT)
            .await
            .expect("ingest ready");
        for fanout in &cluster.fanouts {
            stack::wait_ready(fanout.admin, WAIT)
                .await
                .expect("fanout ready");
        }
        for edge in &cluster.edges {
            wait_metric(edge.admin, "chorus_edge_push_sessions", |v| {
                v >= fanouts as f64
            })
            .await;
        }
        cluster
    }

    pub async fn add_edge(&mut self, extra: &[&str]) -> usize {
        let token = format!("--internal-token={INTERNAL_TOKEN}");
        let mut args = vec![
            "--listen",
            LOCAL,
            "--internal-listen",
            LOCAL,
            "--admin-listen",
            LOCAL,
            "--subscription-linger-ms",
            "100",
            &token,
        ];
        if !extra.iter().any(|a| a.starts_with("--lease-ttl-ms")) {
            // Short, so the lease tests are quick.
            args.push("--lease-ttl-ms=3000");
        }
        if !extra.iter().any(|a| a.starts_with("--drain-ms")) {
            // Tests stop their edges at once unless the drain itself is under test.
            args.push("--drain-ms=50");
        }
        args.extend_from_slice(extra);
        let edge = stack::spawn_edge(
            parse_args(&args).expect("edge args"),
            self.kafka.args.clone(),
            self.shutdown.child_token(),
        )
        .await
        .expect("start edge");
        self.edges.push(edge);
        self.edges.len() - 1
    }

    pub async fn add_fanout(&mut self) -> usize {
        let group = self.fanout_group();
        let token = format!("--internal-token={INTERNAL_TOKEN}");
        let mut args = vec!["--admin-listen", LOCAL, "--group", &group, &token];
        args.extend(self.fanout_args.iter().map(String::as_str));
        if !args.iter().any(|a| a.starts_with("--comment-budget")) {
            // Tests count every comment; the budget has tests of its own.
            args.push("--comment-budget=0");
        }
        let fanout = stack::spawn_fanout(
            parse_args(&args).expect("fanout args"),
            self.kafka.args.clone(),
            self.shutdown.child_token(),
        )
        .await
        .expect("start fanout");
        self.fanouts.push(fanout);
        self.fanouts.len() - 1
    }

    pub fn viewer_url(&self, edge: usize, stream: &str) -> String {
        format!("ws://{}/v1/streams/{stream}/ws", self.edges[edge].addr)
    }

    /// Connects a viewer and waits for its `hello`.
    pub async fn viewer(&self, edge: usize, stream: &str) -> Viewer {
        Viewer::connect(&self.viewer_url(edge, stream)).await
    }

    pub fn ingest_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.ingest.addr)
    }

    /// Posts a comment as `user` and returns the 202 body.
    pub async fn comment(&self, stream: &str, user: &str, text: &str) -> Value {
        post(
            &self.http,
            self.ingest_url(&format!("/v1/streams/{stream}/comments")),
        )
        .user(user)
        .text(text)
        .accepted()
        .await
    }

    pub async fn like(&self, stream: &str, user: &str) -> Value {
        post(
            &self.http,
            self.ingest_url(&format!("/v1/streams/{stream}/likes")),
        )
        .user(user)
        .accepted()
        .await
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        for role in self
            .edges
            .into_iter()
            .chain(self.fanouts)
            .chain([self.ingest])
        {
            let _ = tokio::time::timeout(WAIT, role.task).await;
        }
    }

    /// Stops every role cleanly and starts a fresh set on the same broker, topics and fanout group.
    pub async fn restart(self, edges: usize, fanouts: usize) -> Cluster {
        let kafka = self.kafka;
        self.shutdown.cancel();
        let roles = self.edges.into_iter().chain(self.fanouts);
        for role in roles.chain([self.ingest]) {
            let _ = tokio::time::timeout(WAIT, role.task).await;
        }
        Cluster::start_on(kafka, edges, fanouts, &[]).await
    }

    /// Arguments that point a `chorus` process at this test's cluster.
    pub fn kafka_flags(&self) -> Vec<String> {
        let k = &self.kafka.args;
        vec![
            format!("--kafka={}", k.brokers),
            format!("--topic-prefix={}", k.topic_prefix),
            format!("--partitions={}", k.partitions),
            format!("--region={}", k.region),
        ]
    }

    pub fn fanout_group(&self) -> String {
        format!("fanout-{}", self.kafka.args.topic_prefix)
    }
}

/// What an admin port's `/metrics` says.
async fn scrape(admin: SocketAddr) -> String {
    reqwest::get(format!("http://{admin}/metrics"))
        .await
        .expect("scrape")
        .text()
        .await
        .expect("metrics body")
}

/// Reads a metric (summed over its label sets) from an admin port.
pub async fn metric(admin: SocketAddr, name: &str) -> f64 {
    let body = scrape(admin).await;
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.split(['{', ' ']).next() == Some(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Reads one label set of a metric (`labels` as the exposition writes them, `outcome="resumed"`).
pub async fn metric_of(admin: SocketAddr, name: &str, labels: &str) -> f64 {
    let body = scrape(admin).await;
    let series = format!("{name}{{{labels}}} ");
    body.lines()
        .filter_map(|l| l.strip_prefix(&series)?.parse::<f64>().ok())
        .sum()
}

/// Waits until a metric satisfies `ok` (polled every 20 ms, at most [`WAIT`]).
pub async fn wait_metric(admin: SocketAddr, name: &str, ok: impl Fn(f64) -> bool) -> f64 {
    let started = Instant::now();
    loop {
        let value = metric(admin, name).await;
        if ok(value) {
            return value;
        }
        assert!(
            started.elapsed() < WAIT,
            "{name} on {admin} stayed at {value}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The `p` quantile (0 to 1) of `sorted`, nearest rank.
pub fn percentile<T: Copy>(sorted: &[T], p: f64) -> T {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}
