//! The one error type of the crate. Every variant names what was being done and with which
//! binary, directory or (password-redacted) URL, so a failed test run says how to fix it.
//! It must never carry a password: URLs go through [`crate::url::redact`] before they land here.

use std::path::PathBuf;

/// Why PostgreSQL could not be provisioned or a database operation on it failed.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    /// A `--provision`-style string that is none of `auto`, `local`, `testcontainers`, `url:<URL>`
    /// or a `postgres://` URL.
    #[error(
        "unknown provisioning {input:?}: expected \"auto\", \"local\", \"testcontainers\", \
         \"url:<URL>\" or a postgres:// URL"
    )]
    UnknownProvision { input: String },

    /// No directory with both `initdb` and `postgres` was found.
    #[error(
        "no PostgreSQL server binaries (initdb + postgres) found; looked in: {}",
        searched.join(", ")
    )]
    BinariesNotFound { searched: Vec<String> },

    /// The OS user the cluster must run as (when we are root) does not exist.
    #[error("running as root, so PostgreSQL must run as OS user {user:?}, but {reason}")]
    ServiceUser { user: String, reason: String },

    /// A file-system or process operation failed.
    #[error("{action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// `initdb` ran but failed.
    #[error("{} -D {} failed ({status}):\n{output}", binary.display(), data_dir.display())]
    Initdb {
        binary: PathBuf,
        data_dir: PathBuf,
        status: String,
        output: String,
    },

    /// The postmaster exited or did not accept connections in time.
    #[error(
        "PostgreSQL ({}) with data directory {} did not start: {reason}\n--- last lines of {} ---\n{log_tail}",
        binary.display(), data_dir.display(), log_file.display()
    )]
    ServerStart {
        binary: PathBuf,
        data_dir: PathBuf,
        log_file: PathBuf,
        reason: String,
        log_tail: String,
    },

    /// Connecting to a server failed (after retries).
    #[error("connecting to PostgreSQL at {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: sqlx::Error,
    },

    /// A statement failed on a server we are connected to.
    #[error("running `{statement}` on {url}: {source}")]
    Query {
        url: String,
        statement: String,
        #[source]
        source: sqlx::Error,
    },

    /// A database name that is not a plain identifier (letters, digits, `_`; 1–63 bytes).
    #[error("invalid database name {name:?}: {reason}")]
    InvalidDatabaseName { name: String, reason: &'static str },

    /// Refused to drop a database on a server given by URL that this handle did not create.
    #[error(
        "refusing to drop database {name:?} on {url}: it was not created by this handle, and a \
         server given by URL is never touched beyond what pgprovision created"
    )]
    NotOurs { name: String, url: String },

    /// A process-level operation (restart) on a server pgprovision did not start itself.
    #[error(
        "cannot {action} a PostgreSQL provisioned by {provisioned_by}: only a local cluster \
         pgprovision started is its own process"
    )]
    NotOurProcess {
        action: &'static str,
        provisioned_by: String,
    },

    /// Starting the testcontainers PostgreSQL failed.
    #[error("starting PostgreSQL with testcontainers (image {image}): {reason}")]
    Testcontainers { image: String, reason: String },

    /// `Auto` found no way to get a PostgreSQL; lists what each attempt reported and all fixes.
    #[error(
        "no PostgreSQL available. What was tried:\n{}\nFix one of:\n  \
         1. set DATABASE_URL=postgres://user:password@host:5432/postgres to use an existing server;\n  \
         2. start Docker (so that `docker info` works) for a testcontainers PostgreSQL;\n  \
         3. install the PostgreSQL server binaries (e.g. `apt-get install postgresql`) so that \
         initdb and postgres are on PATH, in `pg_config --bindir` or under /usr/lib/postgresql/*/bin.",
        attempts.iter().map(|(way, report)| format!("  - {way}: {report}")).collect::<Vec<_>>().join("\n")
    )]
    NothingWorked { attempts: Vec<(String, String)> },

    /// The helper thread that provisions for synchronous callers could not run or panicked.
    #[error("provisioning on a helper thread failed: {reason}")]
    Thread { reason: String },

    /// The process-wide [`crate::shared`] instance failed to start earlier; this is its message.
    #[error("the shared PostgreSQL could not be provisioned: {0}")]
    Shared(String),
}

impl ProvisionError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        ProvisionError::Io {
            action,
            path: path.into(),
            source,
        }
    }
}
