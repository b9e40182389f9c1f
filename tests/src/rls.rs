//! The global rate-limit service of the tests: the RLS fixture (tests/fixtures/rls_server)
//! with its counters in a real redis-server, both child processes on loopback.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A child process killed when dropped.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Wait (up to 20 s) until something accepts connections on `port`.
pub fn wait_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what} did not listen on {port}");
}

/// Debian's redis-server (installed by scripts/setup), without persistence.
pub fn redis_server() -> (Proc, u16) {
    let port = crate::free_port();
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start redis-server (scripts/setup installs it): {e}"));
    let p = Proc(child);
    wait_port(port, "redis-server");
    (p, port)
}

/// The RLS fixture binary, built once per test run (a no-op when up to date).
/// `RLS_SERVER_BIN` runs another build with the same command line instead (the limitador
/// variant, tests/fixtures/rls_server/limitador).
pub fn rls_binary() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("RLS_SERVER_BIN") {
            // Relative to the repository root (tests run in tests/).
            return crate::root().join(bin);
        }
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .current_dir(crate::root())
            .args(["build", "--quiet", "-p", "rls_server"])
            .status()
            .unwrap_or_else(|e| panic!("cannot run cargo: {e}"));
        assert!(status.success(), "building tests/fixtures/rls_server failed");
        crate::root().join("target/debug/rls_server")
    })
    .clone()
}

/// The RLS fixture on a free port, domain `edge`, with extra arguments (`--limit`, ...).
pub fn rls_server(redis_port: u16, args: &[&str]) -> (Proc, u16) {
    let port = crate::free_port();
    (rls_server_on(port, redis_port, args), port)
}

/// The RLS fixture on a given port (a test that first puts something else there).
pub fn rls_server_on(port: u16, redis_port: u16, args: &[&str]) -> Proc {
    let child = Command::new(rls_binary())
        .args(["--port", &port.to_string(), "--redis", &format!("redis://127.0.0.1:{redis_port}"), "--domain", "edge"])
        .args(args)
        .stdout(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start rls_server: {e}"));
    let p = Proc(child);
    wait_port(port, "rls_server");
    p
}
