//! A seeded, deterministic generator of cluster traffic for tests (feature `test-util`):
//! normal behaviour of several workloads over many hours of event time, and optionally
//! planted anomalies whose event ids are returned so tests can check alerts' evidence.
//!
//! Normal traffic: a training job with steady big downloads from a model hub (rotating
//! CDN addresses) and hourly checkpoint uploads, an inference server serving consumers
//! with diurnal load and a daily batch burst, a frontend, an ETL worker, a debug shell
//! and a monitoring scraper that is routinely denied towards a few pods; pods of every
//! workload are replaced every few hours with new names and addresses.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

use palisade_events::{
    AiInfo, AlertKind, Detection, DetectionAction, DnsInfo, Endpoint, EndpointKind, Event,
    EventBody, FlowInfo, FlowState, HttpInfo, Protocol, Timestamp, Ulid, Verdict,
};

/// What to generate.
#[derive(Debug, Clone, Copy)]
pub struct TraceConfig {
    /// Random seed.
    pub seed: u64,
    /// Length of the trace in hours of event time.
    pub hours: u32,
    /// Plant the anomalies (after hour 24; needs `hours >= 30`).
    pub anomalies: bool,
}

/// One planted anomaly.
#[derive(Debug, Clone)]
pub struct Planted {
    /// Short name, e.g. `upload-spike`.
    pub name: &'static str,
    /// The alert kind it should raise.
    pub kind: AlertKind,
    /// The alert subject it should raise.
    pub subject: String,
    /// Ids of the anomaly's events.
    pub ids: BTreeSet<String>,
}

/// A generated trace, events in time order.
#[derive(Debug, Clone)]
pub struct Trace {
    /// The events.
    pub events: Vec<Event>,
    /// The planted anomalies (empty without `anomalies`).
    pub planted: Vec<Planted>,
}

/// 2026-11-20T06:00:00Z in microseconds: the start of every trace.
pub const START_US: i64 = 1_795_154_400_000_000;
const MIN: i64 = 60_000_000;
const SEC: i64 = 1_000_000;
const HOUR: i64 = 60 * MIN;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f64 {
        let u1 = self.unit().max(1e-12);
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
    fn lognormal(&mut self, median: f64, sigma: f64) -> f64 {
        median * (sigma * self.normal()).exp()
    }
    fn poisson(&mut self, lambda: f64) -> u64 {
        if lambda > 30.0 {
            return (lambda + lambda.sqrt() * self.normal()).round().max(0.0) as u64;
        }
        let l = (-lambda).exp();
        let (mut k, mut p) = (0u64, 1.0);
        loop {
            p *= self.unit();
            if p <= l {
                return k;
            }
            k += 1;
        }
    }
    fn word(&mut self, alphabet: &[u8], n: usize) -> String {
        (0..n)
            .map(|_| char::from(alphabet[self.below(alphabet.len() as u64) as usize]))
            .collect()
    }
}

/// A workload whose pods are replaced every `churn` microseconds.
struct Workload {
    ns: &'static str,
    app: &'static str,
    churn: i64,
    subnet: u8,
}

impl Workload {
    fn workload(&self) -> String {
        format!("{}/{}", self.ns, self.app)
    }
    /// The pod alive at `t` (`replica` of several): name and address change each churn.
    fn pod(&self, t: i64, replica: u8, seed: u64) -> Endpoint {
        let gen = (t - START_US).div_euclid(self.churn) as u64;
        let mut r =
            Rng(seed ^ (gen + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ u64::from(replica) ^ 0x5555);
        r.next();
        let hash = r.word(b"bcdfghjklmnpqrstvwxz2456789", 9);
        let suffix = r.word(b"bcdfghjklmnpqrstvwxz2456789", 5);
        let ip = Ipv4Addr::new(
            10,
            self.subnet,
            (r.below(200) + 1) as u8,
            (r.below(250) + 2) as u8,
        );
        let mut ep = Endpoint::pod(self.ns, format!("{}-{hash}-{suffix}", self.app));
        ep.workload = Some(self.workload());
        ep.ip = Some(IpAddr::V4(ip));
        ep.labels.insert("app".into(), self.app.into());
        ep.service_account = Some(self.app.into());
        ep
    }
}

struct Gen {
    rng: Rng,
    seed: u64,
    seq: u64,
    events: Vec<Event>,
}

fn ext(name: Option<&str>, ip: Ipv4Addr, port: u16) -> Endpoint {
    let mut d = Endpoint::external(IpAddr::V4(ip));
    d.port = Some(port);
    d.fqdn = name.map(str::to_string);
    d
}

impl Gen {
    fn push(
        &mut self,
        t: i64,
        source: Endpoint,
        dest: Option<Endpoint>,
        body: EventBody,
    ) -> String {
        self.seq += 1;
        let id = Ulid::from_parts((t / 1000) as u64, u128::from(self.seq)).to_string();
        let mut e = Event::new(id.clone(), Timestamp(t), body);
        e.cluster = Some("default".into());
        e.node = Some(format!("node-{}", self.seq % 3 + 1));
        e.protocol = Some(match &e.body {
            EventBody::Dns(_) => Protocol::Udp,
            _ => Protocol::Tcp,
        });
        e.verdict = Some(match &e.body {
            EventBody::Flow(f) if f.state == FlowState::Denied => Verdict::Deny,
            _ => Verdict::Allow,
        });
        e.source = Some(source);
        e.destination = dest;
        self.events.push(e);
        id
    }

    fn dns(
        &mut self,
        t: i64,
        src: &Endpoint,
        name: &str,
        qtype: &str,
        answers: Vec<String>,
    ) -> String {
        let mut dst = Endpoint::new(EndpointKind::Pod);
        dst.namespace = Some("kube-system".into());
        dst.name = Some("coredns".into());
        dst.port = Some(53);
        let body = EventBody::Dns(DnsInfo {
            query: name.to_string(),
            qtype: Some(qtype.into()),
            rcode: Some("NOERROR".into()),
            answers: Some(answers),
            ttl: Some(60),
            latency_us: Some(800 + self.rng.below(2000)),
            features: None,
        });
        self.push(t, src.clone(), Some(dst), body)
    }

    /// A DNS lookup answered with `ip`, then a connection to it that sends `sent` bytes.
    fn connect(
        &mut self,
        t: i64,
        src: &Endpoint,
        name: &str,
        ip: Ipv4Addr,
        sent: u64,
        received: u64,
    ) -> Vec<String> {
        let mut ids = vec![self.dns(t, src, name, "A", vec![ip.to_string()])];
        // Half of the flows carry the name, the others only the address.
        let fqdn = if self.rng.below(2) == 0 {
            Some(name)
        } else {
            None
        };
        let d = ext(fqdn, ip, 443);
        let start = t + 5_000;
        ids.push(self.push(
            start,
            src.clone(),
            Some(d.clone()),
            flow(FlowState::New, None, None),
        ));
        let dur = 200 + self.rng.below(5_000) as i64;
        ids.push(self.push(
            start + dur * 1000,
            src.clone(),
            Some(d),
            flow(FlowState::End, Some(sent), Some(received)),
        ));
        ids
    }

    fn denied(&mut self, t: i64, src: &Endpoint, dst: Endpoint) -> String {
        self.push(
            t,
            src.clone(),
            Some(dst),
            flow(FlowState::Denied, None, None),
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn request(
        &mut self,
        t: i64,
        consumer: &str,
        server: &Endpoint,
        model: &str,
        tokens: u64,
        injection: bool,
    ) -> String {
        let mut src = Endpoint::external(IpAddr::V4(Ipv4Addr::new(
            198,
            51,
            100,
            (self.rng.below(200) + 1) as u8,
        )));
        src.port = Some(40000 + self.rng.below(20000) as u16);
        let mut dst = server.clone();
        dst.port = Some(8080);
        let detections = if injection {
            vec![Detection {
                detector: "prompt-guard".into(),
                action: DetectionAction::Block,
                score: Some(0.97),
                rules: vec!["pi-ignore-previous".into()],
            }]
        } else {
            Vec::new()
        };
        let body = EventBody::Http(HttpInfo {
            method: Some("POST".into()),
            host: Some("llm.example.com".into()),
            path: Some("/v1/chat/completions".into()),
            status: Some(if injection { 403 } else { 200 }),
            bytes_in: Some(tokens * 4 + 120),
            bytes_out: Some(self.rng.below(4000) + 200),
            duration_ms: Some(300 + self.rng.below(3000)),
            consumer: Some(consumer.into()),
            route: Some("llm".into()),
            tls: Some(palisade_events::TlsMode::Intercepted),
            version: None,
            ai: Some(AiInfo {
                provider: Some("vllm".into()),
                model: Some(model.into()),
                operation: Some("chat".into()),
                prompt_tokens: Some(tokens),
                completion_tokens: Some(self.rng.below(500) + 10),
                transfer: None,
            }),
            detections,
            reason: None,
            client_certificate: None,
            suppressed: None,
        });
        self.push(t, src, Some(dst), body)
    }
}

fn flow(state: FlowState, sent: Option<u64>, received: Option<u64>) -> EventBody {
    EventBody::Flow(FlowInfo {
        state,
        bytes_sent: sent,
        bytes_received: received,
        packets: sent.map(|s| s / 1400 + 3),
        duration_ms: None,
    })
}

/// Diurnal load factor at `t`: low at night, peak in the afternoon.
fn diurnal(t: i64) -> f64 {
    let hour = (t.rem_euclid(24 * HOUR)) as f64 / HOUR as f64;
    1.0 + 0.8 * (2.0 * std::f64::consts::PI * (hour - 9.0) / 24.0).sin()
}

const TRAINER: Workload = Workload {
    ns: "training",
    app: "trainer",
    churn: 5 * HOUR,
    subnet: 1,
};
const LLM: Workload = Workload {
    ns: "inference",
    app: "llm-server",
    churn: 7 * HOUR,
    subnet: 2,
};
const FRONTEND: Workload = Workload {
    ns: "web",
    app: "frontend",
    churn: 3 * HOUR,
    subnet: 3,
};
const ETL: Workload = Workload {
    ns: "data",
    app: "etl-worker",
    churn: 4 * HOUR,
    subnet: 4,
};
const SHELL: Workload = Workload {
    ns: "dev",
    app: "debug-shell",
    churn: 6 * HOUR,
    subnet: 5,
};
const PROM: Workload = Workload {
    ns: "monitoring",
    app: "prometheus",
    churn: 11 * HOUR,
    subnet: 6,
};
const DB: Workload = Workload {
    ns: "data",
    app: "postgres",
    churn: 9 * HOUR,
    subnet: 7,
};
const CACHE: Workload = Workload {
    ns: "web",
    app: "redis",
    churn: 2 * HOUR,
    subnet: 8,
};

/// Generates a trace.
pub fn generate(cfg: TraceConfig) -> Trace {
    let mut g = Gen {
        rng: Rng(cfg
            .seed
            .wrapping_mul(2_862_933_555_777_941_757)
            .wrapping_add(3_037_000_493)
            | 1),
        seed: cfg.seed,
        seq: 0,
        events: Vec::new(),
    };
    let end = START_US + i64::from(cfg.hours) * HOUR;
    let s = cfg.seed;
    let hub_ips: Vec<Ipv4Addr> = (10..18).map(|i| Ipv4Addr::new(203, 0, 113, i)).collect();
    let s3 = Ipv4Addr::new(52, 216, 8, 20);
    let openai = Ipv4Addr::new(104, 18, 6, 192);
    let datadog = Ipv4Addr::new(3, 233, 158, 24);
    let google = [
        "www.googleapis.com",
        "oauth2.googleapis.com",
        "storage.googleapis.com",
    ];
    let consumers = [("acme", 12.0), ("globex", 5.0), ("initech", 2.0)];

    let mut t = START_US;
    while t < end {
        let minute = (t - START_US) / MIN;
        // Training: steady big downloads from the hub every 5 minutes (a new CDN address
        // appears later in the trace), small metadata uploads, hourly checkpoints.
        if minute % 5 == 0 {
            let pod = TRAINER.pod(t, 0, s);
            let pool = if t - START_US > 26 * HOUR { 8 } else { 6 };
            let ip = hub_ips[g.rng.below(pool) as usize];
            let name = if g.rng.below(3) == 0 {
                "cdn-lfs.huggingface.co"
            } else {
                "huggingface.co"
            };
            let recv = g.rng.lognormal(2.0e9, 0.2) as u64;
            let sent = g.rng.lognormal(30_000.0, 0.5) as u64;
            let at = t + g.rng.below(30) as i64 * SEC;
            g.connect(at, &pod, name, ip, sent, recv);
            let meta = g.rng.lognormal(50_000.0, 0.4) as u64;
            g.connect(
                t + 40 * SEC,
                &pod,
                "s3.us-east-1.amazonaws.com",
                s3,
                meta,
                2_000,
            );
        }
        if minute % 60 == 17 {
            let pod = TRAINER.pod(t, 0, s);
            let ckpt = g.rng.lognormal(500.0e6, 0.1) as u64;
            g.connect(
                t + 3 * SEC,
                &pod,
                "s3.us-east-1.amazonaws.com",
                s3,
                ckpt,
                4_000,
            );
        }
        // Inference server: calls a hosted model now and then, ships logs every minute.
        {
            let replica = (minute % 2) as u8;
            let pod = LLM.pod(t, replica, s);
            let logs = g.rng.lognormal(100_000.0 * diurnal(t), 0.3) as u64;
            g.connect(
                t + 7 * SEC,
                &pod,
                "http-intake.logs.datadoghq.com",
                datadog,
                logs,
                300,
            );
            if g.rng.below(4) == 0 {
                let sent = g.rng.lognormal(20_000.0, 0.8) as u64;
                g.connect(t + 20 * SEC, &pod, "api.openai.com", openai, sent, 40_000);
            }
        }
        // Frontend: talks to Google APIs and to the inference server (in-cluster).
        if minute % 3 == 0 {
            let pod = FRONTEND.pod(t, (minute % 2) as u8, s);
            let name = google[g.rng.below(3) as usize];
            let sent = g.rng.lognormal(3_000.0, 0.5) as u64;
            let ip = Ipv4Addr::new(142, 250, 74, (g.rng.below(4) + 10) as u8);
            g.connect(t + 11 * SEC, &pod, name, ip, sent, 9_000);
            let mut dst = LLM.pod(t, 0, s);
            dst.port = Some(8080);
            g.push(
                t + 12 * SEC,
                pod.clone(),
                Some(dst.clone()),
                flow(FlowState::New, None, None),
            );
            g.push(
                t + 13 * SEC,
                pod,
                Some(dst),
                flow(FlowState::End, Some(2_000), Some(8_000)),
            );
        }
        // ETL: a managed database outside the cluster.
        if minute % 10 == 4 {
            let pod = ETL.pod(t, 0, s);
            let sent = g.rng.lognormal(200_000.0, 0.6) as u64;
            g.connect(
                t,
                &pod,
                "db.corp-data.net",
                Ipv4Addr::new(192, 0, 2, 40),
                sent,
                5_000_000,
            );
        }
        // Debug shell: an occasional lookup, now and then a denied attempt at the database.
        if minute % 30 == 9 {
            let pod = SHELL.pod(t, 0, s);
            g.connect(
                t,
                &pod,
                "deb.debian.org",
                Ipv4Addr::new(151, 101, 2, 132),
                800,
                90_000,
            );
            if g.rng.below(3) == 0 {
                let mut dst = DB.pod(t, 0, s);
                dst.port = Some(5432);
                g.denied(t + 30 * SEC, &pod, dst);
            }
        }
        // Monitoring: scrapes five pods every minute and is denied by policy on two of
        // them (whose pods churn).
        {
            let pod = PROM.pod(t, 0, s);
            for (w, r) in [(&DB, 0u8), (&CACHE, 0), (&CACHE, 1)] {
                let mut dst = w.pod(t, r, s);
                dst.port = Some(9100);
                g.push(
                    t + 2 * SEC,
                    pod.clone(),
                    Some(dst),
                    flow(FlowState::New, None, None),
                );
            }
            for (w, r) in [(&ETL, 0u8), (&SHELL, 0)] {
                let mut dst = w.pod(t, r, s);
                dst.port = Some(9100);
                g.denied(t + 3 * SEC, &pod, dst);
            }
        }
        // Consumers of the inference API: diurnal load and a 15-minute batch at 09:00 and
        // 21:00 UTC for acme (8 times its usual rate); rare prompt-guard hits.
        let server = LLM.pod(t, 0, s);
        let hour_of_day = t.rem_euclid(24 * HOUR) / HOUR;
        let batch = (hour_of_day == 9 || hour_of_day == 21) && t.rem_euclid(HOUR) < 15 * MIN;
        for (name, rate) in consumers {
            let mut lambda = rate * diurnal(t);
            if batch && name == "acme" {
                lambda *= 8.0;
            }
            let n = g.rng.poisson(lambda);
            for _ in 0..n {
                let at = t + g.rng.below(60_000_000) as i64;
                let tokens = g.rng.lognormal(400.0, 0.8).max(5.0) as u64;
                let inj = g.rng.below(400) == 0;
                let model = if g.rng.below(5) == 0 {
                    "llama-3-8b"
                } else {
                    "llama-3-70b"
                };
                g.request(at, name, &server, model, tokens, inj);
            }
        }
        t += MIN;
    }

    let mut planted = Vec::new();
    if cfg.anomalies && cfg.hours >= 30 {
        plant(&mut g, &mut planted);
    }
    let mut events = g.events;
    events.sort_by(|a, b| a.time.cmp(&b.time).then_with(|| a.id.cmp(&b.id)));
    Trace { events, planted }
}

fn plant(g: &mut Gen, planted: &mut Vec<Planted>) {
    let s = g.seed;
    let at = |h: i64, m: i64| START_US + h * HOUR + m * MIN;

    // A frontend pod reaches a paste site it never used.
    let t = at(25, 10) + 5 * SEC;
    let pod = FRONTEND.pod(t, 1, s);
    let ids = g.connect(
        t,
        &pod,
        "paste.drop-zone.net",
        Ipv4Addr::new(198, 18, 0, 77),
        4_000,
        600,
    );
    planted.push(Planted {
        name: "new-destination",
        kind: AlertKind::NewDestination,
        subject: FRONTEND.workload(),
        ids: ids.into_iter().collect(),
    });

    // The inference server sends 4 GB to its log intake within a minute.
    let t = at(26, 30) + 2 * SEC;
    let pod = LLM.pod(t, 0, s);
    let mut ids = BTreeSet::new();
    for i in 0..5 {
        let sent = 800_000_000 + g.rng.below(10_000_000);
        for id in g.connect(
            t + i * 8 * SEC,
            &pod,
            "http-intake.logs.datadoghq.com",
            Ipv4Addr::new(3, 233, 158, 24),
            sent,
            1_000,
        ) {
            ids.insert(id);
        }
    }
    planted.push(Planted {
        name: "upload-spike",
        kind: AlertKind::EgressVolume,
        subject: LLM.workload(),
        ids,
    });

    // The ETL worker tunnels data through TXT lookups of random base32 names.
    let t0 = at(27, 0);
    let pod = ETL.pod(t0, 0, s);
    let mut ids = BTreeSet::new();
    for i in 0..240i64 {
        let chunk = g.rng.word(b"abcdefghijklmnopqrstuvwxyz234567", 48);
        let name = format!("{chunk}.{i}.t.exfil-c2.io");
        let qtype = if i % 3 == 0 { "A" } else { "TXT" };
        let ans = if qtype == "A" {
            vec!["198.18.7.7".to_string()]
        } else {
            vec!["\"ack\"".to_string()]
        };
        ids.insert(g.dns(t0 + i * 2 * SEC, &pod, &name, qtype, ans));
    }
    planted.push(Planted {
        name: "dns-tunnel",
        kind: AlertKind::DnsTunnel,
        subject: ETL.workload(),
        ids,
    });

    // The debug shell scans the cluster: denied fan-out over pods and ports.
    let t0 = at(28, 0);
    let pod = SHELL.pod(t0, 0, s);
    let mut ids = BTreeSet::new();
    let ports = [22u16, 80, 443, 3306, 5432, 6379];
    for i in 0..72i64 {
        let mut dst = Endpoint::pod("data", format!("target-{}", i % 24));
        dst.ip = Some(IpAddr::V4(Ipv4Addr::new(10, 9, 0, (i % 24 + 10) as u8)));
        dst.port = Some(ports[(i % 6) as usize]);
        ids.insert(g.denied(t0 + i * 2 * SEC, &pod, dst));
    }
    planted.push(Planted {
        name: "scan",
        kind: AlertKind::LateralMovement,
        subject: SHELL.workload(),
        ids,
    });

    // A consumer hammers the inference API with near-identical prompts and injections.
    let t0 = at(29, 0);
    let mut ids = BTreeSet::new();
    for i in 0..4000i64 {
        let tokens = 1500 + g.rng.below(30);
        let inj = i % 40 == 7;
        let server = LLM.pod(t0, 0, s);
        ids.insert(g.request(
            t0 + i * 150_000,
            "initech",
            &server,
            "llama-3-70b",
            tokens,
            inj,
        ));
    }
    planted.push(Planted {
        name: "inference-abuse",
        kind: AlertKind::InferenceAbuse,
        subject: "consumer:initech".into(),
        ids,
    });
}

/// Events as JSON lines.
pub fn to_jsonl(events: &[Event]) -> String {
    let mut out = Vec::new();
    for e in events {
        e.write_json_line(&mut out);
    }
    String::from_utf8(out).unwrap_or_default()
}

/// Counts of events by type, for sanity checks.
pub fn type_counts(events: &[Event]) -> BTreeMap<&'static str, usize> {
    let mut m = BTreeMap::new();
    for e in events {
        *m.entry(e.event_type().as_str()).or_default() += 1;
    }
    m
}
