//! Static checks of `docker-compose.yml`, `Dockerfile` and `deploy/prometheus.yml`.
//!
//! There is no Docker engine on the development machine or in CI, so these tests read the files
//! and check what `docker compose up` relies on: the three services, the wiring between them
//! (the API's `DATABASE_URL` points at the `postgres` service with its credentials, Prometheus
//! scrapes the API's port and `/metrics`), and a multi-stage Dockerfile that builds the `api`
//! binary. They fail when someone renames a service, a port or a credential on one side only.

use std::path::{Path, PathBuf};

use serde_yaml::Value;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(".."))
}

fn read(rel: &str) -> String {
    let path = repo_root().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn compose() -> Value {
    serde_yaml::from_str(&read("docker-compose.yml")).expect("docker-compose.yml parses as YAML")
}

fn service<'a>(doc: &'a Value, name: &str) -> &'a Value {
    doc.get("services")
        .and_then(|s| s.get(name))
        .unwrap_or_else(|| panic!("docker-compose.yml has no service `{name}`"))
}

fn env_var(svc: &Value, key: &str) -> String {
    let env = svc.get("environment").expect("service has an environment");
    match env {
        Value::Mapping(m) => m
            .get(Value::from(key))
            .and_then(|v| match v {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
            .unwrap_or_else(|| panic!("environment has no `{key}`")),
        Value::Sequence(items) => items
            .iter()
            .filter_map(Value::as_str)
            .find_map(|item| item.strip_prefix(&format!("{key}=")).map(str::to_owned))
            .unwrap_or_else(|| panic!("environment has no `{key}`")),
        _ => panic!("environment is neither a map nor a list"),
    }
}

/// `"127.0.0.1:8080:8080"` → (host port, container port)
fn port_mappings(svc: &Value) -> Vec<(u16, u16)> {
    svc.get("ports")
        .and_then(Value::as_sequence)
        .map(|ports| {
            ports
                .iter()
                .filter_map(Value::as_str)
                .filter_map(|p| {
                    let parts: Vec<&str> = p.rsplitn(3, ':').collect();
                    let container = parts.first()?.parse().ok()?;
                    let host = parts.get(1)?.parse().ok()?;
                    Some((host, container))
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn compose_has_postgres_api_and_prometheus() {
    let doc = compose();
    let pg = service(&doc, "postgres");
    let image = pg.get("image").and_then(Value::as_str).unwrap_or("");
    assert!(
        image.starts_with("postgres:"),
        "postgres uses the official image, got `{image}`"
    );
    assert!(
        pg.get("healthcheck").is_some(),
        "postgres has a healthcheck the api waits on"
    );
    let api = service(&doc, "api");
    assert_eq!(
        api.get("build")
            .and_then(|b| b.get("dockerfile"))
            .and_then(Value::as_str),
        Some("Dockerfile")
    );
    service(&doc, "prometheus");
}

#[test]
fn api_database_url_points_at_the_postgres_service_with_its_credentials() {
    let doc = compose();
    let pg = service(&doc, "postgres");
    let api = service(&doc, "api");
    let url = env_var(api, "DATABASE_URL");
    let expected = format!(
        "postgres://{}:{}@postgres:5432/{}",
        env_var(pg, "POSTGRES_USER"),
        env_var(pg, "POSTGRES_PASSWORD"),
        env_var(pg, "POSTGRES_DB")
    );
    assert_eq!(url, expected);
    let condition = api
        .get("depends_on")
        .and_then(|d| d.get("postgres"))
        .and_then(|p| p.get("condition"))
        .and_then(Value::as_str);
    assert_eq!(
        condition,
        Some("service_healthy"),
        "api waits for a healthy postgres"
    );
}

#[test]
fn api_listens_on_the_port_it_publishes_and_prometheus_scrapes() {
    let doc = compose();
    let api = service(&doc, "api");
    let listen = env_var(api, "API_LISTEN");
    let api_port: u16 = listen
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("API_LISTEN ends in a port");
    assert!(
        listen.starts_with("0.0.0.0:"),
        "inside a container the API must listen on all interfaces"
    );
    assert!(
        port_mappings(api)
            .iter()
            .any(|&(_, container)| container == api_port),
        "the api publishes its listen port {api_port}"
    );

    let prom = service(&doc, "prometheus");
    let mount = prom
        .get("volumes")
        .and_then(Value::as_sequence)
        .and_then(|v| {
            v.iter()
                .filter_map(Value::as_str)
                .find(|m| m.contains("prometheus.yml"))
        })
        .expect("prometheus mounts a prometheus.yml");
    let local = mount
        .split(':')
        .next()
        .unwrap_or_default()
        .trim_start_matches("./");
    let config: Value = serde_yaml::from_str(&read(local)).expect("prometheus.yml parses");
    let job = config
        .get("scrape_configs")
        .and_then(Value::as_sequence)
        .and_then(|jobs| jobs.first())
        .expect("one scrape job");
    assert_eq!(
        job.get("metrics_path").and_then(Value::as_str),
        Some("/metrics")
    );
    let targets: Vec<&str> = job
        .get("static_configs")
        .and_then(Value::as_sequence)
        .into_iter()
        .flatten()
        .filter_map(|c| c.get("targets").and_then(Value::as_sequence))
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        targets.contains(&format!("api:{api_port}").as_str()),
        "prometheus scrapes api:{api_port}, has {targets:?}"
    );
}

#[test]
fn dockerfile_is_multi_stage_and_ships_only_the_api_binary() {
    let dockerfile = read("Dockerfile");
    let stages: Vec<&str> = dockerfile
        .lines()
        .filter(|l| l.trim_start().to_ascii_uppercase().starts_with("FROM "))
        .collect();
    assert!(stages.len() >= 2, "multi-stage build, found {stages:?}");
    let last = stages.last().copied().unwrap_or_default();
    assert!(
        last.contains("slim"),
        "runtime stage is a small image: {last}"
    );
    assert!(dockerfile.contains("cargo build --release -p api"));
    assert!(dockerfile.contains("COPY --from=build"));
    assert!(
        dockerfile.contains("USER "),
        "runtime stage does not run as root"
    );
}
