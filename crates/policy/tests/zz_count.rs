#[path = "../benches/gen/mod.rs"]
mod gen;
use palisade_policy::*;
#[test]
fn count() {
    let snap = gen::snapshot(&gen::Scale::FULL, 2024);
    let t = std::time::Instant::now();
    let e = Engine::compile(&snap);
    eprintln!("compile {:?}", t.elapsed());
    let n = e.pods().len();
    let mut rng = gen::Rng::new(1);
    let flows: Vec<(u32,u32,u16)> = (0..1<<16).map(|_| (rng.below(n) as u32, rng.below(n) as u32, *rng.pick(&[80u16, 443, 5432, 6379, 8080, 9090, 9100, 31000]))).collect();
    let mut allowed = 0usize;
    let mut best = f64::MAX;
    for _round in 0..5 {
        let t = std::time::Instant::now();
        for _ in 0..10 {
            for &(s, d, p) in &flows {
                let v = e.verdict(&Flow { src: Endpoint::Pod(s), dst: Endpoint::Pod(d), port: p, protocol: Protocol::TCP, http: None });
                allowed += v.allowed() as usize;
            }
        }
        best = best.min(t.elapsed().as_nanos() as f64 / (10.0 * flows.len() as f64));
    }
    eprintln!("verdict best {best:.0} ns (allowed {allowed})");
    let first: Vec<u32> = e.sorted_pods().into_iter().take(1000).collect();
    let t = std::time::Instant::now();
    let m = e.matrix(&first, 80, Protocol::TCP);
    eprintln!("matrix {:?} {}", t.elapsed(), m.allowed.iter().filter(|a| **a).count());
}
