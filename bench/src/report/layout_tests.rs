//! Renders every plot from sample results and checks the SVG's label placement: no two labels
//! overlap, every label is on the canvas, an axis never repeats a tick label, and the legend box
//! covers neither a bar nor a label. Text extents are estimated from the font size (0.6 em per
//! character, the width of a wide sans-serif glyph), so the check errs on the side of failing.

use std::path::Path;

use super::plots;
use crate::compare::schema::Results;

#[derive(Debug, Clone)]
struct Text {
    s: String,
    x: f64,
    y: f64,
    anchor: String,
    box_: Rect,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Rect {
    x0: f64,
    y0: f64,
    x1: f64,
    y1: f64,
}

impl Rect {
    fn overlaps(&self, o: &Rect) -> bool {
        // One pixel of slack: anti-aliased edges may touch.
        self.x0 + 1.0 < o.x1 && o.x0 + 1.0 < self.x1 && self.y0 + 1.0 < o.y1 && o.y0 + 1.0 < self.y1
    }
    fn contains(&self, o: &Rect) -> bool {
        o.x0 >= self.x0 - 1.0
            && o.x1 <= self.x1 + 1.0
            && o.y0 >= self.y0 - 1.0
            && o.y1 <= self.y1 + 1.0
    }
}

fn attr(tag: &str, name: &str) -> Option<String> {
    let at = tag.find(&format!(" {name}=\""))? + name.len() + 3;
    let end = tag[at..].find('"')? + at;
    Some(tag[at..end].to_owned())
}

fn num(tag: &str, name: &str) -> f64 {
    attr(tag, name).and_then(|v| v.parse().ok()).unwrap_or(0.0)
}

/// A rectangle with its fill and stroke colours.
type Shape = (Rect, String, String);

/// The SVG's canvas size, its unrotated texts and its rectangles.
fn parse(svg: &str) -> ((f64, f64), Vec<Text>, Vec<Shape>) {
    let head = &svg[..svg.find('>').unwrap()];
    let size = (num(head, "width"), num(head, "height"));
    let mut texts = Vec::new();
    for part in svg.split("<text").skip(1) {
        let tag = &part[..part.find('>').unwrap()];
        if tag.contains("rotate(") {
            continue;
        }
        let s = part[tag.len() + 1..part.find("</text>").unwrap()]
            .trim()
            .to_owned();
        let fs = num(tag, "font-size");
        let (x, y) = (num(tag, "x"), num(tag, "y"));
        // The baseline: plotters shifts it with dy (0.76em: y is the top; ±0.5ex: the middle).
        let dy = match attr(tag, "dy").as_deref() {
            Some("0.76em") => 0.76 * fs,
            Some("0.5ex") => 0.25 * fs,
            Some("-0.5ex") => -0.25 * fs,
            _ => 0.0,
        };
        let base = y + dy;
        let w = s.chars().count() as f64 * 0.6 * fs;
        let anchor = attr(tag, "text-anchor").unwrap_or_else(|| "start".into());
        let x0 = match anchor.as_str() {
            "middle" => x - w / 2.0,
            "end" => x - w,
            _ => x,
        };
        let box_ = Rect {
            x0,
            y0: base - 0.8 * fs,
            x1: x0 + w,
            y1: base + 0.2 * fs,
        };
        texts.push(Text {
            s,
            x,
            y,
            anchor,
            box_,
        });
    }
    let mut rects = Vec::new();
    for part in svg.split("<rect").skip(1) {
        let tag = &part[..part.find('>').unwrap()];
        let (x, y) = (num(tag, "x"), num(tag, "y"));
        let r = Rect {
            x0: x,
            y0: y,
            x1: x + num(tag, "width"),
            y1: y + num(tag, "height"),
        };
        rects.push((
            r,
            attr(tag, "fill").unwrap_or_default(),
            attr(tag, "stroke").unwrap_or_default(),
        ));
    }
    (size, texts, rects)
}

/// Every placement rule; returns what broke.
fn check(name: &str, svg: &str) -> Vec<String> {
    let ((w, h), texts, rects) = parse(svg);
    let mut bad = Vec::new();
    let canvas = Rect {
        x0: 0.0,
        y0: 0.0,
        x1: w,
        y1: h,
    };
    for t in &texts {
        if !canvas.contains(&t.box_) {
            bad.push(format!("{name}: {:?} leaves the canvas", t.s));
        }
    }
    for (i, a) in texts.iter().enumerate() {
        for b in &texts[i + 1..] {
            if a.box_.overlaps(&b.box_) {
                bad.push(format!("{name}: {:?} overlaps {:?}", a.s, b.s));
            }
        }
    }
    // Tick labels: numbers in a row (an x axis, sorted by x) or sharing a right edge (a y axis,
    // sorted by y); neighbours must differ (two charts side by side may each have a "2").
    let ticks: Vec<&Text> = texts
        .iter()
        .filter(|t| t.s.parse::<f64>().is_ok())
        .collect();
    let mut axes: Vec<Vec<&Text>> = Vec::new();
    for t in &ticks {
        let axis = axes.iter_mut().find(|a| {
            (t.anchor == "middle" && a[0].anchor == "middle" && a[0].y == t.y)
                || (t.anchor == "end" && a[0].anchor == "end" && a[0].x == t.x)
        });
        match axis {
            Some(a) => a.push(t),
            None => axes.push(vec![t]),
        }
    }
    for mut axis in axes {
        axis.sort_by(|a, b| a.x.total_cmp(&b.x).then(a.y.total_cmp(&b.y)));
        for pair in axis.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            if a.s == b.s {
                bad.push(format!("{name}: tick label {:?} repeats on one axis", a.s));
            }
            // Neighbours closer than half a character read as one number ("9001000").
            let gap = if a.y == b.y {
                b.box_.x0 - a.box_.x1
            } else {
                b.box_.y0 - a.box_.y1
            };
            let em = a.box_.y1 - a.box_.y0;
            if gap < 0.5 * em {
                bad.push(format!(
                    "{name}: tick labels {:?} and {:?} run together",
                    a.s, b.s
                ));
            }
        }
    }
    // The legend: the black-framed box. Nothing outside it may reach into it.
    let legends: Vec<Rect> = rects
        .iter()
        .filter(|(_, _, stroke)| stroke == "#000000")
        .map(|(r, _, _)| *r)
        .collect();
    let bars: Vec<Rect> = rects
        .iter()
        .filter(|(r, fill, stroke)| {
            stroke == "none"
                && fill != "#FFFFFF"
                && fill != "none"
                && !legends.iter().any(|l| l.contains(r))
        })
        .map(|(r, _, _)| *r)
        .collect();
    for l in &legends {
        for b in &bars {
            if l.overlaps(b) {
                bad.push(format!("{name}: the legend {l:?} covers a bar {b:?}"));
            }
        }
        for t in &texts {
            if !l.contains(&t.box_) && l.overlaps(&t.box_) {
                bad.push(format!("{name}: the legend {l:?} covers {:?}", t.s));
            }
        }
    }
    bad
}

fn render_all(r: &Results) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let mut bad = Vec::new();
    let mut rendered = 0;
    type Plot = fn(&Results, &Path) -> anyhow::Result<()>;
    let all: [(&str, Plot); 4] = [
        ("start_latency.svg", plots::start_latency),
        ("boot.svg", plots::boot),
        ("memory.svg", plots::memory),
        ("density.svg", plots::density),
    ];
    for (name, plot) in all {
        let path = dir.path().join(name);
        plot(r, &path).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        rendered += 1;
        bad.extend(check(name, &svg));
    }
    assert_eq!(rendered, 4);
    bad
}

fn fixture() -> Results {
    super::read(&Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/quick-results.json")).unwrap()
}

#[test]
fn the_fixtures_plots_have_readable_labels() {
    let bad = render_all(&fixture());
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

/// Wider ranges than the fixture's: a slow start tail over three decades, 30 pods, a big pod.
#[test]
fn plots_of_wide_ranges_have_readable_labels() {
    let mut r = fixture();
    for l in &mut r.start {
        let n = l.samples_ms.len();
        for (i, v) in l.samples_ms.iter_mut().enumerate() {
            *v *= 1.0 + 40.0 * i as f64 / n as f64;
        }
    }
    for d in &mut r.density {
        let last = *d.start_ms.last().unwrap();
        while d.start_ms.len() < 30 {
            d.start_ms
                .push(last * (1.0 + d.start_ms.len() as f64 / 10.0));
        }
    }
    for m in &mut r.memory {
        for p in &mut m.processes {
            p.pss_kib *= 7;
        }
    }
    let bad = render_all(&r);
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

/// A full density run: 30 pods each, memory read at 1, 10, 20 and 30, hull's pods taking
/// ~4 GiB of the host and runc's ~0.4 GiB, start times from 100 ms to 8 s.
#[test]
fn a_thirty_pod_density_run_has_readable_labels() {
    let mut r = fixture();
    for d in &mut r.density {
        let hull = d.runtime.starts_with("hull");
        let (first, per_pod_kib) = if hull {
            (1500.0, 140_000)
        } else {
            (100.0, 14_000)
        };
        d.start_ms = (0..30)
            .map(|k| first * (1.0 + 4.0 * k as f64 / 29.0))
            .collect();
        let template = d.steps[0].clone();
        d.mem_available_before_kib = 23_900_000;
        d.steps = [1usize, 10, 20, 30]
            .iter()
            .map(|&pods| crate::compare::schema::DensityStep {
                pods,
                pss_per_pod_kib: template.pss_per_pod_kib + pods as u64 * 300,
                mem_available_kib: 23_900_000 - pods as u64 * per_pod_kib,
                ..template.clone()
            })
            .collect();
        d.mem_available_after_kib = 23_850_000;
    }
    let bad = render_all(&r);
    assert!(bad.is_empty(), "{}", bad.join("\n"));
    let md = super::markdown(&r, |_| true);
    assert!(md.contains("| hull/qemu-tcg | 30 |"), "{md}");
    assert!(md.contains("MemAvailable before"), "{md}");
}

/// The last report's start range (runc ~100 ms, hull up to ~3 s), where 900 and 1000 ran together.
#[test]
fn a_start_range_over_900_and_1000_has_readable_labels() {
    let mut r = fixture();
    for l in &mut r.start {
        let (lo, hi) = if l.runtime == "runc" {
            (95.0, 230.0)
        } else {
            (1250.0, 3100.0)
        };
        let n = l.samples_ms.len() as f64;
        for (i, v) in l.samples_ms.iter_mut().enumerate() {
            *v = lo + (hi - lo) * i as f64 / (n - 1.0);
        }
    }
    let bad = render_all(&r);
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn the_check_sees_colliding_labels() {
    let svg = r##"<svg width="200" height="100" viewBox="0 0 200 100">
<text x="50" y="90" dy="0.76em" text-anchor="middle" font-size="10">900</text>
<text x="58" y="90" dy="0.76em" text-anchor="middle" font-size="10">1000</text>
<text x="100" y="90" dy="0.76em" text-anchor="middle" font-size="10">2</text>
<text x="140" y="90" dy="0.76em" text-anchor="middle" font-size="10">2</text>
<rect x="10" y="10" width="50" height="20" fill="#D62728" stroke="none"/>
<rect x="40" y="5" width="50" height="30" fill="none" stroke="#000000"/>
</svg>"##;
    let bad = check("t", svg).join("\n");
    for what in [
        "\"900\" overlaps \"1000\"",
        "\"900\" and \"1000\" run together",
        "\"2\" repeats",
        "covers a bar",
    ] {
        assert!(bad.contains(what), "{what} not seen in:\n{bad}");
    }
}
