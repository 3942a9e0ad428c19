//! `resources.csv` read back: one [`ResourceRow`] per 250 ms sample of the target's, Postgres's
//! and apibench's own memory and CPU, by the header's column names (so files written before a
//! column existed still read, with `None` in it). Parses only; never judges the numbers.

/// One row of `resources.csv`; `None` where the process was not watched.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResourceRow {
    pub elapsed_ms: u64,
    pub target_rss_bytes: Option<u64>,
    pub target_cpu_percent: Option<f64>,
    pub postgres_rss_bytes: Option<u64>,
    pub postgres_cpu_percent: Option<f64>,
    /// apibench's own RSS; `None` in files written before the sampler recorded it.
    pub generator_rss_bytes: Option<u64>,
}

/// Parses `resources.csv` by its header's column names (units in the names). Empty cells are
/// processes that were not watched.
pub fn parse_resources_csv(text: &str) -> Result<Vec<ResourceRow>, String> {
    let mut lines = text.lines().enumerate();
    let Some((_, header)) = lines.next() else {
        return Err("empty: no header row".into());
    };
    let columns: Vec<&str> = header.split(',').map(str::trim).collect();
    let find = |name: &str| columns.iter().position(|c| *c == name);
    let Some(elapsed_col) = find("elapsed_ms") else {
        return Err(format!(
            "line 1: the header has no `elapsed_ms` column: {header}"
        ));
    };
    let cols = [
        find("target_rss_bytes"),
        find("target_cpu_percent"),
        find("postgres_rss_bytes"),
        find("postgres_cpu_percent"),
        find("generator_rss_bytes"),
    ];
    let mut rows = Vec::new();
    for (index, line) in lines {
        if line.trim().is_empty() {
            continue;
        }
        let line_no = index + 1;
        let cells: Vec<&str> = line.split(',').map(str::trim).collect();
        if cells.len() != columns.len() {
            return Err(format!(
                "line {line_no}: {} cells, the header has {}",
                cells.len(),
                columns.len()
            ));
        }
        let cell = |col: Option<usize>| col.and_then(|c| cells.get(c)).filter(|s| !s.is_empty());
        let int = |col: Option<usize>, name: &str| -> Result<Option<u64>, String> {
            cell(col)
                .map(|s| {
                    s.parse::<u64>()
                        .map_err(|_| format!("line {line_no}: {name} `{s}` is not a whole number"))
                })
                .transpose()
        };
        let float = |col: Option<usize>, name: &str| -> Result<Option<f64>, String> {
            cell(col)
                .map(|s| {
                    s.parse::<f64>()
                        .ok()
                        .filter(|v| v.is_finite())
                        .ok_or_else(|| format!("line {line_no}: {name} `{s}` is not a number"))
                })
                .transpose()
        };
        let Some(elapsed_ms) = int(Some(elapsed_col), "elapsed_ms")? else {
            return Err(format!("line {line_no}: elapsed_ms is empty"));
        };
        rows.push(ResourceRow {
            elapsed_ms,
            target_rss_bytes: int(cols[0], "target_rss_bytes")?,
            target_cpu_percent: float(cols[1], "target_cpu_percent")?,
            postgres_rss_bytes: int(cols[2], "postgres_rss_bytes")?,
            postgres_cpu_percent: float(cols[3], "postgres_cpu_percent")?,
            generator_rss_bytes: int(cols[4], "generator_rss_bytes")?,
        });
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `resources.csv` row under the sampler's current header: the named cells, the others
    /// empty (so these tests follow the header when the sampler adds columns).
    fn csv_row(cells: &[(&str, &str)]) -> String {
        crate::sampler::CSV_HEADER
            .split(',')
            .map(|column| {
                cells
                    .iter()
                    .find(|(name, _)| *name == column)
                    .map_or("", |(_, value)| value)
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    #[test]
    fn resources_csv_reads_by_header_and_keeps_empty_cells_empty() {
        let text = format!(
            "{}\n{}\n{}\n",
            crate::sampler::CSV_HEADER,
            csv_row(&[
                ("elapsed_ms", "250"),
                ("target_rss_bytes", "1048576"),
                ("target_cpu_percent", "12.5"),
            ]),
            csv_row(&[
                ("elapsed_ms", "500"),
                ("target_rss_bytes", "2097152"),
                ("postgres_rss_bytes", "4096"),
                ("postgres_cpu_percent", "1.5"),
            ]),
        );
        let rows = parse_resources_csv(&text).expect("parses");
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].target_rss_bytes, Some(1_048_576));
        assert_eq!(rows[0].postgres_rss_bytes, None);
        assert_eq!(rows[1].postgres_cpu_percent, Some(1.5));
    }

    #[test]
    fn resources_csv_errors_name_the_line() {
        let text = format!(
            "{}\n{}\n",
            crate::sampler::CSV_HEADER,
            csv_row(&[("elapsed_ms", "250"), ("target_rss_bytes", "x")])
        );
        let err = parse_resources_csv(&text).expect_err("bad cell");
        assert!(err.starts_with("line 2:"), "{err}");
    }

    #[test]
    fn resources_csv_reads_the_generator_rss_and_older_files_have_none() {
        let text = format!(
            "{}\n{}\n",
            crate::sampler::CSV_HEADER,
            csv_row(&[
                ("elapsed_ms", "250"),
                ("target_rss_bytes", "1048576"),
                ("generator_rss_bytes", "33554432"),
            ]),
        );
        let rows = parse_resources_csv(&text).expect("parses");
        assert_eq!(rows[0].generator_rss_bytes, Some(33_554_432));
        assert_eq!(rows[0].target_rss_bytes, Some(1_048_576));

        // A file from before the sampler recorded apibench's own memory.
        let old = "elapsed_ms,target_rss_bytes,target_cpu_percent,postgres_rss_bytes,\
                   postgres_cpu_percent\n250,1048576,1.5,,\n";
        let rows = parse_resources_csv(old).expect("parses");
        assert_eq!(rows[0].generator_rss_bytes, None);
        assert_eq!(rows[0].target_cpu_percent, Some(1.5));

        let bad = format!(
            "{}\n{}\n",
            crate::sampler::CSV_HEADER,
            csv_row(&[("elapsed_ms", "250"), ("generator_rss_bytes", "12k")])
        );
        let err = parse_resources_csv(&bad).expect_err("bad cell");
        assert!(err.contains("generator_rss_bytes"), "{err}");
    }
}
