//! PostgreSQL in a Docker container via testcontainers, with the same server settings as a
//! local cluster so numbers from both are comparable. Dropping the container handle removes
//! the container. It must never reuse or touch a container it did not start.

use std::collections::BTreeMap;
use std::time::Duration;

use testcontainers_modules::postgres::Postgres as PostgresImage;
use testcontainers_modules::testcontainers::runners::AsyncRunner as _;
use testcontainers_modules::testcontainers::{ContainerAsync, ImageExt as _};

use crate::{ProvisionError, SERVER_TUNING, ServerInfo, url};

/// The image tag, pinned so runs are comparable over time.
pub(crate) const IMAGE_TAG: &str = "15-alpine";

/// A started container; dropping it removes the container.
pub(crate) struct Container {
    /// Held only so that drop removes the container.
    _container: ContainerAsync<PostgresImage>,
}

impl Container {
    pub(crate) async fn start() -> Result<(Container, ServerInfo), ProvisionError> {
        let image = format!("postgres:{IMAGE_TAG}");
        let failed = |reason: String| ProvisionError::Testcontainers {
            image: image.clone(),
            reason,
        };
        let mut command = Vec::new();
        for (name, value) in SERVER_TUNING {
            command.push("-c".to_owned());
            command.push(format!("{name}={value}"));
        }
        let container = PostgresImage::default()
            .with_tag(IMAGE_TAG)
            .with_cmd(command)
            .start()
            .await
            .map_err(|e| failed(e.to_string()))?;
        let port = container
            .get_host_port_ipv4(5432)
            .await
            .map_err(|e| failed(format!("reading the mapped port of 5432: {e}")))?;
        let host = match container.get_host().await {
            Ok(host) if host.to_string() != "localhost" => host.to_string(),
            _ => "127.0.0.1".to_owned(),
        };
        let url = format!("postgres://postgres:postgres@{host}:{port}/postgres");
        // The module waits for the "ready" log line; a short retry covers the port mapping.
        let server_version = url::probe(&url, Duration::from_secs(10)).await?;
        let mut settings: BTreeMap<String, String> = SERVER_TUNING
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect();
        settings.insert("host_port".to_owned(), port.to_string());
        settings.insert("image".to_owned(), image);
        let server = ServerInfo {
            url,
            server_version,
            settings,
        };
        Ok((
            Container {
                _container: container,
            },
            server,
        ))
    }
}
