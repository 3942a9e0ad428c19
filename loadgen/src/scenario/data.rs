//! `[[data_files]]`: CSV (a header row, then one record per line, RFC 4180 quoting) or JSON
//! lines (one flat object per line) read once, at scenario parse time, into a [`DataTable`] of
//! strings that templates index by row and column (`{{accounts.email}}`).
//!
//! This module only reads the files a scenario names (relative to the scenario file) and never
//! touches the network. Errors name the data file, its line and the problem; a cell's *value*
//! never appears in an error (data files may hold passwords).

use std::path::Path;

/// How an iteration picks its row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataOrder {
    /// Rows 0, 1, 2, … shared by all users, from the start again after the last.
    Sequential,
    /// A uniform draw from each user's own seeded RNG.
    Random,
    /// Like sequential, but each row is used once; then [`OnExhausted`].
    Unique,
}

/// `order = "unique"`: what happens when every row has been used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnExhausted {
    /// Users take no new iteration: the load phase ends early and says so.
    Stop,
    /// Start from the first row again (then rows repeat).
    Wrap,
}

/// One data file's rows, read at parse time.
#[derive(Clone, PartialEq, Eq)]
pub struct DataTable {
    /// `[[data_files]] name`: the `accounts` of `{{accounts.email}}`.
    pub name: String,
    pub columns: Vec<String>,
    /// `rows[r][c]`: every row has exactly `columns.len()` cells.
    rows: Vec<Vec<String>>,
}

impl std::fmt::Debug for DataTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "DataTable({}: {} columns, {} rows)",
            self.name,
            self.columns.len(),
            self.rows.len()
        )
    }
}

impl DataTable {
    /// A table from its parts (every row as long as `columns`).
    pub fn new(name: &str, columns: Vec<String>, rows: Vec<Vec<String>>) -> DataTable {
        DataTable {
            name: name.to_string(),
            columns,
            rows,
        }
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The cell at `row` (taken modulo the row count) and `column`; empty when out of range.
    pub fn cell(&self, row: usize, column: usize) -> &str {
        if self.rows.is_empty() {
            return "";
        }
        self.rows[row % self.rows.len()]
            .get(column)
            .map_or("", String::as_str)
    }

    /// The index of `column`.
    pub fn column(&self, column: &str) -> Option<usize> {
        self.columns.iter().position(|c| c == column)
    }
}

/// Why a data file could not be read: `line` is 1-based in the data file (0: the whole file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataError {
    pub line: usize,
    pub message: String,
}

fn at(line: usize, message: impl Into<String>) -> DataError {
    DataError {
        line,
        message: message.into(),
    }
}

/// Reads `path` as CSV, or as JSON lines when it ends in `.jsonl` / `.ndjson`.
pub fn read_table(name: &str, path: &Path) -> Result<DataTable, DataError> {
    let text = std::fs::read_to_string(path).map_err(|e| at(0, format!("cannot read: {e}")))?;
    let json_lines = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("jsonl") || e.eq_ignore_ascii_case("ndjson"));
    let table = if json_lines {
        parse_json_lines(name, &text)?
    } else {
        parse_csv(name, &text)?
    };
    if table.is_empty() {
        return Err(at(0, "has no data rows"));
    }
    Ok(table)
}

/// CSV with a header row: fields separated by `,`, optionally in `"…"` with `""` for a quote
/// (and then with commas and line breaks inside); CRLF or LF line ends; blank lines skipped.
pub fn parse_csv(name: &str, text: &str) -> Result<DataTable, DataError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let records = csv_records(text)?;
    let mut records = records.into_iter();
    let Some((header_line, columns)) = records.next() else {
        return Err(at(0, "is empty: the first line must name the columns"));
    };
    let columns: Vec<String> = columns.into_iter().map(|c| c.trim().to_string()).collect();
    check_columns(&columns, header_line)?;
    let mut rows = Vec::new();
    for (line, record) in records {
        if record.len() != columns.len() {
            return Err(at(
                line,
                format!(
                    "has {} fields, the header has {} columns",
                    record.len(),
                    columns.len()
                ),
            ));
        }
        rows.push(record);
    }
    Ok(DataTable::new(name, columns, rows))
}

/// The records of CSV text with the line each starts on; blank lines are skipped.
fn csv_records(text: &str) -> Result<Vec<(usize, Vec<String>)>, DataError> {
    let mut records = Vec::new();
    let mut fields: Vec<String> = Vec::new();
    let mut field = String::new();
    let mut line = 1;
    let mut record_line = 1;
    let mut in_quotes = false;
    // The current field was quoted and its closing quote seen: only `,` or a line end may follow.
    let mut closed_quote = false;
    let mut chars = text.chars().peekable();
    let mut end_record = |fields: &mut Vec<String>, field: &mut String, record_line: usize| {
        let blank = fields.is_empty() && field.is_empty();
        fields.push(std::mem::take(field));
        let record = std::mem::take(fields);
        if !blank {
            records.push((record_line, record));
        }
    };
    while let Some(c) = chars.next() {
        if in_quotes {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => {
                    in_quotes = false;
                    closed_quote = true;
                }
                '\n' => {
                    line += 1;
                    field.push('\n');
                }
                other => field.push(other),
            }
            continue;
        }
        match c {
            ',' => {
                fields.push(std::mem::take(&mut field));
                closed_quote = false;
            }
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' => {
                end_record(&mut fields, &mut field, record_line);
                closed_quote = false;
                line += 1;
                record_line = line;
            }
            '"' if field.is_empty() && !closed_quote => in_quotes = true,
            '"' => {
                return Err(at(
                    line,
                    "a `\"` inside an unquoted field; quote the field and write `\"\"`",
                ));
            }
            _ if closed_quote => {
                return Err(at(line, "text after a quoted field's closing `\"`"));
            }
            other => field.push(other),
        }
    }
    if in_quotes {
        return Err(at(record_line, "a quoted field is never closed"));
    }
    end_record(&mut fields, &mut field, record_line);
    Ok(records)
}

/// One flat JSON object per line; the columns are the first object's keys, and every object
/// must have the same keys. Strings are used as they are, numbers and booleans as their JSON
/// text; `null`, arrays and objects are refused.
pub fn parse_json_lines(name: &str, text: &str) -> Result<DataTable, DataError> {
    let mut columns: Option<Vec<String>> = None;
    let mut rows = Vec::new();
    for (index, line_text) in text.lines().enumerate() {
        let line = index + 1;
        if line_text.trim().is_empty() {
            continue;
        }
        let object: serde_json::Map<String, serde_json::Value> = serde_json::from_str(line_text)
            .map_err(|e| at(line, format!("not a JSON object: {e}")))?;
        let columns = columns.get_or_insert_with(|| object.keys().cloned().collect());
        if object.len() != columns.len() || columns.iter().any(|c| !object.contains_key(c)) {
            return Err(at(
                line,
                format!(
                    "has the keys {:?}, the first line has {:?}",
                    object.keys().collect::<Vec<_>>(),
                    columns
                ),
            ));
        }
        let mut row = Vec::with_capacity(columns.len());
        for column in columns.iter() {
            let value = match &object[column] {
                serde_json::Value::String(s) => s.clone(),
                v @ (serde_json::Value::Number(_) | serde_json::Value::Bool(_)) => v.to_string(),
                _ => {
                    return Err(at(
                        line,
                        format!(
                            "`{column}` must be a string, number or boolean (flat objects only)"
                        ),
                    ));
                }
            };
            row.push(value);
        }
        rows.push(row);
    }
    let columns = columns.unwrap_or_default();
    check_columns(&columns, 1)?;
    Ok(DataTable::new(name, columns, rows))
}

/// Column names are what `{{file.column}}` can write: non-empty, A-Z a-z 0-9 _ -, unique.
fn check_columns(columns: &[String], line: usize) -> Result<(), DataError> {
    for (i, column) in columns.iter().enumerate() {
        let valid = !column.is_empty()
            && column
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !valid {
            return Err(at(
                line,
                format!(
                    "column {} `{column}`: a column name is 1 or more of A-Z a-z 0-9 _ -",
                    i + 1
                ),
            ));
        }
        if columns[..i].contains(column) {
            return Err(at(line, format!("column `{column}` appears twice")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_with_quotes_commas_line_breaks_and_crlf() {
        let table = parse_csv(
            "accounts",
            "email,name,note\r\na@x.test,\"Doe, Jane\",\"say \"\"hi\"\"\"\r\n\r\nb@x.test,Bob,\"two\nlines\"\n",
        )
        .expect("parses");
        assert_eq!(table.columns, ["email", "name", "note"]);
        assert_eq!(table.len(), 2);
        assert_eq!(table.cell(0, 1), "Doe, Jane");
        assert_eq!(table.cell(0, 2), "say \"hi\"");
        assert_eq!(table.cell(1, 2), "two\nlines");
        assert_eq!(table.cell(2, 0), "a@x.test", "rows wrap");
        assert_eq!(table.column("note"), Some(2));
    }

    #[test]
    fn csv_errors_name_the_line() {
        let short = parse_csv("a", "x,y\n1,2\n3\n").expect_err("short row");
        assert_eq!(short.line, 3);
        assert!(short.message.contains("1 fields"), "{}", short.message);
        let open = parse_csv("a", "x\n\"never closed\n").expect_err("open quote");
        assert_eq!(open.line, 2);
        let stray = parse_csv("a", "x\nab\"c\n").expect_err("stray quote");
        assert_eq!(stray.line, 2);
        let dup = parse_csv("a", "x,x\n1,2\n").expect_err("duplicate column");
        assert!(dup.message.contains("twice"));
    }

    #[test]
    fn json_lines_are_flat_objects_with_the_same_keys() {
        let table = parse_json_lines(
            "t",
            "{\"id\": 7, \"email\": \"a@x\"}\n\n{\"email\":\"b@x\",\"id\":8}\n",
        )
        .expect("parses");
        let id = table.column("id").expect("id column");
        assert_eq!(table.columns.len(), 2);
        assert_eq!(table.cell(1, id), "8");
        let nested = parse_json_lines("t", "{\"a\": {\"b\": 1}}\n").expect_err("nested");
        assert_eq!(nested.line, 1);
        let keys = parse_json_lines("t", "{\"a\": 1}\n{\"b\": 1}\n").expect_err("keys differ");
        assert_eq!(keys.line, 2);
    }
}
