//! One HTTP/1.1 connection per user, driven by hyper's connection API inside the user's own
//! task: no pool, no connection task to hop to, no per-request URL parse.
//!
//! - [`Endpoint`]: the base URL, parsed and resolved once per phase (`http://host:port/prefix`).
//! - [`PreparedRequest`]: a scenario request with its method, headers (Host, Accept-Encoding,
//!   Content-Type, the scenario's own) and — when the path has no placeholder — its URI built
//!   once; each send clones them (reference counts) and renders only what varies.
//! - [`exchange`]: sends one request on the user's connection (connecting first when there is
//!   none or the server closed it) and reads the body to its end without copying or decoding it
//!   — unless the request is a flow step that checks or extracts from its answer: then the
//!   headers and the first [`crate::flow::MAX_CAPTURED_BODY_BYTES`] of the body are kept
//!   ([`Captured`]). The hyper connection future is polled in the same task, alongside the
//!   response, so a request costs no wake-up of another task.
//!
//! Header values may be templates (`Bearer {{token}}`, `{{env.API_KEY}}`): a constant one is
//! rendered once here, marked sensitive; the others are rendered per send. A rendered value is
//! never put in an error message (it may hold a secret).
//!
//! Bodies are not decompressed: with `Accept-Encoding: gzip` the server still compresses (that
//! is its cost, and what clients ask for), and the full-body time is the last byte on the wire
//! (a flow step's captured body is inflated for its checks by [`crate::flow`], after timing).
//! A request the server never saw because it had just closed an idle keep-alive connection is
//! retried once on a new connection (what browsers and hyper's pooled client do); any other
//! failure is the request's error.

use super::EngineError;
use crate::flow::Captured;
use crate::scenario::RequestSpec;
use crate::template::{RenderContext, Template};
use bytes::Bytes;
use http::header::{
    ACCEPT_ENCODING, CONTENT_TYPE, HOST, HeaderMap, HeaderName, HeaderValue, USER_AGENT,
};
use http::{Method, Request, Uri};
use http_body_util::Full;
use hyper::body::{Body as _, Incoming};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use std::future::poll_fn;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::task::{Context, Poll};
use std::time::Instant;
use tokio::net::TcpStream;

/// Every request's body type: empty or the rendered template.
pub type RequestBody = Full<Bytes>;

/// The base URL, parsed and resolved once.
#[derive(Debug, Clone)]
pub struct Endpoint {
    addrs: Vec<SocketAddr>,
    /// `host[:port]` as written, for the Host header.
    host: HeaderValue,
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
        let host = HeaderValue::from_str(authority.as_str()).map_err(|_| bad("bad host"))?;
        Ok(Endpoint {
            addrs,
            host,
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

/// A scenario request, ready to be cloned per send.
#[derive(Debug, Clone)]
pub struct PreparedRequest {
    method: Method,
    headers: HeaderMap,
    /// The whole URI when the path has no placeholder.
    fixed_uri: Option<Uri>,
    path: Template,
    body: Option<Template>,
    /// Header values rendered per send (they read variables, data rows or the RNG).
    header_templates: Vec<(HeaderName, Template)>,
}

/// A user's reusable buffers for rendering.
#[derive(Debug, Default)]
pub struct RenderBuffers {
    path: String,
    uri: String,
    body: String,
    header: String,
}

impl RenderBuffers {
    pub fn new() -> RenderBuffers {
        RenderBuffers {
            path: String::with_capacity(128),
            uri: String::with_capacity(128),
            body: String::with_capacity(256),
            header: String::new(),
        }
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
        let mut headers = HeaderMap::with_capacity(4 + spec.headers.len());
        headers.insert(HOST, endpoint.host.clone());
        headers.insert(
            USER_AGENT,
            HeaderValue::from_static(concat!("apibench/", env!("CARGO_PKG_VERSION"))),
        );
        if let Some(encoding) = accept_encoding {
            let value = HeaderValue::from_str(encoding).map_err(|_| {
                bad(&format!(
                    "accept_encoding `{encoding}` is not a header value"
                ))
            })?;
            headers.insert(ACCEPT_ENCODING, value);
        }
        let mut header_templates = Vec::new();
        for (name, value) in &spec.headers {
            let header = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| bad(&format!("`{name}` is not a header name")))?;
            let not_a_value = || {
                bad(&format!(
                    "the value of header `{name}` is not a header value"
                ))
            };
            match spec.step.headers.iter().find(|(n, _)| n == name) {
                None => {
                    let value = HeaderValue::from_str(value).map_err(|_| not_a_value())?;
                    headers.append(header, value);
                }
                Some((_, template)) if template.is_constant() => {
                    let mut text = String::new();
                    template.render_into(&mut text, &mut constant_context());
                    let mut value = HeaderValue::from_str(&text).map_err(|_| not_a_value())?;
                    value.set_sensitive(template.has_secret());
                    headers.append(header, value);
                }
                Some((_, template)) => header_templates.push((header, template.clone())),
            }
        }
        if spec.body.is_some() && !headers.contains_key(CONTENT_TYPE) {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        let fixed_uri = if spec.path.is_constant() {
            let mut scratch = RenderBuffers::new();
            // A constant renders the same whatever the context.
            spec.path
                .render_into(&mut scratch.path, &mut constant_context());
            let text = format!("{}{}", endpoint.prefix, scratch.path);
            let shown = if spec.path.has_secret() {
                spec.path_source.as_str()
            } else {
                text.as_str()
            };
            Some(
                Uri::try_from(text.as_str())
                    .map_err(|_| bad(&format!("the path `{shown}` is not a valid URI path")))?,
            )
        } else {
            None
        };
        Ok(PreparedRequest {
            method,
            headers,
            fixed_uri,
            path: spec.path.clone(),
            body: spec.body.clone(),
            header_templates,
        })
    }

    /// This send's request: the prepared parts cloned, the path and body rendered into the
    /// user's buffers.
    pub fn build(
        &self,
        endpoint: &Endpoint,
        buffers: &mut RenderBuffers,
        render: &mut RenderContext,
    ) -> Result<Request<RequestBody>, BuildError> {
        let uri = match &self.fixed_uri {
            Some(uri) => uri.clone(),
            None => {
                self.path.render_into(&mut buffers.path, render);
                let text = if endpoint.prefix.is_empty() {
                    buffers.path.as_str()
                } else {
                    buffers.uri.clear();
                    buffers.uri.push_str(&endpoint.prefix);
                    buffers.uri.push_str(&buffers.path);
                    buffers.uri.as_str()
                };
                Uri::try_from(text).map_err(|_| {
                    if self.path.has_secret() {
                        BuildError::SecretPath
                    } else {
                        BuildError::Path {
                            path: text.to_string(),
                        }
                    }
                })?
            }
        };
        let body = match &self.body {
            Some(template) => {
                template.render_into(&mut buffers.body, render);
                Full::new(Bytes::copy_from_slice(buffers.body.as_bytes()))
            }
            None => Full::new(Bytes::new()),
        };
        let mut request = Request::new(body);
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = uri;
        *request.headers_mut() = self.headers.clone();
        for (name, template) in &self.header_templates {
            template.render_into(&mut buffers.header, render);
            let mut value =
                HeaderValue::from_str(&buffers.header).map_err(|_| BuildError::Header {
                    name: name.to_string(),
                })?;
            value.set_sensitive(true);
            request.headers_mut().append(name.clone(), value);
        }
        Ok(request)
    }
}

/// A user's connection: the request sender and the connection future it drives itself.
pub struct Connection {
    sender: http1::SendRequest<RequestBody>,
    driver: http1::Connection<TokioIo<TcpStream>, RequestBody>,
    /// The connection future finished (the server closed it, or it failed).
    closed: bool,
}

impl Connection {
    async fn open(endpoint: &Endpoint) -> Result<Connection, ExchangeError> {
        let stream = endpoint.connect().await.map_err(ExchangeError::Connect)?;
        let (sender, driver) = http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await
            .map_err(ExchangeError::Http)?;
        Ok(Connection {
            sender,
            driver,
            closed: false,
        })
    }

    /// Polls the connection future (writes, reads, keep-alive bookkeeping) until it is done.
    fn drive(&mut self, cx: &mut Context<'_>) {
        if !self.closed && Pin::new(&mut self.driver).poll(cx).is_ready() {
            self.closed = true;
        }
    }

    fn usable(&self) -> bool {
        !self.closed && !self.sender.is_closed()
    }
}

/// Why an exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    #[error("connect: {0}")]
    Connect(std::io::Error),
    #[error("{0}")]
    Http(hyper::Error),
    #[error("the server closed a new connection before the request could be sent")]
    Closed,
}

/// Whether a connection can take the next request.
enum Readiness {
    Ready,
    /// The connection future ended (an idle keep-alive connection the server closed): its
    /// sender would never become ready.
    Closed,
    Failed(hyper::Error),
}

/// What one exchange produced: the status, or why it failed.
pub type ExchangeResult = Result<u16, ExchangeError>;

/// Sends `request` on the user's connection (opening one if needed) and reads the whole body.
/// `headers_at` is set when the response head arrives. With `capture`, the response headers and
/// the body's first [`crate::flow::MAX_CAPTURED_BODY_BYTES`] are kept there (the rest is read and dropped).
/// When the future is dropped before it completes (timeout, Ctrl-C), the caller must drop the
/// connection: a request is in flight on it.
pub async fn exchange(
    connection: &mut Option<Connection>,
    endpoint: &Endpoint,
    mut request: Request<RequestBody>,
    headers_at: &mut Option<Instant>,
    mut capture: Option<&mut Captured>,
) -> ExchangeResult {
    let mut retried = false;
    loop {
        if !connection.as_ref().is_some_and(Connection::usable) {
            *connection = None;
        }
        let fresh = connection.is_none();
        let conn = match connection {
            Some(conn) => conn,
            None => connection.insert(Connection::open(endpoint).await?),
        };
        // Ready: the previous response was fully processed (the driver must run for that).
        let ready = poll_fn(|cx| {
            conn.drive(cx);
            if conn.closed {
                return Poll::Ready(Readiness::Closed);
            }
            conn.sender.poll_ready(cx).map(|r| match r {
                Ok(()) => Readiness::Ready,
                Err(e) => Readiness::Failed(e),
            })
        })
        .await;
        match ready {
            Readiness::Ready => {}
            // A connection that ended while idle: the request was never written, so it goes
            // out anew on a fresh connection (once: a fresh one that fails is the request's
            // error).
            Readiness::Closed if !fresh => {
                *connection = None;
                continue;
            }
            Readiness::Closed => {
                *connection = None;
                return Err(ExchangeError::Closed);
            }
            Readiness::Failed(e) => {
                *connection = None;
                if fresh {
                    return Err(ExchangeError::Http(e));
                }
                continue;
            }
        }
        let mut response = pin!(conn.sender.try_send_request(request));
        let response = poll_fn(|cx| {
            conn.drive(cx);
            response.as_mut().poll(cx)
        })
        .await;
        let response = match response {
            Ok(response) => response,
            Err(mut error) => {
                *connection = None;
                // Never written (the idle connection had just been closed): once more, anew.
                if !fresh
                    && !retried
                    && let Some(again) = error.take_message()
                {
                    retried = true;
                    request = again;
                    continue;
                }
                return Err(ExchangeError::Http(error.into_error()));
            }
        };
        *headers_at = Some(Instant::now());
        let status = response.status().as_u16();
        let mut body: Incoming = match capture.as_deref_mut() {
            None => response.into_body(),
            Some(captured) => {
                let (parts, body) = response.into_parts();
                captured.headers = parts.headers;
                body
            }
        };
        loop {
            let frame = poll_fn(|cx| {
                conn.drive(cx);
                if body.is_end_stream() {
                    return Poll::Ready(None);
                }
                Pin::new(&mut body).poll_frame(cx)
            })
            .await;
            match frame {
                None => return Ok(status),
                Some(Ok(frame)) => {
                    if let Some(captured) = capture.as_deref_mut()
                        && let Some(data) = frame.data_ref()
                    {
                        captured.push(data);
                    }
                }
                Some(Err(e)) => {
                    *connection = None;
                    return Err(ExchangeError::Http(e));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::SharedTemplateState;
    use std::collections::BTreeMap;
    use std::sync::Arc;
    use std::time::Duration;

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
            host: HeaderValue::from_static("127.0.0.1:9"),
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

    #[test]
    fn prepared_requests_carry_every_header_and_render_the_path() {
        let e = endpoint("/base");
        let prepared = PreparedRequest::new(
            &spec("/api/users/{{user_id}}", Some(r#"{"n":{{seq}}}"#)),
            &e,
            Some("gzip"),
        )
        .expect("prepares");
        let mut buffers = RenderBuffers::new();
        let mut ctx = render();
        let request = prepared.build(&e, &mut buffers, &mut ctx).expect("builds");
        assert_eq!(request.method(), Method::POST);
        assert!(request.uri().path().starts_with("/base/api/users/"));
        let headers = request.headers();
        assert_eq!(headers[HOST], "127.0.0.1:9");
        assert_eq!(headers[ACCEPT_ENCODING], "gzip");
        assert_eq!(headers[CONTENT_TYPE], "application/json");
        assert_eq!(headers["x-trace"], "bench");
        assert_eq!(request.body().size_hint().exact(), Some(7));
    }

    #[test]
    fn literal_paths_are_built_once_and_no_encoding_means_no_header() {
        let e = endpoint("");
        let prepared = PreparedRequest::new(&spec("/healthz", None), &e, None).expect("prepares");
        assert_eq!(
            prepared.fixed_uri.as_ref().map(Uri::to_string),
            Some("/healthz".into())
        );
        let request = prepared
            .build(&e, &mut RenderBuffers::new(), &mut render())
            .expect("builds");
        assert!(!request.headers().contains_key(ACCEPT_ENCODING));
        assert!(!request.headers().contains_key(CONTENT_TYPE));
        assert!(request.body().is_end_stream());
    }

    #[test]
    fn bad_header_names_are_named() {
        let mut s = spec("/", None);
        s.headers.insert("bad header".into(), "x".into());
        let error = PreparedRequest::new(&s, &endpoint(""), None).expect_err("rejected");
        assert!(error.to_string().contains("bad header"), "{error}");
    }

    /// A server that answers one keep-alive request per connection, then closes it 20 ms later
    /// (like a server's idle timeout, or a target restarted under load).
    async fn closes_idle_connections() -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buffer = [0u8; 4096];
                    if socket.read(&mut buffer).await.unwrap_or(0) > 0 {
                        let _ = socket
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                            .await;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                });
            }
        });
        format!("http://{addr}")
    }

    #[tokio::test]
    async fn a_keep_alive_connection_the_server_closed_is_replaced_not_waited_on() {
        let base = closes_idle_connections().await;
        let endpoint = Endpoint::resolve(&base).await.expect("endpoint");
        let prepared = PreparedRequest::new(&spec("/", None), &endpoint, None).expect("request");
        let mut connection = None;
        let mut ctx = RenderContext::new(
            1,
            0,
            Arc::new(SharedTemplateState {
                users: 1,
                posts: 1,
                run_nonce: "t".into(),
                seq: 1.into(),
                seq_step: 1,
            }),
        );
        let mut buffers = RenderBuffers::new();
        for attempt in 0..3 {
            let request = prepared
                .build(&endpoint, &mut buffers, &mut ctx)
                .expect("builds");
            let mut headers_at = None;
            // Before the fix the second exchange waited on the dead connection until the
            // caller's timeout; bounded here so a regression fails instead of hanging.
            let status = tokio::time::timeout(
                Duration::from_secs(5),
                exchange(&mut connection, &endpoint, request, &mut headers_at, None),
            )
            .await
            .unwrap_or_else(|_| panic!("exchange {attempt} hung on a closed connection"))
            .expect("answered");
            assert_eq!(status, 200);
            // Let the server close the idle connection.
            tokio::time::sleep(Duration::from_millis(60)).await;
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
