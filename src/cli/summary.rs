//! One-screen summaries for people at a terminal: the commands that print
//! JSON lines for programs (`verify`, `sync --dry-run`) print a table of
//! counts and bytes and a few examples instead when stdout is a terminal
//! (`std::io::IsTerminal`). Pure text: no I/O but the writer it is given.

use std::io::Write;

/// How many examples a summary shows.
pub(crate) const EXAMPLES: usize = 10;

/// `n` bytes for people: `512 B`, `1.5 KiB`, `9.8 MiB`, ... (binary units).
pub(crate) fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// `n` with thousands separated by commas: `10,000`.
pub(crate) fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A row of a summary table: a label, a count and its bytes when they are
/// known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Row {
    pub(crate) label: &'static str,
    pub(crate) count: u64,
    pub(crate) bytes: Option<u64>,
}

/// A table of rows under a header naming the count's unit, columns
/// aligned.
pub(crate) fn table(out: &mut dyn Write, unit: &str, rows: &[Row]) -> std::io::Result<()> {
    let label_w = rows.iter().map(|r| r.label.len()).max().unwrap_or(0).max(7);
    let counts: Vec<String> = rows.iter().map(|r| grouped(r.count)).collect();
    let bytes: Vec<String> = rows
        .iter()
        .map(|r| r.bytes.map(human_bytes).unwrap_or_else(|| "-".into()))
        .collect();
    let count_w = counts
        .iter()
        .map(String::len)
        .max()
        .unwrap_or(0)
        .max(unit.len());
    let bytes_w = bytes.iter().map(String::len).max().unwrap_or(0).max(5);
    writeln!(
        out,
        "  {:label_w$}  {unit:>count_w$}  {:>bytes_w$}",
        "", "bytes"
    )?;
    for ((r, c), b) in rows.iter().zip(&counts).zip(&bytes) {
        writeln!(out, "  {:label_w$}  {c:>count_w$}  {b:>bytes_w$}", r.label)?;
    }
    Ok(())
}

/// Keeps the first [`EXAMPLES`] of a stream of lines and counts the rest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Examples {
    pub(crate) shown: Vec<String>,
    pub(crate) total: u64,
}

impl Examples {
    /// Records one example.
    pub(crate) fn push(&mut self, line: impl FnOnce() -> String) {
        self.total += 1;
        if self.shown.len() < EXAMPLES {
            self.shown.push(line());
        }
    }

    /// Writes `heading` and the examples kept (nothing when there were
    /// none), saying how many more there were.
    pub(crate) fn write(&self, out: &mut dyn Write, heading: &str) -> std::io::Result<()> {
        if self.total == 0 {
            return Ok(());
        }
        writeln!(out)?;
        if self.total as usize > self.shown.len() {
            writeln!(
                out,
                "{heading} (the first {} of {}):",
                self.shown.len(),
                grouped(self.total)
            )?;
        } else {
            writeln!(out, "{heading}:")?;
        }
        for l in &self.shown {
            writeln!(out, "  {l}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_and_counts_for_people() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1024), "1.0 KiB");
        assert_eq!(human_bytes(10 * 1024 * 1024 + 512 * 1024), "10.5 MiB");
        assert_eq!(human_bytes(5 << 40), "5.0 TiB");
        assert_eq!(human_bytes(u64::MAX), "16.0 EiB");
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1000), "1,000");
        assert_eq!(grouped(1234567), "1,234,567");
    }

    #[test]
    fn tables_align_and_examples_are_cut() {
        let mut out = Vec::new();
        table(
            &mut out,
            "objects",
            &[
                Row {
                    label: "in sync",
                    count: 10_000,
                    bytes: Some(2048),
                },
                Row {
                    label: "extra",
                    count: 1,
                    bytes: None,
                },
            ],
        )
        .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "           objects    bytes\n  \
             in sync   10,000  2.0 KiB\n  \
             extra          1        -\n"
        );
        let mut ex = Examples::default();
        for i in 0..EXAMPLES + 3 {
            ex.push(|| format!("line {i}"));
        }
        let mut out = Vec::new();
        ex.write(&mut out, "Differences").unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("Differences (the first 10 of 13):"), "{text}");
        assert!(
            text.contains("  line 9\n") && !text.contains("line 10"),
            "{text}"
        );
        let mut out = Vec::new();
        Examples::default().write(&mut out, "none").unwrap();
        assert!(out.is_empty());
    }
}
