//! Reading manifests: YAML text → typed objects plus diagnostics. Pure: the caller reads
//! the files and hands their text in.

use crate::diag::{Diagnostic, Origin, Severity};
use crate::model::{Object, KINDS};
use crate::validate::{validate_object, Finding};
use crate::yaml::{self, FieldPath, Node, Value};
use std::collections::HashMap;

/// An object and where it was read.
#[derive(Debug, Clone)]
pub struct LoadedObject {
    /// The object.
    pub object: Object,
    /// Where it starts.
    pub origin: Origin,
}

/// Everything read so far, valid objects and every problem found.
#[derive(Debug, Clone, Default)]
pub struct Manifests {
    /// Valid objects in the order read.
    pub objects: Vec<LoadedObject>,
    /// Problems (errors, warnings, notes).
    pub diagnostics: Vec<Diagnostic>,
    seen: HashMap<(String, String, String), Origin>,
}

/// Largest manifest file accepted.
pub const MAX_FILE_BYTES: usize = 64 << 20;

impl Manifests {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses one file's text and adds its objects. Objects with errors are not added.
    pub fn add_file(&mut self, file: &str, text: &str) {
        if text.len() > MAX_FILE_BYTES {
            self.push_diag(
                Severity::Error,
                "file-too-large",
                file,
                1,
                1,
                "",
                "",
                format!("file is larger than {} MiB", MAX_FILE_BYTES >> 20),
            );
            return;
        }
        let docs = match yaml::parse_documents(text) {
            Ok(d) => d,
            Err(e) => {
                self.push_diag(
                    Severity::Error,
                    "yaml-syntax",
                    file,
                    e.mark.line,
                    e.mark.col,
                    "",
                    "",
                    format!("invalid YAML: {}", e.message),
                );
                return;
            }
        };
        for doc in &docs {
            self.add_document(file, doc, &FieldPath::root());
        }
    }

    fn add_document(&mut self, file: &str, node: &Node, base: &FieldPath) {
        let Value::Map(entries) = &node.value else {
            self.push_diag(
                Severity::Error,
                "not-an-object",
                file,
                node.mark.line,
                node.mark.col,
                &base.to_string(),
                "",
                format!(
                    "expected a Kubernetes object (a mapping), found {}",
                    node.value.kind_name()
                ),
            );
            return;
        };
        let api_version = node.get("apiVersion").and_then(Node::as_str);
        let kind = node.get("kind").and_then(Node::as_str);
        let (Some(api_version), Some(kind)) = (api_version, kind) else {
            let missing = if api_version.is_none() {
                "apiVersion"
            } else {
                "kind"
            };
            self.push_diag(
                Severity::Error,
                "missing-type",
                file,
                node.mark.line,
                node.mark.col,
                &base.to_string(),
                "",
                format!("missing or non-string `{missing}`"),
            );
            return;
        };
        if kind == "List" || kind.ends_with("List") && node.get("items").is_some() {
            match node.get("items").map(|n| &n.value) {
                Some(Value::Seq(items)) => {
                    let items_path = base.key("items");
                    for (i, item) in items.iter().enumerate() {
                        self.add_document(file, item, &items_path.index(i));
                    }
                }
                Some(Value::Null) | None => {}
                Some(other) => self.push_diag(
                    Severity::Error,
                    "invalid-field",
                    file,
                    node.mark.line,
                    node.mark.col,
                    &base.key("items").to_string(),
                    "",
                    format!("expected a list, found {}", other.kind_name()),
                ),
            }
            return;
        }
        let name_hint = node
            .get("metadata")
            .and_then(|m| m.get("name"))
            .and_then(Node::as_str)
            .unwrap_or("");
        let Some(&(want_api, _, namespaced)) = KINDS.iter().find(|(_, k, _)| *k == kind) else {
            self.push_diag(
                Severity::Note,
                "skipped-kind",
                file,
                node.mark.line,
                node.mark.col,
                &base.to_string(),
                &format!("{kind} {name_hint}"),
                format!("{api_version} {kind} is not used by Palisade; skipped"),
            );
            return;
        };
        if api_version != want_api {
            self.push_diag(
                Severity::Error,
                "unsupported-api-version",
                file,
                node.mark.line,
                node.mark.col,
                &base.key("apiVersion").to_string(),
                &format!("{kind} {name_hint}"),
                format!(
                    "unsupported apiVersion {api_version:?} for {kind} (expected {want_api:?})"
                ),
            );
            return;
        }
        // The typed structs do not carry apiVersion/kind; drop them before deserializing.
        let body = Node {
            mark: node.mark,
            value: Value::Map(
                entries
                    .iter()
                    .filter(|(k, _)| !matches!(k.as_str(), Some("apiVersion") | Some("kind")))
                    .cloned()
                    .collect(),
            ),
        };
        let parsed = deserialize_kind(kind, &body, base);
        let mut object = match parsed {
            Ok(o) => o,
            Err(e) => {
                let mark = e.mark.unwrap_or(node.mark);
                self.push_diag(
                    Severity::Error,
                    "invalid-field",
                    file,
                    mark.line,
                    mark.col,
                    &e.path.to_string(),
                    &format!("{kind} {name_hint}"),
                    e.message,
                );
                return;
            }
        };
        let origin = Origin {
            file: file.to_string(),
            line: node.mark.line,
            col: node.mark.col,
        };
        let mut findings: Vec<Finding> = Vec::new();
        {
            let meta = object.meta_mut();
            if namespaced && meta.namespace.as_deref().unwrap_or("").is_empty() {
                meta.namespace = Some("default".to_string());
            }
            if !namespaced && meta.namespace.is_some() {
                findings.push(Finding::warning(
                    FieldPath::parse("metadata.namespace"),
                    format!("{kind} is cluster scoped; metadata.namespace is ignored"),
                ));
                meta.namespace = None;
            }
        }
        findings.extend(validate_object(&object));
        let display = object.display_name();
        let mut has_error = false;
        for f in findings {
            has_error |= f.severity == Severity::Error;
            let mark = body.locate(&f.path);
            self.push_diag(
                f.severity,
                f.code,
                file,
                mark.line,
                mark.col,
                &base.join(&f.path).to_string(),
                &display,
                f.message,
            );
        }
        if has_error {
            return;
        }
        let key = (
            kind.to_string(),
            object.meta().namespace.clone().unwrap_or_default(),
            object.meta().name.clone(),
        );
        if let Some(first) = self.seen.get(&key) {
            let msg = format!(
                "duplicate {display}: first defined at {}:{}",
                first.file, first.line
            );
            self.push_diag(
                Severity::Error,
                "duplicate-object",
                file,
                origin.line,
                origin.col,
                &base.to_string(),
                &display,
                msg,
            );
            return;
        }
        self.seen.insert(key, origin.clone());
        self.objects.push(LoadedObject { object, origin });
    }

    #[allow(clippy::too_many_arguments)]
    fn push_diag(
        &mut self,
        severity: Severity,
        code: &'static str,
        file: &str,
        line: usize,
        col: usize,
        path: &str,
        object: &str,
        message: String,
    ) {
        self.diagnostics.push(Diagnostic {
            severity,
            code,
            file: file.to_string(),
            line,
            col,
            path: path.to_string(),
            object: object.trim().to_string(),
            message,
        });
    }

    /// Whether any error was found.
    pub fn has_errors(&self) -> bool {
        crate::diag::has_errors(&self.diagnostics)
    }
}

fn deserialize_kind(kind: &str, node: &Node, base: &FieldPath) -> Result<Object, yaml::DeError> {
    Ok(match kind {
        "Namespace" => Object::Namespace(yaml::from_node(node, base)?),
        "Node" => Object::Node(yaml::from_node(node, base)?),
        "Pod" => Object::Pod(Box::new(yaml::from_node(node, base)?)),
        "Service" => Object::Service(yaml::from_node(node, base)?),
        "NetworkPolicy" => Object::NetworkPolicy(yaml::from_node(node, base)?),
        "AdminNetworkPolicy" => Object::AdminNetworkPolicy(yaml::from_node(node, base)?),
        "BaselineAdminNetworkPolicy" => {
            Object::BaselineAdminNetworkPolicy(yaml::from_node(node, base)?)
        }
        "SecurityPolicy" => Object::SecurityPolicy(yaml::from_node(node, base)?),
        "ClusterSecurityPolicy" => Object::ClusterSecurityPolicy(yaml::from_node(node, base)?),
        "AIGateway" => Object::AIGateway(yaml::from_node(node, base)?),
        "PalisadeConfig" => Object::PalisadeConfig(yaml::from_node(node, base)?),
        other => {
            return Err(serde::de::Error::custom(format!(
                "kind {other} has no reader"
            )))
        }
    })
}
