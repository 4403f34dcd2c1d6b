//! A throwaway `redis-server` for tests (features `testkit` and `redis`): its own free port on
//! 127.0.0.1, no persistence, killed when dropped. Needs `redis-server` on the `PATH`.

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `redis-server --port P --save '' --appendonly no`.
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    child: Option<Child>,
    /// Extra `redis-server` arguments (e.g. `--requirepass`).
    extra: Vec<String>,
}

impl RedisServer {
    /// Starts one on a free loopback port and waits (at most 10 s) until it accepts.
    pub fn start() -> std::io::Result<RedisServer> {
        RedisServer::start_with(&[])
    }

    /// As [`RedisServer::start`], with extra `redis-server` arguments, e.g.
    /// `["--requirepass", "secret"]`; `{port}` in an argument is replaced by the port (for
    /// TLS: `["--port", "0", "--tls-port", "{port}", ...]`).
    pub fn start_with(extra: &[&str]) -> std::io::Result<RedisServer> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let extra = extra
            .iter()
            .map(|a| a.replace("{port}", &port.to_string()))
            .collect();
        let mut server = RedisServer {
            port,
            child: None,
            extra,
        };
        server.restart()?;
        Ok(server)
    }

    /// `redis://127.0.0.1:P`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The port it listens on (kept across [`RedisServer::restart`]).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills it (as a crash would: no shutdown, nothing saved) and waits for the process.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port, empty, and waits (at most 10 s) until it accepts.
    pub fn restart(&mut self) -> std::io::Result<()> {
        self.kill();
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!("cannot start redis-server (is it installed?): {e}"),
                )
            })?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
        Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!(
                "redis-server did not accept on port {} within 10 s",
                self.port
            ),
        ))
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
