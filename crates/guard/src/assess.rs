//! The scoring pipeline: cap, normalise, decode, match signatures, classify, take the max.

use crate::decode::{self, Encoding};
use crate::features;
use crate::model::{Model, N_DENSE};
use crate::normalise::{self, Cleaned};
use crate::signatures::{Family, Signatures};
use crate::{Assessment, MAX_ANALYSED_BYTES};

/// One readable form of the input, prepared for the classifier.
pub(crate) struct Prepared {
    pub(crate) folded: String,
    pub(crate) features: features::Features,
    pub(crate) dense: [f32; N_DENSE],
}

/// Folds cleaned text and computes its classifier inputs.
pub(crate) fn prepare(sig: &Signatures, cleaned: &Cleaned, bits: u32) -> (Prepared, usize) {
    let (folded, homoglyphs) = normalise::fold(&cleaned.text);
    let prepared = prepare_folded(
        sig,
        folded,
        cleaned.invisible + homoglyphs > 0 || cleaned.tag_payload.is_some(),
        bits,
    );
    (prepared, homoglyphs)
}

/// Classifier inputs of already folded text.
pub(crate) fn prepare_folded(
    sig: &Signatures,
    folded: String,
    obfuscated: bool,
    bits: u32,
) -> Prepared {
    let hits = sig.scan(&folded);
    let mut dense = [0f32; N_DENSE];
    for (d, h) in dense.iter_mut().zip(hits) {
        *d = f32::from(u8::from(h));
    }
    dense[N_DENSE - 1] = f32::from(u8::from(obfuscated));
    let features = features::extract(&folded, bits);
    Prepared {
        folded,
        features,
        dense,
    }
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// The highest logit over the input and its decoded forms, with the signals found.
pub(crate) fn max_logit(model: &Model, sig: &Signatures, text: &str) -> (f32, Vec<String>) {
    let mut signals = Vec::new();
    let capped = normalise::cap(text, MAX_ANALYSED_BYTES);
    if capped.len() < text.len() {
        signals.push("truncated".to_owned());
    }
    let cleaned = normalise::strip_invisible(&capped);
    let (main, homoglyphs) = prepare(sig, &cleaned, model.bits);
    if cleaned.invisible > 0 {
        signals.push("obfuscation:invisible_characters".to_owned());
    }
    if homoglyphs > 0 {
        signals.push("obfuscation:homoglyphs".to_owned());
    }
    let mut best = model.logit(&main.features, &main.dense);
    let mut hits = main.dense;

    let mut decoded = decode::candidates(&cleaned.text, &main.folded);
    if let Some(p) = &cleaned.tag_payload {
        signals.push("obfuscation:unicode_tags".to_owned());
        decoded.insert(
            0,
            decode::Decoded {
                encoding: Encoding::UnicodeTags,
                text: p.clone(),
            },
        );
    }
    for d in decoded.iter().take(decode::MAX_CANDIDATES) {
        let c = normalise::strip_invisible(&d.text);
        let (p, _) = prepare(sig, &c, model.bits);
        let l = model.logit(&p.features, &p.dense);
        for (h, x) in hits.iter_mut().zip(p.dense) {
            *h = h.max(x);
        }
        let name = format!("decoded:{}", d.encoding.name());
        if !signals.contains(&name) {
            signals.push(name);
        }
        best = best.max(l);
    }
    for f in Family::ALL {
        if hits[f.index()] > 0.0 {
            signals.push(format!("signature:{}", f.name()));
        }
    }
    (best, signals)
}

/// Assesses one text.
pub(crate) fn assess(model: &Model, sig: &Signatures, text: &str) -> Assessment {
    if crate::small_talk::is_small_talk(text) {
        return Assessment {
            score: 0.0,
            injection: false,
            signals: vec!["small_talk".to_owned()],
        };
    }
    // The text as sent and without its opening greeting: the higher score counts only if
    // the greeting is all that raised it, so the lower one is taken.
    let rest = crate::small_talk::without_greeting(text);
    let (logit, mut signals) = if rest.len() < text.len() && !rest.is_empty() {
        let (a, b) = (max_logit(model, sig, text), max_logit(model, sig, rest));
        if a.0 <= b.0 {
            a
        } else {
            b
        }
    } else {
        max_logit(model, sig, text)
    };
    let score = sigmoid(logit - model.threshold);
    let injection = score >= 0.5;
    if injection {
        signals.push("classifier".to_owned());
    }
    Assessment {
        score,
        injection,
        signals,
    }
}
