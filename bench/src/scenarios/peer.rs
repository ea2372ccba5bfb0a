//! `peer`: the `fanout` shape (10k viewers of one stream, 100 / 500 / 2,000 events/s) against Chorus and
//! against nginx with the Nchan module, started here, with the same client.

use std::net::SocketAddr;

use crate::client::Kind;
use crate::measure::{self, latency_series, Shape};
use crate::nchan::Nchan;
use crate::publish::Target;
use crate::scenarios::{Measured, Size};
use crate::stack::Stack;

pub async fn run(size: Size) -> anyhow::Result<Measured> {
    let viewers = size.pick(10_000, 40);
    let seconds = size.pick(10, 2);
    let mut measured = Measured::default();
    let mut pass = 0u8;
    for rate in size.pick(vec![100, 500, 2_000], vec![50]) {
        let stack = Stack::start(1, &[]).await?;
        let name = format!("chorus {rate} ev/s");
        let chorus = measure::run(
            &name,
            Shape {
                kind: Kind::ChorusWs,
                url: stack.ws_url(0, "hot"),
                viewers,
                target: stack.publish_target("hot"),
                rate,
                seconds,
                servers: vec![
                    ("server".to_owned(), vec![stack.edges[0].pid()]),
                    (
                        "pipeline".to_owned(),
                        vec![stack.fanout.pid(), stack.ingest.pid(), stack.broker_pid()],
                    ),
                ],
                delivering: "server".to_owned(),
                first_source: 2 + pass * 4,
            },
        )
        .await?;
        pass += 1;
        stack.stop().await;
        measured
            .series
            .push(latency_series("peer-latency", &name, &chorus.latency));
        measured.rows.push(chorus.row);

        let dir = std::env::temp_dir().join(format!("chorus-bench-nchan-{}", std::process::id()));
        let port = chorus::broker::free_port()?;
        let nchan = Nchan::start(&dir, SocketAddr::from(([127, 0, 0, 1], port))).await?;
        let name = format!("nchan {rate} ev/s");
        let peer = measure::run(
            &name,
            Shape {
                kind: Kind::Nchan,
                url: nchan.subscribe_url("hot"),
                viewers,
                target: Target::Nchan {
                    base: format!("http://{}", nchan.addr),
                    channel: "hot".to_owned(),
                },
                rate,
                seconds,
                servers: vec![("server".to_owned(), nchan.pids())],
                delivering: "server".to_owned(),
                first_source: 2 + pass * 4,
            },
        )
        .await?;
        pass += 1;
        nchan.stop().await;
        measured
            .series
            .push(latency_series("peer-latency", &name, &peer.latency));
        measured.rows.push(peer.row);
    }
    measured.notes.push(
        "Same client, same shape, one run: Chorus's `server` is the edge process (its `pipeline` is fanout, \
         ingest and the broker); Nchan's is nginx (one worker) publishing in-process. Chorus coalesces a \
         stream's events into one frame per 20 ms at this many viewers; Nchan sends one frame per message."
            .to_owned(),
    );
    measured.notes.push(
        "Nchan delivers a message to every subscriber inside the publish request, so at 10k subscribers its \
         publisher is held back (published/s counts only the publishes answered within 10 s; those answered \
         later were still delivered, hence `delivered` above 100%); compare deliveries/s and CPU per delivery."
            .to_owned(),
    );
    Ok(measured)
}
