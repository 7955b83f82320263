//! DLP on request bodies through the proxy: block, redact, log; the event names the
//! detector.

use super::*;
use palisade_egress::DlpSettings;
use palisade_policy::model::DlpAction;

const AWS: &str = "aws_secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

fn detectors(e: &Event) -> Vec<(String, String)> {
    let EventBody::Http(h) = &e.body else {
        panic!("{e:?}")
    };
    h.detections
        .iter()
        .map(|d| (d.detector.clone(), format!("{:?}", d.action).to_lowercase()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_is_blocked_and_the_event_names_the_detector() {
    let s = start_with(Posture::Allow, &[], |cfg, _| {
        cfg.dlp = Some(DlpSettings::all(DlpAction::Block))
    })
    .await;
    let url = format!("http://allowed.test:{}/echo", s.upstream);
    let (body, code) = curl(via(&s, &["-d", AWS, "-w", "\n%{http_code}"], &url)).await;
    assert_eq!(
        (body.as_str(), code.as_str()),
        ("palisade: denied (dlp)", "403")
    );
    let e = next_event(&s.events).await;
    assert_eq!(e.verdict, Some(Verdict::Deny));
    assert_eq!(
        detectors(&e),
        vec![("dlp.aws-key".to_string(), "block".to_string())]
    );
    // A clean body passes.
    let (body, code) = curl(via(&s, &["-d", "weights=v2", "-w", "\n%{http_code}"], &url)).await;
    assert_eq!((body.as_str(), code.as_str()), ("weights=v2", "200"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_card_number_is_redacted_or_logged() {
    let s = start_with(Posture::Allow, &[], |cfg, _| {
        cfg.dlp = Some(DlpSettings::all(DlpAction::Redact))
    })
    .await;
    let url = format!("http://allowed.test:{}/echo", s.upstream);
    let (body, code) = curl(via(
        &s,
        &[
            "-d",
            "pay with 4111 1111 1111 1111 today",
            "-w",
            "\n%{http_code}",
        ],
        &url,
    ))
    .await;
    assert_eq!(
        (body.as_str(), code.as_str()),
        ("pay with [REDACTED:card] today", "200")
    );
    let e = next_event(&s.events).await;
    assert_eq!(
        detectors(&e),
        vec![("dlp.card".to_string(), "redact".to_string())]
    );

    let s = start_with(Posture::Allow, &[], |cfg, _| {
        cfg.dlp = Some(DlpSettings::all(DlpAction::Log))
    })
    .await;
    let url = format!("http://allowed.test:{}/echo", s.upstream);
    let (body, _) = curl(via(
        &s,
        &["-d", "mail bob@example.com", "-w", "\n%{http_code}"],
        &url,
    ))
    .await;
    assert_eq!(body, "mail bob@example.com");
    let e = next_event(&s.events).await;
    assert_eq!(
        detectors(&e),
        vec![("dlp.email".to_string(), "log".to_string())]
    );
}
