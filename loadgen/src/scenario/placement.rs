//! `[cpus]` (which CPUs the target, PostgreSQL and the generator may run on) and `[baseline]`
//! (the database's own ceiling, measured by pgbench before the variants), each field checked with
//! its file:line:col. Only the shapes live here; `crate::placement` applies them.

use super::*;
use crate::engine::workers::{CpuList, parse_cpu_list};

/// `[cpus]`: an affinity mask per process tree; `None` leaves that tree where the OS puts it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CpuPlacement {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<CpuList>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres: Option<CpuList>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generator: Option<CpuList>,
}

impl CpuPlacement {
    /// True when the scenario pins nothing.
    pub fn is_empty(&self) -> bool {
        self.target.is_none() && self.postgres.is_none() && self.generator.is_none()
    }
}

/// `[baseline] pgbench = { clients = 32, seconds = 10 }`: the database's read ceiling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PgbenchSpec {
    /// pgbench `-c`: concurrent database sessions.
    pub clients: u32,
    /// pgbench `-j`: its own threads (default: one per generator CPU, at most `clients`).
    pub threads: Option<u32>,
    /// pgbench `-T`.
    pub seconds: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCpus {
    target: Option<Spanned<String>>,
    postgres: Option<Spanned<String>>,
    generator: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBaseline {
    pgbench: Option<Spanned<RawPgbench>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPgbench {
    clients: Option<Spanned<i64>>,
    threads: Option<Spanned<i64>>,
    seconds: Option<Spanned<i64>>,
}

/// The most pgbench sessions a baseline may open (PostgreSQL's default max_connections is 100).
pub const MAX_PGBENCH_CLIENTS: u32 = 90;
/// The longest baseline, seconds.
pub const MAX_PGBENCH_SECONDS: u32 = 600;

pub(super) fn parse_cpus(cx: &Cx, raw: Option<&RawCpus>) -> Result<CpuPlacement, ScenarioError> {
    let Some(raw) = raw else {
        return Ok(CpuPlacement::default());
    };
    let list = |field: &str, value: &Option<Spanned<String>>| -> Result<_, ScenarioError> {
        value
            .as_ref()
            .map(|v| {
                parse_cpu_list(v.get_ref())
                    .map_err(|e| cx.err(&v.span(), &format!("cpus.{field}"), &e))
            })
            .transpose()
    };
    Ok(CpuPlacement {
        target: list("target", &raw.target)?,
        postgres: list("postgres", &raw.postgres)?,
        generator: list("generator", &raw.generator)?,
    })
}

pub(super) fn parse_baseline(
    cx: &Cx,
    raw: Option<&Spanned<RawBaseline>>,
    variants: &[VariantSpec],
) -> Result<Option<PgbenchSpec>, ScenarioError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let Some(pgbench) = &raw.get_ref().pgbench else {
        return Err(cx.err(
            &raw.span(),
            "baseline",
            "[baseline] needs `pgbench = { clients = 32, seconds = 10 }`",
        ));
    };
    if !variants.iter().any(|v| v.target.needs_database()) {
        return Err(cx.err(
            &pgbench.span(),
            "baseline.pgbench",
            "no variant starts a target on apibench's PostgreSQL (kind \"api\" or \"node\"), so \
             there is no database to measure",
        ));
    }
    let p = pgbench.get_ref();
    let bounded =
        |field: &str, value: &Option<Spanned<i64>>, default: Option<u32>, max: u32| match value {
            None => default.ok_or_else(|| {
                cx.err(
                    &pgbench.span(),
                    &format!("baseline.pgbench.{field}"),
                    &format!("missing; e.g. `{field} = 10`"),
                )
            }),
            Some(v) => u32::try_from(*v.get_ref())
                .ok()
                .filter(|n| (1..=max).contains(n))
                .ok_or_else(|| {
                    cx.err(
                        &v.span(),
                        &format!("baseline.pgbench.{field}"),
                        &format!("must be 1..={max}"),
                    )
                }),
        };
    let clients = bounded("clients", &p.clients, Some(32), MAX_PGBENCH_CLIENTS)?;
    let seconds = bounded("seconds", &p.seconds, Some(10), MAX_PGBENCH_SECONDS)?;
    let threads = match &p.threads {
        None => None,
        Some(_) => Some(bounded("threads", &p.threads, None, clients)?),
    };
    Ok(Some(PgbenchSpec {
        clients,
        threads,
        seconds,
    }))
}
