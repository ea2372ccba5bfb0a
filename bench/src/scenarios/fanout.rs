//! `fanout`: one hot stream, 10k viewers on one edge, 100 / 500 / 2,000 events/s, with per-tick coalescing
//! (20 ms) and without: deliveries per second and the edge's CPU per frame and per delivery.

use crate::client::Kind;
use crate::measure::{self, over_time_series, Shape};
use crate::scenarios::{Measured, Size};
use crate::stack::Stack;

pub async fn run(size: Size) -> anyhow::Result<Measured> {
    let viewers = size.pick(10_000, 40);
    let seconds = size.pick(10, 2);
    let mut measured = Measured::default();
    let mut pass = 0u8;
    for rate in size.pick(vec![100, 500, 2_000], vec![50]) {
        for coalesce in [20, 0] {
            let stack = Stack::start(1, &[format!("--coalesce-ms={coalesce}")]).await?;
            let name = format!("chorus {rate} ev/s, coalesce {coalesce} ms");
            let shape = Shape {
                kind: Kind::ChorusWs,
                url: stack.ws_url(0, "hot"),
                viewers,
                target: stack.publish_target("hot"),
                rate,
                seconds,
                servers: vec![
                    ("edge".to_owned(), vec![stack.edges[0].pid()]),
                    ("fanout".to_owned(), vec![stack.fanout.pid()]),
                    ("ingest".to_owned(), vec![stack.ingest.pid()]),
                    ("broker".to_owned(), vec![stack.broker_pid()]),
                ],
                delivering: "edge".to_owned(),
                first_source: 2 + pass * 4,
            };
            pass += 1;
            let outcome = measure::run(&name, shape).await?;
            measured.series.push(over_time_series(
                "fanout-deliveries",
                &name,
                &outcome.per_second,
            ));
            measured.rows.push(outcome.row);
            stack.stop().await;
        }
    }
    measured.notes.push(
        "Clients and servers share the 2 cores: the client processes parse every frame and cost about as much \
         CPU as the edge, so deliveries/s is capped by the machine, not by the edge alone; compare the edge's \
         CPU per frame and per delivery."
            .to_owned(),
    );
    measured.notes.push(
        "Without coalescing every event is its own frame to every viewer: frames/s equals deliveries/s, and at \
         high rates viewers fall behind (gaps) and latency grows; with 20 ms ticks a frame carries every event \
         of its tick."
            .to_owned(),
    );
    Ok(measured)
}
