//! Request body processors: URL-encoded, JSON, multipart and XML. Each is a pure
//! function from bytes to collections; malformed input gives an error message, never a
//! panic.

pub(crate) mod json;
pub(crate) mod multipart;
pub(crate) mod urlencoded;
pub(crate) mod xml;

use crate::actions::BodyProcessor;

/// One member of a collection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Kv {
    pub(crate) key: Vec<u8>,
    pub(crate) value: Vec<u8>,
}

impl Kv {
    pub(crate) fn new(key: &[u8], value: &[u8]) -> Kv {
        Kv {
            key: key.to_vec(),
            value: value.to_vec(),
        }
    }
}

/// Multipart anomalies ModSecurity reports as MULTIPART_* variables.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct MultipartFlags {
    pub(crate) unmatched_boundary: bool,
    pub(crate) boundary_quoted: bool,
    pub(crate) boundary_whitespace: bool,
    pub(crate) data_before: bool,
    pub(crate) data_after: bool,
    pub(crate) header_folding: bool,
    pub(crate) lf_line: bool,
    pub(crate) missing_semicolon: bool,
    pub(crate) invalid_quoting: bool,
    pub(crate) invalid_part: bool,
    pub(crate) invalid_header_folding: bool,
    pub(crate) crlf_lf_lines: bool,
}

impl MultipartFlags {
    pub(crate) fn any(&self) -> bool {
        self.unmatched_boundary
            || self.boundary_quoted
            || self.boundary_whitespace
            || self.data_before
            || self.data_after
            || self.header_folding
            || self.lf_line
            || self.missing_semicolon
            || self.invalid_quoting
            || self.invalid_part
            || self.invalid_header_folding
    }
}

/// What the body processor produced.
#[derive(Debug, Default)]
pub(crate) struct Parsed {
    pub(crate) processor: Option<BodyProcessor>,
    pub(crate) args_post: Vec<Kv>,
    /// Form field name → file name.
    pub(crate) files: Vec<Kv>,
    pub(crate) files_sizes: Vec<Kv>,
    pub(crate) files_content: Vec<Kv>,
    /// Part name → `Header: value`, one per header line.
    pub(crate) part_headers: Vec<Kv>,
    pub(crate) mp_filename: Vec<Kv>,
    pub(crate) mp_name: Vec<Kv>,
    pub(crate) mp_flags: MultipartFlags,
    /// `XML:/*`: all text content.
    pub(crate) xml_text: Option<Vec<u8>>,
    /// `XML://@*`: attribute values.
    pub(crate) xml_attrs: Vec<Kv>,
    pub(crate) error: Option<String>,
}

/// Runs `processor` over `body`.
pub(crate) fn process(
    processor: BodyProcessor,
    body: &[u8],
    content_type: &[u8],
    separator: u8,
    json_depth: usize,
) -> Parsed {
    let mut p = Parsed {
        processor: Some(processor),
        ..Parsed::default()
    };
    let result = match processor {
        BodyProcessor::UrlEncoded => {
            urlencoded::parse(body, separator, &mut p.args_post);
            Ok(())
        }
        BodyProcessor::Json => json::parse(body, json_depth, &mut p.args_post),
        BodyProcessor::Multipart => multipart::parse(body, content_type, &mut p),
        BodyProcessor::Xml => xml::parse(body, &mut p),
    };
    if let Err(e) = result {
        p.error = Some(e);
    }
    if matches!(
        processor,
        BodyProcessor::UrlEncoded | BodyProcessor::Multipart
    ) && p.error.is_none()
    {
        if let Some(e) = foreign_charset(content_type) {
            p.error = Some(e);
        }
    }
    p
}

/// A form declared in a charset whose ASCII letters and quotes are not ASCII bytes (UTF-7,
/// UTF-16, EBCDIC…): Django decodes multipart fields with it (`+ACc-` is a `'` in UTF-7)
/// while the rules see the raw bytes. CRS 920480 checks only a lower-case `charset=`, so
/// this is a body-processor error whatever the parameter's case.
fn foreign_charset(content_type: &[u8]) -> Option<String> {
    if !content_type
        .windows(7)
        .any(|w| w.eq_ignore_ascii_case(b"charset"))
    {
        return None;
    }
    for p in multipart::params(content_type) {
        if p.name != b"charset" {
            continue;
        }
        let c = p.value.to_ascii_lowercase();
        let c = c.as_slice();
        let ascii_compatible = matches!(c, b"utf-8" | b"utf8" | b"us-ascii" | b"ascii" | b"latin1")
            || c.starts_with(b"iso-8859-")
            || c.starts_with(b"windows-125")
            || c.starts_with(b"cp125");
        if !ascii_compatible {
            return Some(format!(
                "Request body charset not supported: {}",
                String::from_utf8_lossy(c)
            ));
        }
    }
    None
}
