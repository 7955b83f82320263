//! The hot path's view of DNS wire format: the header and the single question of an
//! ordinary query, read in place without building a message.
//!
//! Only the common shape is accepted here (opcode QUERY, one question, a name of plain
//! letter-digit-hyphen-underscore labels without compression); anything else returns `None`
//! and goes through the full parser in [`crate::decide`], which answers FORMERR / NOTIMP or
//! drops. Both give the same name for the packets this accepts. Never panics.

use std::net::IpAddr;

/// Size of a DNS header.
pub const HEADER_LEN: usize = 12;

/// The question of an ordinary query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuickQuery {
    /// Message id.
    pub id: u16,
    /// The name, lowercase, without the trailing dot (empty for the root).
    pub name: String,
    /// Query type.
    pub qtype: u16,
    /// Query class.
    pub qclass: u16,
    /// Offset just past the question.
    pub question_end: usize,
}

/// Reads an ordinary query; `None` for anything the full parser should look at.
pub fn quick_query(p: &[u8]) -> Option<QuickQuery> {
    if p.len() < HEADER_LEN {
        return None;
    }
    let flags = p[2];
    // QR must be 0 (a query) and the opcode QUERY.
    if flags & 0x80 != 0 || (flags >> 3) & 0x0f != 0 {
        return None;
    }
    let qdcount = u16::from_be_bytes([p[4], p[5]]);
    let ancount = u16::from_be_bytes([p[6], p[7]]);
    let nscount = u16::from_be_bytes([p[8], p[9]]);
    if qdcount != 1 || ancount != 0 || nscount != 0 {
        return None;
    }
    let (name, at) = read_plain_name(p, HEADER_LEN)?;
    let rest = p.get(at..at + 4)?;
    let qtype = u16::from_be_bytes([rest[0], rest[1]]);
    if is_zone_transfer(qtype) {
        return None; // refused by the full path
    }
    Some(QuickQuery {
        id: u16::from_be_bytes([p[0], p[1]]),
        name,
        qtype,
        qclass: u16::from_be_bytes([rest[2], rest[3]]),
        question_end: at + 4,
    })
}

/// Reads an uncompressed name of LDH/underscore labels at `at`, lowercased; returns it and
/// the offset after it.
fn read_plain_name(p: &[u8], mut at: usize) -> Option<(String, usize)> {
    let mut name = String::new();
    loop {
        let len = *p.get(at)? as usize;
        at += 1;
        if len == 0 {
            break;
        }
        if len > 63 {
            return None; // compression pointer or reserved label type
        }
        let label = p.get(at..at + len)?;
        if !name.is_empty() {
            name.push('.');
        }
        for &b in label {
            if !(b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
                return None;
            }
            name.push(b.to_ascii_lowercase() as char);
        }
        at += len;
        if name.len() > 253 {
            return None;
        }
    }
    Some((name, at))
}

/// Whether `qtype` asks for a zone transfer (AXFR 252, IXFR 251): answers that list every
/// name of a zone, not the one asked.
pub fn is_zone_transfer(qtype: u16) -> bool {
    qtype == 251 || qtype == 252
}

/// Offset just past the first question of `p` when its name is written out label by label;
/// `None` when it is cut short or holds a compression pointer (or a reserved label type).
/// A query's only question has nothing earlier to point to but the header (whose id the
/// proxy rewrites) or itself, so a pointer there is never honest.
pub fn plain_question_end(p: &[u8]) -> Option<usize> {
    let mut at = HEADER_LEN;
    loop {
        let len = *p.get(at)? as usize;
        if len & 0xc0 != 0 {
            return None;
        }
        at += 1 + len;
        if len == 0 {
            break;
        }
    }
    (at + 4 <= p.len()).then_some(at + 4)
}

/// The question section of a query read by [`quick_query`].
pub fn question_bytes<'a>(p: &'a [u8], q: &QuickQuery) -> &'a [u8] {
    p.get(HEADER_LEN..q.question_end).unwrap_or(&[])
}

/// Whether `resp` is a response (QR set) to the question `question` (the question section
/// of the query, as sent): the name compared without case, as DNS does, type and class
/// exactly. Protects against answers that do not belong to the query.
pub fn answers_question(resp: &[u8], question: &[u8]) -> bool {
    if resp.len() < HEADER_LEN || resp[2] & 0x80 == 0 || question.len() < 5 {
        return false;
    }
    if u16::from_be_bytes([resp[4], resp[5]]) != 1 {
        return false;
    }
    let Some(got) = resp.get(HEADER_LEN..HEADER_LEN + question.len()) else {
        return false;
    };
    let split = question.len() - 4;
    got[..split].eq_ignore_ascii_case(&question[..split]) && got[split..] == question[split..]
}

/// A reply to a query with no records: `rcode`, the query's id, RD and CD echoed, RA set,
/// and its question section.
pub fn error_reply(id: u16, query_flags: [u8; 2], question: &[u8], rcode: u8) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + question.len());
    out.extend_from_slice(&id.to_be_bytes());
    // QR=1, opcode QUERY, RD copied; RA=1, CD copied, rcode.
    out.push(0x80 | (query_flags[0] & 0x01));
    out.push(0x80 | (query_flags[1] & 0x10) | (rcode & 0x0f));
    out.extend_from_slice(&[0, u8::from(!question.is_empty()), 0, 0, 0, 0, 0, 0]);
    out.extend_from_slice(question);
    out
}

/// `REFUSED` for the query `p` with its question echoed, when it is a query with one
/// question written out label by label; `None` for anything else (drop it). Cheap: no name
/// is read.
pub fn refusal(p: &[u8]) -> Option<Vec<u8>> {
    if p.len() < HEADER_LEN || p[2] & 0x80 != 0 || u16::from_be_bytes([p[4], p[5]]) != 1 {
        return None;
    }
    let end = plain_question_end(p)?;
    let question = p.get(HEADER_LEN..end)?;
    Some(error_reply(
        u16::from_be_bytes([p[0], p[1]]),
        [p[2], p[3]],
        question,
        5,
    ))
}

/// Response code (low 4 bits of the header; extended codes are not combined here).
pub fn rcode(resp: &[u8]) -> u8 {
    resp.get(3).map_or(0, |b| b & 0x0f)
}

/// The whole response code: the header's 4 bits and, when the message has an OPT record
/// (EDNS0, RFC 6891), the 8 extended bits of its TTL field above them (BADVERS is 16 with
/// the header's bits at 0). A message whose records cannot be walked gives the header's
/// bits only. No allocation.
pub fn full_rcode(resp: &[u8]) -> u16 {
    let low = u16::from(rcode(resp));
    if resp.len() < HEADER_LEN {
        return low;
    }
    let count = |i: usize| u32::from(u16::from_be_bytes([resp[i], resp[i + 1]]));
    let mut at = HEADER_LEN;
    for _ in 0..count(4) {
        match skip_name(resp, at) {
            Some(after) => at = after + 4,
            None => return low,
        }
    }
    for _ in 0..count(6) + count(8) + count(10) {
        let Some(fixed) = skip_name(resp, at).and_then(|a| resp.get(a..a + 10).map(|f| (a, f)))
        else {
            return low;
        };
        let (after, fixed) = fixed;
        if u16::from_be_bytes([fixed[0], fixed[1]]) == 41 {
            return (u16::from(fixed[4]) << 4) | low;
        }
        at = after + 10 + usize::from(u16::from_be_bytes([fixed[8], fixed[9]]));
    }
    low
}

/// The offset after the (possibly compressed) name at `at`, without reading its labels.
fn skip_name(p: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let len = *p.get(at)?;
        match len & 0xc0 {
            0xc0 => return p.get(at + 1).map(|_| at + 2),
            0 if len == 0 => return Some(at + 1),
            0 => at += 1 + usize::from(len),
            _ => return None,
        }
    }
}

/// Number of answer records.
pub fn answer_count(resp: &[u8]) -> u16 {
    match resp.get(6..8) {
        Some(b) => u16::from_be_bytes([b[0], b[1]]),
        None => 0,
    }
}

/// Rewrites the message id.
pub fn set_id(msg: &mut [u8], id: u16) {
    if msg.len() >= 2 {
        msg[..2].copy_from_slice(&id.to_be_bytes());
    }
}

/// Reads a possibly compressed name at `at`; returns it (with the trailing dot, case kept)
/// and the offset after it in the record. `None` for malformed names, pointer loops and
/// labels with bytes other than letters, digits, `-` and `_`.
fn read_name(p: &[u8], mut at: usize) -> Option<(String, usize)> {
    let mut name = String::new();
    let mut end = None;
    let mut jumps = 0;
    loop {
        let len = *p.get(at)? as usize;
        if len & 0xc0 == 0xc0 {
            let ptr = ((len & 0x3f) << 8) | *p.get(at + 1)? as usize;
            end.get_or_insert(at + 2);
            jumps += 1;
            if jumps > 32 || ptr >= at {
                return None; // loops and forward pointers
            }
            at = ptr;
            continue;
        }
        if len > 63 {
            return None;
        }
        at += 1;
        if len == 0 {
            break;
        }
        let label = p.get(at..at + len)?;
        if !label
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
        {
            return None;
        }
        name.push_str(std::str::from_utf8(label).ok()?);
        name.push('.');
        if name.len() > 254 {
            return None;
        }
        at += len;
    }
    if name.is_empty() {
        name.push('.');
    }
    Some((name, end.unwrap_or(at)))
}

/// The answer section of a response when every answer is an A, AAAA or CNAME record of
/// class IN with plain names; `None` otherwise (the full parser then decides).
pub fn simple_answers(resp: &[u8]) -> Option<Vec<crate::answers::SimpleRecord>> {
    use crate::answers::{SimpleData, SimpleRecord};
    if resp.len() < HEADER_LEN {
        return None;
    }
    let qd = u16::from_be_bytes([resp[4], resp[5]]);
    let an = u16::from_be_bytes([resp[6], resp[7]]);
    let mut at = HEADER_LEN;
    for _ in 0..qd {
        let (_, after) = read_name(resp, at)?;
        at = after + 4;
    }
    // Each record takes at least 11 bytes: the count cannot make a large allocation.
    let mut out = Vec::with_capacity(usize::from(an).min(resp.len() / 11));
    for _ in 0..an {
        let (owner, after) = read_name(resp, at)?;
        let fixed = resp.get(after..after + 10)?;
        let rtype = u16::from_be_bytes([fixed[0], fixed[1]]);
        let class = u16::from_be_bytes([fixed[2], fixed[3]]);
        let ttl = u32::from_be_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]);
        let rdlen = u16::from_be_bytes([fixed[8], fixed[9]]) as usize;
        let rdata_at = after + 10;
        let rdata = resp.get(rdata_at..rdata_at + rdlen)?;
        if class != 1 {
            return None;
        }
        let data = match (rtype, rdlen) {
            (1, 4) => SimpleData::Addr(IpAddr::from([rdata[0], rdata[1], rdata[2], rdata[3]])),
            (28, 16) => {
                let b: [u8; 16] = rdata.try_into().ok()?;
                SimpleData::Addr(IpAddr::from(b))
            }
            (5, _) => {
                let (target, end) = read_name(resp, rdata_at)?;
                if end != rdata_at + rdlen {
                    return None;
                }
                SimpleData::Alias(target)
            }
            _ => return None,
        };
        // hickory prints TTLs as sent; keep the same.
        out.push(SimpleRecord { owner, ttl, data });
        at = rdata_at + rdlen;
    }
    // The rest must be there too: a message cut short or with counts beyond its end is
    // malformed, and the full parser (and the client) reject it; nothing is opened for it.
    let ns = u16::from_be_bytes([resp[8], resp[9]]);
    let ar = u16::from_be_bytes([resp[10], resp[11]]);
    for _ in 0..u32::from(ns) + u32::from(ar) {
        let (_, after) = read_name(resp, at)?;
        let fixed = resp.get(after..after + 10)?;
        if u16::from_be_bytes([fixed[0], fixed[1]]) == 41 && fixed[4] != 0 {
            // An OPT record with extended RCODE bits: not NOERROR whatever the header
            // says (BADVERS, BADCOOKIE, ...); the full parser reads the whole code.
            return None;
        }
        let rdlen = u16::from_be_bytes([fixed[8], fixed[9]]) as usize;
        at = after + 10 + rdlen;
        if at > resp.len() {
            return None;
        }
    }
    Some(out)
}

/// Shape of a queried name, kept per query for tunnelling detection: DNS tunnels pack data
/// into long, many-labelled, high-entropy names.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct NameFeatures {
    /// Number of labels.
    pub labels: u8,
    /// Length of the longest label.
    pub longest_label: u8,
    /// Length of the name (without the trailing dot).
    pub length: u16,
    /// Shannon entropy, in bits per character, of the labels left of the last two (the part
    /// a tunnel controls); 0 when there are none.
    pub entropy: f32,
}

/// Computes [`NameFeatures`] for a normalised name.
pub fn name_features(name: &str) -> NameFeatures {
    if name.is_empty() {
        return NameFeatures::default();
    }
    let labels: Vec<&str> = name.split('.').collect();
    let longest = labels.iter().map(|l| l.len()).max().unwrap_or(0);
    let sub_len = labels.len().saturating_sub(2);
    let mut counts = [0u32; 256];
    let mut total = 0u32;
    for l in &labels[..sub_len] {
        for &b in l.as_bytes() {
            counts[b as usize] += 1;
            total += 1;
        }
    }
    let mut entropy = 0f32;
    if total > 0 {
        for &c in counts.iter().filter(|&&c| c > 0) {
            let p = c as f32 / total as f32;
            entropy -= p * p.log2();
        }
    }
    NameFeatures {
        labels: labels.len().min(255) as u8,
        longest_label: longest.min(255) as u8,
        length: name.len().min(u16::MAX as usize) as u16,
        entropy,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(name: &[&[u8]], qtype: u16) -> Vec<u8> {
        let mut p = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for l in name {
            p.push(l.len() as u8);
            p.extend_from_slice(l);
        }
        p.push(0);
        p.extend_from_slice(&qtype.to_be_bytes());
        p.extend_from_slice(&1u16.to_be_bytes());
        p
    }

    #[test]
    fn reads_an_ordinary_query() {
        let p = q(&[b"CDN", b"Models", b"test"], 28);
        let got = quick_query(&p).unwrap();
        assert_eq!(got.id, 0x1234);
        assert_eq!(got.name, "cdn.models.test");
        assert_eq!(got.qtype, 28);
        assert_eq!(got.question_end, p.len());
        let root = quick_query(&q(&[], 2)).unwrap();
        assert_eq!(root.name, "");
    }

    #[test]
    fn leaves_unusual_packets_to_the_full_parser() {
        let mut resp = q(&[b"a", b"test"], 1);
        resp[2] |= 0x80;
        assert!(quick_query(&resp).is_none());
        assert!(quick_query(&q(&[b"a b", b"test"], 1)).is_none());
        assert!(quick_query(&q(&[b"\xc3\xa9", b"test"], 1)).is_none());
        let mut two = q(&[b"a"], 1);
        two[5] = 2;
        assert!(quick_query(&two).is_none());
        let mut ptr = q(&[b"a"], 1);
        ptr[12] = 0xc0;
        assert!(quick_query(&ptr).is_none());
        assert!(quick_query(&[0u8; 5]).is_none());
    }

    #[test]
    fn matches_answers_to_questions_without_case() {
        let query = q(&[b"a", b"test"], 1);
        let qq = quick_query(&query).unwrap();
        let question = question_bytes(&query, &qq);
        let mut resp = q(&[b"A", b"TEST"], 1);
        resp[2] |= 0x80;
        assert!(answers_question(&resp, question));
        let mut other = q(&[b"b", b"test"], 1);
        other[2] |= 0x80;
        assert!(!answers_question(&other, question));
        let mut aaaa = q(&[b"a", b"test"], 28);
        aaaa[2] |= 0x80;
        assert!(!answers_question(&aaaa, question));
        assert!(!answers_question(&query, question), "a query is no answer");
        let r = error_reply(0x1234, [query[2], query[3]], question, 5);
        let m = hickory_proto::op::Message::from_vec(&r).unwrap();
        assert_eq!(m.metadata.id, 0x1234);
        assert_eq!(u16::from(m.metadata.response_code), 5);
        assert!(m.metadata.recursion_desired);
        assert_eq!(m.queries[0].name.to_ascii(), "a.test.");
    }

    #[test]
    fn features_tell_tunnels_from_names() {
        let plain = name_features("www.example.com");
        let tunnel =
            name_features("4a6f686e2053656e742061206d6573736167652074686174.x9f3kq.t.example.com");
        assert_eq!(plain.labels, 3);
        assert!(tunnel.longest_label >= 48);
        assert!(tunnel.entropy > plain.entropy + 1.0);
        assert_eq!(name_features("example.com").entropy, 0.0);
    }

    #[test]
    fn the_whole_response_code_counts_the_opt_records_bits() {
        // A response (REFUSED in the header) to `a.test A` with one A record and an OPT
        // record whose extended RCODE byte is `ext`.
        let with_opt = |ext: u8, low: u8| {
            let mut p = vec![0, 1, 0x81, 0x80 | low, 0, 1, 0, 1, 0, 0, 0, 1];
            p.extend_from_slice(b"\x01a\x04test\x00\x00\x01\x00\x01");
            p.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 30, 0, 4, 192, 0, 2, 1]);
            p.extend_from_slice(&[0, 0, 41, 4, 0xd0, ext, 0, 0, 0, 0, 0]);
            p
        };
        assert_eq!(full_rcode(&with_opt(0, 0)), 0);
        assert_eq!(full_rcode(&with_opt(1, 0)), 16, "BADVERS");
        assert_eq!(full_rcode(&with_opt(1, 7)), 23, "BADCOOKIE");
        assert_eq!(rcode(&with_opt(1, 0)), 0, "the header alone says NOERROR");
        // Without an OPT record, or cut short: the header's bits.
        let mut cut = with_opt(1, 5);
        cut.truncate(cut.len() - 11);
        assert_eq!(full_rcode(&cut), 5);
    }

    #[test]
    fn never_panics_on_random_bytes() {
        let mut seed: u64 = 0xdead_beef;
        for len in 0..600 {
            let buf: Vec<u8> = (0..len % 300)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed as u8
                })
                .collect();
            if let Some(qq) = quick_query(&buf) {
                let _ = answers_question(&buf, question_bytes(&buf, &qq));
                let _ = name_features(&qq.name);
            }
            let _ = rcode(&buf);
            let _ = full_rcode(&buf);
            let _ = answer_count(&buf);
        }
    }
}
