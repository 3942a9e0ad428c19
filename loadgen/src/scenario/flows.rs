//! `[[flows]]` and `[[data_files]]`: ordered steps that pass values to each other, and the rows
//! they feed on. Parsed into the flat request list (top-level `[[requests]]` first, then each
//! flow's setup and steps, named `flow/step`) plus the *units* the weighted pick chooses from:
//! unit `i` is top-level request `i`, then one unit per flow.
//!
//! Every name is resolved here, once: a `{{variable}}` becomes the user's slot index, an
//! `{{accounts.email}}` the file's and the column's index, an `{{env.NAME}}` its value (kept in
//! a [`crate::template::Secret`]). A name that is not known where it is written is an error
//! naming `file:line:column`, the field and the name. This module reads the data files a
//! scenario names, and nothing else: no network, no process.

use super::data::{DataOrder, DataTable, OnExhausted, read_table};
use super::{
    Cx, DataSpec, RawRequest, RequestSpec, ScenarioError, check_name, parse_request, weight_field,
};
use crate::flow::DataFeedSpec;
use crate::template::{Names, PLACEHOLDERS, is_reserved};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use toml::Spanned;

/// What the weighted pick chooses from, and what each user keeps between picks.
#[derive(Debug, Clone, Default)]
pub struct FlowSet {
    /// Top-level requests first (unit `i` is request `i`), then the flows in file order.
    pub units: Vec<UnitSpec>,
    /// `[[data_files]]` in file order (a template's file index points here).
    pub data_files: Vec<DataFeedSpec>,
    /// Variable slots per user (every flow's variables have their own).
    pub variable_slots: usize,
    /// How many units are flows (the last ones).
    pub flows: usize,
}

impl FlowSet {
    /// One plain unit per request (a scenario without flows or data files).
    pub fn for_requests(requests: &[RequestSpec]) -> FlowSet {
        FlowSet {
            units: requests
                .iter()
                .enumerate()
                .map(|(i, r)| UnitSpec::request(i, r))
                .collect(),
            ..FlowSet::default()
        }
    }
}

/// One thing the weighted pick can choose: a top-level request, or a whole flow.
#[derive(Debug, Clone)]
pub struct UnitSpec {
    pub name: String,
    pub weight: u32,
    /// `Some(f)`: the `f`-th flow (its setup runs once per user, tracked by `f`).
    pub flow: Option<usize>,
    /// Request indices run once per user before its first iteration of this flow.
    pub setup: Vec<usize>,
    /// Request indices run in order on every iteration.
    pub steps: Vec<usize>,
    /// The data files an iteration draws a row of (any of its templates reads them).
    pub data_files: Vec<usize>,
}

impl UnitSpec {
    fn request(index: usize, request: &RequestSpec) -> UnitSpec {
        UnitSpec {
            name: request.name.clone(),
            weight: request.weight,
            flow: None,
            setup: Vec::new(),
            steps: vec![index],
            data_files: Vec::new(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFlow {
    name: Spanned<String>,
    weight: Option<Spanned<i64>>,
    #[serde(default)]
    setup: Vec<Spanned<RawRequest>>,
    #[serde(default)]
    steps: Vec<Spanned<RawRequest>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDataFile {
    name: Spanned<String>,
    path: Spanned<String>,
    order: Option<Spanned<String>>,
    on_exhausted: Option<Spanned<String>>,
}

/// `extract = { id = { json = "/id" } }`: exactly one of the three.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawExtract {
    pub(super) json: Option<Spanned<String>>,
    pub(super) header: Option<Spanned<String>>,
    pub(super) regex: Option<Spanned<String>>,
}

/// `checks = [{ status = 200 }, { json = "/id", exists = true }, { json = "/email", equals =
/// "…" }, { body_contains = "…" }]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCheck {
    pub(super) status: Option<Spanned<i64>>,
    pub(super) json: Option<Spanned<String>>,
    pub(super) equals: Option<Spanned<toml::Value>>,
    pub(super) exists: Option<Spanned<bool>>,
    pub(super) body_contains: Option<Spanned<String>>,
}

/// Where a template is written: the variables it may use and the data files.
pub(super) struct Scope<'a> {
    /// `None`: a top-level request (no variables).
    pub(super) flow: Option<&'a str>,
    /// The variables extracted before this point: name → slot.
    pub(super) visible: &'a BTreeMap<String, usize>,
    pub(super) data: &'a [DataFeedSpec],
}

impl Scope<'_> {
    /// A top-level request's scope: data files, no variables.
    pub(super) fn top_level<'a>(
        data: &'a [DataFeedSpec],
        none: &'a BTreeMap<String, usize>,
    ) -> Scope<'a> {
        Scope {
            flow: None,
            visible: none,
            data,
        }
    }
}

impl Names for Scope<'_> {
    fn variable(&self, name: &str) -> Result<usize, String> {
        if let Some(slot) = self.visible.get(name) {
            return Ok(*slot);
        }
        let builtins = PLACEHOLDERS
            .iter()
            .map(|p| format!("{{{{{p}}}}}"))
            .collect::<Vec<_>>()
            .join(", ");
        Err(match self.flow {
            None => format!(
                "unknown template `{{{{{name}}}}}`: not a built-in ({builtins}), and variables \
                 exist only in [[flows]] steps"
            ),
            Some(flow) => {
                let known: Vec<&str> = self.visible.keys().map(String::as_str).collect();
                format!(
                    "unknown variable `{{{{{name}}}}}`: no setup step or earlier step of flow \
                     `{flow}` extracts it (variables here: {}; built-ins: {builtins})",
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                )
            }
        })
    }

    fn data_column(
        &self,
        file: &str,
        column: &str,
    ) -> Result<(usize, Arc<DataTable>, usize), String> {
        let Some((index, spec)) = self
            .data
            .iter()
            .enumerate()
            .find(|(_, d)| d.table.name == file)
        else {
            let known: Vec<&str> = self.data.iter().map(|d| d.table.name.as_str()).collect();
            return Err(format!(
                "unknown data file `{file}` in `{{{{{file}.{column}}}}}` ([[data_files]]: {})",
                if known.is_empty() {
                    "none declared".to_string()
                } else {
                    known.join(", ")
                }
            ));
        };
        match spec.table.column(column) {
            Some(c) => Ok((index, Arc::clone(&spec.table), c)),
            None => Err(format!(
                "data file `{file}` has no column `{column}`; its columns: {}",
                spec.table.columns.join(", ")
            )),
        }
    }
}

/// The files `[[data_files]]` name, as [`parse_data_files`] reads them (for the scenario's hash).
/// Each as written and as joined to the scenario's directory.
pub(super) fn data_file_paths(
    raw: &[Spanned<RawDataFile>],
    scenario_path: &Path,
) -> Vec<(String, std::path::PathBuf)> {
    let base = scenario_path.parent().unwrap_or(Path::new(""));
    raw.iter()
        .map(|f| {
            let written = f.get_ref().path.get_ref().trim();
            (written.to_string(), base.join(written))
        })
        .collect()
}

/// `[[data_files]]`: each read now, relative to the scenario file's directory.
pub(super) fn parse_data_files(
    cx: &Cx,
    raw: &[Spanned<RawDataFile>],
    scenario_path: &Path,
) -> Result<Vec<DataFeedSpec>, ScenarioError> {
    let base = scenario_path.parent().unwrap_or(Path::new(""));
    let mut files: Vec<DataFeedSpec> = Vec::new();
    for raw_file in raw {
        let f = raw_file.get_ref();
        let name = f.name.get_ref().trim();
        let valid = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            && name != "env";
        if !valid {
            return Err(cx.err(
                &f.name.span(),
                "data_files.name",
                &format!("`{name}` must be 1 or more of A-Z a-z 0-9 _ - (not `env`): templates write {{{{{name}.column}}}}"),
            ));
        }
        if files.iter().any(|d| d.table.name == name) {
            return Err(cx.err(
                &f.name.span(),
                "data_files.name",
                &format!("duplicate data file name `{name}`"),
            ));
        }
        let order = match f.order.as_ref().map(|o| (o, o.get_ref().trim())) {
            None => DataOrder::Sequential,
            Some((_, "sequential")) => DataOrder::Sequential,
            Some((_, "random")) => DataOrder::Random,
            Some((_, "unique")) => DataOrder::Unique,
            Some((o, other)) => {
                return Err(cx.err(
                    &o.span(),
                    "data_files.order",
                    &format!(
                        "`{other}` is not an order; use \"sequential\", \"random\" or \"unique\""
                    ),
                ));
            }
        };
        let on_exhausted = match f.on_exhausted.as_ref().map(|o| (o, o.get_ref().trim())) {
            None => OnExhausted::Stop,
            Some((o, _)) if order != DataOrder::Unique => {
                return Err(cx.err(
                    &o.span(),
                    "data_files.on_exhausted",
                    "only for order = \"unique\" (sequential always wraps; random never runs out)",
                ));
            }
            Some((_, "stop")) => OnExhausted::Stop,
            Some((_, "wrap")) => OnExhausted::Wrap,
            Some((o, other)) => {
                return Err(cx.err(
                    &o.span(),
                    "data_files.on_exhausted",
                    &format!("`{other}` is not one of \"stop\", \"wrap\""),
                ));
            }
        };
        let relative = f.path.get_ref().trim();
        let path = base.join(relative);
        let table = read_table(name, &path).map_err(|e| {
            let place = if e.line > 0 {
                format!("{}:{}", path.display(), e.line)
            } else {
                path.display().to_string()
            };
            cx.err(
                &f.path.span(),
                "data_files.path",
                &format!("data file `{name}` ({place}): {}", e.message),
            )
        })?;
        files.push(DataFeedSpec {
            table: Arc::new(table),
            order,
            on_exhausted,
        });
    }
    Ok(files)
}

/// The flat request list and the units: top-level requests, then each flow's setup and steps.
pub(super) fn parse_work(
    cx: &Cx,
    raw_requests: &[Spanned<RawRequest>],
    raw_flows: &[Spanned<RawFlow>],
    data_files: Vec<DataFeedSpec>,
    data: &DataSpec,
) -> Result<(Vec<RequestSpec>, FlowSet), ScenarioError> {
    if raw_requests.is_empty() && raw_flows.is_empty() {
        return Err(cx.err(
            &(0..0),
            "requests",
            "at least one [[requests]] or [[flows]] is required",
        ));
    }
    let mut requests: Vec<RequestSpec> = Vec::new();
    let mut units = Vec::new();
    let mut request_names = BTreeSet::new();
    let no_variables = BTreeMap::new();
    for raw_request in raw_requests {
        let scope = Scope::top_level(&data_files, &no_variables);
        let mut never_used = 0;
        let mut slots = SlotAllocator {
            next: &mut never_used,
            flow: None,
            own: BTreeMap::new(),
        };
        let request = parse_request(cx, raw_request, data, &scope, "requests", &mut slots)?;
        if !request_names.insert(request.name.clone()) {
            return Err(cx.err(
                &raw_request.get_ref().name.span(),
                "requests.name",
                &format!("duplicate request name `{}`", request.name),
            ));
        }
        let mut unit = UnitSpec::request(requests.len(), &request);
        unit.data_files = data_files_of(&request);
        units.push(unit);
        requests.push(request);
    }

    let mut variable_slots = 0;
    let mut flow_names = BTreeSet::new();
    for (flow_index, raw_flow) in raw_flows.iter().enumerate() {
        let f = raw_flow.get_ref();
        check_name(cx, &f.name, "flows.name")?;
        let flow_name = f.name.get_ref().trim().to_string();
        if !flow_names.insert(flow_name.clone()) || request_names.contains(&flow_name) {
            return Err(cx.err(
                &f.name.span(),
                "flows.name",
                &format!("duplicate name `{flow_name}` (flows and requests share one namespace)"),
            ));
        }
        if f.steps.is_empty() {
            return Err(cx.err(
                &raw_flow.span(),
                "flows.steps",
                &format!("flow `{flow_name}` needs at least one [[flows.steps]]"),
            ));
        }
        let weight = weight_field(cx, f.weight.as_ref(), "flows.weight")?;
        let mut visible: BTreeMap<String, usize> = BTreeMap::new();
        let mut slots = SlotAllocator {
            next: &mut variable_slots,
            flow: Some(flow_index),
            own: BTreeMap::new(),
        };
        let mut step_names = BTreeSet::new();
        let mut unit = UnitSpec {
            name: flow_name.clone(),
            weight,
            flow: Some(flow_index),
            setup: Vec::new(),
            steps: Vec::new(),
            data_files: Vec::new(),
        };
        for (field, list) in [("flows.setup", &f.setup), ("flows.steps", &f.steps)] {
            for raw_step in list {
                if let Some(w) = &raw_step.get_ref().weight {
                    return Err(cx.err(
                        &w.span(),
                        &format!("{field}.weight"),
                        "a step has no weight: the flow's `weight` picks the whole flow",
                    ));
                }
                let scope = Scope {
                    flow: Some(&flow_name),
                    visible: &visible,
                    data: &data_files,
                };
                let mut request = parse_request(cx, raw_step, data, &scope, field, &mut slots)?;
                if !step_names.insert(request.name.clone()) {
                    return Err(cx.err(
                        &raw_step.get_ref().name.span(),
                        &format!("{field}.name"),
                        &format!(
                            "duplicate step name `{}` in flow `{flow_name}` (setup and steps share one namespace)",
                            request.name
                        ),
                    ));
                }
                // What this step extracts is visible from the next step on.
                for (name, slot) in &slots.own {
                    visible.insert(name.clone(), *slot);
                }
                request.name = format!("{flow_name}/{}", request.name);
                for file in data_files_of(&request) {
                    if !unit.data_files.contains(&file) {
                        unit.data_files.push(file);
                    }
                }
                let index = requests.len();
                if field == "flows.setup" {
                    unit.setup.push(index);
                } else {
                    unit.steps.push(index);
                }
                requests.push(request);
            }
        }
        units.push(unit);
    }
    Ok((
        requests,
        FlowSet {
            units,
            data_files,
            variable_slots,
            flows: raw_flows.len(),
        },
    ))
}

/// The data files any template of `request` reads.
fn data_files_of(request: &RequestSpec) -> Vec<usize> {
    let mut files: Vec<usize> = request.path.data_files().collect();
    if let Some(body) = &request.body {
        files.extend(body.data_files());
    }
    for (_, header) in &request.step.headers {
        files.extend(header.data_files());
    }
    for check in &request.step.checks {
        match &check.kind {
            crate::flow::CheckKind::BodyContains(t)
            | crate::flow::CheckKind::Json {
                expect: crate::flow::JsonExpect::Equals(t),
                ..
            } => files.extend(t.data_files()),
            _ => {}
        }
    }
    files.sort_unstable();
    files.dedup();
    files
}

/// Hands out variable slots: one per (flow, name), so two flows' `token`s never overwrite each
/// other (a setup variable lives as long as the user).
pub(super) struct SlotAllocator<'a> {
    next: &'a mut usize,
    /// `None`: a top-level request, which may not extract.
    pub(super) flow: Option<usize>,
    /// This flow's variables so far.
    pub(super) own: BTreeMap<String, usize>,
}

impl SlotAllocator<'_> {
    /// The slot of `name` in this flow, allocating one the first time.
    pub(super) fn slot(&mut self, name: &str) -> usize {
        if let Some(slot) = self.own.get(name) {
            return *slot;
        }
        let slot = *self.next;
        *self.next += 1;
        self.own.insert(name.to_string(), slot);
        slot
    }
}

/// Whether `name` can be a variable: an identifier that is no built-in placeholder.
pub(super) fn check_variable_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let identifier = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !identifier {
        return Err(format!(
            "`{name}` is not a variable name: a letter or `_`, then letters, digits or `_`"
        ));
    }
    if is_reserved(name) {
        return Err(format!(
            "`{name}` is a built-in placeholder's name; pick another variable name"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::scenario::{Scenario, ScenarioError, parse};
    use std::path::Path;

    const HEAD: &str = r#"name = "f"
[load]
rate_per_sec = 10
duration = "1s"
[target]
kind = "url"
url = "http://127.0.0.1:9"
"#;

    fn parse_in(dir: &Path, body: &str) -> Result<Scenario, ScenarioError> {
        let path = dir.join("scen.toml");
        let text = format!("{HEAD}{body}");
        std::fs::write(&path, &text).expect("write scenario");
        parse(&text, &path)
    }

    fn error_in(dir: &Path, body: &str) -> (usize, String, String) {
        match parse_in(dir, body) {
            Err(ScenarioError::Invalid {
                line,
                field,
                message,
                ..
            }) => (line, field, message),
            Err(other) => panic!("unexpected error {other}"),
            Ok(_) => panic!("parsed:\n{body}"),
        }
    }

    /// The scenario line `needle` is on (the body follows HEAD).
    fn line_of(body: &str, needle: &str) -> usize {
        let at = body.find(needle).expect("needle in body");
        HEAD.lines().count() + body[..at].matches('\n').count() + 1
    }

    fn accounts(dir: &Path) {
        std::fs::write(
            dir.join("accounts.csv"),
            "email,name\na@x.test,Ann\nb@x.test,Bob\n",
        )
        .expect("write csv");
    }

    const FLOW: &str = r#"
[[requests]]
name = "root"
path = "/"
weight = 3

[[data_files]]
name = "accounts"
path = "accounts.csv"
order = "unique"
on_exhausted = "wrap"

[[flows]]
name = "signup"
weight = 2

[[flows.setup]]
name = "login"
method = "POST"
path = "/login"
extract = { token = { header = "x-token" } }

[[flows.steps]]
name = "create"
method = "POST"
path = "/users"
body = '{"email": "{{accounts.email}}"}'
headers = { authorization = "Bearer {{token}}", x-plain = "yes" }
extract = { id = { json = "/id" }, n = { regex = "count=(\\d+)" } }
checks = [{ status = 201 }]

[[flows.steps]]
name = "read"
path = "/users/{{id}}?n={{n}}"
checks = [{ json = "/email", equals = "{{accounts.email}}" }, { json = "/id", exists = true }, { body_contains = "{{accounts.name}}" }]
"#;

    #[test]
    fn flows_flatten_into_requests_and_units_after_the_top_level_ones() {
        let dir = tempfile::tempdir().expect("tempdir");
        accounts(dir.path());
        let s = parse_in(dir.path(), FLOW).expect("parses");
        let names: Vec<&str> = s.requests.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            ["root", "signup/login", "signup/create", "signup/read"]
        );
        let units: Vec<(&str, u32, &[usize], &[usize])> = s
            .flows
            .units
            .iter()
            .map(|u| (u.name.as_str(), u.weight, &u.setup[..], &u.steps[..]))
            .collect();
        assert_eq!(
            units,
            [
                ("root", 3, &[][..], &[0][..]),
                ("signup", 2, &[1][..], &[2, 3][..])
            ]
        );
        assert_eq!(s.flows.units[1].data_files, [0]);
        assert!(s.flows.units[0].data_files.is_empty());
        assert_eq!(s.flows.variable_slots, 3, "token, id, n");
        let create = &s.requests[2];
        assert_eq!(
            create.step.headers.len(),
            1,
            "only the templated header is compiled"
        );
        assert_eq!(create.step.extract.len(), 2);
        assert!(create.step.captures() && create.step.captures_body());
        let login = &s.requests[1];
        assert!(login.step.captures() && !login.step.captures_body());
        assert!(s.requests[0].step.is_plain());
        assert_eq!(s.requests[3].step.checks.len(), 3);
    }

    #[test]
    fn a_variable_not_extracted_before_is_an_error_naming_it_and_its_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        accounts(dir.path());
        // `read` uses {{id}} before `create` extracts it.
        let swapped = FLOW.replace("/users/{{id}}?n={{n}}", "/users/{{idd}}");
        let (line, field, message) = error_in(dir.path(), &swapped);
        assert_eq!(line, line_of(&swapped, "/users/{{idd}}"), "{message}");
        assert_eq!(field, "flows.steps.path");
        assert!(message.contains("unknown variable `{{idd}}`"), "{message}");
        assert!(message.contains("flow `signup`"), "{message}");
        assert!(
            message.contains("variables here: id, n, token"),
            "{message}"
        );

        // A setup step cannot see the steps' variables.
        let early = FLOW.replace("path = \"/login\"", "path = \"/login/{{id}}\"");
        let (_, field, message) = error_in(dir.path(), &early);
        assert_eq!(field, "flows.setup.path");
        assert!(message.contains("unknown variable `{{id}}`"), "{message}");

        // Top-level requests have no variables and may not extract.
        let (_, _, message) = error_in(
            dir.path(),
            "[[requests]]\nname = \"r\"\npath = \"/{{token}}\"\n",
        );
        assert!(
            message.contains("variables exist only in [[flows]]"),
            "{message}"
        );
        let (_, field, _) = error_in(
            dir.path(),
            "[[requests]]\nname = \"r\"\npath = \"/\"\nextract = { a = { json = \"/a\" } }\n",
        );
        assert_eq!(field, "requests.extract");
    }

    #[test]
    fn unknown_data_files_and_columns_and_bad_data_are_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        accounts(dir.path());
        let mail = FLOW.replace("{{accounts.email}}\"}'", "{{accounts.mail}}\"}'");
        let (line, field, message) = error_in(dir.path(), &mail);
        assert_eq!(line, line_of(&mail, "{{accounts.mail}}"));
        assert_eq!(field, "flows.steps.body");
        assert!(
            message.contains("data file `accounts` has no column `mail`; its columns: email, name"),
            "{message}"
        );
        let (_, _, message) = error_in(
            dir.path(),
            &FLOW.replace("{{accounts.name}}", "{{people.name}}"),
        );
        assert!(message.contains("unknown data file `people`"), "{message}");

        std::fs::write(dir.path().join("accounts.csv"), "email,name\na@x.test\n").expect("csv");
        let (_, field, message) = error_in(dir.path(), FLOW);
        assert_eq!(field, "data_files.path");
        assert!(
            message.contains("accounts.csv:2): has 1 fields"),
            "{message}"
        );
        let (_, field, _) = error_in(dir.path(), &FLOW.replace("accounts.csv", "missing.csv"));
        assert_eq!(field, "data_files.path");
        let (_, field, _) = error_in(
            dir.path(),
            &FLOW.replace("order = \"unique\"", "order = \"sequential\""),
        );
        assert_eq!(field, "data_files.on_exhausted");
    }

    #[test]
    fn a_missing_env_variable_is_an_error_and_a_set_one_never_prints() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = "[[requests]]\nname = \"r\"\npath = \"/\"\nheaders = { x-key = \"{{env.APIBENCH_TEST_SURELY_UNSET_VARIABLE}}\" }\n";
        let (line, field, message) = error_in(dir.path(), missing);
        assert_eq!(line, line_of(missing, "{{env."));
        assert_eq!(field, "requests.headers.x-key");
        assert!(
            message
                .contains("environment variable `APIBENCH_TEST_SURELY_UNSET_VARIABLE` is not set"),
            "{message}"
        );
        // PATH is set wherever tests run: its value renders, but never shows in a Debug print.
        let path_value = std::env::var("PATH").expect("PATH is set");
        let s = parse_in(
            dir.path(),
            "[[requests]]\nname = \"r\"\npath = \"/\"\nheaders = { x-key = \"{{env.PATH}}\" }\n",
        )
        .expect("parses");
        let header = &s.requests[0].step.headers[0].1;
        assert!(header.is_constant() && header.has_secret());
        assert!(!format!("{s:?}").contains(&path_value));
        assert_eq!(
            s.requests[0].headers["x-key"], "{{env.PATH}}",
            "the text is kept, not the value"
        );
    }

    #[test]
    fn step_shapes_are_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let flow = |step: &str| {
            format!(
                "[[flows]]\nname = \"f\"\n[[flows.steps]]\nname = \"s\"\npath = \"/\"\n{step}\n"
            )
        };
        for (step, field, needle) in [
            ("weight = 2", "flows.steps.weight", "the flow's `weight`"),
            (
                "extract = { a = { json = \"id\" } }",
                "flows.steps.extract.a",
                "not a JSON pointer",
            ),
            (
                "extract = { a = { json = \"/id\", header = \"x\" } }",
                "flows.steps.extract.a",
                "exactly one",
            ),
            (
                "extract = { a = { regex = \"\\\\d+\" } }",
                "flows.steps.extract.a",
                "capture group",
            ),
            (
                "extract = { user_id = { json = \"/id\" } }",
                "flows.steps.extract",
                "built-in",
            ),
            (
                "checks = [{ json = \"/id\" }]",
                "flows.steps.checks",
                "exactly one of equals",
            ),
            (
                "checks = [{ status = 200, body_contains = \"x\" }]",
                "flows.steps.checks",
                "a check is one of",
            ),
            (
                "checks = [{ status = 99 }]",
                "flows.steps.checks.status",
                "100..=599",
            ),
        ] {
            let (_, f, message) = error_in(dir.path(), &flow(step));
            assert_eq!(f, field, "{step}: {message}");
            assert!(message.contains(needle), "{step}: {message}");
        }
        let (_, field, _) = error_in(dir.path(), "[[flows]]\nname = \"f\"\n");
        assert_eq!(field, "flows.steps");
        let (_, field, _) = error_in(dir.path(), "");
        assert_eq!(field, "requests");
    }
}
