//! The optional Schema Registry wire format, against a real broker and a registry stand-in that speaks the
//! registry's HTTP API: ingest registers the schema and writes the registry framing; fanout reads both
//! framings, so a deployment can switch over while old records are still in the topic.

mod support;

use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::routing::post;
use axum::{Json, Router};
use chorus_service::KafkaArgs;
use rdkafka::Message;
use serde_json::Value;
use support::{start_ingest, Cluster, TestKafka, WAIT};

type Registered = Arc<Mutex<Vec<(String, String)>>>;

/// The part of a Confluent-compatible registry Chorus uses: register a schema under a subject, get its id.
async fn start_registry() -> (String, Registered) {
    let registered: Registered = Arc::default();
    let app = Router::new()
        .route(
            "/subjects/{subject}/versions",
            post(
                |State(seen): State<Registered>,
                 Path(subject): Path<String>,
                 Json(body): Json<Value>| async move {
                    let schema = body["schema"].as_str().unwrap_or_default().to_owned();
                    seen.lock().expect("lock").push((subject, schema));
                    Json(serde_json::json!({ "id": 42 }))
                },
            ),
        )
        .with_state(registered.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, registered)
}

/// The first bytes of the records of `events`, in offset order of partition `partition`.
async fn record_prefixes(kafka: &KafkaArgs, partition: i32, count: usize) -> Vec<Vec<u8>> {
    let consumer = support::read_from_start(kafka, &kafka.topics().events, [partition]);
    let mut prefixes = Vec::new();
    while prefixes.len() < count {
        let message = tokio::time::timeout(WAIT, consumer.recv())
            .await
            .expect("records in time")
            .expect("consume");
        let payload = message.payload().unwrap_or_default();
        prefixes.push(payload[..payload.len().min(5)].to_vec());
    }
    prefixes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_framing_is_written_when_configured_and_both_framings_are_delivered() {
    let (registry, registered) = start_registry().await;
    let mut kafka = TestKafka::start().await;
    let plain_args = kafka.args.clone();
    kafka.args.schema_registry = Some(registry);
    let cluster = Cluster::start_on(kafka, 1, 1, &[]).await;
    let subject = format!("{}-value", cluster.kafka.args.topics().events);
    {
        let seen = registered.lock().expect("lock");
        assert!(!seen.is_empty(), "the schema was registered");
        for (s, schema) in seen.iter() {
            assert_eq!(s, &subject);
            let schema: Value = serde_json::from_str(schema).expect("schema JSON");
            assert_eq!(schema["name"], "StreamEvent");
        }
    }

    // An ingest still writing single-object encoding, beside the registry-configured one.
    let plain = start_ingest(&plain_args, &[]).await;

    let mut viewer = cluster.viewer(0, "registry").await;
    let framed = cluster.comment("registry", "u", "registry framing").await;
    let single = plain
        .comment("registry", "single-object encoding")
        .user("u")
        .accepted()
        .await;

    let seen = viewer
        .events_until(single["event_id"].as_str().expect("id"))
        .await;
    let texts: Vec<&str> = seen.iter().filter_map(|e| e["text"].as_str()).collect();
    assert_eq!(texts, ["registry framing", "single-object encoding"]);

    let partition = framed["partition"].as_i64().expect("partition") as i32;
    let prefixes = record_prefixes(&cluster.kafka.args, partition, 2).await;
    assert_eq!(prefixes[0], [0, 0, 0, 0, 42], "magic byte and schema id 42");
    assert_eq!(&prefixes[1][..2], &[0xC3, 0x01], "single-object marker");
    plain.shutdown.cancel();
    cluster.stop().await;
}
