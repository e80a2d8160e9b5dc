//! The report's figures, with plotters, each as SVG and PNG: accuracy with 95% CI whiskers per row
//! group (methods side by side per dataset and shot, the authors' numbers as crosses), training curves
//! (mean loss and validation accuracy per epoch) per group, dataset and shot, and the distribution of
//! per-episode accuracy per method. Text needs a TrueType font: `FEWSHOT_FONT`, else DejaVu Sans or
//! Liberation Sans from the usual system folders; without one no figure is drawn and the report says so.

use std::path::{Path, PathBuf};

use plotters::prelude::*;

use super::accuracy_table::TableRow;
use super::run_results::CellResult;
use crate::error::{Error, Result};

const FONT_CANDIDATES: [&str; 4] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/Library/Fonts/Arial.ttf",
];

/// Registers a font for the figures once; the path used, or why there is none.
pub fn register_font() -> std::result::Result<PathBuf, String> {
    static FONT: std::sync::OnceLock<std::result::Result<PathBuf, String>> =
        std::sync::OnceLock::new();
    FONT.get_or_init(|| {
        let candidates: Vec<PathBuf> = std::env::var_os("FEWSHOT_FONT")
            .map(PathBuf::from)
            .into_iter()
            .chain(FONT_CANDIDATES.iter().map(PathBuf::from))
            .collect();
        for path in &candidates {
            if let Ok(bytes) = std::fs::read(path) {
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                    return Ok(path.clone());
                }
            }
        }
        Err(format!(
            "no TrueType font found (tried {}); set FEWSHOT_FONT to a .ttf file to get figures",
            FONT_CANDIDATES.join(", ")
        ))
    })
    .clone()
}

fn plot_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::invalid(format!("drawing {}: {e}", path.display()))
}

/// One figure of the report, drawn on any plotters backend (SVG text and the PNG's pixels).
enum Figure<'a> {
    Accuracy(&'a str, &'a [&'a TableRow]),
    Curves(&'a str, &'a [&'a CellResult]),
    Distribution(&'a str, &'a [&'a CellResult]),
}

type Area<DB> = DrawingArea<DB, plotters::coord::Shift>;

impl Figure<'_> {
    /// Fills `area` white, draws the figure and presents it.
    fn draw<DB: DrawingBackend>(&self, area: Area<DB>) -> std::result::Result<(), String> {
        area.fill(&WHITE).map_err(|e| e.to_string())?;
        match *self {
            Figure::Accuracy(title, rows) => accuracy_chart(&area, title, rows)?,
            Figure::Curves(title, cells) => curves_chart(&area, title, cells)?,
            Figure::Distribution(title, cells) => distribution_chart(&area, title, cells)?,
        }
        area.present().map_err(|e| e.to_string())
    }
}

/// Draws `figure` into `<stem>.svg` and `<stem>.png` (the PNG encoded with `image`).
fn both_formats(dir: &Path, stem: &str, size: (u32, u32), figure: Figure) -> Result<Vec<PathBuf>> {
    let svg = dir.join(format!("{stem}.svg"));
    let mut svg_text = String::new();
    figure
        .draw(SVGBackend::with_string(&mut svg_text, size).into_drawing_area())
        .map_err(|e| plot_err(&svg, e))?;
    crate::atomic_write::write_atomically(&svg, svg_text.as_bytes())?;
    let png = dir.join(format!("{stem}.png"));
    let mut pixels = vec![255u8; (size.0 * size.1 * 3) as usize];
    figure
        .draw(BitMapBackend::with_buffer(&mut pixels, size).into_drawing_area())
        .map_err(|e| plot_err(&png, e))?;
    let img = image::RgbImage::from_raw(size.0, size.1, pixels).expect("buffer size");
    let mut encoded = Vec::new();
    img.write_to(
        &mut std::io::Cursor::new(&mut encoded),
        image::ImageFormat::Png,
    )
    .map_err(|e| plot_err(&png, e))?;
    crate::atomic_write::write_atomically(&png, &encoded)?;
    Ok(vec![svg, png])
}

const PALETTE: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

fn accuracy_chart<DB: DrawingBackend>(
    area: &Area<DB>,
    title: &str,
    rows: &[&TableRow],
) -> std::result::Result<(), String> {
    let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    let values: Vec<f64> = rows
        .iter()
        .flat_map(|r| {
            [
                r.accuracy.map(|a| a - r.ci95.unwrap_or(0.0)),
                r.accuracy.map(|a| a + r.ci95.unwrap_or(0.0)),
                r.published,
            ]
        })
        .flatten()
        .collect();
    let lo = values.iter().copied().fold(100.0f64, f64::min).max(0.0) - 2.0;
    let hi = values.iter().copied().fold(0.0f64, f64::max).min(100.0) + 2.0;
    let labels: Vec<String> = rows
        .iter()
        .map(|r| format!("{} {}s {}", short_dataset(&r.dataset), r.shot, r.method))
        .collect();
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(-0.5f64..(rows.len() as f64 - 0.5), lo.min(hi - 1.0)..hi)
        .map_err(e)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(rows.len().max(1))
        .x_label_formatter(&|x| {
            let i = x.round();
            if (x - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < labels.len() {
                labels[i as usize].clone()
            } else {
                String::new()
            }
        })
        .x_label_style(("sans-serif", 11))
        .y_desc("accuracy (%)")
        .draw()
        .map_err(e)?;
    for (i, r) in rows.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        if let (Some(a), Some(c)) = (r.accuracy, r.ci95) {
            chart
                .draw_series(std::iter::once(ErrorBar::new_vertical(
                    i as f64,
                    a - c,
                    a,
                    a + c,
                    color.filled(),
                    8,
                )))
                .map_err(e)?;
        }
        if let Some(p) = r.published {
            chart
                .draw_series(std::iter::once(Cross::new(
                    (i as f64, p),
                    6,
                    BLACK.stroke_width(2),
                )))
                .map_err(e)?;
        }
    }
    Ok(())
}

fn short_dataset(d: &str) -> &str {
    match d {
        "mini-imagenet" => "mini",
        "tiered-imagenet" => "tiered",
        "cub-200-2011" => "CUB",
        "cifar-fs" => "CIFAR-FS",
        other => other,
    }
}

fn curves_chart<DB: DrawingBackend>(
    area: &Area<DB>,
    title: &str,
    cells: &[&CellResult],
) -> std::result::Result<(), String> {
    let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    let (left, right) = area.split_horizontally(area.dim_in_pixel().0 / 2);
    let epochs = cells
        .iter()
        .map(|c| c.epochs.len())
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let max_loss = cells
        .iter()
        .flat_map(|c| c.epochs.iter().map(|r| r.mean_loss))
        .fold(1e-6f64, f64::max);
    for (panel, name) in [
        (left, "mean training loss"),
        (right, "validation accuracy (%)"),
    ] {
        let accuracy = name.starts_with("validation");
        let y_max = if accuracy { 100.0 } else { max_loss * 1.05 };
        let mut chart = ChartBuilder::on(&panel)
            .caption(format!("{title}: {name}"), ("sans-serif", 14))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(45)
            .build_cartesian_2d(0.0..epochs + 1.0, 0.0..y_max)
            .map_err(e)?;
        chart.configure_mesh().x_desc("epoch").draw().map_err(e)?;
        for (i, c) in cells.iter().enumerate() {
            let color = PALETTE[i % PALETTE.len()];
            let points: Vec<(f64, f64)> = c
                .epochs
                .iter()
                .map(|r| {
                    (
                        r.epoch as f64 + 1.0,
                        if accuracy {
                            100.0 * r.val_accuracy
                        } else {
                            r.mean_loss
                        },
                    )
                })
                .collect();
            chart
                .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
                .map_err(e)?
                .label(c.planned.method.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
                });
            chart
                .draw_series(
                    points
                        .into_iter()
                        .map(|p| Circle::new(p, 3, color.filled())),
                )
                .map_err(e)?;
        }
        draw_legend(&mut chart)?;
    }
    Ok(())
}

/// The series' legend, boxed over the chart (the curves' and the distributions' panels).
fn draw_legend<'a, DB: DrawingBackend + 'a, CT: plotters::coord::CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
) -> std::result::Result<(), String> {
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| e.to_string())
}

fn distribution_chart<DB: DrawingBackend>(
    area: &Area<DB>,
    title: &str,
    cells: &[&CellResult],
) -> std::result::Result<(), String> {
    let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    const BINS: usize = 20;
    let histograms: Vec<(String, Vec<f64>)> = cells
        .iter()
        .filter_map(|c| {
            let eps = c.episodes.as_ref()?;
            let mut h = vec![0.0; BINS];
            for r in eps {
                h[((r.accuracy * BINS as f64) as usize).min(BINS - 1)] += 1.0 / eps.len() as f64;
            }
            Some((c.planned.method.clone(), h))
        })
        .collect();
    let y_max = histograms
        .iter()
        .flat_map(|(_, h)| h.iter().copied())
        .fold(0.05f64, f64::max)
        * 1.1;
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 16))
        .margin(12)
        .x_label_area_size(35)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..100.0, 0.0..y_max)
        .map_err(e)?;
    chart
        .configure_mesh()
        .x_desc("per-episode accuracy (%)")
        .y_desc("share of episodes")
        .draw()
        .map_err(e)?;
    for (i, (method, h)) in histograms.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        let points: Vec<(f64, f64)> = h
            .iter()
            .enumerate()
            .map(|(b, &v)| ((b as f64 + 0.5) * 100.0 / BINS as f64, v))
            .collect();
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))
            .map_err(e)?
            .label(method.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
            });
    }
    draw_legend(&mut chart)?;
    Ok(())
}

/// Draws every figure into `dir`; returns the files written.
pub fn draw_all(
    dir: &Path,
    rows: &[TableRow],
    results: &[CellResult],
    groups: &[String],
) -> Result<Vec<PathBuf>> {
    register_font().map_err(Error::invalid)?;
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let mut written = Vec::new();
    for group in groups {
        let group_rows: Vec<&TableRow> = rows.iter().filter(|r| &r.group == group).collect();
        if group_rows.is_empty() {
            continue;
        }
        let caption = format!("{group} protocol: accuracy ± 95% CI (× = the authors' number)");
        let width = (120 + 115 * group_rows.len() as u32).max(640);
        written.extend(both_formats(
            dir,
            &format!("accuracy-{group}"),
            (width, 520),
            Figure::Accuracy(&caption, &group_rows),
        )?);
        let mut keys: Vec<(String, usize)> = results
            .iter()
            .filter(|c| &c.planned.group == group)
            .map(|c| (c.planned.dataset.clone(), c.planned.shot))
            .collect();
        keys.sort();
        keys.dedup();
        for (dataset, shot) in keys {
            let cells: Vec<&CellResult> = results
                .iter()
                .filter(|c| {
                    &c.planned.group == group
                        && c.planned.dataset == dataset
                        && c.planned.shot == shot
                        && c.planned.seed == results[0].planned.seed
                })
                .collect();
            let stem = format!("{group}-{dataset}-{shot}shot");
            let t = format!("{group}, {dataset}, {shot}-shot");
            let t = t.as_str();
            if cells.iter().any(|c| !c.epochs.is_empty()) {
                written.extend(both_formats(
                    dir,
                    &format!("curves-{stem}"),
                    (960, 400),
                    Figure::Curves(t, &cells),
                )?);
            }
            if cells.iter().any(|c| c.episodes.is_some()) {
                written.extend(both_formats(
                    dir,
                    &format!("episodes-{stem}"),
                    (720, 420),
                    Figure::Distribution(t, &cells),
                )?);
            }
        }
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(method: &str, shot: usize, accuracy: Option<f64>, published: Option<f64>) -> TableRow {
        TableRow {
            group: "controlled".into(),
            method: method.into(),
            dataset: "mini-imagenet".into(),
            shot,
            accuracy,
            ci95: accuracy.map(|_| 1.5),
            n_episodes: accuracy.map(|_| 100),
            seeds_done: accuracy.is_some() as usize,
            seeds_planned: 1,
            seed_spread: None,
            published,
            published_source: None,
            delta: None,
            reproductions: None,
            related: vec![],
            backbone: "ResNet-12".into(),
            imagenet_overlap: false,
            status: "done".into(),
            cell_hashes: vec![],
            ci_formula: String::new(),
        }
    }

    /// The text nodes of an SVG written by plotters (each `<text …>` is followed by its text).
    fn svg_texts(svg: &str) -> Vec<String> {
        svg.split("<text")
            .skip(1)
            .filter_map(|t| t.split_once('>').map(|(_, rest)| rest))
            .filter_map(|rest| rest.split("</text>").next())
            .map(|t| t.trim().to_string())
            .collect()
    }

    #[test]
    fn the_accuracy_figure_draws_a_whisker_per_result_a_cross_per_published_number_and_every_label()
    {
        register_font().expect(
            "the figures need a TrueType font: install fonts-dejavu-core or set FEWSHOT_FONT",
        );
        let rows = [
            row("protonet", 1, Some(40.0), Some(49.4)),
            row("cosine", 1, Some(42.0), None),
            row("deepemd", 1, None, Some(66.5)),
        ];
        let refs: Vec<&TableRow> = rows.iter().collect();
        let mut svg = String::new();
        {
            let area = SVGBackend::with_string(&mut svg, (640, 480)).into_drawing_area();
            Figure::Accuracy("test chart", &refs).draw(area).unwrap();
        }
        // one centre point per measured row
        assert_eq!(svg.matches("<circle").count(), 2, "{svg}");
        // a cross is two strokes of width 2; nothing else is drawn that wide
        assert_eq!(svg.matches("stroke-width=\"2\"").count(), 2 * 2, "{svg}");
        let texts = svg_texts(&svg);
        for label in [
            "mini 1s protonet",
            "mini 1s cosine",
            "mini 1s deepemd",
            "test chart",
        ] {
            assert_eq!(
                texts.iter().filter(|t| *t == label).count(),
                1,
                "{label} in {texts:?}"
            );
        }
    }

    fn cell(method: &str, epochs: usize, accuracies: &[f64]) -> CellResult {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/manifests/cells/ci/omniglot-conv4-protonet-5w1s.toml"
        ))
        .unwrap();
        CellResult {
            planned: crate::manifest::experiment::PlannedCell {
                group: "controlled".into(),
                method: method.into(),
                dataset: "mini-imagenet".into(),
                shot: 1,
                seed: 1,
                imagenet_pretrained: false,
                cell: crate::manifest::cell::CellConfig::from_toml(&text).unwrap(),
            },
            hash: format!("{method}-hash"),
            status: super::super::run_results::CellStatus::Done,
            eval: None,
            episodes: Some(
                accuracies
                    .iter()
                    .enumerate()
                    .map(
                        |(i, &accuracy)| crate::eval::episode_file::EpisodeAccuracy {
                            episode: i as u64,
                            accuracy,
                            loss: None,
                        },
                    )
                    .collect(),
            ),
            epochs: (0..epochs)
                .map(|e| super::super::run_results::EpochRecord {
                    epoch: e,
                    lr: 0.1,
                    mean_loss: 2.0 - 0.3 * e as f64,
                    val_accuracy: 0.3 + 0.1 * e as f64,
                    seconds: 1.0,
                    commit: None,
                })
                .collect(),
            phases: None,
            node: None,
            train_commits: vec![],
            train_cpus: vec![],
        }
    }

    #[test]
    fn the_curves_figure_draws_a_point_per_epoch_per_method_in_both_panels_with_legends() {
        register_font().expect("a TrueType font (fonts-dejavu-core or FEWSHOT_FONT)");
        let cells = [cell("protonet", 3, &[0.5]), cell("lwfm-spm", 2, &[0.5])];
        let refs: Vec<&CellResult> = cells.iter().collect();
        let mut svg = String::new();
        {
            let area = SVGBackend::with_string(&mut svg, (960, 400)).into_drawing_area();
            Figure::Curves("t", &refs).draw(area).unwrap();
        }
        // (3 + 2) epochs, in the loss panel and in the accuracy panel
        assert_eq!(svg.matches("<circle").count(), 2 * (3 + 2), "{svg}");
        let texts = svg_texts(&svg);
        for (label, count) in [
            ("t: mean training loss", 1),
            ("t: validation accuracy (%)", 1),
            ("protonet", 2),
            ("lwfm-spm", 2),
        ] {
            assert_eq!(
                texts.iter().filter(|t| *t == label).count(),
                count,
                "{label} in {texts:?}"
            );
        }
    }

    #[test]
    fn the_distribution_figure_draws_one_histogram_line_per_method_with_its_legend() {
        register_font().expect("a TrueType font (fonts-dejavu-core or FEWSHOT_FONT)");
        let cells = [
            cell("protonet", 0, &[0.2, 0.4, 0.4, 0.9]),
            cell("cosine", 0, &[0.6, 0.6]),
            cell("deepemd", 0, &[1.0]),
        ];
        let refs: Vec<&CellResult> = cells.iter().collect();
        let mut svg = String::new();
        {
            let area = SVGBackend::with_string(&mut svg, (720, 420)).into_drawing_area();
            Figure::Distribution("dist", &refs).draw(area).unwrap();
        }
        // per method: its histogram line (20 bins, 20 points) and its legend stroke (2 points)
        let lines: Vec<usize> = svg
            .split("<polyline")
            .skip(1)
            .filter(|l| l.contains("stroke-width=\"2\""))
            .map(|l| {
                let points = l
                    .split("points=\"")
                    .nth(1)
                    .unwrap()
                    .split('"')
                    .next()
                    .unwrap();
                points.split_whitespace().count()
            })
            .collect();
        assert_eq!(lines.iter().filter(|&&n| n == 20).count(), 3, "{lines:?}");
        let texts = svg_texts(&svg);
        for label in [
            "dist",
            "protonet",
            "cosine",
            "deepemd",
            "per-episode accuracy (%)",
        ] {
            assert_eq!(
                texts.iter().filter(|t| *t == label).count(),
                1,
                "{label} in {texts:?}"
            );
        }
    }
}
