//! A bounded comment load: posts at a fixed rate for a fixed time, at most `in_flight` requests at once, and
//! records when each was sent and acknowledged.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::time::Instant;

/// One acknowledged comment.
#[derive(Debug, Clone)]
pub struct Posted {
    pub seq: u64,
    pub stream: String,
    pub event_id: String,
    pub partition: i64,
    pub offset: i64,
    pub sent: Instant,
    pub acked: Instant,
}

/// Posts `rate` comments per second for `duration`, round-robin over `streams`; returns every acknowledged one.
/// A request that fails is counted and reported by the caller's assertions (it is simply absent here).
pub async fn post_at_rate(
    ingest: String,
    streams: Vec<String>,
    rate: u32,
    duration: Duration,
    in_flight: usize,
) -> Vec<Posted> {
    let http = reqwest::Client::new();
    let posted = Arc::new(Mutex::new(Vec::new()));
    let slots = Arc::new(Semaphore::new(in_flight));
    let mut tick = tokio::time::interval(Duration::from_secs(1) / rate);
    let total = u64::from(rate) * duration.as_secs();
    let mut tasks = Vec::new();
    for seq in 0..total {
        tick.tick().await;
        let Ok(slot) = slots.clone().acquire_owned().await else {
            break;
        };
        let stream = streams[(seq % streams.len() as u64) as usize].clone();
        let url = format!("{ingest}/v1/streams/{stream}/comments");
        let http = http.clone();
        let posted = posted.clone();
        tasks.push(tokio::spawn(async move {
            let _slot = slot;
            let sent = Instant::now();
            let response = http
                .post(url)
                .header("x-user-id", "loader")
                .json(&serde_json::json!({ "text": format!("seq {seq}") }))
                .timeout(Duration::from_secs(10))
                .send()
                .await;
            let Ok(response) = response else { return };
            if response.status() != 202 {
                return;
            }
            let Ok(body) = response.json::<serde_json::Value>().await else {
                return;
            };
            let record = Posted {
                seq,
                stream,
                event_id: body["event_id"].as_str().unwrap_or_default().to_owned(),
                partition: body["partition"].as_i64().unwrap_or(-1),
                offset: body["offset"].as_i64().unwrap_or(-1),
                sent,
                acked: Instant::now(),
            };
            posted.lock().expect("lock").push(record);
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    let mut posted = posted.lock().expect("lock").clone();
    posted.sort_by_key(|p| p.seq);
    posted
}

/// Posts `rate` likes per second to `stream` for `duration` (at most `in_flight` at once), each from one of
/// many users; returns how many were acknowledged with 202.
pub async fn post_likes(
    ingest: String,
    stream: &str,
    rate: u32,
    duration: Duration,
    in_flight: usize,
) -> u64 {
    let http = reqwest::Client::new();
    let acked = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let slots = Arc::new(Semaphore::new(in_flight));
    let mut tick = tokio::time::interval(Duration::from_millis(5));
    let total = u64::from(rate) * duration.as_secs();
    let url = format!("{ingest}/v1/streams/{stream}/likes");
    let started = Instant::now();
    let mut seq = 0u64;
    let mut tasks = Vec::new();
    while seq < total {
        tick.tick().await;
        // As many as are due by now: timer ticks are too coarse for one request each.
        let due = (started.elapsed().as_secs_f64() * f64::from(rate)) as u64;
        while seq < due.min(total) {
            let Ok(slot) = slots.clone().acquire_owned().await else {
                break;
            };
            let request = http
                .post(&url)
                .header("x-user-id", format!("fan-{}", seq % 5000))
                .timeout(Duration::from_secs(10));
            let acked = acked.clone();
            tasks.push(tokio::spawn(async move {
                let _slot = slot;
                if let Ok(response) = request.send().await {
                    if response.status() == 202 {
                        acked.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            }));
            seq += 1;
        }
    }
    for task in tasks {
        let _ = task.await;
    }
    acked.load(std::sync::atomic::Ordering::Relaxed)
}
