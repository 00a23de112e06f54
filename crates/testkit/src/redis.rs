//! [`RedisServer`]: a real `redis-server`, never a system one, on a free loopback port.

use std::process::Command;
use std::time::Duration;

/// A `redis-server` on a free port, with no persistence; shut down when dropped.
pub struct RedisServer {
    /// The port it listens on.
    pub port: u16,
    dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts it, failing loudly when redis-server is not installed (scripts/test.sh installs it).
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
        let status = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string(), "--save", "", "--appendonly", "no"])
            .args(["--daemonize", "yes", "--dir"])
            .arg(dir.path())
            .arg("--pidfile")
            .arg(dir.path().join("redis.pid"))
            .arg("--logfile")
            .arg(dir.path().join("redis.log"))
            .status()
            .expect("redis-server is not installed: run scripts/test.sh, or apt-get install redis-server");
        assert!(status.success(), "redis-server did not start");
        let redis = Self { port, dir };
        redis.wait_until(true);
        redis
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Stops it, as a crash would look to its clients: connections refused from now on.
    pub fn kill(&self) {
        self.shutdown();
        self.wait_until(false);
    }

    fn shutdown(&self) {
        let _ = Command::new("redis-cli").args(["-p", &self.port.to_string(), "shutdown", "nosave"]).output();
    }

    fn ping(&self) -> bool {
        Command::new("redis-cli")
            .args(["-p", &self.port.to_string(), "ping"])
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "PONG")
    }

    fn wait_until(&self, up: bool) {
        for _ in 0..400 {
            if self.ping() == up {
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("redis on port {} did not come {}", self.port, if up { "up" } else { "down" });
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if self.dir.path().join("redis.pid").exists() {
            self.shutdown();
        }
    }
}
