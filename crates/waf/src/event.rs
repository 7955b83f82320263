//! The audit record as the events store's `http.detections` entry (detector `crs`).

use crate::engine::AuditRecord;
use palisade_events::{Detection, DetectionAction};

impl AuditRecord {
    /// The `http.detections` entry of this transaction: detector `crs`, action `block`
    /// when the request was interrupted (else `log`), the inbound anomaly score, and the
    /// ids of the rules that logged (each once, in order).
    pub fn to_detection(&self) -> Detection {
        let mut rules: Vec<String> = Vec::new();
        for r in &self.rules {
            let id = r.id.to_string();
            if !rules.contains(&id) {
                rules.push(id);
            }
        }
        Detection {
            detector: "crs".into(),
            action: if self.blocked {
                DetectionAction::Block
            } else {
                DetectionAction::Log
            },
            score: Some(self.inbound_score as f64),
            rules,
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::{Request, Ruleset, Transaction};
    use palisade_events::DetectionAction;

    #[test]
    fn blocked_request_becomes_crs_detection() {
        let rs = Ruleset::from_str(
            "t.conf",
            "SecRule ARGS \"@contains evil\" \"id:10,phase:2,log,pass,setvar:tx.blocking_inbound_anomaly_score=+5\"\n\
             SecRule ARGS \"@contains evil\" \"id:11,phase:2,log,deny,status:403\"",
        )
        .unwrap();
        let mut tx = Transaction::new(&rs);
        tx.process_request(&Request {
            method: "GET",
            uri: b"/?a=evil",
            protocol: "HTTP/1.1",
            headers: &[],
            body: b"",
            remote_addr: "10.0.0.1",
        });
        let d = tx.audit_record().to_detection();
        assert_eq!(d.detector, "crs");
        assert_eq!(d.action, DetectionAction::Block);
        assert_eq!(d.score, Some(5.0));
        assert_eq!(d.rules, vec!["10".to_string(), "11".to_string()]);
        let json = serde_json::to_value(&d).unwrap();
        assert_eq!(json["rules"][1], "11");
    }
}
