//! Revision documents: the policy files of one push, stored as written so members parse
//! them with the same loader (and get the same file:line diagnostics) as `palisade check`.

use palisade_policy::cidr::Cidr;
use palisade_policy::model::{ClusterSecurityPolicy, Object};
use palisade_policy::snapshot::Sourced;
use palisade_policy::{Diagnostic, Manifests, Severity};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The networks each member cluster may claim addresses in (its pod CIDRs), as pushed by
/// the operator: `{cluster: [cidr, …]}`.
pub type MemberNetworks = BTreeMap<String, Vec<Cidr>>;

/// One policy file of a revision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevisionFile {
    /// The file name it was pushed from.
    pub name: String,
    /// Its YAML text.
    pub yaml: String,
}

/// A revision as stored under `revisions/<n>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RevisionDoc {
    /// Its number (equals the key's).
    pub revision: u64,
    /// When it was pushed (µs since the epoch).
    pub created_at_us: i64,
    /// For a rollback: the revision whose policies it restores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolled_back_from: Option<u64>,
    /// The policy files.
    pub files: Vec<RevisionFile>,
    /// The networks each member may claim its pods' addresses in (`CLUSTER: [CIDR…]`), set
    /// by the operator at push: once any are given, a member's addresses outside its own
    /// networks, and every address of a member not named, are refused.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub member_networks: BTreeMap<String, Vec<String>>,
}

/// A revision parsed and validated, ready to merge.
#[derive(Debug, Clone)]
pub struct ParsedRevision {
    /// Its number.
    pub revision: u64,
    /// Its global policies, with origins naming the revision and file.
    pub policies: Sourced<ClusterSecurityPolicy>,
    /// The member networks it declares (empty: none).
    pub member_networks: MemberNetworks,
}

/// Checks declared member networks: cluster names as `--cluster-name` takes them, CIDRs
/// that parse; every error is reported.
pub fn parse_member_networks(
    declared: &BTreeMap<String, Vec<String>>,
) -> Result<MemberNetworks, Vec<String>> {
    let mut out = MemberNetworks::new();
    let mut errors = Vec::new();
    for (cluster, nets) in declared {
        if let Err(e) = crate::layout::check_name("memberNetworks: cluster", cluster) {
            errors.push(e);
            continue;
        }
        let parsed: &mut Vec<Cidr> = out.entry(cluster.clone()).or_default();
        for n in nets {
            match n.parse::<Cidr>() {
                Ok(c) => parsed.push(c),
                Err(e) => errors.push(format!("memberNetworks: {cluster}: {n:?}: {e}")),
            }
        }
        if nets.is_empty() {
            errors.push(format!("memberNetworks: {cluster}: no network given"));
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// Validates policy files for a push: every error of every file, with file:line; objects
/// other than ClusterSecurityPolicy are errors too (only global policy is federated).
pub fn validate_files(files: &[RevisionFile]) -> Result<usize, Vec<Diagnostic>> {
    let (m, count) = load(files, |f| f.name.clone());
    let errors: Vec<Diagnostic> = m
        .diagnostics
        .into_iter()
        .filter(|d| d.severity == Severity::Error)
        .collect();
    if errors.is_empty() {
        Ok(count)
    } else {
        Err(errors)
    }
}

fn load(files: &[RevisionFile], name: impl Fn(&RevisionFile) -> String) -> (Manifests, usize) {
    let mut m = Manifests::new();
    for f in files {
        m.add_file(&name(f), &f.yaml);
    }
    // `palisade check` skips kinds it does not use with a note; in a revision every object
    // is a global policy, so one it would skip (a misspelt kind, or a kind a newer version
    // reads) is an error: applying the rest would enforce part of what was pushed.
    for d in &mut m.diagnostics {
        if d.code == "skipped-kind" {
            d.severity = Severity::Error;
            d.code = "not-global-policy";
            d.message = format!(
                "{}; only ClusterSecurityPolicy objects can be pushed to the federation",
                d.message
            );
        }
    }
    let mut extra = Vec::new();
    let mut count = 0;
    for o in &m.objects {
        match &o.object {
            Object::ClusterSecurityPolicy(_) => count += 1,
            other => extra.push(Diagnostic {
                severity: Severity::Error,
                code: "not-global-policy",
                file: o.origin.file.clone(),
                line: o.origin.line,
                col: o.origin.col,
                path: "kind".into(),
                object: other.kind().to_string(),
                message: format!(
                    "only ClusterSecurityPolicy objects can be pushed to the federation, not {}",
                    other.kind()
                ),
            }),
        }
    }
    m.diagnostics.extend(extra);
    (m, count)
}

/// Parses a stored revision document. Anything that is not a well-formed document with the
/// expected number whose policies all validate is refused whole, with the reasons.
/// A signed revision's envelope is opened without checking its signature (members check it
/// first, [`crate::signing::TrustedKeys::verify`]).
pub fn parse_revision(expected: u64, bytes: &[u8]) -> Result<ParsedRevision, Vec<String>> {
    let doc: RevisionDoc = serde_json::from_slice(&crate::signing::document(bytes))
        .map_err(|e| vec![format!("revision {expected}: not a revision document: {e}")])?;
    if doc.revision != expected {
        return Err(vec![format!(
            "revision {expected}: the document says it is revision {}",
            doc.revision
        )]);
    }
    let (m, _) = load(&doc.files, |f| format!("federation/r{expected}/{}", f.name));
    let mut errors: Vec<String> = m
        .diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .map(|d| d.to_string())
        .collect();
    let member_networks = match parse_member_networks(&doc.member_networks) {
        Ok(n) => n,
        Err(e) => {
            errors.extend(e.into_iter().map(|e| format!("revision {expected}: {e}")));
            MemberNetworks::new()
        }
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    let policies = m
        .objects
        .into_iter()
        .filter_map(|o| match o.object {
            Object::ClusterSecurityPolicy(c) => Some((c, o.origin)),
            _ => None,
        })
        .collect();
    Ok(ParsedRevision {
        revision: expected,
        policies,
        member_networks,
    })
}

/// Parses the `current` pointer's value.
pub fn parse_pointer(bytes: &[u8]) -> Result<u64, String> {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .filter(|n| *n > 0)
        .ok_or_else(|| {
            format!(
                "current pointer {:?} is not a revision number",
                String::from_utf8_lossy(&bytes[..bytes.len().min(64)])
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CSP: &str = "apiVersion: palisade.dev/v1alpha1\nkind: ClusterSecurityPolicy\nmetadata:\n  name: deny-db\nspec:\n  tier: security\n  subject:\n    podSelector:\n      matchLabels: {app: db}\n  ingress:\n  - action: Deny\n    from:\n    - namespaceSelector: {}\n";

    fn file(name: &str, yaml: &str) -> RevisionFile {
        RevisionFile {
            name: name.into(),
            yaml: yaml.into(),
        }
    }

    #[test]
    fn a_valid_revision_round_trips() {
        let doc = RevisionDoc {
            revision: 3,
            created_at_us: 1,
            rolled_back_from: None,
            member_networks: Default::default(),
            files: vec![file("g.yaml", CSP)],
        };
        let bytes = serde_json::to_vec(&doc).unwrap();
        let p = parse_revision(3, &bytes).unwrap();
        assert_eq!(p.revision, 3);
        assert_eq!(p.policies.len(), 1);
        assert_eq!(p.policies[0].0.metadata.name, "deny-db");
        assert_eq!(p.policies[0].1.file, "federation/r3/g.yaml");
        assert_eq!(p.policies[0].1.line, 1);
    }

    #[test]
    fn garbage_and_mismatched_documents_are_refused() {
        assert!(parse_revision(1, b"not json").is_err());
        let doc = RevisionDoc {
            revision: 2,
            created_at_us: 1,
            rolled_back_from: None,
            member_networks: Default::default(),
            files: vec![file("g.yaml", CSP)],
        };
        let err = parse_revision(1, &serde_json::to_vec(&doc).unwrap()).unwrap_err();
        assert!(err[0].contains("says it is revision 2"), "{err:?}");
        let bad = RevisionDoc {
            revision: 1,
            created_at_us: 1,
            rolled_back_from: None,
            member_networks: Default::default(),
            files: vec![file("g.yaml", "kind: ClusterSecurityPolicy\nspec: [\n")],
        };
        assert!(parse_revision(1, &serde_json::to_vec(&bad).unwrap()).is_err());
    }

    #[test]
    fn push_validation_reports_file_and_line_and_refuses_other_kinds() {
        let bad = "apiVersion: palisade.dev/v1alpha1\nkind: ClusterSecurityPolicy\nmetadata:\n  name: x\nspec:\n  priority: 5000\n";
        let np = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: n\n  namespace: a\nspec:\n  podSelector: {}\n";
        let errs = validate_files(&[
            file("ok.yaml", CSP),
            file("bad.yaml", bad),
            file("np.yaml", np),
        ])
        .unwrap_err();
        assert!(
            errs.iter().any(|d| d.file == "bad.yaml" && d.line == 6),
            "{errs:?}"
        );
        assert!(
            errs.iter()
                .any(|d| d.file == "np.yaml" && d.code == "not-global-policy" && d.line == 1),
            "{errs:?}"
        );
        assert_eq!(validate_files(&[file("ok.yaml", CSP)]).unwrap(), 1);
    }

    /// A misspelt kind was skipped with a note: on the old code `push` accepted the file and
    /// members applied the revision without that policy (here the Deny), i.e. part of what
    /// was pushed. Now the whole revision is refused, at push and by members.
    #[test]
    fn an_object_of_a_skipped_kind_refuses_the_whole_revision() {
        let typo = CSP.replace(
            "kind: ClusterSecurityPolicy",
            "kind: ClusterSecurityPolicies",
        );
        let list = "apiVersion: v1\nkind: List\nitems:\n- apiVersion: palisade.dev/v1alpha1\n  kind: GlobalPolicy\n  metadata: {name: x}\n".to_string();
        for bad in [typo, list] {
            let files = vec![
                file("ok.yaml", &CSP.replace("deny-db", "other")),
                file("bad.yaml", &bad),
            ];
            let errs = validate_files(&files).unwrap_err();
            assert!(
                errs.iter()
                    .any(|d| d.file == "bad.yaml" && d.code == "not-global-policy"),
                "{errs:?}"
            );
            let doc = RevisionDoc {
                revision: 4,
                created_at_us: 1,
                rolled_back_from: None,
                member_networks: Default::default(),
                files,
            };
            let err = parse_revision(4, &serde_json::to_vec(&doc).unwrap()).unwrap_err();
            assert!(
                err.iter().any(|e| e.contains("federation/r4/bad.yaml")),
                "{err:?}"
            );
        }
    }

    #[test]
    fn pointers_parse_strictly() {
        assert_eq!(parse_pointer(b"12").unwrap(), 12);
        assert!(parse_pointer(b"0").is_err());
        assert!(parse_pointer(b"twelve").is_err());
    }
}
