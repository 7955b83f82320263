//! Folding of look-alike letters (homoglyphs) to ASCII: the common Cyrillic and Greek
//! letters that render like Latin ones, Latin small capitals and a few IPA letters.
//! Fullwidth forms, mathematical alphanumerics and circled letters are already folded
//! by NFKC before this table is consulted.

/// The ASCII letter a look-alike character stands for, if it is one we know.
pub(crate) fn fold(c: char) -> Option<char> {
    let a = match c {
        // Cyrillic lower case.
        'а' => 'a',
        'в' => 'b',
        'е' | 'ё' | 'є' => 'e',
        'к' => 'k',
        'м' => 'm',
        'н' => 'h',
        'о' => 'o',
        'р' => 'p',
        'с' => 'c',
        'т' => 't',
        'у' => 'y',
        'х' => 'x',
        'ѕ' => 's',
        'і' | 'ї' => 'i',
        'ј' => 'j',
        'ԁ' => 'd',
        'ӏ' => 'l',
        'ԛ' => 'q',
        'ԝ' => 'w',
        'ո' => 'n',
        // Cyrillic upper case.
        'А' => 'a',
        'В' => 'b',
        'Е' | 'Ё' | 'Є' => 'e',
        'К' => 'k',
        'М' => 'm',
        'Н' => 'h',
        'О' => 'o',
        'Р' => 'p',
        'С' => 'c',
        'Т' => 't',
        'У' => 'y',
        'Х' => 'x',
        'Ѕ' => 's',
        'І' | 'Ї' => 'i',
        'Ј' => 'j',
        'Ԁ' => 'd',
        'Ӏ' => 'l',
        'Ԛ' => 'q',
        'Ԝ' => 'w',
        // Greek lower case.
        'α' => 'a',
        'β' => 'b',
        'γ' => 'y',
        'ε' => 'e',
        'η' => 'n',
        'ι' => 'i',
        'κ' => 'k',
        'ν' => 'v',
        'ο' => 'o',
        'ρ' => 'p',
        'τ' => 't',
        'υ' => 'u',
        'χ' => 'x',
        'ω' => 'w',
        // Greek upper case.
        'Α' => 'a',
        'Β' => 'b',
        'Ε' => 'e',
        'Ζ' => 'z',
        'Η' => 'h',
        'Ι' => 'i',
        'Κ' => 'k',
        'Μ' => 'm',
        'Ν' => 'n',
        'Ο' => 'o',
        'Ρ' => 'p',
        'Τ' => 't',
        'Υ' => 'y',
        'Χ' => 'x',
        // Latin small capitals and IPA look-alikes.
        'ᴀ' => 'a',
        'ʙ' => 'b',
        'ᴄ' => 'c',
        'ᴅ' => 'd',
        'ᴇ' => 'e',
        'ꜰ' => 'f',
        'ɢ' | 'ɡ' => 'g',
        'ʜ' => 'h',
        'ɪ' | 'ı' => 'i',
        'ᴊ' => 'j',
        'ᴋ' => 'k',
        'ʟ' => 'l',
        'ᴍ' => 'm',
        'ɴ' => 'n',
        'ᴏ' => 'o',
        'ᴘ' => 'p',
        'ʀ' => 'r',
        'ꜱ' => 's',
        'ᴛ' => 't',
        'ᴜ' => 'u',
        'ᴠ' => 'v',
        'ᴡ' => 'w',
        'ʏ' => 'y',
        'ᴢ' => 'z',
        'ɑ' => 'a',
        'ɩ' => 'i',
        'ʋ' => 'v',
        _ => return None,
    };
    Some(a)
}

#[cfg(test)]
mod tests {
    use super::fold;

    #[test]
    fn folds_cyrillic_greek_and_small_capitals() {
        assert_eq!(fold('а'), Some('a')); // U+0430
        assert_eq!(fold('Ο'), Some('o')); // U+039F
        assert_eq!(fold('ɪ'), Some('i'));
        assert_eq!(fold('a'), None);
        assert_eq!(fold('д'), None);
    }
}
