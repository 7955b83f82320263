//! An API object (JSON as the API server returns it) → the policy model's typed object,
//! through the same parser and validation the standalone mode uses for files, so both modes
//! accept and refuse exactly the same things.

use crate::resources::Resource;
use palisade_policy::load::LoadedObject;
use palisade_policy::{Diagnostic, Manifests, Severity};
use serde_json::Value;

/// What one API object became.
#[derive(Debug, Clone)]
pub enum Parsed {
    /// Valid: enforced. Warnings and notes ride along.
    Valid(Box<LoadedObject>, Vec<Diagnostic>),
    /// Invalid: left out of the snapshot; every problem found.
    Invalid(Vec<Diagnostic>),
}

impl Parsed {
    /// Whether the object is enforced.
    pub fn is_valid(&self) -> bool {
        matches!(self, Parsed::Valid(..))
    }
    /// Errors (empty when valid).
    pub fn errors(&self) -> Vec<&Diagnostic> {
        match self {
            Parsed::Valid(..) => Vec::new(),
            Parsed::Invalid(d) => d.iter().filter(|d| d.severity == Severity::Error).collect(),
        }
    }
    /// `path: message; path: message` of the errors, for a condition or Event.
    pub fn error_summary(&self) -> String {
        self.errors()
            .iter()
            .map(|d| {
                if d.path.is_empty() {
                    d.message.clone()
                } else {
                    format!("{}: {}", d.path, d.message)
                }
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// `Kind namespace/name` (or `Kind name`): the name diagnostics give as their "file".
pub fn source_name(res: &Resource, namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(ns) => format!("{}/{ns}/{name}", res.plural),
        None => format!("{}/{name}", res.plural),
    }
}

/// Parses and validates one object of resource `res`. The object may lack `apiVersion` and
/// `kind` (items of a list response do); the `status` Palisade writes on its own kinds is
/// not part of what is validated.
pub fn parse_object(res: &Resource, object: &Value) -> Parsed {
    let mut obj = object.clone();
    if let Some(m) = obj.as_object_mut() {
        m.insert("apiVersion".into(), res.api_version().into());
        m.insert("kind".into(), res.kind.into());
        if res.palisade_owned {
            m.remove("status");
        }
    }
    let meta = &obj["metadata"];
    let name = meta["name"].as_str().unwrap_or("");
    let source = source_name(res, meta["namespace"].as_str(), name);
    // JSON is YAML: the policy crate's reader (positions, field paths) takes it as it is.
    // Pretty-printed, each field has a line of its own, so line numbers point somewhere.
    let text = serde_json::to_string_pretty(&obj).unwrap_or_default();
    let mut m = Manifests::new();
    m.add_file(&source, &text);
    let errors = m.has_errors();
    let mut objects = std::mem::take(&mut m.objects);
    match (errors, objects.pop()) {
        (false, Some(lo)) if objects.is_empty() => Parsed::Valid(Box::new(lo), m.diagnostics),
        (false, _) => Parsed::Invalid(vec![Diagnostic {
            severity: Severity::Error,
            code: "not-an-object",
            file: source,
            line: 1,
            col: 1,
            path: String::new(),
            object: String::new(),
            message: "the API returned something that is not one object".into(),
        }]),
        (true, _) => Parsed::Invalid(m.diagnostics),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::by_kind;
    use serde_json::json;

    #[test]
    fn a_valid_network_policy_from_the_api() {
        let np = json!({
            "metadata": {"name": "deny", "namespace": "x", "uid": "u", "resourceVersion": "5",
                "generation": 1, "creationTimestamp": "2024-01-01T00:00:00Z",
                "managedFields": [{"manager": "kubectl"}]},
            "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}
        });
        let p = parse_object(by_kind("NetworkPolicy").unwrap(), &np);
        let Parsed::Valid(lo, _) = p else {
            panic!("invalid: {p:?}")
        };
        assert_eq!(lo.object.display_name(), "NetworkPolicy x/deny");
        assert_eq!(lo.origin.file, "networkpolicies/x/deny");
    }

    #[test]
    fn an_invalid_security_policy_names_the_field() {
        let sp = json!({
            "metadata": {"name": "bad", "namespace": "x", "generation": 3},
            "spec": {"podSelector": {}, "egress": [{"to": [{"fqdn": "*"}]}]},
            "status": {"conditions": []}
        });
        let p = parse_object(by_kind("SecurityPolicy").unwrap(), &sp);
        assert!(!p.is_valid());
        let s = p.error_summary();
        assert!(s.starts_with("spec.egress[0].to[0].fqdn: "), "{s}");
    }
}
