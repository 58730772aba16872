//! The plots' legend, drawn in a strip of its own beside the chart: plotters draws its legend
//! inside the data area, where it covered the hull bar's total. Outside the chart it cannot cover
//! data whatever the figures are.

use plotters::coord::Shift;
use plotters::prelude::*;

/// Font of a legend row (plotters' size; SVG gets it scaled by 1/1.24).
const FONT: u32 = 14;
/// Height of a row, px.
const ROW: i32 = 20;
/// Width of one character at [`FONT`], px (0.6 em of the SVG size, as the layout test estimates).
const CHAR_PX: f64 = 0.6 * FONT as f64 / 1.24;

/// How an entry's colour is shown.
#[derive(Debug, Clone, Copy)]
pub enum Swatch {
    /// A line (line series).
    Line,
    /// A filled square (bars).
    Box,
}

/// One legend row.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The label.
    pub text: String,
    /// The series' colour.
    pub color: RGBColor,
    /// How the colour is shown.
    pub swatch: Swatch,
}

/// The width the strip needs for `entries`, px.
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // on-screen sizes, tick counts, decade exponents: small, ≥ 0
pub fn width(entries: &[Entry]) -> u32 {
    let chars = entries
        .iter()
        .map(|e| e.text.chars().count())
        .max()
        .unwrap_or(0);
    48 + (chars as f64 * CHAR_PX).ceil() as u32
}

/// Draws `entries` as a framed box at the top of `area` (a strip [`width`] wide).
pub fn draw<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    entries: &[Entry],
    top: i32,
) -> anyhow::Result<()> {
    if entries.is_empty() {
        return Ok(());
    }
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| anyhow::anyhow!("legend: {e}");
    let (w, _) = area.dim_in_pixel();
    let w = i32::try_from(w).unwrap_or(i32::MAX);
    let rows = i32::try_from(entries.len()).unwrap_or(i32::MAX);
    let frame = [(6, top), (w - 6, top + rows * ROW + 10)];
    area.draw(&Rectangle::new(frame, WHITE.filled()))
        .map_err(err)?;
    area.draw(&Rectangle::new(frame, BLACK.stroke_width(1)))
        .map_err(err)?;
    for (i, e) in entries.iter().enumerate() {
        let y = top + 15 + ROW * i32::try_from(i).unwrap_or(0);
        match e.swatch {
            Swatch::Line => area.draw(&PathElement::new(
                vec![(14, y), (32, y)],
                e.color.stroke_width(2),
            )),
            Swatch::Box => area.draw(&Rectangle::new(
                [(17, y - 6), (29, y + 6)],
                e.color.filled(),
            )),
        }
        .map_err(err)?;
        area.draw(&Text::new(
            e.text.clone(),
            (38, y),
            ("sans-serif", FONT).into_font().into_text_style(area).pos(
                plotters::style::text_anchor::Pos::new(
                    plotters::style::text_anchor::HPos::Left,
                    plotters::style::text_anchor::VPos::Center,
                ),
            ),
        ))
        .map_err(err)?;
    }
    Ok(())
}
