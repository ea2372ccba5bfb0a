//! Options from a config file (`--config`): the file sets what neither a flag nor the environment sets, and a
//! misspelt option in it stops the start with a message that names it.

mod support;

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use chorus::broker::free_port;
use chorus::stack;
use support::{TestKafka, WAIT};

fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

async fn refused(addr: SocketAddr) -> bool {
    tokio::net::TcpStream::connect(addr).await.is_err()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flags_beat_the_environment_which_beats_the_file() {
    let kafka = TestKafka::start().await;
    let port = || free_port().expect("port");
    let (file_listen, file_admin, env_admin, flag_listen) = (port(), port(), port(), port());
    let dir = std::env::temp_dir().join(format!("chorus-config-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("chorus.env");
    let file = format!(
        "# one file for a deployment's roles\n\
         CHORUS_KAFKA={kafka}\n\
         export CHORUS_TOPIC_PREFIX=\"{prefix}\"\n\
         CHORUS_PARTITIONS={partitions}\n\
         CHORUS_INGEST_LISTEN=127.0.0.1:{file_listen}\n\
         CHORUS_INGEST_ADMIN_LISTEN=127.0.0.1:{file_admin}\n\
         CHORUS_AUTH=trusted-header\n\
         CHORUS_EDGE_LEASE_TTL_MS=5000\n",
        kafka = kafka.args.brokers,
        prefix = kafka.args.topic_prefix,
        partitions = kafka.args.partitions,
    );
    std::fs::write(&path, file).expect("write the config file");

    let mut ingest = tokio::process::Command::new(env!("CARGO_BIN_EXE_chorus"))
        .args(["--log=warn", "ingest", "--config"])
        .arg(&path)
        .arg(format!("--listen={}", local(flag_listen)))
        .env("CHORUS_INGEST_ADMIN_LISTEN", local(env_admin).to_string())
        .env_remove("CHORUS_KAFKA")
        .env_remove("CHORUS_TOPIC_PREFIX")
        .kill_on_drop(true)
        .spawn()
        .expect("start chorus ingest");
    stack::wait_ready(local(env_admin), WAIT)
        .await
        .expect("the admin port from the environment answers ready");
    // The Kafka settings came from the file: a comment is stored in this test's topics.
    let response = reqwest::Client::new()
        .post(format!(
            "http://{}/v1/streams/config-file/comments",
            local(flag_listen)
        ))
        .header("x-user-id", "alice")
        .json(&serde_json::json!({ "text": "from a config file" }))
        .timeout(WAIT)
        .send()
        .await
        .expect("post to the listener from the flag");
    assert_eq!(response.status(), 202, "{:?}", response.text().await);
    for (what, addr) in [
        ("listener", local(file_listen)),
        ("admin", local(file_admin)),
    ] {
        assert!(
            refused(addr).await,
            "the file's {what} address {addr} was overridden"
        );
    }
    let _ = ingest.kill().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_misspelt_option_in_the_file_stops_the_start() {
    let dir = std::env::temp_dir().join(format!("chorus-config-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("chorus.env");
    std::fs::write(&path, "CHORUS_EDGE_LISTN=127.0.0.1:8081\n").expect("write");
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_chorus"))
        .arg("edge")
        .env("CHORUS_CONFIG", &path)
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(10), output)
        .await
        .expect("it stops at once")
        .expect("run chorus edge");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("CHORUS_EDGE_LISTN") && stderr.contains("chorus.env"),
        "the message names the variable and the file: {stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
