//! The report's plots, as SVG (plotters; text as SVG `<text>`, no font files needed):
//! start-latency distributions, density curves, per-pod memory stacks and the boot split.
//! Ticks come from [`super::ticks`] and legends sit in a strip of their own ([`super::legend`]),
//! so labels cannot collide and a legend cannot cover data (`layout_tests` checks both).

use std::path::Path;

use plotters::prelude::*;

use super::figures::{median, memory_segments, pod_pss_mib};
use super::legend::{self, Entry, Swatch};
use super::ticks::{self, Ticked};

type Lin = Ticked<plotters::coord::types::RangedCoordf64>;
use crate::compare::schema::Results;

type Res = anyhow::Result<()>;

const SIZE: (u32, u32) = (860, 420);

fn color(i: usize) -> RGBColor {
    const C: [RGBColor; 8] = [
        RGBColor(0xd6, 0x27, 0x28),
        RGBColor(0x1f, 0x77, 0xb4),
        RGBColor(0x2c, 0xa0, 0x2c),
        RGBColor(0xff, 0x7f, 0x0e),
        RGBColor(0x94, 0x67, 0xbd),
        RGBColor(0x8c, 0x56, 0x4b),
        RGBColor(0x7f, 0x7f, 0x7f),
        RGBColor(0xbc, 0xbd, 0x22),
    ];
    C[i % C.len()]
}

fn err<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow::anyhow!("plot: {e}")
}

/// Pixels of a chart's width that are axis labels and margins, not data.
const CHART_CHROME_PX: u32 = 80;

/// The empirical distribution of each runtime's `ctr run --rm … true` (log time axis).
pub fn start_latency(r: &Results, path: &Path) -> Res {
    let all: Vec<f64> = r.start.iter().flat_map(|l| l.samples_ms.clone()).collect();
    let (lo, hi) = all
        .iter()
        .fold((f64::MAX, 0f64), |(a, b), v| (a.min(*v), b.max(*v)));
    if all.is_empty() {
        return Ok(());
    }
    let entries: Vec<Entry> = r
        .start
        .iter()
        .enumerate()
        .map(|(i, l)| Entry {
            text: format!("{} (median {:.0} ms)", l.runtime, l.summary.median),
            color: color(i),
            swatch: Swatch::Line,
        })
        .collect();
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let side = legend::width(&entries);
    let (plot, strip) = root.split_horizontally(SIZE.0 - side);
    let (x0, x1) = (lo * 0.8, hi * 1.25);
    let x_ticks = ticks::log(x0, x1, ticks::fit(SIZE.0 - side - CHART_CHROME_PX));
    let y_ticks = ticks::linear(0.0, 1.0, 6, false);
    let mut chart = ChartBuilder::on(&plot)
        .caption(
            "ctr run --rm busybox true: distribution of start latency",
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(
            Ticked::<LogCoord<f64>>::new((x0..x1).log_scale(), x_ticks),
            Lin::new(0f64..1.0, y_ticks),
        )
        .map_err(err)?;
    chart
        .configure_mesh()
        .light_line_style(TRANSPARENT)
        .x_label_formatter(&|v| ticks::label(*v))
        .y_label_formatter(&|v| ticks::label(*v))
        .x_desc("ms (log scale)")
        .y_desc("fraction of runs ≤ x")
        .draw()
        .map_err(err)?;
    for (i, l) in r.start.iter().enumerate() {
        let mut s = l.samples_ms.clone();
        s.sort_by(f64::total_cmp);
        let n = s.len() as f64;
        let mut pts = Vec::new();
        for (k, v) in s.iter().enumerate() {
            pts.push((*v, k as f64 / n));
            pts.push((*v, (k + 1) as f64 / n));
        }
        chart
            .draw_series(LineSeries::new(pts, color(i).stroke_width(2)))
            .map_err(err)?;
    }
    legend::draw(&strip, &entries, 40)?;
    root.present().map_err(err)
}

/// Height of the density plot's lower chart (host memory taken).
const DENSITY_LOWER_PX: u32 = 300;

/// Start latency of the k-th container and PSS per container as containers accumulate (upper
/// row), and the host memory they took out of `MemAvailable` (lower chart).
pub fn density(r: &Results, path: &Path) -> Res {
    if r.density.is_empty() {
        return Ok(());
    }
    let entries: Vec<Entry> = r
        .density
        .iter()
        .enumerate()
        .map(|(i, d)| Entry {
            text: d.runtime.clone(),
            color: color(i),
            swatch: Swatch::Line,
        })
        .collect();
    let root = SVGBackend::new(path, (SIZE.0, SIZE.1 + 40 + DENSITY_LOWER_PX)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let side = legend::width(&entries);
    let (plots, strip) = root.split_horizontally(SIZE.0 - side);
    let (upper, lower) = plots.split_vertically(SIZE.1 + 40);
    let half = (SIZE.0 - side) / 2;
    let (left, right) = upper.split_horizontally(half);
    let n = r
        .density
        .iter()
        .map(|d| d.start_ms.len())
        .chain(
            r.density
                .iter()
                .flat_map(|d| d.steps.iter().map(|s| s.pods)),
        )
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let max_ms = r
        .density
        .iter()
        .flat_map(|d| d.start_ms.iter())
        .fold(1f64, |a, v| a.max(*v));
    let max_mib = r
        .density
        .iter()
        .flat_map(|d| d.steps.iter())
        .fold(1f64, |a, s| a.max(s.pss_per_pod_kib as f64 / 1024.0));
    // Pods are counted: integer ticks only, as many as the half's width holds.
    let k_ticks = || ticks::linear(0.5, n + 0.5, ticks::fit(half - CHART_CHROME_PX), true);
    let y_ticks = |max: f64| ticks::linear(0.0, max, 8, false);
    let mut a = ChartBuilder::on(&left)
        .caption(
            "start latency of the k-th idle container",
            ("sans-serif", 16),
        )
        .margin(10)
        .x_label_area_size(36)
        .y_label_area_size(50)
        .build_cartesian_2d(
            Lin::new(0.5..n + 0.5, k_ticks()),
            Lin::new(0f64..max_ms * 1.15, y_ticks(max_ms * 1.15)),
        )
        .map_err(err)?;
    a.configure_mesh()
        .light_line_style(TRANSPARENT)
        .x_label_formatter(&|v| ticks::label(*v))
        .y_label_formatter(&|v| ticks::label(*v))
        .x_desc("k (containers already running: k−1)")
        .y_desc("ctr run -d, ms")
        .draw()
        .map_err(err)?;
    let mut b = ChartBuilder::on(&right)
        .caption("host PSS per container", ("sans-serif", 16))
        .margin(10)
        .x_label_area_size(36)
        .y_label_area_size(50)
        .build_cartesian_2d(
            Lin::new(0.5..n + 0.5, k_ticks()),
            Lin::new(0f64..max_mib * 1.15, y_ticks(max_mib * 1.15)),
        )
        .map_err(err)?;
    b.configure_mesh()
        .light_line_style(TRANSPARENT)
        .x_label_formatter(&|v| ticks::label(*v))
        .y_label_formatter(&|v| ticks::label(*v))
        .x_desc("containers running")
        .y_desc("MiB per container")
        .draw()
        .map_err(err)?;
    for (i, d) in r.density.iter().enumerate() {
        let c = color(i);
        let pts: Vec<(f64, f64)> = d
            .start_ms
            .iter()
            .enumerate()
            .map(|(k, v)| ((k + 1) as f64, *v))
            .collect();
        a.draw_series(LineSeries::new(pts.clone(), c.stroke_width(2)))
            .map_err(err)?;
        a.draw_series(pts.iter().map(|p| Circle::new(*p, 3, c.filled())))
            .map_err(err)?;
        let mem: Vec<(f64, f64)> = d
            .steps
            .iter()
            .map(|s| (s.pods as f64, s.pss_per_pod_kib as f64 / 1024.0))
            .collect();
        b.draw_series(LineSeries::new(mem.clone(), c.stroke_width(2)))
            .map_err(err)?;
        b.draw_series(mem.iter().map(|p| Circle::new(*p, 3, c.filled())))
            .map_err(err)?;
    }
    density_taken(r, &lower, n, SIZE.0 - side)?;
    legend::draw(&strip, &entries, 40)?;
    root.present().map_err(err)
}

/// The density plot's lower chart: `MemAvailable` before the first container minus at each
/// step, GiB, against containers running (`n` the most).
fn density_taken<DB: DrawingBackend>(
    r: &Results,
    area: &DrawingArea<DB, plotters::coord::Shift>,
    n: f64,
    width: u32,
) -> Res {
    let gib = |kib: u64| kib as f64 / (1024.0 * 1024.0);
    let series: Vec<Vec<(f64, f64)>> = r
        .density
        .iter()
        .map(|d| {
            d.steps
                .iter()
                .map(|s| {
                    let taken = d
                        .mem_available_before_kib
                        .saturating_sub(s.mem_available_kib);
                    (s.pods as f64, gib(taken))
                })
                .collect()
        })
        .collect();
    let max = series.iter().flatten().fold(0.1f64, |a, p| a.max(p.1)) * 1.15;
    let mut c = ChartBuilder::on(area)
        .caption(
            "host memory taken (MemAvailable before the first − now)",
            ("sans-serif", 16),
        )
        .margin(10)
        .x_label_area_size(36)
        .y_label_area_size(50)
        .build_cartesian_2d(
            Lin::new(
                0.5..n + 0.5,
                ticks::linear(0.5, n + 0.5, ticks::fit(width - CHART_CHROME_PX), true),
            ),
            Lin::new(0f64..max, ticks::linear(0.0, max, 6, false)),
        )
        .map_err(err)?;
    c.configure_mesh()
        .light_line_style(TRANSPARENT)
        .x_label_formatter(&|v| ticks::label(*v))
        .y_label_formatter(&|v| ticks::label(*v))
        .x_desc("containers running")
        .y_desc("GiB")
        .draw()
        .map_err(err)?;
    for (i, pts) in series.into_iter().enumerate() {
        let col = color(i);
        c.draw_series(LineSeries::new(pts.clone(), col.stroke_width(2)))
            .map_err(err)?;
        c.draw_series(pts.iter().map(|p| Circle::new(*p, 3, col.filled())))
            .map_err(err)?;
    }
    Ok(())
}

/// Horizontal stacked bars: where each runtime's idle-container memory is.
pub fn memory(r: &Results, path: &Path) -> Res {
    if r.memory.is_empty() {
        return Ok(());
    }
    let names = [
        "shim",
        "VMM",
        "virtiofsd",
        "vsock backend",
        "guest RAM touched",
        "container process",
        "other",
        "jailer",
    ];
    let mut entries: Vec<(usize, Entry)> = Vec::new();
    for m in &r.memory {
        for (seg, _) in memory_segments(m) {
            let i = names.iter().position(|n| *n == seg).unwrap_or(6);
            if !entries.iter().any(|(j, _)| *j == i) {
                entries.push((
                    i,
                    Entry {
                        text: seg.to_owned(),
                        color: color(i),
                        swatch: Swatch::Box,
                    },
                ));
            }
        }
    }
    let entries: Vec<Entry> = entries.into_iter().map(|(_, e)| e).collect();
    let max = r.memory.iter().map(pod_pss_mib).fold(1f64, f64::max);
    let totals: Vec<String> = r
        .memory
        .iter()
        .map(|m| format!("{}: {:.1} MiB", m.runtime, pod_pss_mib(m)))
        .collect();
    let rows = r.memory.len() as f64;
    let height = (120 + 70 * u32::try_from(r.memory.len()).unwrap_or(4))
        .max(70 + 20 * u32::try_from(entries.len()).unwrap_or(8));
    let root = SVGBackend::new(path, (SIZE.0, height)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let side = legend::width(&entries);
    let (plot, strip) = root.split_horizontally(SIZE.0 - side);
    // The x range leaves room right of the longest bar for its total (14 px font, 0.6 em/char).
    let data_px = f64::from(SIZE.0 - side - 2 * 12 - 10);
    let label_px = 20.0
        + totals.iter().map(|t| t.chars().count()).max().unwrap_or(0) as f64 * 0.6 * 14.0 / 1.24;
    let x_max = max / (1.0 - (label_px / data_px).min(0.7));
    let x_ticks = ticks::linear(
        0.0,
        x_max,
        ticks::fit(SIZE.0 - side - CHART_CHROME_PX),
        false,
    );
    let mut chart = ChartBuilder::on(&plot)
        .caption(
            "host memory of one idle container (PSS)",
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(10)
        .build_cartesian_2d(Lin::new(0f64..x_max, x_ticks), 0f64..rows)
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .disable_y_axis()
        .light_line_style(TRANSPARENT)
        .x_label_formatter(&|v| ticks::label(*v))
        .x_desc("MiB")
        .draw()
        .map_err(err)?;
    for (row, (m, total)) in r.memory.iter().zip(&totals).enumerate() {
        let y0 = rows - row as f64 - 0.8;
        let y1 = rows - row as f64 - 0.2;
        let mut x = 0.0;
        for (seg, mib) in memory_segments(m) {
            let i = names.iter().position(|n| *n == seg).unwrap_or(6);
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(x, y0), (x + mib, y1)],
                    color(i).filled(),
                )))
                .map_err(err)?;
            x += mib;
        }
        chart
            .draw_series(std::iter::once(Text::new(
                total.clone(),
                (x + max * 0.02, (y0 + y1) / 2.0),
                ("sans-serif", 14).into_font(),
            )))
            .map_err(err)?;
    }
    legend::draw(&strip, &entries, 40)?;
    root.present().map_err(err)
}

/// One stacked bar of the median boot split, with the quiet boots' median total beside it.
pub fn boot(r: &Results, path: &Path) -> Res {
    let Some(b) = &r.boot else { return Ok(()) };
    let verbose: Vec<_> = b.runs.iter().filter(|x| x.verbose).collect();
    let part = |f: &dyn Fn(&crate::compare::schema::BootRun) -> Option<f64>| {
        median(&verbose.iter().filter_map(|x| f(x)).collect::<Vec<_>>())
    };
    let parts = [
        ("VMM set-up + kernel load", part(&|x| x.vmm_ms)),
        ("kernel → /init", part(&|x| x.kernel_ms)),
        ("/init → agent serving", part(&|x| x.userspace_ms)),
        ("vsock connect + first RPC", part(&|x| x.connect_ms)),
    ];
    let quiet = median(
        &b.runs
            .iter()
            .filter(|x| !x.verbose)
            .map(|x| x.total_ms)
            .collect::<Vec<_>>(),
    );
    let total: f64 = parts.iter().map(|p| p.1).sum::<f64>().max(quiet).max(1.0);
    let mut entries: Vec<Entry> = parts
        .iter()
        .enumerate()
        .map(|(i, (name, ms))| Entry {
            text: format!("{name}: {ms:.0} ms"),
            color: color(i),
            swatch: Swatch::Box,
        })
        .collect();
    entries.push(Entry {
        text: format!("quiet boot total: {quiet:.0} ms"),
        color: color(6),
        swatch: Swatch::Box,
    });
    let root = SVGBackend::new(path, (SIZE.0, 280)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let side = legend::width(&entries);
    let (plot, strip) = root.split_horizontally(SIZE.0 - side);
    let x_max = total * 1.05;
    let x_ticks = ticks::linear(
        0.0,
        x_max,
        ticks::fit(SIZE.0 - side - CHART_CHROME_PX),
        false,
    );
    let mut chart = ChartBuilder::on(&plot)
        .caption(
            format!("pod VM boot, {} (medians)", b.backend),
            ("sans-serif", 16),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(10)
        .build_cartesian_2d(Lin::new(0f64..x_max, x_ticks), 0f64..2.0)
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .disable_y_axis()
        .light_line_style(TRANSPARENT)
        .x_label_formatter(&|v| ticks::label(*v))
        .x_desc("ms (upper bar: split from timestamped boots)")
        .draw()
        .map_err(err)?;
    let mut x = 0.0;
    for (i, (_, ms)) in parts.iter().enumerate() {
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(x, 1.1), (x + ms, 1.7)],
                color(i).filled(),
            )))
            .map_err(err)?;
        x += ms;
    }
    chart
        .draw_series(std::iter::once(Rectangle::new(
            [(0.0, 0.3), (quiet, 0.9)],
            color(6).filled(),
        )))
        .map_err(err)?;
    legend::draw(&strip, &entries, 40)?;
    root.present().map_err(err)
}
