//! Any bytes as a manifest file through the loader `palisade check` uses
//! (`Manifests::add_file`, then the snapshot, the lints and the engine): never a panic;
//! every diagnostic names the file and a line and column inside it, and has a message; a
//! set without errors compiles and answers every pod-to-pod question the same way in the
//! matrix, the verdict and the explanation.
#![no_main]

use libfuzzer_sys::fuzz_target;
use palisade_policy::{lint, Endpoint, Engine, Flow, Manifests, Protocol, Snapshot};

const FILE: &str = "fuzz.yaml";

fuzz_target!(|data: &[u8]| {
    // The CLI refuses files that are not UTF-8 before parsing; take the text any way.
    let text = String::from_utf8_lossy(data);
    let mut m = Manifests::new();
    m.add_file(FILE, &text);
    // Line breaks as YAML counts them: LF, CRLF and a lone CR.
    let lines = 1 + text.matches('\n').count() + text.replace("\r\n", "\n").matches('\r').count();
    for d in &m.diagnostics {
        assert_eq!(d.file, FILE, "{d}");
        assert!(
            d.line >= 1 && d.line <= lines,
            "{d} (the file has {lines} lines)"
        );
        assert!(d.col >= 1, "{d}");
        assert!(!d.message.is_empty(), "{d}");
    }
    if m.has_errors() {
        return;
    }
    let snap = Snapshot::from_manifests(&m);
    for d in lint::lint(&snap) {
        assert!(d.file == FILE && d.line >= 1 && d.line <= lines, "{d}");
    }
    let e = Engine::compile(&snap);
    let pods = e.sorted_pods();
    let matrix = e.matrix(&pods, 80, Protocol::TCP);
    for (i, &from) in pods.iter().enumerate().take(8) {
        for (j, &to) in pods.iter().enumerate().take(8) {
            let flow = Flow {
                src: Endpoint::Pod(from),
                dst: Endpoint::Pod(to),
                port: 80,
                protocol: Protocol::TCP,
                http: None,
            };
            let v = e.verdict(&flow);
            assert_eq!(matrix.get(i, j), v.allowed());
            assert_eq!(e.explain(&flow).verdict, v.action);
        }
    }
});
