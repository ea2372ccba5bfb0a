//! Publishers at a fixed rate: comments posted to Chorus's ingest, messages to Nchan, or records straight to
//! Kafka (the baseline). Each carries `t=<send µs> seq=<n>` so receivers measure latency from it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::sync::Semaphore;

use crate::client::{self, now_us};

/// What a publisher did.
#[derive(Debug)]
pub struct Published {
    pub sent: u64,
    pub acked: u64,
    /// Request-to-response time, µs.
    pub response: Histogram<u64>,
    pub elapsed: Duration,
}

/// Where to publish.
#[derive(Debug, Clone)]
pub enum Target {
    /// Comments to a stream through a Chorus ingest: `http://host:port`, stream id.
    Chorus { ingest: String, stream: String },
    /// Messages to an Nchan channel: `http://host:port`, channel id.
    Nchan { base: String, channel: String },
}

/// Publishes `rate` per second for `duration`, at most `in_flight` at once.
pub async fn publish(target: Target, rate: u32, duration: Duration, in_flight: usize) -> Published {
    let http = reqwest::Client::new();
    let total = (f64::from(rate) * duration.as_secs_f64()) as u64;
    let acked = Arc::new(AtomicU64::new(0));
    let response = Arc::new(Mutex::new(client::histogram()));
    let slots = Arc::new(Semaphore::new(in_flight.max(1)));
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(2));
    let mut seq = 0u64;
    let mut tasks = Vec::new();
    // A server that cannot keep up slows the publisher (bounded in flight): stop offering at the end of the
    // window, whatever was sent by then.
    let window = duration + Duration::from_secs(2);
    while seq < total && started.elapsed() < window {
        tick.tick().await;
        let due = (started.elapsed().as_secs_f64() * f64::from(rate)) as u64;
        while seq < due.min(total) && started.elapsed() < window {
            let Ok(Ok(slot)) =
                tokio::time::timeout(Duration::from_millis(100), slots.clone().acquire_owned())
                    .await
            else {
                break;
            };
            let body = format!("t={} seq={seq}", now_us());
            let request = match &target {
                Target::Chorus { ingest, stream } => http
                    .post(format!("{ingest}/v1/streams/{stream}/comments"))
                    .header("x-user-id", "bench")
                    .json(&serde_json::json!({ "text": body })),
                Target::Nchan { base, channel } => {
                    http.post(format!("{base}/pub?id={channel}")).body(body)
                }
            };
            let (acked, response) = (acked.clone(), response.clone());
            tasks.push(tokio::spawn(async move {
                let _slot = slot;
                let sent = Instant::now();
                let result = request.timeout(Duration::from_secs(10)).send().await;
                if result.is_ok_and(|r| r.status().is_success()) {
                    acked.fetch_add(1, Ordering::Relaxed);
                    let took = sent.elapsed().as_micros() as u64;
                    let mut h = response.lock().unwrap_or_else(|e| e.into_inner());
                    let _ = h.record(took.max(1));
                }
            }));
            seq += 1;
        }
    }
    for task in tasks {
        let _ = task.await;
    }
    let response = response.lock().unwrap_or_else(|e| e.into_inner()).clone();
    Published {
        sent: seq,
        acked: acked.load(Ordering::Relaxed),
        response,
        elapsed: started.elapsed(),
    }
}
