//! A lean HTTP/1.1 client for webhooks on plain `http://` URLs.
//!
//! reqwest's request path (its redirect and retry layers re-parse the URL on every request, then
//! hyper-util's pool hands the request to a connection task over a channel) cost a third of
//! Tocsin's CPU per notification when thousands of groups fell due at once. Here the sending task
//! owns a pooled connection for the exchange: one write of the whole request, reads until the
//! response is complete, the connection back into the pool. Anything beyond plain HTTP (TLS,
//! proxies, credentials in the URL) stays with reqwest; redirects are followed by the caller.

use std::io;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use reqwest::Url;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Idle connections kept per origin: as many as an integration sends at once.
const MAX_IDLE: usize = crate::MAX_IN_FLIGHT;
/// An idle connection is closed after this long (Go's default transport: 90 s).
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// A response head longer than this is refused.
const MAX_HEAD: usize = 64 * 1024;
/// Bytes of a response body kept for the caller: error messages quote its start, and some
/// integrations judge success from it (Slack's `{"ok": true, …}` echoes the message).
const KEEP_BODY: usize = 64 * 1024;
/// A body longer than this is not read to its end: the connection is closed instead.
const MAX_DRAIN: u64 = 1 << 20;

/// A response: its status, its `Location`, the start of its body.
#[derive(Debug)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// The `Location` header, for redirects.
    pub location: Option<String>,
    /// The `Content-Type` header.
    pub content_type: Option<String>,
    /// The `Retry-After` header.
    pub retry_after: Option<String>,
    /// The body's first 64 KiB.
    pub body: Vec<u8>,
}

enum Dial {
    Addr(SocketAddr),
    Name(String, u16),
}

/// One `http://host:port` origin and its idle keep-alive connections.
pub struct Origin {
    dial: Dial,
    /// The `Host` header: the URL's host, with its port unless it is 80.
    host: String,
    idle: Mutex<Vec<Conn>>,
}

impl Origin {
    /// The origin of a plain `http://` URL without credentials; `None` for anything else.
    pub fn of(url: &Url) -> Option<Origin> {
        if url.scheme() != "http" || !url.username().is_empty() || url.password().is_some() {
            return None;
        }
        let port = url.port_or_known_default()?;
        let dial = match url.host()? {
            url::Host::Ipv4(a) => Dial::Addr(SocketAddr::from((a, port))),
            url::Host::Ipv6(a) => Dial::Addr(SocketAddr::from((a, port))),
            url::Host::Domain(d) => Dial::Name(d.to_string(), port),
        };
        let host = match url.port() {
            Some(p) => format!("{}:{p}", url.host_str()?),
            None => url.host_str()?.to_string(),
        };
        Some(Origin {
            dial,
            host,
            idle: Mutex::new(Vec::new()),
        })
    }

    /// Whether `url` is on this origin.
    pub fn serves(&self, url: &Url) -> bool {
        Origin::of(url).is_some_and(|o| o.host == self.host)
    }

    /// The `Host` header value.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Sends one encoded request (see [`encode`]) on an idle connection or a new one, and reads
    /// the whole response. Dropping the future closes the connection it was using.
    ///
    /// # Errors
    /// Connection errors, a connection closed before the response ended, a malformed response.
    pub async fn send(&self, request: &[u8]) -> io::Result<Response> {
        let mut conn = match self.checkout() {
            Some(c) => c,
            None => self.connect().await?,
        };
        conn.stream.write_all(request).await?;
        let (response, reusable) = conn.read_response().await?;
        if reusable {
            self.checkin(conn);
        }
        Ok(response)
    }

    async fn connect(&self) -> io::Result<Conn> {
        let stream = match &self.dial {
            Dial::Addr(a) => TcpStream::connect(a).await?,
            Dial::Name(h, p) => TcpStream::connect((h.as_str(), *p)).await?,
        };
        // The request goes out in one write; no reason to hold any of it back.
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            buf: Vec::new(),
            since: Instant::now(),
        })
    }

    /// The most recently used idle connection that the server has not closed meanwhile.
    fn checkout(&self) -> Option<Conn> {
        let mut idle = self.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        while let Some(c) = idle.pop() {
            if c.since.elapsed() >= IDLE_TIMEOUT {
                continue;
            }
            // Nothing to read and no end of stream: the server still keeps it open. (A close
            // racing with the request shows as an error, which the retry stage handles.)
            if let Err(e) = c.stream.try_read(&mut [0u8; 1])
                && e.kind() == io::ErrorKind::WouldBlock
            {
                return Some(c);
            }
        }
        None
    }

    fn checkin(&self, mut conn: Conn) {
        conn.since = Instant::now();
        let mut idle = self.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // Oldest first: close those idle too long, once the oldest is.
        if idle.first().is_some_and(|c| c.since.elapsed() >= IDLE_TIMEOUT) {
            idle.retain(|c| c.since.elapsed() < IDLE_TIMEOUT);
        }
        if idle.len() < MAX_IDLE {
            idle.push(conn);
        }
    }
}

/// Encodes a request: `body` (with its content type) or none.
pub fn encode(
    method: &str,
    url: &Url,
    host: &str,
    user_agent: &str,
    authorization: Option<&str>,
    headers: &[(String, String)],
    body: Option<(&str, &[u8])>,
) -> Vec<u8> {
    use std::io::Write;
    let target = &url[url::Position::BeforePath..url::Position::AfterQuery];
    let len = body.map_or(0, |(_, b)| b.len());
    let mut out = Vec::with_capacity(256 + len);
    // Writing into a Vec cannot fail.
    let _ = write!(
        out,
        "{method} {target} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {user_agent}\r\n"
    );
    if let Some(a) = authorization {
        let _ = write!(out, "Authorization: {a}\r\n");
    }
    for (k, v) in headers {
        // A value read from a file must not smuggle a header or a request in.
        if !v.bytes().any(|b| b == b'\r' || b == b'\n') {
            let _ = write!(out, "{k}: {v}\r\n");
        }
    }
    if let Some((content_type, b)) = body {
        let _ = write!(
            out,
            "Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
            b.len()
        );
        out.extend_from_slice(b);
    } else {
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// How a response body is delimited (RFC 9112 §6.3).
enum Framing {
    Empty,
    Length(u64),
    Chunked,
    UntilClose,
}

struct Head {
    status: u16,
    location: Option<String>,
    content_type: Option<String>,
    retry_after: Option<String>,
    framing: Framing,
    keep_alive: bool,
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

fn parse_head(r: &httparse::Response) -> io::Result<Head> {
    let status = r.code.ok_or_else(|| invalid("malformed HTTP response: no status"))?;
    let mut length: Option<u64> = None;
    let mut chunked = None;
    let mut location = None;
    let mut content_type = None;
    let mut retry_after = None;
    // HTTP/1.1 keeps the connection unless told otherwise; 1.0 is not reused here.
    let mut keep_alive = r.version == Some(1);
    for h in r.headers.iter() {
        let value = std::str::from_utf8(h.value).unwrap_or("").trim();
        if h.name.eq_ignore_ascii_case("content-length") {
            let n = value
                .parse::<u64>()
                .map_err(|_| invalid(format!("malformed HTTP response: content-length {value:?}")))?;
            if length.is_some_and(|l| l != n) {
                return Err(invalid("malformed HTTP response: conflicting content-length"));
            }
            length = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            // Only the last coding decides whether the body is chunked.
            let last = value.rsplit(',').next().unwrap_or("").trim();
            chunked = Some(last.eq_ignore_ascii_case("chunked"));
        } else if h.name.eq_ignore_ascii_case("connection") {
            if value.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")) {
                keep_alive = false;
            }
        } else if h.name.eq_ignore_ascii_case("location") {
            location = Some(value.to_string());
        } else if h.name.eq_ignore_ascii_case("content-type") {
            content_type = Some(value.to_string());
        } else if h.name.eq_ignore_ascii_case("retry-after") {
            retry_after = Some(value.to_string());
        }
    }
    let framing = if status == 204 || status == 304 {
        Framing::Empty
    } else {
        match (chunked, length) {
            (Some(true), _) => Framing::Chunked,
            (Some(false), _) | (None, None) => Framing::UntilClose,
            (None, Some(n)) => Framing::Length(n),
        }
    };
    Ok(Head {
        status,
        location,
        content_type,
        retry_after,
        framing,
        keep_alive,
    })
}

struct Conn {
    stream: TcpStream,
    /// Bytes read and not yet consumed.
    buf: Vec<u8>,
    /// When it was last checked in.
    since: Instant,
}

impl Conn {
    /// Reads more; `Ok(false)` at the end of the stream.
    async fn fill(&mut self) -> io::Result<bool> {
        self.buf.reserve(8192);
        Ok(self.stream.read_buf(&mut self.buf).await? > 0)
    }

    async fn fill_or_fail(&mut self) -> io::Result<()> {
        if self.fill().await? {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed before the response was complete",
            ))
        }
    }

    /// Reads a response; also whether the connection can carry another request.
    async fn read_response(&mut self) -> io::Result<(Response, bool)> {
        let head = loop {
            let mut headers = [httparse::EMPTY_HEADER; 100];
            let mut r = httparse::Response::new(&mut headers);
            match r.parse(&self.buf) {
                Ok(httparse::Status::Complete(n)) => {
                    let head = parse_head(&r)?;
                    self.buf.drain(..n);
                    // Interim responses (100 Continue, 103 Early Hints) precede the real one.
                    if (100..200).contains(&head.status) && head.status != 101 {
                        continue;
                    }
                    if head.status == 101 {
                        return Err(invalid("unexpected protocol switch (101)"));
                    }
                    break head;
                }
                Ok(httparse::Status::Partial) if self.buf.len() > MAX_HEAD => {
                    return Err(invalid("response head too large"));
                }
                Ok(httparse::Status::Partial) => self.fill_or_fail().await?,
                Err(e) => return Err(invalid(format!("malformed HTTP response: {e}"))),
            }
        };
        let mut body = Vec::new();
        let complete = match head.framing {
            Framing::Empty => true,
            Framing::Length(n) => self.take(n, &mut body).await?,
            Framing::Chunked => self.chunked(&mut body).await?,
            Framing::UntilClose => {
                while self.fill().await? {
                    if self.buf.len() as u64 > MAX_DRAIN {
                        break;
                    }
                }
                keep(&mut body, &self.buf);
                false
            }
        };
        let reusable = complete && head.keep_alive && self.buf.is_empty();
        let response = Response {
            status: head.status,
            location: head.location,
            content_type: head.content_type,
            retry_after: head.retry_after,
            body,
        };
        Ok((response, reusable))
    }

    /// Consumes `n` body bytes, keeping the start; `Ok(false)` if it gave up on a long body.
    async fn take(&mut self, mut n: u64, body: &mut Vec<u8>) -> io::Result<bool> {
        if n > MAX_DRAIN {
            // Not worth reading for the connection's sake; keep what is at hand.
            keep(body, &self.buf[..self.buf.len().min(KEEP_BODY)]);
            return Ok(false);
        }
        while n > 0 {
            if self.buf.is_empty() {
                self.fill_or_fail().await?;
            }
            let k = self.buf.len().min(usize::try_from(n).unwrap_or(usize::MAX));
            keep(body, &self.buf[..k]);
            self.buf.drain(..k);
            n -= k as u64;
        }
        Ok(true)
    }

    /// One line without its line ending.
    async fn line(&mut self) -> io::Result<String> {
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                let line = String::from_utf8_lossy(&self.buf[..i])
                    .trim_end_matches('\r')
                    .to_string();
                self.buf.drain(..=i);
                return Ok(line);
            }
            if self.buf.len() > MAX_HEAD {
                return Err(invalid("malformed chunked body: line too long"));
            }
            self.fill_or_fail().await?;
        }
    }

    async fn chunked(&mut self, body: &mut Vec<u8>) -> io::Result<bool> {
        let mut total = 0u64;
        loop {
            let line = self.line().await?;
            let size = line.split(';').next().unwrap_or("").trim();
            let size = u64::from_str_radix(size, 16)
                .map_err(|_| invalid(format!("malformed chunked body: chunk size {size:?}")))?;
            if size == 0 {
                // Trailer fields, up to the empty line.
                while !self.line().await?.is_empty() {}
                return Ok(true);
            }
            total += size;
            if total > MAX_DRAIN || !self.take(size, body).await? {
                return Ok(false);
            }
            if !self.line().await?.is_empty() {
                return Err(invalid("malformed chunked body: no line end after a chunk"));
            }
        }
    }
}

fn keep(body: &mut Vec<u8>, bytes: &[u8]) {
    let room = KEEP_BODY.saturating_sub(body.len());
    body.extend_from_slice(&bytes[..bytes.len().min(room)]);
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::net::TcpListener;

    use super::*;

    /// A server that answers each request on a connection with the next of `replies` (then
    /// closes it if `close_after` replies were sent on it); counts the connections accepted.
    async fn server(replies: Vec<&'static str>, close_after: usize) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = Url::parse(&format!("http://{}/hook?x=1", listener.local_addr().unwrap())).unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (a, s) = (accepted.clone(), seen.clone());
        let (closed_tx, closed) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut next = 0;
            loop {
                let (mut tcp, _) = listener.accept().await.unwrap();
                a.fetch_add(1, Ordering::SeqCst);
                for _ in 0..close_after {
                    let mut req = Vec::new();
                    loop {
                        let mut chunk = [0u8; 4096];
                        let n = tcp.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            break;
                        }
                        req.extend_from_slice(&chunk[..n]);
                        let text = String::from_utf8_lossy(&req);
                        let Some(end) = text.find("\r\n\r\n") else { continue };
                        let len = text
                            .lines()
                            .find_map(|l| l.strip_prefix("Content-Length: "))
                            .map_or(0, |v| v.parse::<usize>().unwrap());
                        if req.len() >= end + 4 + len {
                            break;
                        }
                    }
                    if req.is_empty() {
                        break;
                    }
                    s.lock().unwrap().push(String::from_utf8_lossy(&req).to_string());
                    tcp.write_all(replies[next % replies.len()].as_bytes()).await.unwrap();
                    next += 1;
                }
                drop(tcp);
                let _ = closed_tx.send(());
            }
        });
        Server {
            url,
            accepted,
            seen,
            closed,
        }
    }

    struct Server {
        url: Url,
        accepted: Arc<AtomicUsize>,
        seen: Arc<Mutex<Vec<String>>>,
        /// One message per connection the server has closed.
        closed: tokio::sync::mpsc::UnboundedReceiver<()>,
    }

    fn post(origin: &Origin, url: &Url, body: &[u8]) -> Vec<u8> {
        encode(
            "POST",
            url,
            origin.host(),
            "Tocsin/test",
            None,
            &[],
            Some(("application/json", body)),
        )
    }

    #[test]
    fn extra_headers_are_written_and_a_value_with_a_line_break_is_dropped() {
        let url = Url::parse("http://127.0.0.1:1/hook").unwrap();
        let origin = Origin::of(&url).unwrap();
        let headers = [
            ("X-Team".to_string(), "a".to_string()),
            ("X-Team".to_string(), "b".to_string()),
            ("X-Evil".to_string(), "x\r\nHost: elsewhere".to_string()),
        ];
        let req = encode(
            "POST",
            &url,
            origin.host(),
            "Tocsin/test",
            None,
            &headers,
            Some(("application/json", b"{}")),
        );
        let text = String::from_utf8(req).unwrap();
        assert!(text.contains("\r\nX-Team: a\r\nX-Team: b\r\n"), "{text}");
        assert!(!text.contains("X-Evil") && !text.contains("elsewhere"), "{text}");
    }

    const OK: &str = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

    #[tokio::test]
    async fn keep_alive_connections_are_reused_and_requests_are_well_formed() {
        let srv = server(vec![OK], 10).await;
        let origin = Origin::of(&srv.url).unwrap();
        for body in [&b"{}"[..], b"{\"a\":1}", b"[]"] {
            let r = origin.send(&post(&origin, &srv.url, body)).await.unwrap();
            assert_eq!((r.status, r.body.as_slice()), (200, &b"ok"[..]));
        }
        assert_eq!(srv.accepted.load(Ordering::SeqCst), 1);
        let second = srv.seen.lock().unwrap()[1].clone();
        let host = format!("127.0.0.1:{}", srv.url.port().unwrap());
        assert_eq!(
            second,
            format!(
                "POST /hook?x=1 HTTP/1.1\r\nHost: {host}\r\nUser-Agent: Tocsin/test\r\n\
                 Content-Type: application/json\r\nContent-Length: 7\r\n\r\n{{\"a\":1}}"
            )
        );
    }

    #[tokio::test]
    async fn a_connection_the_server_closed_while_idle_is_not_used() {
        // One reply per connection, then the server closes it without announcing it.
        let mut srv = server(vec![OK], 1).await;
        let origin = Origin::of(&srv.url).unwrap();
        for _ in 0..3 {
            let r = origin.send(&post(&origin, &srv.url, b"{}")).await.unwrap();
            assert_eq!(r.status, 200);
            srv.closed.recv().await.unwrap();
        }
        assert_eq!(srv.accepted.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn connection_close_and_http_1_0_are_not_reused() {
        let close = "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
        // The server would answer a second request on the same connection.
        let srv = server(vec![close], 2).await;
        let origin = Origin::of(&srv.url).unwrap();
        for _ in 0..2 {
            assert_eq!(origin.send(&post(&origin, &srv.url, b"{}")).await.unwrap().status, 200);
        }
        assert_eq!(srv.accepted.load(Ordering::SeqCst), 2);
        // No length: the body runs until the server closes the connection.
        let old = "HTTP/1.0 500 Internal Server Error\r\n\r\nsomething broke";
        let srv = server(vec![old], 1).await;
        let origin = Origin::of(&srv.url).unwrap();
        for _ in 0..2 {
            let r = origin.send(&post(&origin, &srv.url, b"{}")).await.unwrap();
            assert_eq!((r.status, r.body.as_slice()), (500, &b"something broke"[..]));
        }
        assert_eq!(srv.accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn chunked_bodies_and_interim_responses_are_read_to_their_end() {
        let chunked = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 503 Service Unavailable\r\n\
                       Transfer-Encoding: chunked\r\n\r\n4;ext=1\r\nback\r\nb\r\n in a while\r\n0\r\nX-Trailer: t\r\n\r\n";
        let srv = server(vec![chunked, OK], 10).await;
        let origin = Origin::of(&srv.url).unwrap();
        let r = origin.send(&post(&origin, &srv.url, b"{}")).await.unwrap();
        assert_eq!((r.status, r.body.as_slice()), (503, &b"back in a while"[..]));
        // The chunked response was consumed exactly: the next reply parses on the same connection.
        let r = origin.send(&post(&origin, &srv.url, b"{}")).await.unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"ok"[..]));
        assert_eq!(srv.accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn broken_responses_are_errors_that_say_what_was_wrong() {
        let cases = [
            ("SMTP ready\r\n\r\n", "malformed HTTP response"),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
                "closed before the response was complete",
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                "chunk size \"zz\"",
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
                "conflicting content-length",
            ),
        ];
        for (reply, want) in cases {
            let srv = server(vec![reply], 1).await;
            let origin = Origin::of(&srv.url).unwrap();
            let err = origin.send(&post(&origin, &srv.url, b"{}")).await.unwrap_err();
            assert!(err.to_string().contains(want), "{reply:?}: {err}");
        }
    }

    #[test]
    fn only_plain_http_without_credentials_gets_an_origin() {
        let of = |u: &str| Origin::of(&Url::parse(u).unwrap()).map(|o| o.host);
        assert_eq!(of("http://hooks.example/x").as_deref(), Some("hooks.example"));
        assert_eq!(of("http://hooks.example:80/x").as_deref(), Some("hooks.example"));
        assert_eq!(of("http://[::1]:9000/x").as_deref(), Some("[::1]:9000"));
        assert_eq!(of("https://hooks.example/x"), None);
        assert_eq!(of("http://user:pw@hooks.example/x"), None);
    }
}
