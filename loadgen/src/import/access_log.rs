//! Access logs in the common or combined format (nginx's and Apache's defaults) → a
//! [`Recording`]:
//!
//! ```text
//! 127.0.0.1 - frank [10/Oct/2026:13:55:36 +0000] "GET /api/users/1 HTTP/1.1" 200 2326
//! 127.0.0.1 - - [10/Oct/2026:13:55:36 +0000] "GET /api/users/1 HTTP/1.1" 200 2326 "-" "curl/8"
//! ```
//!
//! Fields after the byte count (referer, user agent, anything a custom format appends) are
//! ignored. Logs record whole seconds: the requests logged within one second are spread evenly
//! across it, in log order, so a replay does not send them as one burst.
//!
//! It never fails and never panics on a line: a line that does not parse (or whose request cannot
//! be sent again) is skipped with its line number and the reason. It never copies the user
//! field or anything else that identifies a client.

use super::{RecordedRequest, Recording, Skipped};
use chrono::DateTime;
use std::collections::BTreeMap;

/// Reads an access log's text.
pub fn parse(text: &str) -> Recording {
    let mut recording = Recording::default();
    let mut requests = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match parse_line(line) {
            Ok(request) => requests.push(request),
            Err(reason) => recording.skipped.push(Skipped {
                at: format!("line {}", index + 1),
                reason,
            }),
        }
    }
    // Logs are written as requests finish: put them in time order (stable: a second's requests
    // keep the log's order), then spread each second's requests across it.
    requests.sort_by_key(|r: &RecordedRequest| r.at_us);
    let mut start = 0;
    while start < requests.len() {
        let second = requests[start].at_us;
        let end = requests[start..]
            .iter()
            .position(|r| r.at_us != second)
            .map_or(requests.len(), |n| start + n);
        let count = (end - start) as i64;
        for (i, request) in requests[start..end].iter_mut().enumerate() {
            request.at_us = second + i as i64 * 1_000_000 / count;
        }
        start = end;
    }
    recording.requests = requests;
    recording
}

/// One line → its request (at the start of its second), or why not.
fn parse_line(line: &str) -> Result<RecordedRequest, String> {
    let not_a_line = || {
        let shown: String = line.chars().take(60).collect();
        format!(
            "`{shown}{}` is not a common or combined log line (host ident user [time] \"request\" \
             status bytes)",
            if line.chars().count() > 60 { "…" } else { "" }
        )
    };
    // host ident user: the user may hold spaces, so the time's `[` ends them.
    let open = line.find(" [").ok_or_else(not_a_line)?;
    if line[..open].split_whitespace().count() < 3 {
        return Err(not_a_line());
    }
    let rest = &line[open + 2..];
    let close = rest.find(']').ok_or_else(not_a_line)?;
    let time_text = &rest[..close];
    let time = DateTime::parse_from_str(time_text, "%d/%b/%Y:%H:%M:%S %z").map_err(|e| {
        format!("`[{time_text}]` is not a log time like [10/Oct/2026:13:55:36 +0000]: {e}")
    })?;
    let rest = rest[close + 1..]
        .strip_prefix(" \"")
        .ok_or_else(not_a_line)?;
    let (request_line, rest) = quoted(rest).ok_or_else(not_a_line)?;
    let mut fields = rest.split_whitespace();
    let status = fields.next().ok_or_else(not_a_line)?;
    if status.len() != 3 || !status.bytes().all(|b| b.is_ascii_digit()) {
        return Err(not_a_line());
    }
    let bytes = fields.next().ok_or_else(not_a_line)?;
    if bytes != "-" && !bytes.bytes().all(|b| b.is_ascii_digit()) {
        return Err(not_a_line());
    }
    if request_line == "-" || request_line.is_empty() {
        return Err(format!(
            "no request (\"{request_line}\"): the client sent nothing the server could read"
        ));
    }
    let mut parts = request_line.split(' ').filter(|p| !p.is_empty());
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return Err(format!(
            "request `{request_line}` is not `METHOD /path HTTP/x`"
        ));
    };
    let path = if target.starts_with("http://") || target.starts_with("https://") {
        // A proxy's absolute form: the path and query of it.
        let url = reqwest::Url::parse(target).map_err(|e| format!("target `{target}`: {e}"))?;
        match url.query() {
            Some(query) => format!("{}?{query}", url.path()),
            None => url.path().to_string(),
        }
    } else {
        target.to_string()
    };
    if let Some(why) = super::unusable(method, &path, None) {
        return Err(why);
    }
    Ok(RecordedRequest {
        at_us: time.timestamp_micros(),
        method: method.to_string(),
        path,
        body: None,
        headers: BTreeMap::new(),
    })
}

/// The text up to the closing `"` (a `\"` inside is Apache's escaped quote), and what follows.
fn quoted(text: &str) -> Option<(String, &str)> {
    let mut out = String::new();
    let mut chars = text.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((out, &text[i + 1..])),
            '\\' => match chars.next() {
                Some((_, escaped @ ('"' | '\\'))) => out.push(escaped),
                Some((_, other)) => {
                    out.push('\\');
                    out.push(other);
                }
                None => out.push('\\'),
            },
            c => out.push(c),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const COMMON: &str =
        r#"127.0.0.1 - frank [10/Oct/2026:13:55:36 +0000] "GET /api/users/1 HTTP/1.1" 200 2326"#;
    const COMBINED: &str = r#"10.0.0.2 - - [10/Oct/2026:15:55:36 +0200] "POST /api/posts?x=1 HTTP/1.1" 201 - "https://a.test/" "curl/8""#;

    #[test]
    fn common_and_combined_lines_parse() {
        let common = parse_line(COMMON).expect("common");
        assert_eq!(common.method, "GET");
        assert_eq!(common.path, "/api/users/1");
        let combined = parse_line(COMBINED).expect("combined");
        assert_eq!(combined.method, "POST");
        assert_eq!(combined.path, "/api/posts?x=1");
        // 15:55:36 at +02:00 is the same instant as 13:55:36 UTC.
        assert_eq!(common.at_us, combined.at_us);
        let absolute = parse_line(
            r#"::1 - - [10/Oct/2026:13:55:36 +0000] "GET http://a.test/x?y=1 HTTP/1.0" 200 1"#,
        )
        .expect("absolute form");
        assert_eq!(absolute.path, "/x?y=1");
    }

    #[test]
    fn bad_lines_are_skipped_with_their_numbers_and_a_reason() {
        let text = format!(
            "{COMMON}\ngarbage here\n\n{COMBINED}\n\
             1.2.3.4 - - [31/Foo/2026:00:00:00 +0000] \"GET / HTTP/1.1\" 200 1\n\
             1.2.3.4 - - [10/Oct/2026:13:55:36 +0000] \"-\" 400 0\n\
             1.2.3.4 - - [10/Oct/2026:13:55:36 +0000] \"\\x16\\x03\\x01\" 400 0\n\
             1.2.3.4 - - [10/Oct/2026:13:55:36 +0000] \"GET /unterminated 200 1\n"
        );
        let recording = parse(&text);
        assert_eq!(recording.requests.len(), 2);
        let at: Vec<&str> = recording.skipped.iter().map(|s| s.at.as_str()).collect();
        assert_eq!(at, ["line 2", "line 5", "line 6", "line 7", "line 8"]);
        assert!(recording.skipped[0].reason.contains("garbage here"));
        assert!(recording.skipped[1].reason.contains("31/Foo/2026"));
        assert!(recording.skipped[2].reason.contains("no request"));
        assert!(!recording.records_bodies);
    }

    #[test]
    fn a_seconds_requests_are_spread_across_it_in_log_order() {
        let line = |second: u32, path: &str| {
            format!(
                "1.2.3.4 - - [10/Oct/2026:13:55:{second:02} +0000] \"GET {path} HTTP/1.1\" 200 1\n"
            )
        };
        // Out of order across seconds (logged at completion), in order within one.
        let text = [
            line(37, "/c"),
            line(36, "/a"),
            line(36, "/b"),
            line(37, "/d"),
            line(36, "/e"),
        ]
        .concat();
        let recording = parse(&text);
        let first = recording.requests[0].at_us;
        let got: Vec<(&str, i64)> = recording
            .requests
            .iter()
            .map(|r| (r.path.as_str(), r.at_us - first))
            .collect();
        assert_eq!(
            got,
            [
                ("/a", 0),
                ("/b", 333_333),
                ("/e", 666_666),
                ("/c", 1_000_000),
                ("/d", 1_500_000)
            ]
        );
    }
}
