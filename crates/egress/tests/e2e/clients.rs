//! Real SDK clients through the gateway: the Python `openai` client, with interception,
//! against a local HTTPS stand-in for an OpenAI-compatible API. Skipped (with a note) when
//! the interpreter lacks the package: set `PALISADE_TEST_PYTHON` to one that has it.

use std::sync::Arc;

use super::intercept::{https_upstream, roots};
use super::*;
use palisade_egress::tls::{generate_ca, Interceptor};

const SCRIPT: &str = r#"
import sys, openai
proxy, ca, port = sys.argv[1:4]
client = openai.OpenAI(
    base_url=f"https://api.openai.test:{port}/v1",
    api_key="sk-test",
    http_client=openai.DefaultHttpxClient(proxy=proxy, verify=ca),
)
r = client.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "hi"}])
print(r.usage.prompt_tokens, r.usage.completion_tokens, r.choices[0].message.content)
"#;

fn python_with(module: &str) -> Option<String> {
    let py = std::env::var("PALISADE_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let ok = Command::new(&py)
        .args(["-c", &format!("import {module}")])
        .output()
        .is_ok_and(|o| o.status.success());
    ok.then_some(py)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openai_client_is_logged_with_model_and_tokens() {
    let Some(py) = python_with("openai") else {
        eprintln!("skipped: no Python with the openai package (set PALISADE_TEST_PYTHON)");
        return;
    };
    let (up_cert, up_key) = generate_ca("test upstream CA").unwrap();
    let upstream_ca = Interceptor::new(&up_cert, &up_key, roots(&up_cert)).unwrap();
    let port = https_upstream(&upstream_ca, "api.openai.test").await;
    let (gw_cert, gw_key) = generate_ca("test gateway CA").unwrap();
    let gw = Arc::new(Interceptor::new(&gw_cert, &gw_key, roots(&up_cert)).unwrap());
    let dir = std::env::temp_dir().join(format!("palisade-egress-py-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca_file = dir.join("gateway-ca.crt");
    std::fs::write(&ca_file, &gw_cert).unwrap();
    let s = start_with(Posture::Allow, &[], move |cfg, _| cfg.intercept = Some(gw)).await;
    let args = vec![
        "-c".to_string(),
        SCRIPT.to_string(),
        format!("http://{}", s.proxy),
        ca_file.display().to_string(),
        port.to_string(),
    ];
    let out = tokio::task::spawn_blocking(move || Command::new(py).args(args).output().unwrap())
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.trim(), "12 5 hi");
    let e = next_event(&s.events).await;
    let EventBody::Http(h) = &e.body else {
        panic!("{e:?}")
    };
    let ai = h.ai.clone().expect("ai fields");
    assert_eq!(
        (
            ai.provider.as_deref(),
            ai.model.as_deref(),
            ai.prompt_tokens,
            ai.completion_tokens
        ),
        (
            Some("openai-compatible"),
            Some("gpt-test"),
            Some(12),
            Some(5)
        )
    );
    assert_eq!(h.tls, Some(palisade_events::TlsMode::Intercepted));
    let _ = std::fs::remove_dir_all(&dir);
}

const HUB_SCRIPT: &str = r#"
import os, sys, tempfile
proxy, ca, port = sys.argv[1:4]
os.environ.update(HTTPS_PROXY=proxy, SSL_CERT_FILE=ca, HF_HUB_DISABLE_TELEMETRY="1",
                  HF_HOME=tempfile.mkdtemp(), NO_PROXY="")
from huggingface_hub import HfApi, hf_hub_download
endpoint = f"https://hub.test:{port}"
path = hf_hub_download("org/model", "config.json", endpoint=endpoint)
print("DOWNLOADED", open(path).read())
try:
    HfApi(endpoint=endpoint, token="hf_test").upload_file(
        path_or_fileobj=b"weights", path_in_repo="w.bin", repo_id="org/model")
    print("UPLOADED")
except Exception as e:
    print("REFUSED", getattr(getattr(e, "response", None), "status_code", None))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_huggingface_client_downloads_and_is_refused_an_upload() {
    let Some(py) = python_with("huggingface_hub") else {
        eprintln!("skipped: no Python with the huggingface_hub package (set PALISADE_TEST_PYTHON)");
        return;
    };
    let (up_cert, up_key) = generate_ca("test upstream CA").unwrap();
    let upstream_ca = Interceptor::new(&up_cert, &up_key, roots(&up_cert)).unwrap();
    let port = https_upstream(&upstream_ca, "hub.test").await;
    let (gw_cert, gw_key) = generate_ca("test gateway CA").unwrap();
    let gw = Arc::new(Interceptor::new(&gw_cert, &gw_key, roots(&up_cert)).unwrap());
    let dir = std::env::temp_dir().join(format!("palisade-egress-hf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca_file = dir.join("gateway-ca.crt");
    std::fs::write(&ca_file, &gw_cert).unwrap();
    let s = start_with(Posture::Allow, &[], move |cfg, _| cfg.intercept = Some(gw)).await;
    let args = vec![
        "-c".to_string(),
        HUB_SCRIPT.to_string(),
        format!("http://{}", s.proxy),
        ca_file.display().to_string(),
        port.to_string(),
    ];
    let out = tokio::task::spawn_blocking(move || Command::new(py).args(args).output().unwrap())
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines, ["DOWNLOADED hello", "REFUSED 403"], "{stdout}");
    // The refused upload is in the events, decided per request inside intercepted TLS.
    let mut refused = false;
    for _ in 0..6 {
        let e = next_event(&s.events).await;
        let EventBody::Http(h) = &e.body else {
            continue;
        };
        if e.verdict == Some(Verdict::Deny) {
            assert_eq!(h.method.as_deref(), Some("POST"));
            assert_eq!(h.tls, Some(palisade_events::TlsMode::Intercepted));
            refused = true;
            break;
        }
    }
    assert!(refused, "no denied upload event");
    let _ = std::fs::remove_dir_all(&dir);
}

const KEYED_SCRIPT: &str = r#"
import sys, openai
proxy, ca, port, key, leak = sys.argv[1:6]
client = openai.OpenAI(
    base_url=f"https://api.openai.test:{port}/v1",
    api_key=key,
    max_retries=0,
    default_headers={"X-Debug": leak} if leak else None,
    http_client=openai.DefaultHttpxClient(proxy=proxy, verify=ca),
)
try:
    r = client.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "hi"}])
    print("OK", r.usage.prompt_tokens)
except openai.APIStatusError as e:
    print("REFUSED", e.status_code)
"#;

/// With DLP on for secrets (heads scanned), the `openai` client still calls the API with
/// its real-looking key in `Authorization` (the credential for the destination is left
/// alone), while the same key in another header is refused `403 dlp` (on the old code
/// that request went through: heads were not scanned).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openai_clients_key_passes_head_dlp_and_a_leaked_copy_does_not() {
    let Some(py) = python_with("openai") else {
        eprintln!("skipped: no Python with the openai package (set PALISADE_TEST_PYTHON)");
        return;
    };
    let (up_cert, up_key) = generate_ca("test upstream CA").unwrap();
    let upstream_ca = Interceptor::new(&up_cert, &up_key, roots(&up_cert)).unwrap();
    let port = https_upstream(&upstream_ca, "api.openai.test").await;
    let (gw_cert, gw_key) = generate_ca("test gateway CA").unwrap();
    let gw = Arc::new(Interceptor::new(&gw_cert, &gw_key, roots(&up_cert)).unwrap());
    let dir = std::env::temp_dir().join(format!("palisade-egress-pykey-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca_file = dir.join("gateway-ca.crt");
    std::fs::write(&ca_file, &gw_cert).unwrap();
    let s = start_with(Posture::Allow, &[], move |cfg, _| {
        cfg.intercept = Some(gw);
        let mut dlp = palisade_egress::DlpSettings::all(palisade_policy::model::DlpAction::Block);
        dlp.detectors = palisade_egress::dlp::Detector::parse_set("secrets").unwrap();
        cfg.dlp = Some(dlp);
    })
    .await;
    let key = "sk-proj-abcdefghijklmnopqrstuvwx0123";
    for (leak, want) in [("", "OK 12"), (key, "REFUSED 403")] {
        let args = vec![
            "-c".to_string(),
            KEYED_SCRIPT.to_string(),
            format!("http://{}", s.proxy),
            ca_file.display().to_string(),
            port.to_string(),
            key.to_string(),
            leak.to_string(),
        ];
        let py = py.clone();
        let out =
            tokio::task::spawn_blocking(move || Command::new(py).args(args).output().unwrap())
                .await
                .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            stdout.trim(),
            want,
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let e = next_event(&s.events).await;
        let EventBody::Http(h) = &e.body else {
            panic!("{e:?}")
        };
        let found: Vec<&str> = h.detections.iter().map(|d| d.detector.as_str()).collect();
        if leak.is_empty() {
            assert_eq!((e.verdict, found), (Some(Verdict::Allow), vec![]));
        } else {
            assert_eq!(
                (e.verdict, found, h.reason.as_deref()),
                (Some(Verdict::Deny), vec!["dlp.openai-key"], Some("dlp"))
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
