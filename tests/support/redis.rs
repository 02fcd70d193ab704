//! A real `redis-server` for end-to-end tests (Debian package
//! `redis-server`; `ci/test.sh` installs it): on a loopback port, no
//! persistence, with a password; killed and reaped when dropped.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The password every test server requires.
pub const PASSWORD: &str = "s3cret-for-the-test";
/// Bound on waiting for the server to answer.
const PATIENCE: Duration = Duration::from_secs(20);

/// A `redis-server` on a loopback port with no persistence; killed and
/// reaped when dropped.
pub struct RedisServer {
    child: Child,
    pub port: u16,
}

impl RedisServer {
    pub async fn start(port: u16, dir: &Path) -> RedisServer {
        Self::start_with(port, dir, &[]).await
    }

    /// [`RedisServer::start`] with more `redis-server` arguments.
    pub async fn start_with(port: u16, dir: &Path, args: &[&str]) -> RedisServer {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--save",
                "",
                "--appendonly",
                "no",
                "--requirepass",
                PASSWORD,
            ])
            .args(args)
            .arg("--dir")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server (Debian package redis-server; ci/test.sh installs it)");
        let server = RedisServer { child, port };
        let client = redis::Client::open(server.url_with_password()).expect("redis url");
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Ok(mut conn) = client.get_multiplexed_async_connection().await {
                let pong: redis::RedisResult<String> =
                    redis::cmd("PING").query_async(&mut conn).await;
                if pong.is_ok() {
                    return server;
                }
            }
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer PING"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn url_with_password(&self) -> String {
        format!("redis://:{PASSWORD}@127.0.0.1:{}", self.port)
    }

    pub fn stop(mut self) {
        self.child.kill().expect("SIGKILL redis-server");
        self.child.wait().expect("reap redis-server");
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
