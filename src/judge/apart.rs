//! Two numbers a message shows side by side (a compliance below its `slo_threshold`, a health
//! score below the healthy threshold, a finding's observed value against its limit), written so
//! that two different numbers never read equal, nor in the wrong order.
//!
//! Each is written in its short form (`{:.4}`, or as a percentage with `{:.3}`) when that
//! already tells them apart the right way round, as ordinary messages show them. Otherwise the
//! fixed decimals are widened, both alike, until the two read apart (a compliance of 0.99998
//! below an `slo_threshold` of 0.99999 reads `0.99998 below 0.99999`, not `1.0000 below
//! 1.0000`), and past 17 decimals each is written in its shortest form that reads back as the
//! same `f64`, which two different `f64`s never share. A percentage widened is the number's
//! own decimals with the point moved two places, not those of the number times 100, which
//! may round two numbers to one. Written without allocating (the record path logs them).

use std::cmp::Ordering;
use std::fmt::{self, Write as _};

/// How many decimals a number's short form has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Digits {
    /// This many, fixed (`{:.N}`), widened when that shows the pair as equal.
    Fixed(usize),
    /// The shortest that reads back as the same `f64` (`{}`), never widened.
    Shortest,
}

/// The most fixed decimals tried before both numbers are written in their shortest form.
const MAX_FIXED_DECIMALS: usize = 17;

/// Longest form the check reads back; a longer one is taken as not telling the pair apart.
const CHECKED_BYTES: usize = 48;

/// One of the pair, as [`apart`] writes it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Shown {
    value: f64,
    form: Form,
    percent: bool,
}

/// How a [`Shown`] number is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    /// The short form: a percentage as the number times 100.
    Short(Digits),
    /// This many decimals, exactly: a percentage as the number's own decimals, point moved.
    Widened(usize),
    /// The shortest form that reads back as the same `f64` (a percentage's point moved).
    Roundtrip,
}

/// `a` and `b`, with `digits` decimals each (as percentages when `percent`), or more, or the
/// shortest form, when fewer would show them equal or in the wrong order although they are
/// not: see the module's documentation.
pub(crate) fn apart(a: (f64, Digits), b: (f64, Digits), percent: bool) -> [Shown; 2] {
    let shown = |form: &dyn Fn(Digits) -> Form| {
        [(a.0, form(a.1)), (b.0, form(b.1))].map(|(value, form)| Shown {
            value,
            form,
            percent,
        })
    };
    let short = shown(&Form::Short);
    let order = match a.0.partial_cmp(&b.0) {
        Some(Ordering::Less) => Ordering::Less,
        Some(Ordering::Greater) => Ordering::Greater,
        _ => return short,
    };
    if reads_in_order(short, order) {
        return short;
    }
    let fixed = |digits| match digits {
        Digits::Fixed(decimals) => Some(decimals),
        Digits::Shortest => None,
    };
    if let Some(least) = [fixed(a.1), fixed(b.1)].into_iter().flatten().min() {
        for decimals in least..=MAX_FIXED_DECIMALS {
            let widened = shown(&|digits| match digits {
                Digits::Fixed(own) => Form::Widened(own.max(decimals)),
                Digits::Shortest => Form::Short(Digits::Shortest),
            });
            if reads_in_order(widened, order) {
                return widened;
            }
        }
    }
    shown(&|_| Form::Roundtrip)
}

/// Whether `pair`, written and read back, compares as `order`.
fn reads_in_order(pair: [Shown; 2], order: Ordering) -> bool {
    let read = |shown: Shown| {
        let mut text = Text::default();
        write!(text, "{shown}").ok()?;
        text.read()
    };
    match (read(pair[0]), read(pair[1])) {
        (Some(a), Some(b)) => a.partial_cmp(&b) == Some(order),
        _ => false,
    }
}

impl fmt::Display for Shown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let value = self.value;
        match (self.form, self.percent) {
            (Form::Short(Digits::Fixed(decimals)), true) => {
                write!(f, "{:.*}", decimals, value * 100.0)
            }
            (Form::Short(Digits::Fixed(decimals)), false) | (Form::Widened(decimals), false) => {
                write!(f, "{value:.decimals$}")
            }
            (Form::Short(Digits::Shortest), true) => write!(f, "{}", value * 100.0),
            (Form::Short(Digits::Shortest), false) | (Form::Roundtrip, false) => {
                write!(f, "{value}")
            }
            (Form::Widened(decimals), true) if value.is_finite() => {
                let mut percent = PointMoved::new(f);
                write!(percent, "{:.*}", decimals + 2, value)?;
                percent.finish()
            }
            (Form::Roundtrip, true) if value.is_finite() => {
                let mut percent = PointMoved::new(f);
                write!(percent, "{value}")?;
                percent.finish()
            }
            (_, true) => write!(f, "{}", value * 100.0),
        }
    }
}

/// A finite number as `{}` or `{:.N}` write it (a sign, digits, a point, digits), written
/// with its point moved two places right, exactly: its value as a percentage.
struct PointMoved<'a, 'b> {
    out: &'a mut fmt::Formatter<'b>,
    /// Digits after the point read so far, or `None` before the point.
    after_point: Option<usize>,
    /// Whether a digit was written (leading zeros are not).
    written: bool,
}

impl<'a, 'b> PointMoved<'a, 'b> {
    fn new(out: &'a mut fmt::Formatter<'b>) -> Self {
        PointMoved {
            out,
            after_point: None,
            written: false,
        }
    }

    /// Writes `digit`, read at its place.
    fn digit(&mut self, digit: char) -> fmt::Result {
        match self.after_point {
            // Now before the point: its first digits but not leading zeros.
            None | Some(0) | Some(1) => {
                self.after_point = self.after_point.map(|n| n + 1);
                if digit != '0' || self.written {
                    self.written = true;
                    self.out.write_char(digit)?;
                }
                Ok(())
            }
            Some(2) => {
                self.after_point = Some(3);
                if !self.written {
                    self.written = true;
                    self.out.write_char('0')?;
                }
                self.out.write_char('.')?;
                self.out.write_char(digit)
            }
            Some(_) => self.out.write_char(digit),
        }
    }

    /// Writes the zeros a number with fewer than two decimals needs (`0.5` is `50`).
    fn finish(mut self) -> fmt::Result {
        let after_point = self.after_point.get_or_insert(0);
        let missing = 2usize.saturating_sub(*after_point);
        for _ in 0..missing {
            self.digit('0')?;
        }
        if !self.written {
            self.out.write_char('0')?;
        }
        Ok(())
    }
}

impl fmt::Write for PointMoved<'_, '_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for c in s.chars() {
            match c {
                '.' => self.after_point = Some(0),
                '0'..='9' => self.digit(c)?,
                c => self.out.write_char(c)?,
            }
        }
        Ok(())
    }
}

/// A short text on the stack, for [`reads_in_order`]; writing more than it holds is an error.
struct Text {
    bytes: [u8; CHECKED_BYTES],
    len: usize,
}

impl Default for Text {
    fn default() -> Self {
        Text {
            bytes: [0; CHECKED_BYTES],
            len: 0,
        }
    }
}

impl Text {
    /// The number written.
    fn read(&self) -> Option<f64> {
        std::str::from_utf8(&self.bytes[..self.len])
            .ok()?
            .parse()
            .ok()
    }
}

impl fmt::Write for Text {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        self.bytes
            .get_mut(self.len..end)
            .ok_or(fmt::Error)?
            .copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{Digits, apart};

    fn pair(a: f64, b: f64, digits: usize, percent: bool) -> [String; 2] {
        apart(
            (a, Digits::Fixed(digits)),
            (b, Digits::Fixed(digits)),
            percent,
        )
        .map(|s| s.to_string())
    }

    #[test]
    fn a_pair_keeps_its_short_form_when_it_tells_them_apart() {
        assert_eq!(pair(0.8, 0.95, 4, false), ["0.8000", "0.9500"]);
        assert_eq!(pair(0.945, 0.95, 3, true), ["94.500", "95.000"]);
        assert_eq!(pair(0.95, 0.95, 4, false), ["0.9500", "0.9500"]);
    }

    #[test]
    fn a_pair_that_would_read_equal_is_widened_until_it_reads_apart() {
        assert_eq!(pair(0.99998, 0.99999, 4, false), ["0.99998", "0.99999"]);
        assert_eq!(pair(0.999998, 0.999999, 3, true), ["99.9998", "99.9999"]);
        assert_eq!(pair(0.899996, 0.9, 4, false), ["0.899996", "0.900000"]);
        let score = apart((0.89996, Digits::Fixed(4)), (0.9, Digits::Shortest), false);
        assert_eq!(score.map(|s| s.to_string()), ["0.89996", "0.9"]);
        // Percentages from the number's own decimals.
        assert_eq!(pair(0.0000012, 0.0000013, 3, true), ["0.00012", "0.00013"]);
        assert_eq!(
            pair(1.0 - 1e-9, 1.0, 3, true),
            ["99.9999999", "100.0000000"]
        );
    }

    #[test]
    fn two_different_numbers_never_read_equal_or_in_the_wrong_order() {
        let next = |x: f64| f64::from_bits(x.to_bits() + 1);
        for a in [0.99999, 0.5, 1e-9, 1e-300, 5e-324, 0.9, 1.0 - f64::EPSILON] {
            let b = next(a);
            for percent in [false, true] {
                let [x, y] = pair(a, b, 4, percent);
                assert_ne!(x, y, "{a} {b}");
                let [x, y] = [&x, &y].map(|s| s.parse::<f64>().unwrap());
                if !percent {
                    assert!(x < y, "{a} {b}");
                }
                let [y2, x2] = pair(b, a, 4, percent);
                assert_ne!(x2, y2, "{a} {b}");
            }
        }
    }
}
