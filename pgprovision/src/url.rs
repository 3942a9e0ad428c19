//! Connection-URL helpers and the short-lived connections the handle uses: redact a password,
//! point a URL at another database, validate database names, connect with retries.
//! Nothing here keeps a connection open: a handle may outlive the runtime that created it
//! (see [`crate::shared`]), so every operation connects, does its work and disconnects.

use std::time::{Duration, Instant};

use sqlx::{Connection as _, PgConnection};

use crate::ProvisionError;

/// `url` with the password (if any) replaced by `***`, for logs and errors.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

/// `url` with its database (the path) replaced by `database`; query parameters are kept.
pub(crate) fn with_database(url: &str, database: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("postgres", url));
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let query = tail.find('?').map_or("", |at| &tail[at..]);
    format!("{scheme}://{authority}/{}{query}", percent_encode(database))
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for byte in s.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Checks that `name` is a plain identifier: ASCII letter or `_` first, then letters, digits or
/// `_`, at most 63 bytes (PostgreSQL's NAMEDATALEN - 1). Names are always double-quoted in SQL,
/// so case is preserved and the URL carries the exact name.
pub(crate) fn validate_database_name(name: &str) -> Result<(), ProvisionError> {
    let reason = if name.is_empty() {
        Some("it is empty")
    } else if name.len() > 63 {
        Some("it is longer than 63 bytes")
    } else if !name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
    {
        Some("it must start with an ASCII letter or '_'")
    } else if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        Some("only ASCII letters, digits and '_' are allowed")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(ProvisionError::InvalidDatabaseName {
            name: name.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

/// Connects to `url`, retrying until `patience` has passed. Each attempt is bounded so an
/// unreachable host cannot hang the caller.
pub(crate) async fn connect_with_retries(
    url: &str,
    patience: Duration,
) -> Result<PgConnection, ProvisionError> {
    const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);
    const PAUSE: Duration = Duration::from_millis(100);
    let deadline = Instant::now() + patience;
    loop {
        let error = match tokio::time::timeout(ATTEMPT_TIMEOUT, PgConnection::connect(url)).await {
            Ok(Ok(connection)) => return Ok(connection),
            Ok(Err(error)) => error,
            Err(_) => sqlx::Error::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no answer within {} s", ATTEMPT_TIMEOUT.as_secs()),
            )),
        };
        // A malformed URL will not get better by waiting.
        let retryable = !matches!(error, sqlx::Error::Configuration(_));
        if !retryable || Instant::now() + PAUSE >= deadline {
            return Err(ProvisionError::Connect {
                url: redact(url),
                source: error,
            });
        }
        tokio::time::sleep(PAUSE).await;
    }
}

/// Runs one statement that returns nothing on a new connection to `url`.
pub(crate) async fn execute(url: &str, statement: &str) -> Result<(), ProvisionError> {
    let mut connection = connect_with_retries(url, Duration::from_secs(5)).await?;
    let result = sqlx::raw_sql(statement).execute(&mut connection).await;
    let _ = connection.close().await;
    result.map(drop).map_err(|source| ProvisionError::Query {
        url: redact(url),
        statement: statement.to_owned(),
        source,
    })
}

/// Reads `server_version` (e.g. "15.18 (Debian 15.18-0+deb12u1)") over `connection`.
pub(crate) async fn server_version(
    connection: &mut PgConnection,
    url: &str,
) -> Result<String, ProvisionError> {
    const STATEMENT: &str = "SELECT current_setting('server_version')";
    sqlx::query_scalar::<_, String>(STATEMENT)
        .fetch_one(connection)
        .await
        .map_err(|source| ProvisionError::Query {
            url: redact(url),
            statement: STATEMENT.to_owned(),
            source,
        })
}

/// Connects to `url` (retrying for up to `patience`) and reads the server version.
pub(crate) async fn probe(url: &str, patience: Duration) -> Result<String, ProvisionError> {
    let mut connection = connect_with_retries(url, patience).await?;
    let version = server_version(&mut connection, url).await;
    let _ = connection.close().await;
    version
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_hides_only_the_password() {
        assert_eq!(
            redact("postgres://app:s3cret@db:5432/app?sslmode=disable"),
            "postgres://app:***@db:5432/app?sslmode=disable"
        );
        assert_eq!(
            redact("postgres://postgres@127.0.0.1:5432/postgres"),
            "postgres://postgres@127.0.0.1:5432/postgres"
        );
        // An '@' inside the password must not leak the part before it.
        assert_eq!(redact("postgres://u:p@ss@h/d"), "postgres://u:***@h/d");
        assert_eq!(redact("not a url"), "not a url");
    }

    #[test]
    fn with_database_replaces_the_path_and_keeps_the_query() {
        assert_eq!(
            with_database("postgres://u:p@h:5/postgres?sslmode=disable", "t_1"),
            "postgres://u:p@h:5/t_1?sslmode=disable"
        );
        assert_eq!(with_database("postgresql://h", "x"), "postgresql://h/x");
        assert_eq!(with_database("postgres://h/", "Ab_1"), "postgres://h/Ab_1");
    }

    #[test]
    fn database_names_must_be_plain_identifiers() {
        for good in ["t_1", "_x", "Bench", &"a".repeat(63)] {
            assert!(
                validate_database_name(good).is_ok(),
                "{good:?} was rejected"
            );
        }
        for bad in [
            "",
            "1abc",
            "a-b",
            "a b",
            "x\"; DROP DATABASE postgres; --",
            "é",
            &"a".repeat(64),
        ] {
            assert!(
                matches!(
                    validate_database_name(bad),
                    Err(ProvisionError::InvalidDatabaseName { .. })
                ),
                "{bad:?} was accepted"
            );
        }
    }
}
