//! `chorus demo`: the demo page, served from the binary (no build step): a player-sized placeholder with the
//! live comments, a comment box, a like button and the connection's status, made with the browser client
//! (`clients/js`) as a player page would use it. `/config.json` tells the page where ingest and the edges
//! are; ingest and the edges must list this page's origin in their `--allowed-origins`.

use std::net::SocketAddr;

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use chorus_service::{parse_args, ServeArgs, Server};
use prometheus::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

const INDEX: &str = include_str!("../clients/js/demo/index.html");
const DEMO_JS: &str = include_str!("../clients/js/demo/demo.js");
const DEMO_CSS: &str = include_str!("../clients/js/demo/demo.css");
const CLIENT_JS: &str = include_str!("../clients/js/src/chorus.js");

#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Where the page is served.
    #[arg(long, env = "CHORUS_DEMO_LISTEN", default_value = "127.0.0.1:8090")]
    pub listen: SocketAddr,
    /// The ingest API the page posts to, as the browser reaches it.
    #[arg(
        long,
        env = "CHORUS_DEMO_INGEST_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub ingest_url: String,
    /// The edges the page watches from (comma-separated), as the browser reaches them; it moves to the
    /// next one when it reconnects.
    #[arg(
        long,
        env = "CHORUS_DEMO_EDGE_URL",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:8081"
    )]
    pub edge_url: Vec<String>,
    /// The stream the page shows (the page's `?stream=` overrides it).
    #[arg(long, env = "CHORUS_DEMO_STREAM", default_value = "demo")]
    pub stream: String,
}

/// The page's routes.
pub fn router(args: &DemoArgs) -> Router {
    let config = serde_json::json!({
        "ingest": args.ingest_url,
        "edges": args.edge_url,
        "stream": args.stream,
    });
    let page = |body: &'static str, kind: &'static str| {
        move || async move { ([(header::CONTENT_TYPE, kind)], body).into_response() }
    };
    Router::new()
        .route("/", get(page(INDEX, "text/html; charset=utf-8")))
        .route("/demo.js", get(page(DEMO_JS, "application/javascript")))
        .route("/chorus.js", get(page(CLIENT_JS, "application/javascript")))
        .route("/demo.css", get(page(DEMO_CSS, "text/css")))
        .route("/config.json", get(move || async move { Json(config) }))
}

/// Serves the page on `listener` until `shutdown`, with the same header, body and idle timeouts as every
/// Chorus listener.
pub async fn serve(
    listener: TcpListener,
    args: &DemoArgs,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let serve_args: ServeArgs = parse_args(&[])?;
    let server = Server::new(&serve_args, &Registry::new(), "demo")?;
    server
        .serve(listener, "demo", router(args), shutdown)
        .await?;
    Ok(())
}

/// `chorus demo`: binds and serves until the signal.
pub async fn run(args: DemoArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let listener = TcpListener::bind(args.listen).await?;
    tracing::info!(listen = %args.listen, ingest = %args.ingest_url, "demo page served");
    serve(listener, &args, shutdown).await
}
