//! `chorus watch URL`: a minimal viewer that prints every frame an edge sends, one JSON object per line. When
//! the edge asks it to reconnect (lifetime, drain, too slow), it comes back after the delay asked for, with the
//! last cursor it was given, and says on stderr whether it resumed.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

/// The longest wait between two connections, whatever the edge asks.
const MAX_DELAY: Duration = Duration::from_secs(30);

pub async fn run(url: &str, shutdown: CancellationToken) -> anyhow::Result<()> {
    let mut cursor: Option<String> = None;
    let mut first = true;
    loop {
        let target = with_cursor(url, cursor.as_deref())?;
        let delay = match connection(&target, &mut cursor, &shutdown).await {
            Ok(Some(delay)) => delay,
            Ok(None) => return Ok(()),
            // The first connection must work; a comeback that finds the edge gone ends the watch.
            Err(error) if !first => {
                eprintln!("cannot reconnect ({error:#}); stopping");
                return Ok(());
            }
            Err(error) => return Err(error),
        };
        first = false;
        eprintln!("the edge asks to reconnect in {} ms", delay.as_millis());
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            () = tokio::time::sleep(delay.min(MAX_DELAY)) => {}
        }
    }
}

/// `url` with `cursor=` set to `cursor`, if there is one.
fn with_cursor(url: &str, cursor: Option<&str>) -> anyhow::Result<String> {
    let mut url = reqwest::Url::parse(url)?;
    if let Some(cursor) = cursor {
        let kept: Vec<(String, String)> = url
            .query_pairs()
            .filter(|(k, _)| k != "cursor")
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        url.query_pairs_mut()
            .clear()
            .extend_pairs(kept)
            .append_pair("cursor", cursor);
    }
    Ok(url.into())
}

/// One connection: prints its frames and keeps the cursor; the delay the edge asked for when it asked to
/// reconnect, `None` when the connection ended otherwise (or on Ctrl-C).
async fn connection(
    url: &str,
    cursor: &mut Option<String>,
    shutdown: &CancellationToken,
) -> anyhow::Result<Option<Duration>> {
    let (mut socket, _) = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::connect_async(url),
    )
    .await
    .map_err(|_| anyhow::anyhow!("connecting to {url} timed out"))??;
    loop {
        let message = tokio::select! {
            () = shutdown.cancelled() => return Ok(None),
            message = socket.next() => message,
        };
        match message {
            Some(Ok(Message::Text(text))) => {
                println!("{text}");
                let frame: Value = serde_json::from_str(&text).unwrap_or_default();
                if let Some(c) = frame["cursor"].as_str() {
                    *cursor = Some(c.to_owned());
                }
                match frame["type"].as_str() {
                    Some("hello") if url.contains("cursor=") => {
                        eprintln!("resumed: {}", frame["resumed"]);
                    }
                    Some("reconnect") => {
                        let delay = frame["delay_ms"].as_u64().unwrap_or(0);
                        return Ok(Some(Duration::from_millis(delay)));
                    }
                    _ => {}
                }
            }
            Some(Ok(Message::Close(frame))) => {
                eprintln!("closed by the edge: {frame:?}");
                return Ok(None);
            }
            Some(Ok(_)) => {}
            Some(Err(error)) => return Err(error.into()),
            None => return Ok(None),
        }
    }
}
