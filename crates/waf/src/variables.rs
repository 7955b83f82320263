//! SecLang variables: names, selectors (`ARGS:foo`, `ARGS:/re/`), counts and exclusions.

/// A variable or collection name (SecLang's names, hence `MatchedVar` and friends).
#[allow(clippy::enum_variant_names)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Var {
    Args,
    ArgsNames,
    ArgsGet,
    ArgsGetNames,
    ArgsPost,
    ArgsPostNames,
    ArgsCombinedSize,
    RequestHeaders,
    RequestHeadersNames,
    RequestCookies,
    RequestCookiesNames,
    RequestUri,
    RequestUriRaw,
    RequestFilename,
    RequestBasename,
    RequestLine,
    RequestMethod,
    RequestProtocol,
    QueryString,
    RequestBody,
    RequestBodyLength,
    FullRequest,
    FullRequestLength,
    Files,
    FilesNames,
    FilesSizes,
    FilesCombinedSize,
    FilesTmpNames,
    FilesTmpContent,
    MultipartPartHeaders,
    MultipartFilename,
    MultipartName,
    MultipartStrictError,
    MultipartUnmatchedBoundary,
    MultipartBoundaryQuoted,
    MultipartBoundaryWhitespace,
    MultipartDataBefore,
    MultipartDataAfter,
    MultipartHeaderFolding,
    MultipartLfLine,
    MultipartMissingSemicolon,
    MultipartInvalidQuoting,
    MultipartInvalidPart,
    MultipartInvalidHeaderFolding,
    MultipartFileLimitExceeded,
    MultipartCrlfLfLines,
    Xml,
    Tx,
    MatchedVar,
    MatchedVars,
    MatchedVarName,
    MatchedVarsNames,
    ResponseBody,
    ResponseHeaders,
    ResponseHeadersNames,
    ResponseStatus,
    ResponseProtocol,
    ResponseContentType,
    ResponseContentLength,
    StatusLine,
    ReqbodyProcessor,
    ReqbodyError,
    ReqbodyErrorMsg,
    ReqbodyProcessorError,
    InboundDataError,
    OutboundDataError,
    UrlencodedError,
    RemoteAddr,
    RemotePort,
    RemoteHost,
    RemoteUser,
    ServerAddr,
    ServerName,
    ServerPort,
    UniqueId,
    Env,
    AuthType,
    PathInfo,
    Duration,
    HighestSeverity,
    Webserver,
    Time,
    TimeEpoch,
    Rule,
    /// Persistent collections (IP, SESSION, GLOBAL, USER, RESOURCE, GEO): accepted, empty.
    Persistent,
}

impl Var {
    /// Whether the values of this variable are among the request's arguments, cookies
    /// and XML (see `engine::collect::universe`).
    pub(crate) fn in_universe(self) -> bool {
        use Var::*;
        matches!(
            self,
            Args | ArgsNames
                | ArgsGet
                | ArgsGetNames
                | ArgsPost
                | ArgsPostNames
                | RequestCookies
                | RequestCookiesNames
                | Xml
        )
    }

    /// Looks up a name, case-insensitively.
    pub(crate) fn parse(name: &str) -> Option<Var> {
        use Var::*;
        let up = name.to_ascii_uppercase();
        Some(match up.as_str() {
            "ARGS" => Args,
            "ARGS_NAMES" => ArgsNames,
            "ARGS_GET" => ArgsGet,
            "ARGS_GET_NAMES" => ArgsGetNames,
            "ARGS_POST" => ArgsPost,
            "ARGS_POST_NAMES" => ArgsPostNames,
            "ARGS_COMBINED_SIZE" => ArgsCombinedSize,
            "REQUEST_HEADERS" => RequestHeaders,
            "REQUEST_HEADERS_NAMES" => RequestHeadersNames,
            "REQUEST_COOKIES" => RequestCookies,
            "REQUEST_COOKIES_NAMES" => RequestCookiesNames,
            "REQUEST_URI" => RequestUri,
            "REQUEST_URI_RAW" => RequestUriRaw,
            "REQUEST_FILENAME" => RequestFilename,
            "REQUEST_BASENAME" => RequestBasename,
            "REQUEST_LINE" => RequestLine,
            "REQUEST_METHOD" => RequestMethod,
            "REQUEST_PROTOCOL" => RequestProtocol,
            "QUERY_STRING" => QueryString,
            "REQUEST_BODY" => RequestBody,
            "REQUEST_BODY_LENGTH" => RequestBodyLength,
            "FULL_REQUEST" => FullRequest,
            "FULL_REQUEST_LENGTH" => FullRequestLength,
            "FILES" => Files,
            "FILES_NAMES" => FilesNames,
            "FILES_SIZES" => FilesSizes,
            "FILES_COMBINED_SIZE" => FilesCombinedSize,
            "FILES_TMPNAMES" => FilesTmpNames,
            "FILES_TMP_CONTENT" => FilesTmpContent,
            "MULTIPART_PART_HEADERS" => MultipartPartHeaders,
            "MULTIPART_FILENAME" => MultipartFilename,
            "MULTIPART_NAME" => MultipartName,
            "MULTIPART_STRICT_ERROR" => MultipartStrictError,
            "MULTIPART_UNMATCHED_BOUNDARY" => MultipartUnmatchedBoundary,
            "MULTIPART_BOUNDARY_QUOTED" => MultipartBoundaryQuoted,
            "MULTIPART_BOUNDARY_WHITESPACE" => MultipartBoundaryWhitespace,
            "MULTIPART_DATA_BEFORE" => MultipartDataBefore,
            "MULTIPART_DATA_AFTER" => MultipartDataAfter,
            "MULTIPART_HEADER_FOLDING" => MultipartHeaderFolding,
            "MULTIPART_LF_LINE" => MultipartLfLine,
            "MULTIPART_MISSING_SEMICOLON" => MultipartMissingSemicolon,
            "MULTIPART_INVALID_QUOTING" => MultipartInvalidQuoting,
            "MULTIPART_INVALID_PART" => MultipartInvalidPart,
            "MULTIPART_INVALID_HEADER_FOLDING" => MultipartInvalidHeaderFolding,
            "MULTIPART_FILE_LIMIT_EXCEEDED" => MultipartFileLimitExceeded,
            "MULTIPART_CRLF_LF_LINES" => MultipartCrlfLfLines,
            "XML" => Xml,
            "TX" => Tx,
            "MATCHED_VAR" => MatchedVar,
            "MATCHED_VARS" => MatchedVars,
            "MATCHED_VAR_NAME" => MatchedVarName,
            "MATCHED_VARS_NAMES" => MatchedVarsNames,
            "RESPONSE_BODY" => ResponseBody,
            "RESPONSE_HEADERS" => ResponseHeaders,
            "RESPONSE_HEADERS_NAMES" => ResponseHeadersNames,
            "RESPONSE_STATUS" => ResponseStatus,
            "RESPONSE_PROTOCOL" => ResponseProtocol,
            "RESPONSE_CONTENT_TYPE" => ResponseContentType,
            "RESPONSE_CONTENT_LENGTH" => ResponseContentLength,
            "STATUS_LINE" => StatusLine,
            "REQBODY_PROCESSOR" => ReqbodyProcessor,
            "REQBODY_ERROR" => ReqbodyError,
            "REQBODY_ERROR_MSG" => ReqbodyErrorMsg,
            "REQBODY_PROCESSOR_ERROR" => ReqbodyProcessorError,
            "INBOUND_DATA_ERROR" => InboundDataError,
            "OUTBOUND_DATA_ERROR" => OutboundDataError,
            "URLENCODED_ERROR" => UrlencodedError,
            "REMOTE_ADDR" => RemoteAddr,
            "REMOTE_PORT" => RemotePort,
            "REMOTE_HOST" => RemoteHost,
            "REMOTE_USER" => RemoteUser,
            "SERVER_ADDR" => ServerAddr,
            "SERVER_NAME" => ServerName,
            "SERVER_PORT" => ServerPort,
            "UNIQUE_ID" => UniqueId,
            "ENV" => Env,
            "AUTH_TYPE" => AuthType,
            "PATH_INFO" => PathInfo,
            "DURATION" => Duration,
            "HIGHEST_SEVERITY" => HighestSeverity,
            "WEBSERVER_ERROR_LOG" | "WEBAPPID" | "SESSIONID" | "USERID" => Webserver,
            "TIME" | "TIME_DAY" | "TIME_HOUR" | "TIME_MIN" | "TIME_MON" | "TIME_SEC"
            | "TIME_WDAY" | "TIME_YEAR" => Time,
            "TIME_EPOCH" => TimeEpoch,
            "RULE" => Rule,
            "IP" | "SESSION" | "GLOBAL" | "USER" | "RESOURCE" | "GEO" => Persistent,
            _ => return None,
        })
    }

    /// The canonical upper-case name, for MATCHED_VAR_NAME and logs.
    pub(crate) fn name(self) -> &'static str {
        use Var::*;
        match self {
            Args => "ARGS",
            ArgsNames => "ARGS_NAMES",
            ArgsGet => "ARGS_GET",
            ArgsGetNames => "ARGS_GET_NAMES",
            ArgsPost => "ARGS_POST",
            ArgsPostNames => "ARGS_POST_NAMES",
            ArgsCombinedSize => "ARGS_COMBINED_SIZE",
            RequestHeaders => "REQUEST_HEADERS",
            RequestHeadersNames => "REQUEST_HEADERS_NAMES",
            RequestCookies => "REQUEST_COOKIES",
            RequestCookiesNames => "REQUEST_COOKIES_NAMES",
            RequestUri => "REQUEST_URI",
            RequestUriRaw => "REQUEST_URI_RAW",
            RequestFilename => "REQUEST_FILENAME",
            RequestBasename => "REQUEST_BASENAME",
            RequestLine => "REQUEST_LINE",
            RequestMethod => "REQUEST_METHOD",
            RequestProtocol => "REQUEST_PROTOCOL",
            QueryString => "QUERY_STRING",
            RequestBody => "REQUEST_BODY",
            RequestBodyLength => "REQUEST_BODY_LENGTH",
            FullRequest => "FULL_REQUEST",
            FullRequestLength => "FULL_REQUEST_LENGTH",
            Files => "FILES",
            FilesNames => "FILES_NAMES",
            FilesSizes => "FILES_SIZES",
            FilesCombinedSize => "FILES_COMBINED_SIZE",
            FilesTmpNames => "FILES_TMPNAMES",
            FilesTmpContent => "FILES_TMP_CONTENT",
            MultipartPartHeaders => "MULTIPART_PART_HEADERS",
            MultipartFilename => "MULTIPART_FILENAME",
            MultipartName => "MULTIPART_NAME",
            MultipartStrictError => "MULTIPART_STRICT_ERROR",
            MultipartUnmatchedBoundary => "MULTIPART_UNMATCHED_BOUNDARY",
            MultipartBoundaryQuoted => "MULTIPART_BOUNDARY_QUOTED",
            MultipartBoundaryWhitespace => "MULTIPART_BOUNDARY_WHITESPACE",
            MultipartDataBefore => "MULTIPART_DATA_BEFORE",
            MultipartDataAfter => "MULTIPART_DATA_AFTER",
            MultipartHeaderFolding => "MULTIPART_HEADER_FOLDING",
            MultipartLfLine => "MULTIPART_LF_LINE",
            MultipartMissingSemicolon => "MULTIPART_MISSING_SEMICOLON",
            MultipartInvalidQuoting => "MULTIPART_INVALID_QUOTING",
            MultipartInvalidPart => "MULTIPART_INVALID_PART",
            MultipartInvalidHeaderFolding => "MULTIPART_INVALID_HEADER_FOLDING",
            MultipartFileLimitExceeded => "MULTIPART_FILE_LIMIT_EXCEEDED",
            MultipartCrlfLfLines => "MULTIPART_CRLF_LF_LINES",
            Xml => "XML",
            Tx => "TX",
            MatchedVar => "MATCHED_VAR",
            MatchedVars => "MATCHED_VARS",
            MatchedVarName => "MATCHED_VAR_NAME",
            MatchedVarsNames => "MATCHED_VARS_NAMES",
            ResponseBody => "RESPONSE_BODY",
            ResponseHeaders => "RESPONSE_HEADERS",
            ResponseHeadersNames => "RESPONSE_HEADERS_NAMES",
            ResponseStatus => "RESPONSE_STATUS",
            ResponseProtocol => "RESPONSE_PROTOCOL",
            ResponseContentType => "RESPONSE_CONTENT_TYPE",
            ResponseContentLength => "RESPONSE_CONTENT_LENGTH",
            StatusLine => "STATUS_LINE",
            ReqbodyProcessor => "REQBODY_PROCESSOR",
            ReqbodyError => "REQBODY_ERROR",
            ReqbodyErrorMsg => "REQBODY_ERROR_MSG",
            ReqbodyProcessorError => "REQBODY_PROCESSOR_ERROR",
            InboundDataError => "INBOUND_DATA_ERROR",
            OutboundDataError => "OUTBOUND_DATA_ERROR",
            UrlencodedError => "URLENCODED_ERROR",
            RemoteAddr => "REMOTE_ADDR",
            RemotePort => "REMOTE_PORT",
            RemoteHost => "REMOTE_HOST",
            RemoteUser => "REMOTE_USER",
            ServerAddr => "SERVER_ADDR",
            ServerName => "SERVER_NAME",
            ServerPort => "SERVER_PORT",
            UniqueId => "UNIQUE_ID",
            Env => "ENV",
            AuthType => "AUTH_TYPE",
            PathInfo => "PATH_INFO",
            Duration => "DURATION",
            HighestSeverity => "HIGHEST_SEVERITY",
            Webserver => "WEBSERVER",
            Time => "TIME",
            TimeEpoch => "TIME_EPOCH",
            Rule => "RULE",
            Persistent => "PERSISTENT",
        }
    }
}

/// How a target picks members of a collection.
#[derive(Debug, Clone)]
pub(crate) enum Selector {
    /// The whole collection.
    All,
    /// One key, lower-cased (keys compare case-insensitively).
    Key(String),
    /// Keys matching a regex (`ARGS:/^id_/`).
    Regex(regex::bytes::Regex),
}

impl Selector {
    pub(crate) fn matches(&self, key: &[u8]) -> bool {
        match self {
            Selector::All => true,
            Selector::Key(k) => k.as_bytes().eq_ignore_ascii_case(key),
            Selector::Regex(r) => r.is_match(key),
        }
    }

    fn same(&self, other: &Selector) -> bool {
        match (self, other) {
            (Selector::All, Selector::All) => true,
            (Selector::Key(a), Selector::Key(b)) => a == b,
            (Selector::Regex(a), Selector::Regex(b)) => a.as_str() == b.as_str(),
            _ => false,
        }
    }
}

/// One entry of a rule's variable list.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) var: Var,
    pub(crate) selector: Selector,
    /// `&VAR`: the number of members instead of their values.
    pub(crate) count: bool,
    /// `!VAR:key`: removes members from the other targets.
    pub(crate) exclude: bool,
}

impl Target {
    /// Same variable and selector (used by `SecRuleUpdateTarget` to avoid duplicates).
    pub(crate) fn same(&self, other: &Target) -> bool {
        self.var == other.var
            && self.count == other.count
            && self.exclude == other.exclude
            && self.selector.same(&other.selector)
    }
}

/// Parses `ARGS|!ARGS:foo|&TX:x|REQUEST_COOKIES:/^re|x$/`.
pub(crate) fn parse_targets(s: &str) -> Result<Vec<Target>, String> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        while i < b.len() && (b[i] == b'|' || b[i].is_ascii_whitespace()) {
            i += 1;
        }
        if i >= b.len() {
            break;
        }
        let mut exclude = false;
        let mut count = false;
        loop {
            match b.get(i) {
                Some(b'!') => exclude = true,
                Some(b'&') => count = true,
                _ => break,
            }
            i += 1;
        }
        let st = i;
        while i < b.len() && b[i] != b':' && b[i] != b'|' {
            i += 1;
        }
        let name = s[st..i].trim();
        let var = Var::parse(name).ok_or_else(|| format!("unknown variable {name:?}"))?;
        let mut selector = Selector::All;
        if i < b.len() && b[i] == b':' {
            i += 1;
            if var != Var::Xml && i < b.len() && b[i] == b'/' {
                i += 1;
                let st = i;
                let mut re = String::new();
                let mut closed = false;
                while i < b.len() {
                    if b[i] == b'\\' && i + 1 < b.len() && b[i + 1] == b'/' {
                        re.push('/');
                        i += 2;
                        continue;
                    }
                    if b[i] == b'/' && (i + 1 == b.len() || b[i + 1] == b'|') {
                        closed = true;
                        break;
                    }
                    // push the char (may be multibyte)
                    let ch = s[i..].chars().next().unwrap_or('\u{fffd}');
                    re.push(ch);
                    i += ch.len_utf8();
                }
                if !closed {
                    return Err(format!("unterminated regex selector in {:?}", &s[st - 1..]));
                }
                i += 1;
                let rx = regex::bytes::RegexBuilder::new(&re)
                    .case_insensitive(true)
                    .build()
                    .map_err(|e| format!("bad selector regex /{re}/: {e}"))?;
                selector = Selector::Regex(rx);
            } else {
                let st = i;
                let quoted = i < b.len() && b[i] == b'\'';
                if quoted {
                    i += 1;
                    while i < b.len() && b[i] != b'\'' {
                        i += 1;
                    }
                    let key = &s[st + 1..i.min(b.len())];
                    i = (i + 1).min(b.len());
                    selector = Selector::Key(key.to_ascii_lowercase());
                } else {
                    while i < b.len() && b[i] != b'|' {
                        i += 1;
                    }
                    let key = s[st..i].trim();
                    if !key.is_empty() {
                        selector = Selector::Key(key.to_ascii_lowercase());
                    }
                }
            }
        }
        out.push(Target {
            var,
            selector,
            count,
            exclude,
        });
    }
    if out.is_empty() {
        return Err("no variables".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let t = parse_targets("ARGS|!ARGS:Foo|&TX:x|REQUEST_COOKIES:/^a|b$/|XML:/*").unwrap();
        assert_eq!(t.len(), 5);
        assert!(t[1].exclude);
        assert!(matches!(&t[1].selector, Selector::Key(k) if k == "foo"));
        assert!(t[2].count);
        assert!(matches!(&t[3].selector, Selector::Regex(r) if r.is_match(b"b")));
        assert!(matches!(&t[4].selector, Selector::Key(k) if k == "/*"));
        assert!(parse_targets("NOPE").is_err());
        assert!(parse_targets("ARGS:/open").is_err());
    }
}
