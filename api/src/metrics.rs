//! Prometheus metrics: the per-request middleware, the process-wide recorder and `/metrics`.
//!
//! Names are the contract's (docs/CONTRACT.md, "Metrics"): `api_requests_total{endpoint,
//! method, status}`, `api_request_duration_seconds{endpoint, method}` (a histogram with fixed
//! buckets) and the gauges `api_db_pool_size` / `api_db_pool_idle`, set from the pool at scrape
//! time. `endpoint` is the route template from axum's `MatchedPath`, never the raw path (that
//! would be unbounded cardinality); requests that match no route are `"unmatched"`.
//!
//! The `metrics` crate has one global recorder per process; it is installed once (a `OnceLock`)
//! however many routers are built — tests build dozens. With the `metrics` knob off none of this
//! is wired in: nothing is recorded and `/metrics` is a 404.
//!
//! **Upkeep.** The exporter does not add a histogram sample into its buckets when it is
//! recorded: it queues it until something drains the queue — a scrape (`render`) or
//! `run_upkeep`. `install_recorder` starts no upkeep of its own, so a server nobody scrapes
//! grew by every request's sample: the 30-minute soak (`scenarios/soak.toml`, 2,000 req/s)
//! measured the API's RSS going from 25 MiB to 88 MiB, ~2.1 MiB a minute, linear. A thread
//! (`api-metrics-upkeep`) now drains it every [`UPKEEP_PERIOD`], scraped or not.

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::AppState;

/// Histogram buckets in seconds: 0.5 ms .. 10 s, dense where an API's latencies live.
const DURATION_BUCKETS_SECONDS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// How often the queued histogram samples are folded into their buckets (see the module doc):
/// at 2,000 req/s, 5 s of samples is ~10,000 entries, a few hundred KB at most.
pub const UPKEEP_PERIOD: std::time::Duration = std::time::Duration::from_secs(5);

/// The label for requests that matched no route.
pub const UNMATCHED: &str = "unmatched";

static RECORDER: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// The process's Prometheus handle, installing the recorder on first use. `None` if another
/// global recorder was installed first (then this service records nothing; a warning says so).
pub fn recorder() -> Option<&'static PrometheusHandle> {
    RECORDER
        .get_or_init(|| {
            let installed = PrometheusBuilder::new()
                .set_buckets(DURATION_BUCKETS_SECONDS)
                .and_then(|builder| builder.install_recorder());
            match installed {
                Ok(handle) => {
                    describe();
                    spawn_upkeep(handle.clone());
                    Some(handle)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not install the Prometheus recorder; metrics disabled");
                    None
                }
            }
        })
        .as_ref()
}

/// Drains the recorder's queued histogram samples every [`UPKEEP_PERIOD`] for the life of the
/// process (one thread: the recorder is process-wide too).
fn spawn_upkeep(handle: PrometheusHandle) {
    let spawned = std::thread::Builder::new()
        .name("api-metrics-upkeep".into())
        .spawn(move || {
            loop {
                std::thread::sleep(UPKEEP_PERIOD);
                handle.run_upkeep();
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "no metrics upkeep thread: histogram samples queue until /metrics is scraped");
    }
}

fn describe() {
    metrics::describe_counter!(
        "api_requests_total",
        "HTTP requests answered, by route template, method and status code"
    );
    metrics::describe_histogram!(
        "api_request_duration_seconds",
        metrics::Unit::Seconds,
        "Time from receiving a request to producing its response head, by route template and method"
    );
    metrics::describe_gauge!(
        "api_db_pool_size",
        "Connections currently open in the database pool (idle and in use)"
    );
    metrics::describe_gauge!("api_db_pool_idle", "Idle connections in the database pool");
}

/// The route template a response was produced for, carried from [`tag_route`] (which runs
/// inside routing) out to [`record`] (which runs outside it and so cannot see `MatchedPath`).
#[derive(Clone)]
struct RouteTemplate(MatchedPath);

/// Route-level middleware: copies the request's `MatchedPath` into the response's extensions.
pub async fn tag_route(request: Request, next: Next) -> Response {
    let matched = request.extensions().get::<MatchedPath>().cloned();
    let mut response = next.run(request).await;
    if let Some(matched) = matched {
        response.extensions_mut().insert(RouteTemplate(matched));
    }
    response
}

/// Outer middleware: counts every request and records its duration.
pub async fn record(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let response = next.run(request).await;
    let endpoint = response
        .extensions()
        .get::<RouteTemplate>()
        .map_or(UNMATCHED, |t| t.0.as_str());
    record_request(
        endpoint,
        method.as_str(),
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

/// One request's metric update: `api_request_duration_seconds` and `api_requests_total`.
/// The middleware's whole per-request cost; public so `benches/` times exactly this.
pub fn record_request(endpoint: &str, method: &str, status: u16, elapsed_secs: f64) {
    let endpoint = endpoint.to_owned();
    let method = method.to_owned();
    metrics::histogram!(
        "api_request_duration_seconds",
        "endpoint" => endpoint.clone(),
        "method" => method.clone()
    )
    .record(elapsed_secs);
    metrics::counter!(
        "api_requests_total",
        "endpoint" => endpoint,
        "method" => method,
        "status" => status.to_string()
    )
    .increment(1);
}

/// `GET /metrics`: the pool gauges are refreshed, then everything is rendered.
pub async fn render(State(state): State<AppState>) -> Response {
    let Some(handle) = recorder() else {
        return crate::error::ApiError::NotFound("metrics are not available").into_response();
    };
    let pool = state.db.pool();
    metrics::gauge!("api_db_pool_size").set(f64::from(pool.size()));
    metrics::gauge!("api_db_pool_idle").set(pool.num_idle() as f64);
    handle.run_upkeep();
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        handle.render(),
    )
        .into_response()
}
