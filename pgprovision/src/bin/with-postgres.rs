//! `with-postgres CMD [ARGS…]` — run a command with `DATABASE_URL` pointing at a PostgreSQL that
//! exists for exactly as long as the command runs.
//!
//! The server comes from [`Provision::from_env`]: `DATABASE_URL` if set (passed through as is),
//! else testcontainers when Docker answers, else a throwaway cluster from the local server
//! binaries, stopped and deleted when the command ends. `make test` uses it for the Node.js
//! baseline's database tests. Exits with the command's exit code (128 + signal if it was killed).

use std::os::unix::process::ExitStatusExt as _;
use std::process::{Command, ExitCode};

use pgprovision::{Postgres, Provision};

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let Some(program) = args.next() else {
        eprintln!(
            "usage: with-postgres CMD [ARGS…]\n\nRuns CMD with DATABASE_URL set to a PostgreSQL that lives as long as CMD:\n\
             DATABASE_URL if already set, else testcontainers (Docker), else a throwaway local cluster."
        );
        return ExitCode::from(2);
    };
    let postgres = match Postgres::start_blocking(Provision::from_env()) {
        Ok(postgres) => postgres,
        Err(error) => {
            eprintln!("with-postgres: could not provision PostgreSQL: {error}");
            return ExitCode::from(3);
        }
    };
    eprintln!(
        "with-postgres: PostgreSQL {} ({})",
        postgres.server_version(),
        postgres.provisioned_by()
    );
    let status = Command::new(&program)
        .args(args)
        .env("DATABASE_URL", postgres.url())
        .status();
    drop(postgres);
    match status {
        Ok(status) => match (status.code(), status.signal()) {
            (Some(code), _) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
            (None, Some(signal)) => ExitCode::from(u8::try_from(128 + signal).unwrap_or(1)),
            (None, None) => ExitCode::from(1),
        },
        Err(error) => {
            eprintln!(
                "with-postgres: could not run {}: {error}",
                program.to_string_lossy()
            );
            ExitCode::from(127)
        }
    }
}
