//! A TCP proxy in front of a test broker that advertises the proxy's address, so every client of that
//! cluster goes through it: `cut` takes the cluster away (open connections reset, new ones closed at once) and
//! `restore` brings it back, as a network partition or a broker restart would.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub struct Proxy {
    pub addr: SocketAddr,
    up: watch::Sender<bool>,
    task: JoinHandle<()>,
    cut: Arc<AtomicUsize>,
}

impl Proxy {
    /// Forwards `listen` to `to` until dropped.
    pub async fn start(listen: SocketAddr, to: SocketAddr) -> Proxy {
        let listener = TcpListener::bind(listen).await.expect("bind the proxy");
        let (up, watching) = watch::channel(true);
        let cut = Arc::new(AtomicUsize::new(0));
        let counted = cut.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let mut watching = watching.clone();
                if !*watching.borrow_and_update() {
                    counted.fetch_add(1, Ordering::Relaxed);
                    drop(client);
                    continue;
                }
                let counted = counted.clone();
                tokio::spawn(async move {
                    let Ok(mut broker) = TcpStream::connect(to).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut broker) => {}
                        _ = watching.wait_for(|up| !*up) => {
                            counted.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        Proxy {
            addr: listen,
            up,
            task,
            cut,
        }
    }

    /// The cluster goes away: every connection through the proxy ends, and new ones are closed at once.
    pub fn cut(&self) {
        self.up.send_replace(false);
    }

    /// Connections reset or refused because the cluster was away.
    pub fn connections_cut(&self) -> usize {
        self.cut.load(Ordering::Relaxed)
    }

    /// The cluster is back.
    pub fn restore(&self) {
        self.up.send_replace(true);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
