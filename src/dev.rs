//! `chorus dev`: the whole path on one machine, for a newcomer. Starts a local broker unless one is given,
//! then ingest, fanout and edge in this process, prints where everything is, and stops it all on Ctrl-C.

use std::time::Duration;

use chorus::broker::LocalBroker;
use chorus::stack;
use chorus_service::{parse_args, KafkaArgs};
use tokio_util::sync::CancellationToken;

#[derive(Debug, clap::Args)]
pub struct DevArgs {
    /// Use this Kafka cluster instead of starting a local broker.
    #[arg(long, env = "CHORUS_KAFKA")]
    kafka: Option<String>,
    /// Port of the local broker.
    #[arg(long, default_value_t = 9092)]
    broker_port: u16,
    /// Port of the ingest API.
    #[arg(long, default_value_t = 8080)]
    ingest_port: u16,
    /// Port viewers connect to.
    #[arg(long, default_value_t = 8081)]
    edge_port: u16,
}

pub async fn run(args: DevArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let broker = match &args.kafka {
        Some(_) => None,
        None => {
            eprintln!(
                "starting a local broker on 127.0.0.1:{} ...",
                args.broker_port
            );
            Some(LocalBroker::start(Some(args.broker_port), "chorus-dev").await?)
        }
    };
    let bootstrap = match (&args.kafka, &broker) {
        (Some(kafka), _) => kafka.clone(),
        (None, Some(broker)) => broker.bootstrap(),
        (None, None) => unreachable!("a broker is started when none is given"),
    };
    let kafka: KafkaArgs = parse_args(&["--kafka", &bootstrap])?;
    kafka.ensure_topics(Duration::from_secs(10)).await?;
    let ingest_listen = format!("127.0.0.1:{}", args.ingest_port);
    let edge_listen = format!("127.0.0.1:{}", args.edge_port);
    let ingest = stack::spawn_ingest(
        parse_args(&["--listen", &ingest_listen])?,
        kafka.clone(),
        shutdown.child_token(),
    )
    .await?;
    let edge = stack::spawn_edge(
        parse_args(&["--listen", &edge_listen, "--subscription-linger-ms", "500"])?,
        kafka.clone(),
        shutdown.child_token(),
    )
    .await?;
    let fanout = stack::spawn_fanout(parse_args(&[])?, kafka, shutdown.child_token()).await?;
    for admin in [ingest.admin, fanout.admin] {
        stack::wait_ready(admin, Duration::from_secs(30)).await?;
    }
    println!(
        r#"
Chorus is running.
  ingest        http://{ingest}        (metrics: http://{ingest_admin}/metrics)
  viewers       ws://{edge}/v1/streams/{{stream_id}}/ws   (metrics: http://{edge_admin}/metrics)
  fanout        metrics: http://{fanout_admin}/metrics
  kafka         {bootstrap}

Watch a stream (in another terminal):
  cargo run -q -- watch ws://{edge}/v1/streams/demo/ws

Post a comment and a like:
  curl -i -X POST http://{ingest}/v1/streams/demo/comments -H 'content-type: application/json' -H 'x-user-id: alice' -d '{{"text":"hello from chorus"}}'
  curl -i -X POST http://{ingest}/v1/streams/demo/likes -H 'x-user-id: bob'

Ctrl-C stops everything."#,
        ingest = ingest.addr,
        ingest_admin = ingest.admin,
        edge = edge.addr,
        edge_admin = edge.admin,
        fanout_admin = fanout.admin,
    );
    shutdown.cancelled().await;
    eprintln!("stopping ...");
    for (name, role) in [("ingest", ingest), ("edge", edge), ("fanout", fanout)] {
        match tokio::time::timeout(Duration::from_secs(10), role.task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(error))) => eprintln!("{name} stopped with an error: {error:#}"),
            Ok(Err(error)) => eprintln!("{name} task failed: {error}"),
            Err(_) => eprintln!("{name} did not stop within 10 s"),
        }
    }
    if let Some(broker) = broker {
        broker.stop().await;
    }
    eprintln!("stopped.");
    Ok(())
}
