//! One HTTP/1.1 connection per user, spoken directly on its socket inside the user's own task:
//! no pool, no connection task, no request or response objects — what wrk does, in Rust.
//!
//! - [`Endpoint`]: the base URL, parsed and resolved once per phase (`http://host:port/prefix`).
//! - [`PreparedRequest`]: a scenario request with its request line's method and every constant
//!   header line (Host, User-Agent, Accept-Encoding, Content-Type, the scenario's own) serialized
//!   once; each send writes them into the user's reused buffer ([`RenderBuffers`]) after
//!   rendering only what varies (the path, templated header values, the body). One `write` per
//!   request.
//! - [`exchange`]: sends one request on the user's connection (connecting first when there is
//!   none or the server closed it while idle), parses the response head with `httparse` from the
//!   connection's reused read buffer, and reads the body to its end — `Content-Length`, chunked,
//!   or until the server closes — without keeping it, unless the request is a flow step that
//!   checks or extracts from its answer: then the headers and the first
//!   [`crate::flow::MAX_CAPTURED_BODY_BYTES`] of the body are kept ([`Captured`]).
//!
//! Per request that is one `write`, usually one `read`, no allocation and no wake-up of another
//! task. (The engine before drove hyper's client connection in the user's task: a `Request`
//! and `HeaderMap` per send, hyper's dispatch channel, a `writev`; measured side by side in the
//! README.)
//!
//! Header values may be templates (`Bearer {{token}}`, `{{env.API_KEY}}`): a constant one is
//! rendered once here; the others are rendered per send. A rendered value is never put in an
//! error message (it may hold a secret).
//!
//! Bodies are not decompressed: with `Accept-Encoding: gzip` the server still compresses (that
//! is its cost, and what clients ask for), and the full-body time is the last byte on the wire
//! (a flow step's captured body is inflated for its checks by [`crate::flow`], after timing).
//! A keep-alive connection the server closed while it was idle is noticed before the request
//! is written (the reactor has seen its end of stream) and replaced by a new one, so the
//! request goes out once, on the new connection; any failure after the request was written is
//! the request's error, never retried.

use super::EngineError;
use crate::flow::Captured;
use crate::scenario::RequestSpec;
use crate::template::{RenderContext, Template};
use http::header::{HeaderName, HeaderValue};
use http::{Method, Uri};
use std::net::SocketAddr;
use std::task::{Context, Poll, Waker};
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The read buffer each connection starts with (a hello answer is ~40 bytes, a page of posts
/// ~10 KB); a response head or chunk-size line longer than that grows it, up to
/// [`MAX_HEAD_BYTES`].
const READ_BUFFER_BYTES: usize = 16 * 1024;
/// The longest response head (status line and headers) accepted.
const MAX_HEAD_BYTES: usize = 256 * 1024;
/// The most response headers parsed.
const MAX_HEADERS: usize = 128;

/// The base URL, parsed and resolved once.
#[derive(Debug, Clone)]
pub struct Endpoint {
    addrs: Vec<SocketAddr>,
    /// `host[:port]` as written, for the Host header.
    host: String,
    /// The base URL's path without its trailing `/` (usually empty).
    prefix: String,
}

impl Endpoint {
    /// Parses `base_url` (`http://host[:port][/prefix]`) and resolves the host once.
    pub async fn resolve(base_url: &str) -> Result<Endpoint, EngineError> {
        let bad = |why: &str| EngineError::Url {
            url: base_url.to_string(),
            why: why.to_string(),
        };
        let uri: Uri = base_url.parse().map_err(|_| bad("not a URL"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => {
                return Err(bad(
                    "https is not supported by the generator (plain HTTP/1.1 only); benchmark the server behind TLS termination or over http://",
                ));
            }
            _ => return Err(bad("the scheme must be http://")),
        }
        let authority = uri.authority().ok_or_else(|| bad("no host"))?;
        let port = authority.port_u16().unwrap_or(80);
        let host_name = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host_name, port))
            .await
            .map_err(|e| bad(&format!("cannot resolve the host: {e}")))?
            .collect();
        if addrs.is_empty() {
            return Err(bad("the host resolved to no address"));
        }
        if !valid_header_value(authority.as_str().as_bytes()) {
            return Err(bad("bad host"));
        }
        Ok(Endpoint {
            addrs,
            host: authority.as_str().to_string(),
            prefix: uri.path().trim_end_matches('/').to_string(),
        })
    }

    async fn connect(&self) -> std::io::Result<TcpStream> {
        let mut last = None;
        for addr in &self.addrs {
            match TcpStream::connect(addr).await {
                Ok(stream) => {
                    stream.set_nodelay(true)?;
                    return Ok(stream);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| std::io::Error::other("no address to connect to")))
    }
}

/// What may stand in a request target: visible ASCII (no space, no control character, nothing
/// that could end the request line).
fn valid_target(target: &[u8]) -> bool {
    !target.is_empty() && target.iter().all(|&b| (0x21..0x7f).contains(&b))
}

/// What may stand in a header value (`http::HeaderValue`'s rule): no control character but tab,
/// so never a line break.
fn valid_header_value(value: &[u8]) -> bool {
    value
        .iter()
        .all(|&b| (b >= 0x20 && b != 0x7f) || b == b'\t')
}

/// A scenario request, serialized once up to what varies per send.
#[derive(Debug, Clone)]
pub struct PreparedRequest {
    method: Method,
    /// The whole request target (prefix included) when the path has no placeholder.
    fixed_target: Option<String>,
    path: Template,
    body: Option<Template>,
    /// Every constant header line, `name: value\r\n` each.
    header_lines: Vec<u8>,
    /// Header values rendered per send (they read variables, data rows or the RNG).
    header_templates: Vec<(HeaderName, Template)>,
    /// The scenario sets its own `content-length` or `transfer-encoding`: none is added.
    own_framing: bool,
}

/// A user's reusable buffers: the rendered pieces and the request as written on the wire.
#[derive(Debug, Default)]
pub struct RenderBuffers {
    path: String,
    body: String,
    header: String,
    request: Vec<u8>,
}

impl RenderBuffers {
    pub fn new() -> RenderBuffers {
        RenderBuffers {
            path: String::with_capacity(128),
            body: String::with_capacity(256),
            header: String::new(),
            request: Vec::with_capacity(512),
        }
    }

    /// The request [`PreparedRequest::build`] wrote last, as it goes on the wire.
    pub fn request(&self) -> &[u8] {
        &self.request
    }
}

/// Why one request could not even be built (a rendered path that is not a valid URI, a rendered
/// header value with a line break). It never holds a rendered value that may contain a secret.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("the rendered path `{path}` is not a valid URI path")]
    Path { path: String },
    #[error(
        "the rendered path is not a valid URI path (not shown: it holds an {{{{env.*}}}} value)"
    )]
    SecretPath,
    #[error("the rendered value of header `{name}` is not a header value")]
    Header { name: String },
}

/// A placeholder-free context for rendering constant templates once.
fn constant_context() -> RenderContext {
    RenderContext::new(
        0,
        0,
        std::sync::Arc::new(crate::template::SharedTemplateState {
            users: 1,
            posts: 1,
            run_nonce: String::new(),
            seq: 0.into(),
            seq_step: 1,
        }),
    )
}

/// Appends `name: value\r\n`.
fn push_header(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

impl PreparedRequest {
    /// Prepares `spec` for `endpoint`; `accept_encoding` `None` sends no such header.
    pub fn new(
        spec: &RequestSpec,
        endpoint: &Endpoint,
        accept_encoding: Option<&str>,
    ) -> Result<PreparedRequest, EngineError> {
        let bad = |what: &str| EngineError::Request {
            name: spec.name.clone(),
            why: what.to_string(),
        };
        let method =
            Method::from_bytes(spec.method.as_bytes()).map_err(|_| EngineError::Method {
                name: spec.name.clone(),
                method: spec.method.clone(),
            })?;
        let mut header_lines = Vec::with_capacity(256);
        push_header(&mut header_lines, "host", endpoint.host.as_bytes());
        push_header(
            &mut header_lines,
            "user-agent",
            concat!("apibench/", env!("CARGO_PKG_VERSION")).as_bytes(),
        );
        if let Some(encoding) = accept_encoding {
            if !valid_header_value(encoding.as_bytes()) {
                return Err(bad(&format!(
                    "accept_encoding `{encoding}` is not a header value"
                )));
            }
            push_header(&mut header_lines, "accept-encoding", encoding.as_bytes());
        }
        let mut header_templates = Vec::new();
        let mut has_content_type = false;
        let mut own_framing = false;
        for (name, value) in &spec.headers {
            let header = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| bad(&format!("`{name}` is not a header name")))?;
            let not_a_value = || {
                bad(&format!(
                    "the value of header `{name}` is not a header value"
                ))
            };
            has_content_type |= header == http::header::CONTENT_TYPE;
            own_framing |=
                header == http::header::CONTENT_LENGTH || header == http::header::TRANSFER_ENCODING;
            match spec.step.headers.iter().find(|(n, _)| n == name) {
                None => {
                    let value = HeaderValue::from_str(value).map_err(|_| not_a_value())?;
                    push_header(&mut header_lines, header.as_str(), value.as_bytes());
                }
                Some((_, template)) if template.is_constant() => {
                    let mut text = String::new();
                    template.render_into(&mut text, &mut constant_context());
                    if !valid_header_value(text.as_bytes()) {
                        return Err(not_a_value());
                    }
                    push_header(&mut header_lines, header.as_str(), text.as_bytes());
                }
                Some((_, template)) => header_templates.push((header, template.clone())),
            }
        }
        if spec.body.is_some() && !has_content_type {
            push_header(&mut header_lines, "content-type", b"application/json");
        }
        let fixed_target = if spec.path.is_constant() {
            let mut path = String::new();
            // A constant renders the same whatever the context.
            spec.path.render_into(&mut path, &mut constant_context());
            let text = format!("{}{}", endpoint.prefix, path);
            let shown = if spec.path.has_secret() {
                spec.path_source.as_str()
            } else {
                text.as_str()
            };
            if !valid_target(text.as_bytes()) || Uri::try_from(text.as_str()).is_err() {
                return Err(bad(&format!("the path `{shown}` is not a valid URI path")));
            }
            Some(text)
        } else {
            None
        };
        Ok(PreparedRequest {
            method,
            fixed_target,
            path: spec.path.clone(),
            body: spec.body.clone(),
            header_lines,
            header_templates,
            own_framing,
        })
    }

    /// The answer to this request never has a body (`HEAD`).
    pub fn answer_has_no_body(&self) -> bool {
        self.method == Method::HEAD
    }

    /// Writes this send's request into `buffers` ([`RenderBuffers::request`]): the request line
    /// with the rendered path, the prepared header lines, the rendered ones, and the body.
    pub fn build(
        &self,
        endpoint: &Endpoint,
        buffers: &mut RenderBuffers,
        render: &mut RenderContext,
    ) -> Result<(), BuildError> {
        let out = &mut buffers.request;
        out.clear();
        out.extend_from_slice(self.method.as_str().as_bytes());
        out.push(b' ');
        match &self.fixed_target {
            Some(target) => out.extend_from_slice(target.as_bytes()),
            None => {
                self.path.render_into(&mut buffers.path, render);
                let start = out.len();
                out.extend_from_slice(endpoint.prefix.as_bytes());
                out.extend_from_slice(buffers.path.as_bytes());
                if !valid_target(&out[start..]) {
                    return Err(if self.path.has_secret() {
                        BuildError::SecretPath
                    } else {
                        BuildError::Path {
                            path: String::from_utf8_lossy(&out[start..]).into_owned(),
                        }
                    });
                }
            }
        }
        out.extend_from_slice(b" HTTP/1.1\r\n");
        out.extend_from_slice(&self.header_lines);
        for (name, template) in &self.header_templates {
            template.render_into(&mut buffers.header, render);
            if !valid_header_value(buffers.header.as_bytes()) {
                return Err(BuildError::Header {
                    name: name.to_string(),
                });
            }
            push_header(out, name.as_str(), buffers.header.as_bytes());
        }
        match &self.body {
            Some(template) => {
                template.render_into(&mut buffers.body, render);
                if !self.own_framing {
                    let mut digits = [0u8; 20];
                    push_header(
                        out,
                        "content-length",
                        format_usize(&mut digits, buffers.body.len()),
                    );
                }
                out.extend_from_slice(b"\r\n");
                out.extend_from_slice(buffers.body.as_bytes());
            }
            None => {
                // What hyper sends for a bodiless request whose method usually has a body: a
                // server may otherwise answer 411 Length Required.
                if !self.own_framing
                    && matches!(self.method, Method::POST | Method::PUT | Method::PATCH)
                {
                    push_header(out, "content-length", b"0");
                }
                out.extend_from_slice(b"\r\n");
            }
        }
        Ok(())
    }
}

/// `n` in decimal, written at the end of `buffer` (no allocation).
fn format_usize(buffer: &mut [u8; 20], mut n: usize) -> &[u8] {
    let mut at = buffer.len();
    loop {
        at -= 1;
        buffer[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buffer[at..];
        }
    }
}

/// A user's connection: the socket and its read buffer (unread bytes are `buf[pos..end]`).
pub struct Connection {
    stream: TcpStream,
    buf: Vec<u8>,
    pos: usize,
    end: usize,
}

impl Connection {
    async fn open(endpoint: &Endpoint) -> Result<Connection, ExchangeError> {
        let stream = endpoint.connect().await.map_err(ExchangeError::Connect)?;
        Ok(Connection {
            stream,
            buf: vec![0; READ_BUFFER_BYTES],
            pos: 0,
            end: 0,
        })
    }

    /// Whether the server closed this idle connection (or sent bytes nobody asked for). No
    /// syscall unless the reactor has seen the socket turn readable since the last answer.
    fn closed_while_idle(&mut self) -> bool {
        if self.pos != self.end {
            return true;
        }
        let mut cx = Context::from_waker(Waker::noop());
        match self.stream.poll_read_ready(&mut cx) {
            Poll::Pending => false,
            Poll::Ready(Err(_)) => true,
            Poll::Ready(Ok(())) => {
                let mut probe = [0u8; 1];
                match self.stream.try_read(&mut probe) {
                    Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
                    // End of stream, or an answer to nothing.
                    Ok(_) => true,
                }
            }
        }
    }

    /// Reads more bytes after `buf[pos..end]`, making room first (moving the unread bytes to
    /// the front, or growing the buffer up to [`MAX_HEAD_BYTES`] when they fill it). `Ok(0)`:
    /// the server closed the connection.
    async fn fill(&mut self) -> Result<usize, ExchangeError> {
        if self.pos == self.end {
            self.pos = 0;
            self.end = 0;
        } else if self.end == self.buf.len() {
            if self.pos > 0 {
                self.buf.copy_within(self.pos..self.end, 0);
                self.end -= self.pos;
                self.pos = 0;
            } else if self.buf.len() < MAX_HEAD_BYTES {
                let grown = (self.buf.len() * 2).min(MAX_HEAD_BYTES);
                self.buf.resize(grown, 0);
            } else {
                return Err(ExchangeError::Protocol(
                    "a response head or chunk line longer than 256 KiB",
                ));
            }
        }
        let n = self
            .stream
            .read(&mut self.buf[self.end..])
            .await
            .map_err(ExchangeError::Io)?;
        self.end += n;
        Ok(n)
    }

    /// The next line of the unread bytes (its range in `buf`, without the line ending), reading
    /// more as needed; the line is consumed. [`ExchangeError::Closed`]: the server closed the
    /// connection first.
    async fn line(&mut self) -> Result<std::ops::Range<usize>, ExchangeError> {
        let mut searched = self.pos;
        loop {
            if let Some(at) = self.buf[searched..self.end]
                .iter()
                .position(|&b| b == b'\n')
            {
                let newline = searched + at;
                let mut line_end = newline;
                if line_end > self.pos && self.buf[line_end - 1] == b'\r' {
                    line_end -= 1;
                }
                let line = self.pos..line_end;
                self.pos = newline + 1;
                return Ok(line);
            }
            let scanned = self.end - self.pos;
            if self.fill().await? == 0 {
                return Err(ExchangeError::Closed);
            }
            // `fill` may have moved the unread bytes to the front.
            searched = self.pos + scanned.min(self.end - self.pos);
        }
    }

    /// Consumes up to `wanted` body bytes (reading when none are buffered), handing them to
    /// `capture`. The count consumed; `Ok(0)` only when the server closed the connection.
    async fn body_bytes(
        &mut self,
        wanted: u64,
        capture: &mut Option<&mut Captured>,
    ) -> Result<u64, ExchangeError> {
        if self.pos == self.end && self.fill().await? == 0 {
            return Ok(0);
        }
        let available = (self.end - self.pos) as u64;
        let take = usize::try_from(available.min(wanted)).unwrap_or(usize::MAX);
        if let Some(captured) = capture.as_deref_mut() {
            captured.push(&self.buf[self.pos..self.pos + take]);
        }
        self.pos += take;
        Ok(take as u64)
    }
}

/// Why an exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    #[error("connect: {0}")]
    Connect(std::io::Error),
    #[error("{0}")]
    Io(std::io::Error),
    #[error("the server closed the connection before the answer was complete")]
    Closed,
    #[error("not an HTTP/1.x answer: {0}")]
    Protocol(&'static str),
}

/// How a response body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// No body (`HEAD`, 204, 304).
    Empty,
    Length(u64),
    Chunked,
    /// Until the server closes the connection.
    UntilClose,
}

/// A parsed response head.
struct Head {
    status: u16,
    framing: Framing,
    keep_alive: bool,
}

/// What one exchange produced: the status, or why it failed.
pub type ExchangeResult = Result<u16, ExchangeError>;

/// Sends `request` (a whole request as [`PreparedRequest::build`] wrote it) on the user's
/// connection, opening one if there is none or the server closed it while idle, and reads the
/// whole answer. `answer_has_no_body`: the request was a `HEAD`. `headers_at` is set when the
/// response head has arrived. With `capture`, the response headers and the body's first
/// [`crate::flow::MAX_CAPTURED_BODY_BYTES`] are kept there (the rest is read and dropped).
/// When the future is dropped before it completes (timeout, Ctrl-C), the caller must drop the
/// connection: a request is in flight on it.
pub async fn exchange(
    connection: &mut Option<Connection>,
    endpoint: &Endpoint,
    request: &[u8],
    answer_has_no_body: bool,
    headers_at: &mut Option<Instant>,
    mut capture: Option<&mut Captured>,
) -> ExchangeResult {
    if connection
        .as_mut()
        .is_some_and(Connection::closed_while_idle)
    {
        *connection = None;
    }
    let conn = match connection {
        Some(conn) => conn,
        None => connection.insert(Connection::open(endpoint).await?),
    };
    let answer = async {
        conn.stream
            .write_all(request)
            .await
            .map_err(ExchangeError::Io)?;
        let head = read_head(conn, answer_has_no_body, &mut capture).await?;
        *headers_at = Some(Instant::now());
        read_body(conn, head.framing, &mut capture).await?;
        Ok::<Head, ExchangeError>(head)
    }
    .await;
    match answer {
        Ok(head) => {
            if !head.keep_alive || head.framing == Framing::UntilClose || conn.pos != conn.end {
                *connection = None;
            }
            Ok(head.status)
        }
        Err(e) => {
            *connection = None;
            Err(e)
        }
    }
}

/// Reads and parses the final response head (informational 1xx heads are skipped); with
/// `capture`, its headers are kept.
async fn read_head(
    conn: &mut Connection,
    answer_has_no_body: bool,
    capture: &mut Option<&mut Captured>,
) -> Result<Head, ExchangeError> {
    loop {
        let parsed = {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut response = httparse::Response::new(&mut headers);
            match response.parse(&conn.buf[conn.pos..conn.end]) {
                Ok(httparse::Status::Complete(length)) => {
                    let status = response.code.unwrap_or(0);
                    let informational = (100..200).contains(&status) && status != 101;
                    if !informational && let Some(captured) = capture.as_deref_mut() {
                        for header in response.headers.iter() {
                            if let (Ok(name), Ok(value)) = (
                                HeaderName::from_bytes(header.name.as_bytes()),
                                HeaderValue::from_bytes(header.value),
                            ) {
                                captured.headers.append(name, value);
                            }
                        }
                    }
                    let head = interpret(&response, status, answer_has_no_body)?;
                    Some((length, informational, head))
                }
                Ok(httparse::Status::Partial) => None,
                Err(e) => return Err(ExchangeError::Protocol(parse_error(e))),
            }
        };
        match parsed {
            Some((length, informational, head)) => {
                conn.pos += length;
                if !informational {
                    return Ok(head);
                }
            }
            None => {
                if conn.fill().await? == 0 {
                    return Err(ExchangeError::Closed);
                }
            }
        }
    }
}

/// The body's framing and whether the connection stays open, from a parsed head (RFC 9112 §6).
fn interpret(
    response: &httparse::Response<'_, '_>,
    status: u16,
    answer_has_no_body: bool,
) -> Result<Head, ExchangeError> {
    let mut keep_alive = response.version == Some(1);
    let mut length: Option<u64> = None;
    let mut chunked = None;
    for header in response.headers.iter() {
        let name = header.name;
        if name.eq_ignore_ascii_case("content-length") {
            let value = std::str::from_utf8(header.value)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .ok_or(ExchangeError::Protocol(
                    "a content-length that is not a number",
                ))?;
            if length.is_some_and(|l| l != value) {
                return Err(ExchangeError::Protocol("two different content-lengths"));
            }
            length = Some(value);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            // The last coding decides: chunked, else the body runs until the connection closes.
            let last = header
                .value
                .split(|&b| b == b',')
                .next_back()
                .map(<[u8]>::trim_ascii)
                .unwrap_or_default();
            chunked = Some(last.eq_ignore_ascii_case(b"chunked"));
        } else if name.eq_ignore_ascii_case("connection") {
            for token in header.value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                if token.eq_ignore_ascii_case(b"close") {
                    keep_alive = false;
                } else if token.eq_ignore_ascii_case(b"keep-alive") && response.version == Some(0) {
                    keep_alive = true;
                }
            }
        }
    }
    let framing = if answer_has_no_body || status == 204 || status == 304 || status == 101 {
        Framing::Empty
    } else {
        match (chunked, length) {
            (Some(true), _) => Framing::Chunked,
            (Some(false), _) => Framing::UntilClose,
            (None, Some(length)) => Framing::Length(length),
            (None, None) => Framing::UntilClose,
        }
    };
    Ok(Head {
        status,
        framing,
        // A switched protocol is not HTTP/1.1 any more.
        keep_alive: keep_alive && status != 101,
    })
}

fn parse_error(e: httparse::Error) -> &'static str {
    match e {
        httparse::Error::TooManyHeaders => "more than 128 response headers",
        httparse::Error::Version => "not an HTTP/1.x status line",
        httparse::Error::Status => "a bad status code",
        _ => "a malformed response head",
    }
}

/// Consumes exactly `length` body bytes (a `Content-Length` body or one chunk).
async fn read_exactly(
    conn: &mut Connection,
    mut length: u64,
    capture: &mut Option<&mut Captured>,
) -> Result<(), ExchangeError> {
    while length > 0 {
        match conn.body_bytes(length, capture).await? {
            0 => return Err(ExchangeError::Closed),
            n => length -= n,
        }
    }
    Ok(())
}

/// Reads the body to its end, handing its bytes (de-chunked) to `capture`.
async fn read_body(
    conn: &mut Connection,
    framing: Framing,
    capture: &mut Option<&mut Captured>,
) -> Result<(), ExchangeError> {
    match framing {
        Framing::Empty => Ok(()),
        Framing::Length(length) => read_exactly(conn, length, capture).await,
        Framing::UntilClose => {
            while conn.body_bytes(u64::MAX, capture).await? > 0 {}
            Ok(())
        }
        Framing::Chunked => loop {
            let line = conn.line().await?;
            let size_text = &conn.buf[line];
            let digits = size_text
                .split(|&b| b == b';')
                .next()
                .map(<[u8]>::trim_ascii)
                .unwrap_or_default();
            let size = std::str::from_utf8(digits)
                .ok()
                .filter(|d| !d.is_empty())
                .and_then(|d| u64::from_str_radix(d, 16).ok())
                .ok_or(ExchangeError::Protocol(
                    "a chunk size that is not hexadecimal",
                ))?;
            if size == 0 {
                // Trailers, up to the empty line.
                while !conn.line().await?.is_empty() {}
                return Ok(());
            }
            read_exactly(conn, size, capture).await?;
            if !conn.line().await?.is_empty() {
                return Err(ExchangeError::Protocol("a chunk longer than its size"));
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::SharedTemplateState;
    use std::collections::BTreeMap;
    use std::sync::Arc;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn spec(path: &str, body: Option<&str>) -> RequestSpec {
        RequestSpec {
            name: "r".into(),
            method: "POST".into(),
            path: Template::compile(path).expect("path"),
            body: body.map(|b| Template::compile(b).expect("body")),
            path_source: path.into(),
            body_source: body.map(str::to_string),
            expect_status: None,
            weight: 1,
            headers: BTreeMap::from([("x-trace".to_string(), "bench".to_string())]),
            step: crate::flow::StepSpec::default(),
        }
    }

    fn endpoint(prefix: &str) -> Endpoint {
        Endpoint {
            addrs: vec![SocketAddr::from(([127, 0, 0, 1], 9))],
            host: "127.0.0.1:9".into(),
            prefix: prefix.into(),
        }
    }

    fn render() -> RenderContext {
        RenderContext::new(
            7,
            0,
            Arc::new(SharedTemplateState {
                users: 10,
                posts: 10,
                run_nonce: "n".into(),
                seq: 1.into(),
                seq_step: 1,
            }),
        )
    }

    fn wire(prepared: &PreparedRequest, e: &Endpoint) -> String {
        let mut buffers = RenderBuffers::new();
        prepared
            .build(e, &mut buffers, &mut render())
            .expect("builds");
        String::from_utf8(buffers.request().to_vec()).expect("ascii")
    }

    #[test]
    fn prepared_requests_carry_every_header_and_render_the_path() {
        let e = endpoint("/base");
        let prepared = PreparedRequest::new(
            &spec("/api/users/{{user_id}}", Some(r#"{"n":{{seq}}}"#)),
            &e,
            Some("gzip"),
        )
        .expect("prepares");
        let text = wire(&prepared, &e);
        let (head, body) = text.split_once("\r\n\r\n").expect("a head and a body");
        let mut lines = head.split("\r\n");
        let request_line = lines.next().expect("request line");
        assert!(
            request_line.starts_with("POST /base/api/users/")
                && request_line.ends_with(" HTTP/1.1"),
            "{request_line}"
        );
        let headers: Vec<&str> = lines.collect();
        for expected in [
            "host: 127.0.0.1:9",
            "accept-encoding: gzip",
            "content-type: application/json",
            "x-trace: bench",
            "content-length: 7",
        ] {
            assert!(headers.contains(&expected), "{expected} in {headers:?}");
        }
        assert_eq!(body, r#"{"n":1}"#);
        // It parses as the request it is.
        let mut parsed_headers = [httparse::EMPTY_HEADER; 16];
        let mut parsed = httparse::Request::new(&mut parsed_headers);
        assert!(parsed.parse(text.as_bytes()).expect("parses").is_complete());
        assert_eq!(parsed.method, Some("POST"));
    }

    #[test]
    fn literal_paths_are_built_once_and_no_encoding_means_no_header() {
        let e = endpoint("");
        let mut get = spec("/healthz", None);
        get.method = "GET".into();
        let prepared = PreparedRequest::new(&get, &e, None).expect("prepares");
        assert_eq!(prepared.fixed_target.as_deref(), Some("/healthz"));
        let text = wire(&prepared, &e);
        assert!(text.starts_with("GET /healthz HTTP/1.1\r\n"), "{text}");
        assert!(text.ends_with("\r\n\r\n"), "no body: {text:?}");
        assert!(!text.contains("accept-encoding"), "{text}");
        assert!(!text.contains("content-type"), "{text}");
        assert!(!text.contains("content-length"), "{text}");
        // A bodiless POST says so, as hyper did (a server may otherwise answer 411).
        let post = PreparedRequest::new(&spec("/x", None), &e, None).expect("prepares");
        assert!(wire(&post, &e).contains("content-length: 0\r\n"));
    }

    #[test]
    fn rendered_paths_and_header_values_that_would_break_the_request_line_are_refused() {
        assert!(valid_target(b"/api/users/7?x=1&y=%20"));
        assert!(!valid_target(b"/a b"));
        assert!(!valid_target(b"/a\r\nX: y"));
        assert!(!valid_target("/é".as_bytes()));
        assert!(valid_header_value(b"Bearer abc\tdef"));
        assert!(!valid_header_value(b"abc\r\nx-injected: 1"));
        let e = endpoint("");
        let error = PreparedRequest::new(&spec("/has space", None), &e, None)
            .expect_err("a literal path with a space");
        assert!(
            error.to_string().contains("not a valid URI path"),
            "{error}"
        );
    }

    #[test]
    fn bad_header_names_are_named() {
        let mut s = spec("/", None);
        s.headers.insert("bad header".into(), "x".into());
        let error = PreparedRequest::new(&s, &endpoint(""), None).expect_err("rejected");
        assert!(error.to_string().contains("bad header"), "{error}");
    }

    #[test]
    fn decimal_lengths_need_no_allocation() {
        let mut buffer = [0u8; 20];
        assert_eq!(format_usize(&mut buffer, 0), b"0");
        assert_eq!(format_usize(&mut buffer, 7), b"7");
        assert_eq!(format_usize(&mut buffer, 1_234_567), b"1234567");
        assert_eq!(
            format_usize(&mut buffer, usize::MAX),
            usize::MAX.to_string().as_bytes()
        );
    }

    /// A server that answers each request on each connection with `script`'s pieces, written
    /// one at a time with a pause between them (so the client reads them in several pieces),
    /// then closes the connection if `close` says so.
    async fn scripted(script: Vec<&'static [u8]>, close: bool) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let script = script.clone();
                tokio::spawn(async move {
                    let mut buffer = [0u8; 4096];
                    while socket.read(&mut buffer).await.unwrap_or(0) > 0 {
                        for piece in &script {
                            if socket.write_all(piece).await.is_err() {
                                return;
                            }
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                        if close {
                            return;
                        }
                    }
                });
            }
        });
        format!("http://{addr}")
    }

    /// Sends `method /` to `base` `times` times on one user's connection slot, `pause` apart.
    async fn ask(
        base: &str,
        method: &str,
        times: usize,
        capture: bool,
        pause: Duration,
    ) -> (Vec<ExchangeResult>, Captured, bool) {
        let endpoint = Endpoint::resolve(base).await.expect("endpoint");
        let mut s = spec("/", None);
        s.method = method.into();
        let prepared = PreparedRequest::new(&s, &endpoint, None).expect("request");
        let mut buffers = RenderBuffers::new();
        let mut ctx = render();
        let mut connection = None;
        let mut captured = Captured::default();
        let mut results = Vec::new();
        for _ in 0..times {
            prepared
                .build(&endpoint, &mut buffers, &mut ctx)
                .expect("builds");
            captured.reset(true);
            let mut headers_at = None;
            let result = tokio::time::timeout(
                Duration::from_secs(5),
                exchange(
                    &mut connection,
                    &endpoint,
                    buffers.request(),
                    prepared.answer_has_no_body(),
                    &mut headers_at,
                    capture.then_some(&mut captured),
                ),
            )
            .await
            .expect("the exchange ends by itself");
            if result.is_ok() {
                assert!(headers_at.is_some(), "headers time set");
            }
            results.push(result);
            tokio::time::sleep(pause).await;
        }
        (results, captured, connection.is_some())
    }

    /// `scripted` then `ask` with capture on: every answer must be `status`; the last captured
    /// answer and whether the connection was kept.
    async fn answered(
        script: Vec<&'static [u8]>,
        close: bool,
        method: &str,
        times: usize,
        status: u16,
    ) -> (Captured, bool) {
        let base = scripted(script, close).await;
        let (results, captured, kept) = ask(&base, method, times, true, Duration::ZERO).await;
        for result in results {
            assert_eq!(result.expect("answered"), status);
        }
        (captured, kept)
    }

    #[tokio::test]
    async fn content_length_bodies_in_pieces_are_read_whole_and_the_connection_kept() {
        let (captured, kept) = answered(
            vec![
                b"HTTP/1.1 200 OK\r\ncontent-le",
                b"ngth: 11\r\nx-id: 4\r\n\r\nhello",
                b" world",
            ],
            false,
            "GET",
            3,
            200,
        )
        .await;
        assert_eq!(captured.body, b"hello world");
        assert_eq!(captured.headers["x-id"], "4");
        assert!(kept, "a keep-alive answer keeps its connection");
    }

    #[tokio::test]
    async fn chunked_bodies_with_extensions_and_trailers_are_de_chunked() {
        let (captured, kept) = answered(
            vec![
                b"HTTP/1.1 201 Created\r\ntransfer-encoding: chunked\r\n\r\n5;ext=1\r\nhel",
                b"lo\r\n6\r\n world\r",
                b"\n0\r\nx-trailer: t\r\n\r\n",
            ],
            false,
            "GET",
            2,
            201,
        )
        .await;
        assert_eq!(captured.body, b"hello world");
        assert!(kept);
    }

    #[tokio::test]
    async fn informational_heads_are_skipped_and_head_answers_have_no_body() {
        let script = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n";
        let (_, kept) = answered(vec![script], false, "GET", 2, 204).await;
        assert!(kept);
        // A HEAD answer announces a length it does not send.
        let script = b"HTTP/1.1 200 OK\r\ncontent-length: 500\r\n\r\n";
        let (_, kept) = answered(vec![script], false, "HEAD", 2, 200).await;
        assert!(kept);
    }

    #[tokio::test]
    async fn close_delimited_and_connection_close_answers_drop_the_connection() {
        // Each answer on a new connection; the close-delimited body is read to its end.
        let cases: [(&'static [u8], &[u8]); 2] = [
            (b"HTTP/1.0 200 OK\r\n\r\nuntil the end", b"until the end"),
            (
                b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok",
                b"ok",
            ),
        ];
        for (script, body) in cases {
            let (captured, kept) = answered(vec![script], true, "GET", 2, 200).await;
            assert_eq!(captured.body, body);
            assert!(!kept);
        }
    }

    #[tokio::test]
    async fn truncated_and_malformed_answers_are_the_request_errors() {
        // Each script with whether its error is the expected kind.
        type Case = (&'static [u8], fn(&ExchangeError) -> bool);
        let cases: [Case; 3] = [
            (b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort", |e| {
                matches!(e, ExchangeError::Closed)
            }),
            (b"SSH-2.0-OpenSSH\r\n\r\n", |e| {
                matches!(e, ExchangeError::Protocol(_))
            }),
            (
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
                |e| matches!(e, ExchangeError::Protocol(_)),
            ),
        ];
        for (script, expected) in cases {
            let base = scripted(vec![script], true).await;
            let (results, _, kept) = ask(&base, "GET", 1, false, Duration::ZERO).await;
            match &results[0] {
                Err(e) => assert!(expected(e), "{e:?}"),
                Ok(status) => panic!("answered {status}"),
            }
            assert!(!kept, "a failed exchange drops its connection");
        }
    }

    #[tokio::test]
    async fn a_response_head_larger_than_the_read_buffer_grows_it() {
        static BIG: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
        let big = BIG.get_or_init(|| {
            let mut head = b"HTTP/1.1 200 OK\r\nx-big: ".to_vec();
            head.extend(std::iter::repeat_n(b'a', 3 * READ_BUFFER_BYTES));
            head.extend_from_slice(b"\r\ncontent-length: 2\r\n\r\nok");
            head
        });
        let (captured, kept) = answered(vec![big.as_slice()], false, "GET", 2, 200).await;
        assert_eq!(captured.body, b"ok");
        assert!(kept);
    }

    #[tokio::test]
    async fn a_keep_alive_connection_the_server_closed_is_replaced_not_waited_on() {
        // A keep-alive answer (no `connection: close`), then the server closes the connection
        // 5 ms later, like a server's idle timeout or a target restarted under load.
        let base = scripted(
            vec![b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"],
            true,
        )
        .await;
        // 60 ms apart: the server has closed the idle connection each time. Before the fix the
        // second exchange waited on the dead connection until the caller's timeout (`ask`
        // bounds each at 5 s, so a regression fails instead of hanging).
        let (results, _, _) = ask(&base, "GET", 3, false, Duration::from_millis(60)).await;
        for (attempt, result) in results.iter().enumerate() {
            assert!(matches!(result, Ok(200)), "exchange {attempt}: {result:?}");
        }
    }

    #[tokio::test]
    async fn endpoints_refuse_https_and_parse_prefixes() {
        let error = Endpoint::resolve("https://127.0.0.1:8443")
            .await
            .expect_err("https refused");
        assert!(error.to_string().contains("https"), "{error}");
        let e = Endpoint::resolve("http://127.0.0.1:8080/api/")
            .await
            .expect("parses");
        assert_eq!(e.prefix, "/api");
        assert_eq!(e.host, "127.0.0.1:8080");
        assert_eq!(e.addrs, vec![SocketAddr::from(([127, 0, 0, 1], 8080))]);
    }
}
