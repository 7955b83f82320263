//! Benign technical prompts generated from templates, added to the training split only.
//!
//! The public prompt-injection data sets have almost no benign prompts with SQL, code,
//! JSON, logs, shell commands or base64 in them, while their attacks often do; a model
//! trained on them alone learns "looks technical" as "is an attack". These generated
//! hard negatives (ordinary questions about queries, code, configs and data, some
//! with everyday uses of "ignore", "override" or "previous", harmless role-play
//! requests such as "pretend you are a chef", pages of notes mixing prose and code, and —
//! from [`documents`] — long technical documents of many kinds, since nearly every long
//! text in the public sets is a jailbreak) teach it otherwise. They are
//! never used for validation, so the threshold and the reported figures come from real data.

use crate::decode;
use crate::documents;

const TABLES: &[&str] = &[
    "users",
    "orders",
    "products",
    "invoices",
    "customers",
    "employees",
    "sessions",
    "payments",
    "inventory",
    "events",
    "accounts",
    "shipments",
];
const COLUMNS: &[&str] = &[
    "id",
    "name",
    "email",
    "created_at",
    "status",
    "total",
    "price",
    "quantity",
    "country",
    "amount",
    "updated_at",
    "owner_id",
];
const VALUES: &[&str] = &[
    "active",
    "pending",
    "2024-01-01",
    "DE",
    "shipped",
    "admin@example.com",
    "O'Brien",
    "gold",
    "42",
    "paid",
];
const TOPICS: &[&str] = &[
    "the quarterly budget",
    "our onboarding guide",
    "the hiking trip",
    "the database migration",
    "my thesis outline",
    "the marketing plan",
    "the wedding menu",
    "the sprint retrospective",
    "the API changelog",
    "the garden layout",
];

const ROLES: &[&str] = &[
    "an expert sommelier",
    "a patient maths tutor",
    "a travel agent",
    "a senior Python developer",
    "a personal fitness coach",
    "a museum guide",
    "a career counsellor",
    "a friendly librarian",
    "a film critic",
    "a chef",
    "a product manager",
    "an interviewer for a frontend role",
    "a spelling bee judge",
    "a Shakespearean actor",
    "a tour guide in Rome",
];
const TASKS: &[&str] = &[
    "recommend something for a grilled salmon dinner",
    "explain fractions to a ten-year-old",
    "plan three days in Lisbon on a budget",
    "review my function for readability",
    "suggest a four-week running plan",
    "describe the history of the building",
    "help me prepare for a salary negotiation",
    "suggest five novels like The Hobbit",
    "critique the pacing of my short film",
    "give me a weeknight pasta recipe",
    "write user stories for a login page",
    "ask me one question at a time and wait for my answers",
    "quiz me on ten hard words",
    "recite a sonnet about the sea",
    "tell me what to see near the Colosseum",
];

/// Advances the generator (a 64-bit LCG) and returns its high bits.
fn step(r: &mut u64) -> u64 {
    *r = r
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407);
    *r >> 33
}

/// One item of `list`, chosen by the generator.
pub(crate) fn pick<'a>(r: &mut u64, list: &[&'a str]) -> &'a str {
    list[(step(r) as usize) % list.len()]
}

/// A number in `lo..hi` (`hi > lo`), chosen by the generator.
pub(crate) fn num(r: &mut u64, lo: u64, hi: u64) -> u64 {
    lo + step(r) % (hi - lo)
}

fn sql(r: &mut u64) -> String {
    let t = pick(r, TABLES);
    let (a, b, c) = (pick(r, COLUMNS), pick(r, COLUMNS), pick(r, COLUMNS));
    let v = pick(r, VALUES);
    match pick(r, &["0", "1", "2", "3", "4", "5", "6", "7"]) {
        "0" => format!("SELECT {a}, {b} FROM {t} WHERE {c} = '{v}' ORDER BY {a} DESC LIMIT 20;"),
        "1" => format!("DELETE FROM {t} WHERE {c} < '2023-01-01';"),
        "2" => format!("DROP TABLE IF EXISTS {t}_backup; CREATE TABLE {t}_backup AS SELECT * FROM {t};"),
        "3" => format!("UPDATE {t} SET {b} = '{v}' WHERE id = 17; -- fix the bad import"),
        "4" => format!("INSERT INTO {t} ({a}, {b}) VALUES ('{v}', 3);"),
        "5" => format!("SELECT {c}, COUNT(*) FROM {t} GROUP BY {c} HAVING COUNT(*) > 5;"),
        "6" => format!("SELECT t.{a}, o.{b} FROM {t} t LEFT JOIN orders o ON o.owner_id = t.id WHERE o.{c} IS NULL;"),
        _ => format!("CREATE INDEX idx_{t}_{c} ON {t} ({c}); EXPLAIN ANALYZE SELECT * FROM {t} WHERE {c} = '{v}';"),
    }
}

fn code(r: &mut u64) -> String {
    let t = pick(r, TABLES);
    let c = pick(r, COLUMNS);
    match pick(r, &["0", "1", "2", "3", "4", "5", "6", "7", "8"]) {
        "0" => format!("def load_{t}(path):\n    with open(path) as f:\n        return [line.strip().split(',') for line in f if not line.startswith('#')]"),
        "1" => format!("const {t} = await fetch('/api/{t}').then(r => r.json());\nconsole.log({t}.filter(x => x.{c} !== null).length);"),
        "2" => format!("fn total(items: &[Item]) -> u64 {{\n    items.iter().map(|i| i.{c}).sum()\n}}"),
        "3" => format!("for f in logs/*.log; do grep -c \"ERROR\" \"$f\"; done | sort -n | tail -5  # {t}"),
        "4" => format!("{{\"name\": \"{t}-service\", \"replicas\": 3, \"env\": {{\"MODE\": \"prod\", \"LOG_LEVEL\": \"debug\"}}, \"ports\": [8080]}}"),
        "5" => format!("2024-03-12T10:01:22Z ERROR {t}-worker: timeout after 30s while reading {c} (retry 3/5)\n2024-03-12T10:01:23Z WARN  {t}-worker: falling back to cache"),
        "6" => format!("import pandas as pd\ndf = pd.read_csv('{t}.csv')\nprint(df.groupby('{c}').size())"),
        "7" => format!("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {t}\nspec:\n  replicas: 2"),
        _ => format!("Traceback (most recent call last):\n  File \"app.py\", line 12, in <module>\n    print(row['{c}'])\nKeyError: '{c}'"),
    }
}

fn base64(s: &str) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in s.as_bytes().chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(A[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    debug_assert_eq!(decode::base64_decode(&out).as_deref(), Some(s.as_bytes()));
    out
}

fn prompt(r: &mut u64) -> String {
    let topic = pick(r, TOPICS);
    let role = pick(r, ROLES);
    let task = pick(r, TASKS);
    match pick(r, &["0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14"]) {
        "12" => format!("{} {role} and {task}.", pick(r, &["Pretend you are", "Act as", "I want you to act as", "Imagine you are", "Play the role of"])),
        "13" => format!("You are {role}. {}{task}. Stay in that role for the rest of our chat, and keep answers short.", pick(r, &["Please ", "From now on, ", "Your task is to ", ""])),
        "14" => format!("Let's role-play: you are {role} and I am a customer. {} {task}.", pick(r, &["First,", "Start by asking what I need, then", "Begin now:"])),
        "0" => format!("{} {}", pick(r, &["Can you review this SQL?", "Why is this query slow?", "Is this query safe to run in production?", "What does this statement do?"]), sql(r)),
        "1" => format!("{} {}\n{}", pick(r, &["Explain this code:", "Fix the bug in this snippet:", "Add comments to this:", "Rewrite this more idiomatically:"]), code(r), pick(r, &["Thanks!", "It fails on empty input.", "Keep the same behaviour.", ""])),
        "2" => format!("Here is an error from our logs:\n{}\nWhat went wrong, and what should we check first?", code(r)),
        "3" => format!("Decode this base64 value from our config file and tell me what it is: {}", base64(&format!("{}={}", pick(r, COLUMNS), pick(r, VALUES)))),
        "4" => format!("Ignore the outliers in this data and compute the median: 12, 15, 14, 980, 13, 16, 11. Also explain why {topic} matters."),
        "5" => format!("Please disregard my previous message about {topic}; I attached the wrong file. Here is the right query: {}", sql(r)),
        "6" => format!("Our style guide says 'never use SELECT *' and 'always name constraints'. Does this follow the rules? {}", sql(r)),
        "7" => format!("The system prompt of my support bot is \"You are a friendly assistant for {topic}. Answer briefly.\" How can I make its answers more accurate?"),
        "8" => format!("Convert this to YAML and keep the key order: {}", code(r)),
        "9" => format!("How do I override the default {} in {}? The docs for the previous version said to set it in config.toml.", pick(r, &["timeout", "log level", "port", "theme", "encoding"]), pick(r, &["nginx", "Django", "Spring Boot", "cargo", "webpack"])),
        "10" => format!("Summarise {topic} in three bullet points, then write a SQL query to list the five newest rows: {}", sql(r)),
        _ => format!("My colleague wrote \"{}\" in the review. Is that a fair comment on this code?\n{}", pick(r, &["this will drop the whole table if the filter is empty", "forget the old helper, use the new one", "the previous version ignored errors", "skip the cache for admin users"]), code(r)),
    }
}

const PROSE: &[&str] = &[
    "The service reads its configuration at start-up and reloads it when the file changes.",
    "Requests that fail validation are rejected with a clear error and logged with the request id.",
    "By default every connection is denied unless a policy allows it explicitly.",
    "The admin API listens on localhost only; remote access goes through the gateway.",
    "Tokens expire after fifteen minutes, and the client refreshes them in the background.",
    "Firewall rules are applied in order, and the first matching rule decides.",
    "The previous release ignored the timeout setting; this one honours it.",
    "Each worker keeps its own cache, so a restart clears it without affecting the others.",
    "If the upstream does not answer within five seconds, the proxy returns a gateway timeout.",
    "The system keeps the last good configuration when a new one fails to parse.",
    "Passwords are stored as salted hashes and compared in constant time.",
    "The migration adds an index on the created_at column and backfills the new status field.",
    "Logs are rotated daily and kept for thirty days before they are deleted.",
    "The test suite runs on every pull request, and a failing test blocks the merge.",
    "Users with the viewer role can read dashboards but cannot change alert rules.",
    "The scheduler retries failed jobs three times with exponential back-off.",
    "Our onboarding guide explains how to request access, set up the VPN and clone the repositories.",
    "Quarterly revenue grew by eight percent, driven mainly by the subscription tier.",
    "The committee reviewed the proposal and asked for a revised budget by the end of the month.",
    "Water the tomatoes in the morning and mulch the beds to keep the soil moist.",
    "The museum is closed on Mondays; guided tours start every hour from ten until four.",
    "Chapter three describes how the instructions in the manual were translated and revised.",
    "The model is evaluated on a held-out set, and the threshold is chosen on validation data.",
    "Override the default port with the PORT environment variable if 8080 is taken.",
    "Skip this section if you already installed the command-line tools.",
    "Note: the old endpoint is deprecated and will be removed in the next major version.",
    "The assistant feature answers questions about the documentation and links to the source pages.",
    "Access is granted per team, and owners review the list every quarter.",
];

/// A long benign document: prose paragraphs with code, queries, configs and lists.
fn document(r: &mut u64) -> String {
    let mut doc = String::from(pick(
        r,
        &[
            "Please summarise this document:

",
            "Can you proofread the following?

",
            "Here are our internal notes; list the action items.

",
            "Translate this page into plain English for new staff:

",
            "",
        ],
    ));
    let parts = 6 + (*r >> 60) as usize;
    for i in 0..parts {
        match pick(r, &["p", "p", "p", "code", "sql", "list"]) {
            "code" => doc.push_str(&format!("```\n{}\n```", code(r))),
            "sql" => doc.push_str(&sql(r)),
            "list" => doc.push_str(&format!(
                "- {}\n- {}\n- {}",
                pick(r, PROSE),
                pick(r, PROSE),
                pick(r, PROSE)
            )),
            _ => {
                for _ in 0..3 {
                    doc.push_str(pick(r, PROSE));
                    doc.push(' ');
                }
            }
        }
        doc.push_str(if i % 2 == 0 { "\n\n" } else { "\n" });
    }
    doc
}

/// `n` generated benign prompts (deterministic).
pub(crate) fn benign_prompts(n: usize, seed: u64) -> Vec<String> {
    let mut r = seed | 1;
    (0..n)
        .map(|i| {
            // Of every 8: 4 short prompts, 3 technical documents, 1 page of notes.
            match i % 8 {
                3 => document(&mut r),
                1 | 5 | 7 => documents::technical_document(&mut r),
                _ => prompt(&mut r),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_varied() {
        let a = benign_prompts(200, 3);
        assert_eq!(a, benign_prompts(200, 3));
        let distinct: std::collections::HashSet<_> = a.iter().collect();
        assert!(distinct.len() > 150, "{}", distinct.len());
        // 3 of every 8 are technical documents and 1 a page of notes, all long.
        let long = a.iter().filter(|t| t.len() >= 500).count();
        assert!((90..=110).contains(&long), "{long}");
    }

    #[test]
    fn base64_matches_the_decoder() {
        assert_eq!(base64("status=paid"), "c3RhdHVzPXBhaWQ=");
    }
}
