//! The live server of `apibench run --serve ADDR`: a tiny HTTP/1.1 server (hyper, one tokio task
//! plus one per connection) with three read-only routes — `GET /metrics` (Prometheus text),
//! `GET /live.json` (what the page draws) and `GET /` (the page itself, compiled in).
//!
//! It binds exactly the address it is given (the user decides who may connect) and lives as
//! long as its [`LiveServer`]: dropping it ends the listener and every open connection. It must
//! never answer with anything but a snapshot of the live state, never read a request body, and
//! never let a client's request fail the run (a bad request is that client's 4xx).

use super::{LiveState, prometheus};
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

/// The live page: one HTML file, inline CSS and JS, no external asset.
const PAGE: &str = include_str!("page.html");

/// Why `--serve` could not start.
#[derive(Debug, thiserror::Error)]
#[error("--serve {addr}: cannot listen on {addr}: {source}")]
pub struct ServeError {
    pub addr: SocketAddr,
    pub source: std::io::Error,
}

/// A running live server; stops when dropped.
#[derive(Debug)]
pub struct LiveServer {
    addr: SocketAddr,
    accept: JoinHandle<()>,
}

impl LiveServer {
    /// Binds `addr` and serves `state` on the current tokio runtime.
    pub async fn start(addr: SocketAddr, state: Arc<LiveState>) -> Result<LiveServer, ServeError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ServeError { addr, source })?;
        // Port 0 asks the system for one: report the real one.
        let addr = listener.local_addr().unwrap_or(addr);
        let accept = tokio::spawn(accept_loop(listener, state));
        Ok(LiveServer { addr, accept })
    }

    /// Where it listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for LiveServer {
    fn drop(&mut self) {
        // The accept task owns the connections' JoinSet: aborting it ends them all.
        self.accept.abort();
    }
}

async fn accept_loop(listener: TcpListener, state: Arc<LiveState>) {
    let mut connections = JoinSet::new();
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors and the like: wait rather than spin.
                tracing::debug!("live server: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        while connections.try_join_next().is_some() {}
        let state = Arc::clone(&state);
        connections.spawn(async move {
            let service = service_fn(move |request: Request<Incoming>| {
                let response = respond(&state, request.method(), request.uri().path());
                async move { Ok::<_, Infallible>(response) }
            });
            if let Err(e) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!("live server: connection ended: {e}");
            }
        });
    }
}

/// The answer to `method path`.
pub(super) fn respond(state: &LiveState, method: &Method, path: &str) -> Response<Full<Bytes>> {
    if method != Method::GET && method != Method::HEAD {
        return plain(StatusCode::METHOD_NOT_ALLOWED, "only GET\n");
    }
    match path {
        "/metrics" => answer(
            prometheus::CONTENT_TYPE,
            prometheus::render(&state.snapshot()),
        ),
        "/live.json" => match serde_json::to_string(&state.snapshot()) {
            Ok(json) => answer("application/json", json),
            Err(e) => plain(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e}\n")),
        },
        "/" | "/index.html" => answer("text/html; charset=utf-8", PAGE.to_string()),
        _ => plain(
            StatusCode::NOT_FOUND,
            "not found: GET /, /metrics or /live.json\n",
        ),
    }
}

fn answer(content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    if let Ok(value) = header::HeaderValue::from_str(content_type) {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    // Live figures: a cached copy is a wrong one.
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    response
}

fn plain(status: StatusCode, text: &str) -> Response<Full<Bytes>> {
    let mut response = answer("text/plain; charset=utf-8", text.to_string());
    *response.status_mut() = status;
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt as _;

    async fn body(response: Response<Full<Bytes>>) -> String {
        let bytes = response
            .into_body()
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    #[tokio::test]
    async fn routes_answer_with_their_content_types_and_others_are_refused() {
        let state = LiveState::new("s");
        let metrics = respond(&state, &Method::GET, "/metrics");
        assert_eq!(metrics.status(), StatusCode::OK);
        assert_eq!(
            metrics.headers()[header::CONTENT_TYPE],
            prometheus::CONTENT_TYPE
        );
        assert!(body(metrics).await.contains("apibench_users_busy 0"));
        let json = body(respond(&state, &Method::GET, "/live.json")).await;
        let parsed: serde_json::Value = serde_json::from_str(&json).expect("live.json is JSON");
        assert_eq!(parsed["scenario"], "s");
        assert!(parsed["points"].as_array().is_some_and(Vec::is_empty));
        let page = body(respond(&state, &Method::GET, "/")).await;
        assert!(page.contains("/live.json"), "the page reads live.json");
        assert!(
            !page.contains("src=\"http") && !page.contains("href=\"http"),
            "no external asset"
        );
        assert_eq!(
            respond(&state, &Method::GET, "/nope").status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            respond(&state, &Method::POST, "/metrics").status(),
            StatusCode::METHOD_NOT_ALLOWED
        );
    }

    #[tokio::test]
    async fn a_taken_port_is_an_error_naming_the_address_and_a_drop_closes_the_port() {
        let state = LiveState::new("s");
        let server = LiveServer::start("127.0.0.1:0".parse().expect("addr"), Arc::clone(&state))
            .await
            .expect("a free port");
        let addr = server.local_addr();
        let taken = LiveServer::start(addr, state).await.expect_err("taken");
        assert!(taken.to_string().contains(&addr.to_string()), "{taken}");
        assert!(tokio::net::TcpStream::connect(addr).await.is_ok());
        drop(server);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            tokio::net::TcpStream::connect(addr).await.is_err(),
            "nothing listens after the drop"
        );
    }
}
