//! Ingest against its own OpenAPI document: schemathesis runs every check it has (schema-valid requests
//! accepted, schema-violating ones refused, no server errors, every answer and header as documented, auth
//! not ignored, unsupported methods answered 405) on a JWT-verifying ingest with a real broker.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use chorus_service::clock;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use support::{start_ingest, TestKafka};

const SECRET: &str = "openapi-fuzz-secret";
/// Examples per operation and phase: enough to reach every field's edge cases, bounded in time.
const EXAMPLES: &str = "150";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

async fn output(command: &mut tokio::process::Command, limit: Duration) -> std::process::Output {
    tokio::time::timeout(limit, command.kill_on_drop(true).output())
        .await
        .expect("finished in time")
        .expect("runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_nothing_against_the_openapi_document() {
    let env = output(
        tokio::process::Command::new(root().join("scripts/python-env")).current_dir(root()),
        Duration::from_secs(600),
    )
    .await;
    assert!(
        env.status.success(),
        "{}",
        String::from_utf8_lossy(&env.stderr)
    );
    let python = String::from_utf8(env.stdout).expect("UTF-8 path");
    let python = PathBuf::from(python.lines().last().expect("a python path").trim());
    let schemathesis = python.with_file_name("schemathesis");

    let kafka = TestKafka::start().await;
    let ingest = start_ingest(
        &kafka.args,
        &["--jwt-hs256-secret", SECRET, "--rate-limits=off"],
    )
    .await;
    // A platform administrator: every operation is open to it, the moderation controls included.
    let claims = json!({ "sub": "fuzzer", "role": "admin", "exp": clock::now_ms() / 1000 + 3600 });
    let token = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("sign");
    // Hypothesis keeps its example database in the working directory: a fresh one per run.
    let work = std::env::temp_dir().join(format!("chorus-fuzz-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&work).expect("work dir");
    let run = output(
        tokio::process::Command::new(&schemathesis)
            .arg("--config-file")
            .arg(root().join("tests/fixtures/schemathesis.toml"))
            .args(["run", &format!("{}/openapi.json", ingest.base())])
            .args(["--checks", "all", "--max-examples", EXAMPLES, "--no-color"])
            .args(["--header", &format!("Authorization: Bearer {token}")])
            .current_dir(&work),
        Duration::from_secs(300),
    )
    .await;
    let _ = std::fs::remove_dir_all(&work);
    let report = String::from_utf8_lossy(&run.stdout);
    let summary: Vec<&str> = report.lines().rev().take(12).collect();
    println!(
        "{}",
        summary.into_iter().rev().collect::<Vec<_>>().join("\n")
    );
    assert!(
        run.status.success() && report.contains("No issues found"),
        "schemathesis found issues:\n{report}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    ingest.shutdown.cancel();
}
