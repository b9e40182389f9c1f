//! The upstream behind Envoy in tests: by default it echoes what reached it as JSON, so a
//! test sees exactly which headers and body got through the filters. Every request is
//! recorded (or only counted, for long runs). A handler can answer anything, streamed in
//! chosen chunks.

use serde_json::json;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone, Default)]
pub struct UpRequest {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl UpRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone)]
pub enum UpBody {
    Full(Vec<u8>),
    /// Sent with chunked transfer-encoding, one write per piece, pausing between them.
    Chunked(Vec<Vec<u8>>, Duration),
}

#[derive(Debug, Clone)]
pub struct UpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: UpBody,
}

impl UpResponse {
    pub fn new(status: u16) -> Self {
        Self { status, headers: Vec::new(), body: UpBody::Full(Vec::new()) }
    }
    pub fn header(mut self, k: &str, v: &str) -> Self {
        self.headers.push((k.into(), v.into()));
        self
    }
    pub fn body(mut self, b: impl Into<Vec<u8>>) -> Self {
        self.body = UpBody::Full(b.into());
        self
    }
    pub fn chunks(mut self, pieces: Vec<Vec<u8>>, pause: Duration) -> Self {
        self.body = UpBody::Chunked(pieces, pause);
        self
    }
}

type Handler = Arc<dyn Fn(&UpRequest) -> UpResponse + Send + Sync>;

/// A threaded HTTP/1.1 server on a free loopback port; lives as long as the process.
#[derive(Clone)]
pub struct Upstream {
    port: u16,
    seen: Arc<Mutex<Vec<UpRequest>>>,
    served: Arc<AtomicUsize>,
}

impl Upstream {
    /// Echo server: 200 with `{"method","path","headers":[[k,v]..],"body"}`.
    pub fn echo() -> Self {
        Self::with_handler(echo)
    }

    pub fn with_handler(h: impl Fn(&UpRequest) -> UpResponse + Send + Sync + 'static) -> Self {
        Self::start(Arc::new(h), true)
    }

    /// Like [`Upstream::with_handler`], but keeps only the count of requests (`requests()` and
    /// `last()` stay empty): memory stays flat however long a soak runs.
    pub fn counting(h: impl Fn(&UpRequest) -> UpResponse + Send + Sync + 'static) -> Self {
        Self::start(Arc::new(h), false)
    }

    fn start(handler: Handler, record: bool) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind upstream");
        let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
        let up = Self { port, seen: Arc::default(), served: Arc::default() };
        let shared = up.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let (handler, up) = (handler.clone(), shared.clone());
                std::thread::spawn(move || serve(conn, handler, &up, record));
            }
        });
        up
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Requests that reached the upstream so far.
    pub fn requests(&self) -> Vec<UpRequest> {
        self.seen.lock().map(|v| v.clone()).unwrap_or_default()
    }

    /// Requests that reached the upstream so far (recorded or only counted).
    pub fn count(&self) -> usize {
        self.served.load(Ordering::SeqCst)
    }

    /// The most recent request, if any.
    pub fn last(&self) -> Option<UpRequest> {
        self.seen.lock().ok().and_then(|v| v.last().cloned())
    }
}

pub fn echo(r: &UpRequest) -> UpResponse {
    let body = json!({
        "method": r.method,
        "path": r.path,
        "headers": r.headers.iter().map(|(k, v)| json!([k, v])).collect::<Vec<_>>(),
        "body": String::from_utf8_lossy(&r.body),
    });
    UpResponse::new(200).header("content-type", "application/json").header("server", "echo/1.0").header("x-powered-by", "tests").body(body.to_string())
}

fn serve(conn: TcpStream, handler: Handler, up: &Upstream, record: bool) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(60)));
    let Ok(mut writer) = conn.try_clone() else { return };
    let mut r = BufReader::new(conn);
    loop {
        let Some(req) = read_request(&mut r) else { return };
        if record {
            if let Ok(mut s) = up.seen.lock() {
                s.push(req.clone());
            }
        }
        up.served.fetch_add(1, Ordering::SeqCst);
        let resp = handler(&req);
        if write_response(&mut writer, &resp, req.method == "HEAD").is_err() {
            return;
        }
    }
}

fn read_request(r: &mut BufReader<TcpStream>) -> Option<UpRequest> {
    let mut line = String::new();
    if r.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let mut headers = Vec::new();
    loop {
        let mut l = Vec::new();
        if r.read_until(b'\n', &mut l).ok()? == 0 {
            return None;
        }
        let l = String::from_utf8_lossy(&l).trim_end_matches(['\r', '\n']).to_string();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let get = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v): &(String, String)| v.clone());
    let mut body = Vec::new();
    if get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            let mut size_line = String::new();
            r.read_line(&mut size_line).ok()?;
            let size = usize::from_str_radix(size_line.trim().split(';').next().unwrap_or("0"), 16).ok()?;
            if size == 0 {
                let mut end = String::new();
                r.read_line(&mut end).ok()?;
                break;
            }
            let mut chunk = vec![0u8; size];
            r.read_exact(&mut chunk).ok()?;
            body.extend_from_slice(&chunk);
            let mut crlf = [0u8; 2];
            r.read_exact(&mut crlf).ok()?;
        }
    } else if let Some(n) = get("content-length").and_then(|v| v.parse::<usize>().ok()) {
        body.resize(n, 0);
        r.read_exact(&mut body).ok()?;
    }
    Some(UpRequest { method, path, headers, body })
}

fn write_response(w: &mut TcpStream, resp: &UpResponse, head: bool) -> std::io::Result<()> {
    let mut out = format!("HTTP/1.1 {} X\r\n", resp.status).into_bytes();
    for (k, v) in &resp.headers {
        out.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
    }
    match &resp.body {
        UpBody::Full(b) => {
            if !resp.headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("content-length")) {
                out.extend_from_slice(format!("content-length: {}\r\n", b.len()).as_bytes());
            }
            out.extend_from_slice(b"\r\n");
            if !head {
                out.extend_from_slice(b);
            }
            w.write_all(&out)?;
        }
        UpBody::Chunked(pieces, pause) => {
            out.extend_from_slice(b"transfer-encoding: chunked\r\n\r\n");
            w.write_all(&out)?;
            w.flush()?;
            for p in pieces {
                if p.is_empty() {
                    continue;
                }
                w.write_all(format!("{:x}\r\n", p.len()).as_bytes())?;
                w.write_all(p)?;
                w.write_all(b"\r\n")?;
                w.flush()?;
                std::thread::sleep(*pause);
            }
            w.write_all(b"0\r\n\r\n")?;
        }
    }
    w.flush()
}
