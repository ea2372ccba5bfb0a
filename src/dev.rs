//! `chorus dev`: the whole path on one machine, for a newcomer. Starts a local broker per region unless one is
//! given, then ingest, fanout and edge per region in this process (and with `--regions 2` or more, a mirror
//! between every two regions), prints where everything is, and stops it all on Ctrl-C.

use std::time::Duration;

use chorus::broker::LocalBroker;
use chorus::demo::DemoArgs;
use chorus::stack::{self, Role};
use chorus_service::credential::Secret;
use chorus_service::{parse_args, KafkaArgs};
use tokio_util::sync::CancellationToken;

/// Region names used by `--regions N`, in order.
const REGION_NAMES: [&str; 4] = ["eu", "us", "ap", "sa"];

#[derive(Debug, clap::Args)]
pub struct DevArgs {
    /// Use this Kafka cluster instead of starting a local broker (one region only).
    #[arg(long, env = "CHORUS_KAFKA")]
    kafka: Option<String>,
    /// Regions to run (1 to 4), each with its own broker and roles, mirrored both ways.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=4))]
    regions: u16,
    /// Port of the (first region's) local broker; region i uses this + i.
    #[arg(long, default_value_t = 9092)]
    broker_port: u16,
    /// Port of the (first region's) ingest API; region i uses this + 100 i.
    #[arg(long, default_value_t = 8080)]
    ingest_port: u16,
    /// Port viewers connect to (first region); region i uses this + 100 i.
    #[arg(long, default_value_t = 8081)]
    edge_port: u16,
    /// Port fanout pushes to the (first region's) edge on; region i uses this + 100 i.
    #[arg(long, default_value_t = 8091)]
    edge_internal_port: u16,
    /// First admin port (`/metrics`, `/healthz`, `/readyz`): ingest uses it, edge the next, fanout the one
    /// after; region i adds 10 i.
    #[arg(long, default_value_t = 9180)]
    admin_port: u16,
    /// Port of the demo page (`chorus demo`), which posts to the first region's ingest and watches its edge.
    #[arg(long, default_value_t = 8090)]
    demo_port: u16,
}

struct Region {
    name: String,
    kafka: KafkaArgs,
    roles: Vec<(&'static str, Role)>,
    broker: Option<LocalBroker>,
}

pub async fn run(args: DevArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    if args.kafka.is_some() && args.regions > 1 {
        anyhow::bail!(
            "--kafka names one cluster; --regions needs a broker per region (leave --kafka out)"
        );
    }
    let mut regions = start_clusters(&args).await?;
    let all: Vec<String> = regions.iter().map(|r| r.name.clone()).collect();
    // The link from fanout to edge takes only this process's own fanouts: a fresh secret per run.
    let token = Secret::generate();
    for (i, region) in regions.iter_mut().enumerate() {
        let offset = u16::try_from(i)?;
        region.roles = start_roles(&args, offset, region, &all, &token, &shutdown).await?;
    }
    let mirrors = start_mirrors(&regions, &shutdown).await?;
    for region in &regions {
        for (_, role) in &region.roles {
            stack::wait_ready(role.admin, Duration::from_secs(30)).await?;
        }
    }
    let demo = start_demo(&args, &regions, &shutdown).await?;
    print_banner(&regions, &mirrors, &demo);
    shutdown.cancelled().await;
    eprintln!("stopping ...");
    let roles = regions
        .iter_mut()
        .flat_map(|r| r.roles.drain(..))
        .chain(mirrors.into_iter().map(|(_, m)| ("mirror", m)));
    for (name, role) in roles {
        match tokio::time::timeout(Duration::from_secs(10), role.task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(error))) => eprintln!("{name} stopped with an error: {error:#}"),
            Ok(Err(error)) => eprintln!("{name} task failed: {error}"),
            Err(_) => eprintln!("{name} did not stop within 10 s"),
        }
    }
    for region in regions {
        if let Some(broker) = region.broker {
            broker.stop().await;
        }
    }
    eprintln!("stopped.");
    Ok(())
}

/// A cluster per region (a local broker each, unless `--kafka` names one), with Chorus's topics.
async fn start_clusters(args: &DevArgs) -> anyhow::Result<Vec<Region>> {
    let names = &REGION_NAMES[..usize::from(args.regions)];
    let single = names.len() == 1;
    let mut regions = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let offset = u16::try_from(i)?;
        let broker = match &args.kafka {
            Some(_) => None,
            None => {
                let port = args.broker_port + offset;
                eprintln!("starting a local broker for region {name} on 127.0.0.1:{port} ...");
                Some(LocalBroker::start(Some(port), &format!("chorus-{name}")).await?)
            }
        };
        let bootstrap = match (&args.kafka, &broker) {
            (Some(kafka), _) => kafka.clone(),
            (None, Some(broker)) => broker.bootstrap(),
            (None, None) => unreachable!("a broker is started when none is given"),
        };
        let region = if single { "local" } else { name };
        let kafka: KafkaArgs = parse_args(&["--kafka", &bootstrap, "--region", region])?;
        kafka.ensure_topics(Duration::from_secs(10)).await?;
        regions.push(Region {
            name: region.to_owned(),
            kafka,
            roles: Vec::new(),
            broker,
        });
    }
    Ok(regions)
}

/// The `offset`th region's ingest, edge and fanout (reading the mirrored events of the other regions), on
/// the base ports moved by the offset.
async fn start_roles(
    args: &DevArgs,
    offset: u16,
    region: &Region,
    all: &[String],
    token: &Secret,
    shutdown: &CancellationToken,
) -> anyhow::Result<Vec<(&'static str, Role)>> {
    let port = |base: u16, step: u16| format!("127.0.0.1:{}", base + step * offset);
    let token = format!("--internal-token={}", token.expose());
    let others: Vec<&str> = all
        .iter()
        .filter(|n| **n != region.name)
        .map(String::as_str)
        .collect();
    let mirrored = format!("--mirrored-regions={}", others.join(","));
    // The demo page's origin may post and read SSE and long-poll.
    let origins = format!("--allowed-origins={}", demo_origin(args));
    let kafka = region.kafka.clone();
    let (ingest_listen, ingest_admin) = (port(args.ingest_port, 100), port(args.admin_port, 10));
    let mut ingest_args = vec![
        "--listen",
        &ingest_listen,
        "--admin-listen",
        &ingest_admin,
        // No gateway on a developer's machine: the printed curl lines name their user with `x-user-id`.
        "--auth",
        "trusted-header",
        &origins,
    ];
    if !others.is_empty() {
        ingest_args.push(&mirrored);
    }
    let ingest = stack::spawn_ingest(
        parse_args(&ingest_args)?,
        kafka.clone(),
        shutdown.child_token(),
    )
    .await?;
    let edge = stack::spawn_edge(
        parse_args(&[
            "--listen",
            &port(args.edge_port, 100),
            "--internal-listen",
            &port(args.edge_internal_port, 100),
            "--admin-listen",
            &port(args.admin_port + 1, 10),
            "--subscription-linger-ms",
            "500",
            "--drain-ms",
            "1000",
            &token,
            &origins,
        ])?,
        kafka.clone(),
        shutdown.child_token(),
    )
    .await?;
    let fanout_admin = port(args.admin_port + 2, 10);
    let mut fanout_args = vec!["--admin-listen", &fanout_admin, &token];
    if !others.is_empty() {
        fanout_args.push(&mirrored);
    }
    let fanout =
        stack::spawn_fanout(parse_args(&fanout_args)?, kafka, shutdown.child_token()).await?;
    Ok(vec![("ingest", ingest), ("edge", edge), ("fanout", fanout)])
}

fn demo_origin(args: &DevArgs) -> String {
    format!("http://127.0.0.1:{}", args.demo_port)
}

/// The demo page, posting to the first region's ingest and watching its edge; its URL.
async fn start_demo(
    args: &DevArgs,
    regions: &[Region],
    shutdown: &CancellationToken,
) -> anyhow::Result<String> {
    let Some([(_, ingest), (_, edge), _]) = regions.first().map(|r| r.roles.as_slice()) else {
        anyhow::bail!("the first region has no roles");
    };
    let demo = DemoArgs {
        listen: ([127, 0, 0, 1], args.demo_port).into(),
        ingest_url: format!("http://{}", ingest.addr),
        edge_url: vec![format!("http://{}", edge.addr)],
        stream: "demo".to_owned(),
    };
    let listener = tokio::net::TcpListener::bind(demo.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {} for the demo page: {e}", demo.listen))?;
    let shutdown = shutdown.child_token();
    tokio::spawn(async move {
        if let Err(error) = chorus::demo::serve(listener, &demo, shutdown).await {
            eprintln!("the demo page stopped: {error:#}");
        }
    });
    Ok(format!("{}/", demo_origin(args)))
}

/// A mirror from every region to every other.
async fn start_mirrors(
    regions: &[Region],
    shutdown: &CancellationToken,
) -> anyhow::Result<Vec<(String, Role)>> {
    let mut mirrors = Vec::new();
    for source in regions {
        for target in regions.iter().filter(|t| t.name != source.name) {
            let config = parse_args(&[
                "--source-kafka",
                &source.kafka.brokers,
                "--source-region",
                &source.name,
                "--admin-listen",
                "127.0.0.1:0",
            ])?;
            let mirror =
                stack::spawn_mirror(config, target.kafka.clone(), shutdown.child_token()).await?;
            mirrors.push((format!("{} -> {}", source.name, target.name), mirror));
        }
    }
    Ok(mirrors)
}

fn print_banner(regions: &[Region], mirrors: &[(String, Role)], demo: &str) {
    let mut banner = String::from("\nChorus is running.\n");
    for region in regions {
        let [(_, ingest), (_, edge), (_, fanout)] = region.roles.as_slice() else {
            continue;
        };
        if regions.len() > 1 {
            banner.push_str(&format!("region {}\n", region.name));
        }
        banner.push_str(&format!(
            "  ingest        http://{}        (metrics: http://{}/metrics)\n\
             \x20 viewers       ws://{}/v1/streams/{{stream_id}}/ws   (metrics: http://{}/metrics)\n\
             \x20 fanout        metrics: http://{}/metrics\n\
             \x20 kafka         {}\n",
            ingest.addr, ingest.admin, edge.addr, edge.admin, fanout.admin, region.kafka.brokers
        ));
    }
    for (name, mirror) in mirrors {
        banner.push_str(&format!(
            "mirror {name}: metrics http://{}/metrics\n",
            mirror.admin
        ));
    }
    if let Some(first) = regions.first() {
        if let [(_, ingest), (_, edge), _] = first.roles.as_slice() {
            let last = regions
                .last()
                .map(|r| &r.roles)
                .and_then(|r| r.get(1))
                .map(|(_, e)| e.addr);
            banner.push_str(&format!(
                "\nWatch a stream (in another terminal):\n  cargo run -q -- watch ws://{}/v1/streams/demo/ws\n",
                last.unwrap_or(edge.addr)
            ));
            banner.push_str(&format!(
                "\nPost a comment and a like:\n  curl -i -X POST http://{ingest}/v1/streams/demo/comments -H 'content-type: application/json' -H 'x-user-id: alice' -d '{{\"text\":\"hello from chorus\"}}'\n  curl -i -X POST http://{ingest}/v1/streams/demo/likes -H 'x-user-id: bob'\n",
                ingest = ingest.addr
            ));
        }
    }
    banner.push_str(&format!(
        "\nOpen the demo page (comments posted with the curl above show there):\n  {demo}\n"
    ));
    banner.push_str("\nCtrl-C stops everything.");
    println!("{banner}");
}
