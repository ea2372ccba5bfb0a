//! `chorus watch URL`: a minimal viewer that prints every frame an edge sends, one JSON object per line.

use std::time::Duration;

use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

pub async fn run(url: &str, shutdown: CancellationToken) -> anyhow::Result<()> {
    let (mut socket, _) = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::connect_async(url),
    )
    .await
    .map_err(|_| anyhow::anyhow!("connecting to {url} timed out"))??;
    loop {
        let message = tokio::select! {
            () = shutdown.cancelled() => break,
            message = socket.next() => message,
        };
        match message {
            Some(Ok(Message::Text(text))) => println!("{text}"),
            Some(Ok(Message::Close(frame))) => {
                eprintln!("closed by the edge: {frame:?}");
                break;
            }
            Some(Ok(_)) => {}
            Some(Err(error)) => return Err(error.into()),
            None => break,
        }
    }
    Ok(())
}
