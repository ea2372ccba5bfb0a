//! `chorus dev` used as a newcomer would: run it, take the viewer command and the curl line from what it prints,
//! see the comment arrive, then stop it with the Ctrl-C signal and find everything gone, its broker included.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

/// The first start may install the broker; the roles then wait for it.
const START: Duration = Duration::from_secs(90);
const WAIT: Duration = Duration::from_secs(20);

/// Reads lines until one satisfies `found`, within `within`; returns it.
async fn line_where(
    lines: &mut Lines<BufReader<ChildStdout>>,
    within: Duration,
    found: impl Fn(&str) -> bool,
) -> String {
    tokio::time::timeout(within, async {
        loop {
            let line = lines
                .next_line()
                .await
                .expect("read output")
                .expect("the process ended before printing the expected line");
            if found(&line) {
                return line;
            }
        }
    })
    .await
    .expect("expected line within the time limit")
}

/// Ctrl-C in a terminal: SIGINT to the whole foreground process group, which the child leads.
fn ctrl_c(child: &Child) {
    let group = format!("-{}", child.id().expect("the process is running"));
    let status = std::process::Command::new("kill")
        .args(["-INT", "--", &group])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -INT -- {group}");
}

async fn refused(addr: &str) -> bool {
    tokio::net::TcpStream::connect(addr).await.is_err()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_prints_what_works_and_ctrl_c_stops_everything() {
    try_dev(1).await;
}

/// Two regions: the printed curl posts in the first, the printed viewer watches the second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_with_two_regions_carries_a_comment_across() {
    try_dev(2).await;
}

/// The ports `chorus dev` is given and those it derives from them for a second region: the broker's next
/// one, the admin ports' next two and those 10 up, the listeners' 100 up.
struct Ports {
    broker: u16,
    admin: u16,
    ingest: u16,
    edge: u16,
    internal: u16,
    demo: u16,
}

impl Ports {
    fn at(base: u16) -> Self {
        Self {
            broker: base,
            admin: base + 10,
            ingest: base + 30,
            edge: base + 31,
            internal: base + 32,
            demo: base + 40,
        }
    }

    fn all(&self) -> Vec<u16> {
        let mut all = vec![self.broker, self.broker + 1, self.demo];
        all.extend((0..3).flat_map(|n| [self.admin + n, self.admin + 10 + n]));
        all.extend(
            [self.ingest, self.edge, self.internal]
                .into_iter()
                .flat_map(|p| [p, p + 100]),
        );
        all
    }

    /// A block of ports that are all free now, below the kernel's ephemeral range (32768 and up) so that no
    /// outgoing connection of a test running alongside takes one before `chorus dev` listens on it.
    fn free() -> Self {
        let seed = std::process::id() as u64
            ^ u64::from(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .expect("clock")
                    .subsec_nanos(),
            );
        (0..200u64)
            .map(|n| Self::at(20_000 + ((seed + n * 7919) % 12_000) as u16))
            .find(|ports| {
                ports
                    .all()
                    .iter()
                    .all(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok())
            })
            .expect("a free block of ports between 20000 and 32767")
    }
}

async fn try_dev(regions: u16) {
    let ports = Ports::free();
    let (broker_port, ingest_port, edge_port, internal_port, admin_port) = (
        ports.broker,
        ports.ingest,
        ports.edge,
        ports.internal,
        ports.admin,
    );
    let mut dev = Command::new(env!("CARGO_BIN_EXE_chorus"))
        .args(["dev", "--regions", &regions.to_string()])
        .args(["--broker-port", &broker_port.to_string()])
        .args(["--ingest-port", &ingest_port.to_string()])
        .args(["--edge-port", &edge_port.to_string()])
        .args(["--edge-internal-port", &internal_port.to_string()])
        .args(["--admin-port", &admin_port.to_string()])
        .args(["--demo-port", &ports.demo.to_string()])
        .env("CHORUS_LOG", "warn")
        .env_remove("CHORUS_KAFKA")
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start chorus dev");
    let mut banner = BufReader::new(dev.stdout.take().expect("stdout")).lines();
    let mut log = BufReader::new(dev.stderr.take().expect("stderr")).lines();
    let log = tokio::spawn(async move {
        let mut all = Vec::new();
        while let Ok(Some(line)) = log.next_line().await {
            eprintln!("dev: {line}");
            all.push(line);
        }
        all
    });

    let watch_line = line_where(&mut banner, START, |l| l.contains("-- watch ws://")).await;
    let comment_line = line_where(&mut banner, WAIT, |l| l.contains("/comments")).await;
    let demo = format!("http://127.0.0.1:{}/", ports.demo);
    line_where(&mut banner, WAIT, |l| l.trim() == demo).await;
    line_where(&mut banner, WAIT, |l| l.contains("Ctrl-C stops everything")).await;
    // The demo page it prints is served, and knows where ingest is.
    let page = reqwest::get(&demo).await.expect("demo page");
    assert_eq!(page.status(), 200);
    let html = page.text().await.expect("page");
    assert!(html.contains("Comment"), "a comment box: {html}");
    let config: serde_json::Value = reqwest::get(format!("{demo}config.json"))
        .await
        .expect("config")
        .json()
        .await
        .expect("JSON");
    let ingest = format!("http://127.0.0.1:{ingest_port}");
    assert_eq!(config["ingest"], ingest.as_str(), "{config}");
    let broker = format!("127.0.0.1:{broker_port}");
    assert!(!refused(&broker).await, "the broker listens on {broker}");

    // `cargo run -q -- watch URL` is the built binary with the words after `--`.
    let (_, watch_args) = watch_line.split_once(" -- ").expect("a cargo run line");
    let mut watch = Command::new(env!("CARGO_BIN_EXE_chorus"))
        .args(watch_args.split_whitespace())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start chorus watch");
    let mut frames = BufReader::new(watch.stdout.take().expect("stdout")).lines();
    let hello = line_where(&mut frames, WAIT, |l| l.contains("\"hello\"")).await;
    println!("watch: {hello}");

    let curl = Command::new("bash")
        .args(["-c", comment_line.trim()])
        .output()
        .await
        .expect("run the printed curl");
    let response = String::from_utf8_lossy(&curl.stdout);
    assert!(curl.status.success(), "curl failed: {response}");
    assert!(
        response.starts_with("HTTP/1.1 202"),
        "the printed curl is accepted: {response}"
    );
    let seen = line_where(&mut frames, WAIT, |l| l.contains("hello from chorus")).await;
    println!("watch: {seen}");
    assert!(seen.contains("\"user_id\":\"alice\""), "{seen}");
    if regions > 1 {
        // Posted in the first region, seen in the last one through its mirror.
        assert!(seen.contains("\"topic\":\"eu.events\""), "{seen}");
    }

    ctrl_c(&dev);
    let status = tokio::time::timeout(Duration::from_secs(30), dev.wait())
        .await
        .expect("chorus dev stops within 30 s of Ctrl-C")
        .expect("wait for chorus dev");
    assert!(status.success(), "chorus dev exits cleanly: {status}");
    let log = tokio::time::timeout(WAIT, log)
        .await
        .expect("the log ends with the process")
        .expect("log reader");
    let errors: Vec<&String> = log.iter().filter(|l| l.contains("ERROR")).collect();
    assert!(
        errors.is_empty(),
        "no error logged, stop included: {errors:#?}"
    );
    assert!(log.iter().any(|l| l.contains("stopped.")), "{log:#?}");
    for region in 0..regions {
        for addr in [
            format!("127.0.0.1:{}", broker_port + region),
            format!("127.0.0.1:{}", ingest_port + 100 * region),
            format!("127.0.0.1:{}", edge_port + 100 * region),
        ] {
            assert!(refused(&addr).await, "{addr} is closed after Ctrl-C");
        }
    }
    // The edge says goodbye (a `reconnect` frame, then close) and the viewer's output ends.
    tokio::time::timeout(WAIT, async {
        while let Some(line) = frames.next_line().await.expect("read the viewer") {
            println!("watch: {line}");
        }
    })
    .await
    .expect("the viewer sees the edge go");
    let watched = tokio::time::timeout(WAIT, watch.wait())
        .await
        .expect("the viewer exits")
        .expect("wait for the viewer");
    assert!(watched.success(), "chorus watch exits cleanly: {watched}");
}
