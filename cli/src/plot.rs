//! The timeline as an SVG (plotters' SVG backend: text is written as `<text>`, so no font is
//! needed to draw it): canary share, error rates, p99s and health score over simulated time,
//! with the rollback (and each service's incident, if any) marked.

use plotters::coord::Shift;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::ffi::OsString;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::error::{CliError, shown_path};
use crate::report::{Outcome, Report, TimelinePoint, human_duration, milliseconds, sampling};

const WIDTH: u32 = 1100;
const HEIGHT: u32 = 1150;
const CANARY: RGBColor = RGBColor(214, 96, 0);
const PRODUCTION: RGBColor = RGBColor(31, 96, 180);
const SCORE: RGBColor = RGBColor(0, 130, 60);
const ROLLBACK: RGBColor = RGBColor(200, 0, 0);
const INCIDENT: RGBColor = RGBColor(140, 60, 160);
const GUIDE: RGBColor = RGBColor(110, 110, 110);

/// A cohort's numbers are drawn once its window holds this many requests (or `min_samples`,
/// if fewer).
const SHOWN_FROM: u64 = 100;

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;
type Chart<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// The unit of the time axis: seconds, minutes or hours, whichever reads best.
fn time_unit(total_s: f64) -> (f64, &'static str) {
    if total_s <= 300.0 {
        (1.0, "s")
    } else if total_s <= 4.0 * 3600.0 {
        (60.0, "min")
    } else {
        (3600.0, "h")
    }
}

/// Splits `(x, value)` points into runs without gaps, for lines that stop where there is no
/// data.
fn runs(points: impl Iterator<Item = (f64, Option<f64>)>) -> Vec<Vec<(f64, f64)>> {
    let mut runs: Vec<Vec<(f64, f64)>> = vec![Vec::new()];
    for (x, value) in points {
        match (value, runs.last_mut()) {
            (Some(y), Some(run)) => run.push((x, y)),
            (None, Some(run)) if !run.is_empty() => runs.push(Vec::new()),
            _ => {}
        }
    }
    runs.retain(|run| !run.is_empty());
    runs
}

/// One labelled line, drawn as runs between gaps.
struct Line {
    label: &'static str,
    color: RGBColor,
    runs: Vec<Vec<(f64, f64)>>,
}

/// A dot with its value written beside it (what the judge saw at the rollback).
struct Dot {
    at: (f64, f64),
    color: RGBColor,
    text: String,
    /// Whether the text goes above the dot (else below), so that two close dots stay
    /// readable.
    above: bool,
}

/// What one panel shows besides its axes.
#[derive(Default)]
struct Content {
    lines: Vec<Line>,
    /// Horizontal dashed lines: value and label.
    guides: Vec<(f64, &'static str)>,
    dots: Vec<Dot>,
    /// Whether the vertical markers carry their labels here (only in one panel, where they
    /// cannot cover data).
    marker_labels: bool,
    /// Written across the panel when no line has a point.
    empty_note: Option<String>,
}

/// Reads `--plot`'s value: a file name ending in `.svg` (in any case), the only format drawn
/// (a bitmap backend would need system fonts to write the labels). A file name that is only
/// the extension (`.svg`, `dir/.SVG`) is refused: it would be a hidden file with no stem, most
/// likely a name left out; a name ending in `/` names a directory. The name may be any bytes,
/// as the other files' names may, and is shown as every path is.
pub fn svg_path(name: OsString) -> Result<PathBuf, String> {
    let bytes = name.as_encoded_bytes();
    let ends_in_svg = bytes.len() >= 4 && bytes[bytes.len() - 4..].eq_ignore_ascii_case(b".svg");
    let only_extension = bytes.len() == 4 || (ends_in_svg && bytes[bytes.len() - 5] == b'/');
    let path = PathBuf::from(name);
    if ends_in_svg && only_extension {
        return Err(format!(
            "\"{}\" has no name before .svg: it would write a hidden file named .svg; give \
             the file a name, e.g. timeline.svg",
            shown_path(&path)
        ));
    }
    if ends_in_svg {
        return Ok(path);
    }
    Err(format!(
        "\"{}\" does not end in .svg: the timeline is drawn as SVG only",
        shown_path(&path)
    ))
}

/// The `--plot` file: checked before the simulation runs, so that a path that cannot be
/// written fails at once rather than after the whole run, and written only once the run has
/// ended. Nothing is created or changed there before then: a run that fails or is interrupted
/// leaves an existing file as it was and no new one. Nor is it ever written over the
/// `--config` file it was read with, by that name or another (a link, a hard link).
#[derive(Debug)]
pub struct PlotFile {
    path: PathBuf,
    /// The `--config` scenario file, if any, which the plot must not be.
    config: Option<PathBuf>,
}

impl PlotFile {
    /// Checks that the plot can be written to `path`, and leaves it as it was: an existing
    /// file (a symbolic link's, followed) is opened for writing, without truncating it, and
    /// closed; where there is none, one is created and removed at once, which checks the
    /// directory. Anything but a regular file is refused before it is opened (a FIFO without
    /// a reader would block the open; a device cannot take the plot), and so is a symbolic
    /// link to nothing, and so is the `config` file, by any name (a usage error, exit 2:
    /// the plot would replace the scenario it was drawn from).
    pub fn check(path: &Path, config: Option<&Path>) -> Result<Self, CliError> {
        let plot = Self {
            path: path.to_path_buf(),
            config: config.map(Path::to_path_buf),
        };
        let mut open = OpenOptions::new();
        open.write(true);
        let checked = if plot.exists()? {
            open.open(path).map(drop)
        } else {
            open.create_new(true)
                .open(path)
                .and_then(|file| fs::remove_file(path).map(|()| drop(file)))
        };
        checked.map_err(|e| plot.refused(e))?;
        Ok(plot)
    }

    /// Draws the timeline of `report` in memory, then writes it to the file in one go: over
    /// an existing file's contents, or to a new file, which is removed again if the write
    /// fails.
    pub fn write(self, report: &Report) -> Result<(), CliError> {
        let mut svg = String::new();
        draw(&mut svg, report).map_err(|message| CliError::Plot {
            path: self.path.clone(),
            message,
        })?;
        // Checked again: the path may have changed in the run (a FIFO would block the open).
        self.exists()?;
        let (mut file, created) = match OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&self.path)
        {
            Ok(file) => (file, true),
            // Opened without O_CREAT, as checked: Linux's protected_regular refuses O_CREAT on
            // another user's file in a sticky directory such as /tmp, even a writable one.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let file = OpenOptions::new()
                    .write(true)
                    .truncate(true)
                    .open(&self.path)
                    .map_err(|e| self.refused(e))?;
                (file, false)
            }
            Err(e) => return Err(self.refused(e)),
        };
        file.write_all(svg.as_bytes()).map_err(|e| {
            if created {
                drop(file);
                let _ = fs::remove_file(&self.path);
            }
            self.refused(e)
        })
    }

    /// Whether there is a file at the path, a symbolic link followed; anything but a regular
    /// file is refused, and so is a link to nothing (the plot is written to a link's file,
    /// never over the link), and the `--config` file ([`Self::is_the_config`]).
    fn exists(&self) -> Result<bool, CliError> {
        let refused = |message: &str| CliError::Plot {
            path: self.path.clone(),
            message: message.into(),
        };
        match fs::metadata(&self.path) {
            Ok(found) if found.is_file() => match &self.config {
                Some(config) if Self::is_the_config(&found, config) => {
                    Err(CliError::Usage(format!(
                        "invalid --plot = \"{}\": it is the --config file, \"{}\": the plot \
                         would replace the scenario; write it to another file",
                        shown_path(&self.path),
                        shown_path(config),
                    )))
                }
                _ => Ok(true),
            },
            Ok(_) => Err(refused(
                "not a regular file (a directory, a device or a FIFO): the plot is an SVG file",
            )),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if fs::symlink_metadata(&self.path).is_ok() {
                    Err(refused(
                        "a symbolic link to nothing: the plot is written to the file a link \
                         points to, and this one points to none",
                    ))
                } else {
                    Ok(false)
                }
            }
            Err(e) => Err(self.refused(e)),
        }
    }

    /// Whether `found`, the plot file's metadata, is that of the file at `config`: the same
    /// device and inode, whatever the names (a symbolic or a hard link, `./s.svg`).
    fn is_the_config(found: &fs::Metadata, config: &Path) -> bool {
        use std::os::unix::fs::MetadataExt;
        fs::metadata(config)
            .is_ok_and(|config| (config.dev(), config.ino()) == (found.dev(), found.ino()))
    }

    fn refused(&self, e: io::Error) -> CliError {
        CliError::Plot {
            path: self.path.clone(),
            message: e.to_string(),
        }
    }
}

fn draw(svg: &mut String, report: &Report) -> Result<(), String> {
    let root = SVGBackend::with_string(svg, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let verdict = match report.outcome {
        Outcome::PromotedToProduction => "promoted to Production",
        Outcome::RolledBack => "rolled back",
        Outcome::Stalled => "stalled",
    };
    let body = root
        .titled(
            &format!("Scenario \"{}\": {verdict}", report.scenario),
            ("sans-serif", 26).into_font(),
        )
        .map_err(|e| e.to_string())?;
    let (subtitle, body) = body.split_vertically(44);
    let lines = [
        format!(
            "{}. {} rps{}, seed {}.",
            report.description,
            crate::error::shown_value(report.rps),
            sampling(report.sample),
            report.seed,
        ),
        format!(
            "Error rate, p99 and score as the judge saw them: its window (the last {} of the \
             stage), drawn once it holds {} requests of the cohort ({} for the score).",
            human_duration(report.window_s),
            report.min_samples.min(SHOWN_FROM),
            report.min_samples,
        ),
    ];
    for (i, line) in lines.iter().enumerate() {
        subtitle
            .draw_text(
                line,
                &("sans-serif", 14).into_font().color(&GUIDE),
                (12, 2 + 19 * i as i32),
            )
            .map_err(|e| e.to_string())?;
    }

    let (scale, unit) = time_unit(report.simulated_s);
    // Room after a rollback, so that its marker and label do not sit on the frame.
    let room = if report.rollback.is_some() { 1.2 } else { 1.0 };
    let frame = Frame {
        x_max: (report.simulated_s * room / scale).max(1e-9),
        x_desc: format!("simulated time ({unit})"),
        markers: markers(report, scale),
    };
    let points = &report.timeline;
    let x = |p: &TimelinePoint| p.t_s / scale;
    // A window of a few requests says little; the judge itself waits for min_samples.
    let shown_from = report.min_samples.min(SHOWN_FROM);
    let enough = |p: &TimelinePoint, cohort: usize| p.window_requests[cohort] >= shown_from;
    let cohorts = |value: &dyn Fn(&TimelinePoint, usize) -> f64| -> Vec<Line> {
        [
            (0, "canary (new version)", CANARY),
            (1, "stable", PRODUCTION),
        ]
        .into_iter()
        .map(|(c, label, color)| Line {
            label,
            color,
            runs: runs(
                points
                    .iter()
                    .map(|p| (x(p), enough(p, c).then(|| value(p, c)))),
            ),
        })
        .collect()
    };
    let judged = report.judged_at_rollback.as_ref();
    let judged_dots = |value: &dyn Fn(&TimelinePoint, usize) -> f64,
                       text: &dyn Fn(f64) -> String| {
        judged.map_or_else(Vec::new, |p| {
            [(0, CANARY), (1, PRODUCTION)]
                .into_iter()
                .map(|(c, color)| Dot {
                    at: (x(p), value(p, c)),
                    color,
                    text: text(value(p, c)),
                    above: c == 0,
                })
                .collect()
        })
    };
    let panels = body.split_evenly((4, 1));

    let share = Content {
        lines: vec![Line {
            label: "traffic to the new version",
            color: CANARY,
            runs: vec![points.iter().map(|p| (x(p), p.canary_percent)).collect()],
        }],
        marker_labels: true,
        ..Content::default()
    };
    frame.panel(&panels[0], "Canary traffic share (%)", 105.0, &share)?;
    share_labels(&panels[0], &frame, report, scale)?;

    let error_value = |p: &TimelinePoint, c: usize| p.error_rate[c] * 100.0;
    let errors = Content {
        lines: cohorts(&error_value),
        dots: judged_dots(&error_value, &|v| format!("{v:.2}%")),
        ..Content::default()
    };
    frame.panel(&panels[1], "Error rate (%)", ceiling(&errors, 1.0), &errors)?;

    let p99_value = |p: &TimelinePoint, c: usize| p.p99_ms[c];
    let p99s = Content {
        lines: cohorts(&p99_value),
        dots: judged_dots(&p99_value, &milliseconds),
        ..Content::default()
    };
    frame.panel(&panels[2], "p99 latency (ms)", ceiling(&p99s, 10.0), &p99s)?;

    let score = Content {
        lines: vec![Line {
            label: "health score",
            color: SCORE,
            runs: runs(points.iter().map(|p| {
                let scored = p.window_requests[0] >= report.min_samples;
                (x(p), p.health_score.filter(|_| scored))
            })),
        }],
        empty_note: Some(format!(
            "no score yet: the judge scores once the canary has min_samples ({}) requests \
             in its window",
            report.min_samples
        )),
        guides: vec![(0.9, "0.9: HEALTHY above"), (0.8, "0.8: ROLLBACK below")],
        dots: judged
            .and_then(|p| Some((x(p), p.health_score?)))
            .map(|at| Dot {
                at,
                color: SCORE,
                text: format!("{:.2}", at.1),
                above: false,
            })
            .into_iter()
            .collect(),
        ..Content::default()
    };
    frame.panel(&panels[3], "Health score (0-1)", 1.05, &score)?;
    root.present().map_err(|e| e.to_string())
}

/// A y range that shows every line and dot with some room, at least `floor`.
fn ceiling(content: &Content, floor: f64) -> f64 {
    let lines = content
        .lines
        .iter()
        .flat_map(|l| l.runs.iter().flatten())
        .map(|&(_, y)| y);
    let dots = content.dots.iter().map(|d| d.at.1);
    (lines.chain(dots).fold(0.0, f64::max) * 1.25).max(floor)
}

/// Vertical markers (x, color, label): the canary's incident's start, the stable version's,
/// then the rollback.
fn markers(report: &Report, scale: f64) -> Vec<(f64, RGBColor, String)> {
    let mut markers = Vec::new();
    for incident in [&report.incident, &report.stable_incident]
        .into_iter()
        .flatten()
    {
        markers.push((
            incident.onset_s / scale,
            INCIDENT,
            format!("{} starts (stage {})", incident.title(), incident.stage),
        ));
    }
    if let Some(rollback) = &report.rollback {
        let rules = if rollback.rules.is_empty() {
            rollback.trigger.clone()
        } else {
            rollback.rules.join(", ")
        };
        markers.push((
            rollback.at_s / scale,
            ROLLBACK,
            format!("rollback: {rules}"),
        ));
    }
    markers
}

/// What every panel shares: the time axis and the markers.
struct Frame {
    x_max: f64,
    x_desc: String,
    markers: Vec<(f64, RGBColor, String)>,
}

impl Frame {
    fn chart<'a, 'b>(&self, area: &'a Area<'b>, y_max: f64) -> Result<Chart<'a, 'b>, String> {
        ChartBuilder::on(area)
            .margin_top(8)
            .margin_right(24)
            .margin_left(8)
            .x_label_area_size(44)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..self.x_max, 0.0..y_max)
            .map_err(|e| e.to_string())
    }

    /// One chart with its axes, lines, guides, dots and markers.
    fn panel(
        &self,
        area: &Area<'_>,
        y_desc: &str,
        y_max: f64,
        content: &Content,
    ) -> Result<(), String> {
        let mut chart = self.chart(area, y_max)?;
        chart
            .configure_mesh()
            .x_desc(self.x_desc.as_str())
            .y_desc(y_desc)
            .axis_desc_style(("sans-serif", 16))
            .label_style(("sans-serif", 13))
            .light_line_style(RGBColor(238, 238, 238))
            .x_max_light_lines(1)
            .y_max_light_lines(1)
            .draw()
            .map_err(|e| e.to_string())?;
        for &(y, label) in &content.guides {
            chart
                .draw_series(DashedLineSeries::new(
                    [(0.0, y), (self.x_max, y)],
                    6,
                    4,
                    GUIDE.stroke_width(1),
                ))
                .map_err(|e| e.to_string())?;
            chart
                .draw_series([Text::new(
                    label,
                    (self.x_max * 0.995, y),
                    ("sans-serif", 12)
                        .into_font()
                        .color(&GUIDE)
                        .pos(Pos::new(HPos::Right, VPos::Bottom)),
                )])
                .map_err(|e| e.to_string())?;
        }
        for line in &content.lines {
            let style = line.color.stroke_width(2);
            for (i, run) in line.runs.iter().enumerate() {
                let series = chart
                    .draw_series(LineSeries::new(run.iter().copied(), style))
                    .map_err(|e| e.to_string())?;
                if i == 0 {
                    let color = line.color;
                    series.label(line.label).legend(move |(x, y)| {
                        PathElement::new([(x, y), (x + 24, y)], color.stroke_width(3))
                    });
                }
            }
        }
        self.draw_markers(&mut chart, y_max, content.marker_labels)?;
        for dot in &content.dots {
            chart
                .draw_series([Circle::new(dot.at, 5, dot.color.filled())])
                .map_err(|e| e.to_string())?;
            chart
                .draw_series([Text::new(
                    format!("{} at rollback", dot.text),
                    (dot.at.0 + self.x_max * 0.008, dot.at.1),
                    ("sans-serif", 13)
                        .into_font()
                        .color(&dot.color)
                        .pos(Pos::new(
                            HPos::Left,
                            if dot.above { VPos::Bottom } else { VPos::Top },
                        )),
                )])
                .map_err(|e| e.to_string())?;
        }
        let drawn = content.lines.iter().any(|l| !l.runs.is_empty());
        if let (false, Some(note)) = (drawn, &content.empty_note) {
            chart
                .draw_series([Text::new(
                    note.clone(),
                    (self.x_max * 0.02, y_max * 0.5),
                    ("sans-serif", 14).into_font().color(&GUIDE),
                )])
                .map_err(|e| e.to_string())?;
        }
        if drawn {
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperLeft)
                .label_font(("sans-serif", 13))
                .background_style(WHITE.mix(0.85))
                .border_style(RGBColor(200, 200, 200))
                .draw()
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    fn draw_markers(
        &self,
        chart: &mut Chart<'_, '_>,
        y_max: f64,
        labels: bool,
    ) -> Result<(), String> {
        let count = self.markers.len();
        for (i, (at, color, label)) in self.markers.iter().enumerate() {
            chart
                .draw_series(LineSeries::new(
                    [(*at, 0.0), (*at, y_max)],
                    color.stroke_width(2),
                ))
                .map_err(|e| e.to_string())?;
            if !labels {
                continue;
            }
            // The rollback (last) is labelled on its right if the label fits there; an
            // incident just before it on its left and lower (the second incident lower still),
            // so that close markers stay readable.
            let room_px = (self.x_max - at) / self.x_max * f64::from(WIDTH - 110);
            let fits_right = room_px > 8.5 * label.chars().count() as f64;
            let height = if i + 1 == count {
                0.80
            } else {
                0.62 - 0.18 * i as f64
            };
            let (anchor, nudge) = if i + 1 == count && fits_right {
                (Pos::new(HPos::Left, VPos::Top), 0.006)
            } else {
                (Pos::new(HPos::Right, VPos::Top), -0.006)
            };
            chart
                .draw_series([Text::new(
                    label.clone(),
                    (*at + self.x_max * nudge, y_max * height),
                    ("sans-serif", 14).into_font().color(color).pos(anchor),
                )])
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

/// Writes each stage's share ("5%", "staging") above its step in the first panel.
fn share_labels(area: &Area<'_>, frame: &Frame, report: &Report, scale: f64) -> Result<(), String> {
    let mut chart = frame.chart(area, 105.0)?;
    for stage in &report.stages {
        let label = if stage.environment == "staging" {
            "staging".to_string()
        } else {
            format!("{}%", stage.traffic_percent)
        };
        chart
            .draw_series([Text::new(
                label,
                (
                    stage.start_s / scale,
                    stage.traffic_percent.min(100.0) + 3.0,
                ),
                ("sans-serif", 13)
                    .into_font()
                    .color(&BLACK)
                    .pos(Pos::new(HPos::Left, VPos::Bottom)),
            )])
            .map_err(|e| e.to_string())?;
    }
    if report.outcome == Outcome::PromotedToProduction
        && let Some(last) = report.stages.last()
    {
        chart
            .draw_series([Text::new(
                "production",
                ((last.start_s + last.duration_s) / scale, 103.0),
                ("sans-serif", 13)
                    .into_font()
                    .color(&BLACK)
                    .pos(Pos::new(HPos::Right, VPos::Bottom)),
            )])
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_break_at_gaps() {
        let points = [
            (0.0, None),
            (1.0, Some(1.0)),
            (2.0, Some(2.0)),
            (3.0, None),
            (4.0, Some(4.0)),
        ];
        assert_eq!(
            runs(points.into_iter()),
            vec![vec![(1.0, 1.0), (2.0, 2.0)], vec![(4.0, 4.0)]]
        );
    }

    /// A path in the temporary directory, unique to this test process and `name`, not there.
    fn fresh(name: &str) -> PathBuf {
        let path = std::env::temp_dir().join(format!(
            "promotion-gates-plot-{}-{name}",
            std::process::id()
        ));
        let _ = fs::remove_file(&path);
        path
    }

    #[test]
    fn only_svg_names_are_taken() {
        assert_eq!(
            svg_path("a/b.svg".into()).unwrap(),
            PathBuf::from("a/b.svg")
        );
        assert!(svg_path("B.SVG".into()).is_ok());
        use std::os::unix::ffi::OsStrExt;
        let not_utf8 = std::ffi::OsStr::from_bytes(b"out\xff.svg");
        assert_eq!(svg_path(not_utf8.into()).unwrap(), PathBuf::from(not_utf8));
        // A file name that is only the extension is refused; one with a stem, even ".", is not.
        for name in [".svg", "dir/.SVG"] {
            let e = svg_path(name.into()).unwrap_err();
            assert!(
                e.starts_with(&format!("\"{name}\" has no name before .svg")),
                "{e}"
            );
        }
        assert_eq!(svg_path("..svg".into()).unwrap(), PathBuf::from("..svg"));
        for name in ["out.png", "out", "dir/", "out.svg.png", "out.svg/", "svg"] {
            let e = svg_path(name.into()).unwrap_err();
            assert_eq!(
                e,
                format!("\"{name}\" does not end in .svg: the timeline is drawn as SVG only")
            );
        }
        // A name that is not UTF-8 is shown byte for byte, as every path is (not with U+FFFD,
        // which would name another file).
        let e = svg_path(std::ffi::OsStr::from_bytes(b"a\xff.txt").into()).unwrap_err();
        assert!(e.starts_with("\"a\\xFF.txt\" does not end in .svg"), "{e}");
    }

    #[test]
    fn a_path_that_cannot_be_written_fails_on_check() {
        let e = PlotFile::check(Path::new("/nonexistent/dir/x.svg"), None).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("cannot draw /nonexistent/dir/x.svg: "),
            "{e}"
        );
        let e = PlotFile::check(&std::env::temp_dir(), None).unwrap_err();
        assert!(matches!(e, CliError::Plot { .. }), "{e}");
    }

    #[test]
    fn the_check_leaves_the_path_as_it_was() {
        // The file was created before the run and written after it: a run interrupted in
        // between left an empty SVG, or, for an existing one, the run's length without it.
        let missing = fresh("unfinished.svg");
        let plot = PlotFile::check(&missing, None).unwrap();
        assert!(!missing.exists());
        drop(plot);
        let existing = fresh("existing.svg");
        fs::write(&existing, "kept").unwrap();
        drop(PlotFile::check(&existing, None).unwrap());
        let kept = fs::read_to_string(&existing).unwrap();
        fs::remove_file(&existing).unwrap();
        assert_eq!(kept, "kept");
    }

    #[test]
    fn a_plot_named_by_a_symbolic_link_is_written_to_the_file_it_points_to() {
        let file = fresh("pointed-to.svg");
        let link = fresh("link.svg");
        fs::write(&file, "old").unwrap();
        fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        std::os::unix::fs::symlink(&file, &link).unwrap();
        PlotFile::check(&link, None)
            .unwrap()
            .write(&short_report())
            .unwrap();
        let linked = fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink();
        let svg = fs::read_to_string(&file).unwrap();
        let mode =
            std::os::unix::fs::PermissionsExt::mode(&fs::metadata(&file).unwrap().permissions());
        fs::remove_file(&link).unwrap();
        fs::remove_file(&file).unwrap();
        assert!(linked, "the link was replaced");
        assert!(svg.starts_with("<svg"), "{}", &svg[..80.min(svg.len())]);
        assert_eq!(mode & 0o777, 0o600, "the file's permissions are kept");
    }

    #[test]
    fn a_symbolic_link_to_nothing_is_refused_and_nothing_made_where_it_points() {
        // As before the plot was written through a temporary file (the open's O_EXCL met the
        // link, the open without it found no file), with a message that says why; 05b95d5
        // replaced the link by a regular file.
        let target = fresh("nowhere.svg");
        let link = fresh("dangling.svg");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let e = PlotFile::check(&link, None).unwrap_err();
        let is_link = fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink();
        let made = target.exists();
        fs::remove_file(&link).unwrap();
        assert!(
            e.to_string().ends_with(
                ": a symbolic link to nothing: the plot is written to the \
                                     file a link points to, and this one points to none"
            ),
            "{e}"
        );
        assert!(is_link && !made);
    }

    #[test]
    fn a_name_as_long_as_the_file_system_takes_is_written() {
        // A temporary file named after the plot (`.NAME.PID-N.tmp`) exceeded NAME_MAX (255
        // bytes) for names from about 240 bytes.
        for length in [251, 255] {
            let prefix = fresh("").file_name().unwrap().len();
            let path = fresh(&format!("{}.svg", "n".repeat(length - prefix - 4)));
            assert_eq!(path.file_name().unwrap().len(), length);
            PlotFile::check(&path, None)
                .unwrap()
                .write(&short_report())
                .unwrap();
            let svg = fs::read_to_string(&path).unwrap();
            fs::remove_file(&path).unwrap();
            assert!(
                svg.starts_with("<svg"),
                "{length}: {}",
                &svg[..80.min(svg.len())]
            );
        }
    }

    #[test]
    fn an_existing_file_in_a_directory_that_cannot_be_written_is_written() {
        // A temporary file and a rename need the directory's write permission, which writing
        // over a file does not.
        let dir = fresh("read-only-dir");
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir(&dir).unwrap();
        let path = dir.join("plot.svg");
        fs::write(&path, "old").unwrap();
        let mode = |bits| std::os::unix::fs::PermissionsExt::from_mode(bits);
        fs::set_permissions(&dir, mode(0o555)).unwrap();
        // Root (or CAP_DAC_OVERRIDE) writes in the directory whatever its mode says: the probe
        // that succeeds tells, and this test then runs again in a child without those
        // capabilities (as in CI, run as root), rather than showing nothing.
        let privileged = fs::write(dir.join("probe"), "").is_ok();
        let written = (!privileged).then(|| {
            PlotFile::check(&path, None)
                .and_then(|plot| plot.write(&short_report()))
                .map(|()| fs::read_to_string(&path).unwrap())
        });
        fs::set_permissions(&dir, mode(0o755)).unwrap();
        fs::remove_dir_all(&dir).unwrap();
        match written {
            Some(svg) => assert!(svg.unwrap().starts_with("<svg")),
            None => run_without_dac_override(
                "an_existing_file_in_a_directory_that_cannot_be_written_is_written",
            ),
        }
    }

    /// Runs the test `name` of this module again, in a child process of the test binary whose
    /// capabilities that bypass a file's mode (`CAP_DAC_OVERRIDE`, `CAP_DAC_READ_SEARCH`) are
    /// dropped by util-linux's `setpriv`, and fails unless it passed there.
    fn run_without_dac_override(name: &str) {
        const CHILD: &str = "PROMOTION_GATES_TEST_WITHOUT_DAC_OVERRIDE";
        assert!(
            std::env::var_os(CHILD).is_none(),
            "{name}: the directory's mode binds no one even without CAP_DAC_OVERRIDE"
        );
        let module = module_path!().split_once("::").unwrap().1;
        let dropped = "-dac_override,-dac_read_search";
        let output = std::process::Command::new("setpriv")
            .arg(format!("--inh-caps={dropped}"))
            .arg(format!("--bounding-set={dropped}"))
            .arg(std::env::current_exe().unwrap())
            .args(["--exact", &format!("{module}::{name}"), "--nocapture"])
            .env(CHILD, "1")
            .output()
            .unwrap_or_else(|error| {
                panic!("{name}: privileged, and setpriv (util-linux) could not run: {error}")
            });
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success() && stdout.contains("test result: ok. 1 passed"),
            "{name}, run again without CAP_DAC_OVERRIDE: {}\n{stdout}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// The report of a short run.
    fn short_report() -> Report {
        let mut scenario = crate::scenario::Scenario {
            rps: 50.0,
            ..Default::default()
        };
        scenario.scale_to(12.0);
        let progress = crate::progress::Progress::new(scenario.planned_seconds(), false, false);
        crate::rollout::run(&scenario, &progress).unwrap()
    }

    #[test]
    fn write_replaces_a_longer_file_whole() {
        let report = short_report();
        let path = fresh("longer.svg");
        fs::write(&path, "x".repeat(1 << 20)).unwrap();
        PlotFile::check(&path, None)
            .unwrap()
            .write(&report)
            .unwrap();
        let svg = fs::read_to_string(&path).unwrap();
        fs::remove_file(&path).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..80.min(svg.len())]);
        assert!(svg.trim_end().ends_with("</svg>"));
        assert!(!svg.contains("xxx"));
    }

    #[test]
    fn a_path_taken_by_a_directory_in_the_run_is_refused_and_left_as_it_is() {
        let path = fresh("taken.svg");
        let plot = PlotFile::check(&path, None).unwrap();
        fs::create_dir(&path).unwrap();
        fs::write(path.join("inside"), "kept").unwrap();
        let e = plot.write(&short_report()).unwrap_err();
        let inside = fs::read_to_string(path.join("inside")).unwrap();
        fs::remove_dir_all(&path).unwrap();
        assert!(matches!(e, CliError::Plot { .. }), "{e}");
        assert_eq!(inside, "kept");
    }

    #[test]
    fn a_fast_p99_at_the_rollback_keeps_its_digits() {
        let mut report = short_report();
        report.judged_at_rollback = Some(TimelinePoint {
            t_s: report.simulated_s,
            canary_percent: 0.0,
            window_requests: [100, 1000],
            error_rate: [0.5, 0.0],
            p99_ms: [0.5, 0.25],
            health_score: Some(0.5),
        });
        let mut svg = String::new();
        draw(&mut svg, &report).unwrap();
        assert!(svg.contains("0.5 ms at rollback"), "canary p99");
        assert!(svg.contains("0.25 ms at rollback"), "stable p99");
    }

    #[test]
    fn time_axis_unit_fits_the_run() {
        assert_eq!(time_unit(120.0).1, "s");
        assert_eq!(time_unit(3600.0).1, "min");
        assert_eq!(time_unit(86_400.0).1, "h");
    }
}
