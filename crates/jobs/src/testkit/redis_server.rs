//! A throwaway `redis-server` for one test: an ephemeral port on 127.0.0.1,
//! its own data directory, append-only on, killed when dropped. Fails with
//! an install hint when Redis is not installed.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running server.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts a server on a free port and waits until it answers PING;
    /// panics with an install hint when it cannot (tests).
    pub fn start() -> RedisServer {
        RedisServer::try_start().unwrap_or_else(|reason| panic!("{reason}"))
    }

    /// [`start`](Self::start), saying why it failed instead of panicking.
    pub fn try_start() -> Result<RedisServer, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("no temp dir for redis-server: {e}"))?;
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free port for redis-server: {e}"))?
            .port();
        let mut server = RedisServer {
            child: None,
            port,
            dir,
        };
        server.spawn()?;
        Ok(server)
    }

    /// For examples and benchmarks: the server named by `REDIS_URL` when
    /// set (nothing is started), else a fresh one, kept alive by the
    /// returned handle.
    pub fn url_or_start() -> Result<(String, Option<RedisServer>), String> {
        if let Ok(url) = std::env::var("REDIS_URL") {
            return Ok((url, None));
        }
        let server = RedisServer::try_start()?;
        Ok((server.url(), Some(server)))
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) -> Result<(), String> {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "yes"])
            .args(["--dir", &self.dir.path().display().to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                format!(
                    "cannot start redis-server ({e}); Redis 6.2 or newer is needed: \
                     install it with `sudo apt-get install redis-server` (Debian/Ubuntu) \
                     or `brew install redis` (macOS), or set REDIS_URL where supported"
                )
            })?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.answers_ping() {
            if Instant::now() > deadline {
                return Err(format!(
                    "redis-server on port {} never answered PING",
                    self.port
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }

    fn answers_ping(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
        if stream.write_all(b"PING\r\n").is_err() {
            return false;
        }
        let mut reply = [0u8; 7];
        stream.read_exact(&mut reply).is_ok() && &reply == b"+PONG\r\n"
    }

    /// Stops the server with SIGTERM (it flushes the append-only file) and
    /// waits for the process to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and directory.
    pub fn restart(&mut self) {
        self.stop();
        if let Err(reason) = self.spawn() {
            panic!("{reason}");
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
