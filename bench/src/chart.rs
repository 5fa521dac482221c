//! One PNG bar chart per workload group: IOPS for small random I/O, MB/s
//! for large sequential I/O, one bar per target.
//!
//! Text is drawn by plotters' ab_glyph backend from DejaVu Sans (Debian's
//! fonts-dejavu-core), loaded at run time: no fontconfig, no system
//! rendering libraries.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};

use crate::matrix::{Backing, Group, TargetKind};
use crate::report::{Client, RunRecord};

/// Where Debian's fonts-dejavu-core puts the face.
pub const FONT_PATHS: [&str; 2] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
];

/// Registers the chart font once; fails when no DejaVu Sans is installed.
pub fn load_font() -> Result<()> {
    let path = FONT_PATHS
        .iter()
        .find(|p| Path::new(p).exists())
        .ok_or_else(|| {
            anyhow!("no DejaVu Sans font (install the Debian package fonts-dejavu-core)")
        })?;
    let bytes = std::fs::read(path).with_context(|| format!("reading {path}"))?;
    // plotters keeps registered fonts for the process's lifetime.
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    register_font("sans-serif", FontStyle::Normal, bytes)
        .map_err(|_| anyhow!("{path} is not a usable TrueType font"))
}

fn colour(target: TargetKind) -> RGBColor {
    match target {
        TargetKind::Reservoir => RGBColor(0x1f, 0x77, 0xb4),
        TargetKind::Tgt => RGBColor(0xff, 0x7f, 0x0e),
        TargetKind::Istgt => RGBColor(0x2c, 0xa0, 0x2c),
    }
}

/// The bars of one chart: workload names and, per target, one value each.
#[derive(Debug, PartialEq)]
pub struct ChartData {
    pub title: String,
    pub unit: &'static str,
    pub workloads: Vec<&'static str>,
    pub series: Vec<(TargetKind, Vec<f64>)>,
}

/// The charts a run yields: one per (backing, group) that has fio data.
pub fn chart_data(record: &RunRecord) -> Vec<(String, ChartData)> {
    let mut charts = Vec::new();
    for backing in [Backing::Ram, Backing::File] {
        for group in [Group::Random, Group::Sequential] {
            let cell = |m: &&crate::report::Measurement| {
                m.client == Client::Fio && m.backing == backing && m.workload.group == group
            };
            let mut workloads: Vec<&'static str> = Vec::new();
            let mut targets: Vec<TargetKind> = Vec::new();
            for m in record.measurements.iter().filter(cell) {
                if !workloads.contains(&m.workload.name) {
                    workloads.push(m.workload.name);
                }
                if !targets.contains(&m.target) {
                    targets.push(m.target);
                }
            }
            if workloads.is_empty() {
                continue;
            }
            targets.sort();
            let unit = match group {
                Group::Random => "IOPS",
                Group::Sequential => "MB/s",
            };
            let series = targets
                .iter()
                .map(|&target| {
                    let values = workloads
                        .iter()
                        .map(|name| {
                            record
                                .measurements
                                .iter()
                                .filter(cell)
                                .find(|m| m.target == target && m.workload.name == *name)
                                .map_or(0.0, |m| {
                                    let s = m.summary();
                                    match group {
                                        Group::Random => s.iops,
                                        Group::Sequential => s.megabytes_per_second,
                                    }
                                })
                        })
                        .collect();
                    (target, values)
                })
                .collect();
            let title = format!(
                "{} {} ({unit}, higher is better)",
                backing.name(),
                group.name()
            );
            charts.push((
                format!("{}-{}", backing.name(), group.name()),
                ChartData {
                    title,
                    unit,
                    workloads,
                    series,
                },
            ));
        }
    }
    charts
}

/// Draws one chart to `path`.
pub fn draw(data: &ChartData, path: &Path) -> Result<PathBuf> {
    let plot = |e| anyhow!("drawing {}: {e:?}", path.display());
    let root = BitMapBackend::new(path, (900, 460)).into_drawing_area();
    root.fill(&WHITE).map_err(plot)?;
    let max = data
        .series
        .iter()
        .flat_map(|(_, v)| v.iter().copied())
        .fold(0.0, f64::max)
        .max(1.0);
    let groups = data.workloads.len() as f64;
    let mut chart = ChartBuilder::on(&root)
        .caption(&data.title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(48)
        .y_label_area_size(70)
        // Headroom above the tallest bar for the legend.
        .build_cartesian_2d(0.0..groups, 0.0..max * 1.4)
        .map_err(plot)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_desc(data.unit)
        .y_label_formatter(&|v| format!("{v:.0}"))
        .label_style(("sans-serif", 13))
        .draw()
        .map_err(plot)?;
    let slots = data.series.len() as f64;
    let width = 0.8 / slots;
    for (j, (target, values)) in data.series.iter().enumerate() {
        let fill = colour(*target);
        let bars = values.iter().enumerate().map(move |(i, &v)| {
            let left = i as f64 + 0.1 + j as f64 * width;
            Rectangle::new([(left, 0.0), (left + width * 0.92, v)], fill.filled())
        });
        chart
            .draw_series(bars)
            .map_err(plot)?
            .label(target.name())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], fill.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()
        .map_err(plot)?;
    // Workload names centred under each group of bars, on as many lines
    // as it takes to stay within the group's width.
    let per_line = (900.0 / groups / 8.0) as usize;
    for (i, name) in data.workloads.iter().enumerate() {
        let (x, y) = chart.backend_coord(&(i as f64 + 0.5, 0.0));
        let style = TextStyle::from(("sans-serif", 13).into_font()).pos(
            plotters::style::text_anchor::Pos::new(
                plotters::style::text_anchor::HPos::Center,
                plotters::style::text_anchor::VPos::Top,
            ),
        );
        for (line, text) in wrap(name, per_line).iter().enumerate() {
            root.draw(&Text::new(
                text.clone(),
                (x, y + 8 + 15 * line as i32),
                &style,
            ))
            .map_err(plot)?;
        }
    }
    root.present().map_err(plot)?;
    Ok(path.to_owned())
}

/// `text` in lines of at most `width` characters, broken between words (a
/// longer word gets a line of its own).
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for word in text.split_whitespace() {
        match lines.last_mut() {
            Some(line) if line.len() + 1 + word.len() <= width => {
                line.push(' ');
                line.push_str(word);
            }
            _ => lines.push(word.to_owned()),
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loopback::Floor;
    use crate::matrix::{RANDREAD_QD32, SEQREAD_QD8};
    use crate::report::{Machine, Measurement, Parameters, Repetition};

    fn m(target: TargetKind, workload: crate::matrix::Workload, iops: f64) -> Measurement {
        Measurement {
            client: Client::Fio,
            backing: Backing::Ram,
            workload,
            target,
            repetitions: vec![Repetition {
                iops,
                bytes_per_second: iops * f64::from(workload.block_size),
                lat_p50_ns: None,
                lat_p99_ns: None,
                lat_p999_ns: None,
                total_ios: iops,
                wall_seconds: 1.0,
                target_cpu_seconds: 0.0,
                client_cpu_seconds: 0.0,
                fio_usr_cpu_percent: None,
                fio_sys_cpu_percent: None,
                target_peak_rss_kib: 0,
            }],
        }
    }

    #[test]
    fn long_workload_names_wrap_between_words() {
        assert_eq!(
            wrap("4k randread qd32 x4 sessions", 18),
            ["4k randread qd32", "x4 sessions"]
        );
        assert_eq!(wrap("4k randread qd1", 18), ["4k randread qd1"]);
        assert_eq!(wrap("unbreakable-name", 4), ["unbreakable-name"]);
    }

    #[test]
    fn one_chart_per_backing_and_group_with_fio_data() {
        let record = RunRecord {
            started_utc: String::new(),
            git_revision: String::new(),
            machine: Machine {
                nproc: 1,
                cpu_model: String::new(),
                kernel: String::new(),
            },
            parameters: Parameters {
                quick: true,
                backings: vec![Backing::Ram],
                workloads: None,
                runtime_seconds: 1,
                repetitions: 1,
                targets: vec![],
                lun_bytes: 0,
                fio: String::new(),
                reservoir_binary: String::new(),
                command: String::new(),
            },
            loopback_floor: Floor::fixture(),
            measurements: vec![
                m(TargetKind::Tgt, RANDREAD_QD32, 40e3),
                m(TargetKind::Reservoir, RANDREAD_QD32, 80e3),
                m(TargetKind::Reservoir, SEQREAD_QD8, 10e3),
            ],
            failures: vec![],
        };
        let charts = chart_data(&record);
        let names: Vec<&str> = charts.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["ram-random", "ram-sequential"]);
        let random = &charts[0].1;
        assert_eq!(random.unit, "IOPS");
        assert_eq!(random.series[0], (TargetKind::Reservoir, vec![80e3]));
        assert_eq!(random.series[1], (TargetKind::Tgt, vec![40e3]));
        let sequential = &charts[1].1;
        assert_eq!(sequential.series[0].1, vec![10e3 * 131072.0 / 1e6]);
    }
}
