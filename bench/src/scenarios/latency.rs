//! `latency`: publish-to-deliver latency at 1k events/s to 10k viewers (HTTP POST to WebSocket), beside the
//! plain rdkafka producer-to-consumer latency on the same broker at the same rate in the same run. Chorus's
//! overhead is the difference.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};
use tokio::sync::Semaphore;

use crate::client::{self, now_us, parse_stamp, Kind};
use crate::measure::{self, figure, latency_series, progress, Shape};
use crate::record::Row;
use crate::scenarios::{Measured, Size};
use crate::stack::Stack;

/// Producer to consumer through the broker alone: the floor under Chorus's latency.
async fn baseline(stack: &Stack, rate: u32, seconds: u64) -> anyhow::Result<Histogram<u64>> {
    let kafka = &stack.kafka;
    let topic = format!("{}baseline", kafka.topic_prefix);
    kafka
        .ensure_topic(&topic, 1, Duration::from_secs(10))
        .await?;
    let consumer: StreamConsumer = kafka
        .consumer_config("chorus-bench-baseline")
        .set("enable.auto.commit", "false")
        .create()
        .context("baseline consumer")?;
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(&topic, 0, Offset::Beginning)?;
    consumer.assign(&assignment)?;
    let producer: FutureProducer = kafka
        .producer_config(Duration::from_secs(5), 100_000)
        .create()
        .context("baseline producer")?;
    // Warm up: one record through, so the consumer is fetching at the end of the partition before timing.
    producer
        .send(
            FutureRecord::to(&topic).key("hot").payload("warm-up"),
            Duration::from_secs(5),
        )
        .await
        .map_err(|(e, _)| e)?;
    let warm = tokio::time::timeout(Duration::from_secs(10), consumer.recv()).await;
    anyhow::ensure!(
        matches!(warm, Ok(Ok(_))),
        "the baseline consumer read nothing"
    );
    let total = u64::from(rate) * seconds;
    let reader = tokio::spawn(read_stamps(consumer, total, seconds));
    let bar = progress(format!("baseline: rdkafka at {rate} msg/s"), seconds);
    let slots = Arc::new(Semaphore::new(256));
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(2));
    let mut seq = 0u64;
    let mut sends = Vec::new();
    while seq < total {
        tick.tick().await;
        bar.set_position(started.elapsed().as_secs());
        let due = (started.elapsed().as_secs_f64() * f64::from(rate)) as u64;
        while seq < due.min(total) {
            let slot = slots.clone().acquire_owned().await?;
            let producer = producer.clone();
            let topic = topic.clone();
            let payload = format!("t={} seq={seq}", now_us());
            sends.push(tokio::spawn(async move {
                let _slot = slot;
                let record = FutureRecord::to(&topic).key("hot").payload(&payload);
                let _ = producer.send(record, Duration::from_secs(5)).await;
            }));
            seq += 1;
        }
    }
    for send in sends {
        let _ = send.await;
    }
    bar.finish_and_clear();
    Ok(reader.await?)
}

/// Reads `total` stamped records (or until the run plus 30 s is over): the latency of each, at its first
/// arrival.
async fn read_stamps(consumer: StreamConsumer, total: u64, seconds: u64) -> Histogram<u64> {
    let mut latency = client::histogram();
    let mut seen = std::collections::HashSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds + 30);
    // The deadline is checked apart: a broker that redelivers records never lets `recv` time out.
    while (seen.len() as u64) < total && tokio::time::Instant::now() < deadline {
        let Ok(Ok(message)) = tokio::time::timeout_at(deadline, consumer.recv()).await else {
            break;
        };
        let stamp = message
            .payload()
            .and_then(|p| std::str::from_utf8(p).ok())
            .and_then(parse_stamp);
        // A record delivered again counts once, at its first arrival.
        if let Some((sent, _)) = stamp.filter(|(_, seq)| seen.insert(*seq)) {
            let _ = latency.record(now_us().saturating_sub(sent).max(1));
        }
    }
    // Closing a consumer may wait on the broker: never on a runtime thread.
    std::thread::spawn(move || drop(consumer));
    latency
}

fn latency_row(name: &str, h: &Histogram<u64>) -> Row {
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    Row {
        name: name.to_owned(),
        figures: vec![
            figure("samples", h.len() as f64, ""),
            figure("p50", ms(0.5), "ms"),
            figure("p90", ms(0.9), "ms"),
            figure("p99", ms(0.99), "ms"),
            figure("p99.9", ms(0.999), "ms"),
            figure("max", ms(1.0), "ms"),
        ],
    }
}

pub async fn run(size: Size) -> anyhow::Result<Measured> {
    let rate = size.pick(1_000, 50);
    let viewers = size.pick(10_000, 40);
    let seconds = size.pick(10, 2);
    let stack = Stack::start(1, &[]).await?;
    let mut measured = Measured::default();
    let floor = baseline(&stack, rate, seconds).await?;
    measured.rows.push(latency_row(
        &format!("rdkafka producer to consumer, {rate} msg/s"),
        &floor,
    ));
    measured
        .series
        .push(latency_series("latency", "rdkafka baseline", &floor));
    // One shape this machine can carry (its clients share the 2 cores), then the one asked for. In that order:
    // the saturated run leaves backlogs behind (fanout, edge, the 10k connections closing) that would show in
    // the tail of a run after it.
    for (i, viewers) in [size.pick(100, 10), viewers].into_iter().enumerate() {
        let name = format!("chorus POST to WebSocket, {rate} ev/s, {viewers} viewers");
        let outcome = measure::run(
            &name,
            Shape {
                kind: Kind::ChorusWs,
                url: stack.ws_url(0, &format!("hot-{i}")),
                viewers,
                target: stack.publish_target(&format!("hot-{i}")),
                rate,
                seconds,
                servers: vec![
                    ("edge".to_owned(), vec![stack.edges[0].pid()]),
                    (
                        "pipeline".to_owned(),
                        vec![stack.fanout.pid(), stack.ingest.pid(), stack.broker_pid()],
                    ),
                ],
                delivering: "edge".to_owned(),
                first_source: 2 + 4 * i as u8,
            },
        )
        .await?;
        measured.series.push(latency_series(
            "latency",
            &format!("chorus, {viewers} viewers"),
            &outcome.latency,
        ));
        measured.rows.push(chorus_row(&name, &outcome, &floor));
    }
    measured.notes.push(
        "The baseline and Chorus ran one after the other on the same broker at the same rate. Chorus's path \
         adds an HTTP request, ingest's acks=all produce, fanout's consume and push, the edge's \
         coalescing wait (5 ms for a stream with one viewer on the edge, growing to 20 ms at 1,000 viewers) and a \
         socket write per viewer per frame; the clients share the 2 cores with all of it. \
         At 10k viewers, 1,000 events/s is 10 million deliveries a second: more than this machine's 2 cores \
         carry with the clients on them, so that row shows saturation (see `delivered`), and the 100-viewer row, \
         run first on the fresh stack, shows Chorus's overhead when the machine is not the limit."
            .to_owned(),
    );
    stack.stop().await;
    Ok(measured)
}

fn chorus_row(name: &str, outcome: &measure::Outcome, floor: &Histogram<u64>) -> Row {
    let mut row = latency_row(name, &outcome.latency);
    let overhead = |q: f64| {
        (outcome.latency.value_at_quantile(q) as f64 - floor.value_at_quantile(q) as f64) / 1000.0
    };
    row.figures
        .push(figure("p50 over baseline", overhead(0.5), "ms"));
    row.figures
        .push(figure("p99 over baseline", overhead(0.99), "ms"));
    row.figures.extend(
        outcome
            .row
            .figures
            .iter()
            .filter(|(n, _, _)| n.contains("CPU") || n == "deliveries/s" || n == "delivered")
            .cloned(),
    );
    row
}
