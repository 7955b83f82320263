//! Reading manifests from files and folders.

use palisade_policy::{Diagnostic, Manifests, Severity};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// The manifest files under `paths`: files as given, folders recursively (`.yaml`, `.yml`;
/// hidden entries skipped), sorted.
pub fn manifest_files(paths: &[PathBuf]) -> (Vec<PathBuf>, Vec<Diagnostic>) {
    let mut files = Vec::new();
    let mut diags = Vec::new();
    for p in paths {
        if p.is_dir() {
            walk(p, &mut files, &mut diags);
        } else if p.exists() {
            files.push(p.clone());
        } else {
            diags.push(io_diag(p, "no such file or folder".into()));
        }
    }
    (files, diags)
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>, diags: &mut Vec<Diagnostic>) {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            diags.push(io_diag(dir, e.to_string()));
            return;
        }
    };
    let mut list: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    list.sort();
    for p in list {
        let hidden = p
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with('.'));
        if hidden {
            continue;
        }
        if p.is_dir() {
            walk(&p, files, diags);
        } else if matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")) {
            files.push(p);
        }
    }
}

fn io_diag(p: &Path, msg: String) -> Diagnostic {
    Diagnostic {
        severity: Severity::Error,
        code: "io",
        file: p.display().to_string(),
        line: 1,
        col: 1,
        path: String::new(),
        object: String::new(),
        message: msg,
    }
}

/// Reads and parses every manifest under `paths`.
pub fn load_paths(paths: &[PathBuf]) -> Manifests {
    let (files, diags) = manifest_files(paths);
    let mut m = Manifests::new();
    m.diagnostics.extend(diags);
    for f in files {
        match std::fs::read(&f) {
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(text) => m.add_file(&f.display().to_string(), &text),
                Err(_) => m
                    .diagnostics
                    .push(io_diag(&f, "file is not UTF-8 text".into())),
            },
            Err(e) => m.diagnostics.push(io_diag(&f, e.to_string())),
        }
    }
    m
}

/// A cheap fingerprint of the files under `paths` (names, sizes, modification times), to
/// notice changes without reading them.
pub fn fingerprint(paths: &[PathBuf]) -> Vec<(PathBuf, u64, Option<SystemTime>)> {
    let (files, _) = manifest_files(paths);
    files
        .into_iter()
        .map(|f| {
            let md = std::fs::metadata(&f).ok();
            let len = md.as_ref().map(|m| m.len()).unwrap_or(0);
            let mtime = md.and_then(|m| m.modified().ok());
            (f, len, mtime)
        })
        .collect()
}
