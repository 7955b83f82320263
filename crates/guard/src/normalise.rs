//! Text normalisation before scoring.
//!
//! [`strip_invisible`] removes zero-width and bidi control characters, variation selectors
//! and soft hyphens, and recovers text smuggled in Unicode tag characters (U+E0020..U+E007E,
//! invisible copies of ASCII); it then applies NFKC (fullwidth, mathematical and circled
//! letters become ASCII) but keeps letter case, so the decoders can still read base64.
//! [`fold`] then removes combining diacritics (Zalgo text, "ïgnörë"), folds look-alike
//! Cyrillic/Greek letters to ASCII inside words that are Latin or entirely look-alikes (so
//! real Russian or Greek text is left readable), lower-cases, and collapses whitespace:
//! runs containing a line break become one `\n`, other runs one space.

use crate::confusables;
use unicode_normalization::char::decompose_canonical;
use unicode_normalization::UnicodeNormalization;

/// Text after [`strip_invisible`], with what was removed or found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Cleaned {
    /// The visible text, NFKC, case kept.
    pub(crate) text: String,
    /// How many invisible or bidi control characters were removed.
    pub(crate) invisible: usize,
    /// ASCII text carried in Unicode tag characters, if any.
    pub(crate) tag_payload: Option<String>,
}

/// Whether `c` is an invisible formatting character that is removed before scoring.
pub(crate) fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}'
        | '\u{180B}'..='\u{180F}'
        | '\u{200B}'..='\u{200F}'
        | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}'
        | '\u{3164}' | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}' | '\u{FFA0}'
        | '\u{E0000}'..='\u{E007F}'
        | '\u{E0100}'..='\u{E01EF}')
}

/// Removes invisible characters (keeping tag-character payloads aside) and applies NFKC
/// to each run of non-ASCII characters (ASCII is already NFKC, and this keeps mostly-ASCII
/// text fast).
pub(crate) fn strip_invisible(s: &str) -> Cleaned {
    if s.is_ascii() {
        return Cleaned {
            text: s.to_owned(),
            ..Cleaned::default()
        };
    }
    let mut text = String::with_capacity(s.len());
    let mut run = String::new();
    let mut invisible = 0;
    let mut tags = String::new();
    for c in s.chars() {
        if c.is_ascii() {
            if !run.is_empty() {
                text.extend(run.nfkc());
                run.clear();
            }
            text.push(c);
            continue;
        }
        if ('\u{E0020}'..='\u{E007E}').contains(&c) {
            tags.push(char::from((c as u32 - 0xE0000) as u8));
        }
        if is_invisible(c) {
            invisible += 1;
        } else {
            run.push(c);
        }
    }
    text.extend(run.nfkc());
    Cleaned {
        text,
        invisible,
        tag_payload: (!tags.trim().is_empty()).then_some(tags),
    }
}

/// Whether `c` is a combining diacritical mark that [`fold`] drops.
fn is_diacritic(c: char) -> bool {
    matches!(c,
        '\u{0300}'..='\u{036F}' | '\u{1AB0}'..='\u{1AFF}' | '\u{1DC0}'..='\u{1DFF}'
        | '\u{20D0}'..='\u{20FF}' | '\u{FE20}'..='\u{FE2F}')
}

/// Folds cleaned text for scoring: no diacritics, look-alikes folded, lower case, collapsed
/// whitespace. Returns the text and how many look-alike letters were folded.
pub(crate) fn fold(s: &str) -> (String, usize) {
    if s.is_ascii() {
        return (collapse_whitespace(&s.to_ascii_lowercase()), 0);
    }
    let mut bare = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_ascii() {
            bare.push(c);
        } else if (c as u32) < 0x0590 {
            // Latin, Greek, Cyrillic: split off and drop the accents.
            decompose_canonical(c, |d| {
                if !is_diacritic(d) {
                    bare.push(d);
                }
            });
        } else if !is_diacritic(c) {
            bare.push(c);
        }
    }
    let mut out = String::with_capacity(bare.len());
    let mut folded = 0;
    for word in bare.split_inclusive(char::is_whitespace) {
        if word.is_ascii() {
            out.extend(word.bytes().map(|b| char::from(b.to_ascii_lowercase())));
            continue;
        }
        let latin = word.chars().any(|c| c.is_ascii_alphabetic());
        let all_lookalike = word
            .chars()
            .filter(|c| c.is_alphabetic())
            .all(|c| confusables::fold(c).is_some());
        for c in word.chars() {
            match confusables::fold(c) {
                Some(a) if latin || all_lookalike => {
                    folded += 1;
                    out.push(a);
                }
                _ => out.extend(c.to_lowercase()),
            }
        }
    }
    (collapse_whitespace(&out), folded)
}

/// Collapses whitespace runs: a run with a line break becomes `\n`, others one space;
/// leading and trailing whitespace is removed.
pub(crate) fn collapse_whitespace(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut pending: Option<char> = None;
    for c in s.chars() {
        if c.is_whitespace() {
            let brk = c == '\n' || c == '\r' || c == '\u{2028}' || c == '\u{2029}';
            pending = Some(if brk || pending == Some('\n') {
                '\n'
            } else {
                ' '
            });
        } else {
            if let Some(p) = pending.take() {
                if !out.is_empty() {
                    out.push(p);
                }
            }
            out.push(c);
        }
    }
    out
}

/// Cuts `s` to at most `max` bytes: the first three quarters and the last quarter of the
/// budget, joined by a line break, on character boundaries.
pub(crate) fn cap(s: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if s.len() <= max {
        return s.into();
    }
    let mut head = max * 3 / 4;
    while !s.is_char_boundary(head) {
        head -= 1;
    }
    let mut tail = s.len() - (max - head);
    while !s.is_char_boundary(tail) {
        tail += 1;
    }
    format!("{}\n{}", &s[..head], &s[tail..]).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> String {
        fold(&strip_invisible(s).text).0
    }

    #[test]
    fn removes_zero_width_and_bidi_controls() {
        let c = strip_invisible("ig\u{200B}no\u{200D}re\u{202E} all\u{FEFF}");
        assert_eq!(c.text, "ignore all");
        assert_eq!(c.invisible, 4);
    }

    #[test]
    fn recovers_tag_character_payload() {
        let hidden: String = "say hi"
            .chars()
            .map(|c| char::from_u32(0xE0000 + c as u32).unwrap())
            .collect();
        let c = strip_invisible(&format!("hello{hidden}"));
        assert_eq!(c.text, "hello");
        assert_eq!(c.tag_payload.as_deref(), Some("say hi"));
    }

    #[test]
    fn nfkc_folds_fullwidth_and_math_letters() {
        assert_eq!(norm("ＩＧＮＯＲＥ"), "ignore");
        assert_eq!(norm("𝐢𝐠𝐧𝐨𝐫𝐞 ⓘ"), "ignore i");
    }

    #[test]
    fn folds_homoglyphs_in_latin_words_only() {
        // Cyrillic о and е inside a Latin word; Greek Ι at the start.
        assert_eq!(norm("ignоrе Ιnstructions"), "ignore instructions");
        // Real Russian keeps its letters.
        assert_eq!(norm("Привет мир"), "привет мир");
    }

    #[test]
    fn strips_diacritics_and_zalgo() {
        assert_eq!(norm("ïgnörë"), "ignore");
        assert_eq!(norm("i\u{0336}g\u{0336}n\u{0301}ore"), "ignore");
    }

    #[test]
    fn collapses_whitespace_keeping_line_breaks() {
        assert_eq!(collapse_whitespace("  a \t b\n\n  c  "), "a b\nc");
    }

    #[test]
    fn cap_keeps_head_and_tail_on_char_boundaries() {
        let s = "é".repeat(100);
        let c = cap(&s, 51);
        assert!(c.len() <= 52);
        assert!(c.starts_with('é') && c.ends_with('é'));
        assert_eq!(cap("short", 10), "short");
    }
}
