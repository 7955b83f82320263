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

/// A compressed body hides a key from a scan of its bytes: with DLP on it is refused
/// (`415 encoded-body`), never passed unscanned (on the old code a gzip-encoded body went
/// through, key and all). Without DLP it passes as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compressed_body_is_refused_when_dlp_is_on() {
    let gz = std::env::temp_dir().join(format!("palisade-dlp-gz-{}", std::process::id()));
    let st = Command::new("sh")
        .arg("-c")
        .arg(format!("printf '%s' '{AWS}' | gzip -c > {}", gz.display()))
        .status()
        .unwrap();
    assert!(st.success());
    let data = format!("@{}", gz.display());
    let s = start_with(Posture::Allow, &[], |cfg, _| {
        cfg.dlp = Some(DlpSettings::all(DlpAction::Block))
    })
    .await;
    let url = format!("http://allowed.test:{}/echo", s.upstream);
    for encoding in ["gzip", "deflate, identity", "br"] {
        let header = format!("Content-Encoding: {encoding}");
        let (body, code) = curl(via(
            &s,
            &[
                "--data-binary",
                &data,
                "-H",
                &header,
                "-w",
                "\n%{http_code}",
            ],
            &url,
        ))
        .await;
        assert_eq!(
            (body.as_str(), code.as_str()),
            ("palisade: denied (encoded-body)", "415"),
            "{encoding}"
        );
        let e = next_event(&s.events).await;
        let EventBody::Http(h) = &e.body else {
            panic!("{e:?}")
        };
        assert_eq!(h.reason.as_deref(), Some("encoded-body"));
    }
    // `identity` is no coding.
    let (body, code) = curl(via(
        &s,
        &[
            "-d",
            "weights=v2",
            "-H",
            "Content-Encoding: identity",
            "-w",
            "\n%{http_code}",
        ],
        &url,
    ))
    .await;
    assert_eq!((body.as_str(), code.as_str()), ("weights=v2", "200"));
    let _ = std::fs::remove_file(&gz);
}

/// The same key percent-encoded in a form, behind JSON escapes, or base64 in a multipart
/// part is found (on the old code each went through); `redact` cannot cut a key out of its
/// encoding, so such a body is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encoded_secrets_are_found_in_forms_json_and_multipart() {
    let token = "ghp_0123456789abcdefghijABCDEFGHIJ012345";
    let pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA\n-----END RSA PRIVATE KEY-----";
    let key_file = std::env::temp_dir().join(format!("palisade-dlp-key-{}", std::process::id()));
    std::fs::write(&key_file, format!("token: {token}\n")).unwrap();
    for action in [DlpAction::Block, DlpAction::Redact] {
        let s = start_with(Posture::Allow, &[], |cfg, _| {
            cfg.dlp = Some(DlpSettings::all(action))
        })
        .await;
        let url = format!("http://allowed.test:{}/echo", s.upstream);
        let json = format!("{{\"t\":\"{}\"}}", token.replace('_', "\\u005f"));
        let bodies: Vec<Vec<String>> = vec![
            vec!["--data-urlencode".into(), format!("key={pem}")],
            vec![
                "-H".into(),
                "Content-Type: application/json".into(),
                "-d".into(),
                json,
            ],
            // A multipart part that curl sends base64-encoded (`Content-Transfer-Encoding`).
            vec![
                "-F".into(),
                format!("f=@{};encoder=base64", key_file.display()),
            ],
        ];
        for extra in bodies {
            let mut args: Vec<&str> = extra.iter().map(String::as_str).collect();
            args.extend(["-w", "\n%{http_code}"]);
            let (body, code) = curl(via(&s, &args, &url)).await;
            assert_eq!(
                (body.as_str(), code.as_str()),
                ("palisade: denied (dlp)", "403"),
                "{action:?} {extra:?}"
            );
            let e = next_event(&s.events).await;
            assert_eq!(e.verdict, Some(Verdict::Deny), "{e:?}");
        }
    }
    let _ = std::fs::remove_file(&key_file);
}
