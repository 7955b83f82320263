//! Source files for the generated documents: functions with doc comments and unit tests
//! in Rust, Python, Go, JavaScript, C and shell, with the literals (addresses, host names,
//! paths, numbers) that real code and tests are full of.

use super::{camel, cap, paragraph, sentence, ADJECTIVES, NOUNS, SERVICES, VERBS};
use crate::augment::{num, pick};

#[rustfmt::skip]
const SHORT: &[&str] = &[
    "x", "v", "p", "e", "s", "n", "i", "k", "buf", "ctx", "cfg", "req", "res", "out", "got", "want",
    "err", "msg", "addr", "name", "line", "tx", "rx", "ok",
];

/// A literal value of the kind tests and configs are full of.
fn literal(r: &mut u64) -> String {
    let n = pick(r, NOUNS);
    match num(r, 0, 12) {
        9 => format!(
            "b\"{} /{n}s/{} HTTP/1.1\\r\\nHost: {}.test\\r\\nContent-Length: {}\\r\\n\\r\\n\"",
            pick(r, &["GET", "POST", "PUT", "DELETE", "HEAD"]),
            num(r, 1, 999),
            pick(r, NOUNS),
            num(r, 0, 4096)
        ),
        10 => format!(
            "json!({{\"{n}\": \"{}\", \"{}\": {}, \"{}\": [\"{}\"]}})",
            pick(r, ADJECTIVES),
            pick(r, NOUNS),
            num(r, 0, 1000),
            pick(r, NOUNS),
            pick(r, VERBS)
        ),
        11 => format!(
            "\"{}: {}\\n{}: {{{}: {}}}\\n\"",
            pick(r, NOUNS),
            pick(r, ADJECTIVES),
            n,
            pick(r, NOUNS),
            num(r, 0, 100)
        ),
        0 => format!(
            "\"10.{}.{}.{}\"",
            num(r, 0, 255),
            num(r, 0, 255),
            num(r, 1, 255)
        ),
        1 => format!(
            "\"{n}.{}\"",
            pick(
                r,
                &[
                    "example.com",
                    "test",
                    "internal",
                    "svc.cluster.local",
                    "local"
                ]
            )
        ),
        2 => format!(
            "\"/var/lib/{n}/{}.{}\"",
            pick(r, NOUNS),
            pick(r, &["json", "db", "log", "yaml", "sock"])
        ),
        3 => format!("{}", num(r, 0, 65536)),
        4 => format!("0x{:04x}", num(r, 0, 65536)),
        5 => format!("\"{} {n}\"", pick(r, ADJECTIVES)),
        6 => format!(
            "[{}, {}, {}]",
            num(r, 0, 256),
            num(r, 0, 256),
            num(r, 0, 256)
        ),
        7 => format!("\"{}:{}\"", pick(r, SERVICES), num(r, 1024, 9999)),
        _ => format!("{}.{}", num(r, 0, 100), num(r, 0, 100)),
    }
}

/// One assertion of a test in `lang`.
fn assertion(r: &mut u64, lang: usize) -> String {
    let (x, f) = (
        pick(r, SHORT),
        format!("{}_{}", pick(r, VERBS), pick(r, NOUNS)),
    );
    let (l1, l2) = (literal(r), literal(r));
    let (adj, noun) = (pick(r, ADJECTIVES), pick(r, NOUNS));
    let go_fn = camel(pick(r, VERBS), pick(r, NOUNS));
    let k = num(r, 0, 9);
    match lang {
        0 => pick_string(r, &[
            format!("let {x} = {f}({l1}).unwrap();\nassert_eq!({x}, {l2});"),
            format!("assert!(matches!({f}({l1}), Err(Error::{}(_))));", cap(adj)),
            format!("assert_eq!({f}(&[{l1}, {l2}]).len(), {k});"),
            format!("let {x} = {f}({l1}).await.expect(\"{adj} {noun}\");"),
            format!("assert!({x}.is_none(), \"{{:?}}\", {x});"),
        ]),
        1 => pick_string(r, &[
            format!("{x} = {f}({l1})\nassert {x} == {l2}"),
            format!("with pytest.raises(ValueError):\n    {f}({l1})"),
            format!("assert len({f}([{l1}, {l2}])) == {k}"),
        ]),
        2 => pick_string(r, &[
            format!("{x}, err := {}({l1})\nif err != nil {{\n\tt.Fatal(err)\n}}\nif {x} != {l2} {{\n\tt.Errorf(\"got %v, want %v\", {x}, {l2})\n}}", go_fn),
            format!("require.NoError(t, {go_fn}({l1}))"),
        ]),
        3 => pick_string(r, &[
            format!("expect({f}({l1})).toEqual({l2});"),
            format!("await expect({f}({l1})).rejects.toThrow('{adj}');"),
        ]),
        4 => format!("assert({f}({l1}) == {l2});"),
        _ => format!("test \"$({f} {l1})\" = {l2} || fail \"{f}\""),
    }
}

/// A unit test in `lang`.
fn test_function(r: &mut u64, lang: usize) -> String {
    let name = format!(
        "{}_{}_{}",
        pick(r, ADJECTIVES),
        pick(r, NOUNS),
        pick(
            r,
            &[
                "is_rejected",
                "round_trips",
                "is_kept",
                "times_out",
                "is_parsed",
                "gets_a_default",
                "is_denied",
                "passes"
            ]
        )
    );
    let body: Vec<String> = (0..2 + num(r, 0, 5)).map(|_| assertion(r, lang)).collect();
    let body = body.join("\n");
    match lang {
        0 => format!(
            "{}fn {name}() {{\n{}\n}}\n",
            pick(
                r,
                &[
                    "#[test]\n",
                    "#[tokio::test]\nasync ",
                    "#[tokio::test(flavor = \"multi_thread\", worker_threads = 2)]\nasync "
                ]
            ),
            indent(&body, "    ")
        ),
        1 => format!("def test_{name}():\n{}\n", indent(&body, "    ")),
        2 => format!(
            "func Test{}(t *testing.T) {{\n{}\n}}\n",
            camel(&name, ""),
            indent(&body, "\t")
        ),
        3 => format!(
            "it('{}', async () => {{\n{}\n}});\n",
            name.replace('_', " "),
            indent(&body, "  ")
        ),
        4 => format!(
            "static void test_{name}(void)\n{{\n{}\n}}\n",
            indent(&body, "\t")
        ),
        _ => format!("test_{name}() {{\n{}\n}}\n", indent(&body, "    ")),
    }
}

/// One statement of source code in `lang`.
pub(super) fn statement(r: &mut u64, lang: usize) -> String {
    let (a, b, c) = (pick(r, NOUNS), pick(r, NOUNS), pick(r, NOUNS));
    let (v, adj) = (pick(r, VERBS), pick(r, ADJECTIVES));
    let n = num(r, 0, 4096);
    let t = [
        // Rust
        &[
            format!("let {a} = {b}.{v}(&{c})?;"),
            format!("let mut {a}s = Vec::with_capacity({n});"),
            format!("if {a}.is_empty() {{\n    return Err(Error::{}(\"{adj} {b}\".into()));\n}}", cap(a)),
            format!("for {a} in &{b}s {{\n    {c}s.push({a}.{v}());\n}}"),
            format!("match {a}.{v}() {{\n    Some(x) => {b}.insert(x, {n}),\n    None => return Ok(None),\n}};"),
            format!("assert_eq!({a}.len(), {n}, \"{adj} {b}\");"),
            format!("tracing::debug!(%{a}, \"{v} {adj} {b}\");"),
            format!("let total: u64 = {a}s.iter().map(|x| x.{b}_len as u64).sum();"),
            format!("self.{a} = {}::{v}({b}, Duration::from_millis({n}))?;", camel(adj, c)),
            format!("let {a} = {b}.get(\"{c}\").and_then(|v| v.as_str()).unwrap_or(\"{adj}\");"),
            format!("{a}.{v}(&mut buf[..{n}]).map_err(|e| Error::Io(e, \"{b}\"))?;"),
            format!("let {a} = {}::{v}({}).await.context(\"{adj} {b}\")?;", camel(b, ""), literal(r)),
            format!("{a}.{v}_{b}({}, {});", literal(r), literal(r)),
            format!("let mut buf = vec![0u8; {n}];\nlet n = {a}.read(&mut buf).await?;"),
            format!("{a}.write_all({}).await.unwrap();", literal(r)),
            format!("assert!({a}[..n].starts_with(b\"HTTP/1.1 {}\"), \"{{:?}}\", {b});", 200 + num(r, 0, 300)),
            format!("let ({a}, {b}) = {v}(&{c}, {}).await;", literal(r)),
            format!("if let Some({c}) = self.{a}s.get_mut(&{b}.id) {{\n    {c}.{v}({});\n}}", literal(r)),
        ][..],
        // Python
        &[
            format!("{a} = {b}.{v}({c})"),
            format!("if not {a}:\n    raise ValueError(\"{adj} {b}: %r\" % {c})"),
            format!("for {a} in {b}s:\n    {c}s.append({a}.{v}())"),
            format!("logger.info(\"{v} %s {b}s\", len({a}s))"),
            format!("with open({a}_path, encoding=\"utf-8\") as f:\n    {b} = json.load(f)"),
            format!("{a}s = [x for x in {b}s if x.{c} is not None]"),
            format!("self.{a} = {b}.get(\"{c}\", {n})"),
            format!("assert {a}.{v}() == {n}, \"{adj} {b}\""),
            format!("{a} = {{k: v for k, v in {b}.items() if k != \"{c}\"}}"),
            format!("time.sleep(min({n}, 2 ** attempt) / 1000)"),
            format!("{a} = {b}.{v}({}, {c}={})", literal(r), literal(r)),
        ][..],
        // Go
        &[
            format!("{a}, err := {b}.{}(ctx, {c})\nif err != nil {{\n\treturn nil, fmt.Errorf(\"{v} {b}: %w\", err)\n}}", cap(v)),
            format!("for _, {a} := range {b}s {{\n\t{c}s = append({c}s, {a}.{})\n}}", cap(adj)),
            format!("log.Printf(\"{v} %s: %d {b}s\", {a}.Name, len({c}s))"),
            format!("{a} := make(map[string]int, {n})"),
            format!("defer {a}.Close()"),
            format!("if {a} == nil {{\n\treturn Err{}\n}}", camel(adj, b)),
            format!("s.mu.Lock()\ns.{a}s[{b}.ID] = {c}\ns.mu.Unlock()"),
            format!("ctx, cancel := context.WithTimeout(ctx, {n}*time.Millisecond)\ndefer cancel()"),
        ][..],
        // JavaScript / TypeScript
        &[
            format!("const {a} = await {b}.{v}({c});"),
            format!("if (!{a}) throw new Error(`{adj} {b}: ${{{c}}}`);"),
            format!("{a}s.forEach((x) => {b}s.push(x.{c}));"),
            format!("console.log(`{v} ${{{a}s.length}} {b}s`);"),
            format!("const {{ {a}, {b} }} = req.body;"),
            format!("export const {} = {n};", format!("{a}_{b}").to_uppercase()),
            format!("res.status({}).json({{ error: '{adj} {b}' }});", 400 + num(r, 0, 30)),
            format!("this.{a} = new Map(Object.entries({b} ?? {{}}));"),
        ][..],
        // C
        &[
            format!("if ({a} == NULL)\n\treturn -EINVAL;"),
            format!("memcpy({a}->{b}, {c}, {n});"),
            format!("for (size_t i = 0; i < {a}->n_{b}; i++)\n\t{v}_{c}(&{a}->{b}[i]);"),
            format!("ret = {v}_{a}({b}, {c}, {n});\nif (ret < 0)\n\tgoto out_free;"),
            format!("struct {a} *{b} = calloc(1, sizeof(*{b}));"),
            format!("fprintf(stderr, \"%s: {adj} {b} %d\\n\", prog, {a});"),
            format!("{a}->{b} = htonl({c}->{b});"),
        ][..],
        // Shell
        &[
            format!("{}=\"${{{}:-{n}}}\"", a.to_uppercase(), a.to_uppercase()),
            format!("if [ ! -f \"${}\" ]; then\n    echo \"{adj} {b}: ${}\" >&2\n    exit 1\nfi", a.to_uppercase(), a.to_uppercase()),
            format!("systemctl restart {}.service", pick(r, SERVICES)),
            format!("curl -fsS -o /dev/null -w '%{{http_code}}' \"http://127.0.0.1:{}/{a}s\"", 8000 + n % 1000),
            format!("for f in /var/log/{b}/*.log; do\n    gzip -9 \"$f\"\ndone"),
            format!("kubectl -n {} rollout status deploy/{a}-{b} --timeout={n}s", pick(r, &["default", "prod", "staging", "kube-system", "monitoring"])),
            format!("find \"$DIR\" -name '*.{c}' -mtime +{} -delete", n % 60),
        ][..],
    ];
    pick_string(r, t[lang])
}

fn pick_string(r: &mut u64, list: &[String]) -> String {
    let i = num(r, 0, list.len() as u64) as usize;
    list[i].clone()
}

pub(super) fn indent(s: &str, by: &str) -> String {
    s.lines()
        .map(|l| format!("{by}{l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// One function of source code with its comments.
fn function(r: &mut u64, lang: usize) -> String {
    let (v, n1, n2) = (pick(r, VERBS), pick(r, NOUNS), pick(r, NOUNS));
    let sentences = 1 + num(r, 0, 2) as usize;
    let doc = paragraph(r, sentences);
    let body: Vec<String> = (0..3 + num(r, 0, 6)).map(|_| statement(r, lang)).collect();
    let comment = sentence(r);
    let mut lines = body;
    let at = num(r, 0, lines.len() as u64) as usize;
    match lang {
        0 => {
            lines.insert(at, format!("// {comment}"));
            let ret = pick(
                r,
                &[
                    "Result<usize, Error>",
                    "Option<String>",
                    "bool",
                    "io::Result<()>",
                    "Vec<u8>",
                ],
            );
            format!(
                "/// {doc}\npub fn {v}_{n1}(&mut self, {n2}: &{}) -> {ret} {{\n{}\n}}\n",
                camel(n2, ""),
                indent(&lines.join("\n"), "    ")
            )
        }
        1 => {
            lines.insert(at, format!("# {comment}"));
            format!(
                "def {v}_{n1}(self, {n2}, timeout=None):\n    \"\"\"{doc}\"\"\"\n{}\n    return {n1}\n",
                indent(&lines.join("\n"), "    ")
            )
        }
        2 => {
            lines.insert(at, format!("// {comment}"));
            format!(
                "// {}{} {doc}\nfunc (s *Server) {}{}(ctx context.Context, {n2} *{}) error {{\n{}\n\treturn nil\n}}\n",
                cap(v),
                cap(n1),
                cap(v),
                cap(n1),
                cap(n2),
                indent(&lines.join("\n"), "\t")
            )
        }
        3 => {
            lines.insert(at, format!("// {comment}"));
            format!(
                "/**\n * {doc}\n */\nexport async function {v}{}({n2}, opts = {{}}) {{\n{}\n}}\n",
                cap(n1),
                indent(&lines.join("\n"), "  ")
            )
        }
        4 => {
            lines.insert(at, format!("/* {comment} */"));
            format!(
                "/*\n * {v}_{n1}() - {doc}\n */\nstatic int {v}_{n1}(struct {n2} *{n2}, size_t len)\n{{\n\tint ret = 0;\n\n{}\n\treturn ret;\nout_free:\n\tfree({n2});\n\treturn ret;\n}}\n",
                indent(&lines.join("\n"), "\t")
            )
        }
        _ => {
            lines.insert(at, format!("# {comment}"));
            format!(
                "# {doc}\n{v}_{n1}() {{\n{}\n}}\n",
                indent(&lines.join("\n"), "    ")
            )
        }
    }
}

/// A type definition (struct, enum, class) in `lang`, with its doc comment.
fn type_item(r: &mut u64, lang: usize) -> String {
    let name = camel(pick(r, ADJECTIVES), pick(r, NOUNS));
    let doc = sentence(r);
    let fields: Vec<(&str, &str)> = (0..2 + num(r, 0, 5))
        .map(|_| {
            (
                pick(r, NOUNS),
                pick(
                    r,
                    &[
                        "u64",
                        "String",
                        "bool",
                        "Duration",
                        "Vec<u8>",
                        "Option<u32>",
                    ],
                ),
            )
        })
        .collect();
    let variants: Vec<String> = (0..2 + num(r, 0, 4))
        .map(|_| camel(pick(r, ADJECTIVES), ""))
        .collect();
    let line = |f: &dyn Fn(&(&str, &str)) -> String| -> String {
        fields.iter().map(f).collect::<Vec<_>>().join("\n")
    };
    match (lang, num(r, 0, 2)) {
        (0, 0) => format!(
            "/// {doc}\n#[derive(Debug, Clone, PartialEq)]\npub struct {name} {{\n{}\n}}\n",
            line(&|(n, t)| format!("    /// The {n}.\n    pub {n}: {t},"))
        ),
        (0, _) => {
            format!(
            "/// {doc}\n#[derive(Debug, Clone, Copy, PartialEq, Eq)]\npub enum {name} {{\n{}\n}}\n",
            variants.iter().map(|v| format!("    {v},")).collect::<Vec<_>>().join("\n")
        )
        }
        (1, _) => format!(
            "@dataclass\nclass {name}:\n    \"\"\"{doc}\"\"\"\n\n{}\n",
            line(&|(n, _)| format!("    {n}: str = \"\""))
        ),
        (2, _) => format!(
            "// {name} {doc}\ntype {name} struct {{\n{}\n}}\n",
            line(&|(n, _)| format!("\t{} string `json:\"{n}\"`", cap(n)))
        ),
        (3, _) => format!(
            "/** {doc} */\nexport class {name} {{\n  constructor({{ {} }}) {{\n{}\n  }}\n}}\n",
            fields.iter().map(|f| f.0).collect::<Vec<_>>().join(", "),
            line(&|(n, _)| format!("    this.{n} = {n};"))
        ),
        (4, _) => format!(
            "/* {doc} */\nstruct {} {{\n{}\n}};\n",
            name.to_lowercase(),
            line(&|(n, _)| format!("\tuint32_t {n};"))
        ),
        _ => format!(
            "# {doc}\n{}\n",
            line(&|(n, _)| format!("{}=\"${{{}:-}}\"", n.to_uppercase(), n.to_uppercase()))
        ),
    }
}

pub(super) fn source_file(r: &mut u64, target: usize) -> String {
    let lang = num(r, 0, 6) as usize;
    let mut out = match lang {
        0 => format!("//! {}\n\nuse std::io;\nuse std::time::Duration;\n\n", paragraph(r, 2)),
        1 => format!("\"\"\"{}\"\"\"\n\nimport json\nimport logging\nimport time\n\nlogger = logging.getLogger(__name__)\n\n", paragraph(r, 2)),
        2 => format!("// Package {} {}\npackage {}\n\nimport (\n\t\"context\"\n\t\"fmt\"\n\t\"log\"\n)\n\n", pick(r, NOUNS), paragraph(r, 1), pick(r, NOUNS)),
        3 => format!("// {}\nimport {{ {} }} from './{}.js';\n\n", paragraph(r, 1), pick(r, VERBS), pick(r, NOUNS)),
        4 => format!("// SPDX-License-Identifier: MIT\n/* {} */\n#include <errno.h>\n#include <stdlib.h>\n#include <string.h>\n\n", paragraph(r, 1)),
        _ => format!("#!/bin/sh\n# {}\nset -eu\n\n", paragraph(r, 1)),
    };
    let tests_from = target * num(r, 3, 10) as usize / 10;
    while out.len() < target {
        if out.len() >= tests_from {
            out.push_str(&test_function(r, lang));
        } else if num(r, 0, 4) == 0 {
            out.push_str(&type_item(r, lang));
        } else {
            out.push_str(&function(r, lang));
        }
        out.push('\n');
    }
    out
}
