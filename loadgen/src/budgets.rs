//! The budgets file of `apibench gate` (TOML): a list of `[[budget]]` tables, each selecting
//! variants by a glob over their names (`*`, `?`), optionally one request name, and setting
//! limits. Unknown fields are errors; every error names file:line:column.
//!
//! ```toml
//! [[budget]]
//! variant = "*"            # glob over variant names (default "*")
//! request = "get_user"     # optional; default: the variant's overall figures
//! p99_ms = 8               # any of p50_ms p90_ms p99_ms p999_ms max_ms
//! error_rate = 0.001       # errors / requests
//! min_throughput_rps = 1000 # goodput: successful completions per second of the window
//! max_rss_mib = 200        # peak RSS of the target's process tree
//! ```
//!
//! `min_throughput_rps` keeps its name (budgets files in use) but limits goodput, as `compare`
//! shows it ([`crate::compare::goodput_per_sec`]): errors and the drain after the schedule do
//! not count; in results written before goodput existed it falls back to the throughput.
//!
//! This module parses and matches; it never reads results or decides a verdict.

use serde::Deserialize;
use std::path::{Path, PathBuf};

/// One `[[budget]]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    #[serde(default = "any_variant")]
    pub variant: String,
    #[serde(default)]
    pub request: Option<String>,
    pub p50_ms: Option<f64>,
    pub p90_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub p999_ms: Option<f64>,
    pub max_ms: Option<f64>,
    pub error_rate: Option<f64>,
    /// A floor on goodput (successful completions per second of the measured window).
    pub min_throughput_rps: Option<f64>,
    pub max_rss_mib: Option<f64>,
}

fn any_variant() -> String {
    "*".into()
}

impl Budget {
    /// The limits this budget sets, as (field name, limit).
    pub fn limits(&self) -> Vec<(&'static str, f64)> {
        [
            ("p50_ms", self.p50_ms),
            ("p90_ms", self.p90_ms),
            ("p99_ms", self.p99_ms),
            ("p999_ms", self.p999_ms),
            ("max_ms", self.max_ms),
            ("error_rate", self.error_rate),
            ("min_throughput_rps", self.min_throughput_rps),
            ("max_rss_mib", self.max_rss_mib),
        ]
        .into_iter()
        .filter_map(|(name, limit)| limit.map(|l| (name, l)))
        .collect()
    }

    /// Whether the budget applies to a variant of this name.
    pub fn matches_variant(&self, name: &str) -> bool {
        glob_match(&self.variant, name)
    }
}

/// A budget with where it was written.
#[derive(Debug, Clone, PartialEq)]
pub struct LocatedBudget {
    pub budget: Budget,
    /// 1-based line of its `[[budget]]` table.
    pub line: usize,
}

/// A parsed budgets file.
#[derive(Debug, Clone, PartialEq)]
pub struct Budgets {
    pub path: PathBuf,
    pub budgets: Vec<LocatedBudget>,
}

#[derive(Debug, thiserror::Error)]
pub enum BudgetsError {
    #[error("{}: cannot read the budgets file: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}:{line}:{column}: {message}", path.display())]
    Invalid {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BudgetsFile {
    #[serde(default)]
    budget: Vec<toml::Spanned<Budget>>,
}

/// 1-based line and column of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// Reads and checks a budgets file.
pub fn load(path: &Path) -> Result<Budgets, BudgetsError> {
    let text = std::fs::read_to_string(path).map_err(|source| BudgetsError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(path, &text)
}

/// Parses and checks budgets text; `path` is only used in messages.
pub fn parse(path: &Path, text: &str) -> Result<Budgets, BudgetsError> {
    let invalid = |offset: usize, message: String| {
        let (line, column) = line_column(text, offset);
        BudgetsError::Invalid {
            path: path.to_path_buf(),
            line,
            column,
            message,
        }
    };
    let file: BudgetsFile = toml::from_str(text).map_err(|e| {
        let offset = e.span().map_or(0, |s| s.start);
        invalid(offset, e.message().trim().to_string())
    })?;
    if file.budget.is_empty() {
        return Err(invalid(
            0,
            "no [[budget]] table: a budgets file needs at least one".into(),
        ));
    }
    // Line starts and `[[budget]]` header lines, indexed once: rescanning the text for each
    // budget was quadratic (20 000 budgets took minutes).
    let line_starts: Vec<usize> = std::iter::once(0)
        .chain(text.match_indices('\n').map(|(i, _)| i + 1))
        .collect();
    let header_lines: Vec<usize> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| l.trim_start().starts_with("[[budget]]"))
        .map(|(i, _)| i + 1)
        .collect();
    let mut budgets = Vec::with_capacity(file.budget.len());
    for spanned in file.budget {
        let offset = spanned.span().start;
        let budget = spanned.into_inner();
        let limits = budget.limits();
        if limits.is_empty() {
            return Err(invalid(
                offset,
                "this budget sets no limit (any of p50_ms p90_ms p99_ms p999_ms max_ms \
                 error_rate min_throughput_rps max_rss_mib)"
                    .into(),
            ));
        }
        for (name, limit) in &limits {
            if !limit.is_finite() || *limit < 0.0 {
                return Err(invalid(
                    offset,
                    format!("{name} = {limit}: a limit must be a number ≥ 0"),
                ));
            }
        }
        if let Some(rate) = budget.error_rate
            && rate > 1.0
        {
            return Err(invalid(
                offset,
                format!("error_rate = {rate}: a fraction of requests, between 0 and 1"),
            ));
        }
        if budget.request.is_some() && budget.max_rss_mib.is_some() {
            return Err(invalid(
                offset,
                "max_rss_mib is a whole variant's figure; it cannot be set with `request`".into(),
            ));
        }
        if budget.variant.is_empty() {
            return Err(invalid(offset, "variant = \"\" matches nothing".into()));
        }
        // The span starts at the table's first key; its header is the line above.
        let line = line_starts.partition_point(|start| *start <= offset);
        let header_line = header_lines[..header_lines.partition_point(|h| *h <= line)]
            .last()
            .copied()
            .unwrap_or(line);
        budgets.push(LocatedBudget {
            budget,
            line: header_line,
        });
    }
    Ok(Budgets {
        path: path.to_path_buf(),
        budgets,
    })
}

/// Glob match over a whole name: `*` any run of characters, `?` one character.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    // Iterative match with backtracking to the last `*`.
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_whole_names() {
        assert!(glob_match("*", "pool-10"));
        assert!(glob_match("pool-*", "pool-10"));
        assert!(glob_match("pool-?0", "pool-50"));
        assert!(!glob_match("pool-?", "pool-10"));
        assert!(!glob_match("node", "node-18"));
        assert!(glob_match("*-10", "pool-10"));
        assert!(glob_match("a*b*c", "axxbyyc"));
        assert!(!glob_match("a*b*c", "axxbyy"));
    }

    #[test]
    fn budgets_parse_with_their_header_line() {
        let text = "# limits\n\n[[budget]]\nvariant = \"pool-*\"\np99_ms = 8\n\n[[budget]]\nrequest = \"get_user\"\nerror_rate = 0.001\n";
        let b = parse(Path::new("b.toml"), text).expect("parses");
        assert_eq!(b.budgets.len(), 2);
        assert_eq!(b.budgets[0].line, 3);
        assert_eq!(b.budgets[1].line, 7);
        assert_eq!(b.budgets[1].budget.variant, "*");
        assert_eq!(b.budgets[0].budget.limits(), vec![("p99_ms", 8.0)]);
    }

    #[test]
    fn unknown_fields_name_file_line_and_column() {
        let text = "[[budget]]\nvariant = \"*\"\np99_msec = 8\n";
        let err = parse(Path::new("b.toml"), text).expect_err("unknown field");
        let msg = err.to_string();
        assert!(msg.starts_with("b.toml:3:"), "{msg}");
        assert!(msg.contains("p99_msec"), "{msg}");
    }

    #[test]
    fn a_budget_without_limits_is_an_error() {
        let err =
            parse(Path::new("b.toml"), "[[budget]]\nvariant = \"*\"\n").expect_err("no limit");
        assert!(err.to_string().contains("sets no limit"), "{err}");
    }
}
