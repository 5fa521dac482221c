//! The record of a figures suite (`--suite snapshot`, `--suite backup`):
//! named figures with every repetition and their median, plus ratios
//! derived from the medians, rendered as Markdown and JSON.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};

use serde::Serialize;

use crate::report::Machine;
use crate::stats::{median, ratio};

/// One measured quantity: every repetition, in `unit`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Figure {
    /// Stable identifier for scripts (`snake_case`).
    pub key: &'static str,
    pub label: String,
    pub unit: &'static str,
    pub values: Vec<f64>,
}

impl Figure {
    pub fn new(key: &'static str, label: impl Into<String>, unit: &'static str) -> Self {
        Figure {
            key,
            label: label.into(),
            unit,
            values: Vec::new(),
        }
    }

    pub fn median(&self) -> Option<f64> {
        median(&self.values)
    }
}

/// A ratio of two figures' medians (`numerator / denominator`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Derived {
    pub label: String,
    pub numerator: &'static str,
    pub denominator: &'static str,
    pub value: Option<f64>,
}

/// Figures measured together, with the ratios between them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Section {
    pub title: String,
    /// How the figures were measured, in one or two sentences.
    pub method: String,
    pub figures: Vec<Figure>,
    pub derived: Vec<Derived>,
}

impl Section {
    pub fn new(title: impl Into<String>, method: impl Into<String>) -> Self {
        Section {
            title: title.into(),
            method: method.into(),
            figures: Vec::new(),
            derived: Vec::new(),
        }
    }

    pub fn figure(&self, key: &str) -> Option<&Figure> {
        self.figures.iter().find(|f| f.key == key)
    }

    pub fn figure_mut(&mut self, key: &str) -> Option<&mut Figure> {
        self.figures.iter_mut().find(|f| f.key == key)
    }

    /// Appends a repetition's value to the figure `key`, creating the
    /// figure (with `label` and `unit`) the first time.
    pub fn push(&mut self, key: &'static str, label: &str, unit: &'static str, value: f64) {
        if self.figure(key).is_none() {
            self.figures.push(Figure::new(key, label, unit));
        }
        if let Some(figure) = self.figure_mut(key) {
            figure.values.push(value);
        }
    }

    /// Adds `numerator / denominator` of the figures' medians; `None` when
    /// either is missing or the denominator is not positive.
    pub fn derive(&mut self, label: &str, numerator: &'static str, denominator: &'static str) {
        let of = |key| self.figure(key).and_then(Figure::median);
        let value = match (of(numerator), of(denominator)) {
            (Some(n), Some(d)) => ratio(n, d),
            _ => None,
        };
        self.derived.push(Derived {
            label: label.to_owned(),
            numerator,
            denominator,
            value,
        });
    }
}

/// Everything one figures-suite run measured.
#[derive(Debug, Clone, Serialize)]
pub struct FigureRecord {
    pub suite: &'static str,
    pub title: String,
    pub started_utc: String,
    pub git_revision: String,
    pub machine: Machine,
    pub command: String,
    /// Parameters in the order they are shown.
    pub parameters: Vec<(String, String)>,
    pub sections: Vec<Section>,
    /// Steps that failed, with the reason (the rest is still reported).
    pub failures: Vec<String>,
}

#[derive(Serialize)]
struct FigureJson<'a> {
    #[serde(flatten)]
    figure: &'a Figure,
    median: Option<f64>,
}

#[derive(Serialize)]
struct SectionJson<'a> {
    title: &'a str,
    method: &'a str,
    figures: Vec<FigureJson<'a>>,
    derived: &'a [Derived],
}

#[derive(Serialize)]
struct RecordJson<'a> {
    suite: &'a str,
    started_utc: &'a str,
    git_revision: &'a str,
    machine: &'a Machine,
    command: &'a str,
    parameters: serde_json::Map<String, serde_json::Value>,
    sections: Vec<SectionJson<'a>>,
    failures: &'a [String],
}

impl FigureRecord {
    /// The JSON result: every repetition and each figure's median.
    pub fn to_json(&self) -> String {
        let json = RecordJson {
            suite: self.suite,
            started_utc: &self.started_utc,
            git_revision: &self.git_revision,
            machine: &self.machine,
            command: &self.command,
            parameters: self
                .parameters
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                .collect(),
            sections: self
                .sections
                .iter()
                .map(|s| SectionJson {
                    title: &s.title,
                    method: &s.method,
                    figures: s
                        .figures
                        .iter()
                        .map(|f| FigureJson {
                            figure: f,
                            median: f.median(),
                        })
                        .collect(),
                    derived: &s.derived,
                })
                .collect(),
            failures: &self.failures,
        };
        let mut text = serde_json::to_string_pretty(&json).expect("the figure record serialises");
        text.push('\n');
        text
    }
}

/// A value with a precision suited to its size: 3 significant digits
/// below 100, whole numbers above.
fn number(value: f64) -> String {
    let magnitude = value.abs();
    if magnitude >= 100.0 || magnitude == 0.0 {
        format!("{value:.0}")
    } else if magnitude >= 10.0 {
        format!("{value:.1}")
    } else if magnitude >= 1.0 {
        format!("{value:.2}")
    } else {
        format!("{value:.3}")
    }
}

/// The Markdown report: header, parameters, one table per section.
pub fn render_markdown(record: &FigureRecord) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# {}, {}\n", record.title, record.started_utc);
    let _ = writeln!(
        out,
        "git `{}` · {} × {} · Linux {}\n",
        record.git_revision, record.machine.nproc, record.machine.cpu_model, record.machine.kernel,
    );
    let _ = writeln!(out, "Command: `{}`\n", record.command);
    if !record.parameters.is_empty() {
        let params: Vec<String> = record
            .parameters
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        let _ = writeln!(out, "Parameters: {}\n", params.join(" · "));
    }
    for section in &record.sections {
        let _ = writeln!(out, "## {}\n", section.title);
        if !section.method.is_empty() {
            let _ = writeln!(out, "{}\n", section.method);
        }
        let _ = writeln!(
            out,
            "| figure | median | unit | repetitions |\n|---|--:|---|---|"
        );
        for f in &section.figures {
            let reps: Vec<String> = f.values.iter().map(|&v| number(v)).collect();
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} |",
                f.label,
                f.median().map_or_else(|| "–".to_owned(), number),
                f.unit,
                reps.join(", ")
            );
        }
        for d in &section.derived {
            let _ = writeln!(
                out,
                "| {} | {} | × | {} / {} |",
                d.label,
                d.value.map_or_else(|| "–".to_owned(), number),
                d.numerator,
                d.denominator
            );
        }
        out.push('\n');
    }
    if !record.failures.is_empty() {
        let _ = writeln!(out, "## Failed steps\n");
        for failure in &record.failures {
            let _ = writeln!(out, "- {failure}");
        }
        out.push('\n');
    }
    out
}

/// Writes `<name>.md` and `<name>.json` into `out_dir` and prints the
/// Markdown.
pub fn write_outputs(record: &FigureRecord, out_dir: &Path, name: &str) -> Result<()> {
    let markdown = render_markdown(record);
    for (path, text) in [
        (out_dir.join(format!("{name}.md")), markdown.as_str()),
        (
            out_dir.join(format!("{name}.json")),
            record.to_json().as_str(),
        ),
    ] {
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("reservoir-bench: wrote {}", path.display());
    }
    println!("{markdown}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> FigureRecord {
        let mut section = Section::new("Creation", "Median of 3.");
        for v in [2.0, 1.0, 3.0] {
            section.push("create_1g_ms", "create, 1 GiB", "ms", v);
        }
        for v in [4.0, 6.0] {
            section.push("create_64g_ms", "create, 64 GiB", "ms", v);
        }
        section.derive("64 GiB / 1 GiB", "create_64g_ms", "create_1g_ms");
        section.derive("missing", "nope", "create_1g_ms");
        FigureRecord {
            suite: "snapshot",
            title: "Reservoir snapshot figures".into(),
            started_utc: "2026-11-25T12:00:00Z".into(),
            git_revision: "abc1234".into(),
            machine: Machine {
                nproc: 2,
                cpu_model: "Test CPU".into(),
                kernel: "6.1.0".into(),
            },
            command: "reservoir-bench --suite snapshot".into(),
            parameters: vec![("chunk".into(), "64 KiB".into())],
            sections: vec![section],
            failures: vec!["step x: boom".into()],
        }
    }

    #[test]
    fn push_groups_values_by_key_and_derive_uses_medians() {
        let r = record();
        let s = &r.sections[0];
        assert_eq!(s.figures.len(), 2);
        assert_eq!(s.figure("create_1g_ms").unwrap().values, [2.0, 1.0, 3.0]);
        assert_eq!(s.figure("create_1g_ms").unwrap().median(), Some(2.0));
        assert_eq!(s.derived[0].value, Some(2.5));
        assert_eq!(s.derived[1].value, None);
    }

    #[test]
    fn markdown_shows_medians_repetitions_and_ratios() {
        let md = render_markdown(&record());
        assert!(md.starts_with("# Reservoir snapshot figures, 2026-11-25T12:00:00Z\n"));
        assert!(md.contains("Parameters: chunk 64 KiB\n"));
        assert!(md.contains("## Creation\n\nMedian of 3.\n"));
        assert!(md.contains("| create, 1 GiB | 2.00 | ms | 2.00, 1.00, 3.00 |\n"));
        assert!(md.contains("| create, 64 GiB | 5.00 | ms | 4.00, 6.00 |\n"));
        assert!(md.contains("| 64 GiB / 1 GiB | 2.50 | × | create_64g_ms / create_1g_ms |\n"));
        assert!(md.contains("| missing | – | × |"));
        assert!(md.contains("## Failed steps\n\n- step x: boom\n"));
    }

    #[test]
    fn json_has_every_repetition_and_the_medians() {
        let json: serde_json::Value = serde_json::from_str(&record().to_json()).unwrap();
        assert_eq!(json["suite"], "snapshot");
        assert_eq!(json["git_revision"], "abc1234");
        assert_eq!(json["machine"]["nproc"], 2);
        assert_eq!(json["parameters"]["chunk"], "64 KiB");
        let figure = &json["sections"][0]["figures"][0];
        assert_eq!(figure["key"], "create_1g_ms");
        assert_eq!(figure["values"].as_array().unwrap().len(), 3);
        assert_eq!(figure["median"], 2.0);
        assert_eq!(json["sections"][0]["derived"][0]["value"], 2.5);
        assert!(json["sections"][0]["derived"][1]["value"].is_null());
    }

    #[test]
    fn numbers_keep_three_significant_digits() {
        assert_eq!(number(0.01234), "0.012");
        assert_eq!(number(1.2345), "1.23");
        assert_eq!(number(12.345), "12.3");
        assert_eq!(number(12345.6), "12346");
        assert_eq!(number(0.0), "0");
    }
}
