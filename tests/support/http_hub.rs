//! A stand-in for the Hugging Face Hub, for tests: a tiny HTTP/1.1 server on `127.0.0.1:0`
//! (loopback only) that serves in-memory repos in the Hub's URL layout, the way `hf-hub` 0.4.3
//! reads them:
//!
//! - `GET /api/models/{org}/{name}/revision/{rev}`: the repo info JSON (`sha`, `siblings`);
//! - `GET /{org}/{name}/resolve/{rev}/{file}`: the file, with `ETag`, `X-Repo-Commit`, and
//!   `Range: bytes=S-[E]` answered as `206` with `Content-Range`. Weight files
//!   (`.safetensors`, `.gguf`) are "LFS" files: like the real Hub, their `resolve` answers
//!   `302` to an absolute CDN URL (`/cdn/{org}/{name}/{file}`), with `X-Linked-Etag` and
//!   `X-Repo-Commit` on the redirect;
//! - unknown repos, revisions and files: `404` with the Hub's `X-Error-Code`.
//!
//! Every request is logged so tests can count them. The server thread stops when the
//! [`FakeHub`] is dropped (or after [`MAX_REQUESTS`]), and each connection is bounded by
//! timeouts, so a test never hangs on it.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// The server gives up after this many requests (a runaway client cannot keep it busy).
pub const MAX_REQUESTS: usize = 2000;

/// A repo served by the fake Hub.
#[derive(Clone, Debug)]
pub struct FakeRepo {
    /// `org/name`.
    pub id: String,
    /// The commit `main` points to (40 hex digits).
    pub sha: String,
    /// Path in the repo → content.
    pub files: BTreeMap<String, Vec<u8>>,
}

impl FakeRepo {
    /// A repo with these files at commit `sha`.
    pub fn new(id: &str, sha: &str, files: &[(&str, Vec<u8>)]) -> Self {
        let files = files
            .iter()
            .map(|(n, b)| (n.to_string(), b.clone()))
            .collect();
        Self {
            id: id.to_string(),
            sha: sha.to_string(),
            files,
        }
    }

    /// The content of `name`.
    pub fn file(&self, name: &str) -> &[u8] {
        self.files
            .get(name)
            .map(Vec::as_slice)
            .unwrap_or_else(|| panic!("no file {name} in {}", self.id))
    }
}

/// One request the server received.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    /// The path, percent-decoded, without the query.
    pub path: String,
    /// The `Range` header, if any.
    pub range: Option<String>,
    /// The `Authorization` header, if any.
    pub authorization: Option<String>,
}

/// The running server. Dropping it stops the thread.
pub struct FakeHub {
    endpoint: String,
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<Vec<Request>>>,
    thread: Option<JoinHandle<()>>,
}

impl FakeHub {
    /// Starts serving `repos` on a free loopback port.
    pub fn start(repos: Vec<FakeRepo>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1:0");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let endpoint = format!("http://{}", listener.local_addr().expect("local address"));
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(Vec::new()));
        let repos: BTreeMap<String, FakeRepo> =
            repos.into_iter().map(|r| (r.id.clone(), r)).collect();
        let thread = {
            let (stop, log, endpoint) = (stop.clone(), log.clone(), endpoint.clone());
            std::thread::spawn(move || serve(listener, &repos, &endpoint, &stop, &log))
        };
        Self {
            endpoint,
            stop,
            log,
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT`, to use as `HF_ENDPOINT`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The requests received so far.
    pub fn requests(&self) -> Vec<Request> {
        self.log.lock().expect("request log").clone()
    }

    /// How many requests were received so far.
    pub fn request_count(&self) -> usize {
        self.log.lock().expect("request log").len()
    }

    /// Stops the server and waits for its thread; the port then refuses connections.
    pub fn stop(self) {}
}

impl Drop for FakeHub {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The etag the server gives `bytes` (the name of its blob in the `hf-hub` cache).
pub fn etag_of(bytes: &[u8]) -> String {
    // 64-bit FNV-1a, twice with different seeds, as 32 hex digits.
    let fnv = |seed: u64| {
        bytes.iter().fold(seed, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        })
    };
    format!(
        "{:016x}{:016x}",
        fnv(0xcbf2_9ce4_8422_2325),
        fnv(0x6c62_272e_07bb_0142)
    )
}

/// Deterministic pseudo-random bytes (xorshift), for weight files.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn serve(
    listener: TcpListener,
    repos: &BTreeMap<String, FakeRepo>,
    endpoint: &str,
    stop: &AtomicBool,
    log: &Mutex<Vec<Request>>,
) {
    let mut served = 0;
    while !stop.load(Ordering::SeqCst) && served < MAX_REQUESTS {
        match listener.accept() {
            Ok((stream, _)) => {
                served += 1;
                // A broken connection only fails that request; the client sees it.
                let _ = handle(stream, repos, endpoint, log);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(2))
            }
            Err(_) => break,
        }
    }
}

struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn new(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    fn body(mut self, body: Vec<u8>) -> Self {
        self.body = body;
        self
    }

    /// A Hub-style error, with its `X-Error-Code`.
    fn error(status: u16, code: &str, message: &str) -> Self {
        Self::new(status)
            .header("Content-Type", "application/json")
            .header("X-Error-Code", code)
            .header("X-Error-Message", message)
            .body(format!("{{\"error\":\"{message}\"}}").into_bytes())
    }
}

fn handle(
    stream: TcpStream,
    repos: &BTreeMap<String, FakeRepo>,
    endpoint: &str,
    log: &Mutex<Vec<Request>>,
) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut parts = request_line.split_whitespace();
    let (method, target) = (
        parts.next().unwrap_or("").to_string(),
        parts.next().unwrap_or("").to_string(),
    );
    let (mut range, mut authorization) = (None, None);
    for _ in 0..100 {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            match name.trim().to_ascii_lowercase().as_str() {
                "range" => range = Some(value.trim().to_string()),
                "authorization" => authorization = Some(value.trim().to_string()),
                _ => {}
            }
        }
    }
    let raw_path = target.split('?').next().unwrap_or("");
    let segments: Vec<String> = raw_path.split('/').skip(1).map(percent_decode).collect();
    log.lock().expect("request log").push(Request {
        method: method.clone(),
        path: format!("/{}", segments.join("/")),
        range: range.clone(),
        authorization,
    });
    let response = if method == "GET" || method == "HEAD" {
        route(&segments, range.as_deref(), repos, endpoint)
    } else {
        Response::new(405)
    };
    write_response(stream, &response, method == "HEAD")
}

fn route(
    segments: &[String],
    range: Option<&str>,
    repos: &BTreeMap<String, FakeRepo>,
    endpoint: &str,
) -> Response {
    let seg: Vec<&str> = segments.iter().map(String::as_str).collect();
    match seg.as_slice() {
        ["api", "models", org, name, "revision", rev @ ..] => {
            let Some(repo) = repos.get(&format!("{org}/{name}")) else {
                return Response::error(404, "RepoNotFound", "Repository not found");
            };
            if !revision_ok(repo, &rev.join("/")) {
                return Response::error(404, "RevisionNotFound", "Invalid rev id");
            }
            let siblings: Vec<String> = repo
                .files
                .keys()
                .map(|f| format!("{{\"rfilename\":\"{f}\"}}"))
                .collect();
            let json = format!(
                "{{\"_id\":\"x\",\"id\":\"{}\",\"modelId\":\"{}\",\"sha\":\"{}\",\"private\":false,\"siblings\":[{}]}}",
                repo.id,
                repo.id,
                repo.sha,
                siblings.join(",")
            );
            Response::new(200)
                .header("Content-Type", "application/json")
                .body(json.into_bytes())
        }
        [org, name, "resolve", rev, file @ ..] if !file.is_empty() => {
            let Some(repo) = repos.get(&format!("{org}/{name}")) else {
                return Response::error(404, "RepoNotFound", "Repository not found");
            };
            if !revision_ok(repo, rev) {
                return Response::error(404, "RevisionNotFound", "Invalid rev id");
            }
            let file = file.join("/");
            let Some(bytes) = repo.files.get(&file) else {
                return Response::error(404, "EntryNotFound", "Entry not found");
            };
            let etag = etag_of(bytes);
            if is_lfs(&file) {
                Response::new(302)
                    .header(
                        "Location",
                        format!("{endpoint}/cdn/{org}/{name}/{file}?X-Amz-Signature=fake"),
                    )
                    .header("X-Repo-Commit", repo.sha.clone())
                    .header("X-Linked-Etag", format!("\"{etag}\""))
                    .header("X-Linked-Size", bytes.len().to_string())
                    .header("ETag", "\"pointer-file-etag\"")
            } else {
                ranged(bytes, range)
                    .header("ETag", format!("\"{etag}\""))
                    .header("X-Repo-Commit", repo.sha.clone())
            }
        }
        ["cdn", org, name, file @ ..] if !file.is_empty() => {
            match repos
                .get(&format!("{org}/{name}"))
                .and_then(|r| r.files.get(&file.join("/")))
            {
                Some(bytes) => {
                    ranged(bytes, range).header("ETag", format!("\"{}\"", etag_of(bytes)))
                }
                None => Response::new(404),
            }
        }
        _ => Response::new(404),
    }
}

fn revision_ok(repo: &FakeRepo, rev: &str) -> bool {
    rev == "main" || rev == repo.sha
}

fn is_lfs(file: &str) -> bool {
    file.ends_with(".safetensors") || file.ends_with(".gguf")
}

/// The whole file (`200`), or the asked range (`206` + `Content-Range`), or `416`.
fn ranged(bytes: &[u8], range: Option<&str>) -> Response {
    let Some(spec) = range.and_then(|r| r.strip_prefix("bytes=")) else {
        return Response::new(200).body(bytes.to_vec());
    };
    let (start, end) = spec.split_once('-').unwrap_or((spec, ""));
    let size = bytes.len();
    let start: usize = start.trim().parse().unwrap_or(usize::MAX);
    let end: usize = if end.trim().is_empty() {
        size.saturating_sub(1)
    } else {
        end.trim().parse().unwrap_or(0)
    };
    let end = end.min(size.saturating_sub(1));
    if start >= size || start > end {
        return Response::new(416).header("Content-Range", format!("bytes */{size}"));
    }
    Response::new(206)
        .header("Content-Range", format!("bytes {start}-{end}/{size}"))
        .body(bytes[start..=end].to_vec())
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn write_response(mut stream: TcpStream, r: &Response, head_only: bool) -> std::io::Result<()> {
    let reason = match r.status {
        200 => "OK",
        206 => "Partial Content",
        302 => "Found",
        404 => "Not Found",
        405 => "Method Not Allowed",
        416 => "Range Not Satisfiable",
        _ => "Other",
    };
    let mut head = format!("HTTP/1.1 {} {reason}\r\n", r.status);
    for (name, value) in &r.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        r.body.len()
    ));
    stream.write_all(head.as_bytes())?;
    if !head_only {
        stream.write_all(&r.body)?;
    }
    stream.flush()?;
    let _ = stream.shutdown(std::net::Shutdown::Write);
    Ok(())
}
