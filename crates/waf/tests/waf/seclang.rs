//! SecLang semantics on small rule sets.

use crate::{check, fired};
use palisade_waf::{LoadError, Ruleset, RulesetBuilder};

fn rules(text: &str) -> Ruleset {
    match Ruleset::from_str("test.conf", text) {
        Ok(r) => r,
        Err(e) => panic!("{e}"),
    }
}

fn load_err(text: &str) -> String {
    Ruleset::from_str("rules/test.conf", text)
        .expect_err("should not load")
        .to_string()
}

#[test]
fn errors_name_file_line_and_directive() {
    let e = load_err("# c\nSecRule ARGS \"@rx a\" \\\n  \"id:1,\\\n  bogus\"\n");
    assert_eq!(e, "rules/test.conf:2: SecRule: unknown action \"bogus\"");
    let e = load_err("SecAction \"id:1,pass\"\n\nSecRule ARGS \"@rx (\" \"id:2\"");
    assert!(
        e.starts_with("rules/test.conf:3: SecRule: invalid regex"),
        "{e}"
    );
    let e = load_err("SecRule NOPE \"@rx a\" \"id:3\"");
    assert_eq!(e, "rules/test.conf:1: SecRule: unknown variable \"NOPE\"");
    let e = load_err("SecRule ARGS \"@rx a\" \"id:4,chain\"\nSecMarker X");
    assert!(
        e.starts_with("rules/test.conf:1: SecRule: chain is not followed"),
        "{e}"
    );
    let e = load_err("SecRule ARGS \"@rx a\" \"phase:2\"");
    assert_eq!(e, "rules/test.conf:1: SecRule: rule has no id");
    let e = load_err("Frobnicate on");
    assert_eq!(e, "rules/test.conf:1: Frobnicate: unknown directive");
    let e = load_err("SecRule ARGS \"@rx a\" \"id:5,msg:'open\"");
    assert!(e.contains(":1: SecRule: unterminated quote"), "{e}");
}

#[test]
fn unknown_sec_directive_is_a_warning() {
    let mut b = RulesetBuilder::new();
    b.load_str("w.conf", "SecFancyNewThing On\nSecAuditEngine On")
        .unwrap();
    assert_eq!(b.warnings().len(), 1);
    assert_eq!(b.warnings()[0].line, 1);
}

#[test]
fn include_with_glob() {
    let dir = std::env::temp_dir().join(format!("waf-include-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("rules")).unwrap();
    std::fs::write(
        dir.join("rules/b.conf"),
        "SecAction \"id:2,phase:1,pass,log\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("rules/a.conf"),
        "SecAction \"id:1,phase:1,pass,log\"\n",
    )
    .unwrap();
    std::fs::write(dir.join("rules/c.txt"), "garbage\n").unwrap();
    std::fs::write(dir.join("main.conf"), "Include rules/*.conf\n").unwrap();
    let rs = Ruleset::from_files(&[dir.join("main.conf")]).unwrap();
    let tx = check(&rs, "GET", "/", &[], b"");
    assert_eq!(fired(&tx), vec![1, 2]);
    std::fs::write(dir.join("bad.conf"), "Include nothere.conf\n").unwrap();
    let e = Ruleset::from_files(&[dir.join("bad.conf")]).unwrap_err();
    assert!(matches!(e, LoadError::Directive { line: 1, .. }), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

const ANOMALY: &str = r#"
SecRuleEngine On
SecDefaultAction "phase:1,log,pass"
SecDefaultAction "phase:2,log,pass"
SecAction "id:10,phase:1,pass,nolog,setvar:tx.threshold=5,setvar:tx.score=0"
SecRule ARGS "@rx attack" "id:100,phase:2,block,capture,t:none,t:lowercase,msg:'attack in %{MATCHED_VAR_NAME}',logdata:'%{TX.0}',setvar:'tx.score=+%{tx.threshold}'"
SecRule TX:score "@ge %{tx.threshold}" "id:199,phase:2,deny,status:406,msg:'score %{tx.score}'"
"#;

#[test]
fn anomaly_scoring_blocks() {
    let rs = rules(ANOMALY);
    let tx = check(&rs, "GET", "/?a=ATTACK&b=fine", &[], b"");
    assert_eq!(fired(&tx), vec![100, 199]);
    let i = tx.interruption().unwrap();
    assert_eq!((i.rule_id, i.status, i.action), (199, 406, "deny"));
    let m = &tx.matched_rules()[0];
    assert_eq!(m.msg, "attack in ARGS:a");
    assert_eq!(m.data, "attack");
    assert_eq!(tx.matched_rules()[1].msg, "score 5");
    // Two matching values score twice (setvar runs per match, as in ModSecurity).
    let tx = check(&rs, "GET", "/?a=attack&b=attack", &[], b"");
    assert_eq!(tx.tx_var("score"), Some(b"10".as_slice()));
    let tx = check(&rs, "GET", "/?a=benign", &[], b"");
    assert!(tx.interruption().is_none());
    assert!(fired(&tx).is_empty());
}

#[test]
fn detection_only_logs_but_does_not_block() {
    let rs = rules(&ANOMALY.replace("SecRuleEngine On", "SecRuleEngine DetectionOnly"));
    let tx = check(&rs, "GET", "/?a=attack", &[], b"");
    assert_eq!(fired(&tx), vec![100, 199]);
    assert!(tx.interruption().is_none());
}

#[test]
fn chains_skip_after_and_markers() {
    let rs = rules(
        r#"
SecRule REQUEST_METHOD "@streq POST" "id:1,phase:1,pass,log,chain"
    SecRule &REQUEST_HEADERS:Content-Type "@eq 0" "setvar:tx.no_ct=1"
SecRule REQUEST_URI "@beginsWith /skip" "id:2,phase:1,pass,nolog,skipAfter:END"
SecAction "id:3,phase:1,pass,log"
SecMarker END
SecAction "id:4,phase:1,pass,log"
"#,
    );
    assert_eq!(fired(&check(&rs, "POST", "/", &[], b"")), vec![1, 3, 4]);
    assert_eq!(
        fired(&check(
            &rs,
            "POST",
            "/",
            &[("Content-Type", "text/plain")],
            b""
        )),
        vec![3, 4]
    );
    assert_eq!(fired(&check(&rs, "GET", "/skip", &[], b"")), vec![4]);
}

#[test]
fn targets_counts_exclusions_and_regex_keys() {
    let rs = rules(
        r#"
SecRule &ARGS "@ge 3" "id:1,phase:1,pass,log"
SecRule ARGS|!ARGS:safe "@contains evil" "id:2,phase:1,pass,log"
SecRule ARGS:/^id_/ "@rx ^[0-9]+$" "id:3,phase:1,pass,log"
SecRule REQUEST_COOKIES_NAMES "@streq session" "id:4,phase:1,pass,log"
SecRule ARGS_NAMES "@rx ^x$" "id:5,phase:1,pass,log"
"#,
    );
    let tx = check(
        &rs,
        "GET",
        "/?safe=evil&id_a=12&x=1",
        &[("Cookie", "a=1; session=z")],
        b"",
    );
    assert_eq!(fired(&tx), vec![1, 3, 4, 5]);
    let tx = check(&rs, "GET", "/?other=evil&id_a=1x", &[], b"");
    assert_eq!(fired(&tx), vec![2]);
}

#[test]
fn removal_and_update_directives() {
    let rs = rules(
        r#"
SecRule ARGS "@contains bad" "id:1,phase:1,pass,log,tag:'t1'"
SecRule ARGS "@contains bad" "id:2,phase:1,pass,log,tag:'t2'"
SecRule ARGS "@contains bad" "id:3,phase:1,pass,log"
SecRule ARGS "@contains bad" "id:4,phase:1,pass,log"
SecRuleRemoveById 1
SecRuleRemoveByTag t2
SecRuleUpdateTargetById 3 "!ARGS:ok"
SecRuleUpdateActionById 4 "nolog"
"#,
    );
    assert_eq!(
        fired(&check(&rs, "GET", "/?ok=bad", &[], b"")),
        Vec::<u32>::new()
    );
    assert_eq!(fired(&check(&rs, "GET", "/?q=bad", &[], b"")), vec![3]);
}

#[test]
fn runtime_ctl() {
    let rs = rules(
        r#"
SecRule REQUEST_URI "@beginsWith /api" "id:1,phase:1,pass,nolog,ctl:ruleRemoveTargetById=10;ARGS:token,ctl:ruleRemoveById=11"
SecRule REQUEST_HEADERS:Content-Type "@beginsWith application/json" "id:2,phase:1,pass,nolog,ctl:requestBodyProcessor=JSON"
SecRule ARGS "@contains drop" "id:10,phase:2,pass,log"
SecRule ARGS "@contains drop" "id:11,phase:2,pass,log"
SecRule ARGS_NAMES "@streq json.user.roles.1" "id:12,phase:2,pass,log"
SecRule REQBODY_PROCESSOR "@streq JSON" "id:13,phase:2,pass,log"
"#,
    );
    let json = br#"{"user":{"roles":["a","drop table"]},"token":"drop"}"#;
    let h = [("Content-Type", "application/json")];
    assert_eq!(
        fired(&check(&rs, "POST", "/web", &h, json)),
        vec![10, 11, 12, 13]
    );
    assert_eq!(
        fired(&check(&rs, "POST", "/api", &h, json)),
        vec![10, 12, 13]
    );
    let tx = check(&rs, "POST", "/api?token=drop", &[], b"");
    assert_eq!(fired(&tx), Vec::<u32>::new());
}

#[test]
fn body_processors() {
    let rs = rules(
        r#"
SecRule ARGS_POST:name "@streq alice" "id:1,phase:2,pass,log"
SecRule FILES "@endsWith .php" "id:2,phase:2,pass,log"
SecRule REQUEST_HEADERS:Content-Type "@rx xml" "id:3,phase:1,pass,nolog,ctl:requestBodyProcessor=XML"
SecRule XML:/* "@contains secret" "id:4,phase:2,pass,log"
SecRule XML://@* "@streq evil" "id:5,phase:2,pass,log"
SecRule REQBODY_ERROR "@eq 1" "id:6,phase:2,pass,log"
"#,
    );
    let form = [("Content-Type", "application/x-www-form-urlencoded")];
    assert_eq!(
        fired(&check(&rs, "POST", "/", &form, b"name=alice&x=1")),
        vec![1]
    );
    let mp = "multipart/form-data; boundary=XX";
    let body = b"--XX\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\nalice\r\n--XX\r\nContent-Disposition: form-data; name=\"up\"; filename=\"shell.php\"\r\n\r\n<?php\r\n--XX--\r\n";
    assert_eq!(
        fired(&check(&rs, "POST", "/", &[("Content-Type", mp)], body)),
        vec![1, 2]
    );
    let xml = [("Content-Type", "text/xml")];
    let doc = b"<a k=\"evil\"><b>top secret</b></a>";
    assert_eq!(fired(&check(&rs, "POST", "/", &xml, doc)), vec![4, 5]);
    assert_eq!(
        fired(&check(&rs, "POST", "/", &xml, b"<a><b></a>")),
        vec![6]
    );
}

#[test]
fn transformations_and_multimatch() {
    let rs = rules(
        r#"
SecRule ARGS "@streq <script>" "id:1,phase:1,pass,log,t:none,t:urlDecodeUni,t:htmlEntityDecode,t:lowercase"
SecRule ARGS "@streq %41" "id:2,phase:1,pass,log,t:urlDecode,multiMatch"
SecRule ARGS:len "@eq 3" "id:3,phase:1,pass,log,t:length"
"#,
    );
    assert_eq!(
        fired(&check(&rs, "GET", "/?a=%26lt;SCRIPT%26gt;", &[], b"")),
        vec![1]
    );
    assert_eq!(
        fired(&check(&rs, "GET", "/?a=%2541&len=abc", &[], b"")),
        vec![2, 3]
    );
}
