//! Targets → the values a rule looks at.

use super::data::{Data, Kv};
use super::State;
use crate::variables::{Selector, Target, Var};
use std::borrow::Cow;

/// One value a rule tests.
#[derive(Debug)]
pub(crate) struct Cand<'d> {
    pub(crate) var: Var,
    /// The member's key (empty for scalars).
    pub(crate) key: Cow<'d, [u8]>,
    pub(crate) value: Cow<'d, [u8]>,
    /// Identity of the value for the transformation cache (`None`: do not cache).
    pub(crate) slot: Option<u32>,
    pub(crate) scalar: bool,
}

impl Cand<'_> {
    /// `ARGS:q`, `REQUEST_FILENAME`, `TX:foo`.
    pub(crate) fn name(&self) -> Vec<u8> {
        let mut n = self.var.name().as_bytes().to_vec();
        if !self.scalar {
            n.push(b':');
            n.extend_from_slice(&self.key);
        }
        n
    }
}

/// The values of the request's arguments (and names), cookies (and names) and XML, with
/// the slots [`collect`] gives them: a superset of what a rule whose targets are all among
/// [`Var::in_universe`] sees.
pub(crate) fn universe(data: &Data) -> impl Iterator<Item = (u32, &[u8])> {
    let p = &data.parsed;
    kv(1, &data.args_get, false)
        .chain(kv(2, &p.args_post, false))
        .chain(kv(3, &data.args_get, true))
        .chain(kv(4, &p.args_post, true))
        .chain(kv(7, &data.cookies, false))
        .chain(kv(8, &data.cookies, true))
        .chain(
            p.xml_attrs
                .iter()
                .enumerate()
                .map(|(i, kv)| (17 << 24 | i as u32, &kv.value[..])),
        )
        .chain(p.xml_text.iter().map(|t| (18 << 24, &t[..])))
}

/// A collection's values (or keys) with their slots.
fn kv(src: u32, list: &[Kv], names: bool) -> impl Iterator<Item = (u32, &[u8])> {
    list.iter().enumerate().map(move |(i, kv)| {
        let v: &[u8] = if names { &kv.key } else { &kv.value };
        (src << 24 | (i as u32 & 0xFF_FFFF), v)
    })
}

/// Exclusions of a rule: its `!VAR` targets and those removed by `ctl:` at run time.
#[derive(Clone, Copy)]
struct Excl<'a> {
    own: &'a [Target],
    removed: &'a [Target],
}

impl Excl<'_> {
    fn iter(&self) -> impl Iterator<Item = &Target> {
        self.own
            .iter()
            .filter(|t| t.exclude)
            .chain(self.removed.iter())
    }
}

fn excluded(t: &Target, key: &[u8], excl: Excl<'_>) -> bool {
    excl.iter()
        .any(|e| e.var == t.var && e.selector.matches(key))
}

fn members<'d>(
    t: &Target,
    list: &'d [Kv],
    names: bool,
    src: u32,
    excl: Excl<'_>,
    out: &mut Vec<Cand<'d>>,
) {
    // Most targets take every member and have no exclusion for their variable.
    let all = matches!(t.selector, Selector::All);
    let has_excl = excl.iter().any(|e| e.var == t.var);
    out.reserve(list.len());
    for (i, kv) in list.iter().enumerate() {
        if !all && !t.selector.matches(&kv.key) || has_excl && excluded(t, &kv.key, excl) {
            continue;
        }
        out.push(Cand {
            var: t.var,
            key: Cow::Borrowed(&kv.key),
            value: Cow::Borrowed(if names { &kv.key } else { &kv.value }),
            slot: Some(src << 24 | (i as u32 & 0xFF_FFFF)),
            scalar: false,
        });
    }
}

fn scalar<'d>(t: &Target, v: Cow<'d, [u8]>, out: &mut Vec<Cand<'d>>) {
    let slot = match v {
        // Source 0: scalars, by variable (collections are sources 1–18).
        Cow::Borrowed(_) => Some(t.var as u32),
        Cow::Owned(_) => None,
    };
    out.push(Cand {
        var: t.var,
        key: Cow::Borrowed(b""),
        value: v,
        slot,
        scalar: true,
    });
}

fn flag(b: bool) -> Cow<'static, [u8]> {
    Cow::Borrowed(if b { b"1" } else { b"0" })
}

fn owned(s: String) -> Cow<'static, [u8]> {
    Cow::Owned(s.into_bytes())
}

fn size_sum(list: &[Kv], keys: bool) -> usize {
    list.iter()
        .map(|k| k.value.len() + if keys { k.key.len() } else { 0 })
        .sum()
}

/// Appends the values of `targets` (minus exclusions and `removed`) to `out`.
pub(crate) fn collect<'d>(
    data: &'d Data,
    st: &State,
    targets: &[Target],
    removed: Option<&Vec<Target>>,
    out: &mut Vec<Cand<'d>>,
) {
    let excl = Excl {
        own: targets,
        removed: removed.map_or(&[][..], Vec::as_slice),
    };
    for t in targets.iter().filter(|t| !t.exclude) {
        if t.count {
            let mut tmp = Vec::new();
            let plain = Target {
                count: false,
                ..t.clone()
            };
            one(data, st, &plain, excl, &mut tmp);
            let n = tmp.len();
            out.push(Cand {
                var: t.var,
                key: Cow::Borrowed(b""),
                value: owned(n.to_string()),
                slot: None,
                scalar: true,
            });
        } else {
            one(data, st, t, excl, out);
        }
    }
}

fn one<'d>(data: &'d Data, st: &State, t: &Target, excl: Excl<'_>, out: &mut Vec<Cand<'d>>) {
    use Var::*;
    let p = &data.parsed;
    let b = |v: &'d [u8]| Cow::Borrowed(v);
    // Removing a whole scalar variable (`ctl:ruleRemoveTargetById=1;REQUEST_FILENAME`).
    if excl
        .iter()
        .any(|e| e.var == t.var && matches!(e.selector, Selector::All))
    {
        return;
    }
    match t.var {
        Args => {
            members(t, &data.args_get, false, 1, excl, out);
            members(t, &p.args_post, false, 2, excl, out);
        }
        ArgsNames => {
            members(t, &data.args_get, true, 3, excl, out);
            members(t, &p.args_post, true, 4, excl, out);
        }
        ArgsGet => members(t, &data.args_get, false, 1, excl, out),
        ArgsGetNames => members(t, &data.args_get, true, 3, excl, out),
        ArgsPost => members(t, &p.args_post, false, 2, excl, out),
        ArgsPostNames => members(t, &p.args_post, true, 4, excl, out),
        ArgsCombinedSize => scalar(
            t,
            owned((size_sum(&data.args_get, true) + size_sum(&p.args_post, true)).to_string()),
            out,
        ),
        RequestHeaders => members(t, &data.headers, false, 5, excl, out),
        RequestHeadersNames => members(t, &data.headers, true, 6, excl, out),
        RequestCookies => members(t, &data.cookies, false, 7, excl, out),
        RequestCookiesNames => members(t, &data.cookies, true, 8, excl, out),
        Files | MultipartFilename => members(t, &p.files, false, 9, excl, out),
        FilesNames => members(t, &p.files, true, 10, excl, out),
        FilesSizes => members(t, &p.files_sizes, false, 11, excl, out),
        FilesTmpContent => members(t, &p.files_content, false, 12, excl, out),
        FilesTmpNames => {}
        MultipartPartHeaders => members(t, &p.part_headers, false, 13, excl, out),
        MultipartName => members(t, &p.mp_name, false, 14, excl, out),
        FilesCombinedSize => {
            if !p.files.is_empty() {
                scalar(t, owned(size_sum(&p.files_content, false).to_string()), out)
            }
        }
        ResponseHeaders => members(t, &data.response_headers, false, 15, excl, out),
        ResponseHeadersNames => members(t, &data.response_headers, true, 16, excl, out),
        Xml => {
            let attrs = matches!(&t.selector, Selector::Key(k) if k.contains('@'));
            if attrs {
                for (i, kv) in p.xml_attrs.iter().enumerate() {
                    out.push(Cand {
                        var: Xml,
                        key: Cow::Borrowed(b"//@*"),
                        value: b(&kv.value),
                        slot: Some(17 << 24 | i as u32),
                        scalar: false,
                    });
                }
            } else if let Some(text) = &p.xml_text {
                out.push(Cand {
                    var: Xml,
                    key: Cow::Borrowed(b"/*"),
                    value: b(text),
                    slot: Some(18 << 24),
                    scalar: false,
                });
            }
        }
        Tx => {
            if let Selector::Key(k) = &t.selector {
                // Keys are stored lower-case: one lookup instead of a scan.
                if let Some(v) = st.tx.get(k.as_str()) {
                    if !excluded(t, k.as_bytes(), excl) {
                        out.push(Cand {
                            var: Tx,
                            key: Cow::Owned(k.as_bytes().to_vec()),
                            value: Cow::Owned(v.clone()),
                            slot: None,
                            scalar: false,
                        });
                    }
                }
                return;
            }
            for (k, v) in &st.tx {
                if t.selector.matches(k.as_bytes()) && !excluded(t, k.as_bytes(), excl) {
                    out.push(Cand {
                        var: Tx,
                        key: Cow::Owned(k.as_bytes().to_vec()),
                        value: Cow::Owned(v.clone()),
                        slot: None,
                        scalar: false,
                    });
                }
            }
        }
        MatchedVar => scalar(t, Cow::Owned(st.matched_var.clone()), out),
        MatchedVarName => scalar(t, Cow::Owned(st.matched_var_name.clone()), out),
        MatchedVars | MatchedVarsNames => {
            for (n, v) in &st.matched_vars {
                if t.selector.matches(n) && !excluded(t, n, excl) {
                    out.push(Cand {
                        var: t.var,
                        key: Cow::Owned(n.clone()),
                        value: Cow::Owned(if t.var == MatchedVars {
                            v.clone()
                        } else {
                            n.clone()
                        }),
                        slot: None,
                        scalar: false,
                    });
                }
            }
        }
        RequestUri => scalar(t, b(&data.uri), out),
        RequestUriRaw => scalar(t, b(&data.uri_raw), out),
        RequestFilename => scalar(t, b(&data.filename), out),
        PathInfo => {}
        RequestBasename => scalar(t, b(&data.basename), out),
        RequestLine => scalar(t, b(&data.line), out),
        RequestMethod => scalar(t, b(&data.method), out),
        RequestProtocol => scalar(t, b(&data.protocol), out),
        QueryString => {
            if data.uri.contains(&b'?') {
                scalar(t, b(&data.query), out)
            }
        }
        RequestBody => {
            let urlencoded = st.body_processor == Some(crate::actions::BodyProcessor::UrlEncoded);
            if data.body_seen && (urlencoded || st.force_body_variable) {
                scalar(t, b(&data.body), out)
            }
        }
        RequestBodyLength => scalar(t, owned(data.body_len.to_string()), out),
        FullRequest => {
            let mut f = data.line.clone();
            f.extend_from_slice(b"\r\n");
            for h in &data.headers {
                f.extend_from_slice(&h.key);
                f.extend_from_slice(b": ");
                f.extend_from_slice(&h.value);
                f.extend_from_slice(b"\r\n");
            }
            f.extend_from_slice(b"\r\n");
            f.extend_from_slice(&data.body);
            scalar(t, Cow::Owned(f), out)
        }
        FullRequestLength => {
            let n = data.line.len()
                + 4
                + data
                    .headers
                    .iter()
                    .map(|h| h.key.len() + h.value.len() + 4)
                    .sum::<usize>()
                + data.body.len();
            scalar(t, owned(n.to_string()), out)
        }
        ResponseBody => {
            if !data.response_body.is_empty() {
                scalar(t, b(&data.response_body), out)
            }
        }
        ResponseStatus => {
            if !data.response_status.is_empty() {
                scalar(t, b(&data.response_status), out)
            }
        }
        ResponseProtocol => {
            if !data.response_protocol.is_empty() {
                scalar(t, b(&data.response_protocol), out)
            }
        }
        StatusLine => {}
        ResponseContentType => {
            if let Some(h) = data
                .response_headers
                .iter()
                .find(|h| h.key.eq_ignore_ascii_case(b"content-type"))
            {
                scalar(t, b(&h.value), out)
            }
        }
        ResponseContentLength => {
            if let Some(h) = data
                .response_headers
                .iter()
                .find(|h| h.key.eq_ignore_ascii_case(b"content-length"))
            {
                scalar(t, b(&h.value), out)
            }
        }
        ReqbodyProcessor => {
            let name = st.body_processor.map(|bp| bp.name()).unwrap_or("");
            scalar(t, Cow::Borrowed(name.as_bytes()), out)
        }
        ReqbodyError | ReqbodyProcessorError => scalar(t, flag(p.error.is_some()), out),
        ReqbodyErrorMsg => {
            if let Some(e) = &p.error {
                scalar(t, b(e.as_bytes()), out)
            }
        }
        MultipartStrictError => {
            if p.processor == Some(crate::actions::BodyProcessor::Multipart) {
                scalar(t, flag(p.mp_flags.any() || p.error.is_some()), out)
            }
        }
        MultipartUnmatchedBoundary => scalar(t, flag(p.mp_flags.unmatched_boundary), out),
        MultipartBoundaryQuoted => scalar(t, flag(p.mp_flags.boundary_quoted), out),
        MultipartBoundaryWhitespace => scalar(t, flag(p.mp_flags.boundary_whitespace), out),
        MultipartDataBefore => scalar(t, flag(p.mp_flags.data_before), out),
        MultipartDataAfter => scalar(t, flag(p.mp_flags.data_after), out),
        MultipartHeaderFolding => scalar(t, flag(p.mp_flags.header_folding), out),
        MultipartLfLine => scalar(t, flag(p.mp_flags.lf_line), out),
        MultipartMissingSemicolon => scalar(t, flag(p.mp_flags.missing_semicolon), out),
        MultipartInvalidQuoting => scalar(t, flag(p.mp_flags.invalid_quoting), out),
        MultipartInvalidPart => scalar(t, flag(p.mp_flags.invalid_part), out),
        MultipartInvalidHeaderFolding => scalar(t, flag(p.mp_flags.invalid_header_folding), out),
        MultipartCrlfLfLines => scalar(t, flag(p.mp_flags.crlf_lf_lines), out),
        MultipartFileLimitExceeded | InboundDataError | OutboundDataError | UrlencodedError => {
            scalar(t, flag(false), out)
        }
        RemoteAddr => scalar(t, b(&data.remote_addr), out),
        RemotePort => scalar(t, b(&data.remote_port), out),
        ServerAddr => scalar(t, b(&data.server_addr), out),
        ServerPort => scalar(t, b(&data.server_port), out),
        ServerName => {
            if let Some(h) = data.header("host") {
                scalar(t, b(h), out)
            }
        }
        UniqueId => scalar(t, b(&data.unique_id), out),
        HighestSeverity => {
            if let Some(s) = st.highest_severity {
                scalar(t, owned(s.to_string()), out)
            }
        }
        Duration | Time | TimeEpoch => scalar(t, Cow::Borrowed(b"0"), out),
        RemoteHost | RemoteUser | Env | AuthType | Webserver | Rule | Persistent => {}
    }
}
