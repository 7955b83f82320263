//! Validation the Rust types cannot say by themselves, added to the generated schemas by
//! type and field name: ranges, patterns, closed lists, and CEL rules
//! (`x-kubernetes-validations`) for "exactly one of" fields. Each mirrors a check in
//! `palisade_policy::validate`, so the API server refuses at `kubectl apply` what Palisade
//! would refuse later; the controller still validates everything (it is the authority).

use palisade_policy::validate::{DLP_DETECTORS, DLP_PROVIDER_KEYS};
use serde_json::{json, Map, Value};

/// One addition: the definition (Rust type name), the field (`""`: the type itself;
/// `name[]`: the field's items) and the keywords to add.
pub(super) struct Rule {
    /// Rust type name, as schemars names its definition.
    pub(super) ty: &'static str,
    /// Field (camelCase, as serialized) or `""`; `field[]` addresses the items.
    pub(super) field: &'static str,
    /// Keywords merged into that schema node.
    pub(super) add: Value,
}

fn cel(rule: &str, message: &str) -> Value {
    json!({"x-kubernetes-validations": [{"rule": rule, "message": message}]})
}

/// Every rule. A rule whose type or field is missing from every kind is a bug (tested).
pub(super) fn rules() -> Vec<Rule> {
    let port = json!({"type": "integer", "minimum": 1, "maximum": 65535});
    let cidr = json!({"maxLength": 43, "pattern": "^[0-9A-Fa-f:.]+/[0-9]{1,3}$"});
    let r = |ty, field, add| Rule { ty, field, add };
    vec![
        r(
            "Peer",
            "",
            cel(
                "(has(self.podSelector) || has(self.namespaceSelector) ? 1 : 0) + \
                 (has(self.ipBlock) ? 1 : 0) + (has(self.fqdn) ? 1 : 0) == 1",
                "a peer must set exactly one of podSelector/namespaceSelector, ipBlock, fqdn",
            ),
        ),
        r(
            "Peer",
            "fqdn",
            json!({"minLength": 1, "maxLength": 254, "pattern": "^[A-Za-z0-9*_.-]+$"}),
        ),
        r("IpBlock", "cidr", cidr.clone()),
        r("IpBlock", "except[]", cidr),
        r(
            "SecurityRule",
            "",
            cel(
                "!(has(self.from) && has(self.to))",
                "ingress rules list peers in `from`, egress rules in `to`, not both",
            ),
        ),
        r(
            "PortSpec",
            "",
            cel(
                "!has(self.endPort) || has(self.port)",
                "endPort needs port to be set",
            ),
        ),
        r("PortSpec", "endPort", port),
        r(
            "HttpRule",
            "methods[]",
            json!({"pattern": "^[A-Z]+$", "maxLength": 32}),
        ),
        r(
            "PathMatch",
            "",
            cel(
                "(has(self.exact) ? 1 : 0) + (has(self.prefix) ? 1 : 0) + \
                 (has(self.regex) ? 1 : 0) == 1",
                "path must set exactly one of exact, prefix, regex",
            ),
        ),
        r("PathMatch", "exact", json!({"pattern": "^/"})),
        r("PathMatch", "prefix", json!({"pattern": "^/"})),
        r(
            "HeaderMatch",
            "",
            cel(
                "!(has(self.value) && has(self.regex))",
                "set value or regex, not both",
            ),
        ),
        r(
            "HeaderMatch",
            "name",
            json!({"minLength": 1, "maxLength": 256, "pattern": "^[A-Za-z0-9!#$%&'*+.^_`|~-]+$"}),
        ),
        r(
            "LabelSelectorRequirement",
            "",
            cel(
                "self.operator in ['In', 'NotIn'] ? (has(self.values) && size(self.values) > 0) \
                 : (!has(self.values) || size(self.values) == 0)",
                "In and NotIn need values; Exists and DoesNotExist take none",
            ),
        ),
        r(
            "DlpSpec",
            "detectors[]",
            json!({"type": "string", "enum": DLP_DETECTORS}),
        ),
        r(
            "DlpSpec",
            "forwardedCredentials[]",
            json!({"type": "string", "enum": DLP_PROVIDER_KEYS}),
        ),
        r(
            "ClusterSecurityPolicySpec",
            "priority",
            json!({"minimum": 0, "maximum": 1000}),
        ),
        r("ClusterRule", "name", json!({"maxLength": 100})),
        r("AIGatewaySpec", "routes", json!({"minItems": 1})),
        r(
            "AIGatewaySpec",
            "routes",
            json!({"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]}),
        ),
        r(
            "AIGatewaySpec",
            "consumers",
            json!({"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]}),
        ),
        r("AIRoute", "backend", json!({"pattern": "^https?://"})),
        r("AIRoute", "pathPrefix", json!({"pattern": "^/"})),
        r(
            "WafSpec",
            "paranoiaLevel",
            json!({"minimum": 1, "maximum": 4}),
        ),
        r(
            "PromptGuardSpec",
            "threshold",
            json!({"minimum": 0, "maximum": 1}),
        ),
        r(
            "OutputFilterSpec",
            "kind",
            json!({"enum": ["secrets", "pii", "canary"]}),
        ),
        r(
            "DnsSpec",
            "refuseWith",
            json!({"enum": ["REFUSED", "NXDOMAIN"]}),
        ),
        r(
            "EgressSpec",
            "events",
            json!({"enum": ["all", "denied", "none"]}),
        ),
    ]
}

/// Applies the rules to the `$defs` of one generated schema; returns how many applied.
pub(super) fn apply(defs: &mut Map<String, Value>, rules: &[Rule]) -> Result<Vec<usize>, String> {
    let mut applied = Vec::new();
    for (i, rule) in rules.iter().enumerate() {
        let Some(def) = defs.get_mut(rule.ty) else {
            continue;
        };
        let target = if rule.field.is_empty() {
            def
        } else {
            let (field, items) = match rule.field.strip_suffix("[]") {
                Some(f) => (f, true),
                None => (rule.field, false),
            };
            let prop = def
                .pointer_mut(&format!("/properties/{field}"))
                .ok_or_else(|| format!("{} has no field {field}", rule.ty))?;
            let prop = if items {
                find_items(prop).ok_or_else(|| format!("{}.{field} is not a list", rule.ty))?
            } else {
                prop
            };
            prop
        };
        merge(target, &rule.add);
        applied.push(i);
    }
    Ok(applied)
}

/// The items schema of a list field, also when the field is optional (`anyOf [list, null]`).
fn find_items(v: &mut Value) -> Option<&mut Value> {
    if v.get("items").is_some() {
        return v.get_mut("items");
    }
    let branches = v.get_mut("anyOf")?.as_array_mut()?;
    branches.iter_mut().find_map(|b| b.get_mut("items"))
}

fn merge(target: &mut Value, add: &Value) {
    let (Some(t), Some(a)) = (target.as_object_mut(), add.as_object()) else {
        return;
    };
    for (k, v) in a {
        match (t.get_mut(k), v) {
            (Some(Value::Array(have)), Value::Array(more)) if k.starts_with("x-kubernetes") => {
                have.extend(more.iter().cloned())
            }
            _ => {
                t.insert(k.clone(), v.clone());
            }
        }
    }
}
