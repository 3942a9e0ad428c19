//! HAR 1.2 (what browsers' developer tools and proxies export) → a [`Recording`]: of each
//! `log.entries[]`, `startedDateTime` and `request { method, url, headers, postData }`. Only the
//! most frequent origin is kept (a page's HAR also holds its CDN and analytics calls); entries for
//! others, and entries that do not parse, are skipped with their index and the reason.
//!
//! It must never copy a secret ([`super::sort_header`], [`super::redact_query`]) and never fail
//! on one bad entry: only a file that is not JSON, or has no `log.entries`, is an error (with its
//! line and column).

use super::{ImportError, RecordedRequest, Recording, Skipped};
use chrono::DateTime;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

#[derive(Deserialize)]
struct HarFile {
    log: HarLog,
}

#[derive(Deserialize)]
struct HarLog {
    /// Each entry is read on its own, so one bad entry is skipped rather than failing the file.
    entries: Vec<serde_json::Value>,
}

/// One `log.entries[]` (the fields apibench uses; the rest are ignored).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct HarEntry {
    started_date_time: String,
    request: HarRequest,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct HarRequest {
    method: String,
    url: String,
    #[serde(default)]
    headers: Vec<HarHeader>,
    post_data: Option<HarPostData>,
}

#[derive(Deserialize)]
struct HarHeader {
    name: String,
    value: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct HarPostData {
    #[serde(default)]
    mime_type: String,
    text: Option<String>,
    #[serde(default)]
    params: Vec<HarParam>,
}

#[derive(Deserialize)]
struct HarParam {
    name: String,
    #[serde(default)]
    value: String,
}

/// An entry read, before the origin filter.
struct Parsed {
    at: String,
    origin: String,
    request: RecordedRequest,
}

/// Reads a HAR file's text; `path` names it in errors.
pub fn parse(text: &str, path: &Path) -> Result<Recording, ImportError> {
    let file: HarFile = serde_json::from_str(text).map_err(|e| ImportError::Malformed {
        path: path.to_path_buf(),
        line: e.line(),
        column: e.column(),
        message: format!("not a HAR file (JSON with log.entries): {e}"),
    })?;
    let mut recording = Recording {
        records_bodies: true,
        ..Recording::default()
    };
    let mut parsed = Vec::new();
    for (index, value) in file.log.entries.into_iter().enumerate() {
        let at = format!("log.entries[{index}]");
        match entry(&mut recording, value) {
            Ok(request) => parsed.push(Parsed {
                at,
                origin: request.0,
                request: request.1,
            }),
            Err(reason) => recording.skipped.push(Skipped { at, reason }),
        }
    }
    // The origin most entries went to (ties: the first seen).
    let mut counts: HashMap<&str, (usize, usize)> = HashMap::new();
    for (i, p) in parsed.iter().enumerate() {
        counts.entry(p.origin.as_str()).or_insert((0, i)).0 += 1;
    }
    let main = counts
        .iter()
        .max_by_key(|(_, (count, first))| (*count, std::cmp::Reverse(*first)))
        .map(|(origin, _)| origin.to_string());
    for p in parsed {
        if main.as_deref() == Some(p.origin.as_str()) {
            recording.requests.push(p.request);
        } else {
            recording.skipped.push(Skipped {
                at: p.at,
                reason: format!(
                    "another host ({}) than the recording's main one ({})",
                    p.origin,
                    main.as_deref().unwrap_or("-")
                ),
            });
        }
    }
    recording.origin = main;
    Ok(recording)
}

/// One entry → its origin and request, or why not.
fn entry(
    recording: &mut Recording,
    value: serde_json::Value,
) -> Result<(String, RecordedRequest), String> {
    let entry: HarEntry =
        serde_json::from_value(value).map_err(|e| format!("not a HAR entry: {e}"))?;
    let at = DateTime::parse_from_rfc3339(entry.started_date_time.trim())
        .or_else(|_| {
            DateTime::parse_from_str(entry.started_date_time.trim(), "%Y-%m-%dT%H:%M:%S%.f%z")
        })
        .map_err(|e| {
            format!(
                "startedDateTime `{}` is not an ISO 8601 time: {e}",
                entry.started_date_time
            )
        })?;
    let request = entry.request;
    let url = reqwest::Url::parse(request.url.trim())
        .map_err(|e| format!("url `{}`: {e}", request.url))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(format!("url `{}` is not an http(s) URL", request.url));
    }
    let origin = url.origin().ascii_serialization();
    let method = request.method.trim().to_ascii_uppercase();
    let mut path = url.path().to_string();
    if let Some(query) = url.query() {
        path.push('?');
        path.push_str(query);
    }
    let body = request
        .post_data
        .as_ref()
        .and_then(|data| match &data.text {
            Some(text) => Some(text.clone()),
            None if !data.params.is_empty() => Some(
                data.params
                    .iter()
                    .map(|p| format!("{}={}", p.name, p.value))
                    .collect::<Vec<_>>()
                    .join("&"),
            ),
            None => None,
        });
    if let Some(why) = super::unusable(&method, &path, body.as_deref()) {
        return Err(why);
    }
    let path = super::redact_query(recording, &path);
    let mut headers = BTreeMap::new();
    for header in &request.headers {
        super::sort_header(recording, &mut headers, &header.name, &header.value);
    }
    if let Some(data) = &request.post_data
        && body.is_some()
        && !data.mime_type.trim().is_empty()
        && !data.mime_type.contains("{{")
    {
        headers
            .entry("content-type".to_string())
            .or_insert_with(|| data.mime_type.trim().to_string());
    }
    Ok((
        origin,
        RecordedRequest {
            at_us: at.timestamp_micros(),
            method,
            path,
            body,
            headers,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn har(entries: &str) -> String {
        format!(r#"{{"log": {{"version": "1.2", "entries": [{entries}]}}}}"#)
    }

    #[test]
    fn entries_become_requests_with_kept_headers_only() {
        let text = har(r#"{"startedDateTime": "2026-10-10T13:55:36.100+02:00",
                "request": {"method": "post", "url": "https://shop.example.com/api/orders?session_id=s3cr3t&x=1",
                  "headers": [{"name": "Cookie", "value": "sid=abc"}, {"name": "Content-Type", "value": "application/json"},
                              {"name": "User-Agent", "value": "Firefox"}, {"name": ":authority", "value": "shop.example.com"}],
                  "postData": {"mimeType": "application/json", "text": "{\"qty\":2}"}}}"#);
        let recording = parse(&text, Path::new("t.har")).expect("parses");
        assert_eq!(
            recording.origin.as_deref(),
            Some("https://shop.example.com")
        );
        let [request] = recording.requests.as_slice() else {
            panic!("one request: {recording:?}");
        };
        assert_eq!(request.method, "POST");
        assert_eq!(request.path, "/api/orders?session_id=REDACTED&x=1");
        assert_eq!(request.body.as_deref(), Some("{\"qty\":2}"));
        assert_eq!(
            request.headers,
            BTreeMap::from([("content-type".to_string(), "application/json".to_string())])
        );
        // 13:55:36.100 at +02:00 is 11:55:36.100 UTC.
        assert_eq!(
            request.at_us % 86_400_000_000,
            (11 * 3600 + 55 * 60 + 36) * 1_000_000 + 100_000
        );
        assert!(recording.secret_headers.contains("cookie"));
        assert!(recording.dropped_headers.contains("user-agent"));
        assert!(!recording.dropped_headers.contains(":authority"));
    }

    #[test]
    fn bad_entries_and_other_hosts_are_skipped_with_their_index() {
        let text = har(
            r#"{"startedDateTime": "2026-10-10T13:55:36Z", "request": {"method": "GET", "url": "http://a.test/1"}},
               {"startedDateTime": "yesterday", "request": {"method": "GET", "url": "http://a.test/2"}},
               {"startedDateTime": "2026-10-10T13:55:37Z", "request": {"method": "GET", "url": "http://cdn.test/x.js"}},
               {"startedDateTime": "2026-10-10T13:55:38Z"},
               {"startedDateTime": "2026-10-10T13:55:39Z", "request": {"method": "GET", "url": "http://a.test/3"}}"#,
        );
        let recording = parse(&text, Path::new("t.har")).expect("parses");
        assert_eq!(recording.requests.len(), 2);
        let at: Vec<&str> = recording.skipped.iter().map(|s| s.at.as_str()).collect();
        assert_eq!(at, ["log.entries[1]", "log.entries[3]", "log.entries[2]"]);
        assert!(recording.skipped[2].reason.contains("http://cdn.test"));
    }

    #[test]
    fn a_file_that_is_not_a_har_names_its_line_and_column() {
        let err = parse("{\n  \"log\": 3\n}", Path::new("t.har")).expect_err("not a HAR");
        assert!(err.to_string().starts_with("t.har:2:"), "{err}");
        let err = parse("{\n oops", Path::new("t.har")).expect_err("not JSON");
        assert!(err.to_string().starts_with("t.har:2:"), "{err}");
    }
}
