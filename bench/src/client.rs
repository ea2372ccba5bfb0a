//! One load-generator process (`chorus-bench client`): opens viewers from a set of 127.0.0.x source addresses,
//! reads what they receive, and reports on stdout as JSON lines: `ready` once every viewer connected (or
//! failed), then, when told `stop` on stdin or at `--max-seconds`, the final counts and HDR histograms.
//! A process holds at most 20,000 open files here, so a run splits its viewers over several of these.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::StreamExt;
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncBufReadExt;
use tokio::net::TcpSocket;
use tokio_tungstenite::tungstenite::Message;

/// What a viewer connects to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
pub enum Kind {
    /// A Chorus edge over WebSocket: JSON frames, events carry `t=<send µs>` in their text.
    ChorusWs,
    /// A Chorus edge over Server-Sent Events (held idle: memory only).
    ChorusSse,
    /// A Chorus edge over long-poll (held idle: memory only): the first poll gets the hello and a cursor,
    /// each next one waits at the edge for frames after it.
    ChorusPoll,
    /// An Nchan subscriber over WebSocket: each message is `t=<send µs> seq=<n>`.
    Nchan,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ClientArgs {
    #[arg(long, value_enum)]
    pub kind: Kind,
    /// The viewer URL (`ws://...` or `http://...` for SSE).
    #[arg(long)]
    pub url: String,
    #[arg(long)]
    pub viewers: usize,
    /// Source addresses, comma-separated (127.0.0.x), used in turn.
    #[arg(long, value_delimiter = ',')]
    pub sources: Vec<IpAddr>,
    /// New connections per second, at most.
    #[arg(long, default_value_t = 2000)]
    pub connect_rate: u32,
    /// The process ends by itself after this long.
    #[arg(long, default_value_t = 300)]
    pub max_seconds: u64,
}

/// The final report of one client process.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct ClientReport {
    pub connected: usize,
    pub failed: usize,
    /// Events received, over all viewers.
    pub deliveries: u64,
    /// Frames (WebSocket messages) received.
    pub frames: u64,
    /// `gap` frames received.
    pub gaps: u64,
    /// Events before the viewer's join position (must be 0).
    pub before_join: u64,
    /// Events missing between a viewer's first and last (by sequence number; must be 0).
    pub missed: u64,
    /// Publish-to-receive latency, µs: (value, count) pairs of an HDR histogram.
    pub latency_us: Vec<(u64, u64)>,
    /// Connect-to-hello time, µs.
    pub hello_us: Vec<(u64, u64)>,
    /// Deliveries per second since `ready`.
    pub per_second: Vec<u64>,
}

pub fn histogram() -> Histogram<u64> {
    // 1 µs to 10 minutes, 3 significant digits.
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

pub fn to_pairs(h: &Histogram<u64>) -> Vec<(u64, u64)> {
    h.iter_recorded()
        .map(|v| (v.value_iterated_to(), v.count_at_value()))
        .collect()
}

pub fn from_pairs(h: &mut Histogram<u64>, pairs: &[(u64, u64)]) {
    for (value, count) in pairs {
        let _ = h.record_n(*value, *count);
    }
}

pub fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// The send timestamp and sequence number a publisher put in a text: `t=<µs> seq=<n>`.
pub fn parse_stamp(text: &str) -> Option<(u64, u64)> {
    let mut t = None;
    let mut seq = None;
    for part in text.split_whitespace() {
        if let Some(v) = part.strip_prefix("t=") {
            t = v.parse().ok();
        } else if let Some(v) = part.strip_prefix("seq=") {
            seq = v.parse().ok();
        }
    }
    Some((t?, seq?))
}

/// The (send µs, sequence number, offset) of each event in an `events` frame, found by scanning the text
/// rather than parsing it: at hundreds of thousands of frames a second the client must cost little, and
/// the frame's layout is fixed (`"text":"t=.. seq=.."` comes before the event's `"offset":`).
fn scan_events(frame: &str) -> impl Iterator<Item = (u64, u64, i64)> + '_ {
    const TEXT: &str = r#""text":""#;
    const OFFSET: &str = r#""offset":"#;
    let mut rest = frame;
    std::iter::from_fn(move || loop {
        let at = rest.find(TEXT)? + TEXT.len();
        rest = &rest[at..];
        let end = rest.find('"')?;
        let stamp = parse_stamp(&rest[..end]);
        let offset_at = rest.find(OFFSET)? + OFFSET.len();
        rest = &rest[offset_at..];
        let digits = rest
            .find(|c: char| !c.is_ascii_digit() && c != '-')
            .unwrap_or(rest.len());
        let offset = rest[..digits].parse().unwrap_or(i64::MIN);
        if let Some((sent, seq)) = stamp {
            return Some((sent, seq, offset));
        }
    })
}

#[derive(Debug)]
struct Shared {
    report: ClientReport,
    latency: Histogram<u64>,
    hello: Histogram<u64>,
    ready_at: Option<Instant>,
}

impl Shared {
    fn delivered(&mut self, sent_us: u64, now: u64) {
        self.report.deliveries += 1;
        let _ = self.latency.record(now.saturating_sub(sent_us).max(1));
        if let Some(ready) = self.ready_at {
            let second = ready.elapsed().as_secs() as usize;
            if self.report.per_second.len() <= second {
                self.report.per_second.resize(second + 1, 0);
            }
            self.report.per_second[second] += 1;
        }
    }
}

/// What one viewer tracks of the sequence numbers it saw.
#[derive(Debug, Default)]
struct Seqs {
    first: Option<u64>,
    last: u64,
    seen: u64,
}

impl Seqs {
    fn saw(&mut self, seq: u64) {
        self.first = Some(self.first.map_or(seq, |f| f.min(seq)));
        self.last = self.last.max(seq);
        self.seen += 1;
    }

    fn missed(&self) -> u64 {
        self.first
            .map_or(0, |f| (self.last - f + 1).saturating_sub(self.seen))
    }
}

async fn connect(address: SocketAddr, source: IpAddr) -> anyhow::Result<tokio::net::TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(source, 0))?;
    socket.set_nodelay(true)?;
    Ok(tokio::time::timeout(Duration::from_secs(10), socket.connect(address)).await??)
}

async fn websocket_viewer(
    args: Arc<ClientArgs>,
    address: SocketAddr,
    source: IpAddr,
    shared: Arc<Mutex<Shared>>,
    connected: tokio::sync::mpsc::Sender<bool>,
) {
    let started = Instant::now();
    let stream = match connect(address, source).await {
        Ok(stream) => stream,
        Err(_) => {
            let _ = connected.send(false).await;
            return;
        }
    };
    let handshake = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::client_async(args.url.as_str(), stream),
    )
    .await;
    let Ok(Ok((mut socket, _))) = handshake else {
        let _ = connected.send(false).await;
        return;
    };
    let mut join_offset = i64::MIN;
    if args.kind == Kind::ChorusWs {
        // The hello comes first.
        match tokio::time::timeout(Duration::from_secs(10), socket.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => {
                let hello: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
                join_offset = hello["join"][0]["offset"].as_i64().unwrap_or(i64::MIN);
                let mut shared = shared.lock().unwrap_or_else(|e| e.into_inner());
                let _ = shared
                    .hello
                    .record((started.elapsed().as_micros() as u64).max(1));
            }
            _ => {
                let _ = connected.send(false).await;
                return;
            }
        }
    }
    let _ = connected.send(true).await;
    let mut seqs = Seqs::default();
    while let Some(Ok(message)) = socket.next().await {
        let Message::Text(text) = message else {
            continue;
        };
        let now = now_us();
        let mut shared = shared.lock().unwrap_or_else(|e| e.into_inner());
        shared.report.frames += 1;
        match args.kind {
            Kind::Nchan => {
                if let Some((sent, seq)) = parse_stamp(&text) {
                    seqs.saw(seq);
                    shared.delivered(sent, now);
                }
            }
            _ => {
                if text.starts_with(r#"{"type":"events""#) {
                    for (sent, seq, offset) in scan_events(&text) {
                        seqs.saw(seq);
                        shared.delivered(sent, now);
                        if offset < join_offset {
                            shared.report.before_join += 1;
                        }
                    }
                } else if text.starts_with(r#"{"type":"gap""#) {
                    shared.report.gaps += 1;
                }
            }
        }
    }
    let mut shared = shared.lock().unwrap_or_else(|e| e.into_inner());
    shared.report.missed += seqs.missed();
}

async fn sse_viewer(
    args: Arc<ClientArgs>,
    source: IpAddr,
    connected: tokio::sync::mpsc::Sender<bool>,
) {
    let Ok(client) = reqwest::Client::builder().local_address(source).build() else {
        let _ = connected.send(false).await;
        return;
    };
    let response =
        tokio::time::timeout(Duration::from_secs(10), client.get(&args.url).send()).await;
    let Ok(Ok(response)) = response else {
        let _ = connected.send(false).await;
        return;
    };
    let mut body = response.bytes_stream();
    // The hello arrives at once; after it, the stream is held open and idle.
    let first = tokio::time::timeout(Duration::from_secs(10), body.next()).await;
    let _ = connected.send(matches!(first, Ok(Some(Ok(_))))).await;
    while let Some(Ok(_)) = body.next().await {}
}

async fn poll_viewer(
    args: Arc<ClientArgs>,
    source: IpAddr,
    connected: tokio::sync::mpsc::Sender<bool>,
) {
    let Ok(client) = reqwest::Client::builder()
        .local_address(source)
        .timeout(Duration::from_secs(120))
        .build()
    else {
        let _ = connected.send(false).await;
        return;
    };
    let poll = |cursor: Option<String>| {
        let mut request = client.get(&args.url);
        if let Some(cursor) = cursor {
            request = request.query(&[("cursor", cursor)]);
        }
        async move {
            let answer: serde_json::Value = request.send().await.ok()?.json().await.ok()?;
            answer["cursor"].as_str().map(str::to_owned)
        }
    };
    let mut cursor = poll(None).await;
    let _ = connected.send(cursor.is_some()).await;
    while let Some(at) = cursor {
        cursor = poll(Some(at)).await;
    }
}

/// The IP address and port a viewer URL points at.
fn target_address(url: &str) -> anyhow::Result<SocketAddr> {
    let rest = url
        .split_once("://")
        .map(|(_, r)| r)
        .context("a URL with a scheme")?;
    let host = rest.split('/').next().unwrap_or_default();
    host.parse()
        .context("the URL's host is an IP address and port")
}

/// Starts `--viewers` viewers at `--connect-rate`, round-robin over the source addresses.
async fn spawn_viewers(
    args: Arc<ClientArgs>,
    address: SocketAddr,
    sources: Vec<IpAddr>,
    shared: Arc<Mutex<Shared>>,
    connected: tokio::sync::mpsc::Sender<bool>,
) {
    let pace = Duration::from_secs(1) / args.connect_rate.max(1);
    let mut tick = tokio::time::interval(pace.max(Duration::from_micros(100)));
    for i in 0..args.viewers {
        tick.tick().await;
        let source = sources[i % sources.len()];
        let connected = connected.clone();
        match args.kind {
            Kind::ChorusSse => {
                tokio::spawn(sse_viewer(args.clone(), source, connected));
            }
            Kind::ChorusPoll => {
                tokio::spawn(poll_viewer(args.clone(), source, connected));
            }
            _ => {
                tokio::spawn(websocket_viewer(
                    args.clone(),
                    address,
                    source,
                    shared.clone(),
                    connected,
                ));
            }
        }
    }
}

/// Runs one client process until `stop` on stdin or `--max-seconds`.
pub async fn run(args: ClientArgs) -> anyhow::Result<()> {
    let args = Arc::new(args);
    let address = target_address(&args.url)?;
    let shared = Arc::new(Mutex::new(Shared {
        report: ClientReport::default(),
        latency: histogram(),
        hello: histogram(),
        ready_at: None,
    }));
    let sources = if args.sources.is_empty() {
        vec![IpAddr::from([127, 0, 0, 1])]
    } else {
        args.sources.clone()
    };
    let (connected_tx, mut connected_rx) = tokio::sync::mpsc::channel(1024);
    let spawner = tokio::spawn(spawn_viewers(
        args.clone(),
        address,
        sources,
        shared.clone(),
        connected_tx,
    ));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(args.max_seconds);
    let (mut ok, mut failed) = (0usize, 0usize);
    while ok + failed < args.viewers {
        match tokio::time::timeout_at(deadline, connected_rx.recv()).await {
            Ok(Some(true)) => ok += 1,
            Ok(Some(false)) => failed += 1,
            _ => break,
        }
    }
    spawner.abort();
    {
        let mut shared = shared.lock().unwrap_or_else(|e| e.into_inner());
        shared.ready_at = Some(Instant::now());
        shared.report.connected = ok;
        shared.report.failed = failed;
    }
    println!("{}", serde_json::json!({ "ready": ok, "failed": failed }));
    // Wait for `stop` (or the end of stdin, or the deadline).
    let mut stdin = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let _ = tokio::time::timeout_at(deadline, async {
        while let Ok(Some(line)) = stdin.next_line().await {
            if line.trim() == "stop" {
                break;
            }
        }
    })
    .await;
    let report = {
        let mut shared = shared.lock().unwrap_or_else(|e| e.into_inner());
        let latency = to_pairs(&shared.latency);
        let hello = to_pairs(&shared.hello);
        let mut report = std::mem::take(&mut shared.report);
        report.latency_us = latency;
        report.hello_us = hello;
        report
    };
    println!("{}", serde_json::to_string(&report)?);
    // The viewers' sockets close with the process.
    std::process::exit(0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_parse_and_missing_sequences_are_counted() {
        assert_eq!(parse_stamp("t=1700 seq=4"), Some((1700, 4)));
        assert_eq!(parse_stamp("hello"), None);
        let mut seqs = Seqs::default();
        for s in [3, 4, 6] {
            seqs.saw(s);
        }
        assert_eq!(seqs.missed(), 1);
    }

    #[test]
    fn events_frames_are_scanned_for_stamps_and_offsets() {
        let frame = r#"{"type":"events","stream_id":"s","events":[{"event_id":"a","user_id":"u","kind":"comment","text":"t=10 seq=1","created_ms":1,"origin":"local","topic":"events","offset":7},{"event_id":"b","user_id":"u","kind":"comment","text":"hi","created_ms":1,"origin":"local","topic":"events","offset":8},{"event_id":"c","user_id":"u","kind":"comment","text":"t=12 seq=2","created_ms":1,"origin":"local","topic":"events","offset":9}]}"#;
        let found: Vec<_> = scan_events(frame).collect();
        assert_eq!(found, vec![(10, 1, 7), (12, 2, 9)]);
    }

    #[test]
    fn histograms_survive_the_trip_as_pairs() {
        let mut h = histogram();
        for v in [10, 20, 20, 5000] {
            let _ = h.record(v);
        }
        let mut back = histogram();
        from_pairs(&mut back, &to_pairs(&h));
        assert_eq!(back.len(), 4);
        assert_eq!(back.value_at_quantile(1.0), h.value_at_quantile(1.0));
    }
}
