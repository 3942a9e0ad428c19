//! The trivial server the generator is calibrated against: `200 ok` on every path, HTTP/1.1
//! keep-alive, hyper directly (no router, no middleware), one current-thread tokio runtime,
//! optionally pinned to one CPU. Cheap enough per request that the generator, not the server,
//! is the limit of a calibration on any machine where they have a core each.
//!
//! It prints nothing itself: the caller is told the bound address (port 0 picks a free one)
//! and decides what to say. `apibench hello-server` and `examples/hello_server.rs` use it.

use crate::engine::workers::{CpuList, pin_current_thread};
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpListener;

/// The body of every answer.
pub const BODY: &[u8] = b"ok";

async fn answer(_request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let mut response = Response::new(Full::new(Bytes::from_static(BODY)));
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain"),
    );
    Ok(response)
}

/// Serves `listener` until `shutdown` completes. Connection errors (a client that hangs up
/// mid-request) end that connection only; an `accept` error (out of file descriptors) is
/// retried after a short pause rather than ending the server.
pub async fn serve(listener: TcpListener, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => return,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!("hello server: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        // Small answers must not wait for Nagle.
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service_fn(answer))
                .await;
        });
    }
}

/// Pins the calling thread to `cpu` (if given), starts a current-thread runtime on it, binds
/// `listen`, tells `on_listening` the real address, and serves until `shutdown` completes.
/// Blocks the calling thread.
pub fn run_blocking(
    listen: &str,
    cpu: Option<usize>,
    on_listening: impl FnOnce(SocketAddr),
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    if let Some(cpu) = cpu {
        pin_current_thread(&CpuList::new(vec![cpu])).map_err(std::io::Error::other)?;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let listener = TcpListener::bind(listen).await.map_err(|e| {
            std::io::Error::new(e.kind(), format!("cannot listen on {listen}: {e}"))
        })?;
        on_listening(listener.local_addr()?);
        serve(listener, shutdown).await;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt as _;

    #[tokio::test]
    async fn answers_ok_on_every_path_over_one_kept_alive_connection() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, async {
            let _ = stop_rx.await;
        }));

        let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(stream))
                .await
                .expect("handshake");
        tokio::spawn(connection);
        for path in ["/", "/api/users/7", "/healthz?x=1"] {
            let request = Request::get(path)
                .header("host", addr.to_string())
                .body(Full::new(Bytes::new()))
                .expect("request");
            let response = sender.send_request(request).await.expect("response");
            assert_eq!(response.status(), 200, "{path}");
            let body = response.into_body().collect().await.expect("body");
            assert_eq!(body.to_bytes().as_ref(), BODY, "{path}");
        }
        let _ = stop_tx.send(());
        server.await.expect("the server stops on shutdown");
    }
}
