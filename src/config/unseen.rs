//! Characters a reader of a name does not see as themselves, which names refuse: a name that
//! reads as another (`admin\u{200B}` as `admin`, `beta\u{FE0F}` as `beta`, U+3164 HANGUL
//! FILLER as a blank) would be a flag, a gate or a listed id apart from the one it shows.

/// Whether `c` is a character a reader of a name does not see as itself: whitespace, a control
/// character, a format character ([`is_format_char`]: the zero-width space U+200B, the
/// bidirectional overrides and isolates, the soft hyphen, the byte order mark...), which makes
/// `admin\u{200B}` look like `admin` and U+202E reverse the rest of a log line, or another
/// character drawn as nothing ([`is_invisible`]: a variation selector, the combining grapheme
/// joiner, the Hangul fillers, U+2800 BRAILLE PATTERN BLANK).
pub(crate) fn is_unseen(c: char) -> bool {
    c.is_whitespace() || c.is_control() || is_format_char(c) || is_invisible(c)
}

/// Whether `c` is drawn as nothing where it is not a format character: a code point of
/// Unicode's Default_Ignorable_Code_Point (Unicode 15.1: the variation selectors, the combining
/// grapheme joiner U+034F, the Hangul fillers U+115F, U+1160, U+3164 and U+FFA0, and the format
/// characters among them) or U+2800 BRAILLE PATTERN BLANK, which is not one but is drawn as a
/// blank cell that no space test knows. The library refuses them in names, with
/// [`is_format_char`] and control characters; a program that prints text it was given (the
/// CLI's ids) can escape them with this same test.
///
/// # Example
/// ```
/// use promotion_gates::is_invisible;
///
/// assert!(is_invisible('\u{3164}')); // HANGUL FILLER, drawn as a blank
/// assert!(is_invisible('\u{FE0F}')); // a variation selector
/// assert!(is_invisible('\u{2800}')); // BRAILLE PATTERN BLANK
/// assert!(!is_invisible('한'));
/// // Whitespace is seen, as space: test it with char::is_whitespace.
/// assert!(!is_invisible(' '));
/// ```
pub fn is_invisible(c: char) -> bool {
    c == '\u{2800}'
        || DEFAULT_IGNORABLE
            .binary_search_by(|&(first, last)| {
                if last < c {
                    std::cmp::Ordering::Less
                } else if first > c {
                    std::cmp::Ordering::Greater
                } else {
                    std::cmp::Ordering::Equal
                }
            })
            .is_ok()
}

/// Unicode's Default_Ignorable_Code_Point property (DerivedCoreProperties.txt, Unicode 15.1),
/// as sorted, disjoint ranges of first and last code point: characters a renderer that does
/// not support them draws as nothing. Most format characters are in it too; the others here
/// are the combining grapheme joiner U+034F, the Hangul fillers U+115F, U+1160, U+3164 and
/// U+FFA0, the Khmer inherent vowels U+17B4-U+17B5, the Mongolian free variation selectors
/// U+180B-U+180F, the variation selectors U+FE00-U+FE0F and U+E0100-U+E01EF, and code points
/// reserved as default-ignorable (U+2065, U+FFF0-U+FFF8, U+E0000-U+E0FFF).
const DEFAULT_IGNORABLE: [(char, char); 17] = [
    ('\u{00AD}', '\u{00AD}'),
    ('\u{034F}', '\u{034F}'),
    ('\u{061C}', '\u{061C}'),
    ('\u{115F}', '\u{1160}'),
    ('\u{17B4}', '\u{17B5}'),
    ('\u{180B}', '\u{180F}'),
    ('\u{200B}', '\u{200F}'),
    ('\u{202A}', '\u{202E}'),
    ('\u{2060}', '\u{206F}'),
    ('\u{3164}', '\u{3164}'),
    ('\u{FE00}', '\u{FE0F}'),
    ('\u{FEFF}', '\u{FEFF}'),
    ('\u{FFA0}', '\u{FFA0}'),
    ('\u{FFF0}', '\u{FFF8}'),
    ('\u{1BCA0}', '\u{1BCA3}'),
    ('\u{1D173}', '\u{1D17A}'),
    ('\u{E0000}', '\u{E0FFF}'),
];

/// Whether `c` is in Unicode's general category Cf (Format), Unicode 15.1: a character that
/// is not drawn as itself but changes how the text around it is shown, such as the zero-width
/// space U+200B, the bidirectional overrides and isolates U+202A-U+202E and U+2066-U+2069
/// (U+202E shows the rest of a line reversed), the soft hyphen U+00AD and the byte order mark
/// U+FEFF. The library refuses them in names; a program that prints text it was given (the
/// CLI's ids, a scenario's name) can escape or refuse them with this same test.
///
/// # Example
/// ```
/// use promotion_gates::is_format_char;
///
/// assert!(is_format_char('\u{202E}'));
/// assert!(is_format_char('\u{200B}'));
/// assert!(!is_format_char('é'));
/// // Control characters are category Cc, not Cf: test them with char::is_control.
/// assert!(!is_format_char('\n'));
/// ```
pub fn is_format_char(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{0600}'..='\u{0605}'
            | '\u{061C}'
            | '\u{06DD}'
            | '\u{070F}'
            | '\u{0890}'..='\u{0891}'
            | '\u{08E2}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206F}'
            | '\u{FEFF}'
            | '\u{FFF9}'..='\u{FFFB}'
            | '\u{110BD}'
            | '\u{110CD}'
            | '\u{13430}'..='\u{1343F}'
            | '\u{1BCA0}'..='\u{1BCA3}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0001}'
            | '\u{E0020}'..='\u{E007F}'
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_ignorable_table_is_sorted_and_disjoint() {
        for (first, last) in DEFAULT_IGNORABLE {
            assert!(first <= last, "{first:?}..={last:?}");
        }
        for pair in DEFAULT_IGNORABLE.windows(2) {
            assert!(pair[0].1 < pair[1].0, "{pair:?}");
        }
    }

    #[test]
    fn every_code_point_of_a_range_and_none_beside_it_is_invisible() {
        for (first, last) in DEFAULT_IGNORABLE {
            for c in (first..=last).chain(['\u{2800}']) {
                assert!(is_invisible(c) && is_unseen(c), "{c:?}");
            }
            for beside in [u32::from(first) - 1, u32::from(last) + 1] {
                let c = char::from_u32(beside).unwrap();
                assert!(!is_invisible(c) || c == '\u{2800}', "{c:?}");
            }
        }
        for c in ['a', 'é', '한', '\u{1100}', '\u{2801}', '☕', '\u{1F600}'] {
            assert!(!is_unseen(c), "{c:?}");
        }
    }
}
