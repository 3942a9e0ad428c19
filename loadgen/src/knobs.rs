//! The knobs a scenario may set (docs/KNOBS.md), their value rules, and how they reach a target:
//! knob `pool_max = 10` becomes the environment variable `API_POOL_MAX=10`.
//!
//! This module only validates and renders; it never decides defaults — a variant without a knob
//! runs the target's own default, and results record only what the scenario set.

use std::collections::BTreeMap;

/// The shape of a knob's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KnobKind {
    /// An integer at least this large.
    IntAtLeast(i64),
    /// `true` or `false`.
    Bool,
    /// One of these strings.
    OneOf(&'static [&'static str]),
}

/// Every knob of docs/KNOBS.md, in the order of that table.
pub const KNOBS: &[(&str, KnobKind)] = &[
    ("pool_max", KnobKind::IntAtLeast(1)),
    ("pool_min", KnobKind::IntAtLeast(0)),
    ("pool_acquire_timeout_ms", KnobKind::IntAtLeast(1)),
    ("test_before_acquire", KnobKind::Bool),
    ("query_timeout_ms", KnobKind::IntAtLeast(1)),
    ("gzip", KnobKind::Bool),
    ("cache_headers", KnobKind::Bool),
    ("cache_max_age_secs", KnobKind::IntAtLeast(0)),
    ("posts_strategy", KnobKind::OneOf(&["batch", "n_plus_one"])),
    ("log_format", KnobKind::OneOf(&["json", "pretty", "off"])),
    (
        "log_level",
        KnobKind::OneOf(&["error", "warn", "info", "debug", "trace"]),
    ),
    ("metrics", KnobKind::Bool),
    ("worker_threads", KnobKind::IntAtLeast(0)),
    ("statement_cache", KnobKind::IntAtLeast(0)),
    ("allocator", KnobKind::OneOf(&["system", "mimalloc"])),
    ("gzip_min_bytes", KnobKind::IntAtLeast(0)),
    ("json_buffer", KnobKind::OneOf(&["presized", "default"])),
    ("db_driver", KnobKind::OneOf(&["sqlx", "tokio-postgres"])),
    ("pipelined_connections", KnobKind::IntAtLeast(1)),
    // Node baseline only: cluster workers (0 = one per CPU the target may use), pool split.
    ("node_workers", KnobKind::IntAtLeast(0)),
    ("argon2_memory_kib", KnobKind::IntAtLeast(8)),
    ("argon2_iterations", KnobKind::IntAtLeast(1)),
    ("argon2_parallelism", KnobKind::IntAtLeast(1)),
];

/// A validated knob value, rendered as the target reads it from its environment.
pub type Knobs = BTreeMap<String, String>;

/// Checks one knob; returns its environment rendering or a message for the scenario error.
pub fn validate_knob(name: &str, value: &toml::Value) -> Result<String, String> {
    let Some((_, kind)) = KNOBS.iter().find(|(known, _)| *known == name) else {
        let known: Vec<&str> = KNOBS.iter().map(|(k, _)| *k).collect();
        return Err(format!(
            "unknown knob `{name}`; known knobs: {}",
            known.join(", ")
        ));
    };
    match (kind, value) {
        (KnobKind::IntAtLeast(min), toml::Value::Integer(v)) if v >= min => Ok(v.to_string()),
        (KnobKind::IntAtLeast(min), _) => Err(format!(
            "knob `{name}` must be an integer >= {min}, got {value}"
        )),
        (KnobKind::Bool, toml::Value::Boolean(v)) => Ok(v.to_string()),
        (KnobKind::Bool, _) => Err(format!("knob `{name}` must be true or false, got {value}")),
        (KnobKind::OneOf(allowed), toml::Value::String(v)) if allowed.contains(&v.as_str()) => {
            Ok(v.clone())
        }
        (KnobKind::OneOf(allowed), _) => Err(format!(
            "knob `{name}` must be one of {}, got {value}",
            allowed.join(" / ")
        )),
    }
}

/// The environment variable a knob is passed as: `pool_max` → `API_POOL_MAX`.
pub fn env_var_name(knob: &str) -> String {
    format!("API_{}", knob.to_ascii_uppercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knobs_render_as_env_and_reject_bad_values() {
        assert_eq!(env_var_name("pool_max"), "API_POOL_MAX");
        assert_eq!(
            validate_knob("pool_max", &toml::Value::Integer(10)),
            Ok("10".into())
        );
        assert!(validate_knob("pool_max", &toml::Value::Integer(0)).is_err());
        assert_eq!(
            validate_knob("gzip", &toml::Value::Boolean(false)),
            Ok("false".into())
        );
        assert!(validate_knob("posts_strategy", &toml::Value::String("n+1".into())).is_err());
        assert!(
            validate_knob("pool_size", &toml::Value::Integer(1))
                .unwrap_err()
                .contains("unknown knob")
        );
    }
}
