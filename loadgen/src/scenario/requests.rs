//! `[[requests]]` and the request-shaped parts of flow steps: method, path/body/header
//! templates, weight, `expect_status`, `checks` and `extract`, each checked with its
//! file:line:col. Only shapes and templates here; nothing is sent.

use super::*;

/// The HTTP methods a request may use.
pub const METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];

pub(super) fn template_field(
    cx: &Cx,
    value: &Spanned<String>,
    field: &str,
    data: &DataSpec,
    names: &dyn crate::template::Names,
) -> Result<Template, ScenarioError> {
    // Point into the string when its source is a plain one-line literal, else at the value.
    let span = value.span();
    let source = cx.text.get(span.clone()).unwrap_or("");
    let inner_offset = |offset: usize| {
        let quoted_plain = (source.starts_with('"') && !source.contains('\\'))
            || (source.starts_with('\'') && !source.starts_with("'''"));
        if quoted_plain {
            span.start + 1 + offset
        } else {
            span.start
        }
    };
    let template = Template::compile_with(value.get_ref(), names).map_err(|e| {
        let at = inner_offset(e.offset);
        cx.err(&(at..at), field, &e.message)
    })?;
    if template.max_ids() > data.users {
        return Err(cx.err(
            &span,
            field,
            &format!(
                "{{{{ids:{}}}}} asks for more distinct ids than data.users = {}",
                template.max_ids(),
                data.users
            ),
        ));
    }
    Ok(template)
}

pub(super) fn parse_request(
    cx: &Cx,
    raw: &Spanned<RawRequest>,
    data: &DataSpec,
    scope: &Scope,
    section: &str,
    slots: &mut SlotAllocator,
) -> Result<RequestSpec, ScenarioError> {
    let r = raw.get_ref();
    let field = |name: &str| format!("{section}.{name}");
    check_name(cx, &r.name, &field("name"))?;
    let method = match &r.method {
        None => "GET".to_string(),
        Some(m) => {
            let upper = m.get_ref().trim().to_ascii_uppercase();
            if !METHODS.contains(&upper.as_str()) {
                return Err(cx.err(
                    &m.span(),
                    &field("method"),
                    &format!("`{}` is not one of {}", m.get_ref(), METHODS.join(", ")),
                ));
            }
            upper
        }
    };
    if !r.path.get_ref().starts_with('/') {
        return Err(cx.err(&r.path.span(), &field("path"), "must start with `/`"));
    }
    let path = template_field(cx, &r.path, &field("path"), data, scope)?;
    let body = match &r.body {
        None => None,
        Some(b) => Some(template_field(cx, b, &field("body"), data, scope)?),
    };
    let expect_status = match &r.expect_status {
        None => None,
        Some(s) => Some(status_code(cx, s, &field("expect_status"))?),
    };
    let weight = weight_field(cx, r.weight.as_ref(), &field("weight"))?;
    let mut step = crate::flow::StepSpec::default();
    for (name, value) in &r.headers {
        if value.get_ref().contains("{{") {
            let template =
                template_field(cx, value, &field(&format!("headers.{name}")), data, scope)?;
            step.headers.push((name.clone(), template));
        }
    }
    for check in &r.checks {
        step.checks
            .push(parse_check(cx, check, data, scope, &field("checks"))?);
    }
    if let Some(extract) = &r.extract {
        if slots.flow.is_none() {
            let span = extract.keys().next().map_or(raw.span(), Spanned::span);
            return Err(cx.err(
                &span,
                &field("extract"),
                "extract is for [[flows.steps]] and [[flows.setup]]: a top-level request has no later step to use it",
            ));
        }
        for (name, source) in extract {
            let variable = name.get_ref().trim();
            flows::check_variable_name(variable)
                .map_err(|m| cx.err(&name.span(), &field("extract"), &m))?;
            let source_field = field(&format!("extract.{variable}"));
            let s = source.get_ref();
            let given = [s.json.is_some(), s.header.is_some(), s.regex.is_some()];
            if given.iter().filter(|g| **g).count() != 1 {
                return Err(cx.err(
                    &source.span(),
                    &source_field,
                    "give exactly one of { json = \"/pointer\" }, { header = \"name\" }, { regex = \"…(group)…\" }",
                ));
            }
            let extract_source = if let Some(pointer) = &s.json {
                crate::flow::ExtractSource::Json(json_pointer(cx, pointer, &source_field)?)
            } else if let Some(header) = &s.header {
                crate::flow::ExtractSource::Header(
                    http::header::HeaderName::from_bytes(header.get_ref().trim().as_bytes())
                        .map_err(|_| cx.err(&header.span(), &source_field, "not a header name"))?,
                )
            } else if let Some(pattern) = &s.regex {
                let regex = regex::Regex::new(pattern.get_ref())
                    .map_err(|e| cx.err(&pattern.span(), &source_field, &e.to_string()))?;
                if regex.captures_len() < 2 {
                    return Err(cx.err(
                        &pattern.span(),
                        &source_field,
                        "the regex needs a capture group: the variable is its first group, e.g. \"count=(\\\\d+)\"",
                    ));
                }
                crate::flow::ExtractSource::Regex(regex)
            } else {
                return Err(cx.err(&source.span(), &source_field, "no source"));
            };
            step.extract.push(crate::flow::Extraction {
                slot: slots.slot(variable),
                source: extract_source,
                describe: source_text(cx, name, source),
            });
        }
    }
    Ok(RequestSpec {
        name: r.name.get_ref().trim().to_string(),
        method,
        path,
        body,
        path_source: r.path.get_ref().clone(),
        body_source: r.body.as_ref().map(|b| b.get_ref().clone()),
        expect_status,
        weight,
        headers: r
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.get_ref().clone()))
            .collect(),
        step,
    })
}

/// `variable = { … }` as written in the file (for failure messages: never a value).
pub(super) fn source_text(cx: &Cx, name: &Spanned<String>, value: &Spanned<RawExtract>) -> String {
    let text = cx.text.get(value.span()).unwrap_or("").trim();
    format!("{} = {text}", name.get_ref().trim())
}

/// A pick weight: 1..=1000000, default 1.
pub(super) fn weight_field(
    cx: &Cx,
    value: Option<&Spanned<i64>>,
    field: &str,
) -> Result<u32, ScenarioError> {
    match value {
        None => Ok(1),
        Some(w) => u32::try_from(*w.get_ref())
            .ok()
            .filter(|n| (1..=1_000_000).contains(n))
            .ok_or_else(|| cx.err(&w.span(), field, "must be 1..=1000000")),
    }
}

pub(super) fn status_code(cx: &Cx, s: &Spanned<i64>, field: &str) -> Result<u16, ScenarioError> {
    u16::try_from(*s.get_ref())
        .ok()
        .filter(|code| (100..=599).contains(code))
        .ok_or_else(|| cx.err(&s.span(), field, "must be an HTTP status 100..=599"))
}

/// A JSON pointer (RFC 6901): empty (the whole document) or `/`-separated tokens.
pub(super) fn json_pointer(
    cx: &Cx,
    pointer: &Spanned<String>,
    field: &str,
) -> Result<String, ScenarioError> {
    let text = pointer.get_ref().trim();
    if text.is_empty() || text.starts_with('/') {
        Ok(text.to_string())
    } else {
        Err(cx.err(
            &pointer.span(),
            field,
            &format!("`{text}` is not a JSON pointer: write e.g. \"/id\" or \"/items/0/name\""),
        ))
    }
}

pub(super) fn parse_check(
    cx: &Cx,
    raw: &Spanned<RawCheck>,
    data: &DataSpec,
    scope: &Scope,
    field: &str,
) -> Result<crate::flow::Check, ScenarioError> {
    use crate::flow::{CheckKind, JsonExpect};
    let c = raw.get_ref();
    let describe = cx.text.get(raw.span()).unwrap_or("").trim().to_string();
    let kinds = [
        c.status.is_some(),
        c.json.is_some(),
        c.body_contains.is_some(),
    ];
    if kinds.iter().filter(|k| **k).count() != 1 {
        return Err(cx.err(
            &raw.span(),
            field,
            "a check is one of { status = 200 }, { json = \"/ptr\", equals = … }, { json = \"/ptr\", exists = true }, { body_contains = \"…\" }",
        ));
    }
    if c.json.is_none() && (c.equals.is_some() || c.exists.is_some()) {
        return Err(cx.err(
            &raw.span(),
            field,
            "equals and exists go with json = \"/pointer\"",
        ));
    }
    let kind = if let Some(status) = &c.status {
        CheckKind::Status(status_code(cx, status, &format!("{field}.status"))?)
    } else if let Some(text) = &c.body_contains {
        CheckKind::BodyContains(template_field(
            cx,
            text,
            &format!("{field}.body_contains"),
            data,
            scope,
        )?)
    } else if let Some(pointer) = &c.json {
        let pointer = json_pointer(cx, pointer, &format!("{field}.json"))?;
        let expect = match (&c.equals, &c.exists) {
            (Some(_), Some(_)) | (None, None) => {
                return Err(cx.err(
                    &raw.span(),
                    field,
                    "a json check needs exactly one of equals = … or exists = true/false",
                ));
            }
            (None, Some(exists)) => JsonExpect::Exists(*exists.get_ref()),
            (Some(equals), None) => {
                let equals_field = format!("{field}.equals");
                // A number or boolean is compared as its JSON text.
                let text = match equals.get_ref() {
                    toml::Value::String(text) => text.clone(),
                    toml::Value::Integer(n) => n.to_string(),
                    toml::Value::Float(x) => x.to_string(),
                    toml::Value::Boolean(b) => b.to_string(),
                    _ => {
                        return Err(cx.err(
                            &equals.span(),
                            &equals_field,
                            "must be a string (a template), an integer, a float or a boolean",
                        ));
                    }
                };
                let text = template_field(
                    cx,
                    &Spanned::new(equals.span(), text),
                    &equals_field,
                    data,
                    scope,
                )?;
                JsonExpect::Equals(text)
            }
        };
        CheckKind::Json { pointer, expect }
    } else {
        return Err(cx.err(&raw.span(), field, "empty check"));
    };
    Ok(crate::flow::Check { kind, describe })
}
