//! A PostgreSQL for tests, benches and load runs — the one place where the API's tests, the
//! criterion benches and the `apibench` harness get a database from.
//!
//! # Map
//! - [`Provision`] says *how* to get a server: a URL you give, a testcontainers container, a
//!   throwaway cluster from locally installed binaries, or `Auto` (DATABASE_URL → Docker →
//!   local binaries, with one error naming every fix when nothing works).
//! - [`Postgres`] is the handle: its URL, how it was provisioned, the server version and the
//!   settings chosen, plus `create_database` / `drop_database` / `fresh_database` for test
//!   isolation, and `restart` (a fast restart of a local cluster, for fault injection). Dropping
//!   it stops and removes whatever it started.
//! - [`shared()`] is a process-wide handle for test and bench binaries, usable from sync code
//!   and from inside any tokio runtime.
//! - Modules: `local` (initdb + postgres in a temp dir, and the cleanup watchdog), `container`
//!   (testcontainers), `docker` (is an engine answering?), `url` (redaction, per-database URLs,
//!   short-lived connections), `error` ([`ProvisionError`]).
//!
//! # Flow of a local cluster
//! find `initdb`/`postgres` → temp dir (chowned to `postgres` when root) → spawn the watchdog →
//! `initdb --no-sync` → `postgres` on a free port with durability off → poll until it accepts
//! connections → log how it was provisioned and the version. Drop: SIGINT (fast shutdown), wait
//! up to 5 s, SIGKILL, remove the dir. If the owner dies without dropping (panic=abort, SIGKILL,
//! Ctrl-C, a `static`), the watchdog notices within 0.5 s and does the same.
//!
//! # What it must never do
//! - Touch a database it did not create, other than through a URL the user gave: on a server
//!   given by URL it only creates databases, and drops only those this handle created.
//! - Leave a postgres process or a temp dir behind, or signal a process it did not spawn.
//! - Log or return a password: URLs in logs and errors are redacted.
//! - Hold a connection or pool: a handle can outlive the runtime that made it (see [`shared()`]).
//!
//! The local cluster runs with `fsync=off`, `synchronous_commit=off` and `full_page_writes=off`:
//! fast, and fine for data that is thrown away — never point it at data you want to keep.

mod container;
mod docker;
mod error;
mod local;
mod url;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Duration;

pub use docker::{DockerEndpoint, PING_TIMEOUT, docker_available, ping_docker};
pub use error::ProvisionError;
/// The directory of the PostgreSQL server binaries (`pg_config --bindir`, `PATH`, then
/// `/usr/lib/postgresql/*/bin`); pgbench and psql usually live there too.
pub use local::find_bindir as server_bindir;
pub use url::redact;

/// Server settings for every server we start (local cluster and container alike), so numbers
/// from both are comparable: durability off (data is throw-away), room for many pools.
pub(crate) const SERVER_TUNING: [(&str, &str); 5] = [
    ("fsync", "off"),
    ("synchronous_commit", "off"),
    ("full_page_writes", "off"),
    ("max_connections", "300"),
    ("shared_buffers", "128MB"),
];

/// How long a server given by URL may take to accept the first connection.
const URL_PATIENCE: Duration = Duration::from_secs(5);

/// How to get a PostgreSQL server.
#[derive(Clone, PartialEq, Eq)]
pub enum Provision {
    /// `DATABASE_URL` if set, else testcontainers if Docker answers, else local binaries.
    Auto,
    /// An existing server; used as given.
    Url(String),
    /// A `postgres:15-alpine` container (needs a Docker engine).
    Testcontainers,
    /// A throwaway cluster from the locally installed `initdb` and `postgres`.
    LocalBinaries,
}

impl Provision {
    /// `Url` when `DATABASE_URL` is set and non-empty, else `Auto`.
    pub fn from_env() -> Provision {
        database_url_from_env().map_or(Provision::Auto, Provision::Url)
    }
}

/// `DATABASE_URL`, trimmed, when set and non-empty.
fn database_url_from_env() -> Option<String> {
    std::env::var("DATABASE_URL")
        .ok()
        .map(|value| value.trim().to_owned())
        .filter(|value| !value.is_empty())
}

// Hand-written so that a password in `Url` never reaches a log line.
impl fmt::Debug for Provision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Provision::Url(url) => f.debug_tuple("Url").field(&redact(url)).finish(),
            Provision::Auto => f.write_str("Auto"),
            Provision::Testcontainers => f.write_str("Testcontainers"),
            Provision::LocalBinaries => f.write_str("LocalBinaries"),
        }
    }
}

/// The form [`Provision::from_str`](std::str::FromStr) accepts, with the password redacted.
impl fmt::Display for Provision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Provision::Auto => f.write_str("auto"),
            Provision::Url(url) => write!(f, "url:{}", redact(url)),
            Provision::Testcontainers => f.write_str("testcontainers"),
            Provision::LocalBinaries => f.write_str("local"),
        }
    }
}

impl std::str::FromStr for Provision {
    type Err = ProvisionError;

    /// `auto`, `local` (or `local-binaries`), `testcontainers`, `url:<URL>`, or a URL starting
    /// with `postgres://` / `postgresql://`. Keywords are case-insensitive.
    fn from_str(input: &str) -> Result<Provision, ProvisionError> {
        let value = input.trim();
        let unknown = || ProvisionError::UnknownProvision {
            input: redact(input),
        };
        if let Some(url) = value.strip_prefix("url:") {
            let url = url.trim();
            return if url.is_empty() {
                Err(unknown())
            } else {
                Ok(Provision::Url(url.to_owned()))
            };
        }
        if value.starts_with("postgres://") || value.starts_with("postgresql://") {
            return Ok(Provision::Url(value.to_owned()));
        }
        match value.to_ascii_lowercase().as_str() {
            "auto" => Ok(Provision::Auto),
            "local" | "local-binaries" => Ok(Provision::LocalBinaries),
            "testcontainers" => Ok(Provision::Testcontainers),
            _ => Err(unknown()),
        }
    }
}

/// How a [`Postgres`] handle got its server; recorded with every result.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProvisionedBy {
    Url,
    Testcontainers,
    LocalBinaries,
}

impl fmt::Display for ProvisionedBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProvisionedBy::Url => "url",
            ProvisionedBy::Testcontainers => "testcontainers",
            ProvisionedBy::LocalBinaries => "local-binaries",
        })
    }
}

/// What `Auto` picks, from its two inputs: the `DATABASE_URL` value (if set and non-empty) and
/// whether a Docker engine answered. Never returns [`Provision::Auto`].
pub(crate) fn choose(database_url: Option<&str>, docker: bool) -> Provision {
    match database_url.map(str::trim).filter(|url| !url.is_empty()) {
        Some(url) => Provision::Url(url.to_owned()),
        None if docker => Provision::Testcontainers,
        None => Provision::LocalBinaries,
    }
}

/// What every way of provisioning learns about its server.
pub(crate) struct ServerInfo {
    pub(crate) url: String,
    pub(crate) server_version: String,
    pub(crate) settings: BTreeMap<String, String>,
}

/// What keeps the server alive; dropping it stops what we started.
enum Backend {
    Url,
    /// Held only so that dropping the handle removes the container.
    Container {
        _container: Box<container::Container>,
    },
    Local(local::LocalCluster),
}

/// A provisioned PostgreSQL server. Drop stops and removes what it started (nothing for `Url`).
pub struct Postgres {
    url: String,
    provisioned_by: ProvisionedBy,
    server_version: String,
    settings: BTreeMap<String, String>,
    /// Databases this handle created; on a server given by URL, the only ones it may drop.
    created: Mutex<BTreeSet<String>>,
    backend: Backend,
}

impl fmt::Debug for Postgres {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Postgres")
            .field("url", &redact(&self.url))
            .field("provisioned_by", &self.provisioned_by)
            .field("server_version", &self.server_version)
            .field("postmaster_pid", &self.postmaster_pid())
            .finish_non_exhaustive()
    }
}

impl Postgres {
    /// Provisions a server as `how` says and waits until it accepts connections.
    pub async fn start(how: Provision) -> Result<Postgres, ProvisionError> {
        let postgres = match how {
            Provision::Url(url) => Postgres::from_url(url).await?,
            Provision::Testcontainers => Postgres::in_container().await?,
            Provision::LocalBinaries => Postgres::local().await?,
            Provision::Auto => Postgres::auto().await?,
        };
        tracing::info!(
            provisioned_by = %postgres.provisioned_by,
            server_version = %postgres.server_version,
            url = %redact(&postgres.url),
            postmaster_pid = ?postgres.postmaster_pid(),
            "PostgreSQL ready"
        );
        Ok(postgres)
    }

    /// [`Postgres::start`] for synchronous callers (criterion setup, `main` before a runtime,
    /// code already inside a runtime that must not nest one): runs on a helper thread with its
    /// own current-thread runtime.
    pub fn start_blocking(how: Provision) -> Result<Postgres, ProvisionError> {
        let helper = std::thread::Builder::new()
            .name("pgprovision".to_owned())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| ProvisionError::Thread {
                        reason: format!("building a tokio runtime: {e}"),
                    })?;
                runtime.block_on(Postgres::start(how))
            })
            .map_err(|e| ProvisionError::Thread {
                reason: format!("spawning the thread: {e}"),
            })?;
        helper.join().unwrap_or_else(|_| {
            Err(ProvisionError::Thread {
                reason: "the thread panicked".to_owned(),
            })
        })
    }

    async fn from_url(url: String) -> Result<Postgres, ProvisionError> {
        let server_version = url::probe(&url, URL_PATIENCE).await?;
        let server = ServerInfo {
            url,
            server_version,
            settings: BTreeMap::new(),
        };
        Ok(Postgres::new(server, ProvisionedBy::Url, Backend::Url))
    }

    async fn in_container() -> Result<Postgres, ProvisionError> {
        let (container, server) = container::Container::start().await?;
        let backend = Backend::Container {
            _container: Box::new(container),
        };
        Ok(Postgres::new(
            server,
            ProvisionedBy::Testcontainers,
            backend,
        ))
    }

    async fn local() -> Result<Postgres, ProvisionError> {
        let (cluster, server) = local::LocalCluster::start().await?;
        Ok(Postgres::new(
            server,
            ProvisionedBy::LocalBinaries,
            Backend::Local(cluster),
        ))
    }

    /// `DATABASE_URL` → Docker → local binaries. A failing DATABASE_URL is reported as is (the
    /// user asked for that server); otherwise, if nothing works, one error names every fix.
    async fn auto() -> Result<Postgres, ProvisionError> {
        let database_url = database_url_from_env();
        let docker = match database_url {
            Some(_) => Err("not checked: DATABASE_URL is set".to_owned()),
            None => tokio::task::spawn_blocking(docker::docker_status)
                .await
                .unwrap_or_else(|e| Err(format!("the Docker check did not finish: {e}"))),
        };
        let mut attempts = vec![("DATABASE_URL".to_owned(), "not set".to_owned())];
        match choose(database_url.as_deref(), docker.is_ok()) {
            Provision::Url(url) => return Postgres::from_url(url).await,
            Provision::Testcontainers => match Postgres::in_container().await {
                Ok(postgres) => return Ok(postgres),
                Err(error) => {
                    tracing::warn!(
                        %error,
                        "testcontainers failed although Docker answered; trying local binaries"
                    );
                    let endpoint = docker.map(|e| e.to_string()).unwrap_or_default();
                    attempts.push((
                        format!("testcontainers (Docker at {endpoint})"),
                        error.to_string(),
                    ));
                }
            },
            Provision::LocalBinaries | Provision::Auto => {
                attempts.push(("Docker".to_owned(), docker.err().unwrap_or_default()));
            }
        }
        match Postgres::local().await {
            Ok(postgres) => Ok(postgres),
            Err(error) => {
                attempts.push(("local binaries".to_owned(), error.to_string()));
                Err(ProvisionError::NothingWorked { attempts })
            }
        }
    }

    fn new(server: ServerInfo, provisioned_by: ProvisionedBy, backend: Backend) -> Postgres {
        Postgres {
            url: server.url,
            provisioned_by,
            server_version: server.server_version,
            settings: server.settings,
            created: Mutex::new(BTreeSet::new()),
            backend,
        }
    }

    /// URL of the default database (`postgres`, or the one in the URL given).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The same server and credentials, database `database`.
    pub fn url_for_database(&self, database: &str) -> String {
        url::with_database(&self.url, database)
    }

    pub fn provisioned_by(&self) -> ProvisionedBy {
        self.provisioned_by
    }

    /// `SHOW server_version`, e.g. "15.18 (Debian 15.18-0+deb12u1)".
    pub fn server_version(&self) -> &str {
        &self.server_version
    }

    /// The server settings pgprovision chose (port, socket dir, data dir, durability, memory,
    /// max_connections, …) plus `log_file` for a local cluster; empty for `Url`.
    pub fn settings(&self) -> &BTreeMap<String, String> {
        &self.settings
    }

    /// The postmaster's pid for a local cluster (to sample RSS/CPU of it and its children).
    pub fn postmaster_pid(&self) -> Option<u32> {
        match &self.backend {
            Backend::Local(cluster) => cluster.postmaster_pid(),
            Backend::Url | Backend::Container { .. } => None,
        }
    }

    /// The temp dir of a local cluster (`data/`, `sock/`, `postgres.log`); removed on drop.
    pub fn cluster_dir(&self) -> Option<&Path> {
        match &self.backend {
            Backend::Local(cluster) => Some(cluster.root()),
            Backend::Url | Backend::Container { .. } => None,
        }
    }

    /// A fast restart of a local cluster this handle started (`pg_ctl restart -m fast`): every
    /// session is terminated, the server refuses connections until it is back on the same port,
    /// and this returns once it accepts them again. A server given by URL or running in a
    /// container is not this handle's process: [`ProvisionError::NotOurProcess`].
    pub async fn restart(&mut self) -> Result<(), ProvisionError> {
        let provisioned_by = self.provisioned_by;
        let Backend::Local(cluster) = &mut self.backend else {
            return Err(ProvisionError::NotOurProcess {
                action: "restart",
                provisioned_by: provisioned_by.to_string(),
            });
        };
        let port = self
            .settings
            .get("port")
            .and_then(|port| port.parse::<u16>().ok())
            .ok_or_else(|| ProvisionError::NotOurProcess {
                action: "restart (its port is unknown)",
                provisioned_by: provisioned_by.to_string(),
            })?;
        cluster.restart(port, &self.url).await
    }

    /// `CREATE DATABASE name [TEMPLATE template]` and the new database's URL. Both names must
    /// be plain identifiers (letters, digits, `_`). A template must have no other connections.
    pub async fn create_database(
        &self,
        name: &str,
        template: Option<&str>,
    ) -> Result<String, ProvisionError> {
        url::validate_database_name(name)?;
        let statement = match template {
            Some(template) => {
                url::validate_database_name(template)?;
                format!("CREATE DATABASE \"{name}\" TEMPLATE \"{template}\"")
            }
            None => format!("CREATE DATABASE \"{name}\""),
        };
        url::execute(&self.url, &statement).await?;
        self.created
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name.to_owned());
        Ok(self.url_for_database(name))
    }

    /// `DROP DATABASE IF EXISTS name WITH (FORCE)` (disconnects its sessions). On a server given
    /// by URL only databases this handle created may be dropped.
    pub async fn drop_database(&self, name: &str) -> Result<(), ProvisionError> {
        url::validate_database_name(name)?;
        let ours = self
            .created
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(name);
        if self.provisioned_by == ProvisionedBy::Url && !ours {
            return Err(ProvisionError::NotOurs {
                name: name.to_owned(),
                url: redact(&self.url),
            });
        }
        url::execute(
            &self.url,
            &format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"),
        )
        .await?;
        self.created
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(name);
        Ok(())
    }

    /// A new empty database with a unique name (`t_<pid>_<counter>_<nanos>`); its URL.
    pub async fn fresh_database(&self) -> Result<String, ProvisionError> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let name = format!(
            "t_{}_{}_{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        self.create_database(&name, None).await
    }

    /// Stops and removes what this handle started (the same as dropping it).
    pub fn stop(self) {
        drop(self);
    }
}

static SHARED: OnceLock<Result<Postgres, String>> = OnceLock::new();

/// The process-wide server for test and bench binaries, provisioned on first use from
/// [`Provision::from_env`]. Callable from sync code and from inside any tokio runtime.
///
/// The handle lives in a `static` and is never dropped: a local cluster is stopped and removed
/// by its watchdog shortly after the process exits. A failure is cached, so every later caller
/// gets the same message at once. Use [`Postgres::fresh_database`] for per-test isolation.
pub fn shared() -> Result<&'static Postgres, ProvisionError> {
    SHARED
        .get_or_init(|| {
            Postgres::start_blocking(Provision::from_env()).map_err(|error| error.to_string())
        })
        .as_ref()
        .map_err(|message| ProvisionError::Shared(message.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_prefers_database_url_then_docker_then_local_binaries() {
        assert_eq!(
            choose(Some("postgres://u@h/db"), true),
            Provision::Url("postgres://u@h/db".to_owned())
        );
        assert_eq!(
            choose(Some("postgres://u@h/db"), false),
            Provision::Url("postgres://u@h/db".to_owned())
        );
        assert_eq!(choose(None, true), Provision::Testcontainers);
        assert_eq!(choose(None, false), Provision::LocalBinaries);
        // An empty DATABASE_URL counts as unset.
        assert_eq!(choose(Some("  "), false), Provision::LocalBinaries);
        assert_eq!(choose(Some(""), true), Provision::Testcontainers);
    }

    #[test]
    fn provision_strings_parse() {
        let parse = |s: &str| s.parse::<Provision>().ok();
        assert_eq!(parse("auto"), Some(Provision::Auto));
        assert_eq!(parse(" Local "), Some(Provision::LocalBinaries));
        assert_eq!(parse("local-binaries"), Some(Provision::LocalBinaries));
        assert_eq!(parse("testcontainers"), Some(Provision::Testcontainers));
        assert_eq!(
            parse("url:postgres://u:p@h:5432/d"),
            Some(Provision::Url("postgres://u:p@h:5432/d".to_owned()))
        );
        assert_eq!(
            parse("postgresql://h/d"),
            Some(Provision::Url("postgresql://h/d".to_owned()))
        );
        assert_eq!(
            parse("postgres://h/d"),
            Some(Provision::Url("postgres://h/d".to_owned()))
        );
        for bad in ["", "docker", "url:", "mysql://h/d", "localhost"] {
            assert_eq!(parse(bad), None, "{bad:?} was accepted");
        }
    }

    #[test]
    fn provision_round_trips_through_display_and_never_shows_a_password() {
        for how in [
            Provision::Auto,
            Provision::LocalBinaries,
            Provision::Testcontainers,
            Provision::Url("postgres://u@h/d".to_owned()),
        ] {
            assert_eq!(how.to_string().parse::<Provision>().ok(), Some(how));
        }
        let secret = Provision::Url("postgres://u:hunter2@h/d".to_owned());
        assert!(!secret.to_string().contains("hunter2"));
        assert!(!format!("{secret:?}").contains("hunter2"));
        let error = "url:"
            .parse::<Provision>()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(error.contains("expected"), "{error}");
    }

    #[test]
    fn provisioned_by_displays_as_recorded_in_results() {
        assert_eq!(ProvisionedBy::Url.to_string(), "url");
        assert_eq!(ProvisionedBy::Testcontainers.to_string(), "testcontainers");
        assert_eq!(ProvisionedBy::LocalBinaries.to_string(), "local-binaries");
    }

    #[test]
    fn the_nothing_worked_error_names_every_fix_and_every_report() {
        let error = ProvisionError::NothingWorked {
            attempts: vec![
                ("DATABASE_URL".to_owned(), "not set".to_owned()),
                (
                    "Docker".to_owned(),
                    "no Docker engine at unix:///x".to_owned(),
                ),
                ("local binaries".to_owned(), "no initdb found".to_owned()),
            ],
        }
        .to_string();
        for needle in [
            "DATABASE_URL=postgres://",
            "start Docker",
            "apt-get install postgresql",
            "no Docker engine at unix:///x",
            "no initdb found",
        ] {
            assert!(error.contains(needle), "{needle:?} missing from:\n{error}");
        }
    }
}
