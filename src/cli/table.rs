//! One writer for the command line's tables (`list`, `alerts`, `status`, `insights`,
//! `rules`, `check`): columns padded to their widest cell, so no command works its
//! widths out by hand.

use std::fmt;

/// One column: its heading, how wide it is at least, whether it grows to its widest
/// cell, which side it is aligned to, and the gap before it.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    header: &'static str,
    width: usize,
    fit: bool,
    right: bool,
    gap: &'static str,
    /// An empty cell writes nothing, not even the gap before it.
    optional: bool,
}

impl Column {
    /// As wide as its widest cell (or its heading), left-aligned.
    pub const fn fit(header: &'static str) -> Column {
        Column {
            header,
            width: header.len(),
            fit: true,
            right: false,
            gap: "  ",
            optional: false,
        }
    }

    /// Padded to `width` (a longer cell is not cut), left-aligned.
    pub const fn fixed(header: &'static str, width: usize) -> Column {
        Column {
            header,
            width,
            fit: false,
            right: false,
            gap: "  ",
            optional: false,
        }
    }

    /// Aligned to the right.
    pub const fn right(self) -> Column {
        Column {
            right: true,
            ..self
        }
    }

    /// A note at the end of some rows: where a row has none, not even the gap is written.
    pub const fn optional(self) -> Column {
        Column {
            optional: true,
            ..self
        }
    }

    /// One space before it instead of two.
    pub const fn close(self) -> Column {
        Column { gap: " ", ..self }
    }
}

/// Rows under a heading line (left out with [`Table::without_header`]), each line
/// behind `indent`. Displaying it writes every line, each ending in a newline.
#[derive(Debug, Clone)]
pub struct Table {
    columns: Vec<Column>,
    rows: Vec<Vec<String>>,
    indent: &'static str,
    header: bool,
}

impl Table {
    pub fn new(columns: &[Column]) -> Table {
        Table {
            columns: columns.to_vec(),
            rows: Vec::new(),
            indent: "",
            header: true,
        }
    }

    /// Each line starts with `indent`.
    pub fn indent(mut self, indent: &'static str) -> Table {
        self.indent = indent;
        self
    }

    pub fn without_header(mut self) -> Table {
        self.header = false;
        self
    }

    /// Adds a row: one cell per column (missing cells are empty).
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Each column's width: its own, or its widest cell's when it fits them.
    fn widths(&self) -> Vec<usize> {
        self.columns
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let widest = self
                    .rows
                    .iter()
                    .filter_map(|r| r.get(i))
                    .map(|s| s.chars().count())
                    .max()
                    .unwrap_or(0);
                if c.fit {
                    c.width.max(widest)
                } else {
                    c.width
                }
            })
            .collect()
    }

    fn line<'a>(
        &self,
        f: &mut fmt::Formatter<'_>,
        widths: &[usize],
        cells: impl Iterator<Item = &'a str>,
    ) -> fmt::Result {
        f.write_str(self.indent)?;
        for (i, (cell, (c, &w))) in cells.zip(self.columns.iter().zip(widths)).enumerate() {
            if c.optional && cell.is_empty() {
                continue;
            }
            if i > 0 {
                f.write_str(c.gap)?;
            }
            if c.right {
                write!(f, "{cell:>w$}")?;
            } else {
                write!(f, "{cell:<w$}")?;
            }
        }
        writeln!(f)
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let widths = self.widths();
        if self.header {
            self.line(f, &widths, self.columns.iter().map(|c| c.header))?;
        }
        for row in &self.rows {
            let cells = (0..self.columns.len()).map(|i| row.get(i).map_or("", String::as_str));
            self.line(f, &widths, cells)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_fit_their_widest_cell_or_keep_their_width() {
        let mut t = Table::new(&[
            Column::fit("IP"),
            Column::fixed("KIND", 6).close(),
            Column::fixed("N", 3).right(),
        ])
        .indent("  ");
        t.row(vec!["10.0.0.1".into(), "ban".into(), "7".into()]);
        t.row(vec!["::1".into(), "a-long-kind".into(), "12".into()]);
        assert_eq!(
            t.to_string(),
            "  IP       KIND      N\n  10.0.0.1 ban       7\n  ::1      a-long-kind   12\n"
        );
        assert_eq!(t.without_header().to_string().lines().count(), 2);
    }

    #[test]
    fn a_table_without_rows_is_its_heading() {
        let t = Table::new(&[Column::fit("IP"), Column::fixed("RULE", 6)]);
        assert_eq!(t.to_string(), "IP  RULE  \n");
    }
}
