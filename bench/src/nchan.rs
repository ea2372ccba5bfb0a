//! The peer: nginx with the Nchan module, what a user would run instead of Chorus's edge. It runs from a private
//! directory (configuration, pid file, logs and temp files all inside it), so nothing system-wide changes, and it
//! is stopped when dropped, so no nginx outlives the bench.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

const NGINX: &str = "/usr/sbin/nginx";
const NCHAN_MODULE: &str = "/usr/lib/nginx/modules/ngx_nchan_module.so";
const INSTALL_HINT: &str = "install Debian packages nginx and libnginx-mod-nchan";
const TEMP_DIRS: [&str; 5] = ["body", "proxy", "fastcgi", "uwsgi", "scgi"];

/// How long nginx may take to start listening, and to stop.
const START_TIMEOUT: Duration = Duration::from_secs(10);
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(50);

/// A running nginx + Nchan: one worker, publishing on `POST /pub?id=CHANNEL`, subscribing by WebSocket on
/// `/sub?id=CHANNEL`.
#[derive(Debug)]
pub struct Nchan {
    dir: PathBuf,
    pub addr: SocketAddr,
    stopped: bool,
}

impl Nchan {
    /// Writes `nginx.conf` into `dir` (created if missing), starts nginx listening on `addr`, and waits until it
    /// accepts TCP connections and its worker is running.
    pub async fn start(dir: &Path, addr: SocketAddr) -> anyhow::Result<Nchan> {
        for needed in [NGINX, NCHAN_MODULE] {
            if !Path::new(needed).exists() {
                bail!("{needed} not found: {INSTALL_HINT}");
            }
        }
        for sub in TEMP_DIRS {
            let path = dir.join("tmp").join(sub);
            std::fs::create_dir_all(&path)
                .with_context(|| format!("creating {}", path.display()))?;
        }
        let dir = dir
            .canonicalize()
            .with_context(|| format!("resolving {}", dir.display()))?;
        let nchan = Nchan {
            dir,
            addr,
            stopped: false,
        };
        if nchan.pid_file().exists() {
            // An nginx left from an earlier run in this directory would share the port (reuseport): stop it.
            nchan.stop_blocking();
        }
        std::fs::write(nchan.conf(), config(&nchan.dir, addr))
            .with_context(|| format!("writing {}", nchan.conf().display()))?;

        let startup_log = nchan.dir.join("startup.log");
        let stderr = std::fs::File::create(&startup_log)
            .with_context(|| format!("creating {}", startup_log.display()))?;
        // nginx forks its master into the background and exits; the master writes the pid file.
        let status = tokio::time::timeout(
            START_TIMEOUT,
            tokio::process::Command::new(NGINX)
                .args(nchan.args())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(stderr)
                .kill_on_drop(true)
                .status(),
        )
        .await
        .context("nginx did not return within 10 s")?
        .context("running nginx")?;
        if !status.success() {
            bail!("nginx failed to start ({status}): {}", nchan.logs());
        }

        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let connect = tokio::time::timeout(POLL, tokio::net::TcpStream::connect(addr)).await;
            // The worker must exist too: callers measure the processes in `pids()` right away.
            if matches!(connect, Ok(Ok(_))) && nchan.pids().len() > 1 {
                return Ok(nchan);
            }
            if Instant::now() >= deadline {
                bail!(
                    "nginx + Nchan not listening on {addr} after 10 s: {}",
                    nchan.logs()
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The nginx master and its workers, to read their CPU time and memory from /proc.
    pub fn pids(&self) -> Vec<u32> {
        let Some(master) = self.master_pid() else {
            return Vec::new();
        };
        let mut pids = vec![master];
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return pids;
        };
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|name| name.parse::<u32>().ok())
            else {
                continue;
            };
            if parent_pid(pid) == Some(master) {
                pids.push(pid);
            }
        }
        pids
    }

    /// Publishes `body` to `channel`; an error unless Nchan answers with a 2xx status within 10 s.
    // The scenarios publish through their own rate-limited publisher; this one serves single messages.
    #[cfg_attr(not(test), allow(dead_code))]
    pub async fn publish(
        &self,
        client: &reqwest::Client,
        channel: &str,
        body: String,
    ) -> anyhow::Result<()> {
        let response = client
            .post(format!("http://{}/pub", self.addr))
            .query(&[("id", channel)])
            .body(body)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .with_context(|| format!("publishing to Nchan channel {channel}"))?;
        let status = response.status();
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            bail!("Nchan refused a message to channel {channel}: {status} {text}");
        }
        Ok(())
    }

    /// The WebSocket URL of a subscriber to `channel` (a URL-safe id).
    pub fn subscribe_url(&self, channel: &str) -> String {
        format!("ws://{}/sub?id={channel}", self.addr)
    }

    /// Stops nginx (fast shutdown) and waits, at most 10 s, for it to exit.
    pub async fn stop(mut self) {
        self.stopped = true;
        let stop = tokio::process::Command::new(NGINX)
            .args(self.args())
            .args(["-s", "stop"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .status();
        let deadline = Instant::now() + STOP_TIMEOUT;
        match tokio::time::timeout(STOP_TIMEOUT, stop).await {
            Ok(Ok(status)) if status.success() => {}
            Ok(Ok(status)) => eprintln!("nginx -s stop failed ({status}): {}", self.logs()),
            Ok(Err(e)) => eprintln!("running nginx -s stop: {e}"),
            Err(_) => eprintln!("nginx -s stop did not return within 10 s"),
        }
        while self.pid_file().exists() {
            if Instant::now() >= deadline {
                eprintln!(
                    "nginx + Nchan in {} still running after 10 s",
                    self.dir.display()
                );
                return;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// [`Nchan::stop`] without an async runtime, for `Drop`.
    fn stop_blocking(&self) {
        let deadline = Instant::now() + STOP_TIMEOUT;
        let child = std::process::Command::new(NGINX)
            .args(self.args())
            .args(["-s", "stop"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let mut child = match child {
            Ok(child) => child,
            Err(e) => {
                eprintln!("running nginx -s stop: {e}");
                return;
            }
        };
        loop {
            match child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() < deadline => std::thread::sleep(POLL),
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    eprintln!("nginx -s stop did not return within 10 s");
                    return;
                }
            }
        }
        while self.pid_file().exists() && Instant::now() < deadline {
            std::thread::sleep(POLL);
        }
        if self.pid_file().exists() {
            eprintln!(
                "nginx + Nchan in {} still running after 10 s",
                self.dir.display()
            );
        }
    }

    /// `-p DIR -e DIR/error.log -c DIR/nginx.conf`: the error log is given on the command line too, so nginx
    /// does not try the system-wide one before it has read the configuration.
    fn args(&self) -> [PathBuf; 6] {
        [
            "-p".into(),
            self.dir.clone(),
            "-e".into(),
            self.dir.join("error.log"),
            "-c".into(),
            self.conf(),
        ]
    }

    fn conf(&self) -> PathBuf {
        self.dir.join("nginx.conf")
    }

    fn pid_file(&self) -> PathBuf {
        self.dir.join("nginx.pid")
    }

    fn master_pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.pid_file())
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// nginx's startup output and the end of its error log, for error messages.
    fn logs(&self) -> String {
        let read = |name: &str| std::fs::read_to_string(self.dir.join(name)).unwrap_or_default();
        let (startup, errors) = (read("startup.log"), read("error.log"));
        let tail: Vec<&str> = errors.lines().rev().take(10).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        format!("{}\n{}", startup.trim(), tail.join("\n"))
            .trim()
            .to_owned()
    }
}

impl Drop for Nchan {
    fn drop(&mut self) {
        if !self.stopped {
            self.stop_blocking();
        }
    }
}

/// The parent pid of a process, from `/proc/PID/stat` (`pid (comm) state ppid ...`; comm may hold spaces).
fn parent_pid(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// The configuration that serves Nchan here: one worker, no access log, every path inside `dir`.
fn config(dir: &Path, addr: SocketAddr) -> String {
    let dir = dir.display();
    format!(
        r#"load_module "{NCHAN_MODULE}";
worker_processes 1;
worker_rlimit_nofile 262144;
pid "{dir}/nginx.pid";
error_log "{dir}/error.log" warn;
events {{ worker_connections 65536; multi_accept on; }}
http {{
  access_log off;
  client_body_temp_path "{dir}/tmp/body";  proxy_temp_path "{dir}/tmp/proxy";  fastcgi_temp_path "{dir}/tmp/fastcgi";
  uwsgi_temp_path "{dir}/tmp/uwsgi";       scgi_temp_path "{dir}/tmp/scgi";
  nchan_max_reserved_memory 256M;
  server {{
    listen {addr} backlog=4096 reuseport;
    location = /pub {{ nchan_publisher; nchan_channel_id $arg_id;
                      nchan_message_buffer_length 16; nchan_message_timeout 60s; }}
    location = /sub {{ nchan_subscriber websocket; nchan_channel_id $arg_id;
                      nchan_subscriber_first_message newest; }}
  }}
}}
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt as _;
    use tokio_tungstenite::tungstenite::Message;

    #[tokio::test]
    async fn delivers_a_published_message_to_a_subscriber() -> anyhow::Result<()> {
        if !Path::new(NGINX).exists() || !Path::new(NCHAN_MODULE).exists() {
            println!("skipped: nginx + Nchan not installed ({INSTALL_HINT})");
            return Ok(());
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_nanos();
        let dir =
            std::env::temp_dir().join(format!("chorus-bench-nchan-{}-{nanos}", std::process::id()));

        let result = exchange(&dir, addr).await;
        let _ = std::fs::remove_dir_all(&dir);
        result
    }

    async fn exchange(dir: &Path, addr: SocketAddr) -> anyhow::Result<()> {
        let nchan = Nchan::start(dir, addr).await?;
        assert!(!nchan.pids().is_empty(), "the master pid is known");
        let wait = Duration::from_secs(5);
        let (mut ws, _) = tokio::time::timeout(
            wait,
            tokio_tungstenite::connect_async(nchan.subscribe_url("test")),
        )
        .await??;
        nchan
            .publish(&reqwest::Client::new(), "test", "hello".to_owned())
            .await?;
        let received = tokio::time::timeout(wait, async {
            while let Some(message) = ws.next().await {
                match message? {
                    Message::Text(text) => return anyhow::Ok(Some(text.to_string())),
                    Message::Binary(bytes) => {
                        return Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
                    }
                    _ => {}
                }
            }
            Ok(None)
        })
        .await
        .context("no message within 5 s")??;
        assert_eq!(received.as_deref(), Some("hello"));
        drop(ws);
        let pid_file = nchan.pid_file();
        nchan.stop().await;
        assert!(!pid_file.exists(), "nginx stopped");
        Ok(())
    }
}
