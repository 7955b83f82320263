//! Kubernetes name syntax: label keys and values, DNS labels and subdomains, port names.

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.'
}

/// A label key: optional DNS-subdomain prefix and `/`, then a name of ≤63 characters.
pub fn label_key(k: &str) -> Result<(), String> {
    let name = match k.rsplit_once('/') {
        Some((prefix, name)) => {
            dns_subdomain(prefix).map_err(|e| format!("label key {k:?}: prefix: {e}"))?;
            name
        }
        None => k,
    };
    if name.is_empty() || name.len() > 63 {
        return Err(format!("label key {k:?}: name must be 1 to 63 characters"));
    }
    let ok_ends = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .last()
            .is_some_and(|c| c.is_ascii_alphanumeric());
    if !ok_ends || !name.chars().all(is_name_char) {
        return Err(format!(
            "label key {k:?}: must be alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric"
        ));
    }
    Ok(())
}

/// A label value: empty, or ≤63 characters of the name alphabet.
pub fn label_value(val: &str) -> Result<(), String> {
    if val.is_empty() {
        return Ok(());
    }
    if val.len() > 63 {
        return Err(format!("label value {val:?} is longer than 63 characters"));
    }
    let ok_ends = val
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric())
        && val
            .chars()
            .last()
            .is_some_and(|c| c.is_ascii_alphanumeric());
    if !ok_ends || !val.chars().all(is_name_char) {
        return Err(format!(
            "label value {val:?}: must be alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric"
        ));
    }
    Ok(())
}

/// RFC 1123 label (namespace names).
pub fn dns_label(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 63 {
        return Err(format!("{s:?} must be 1 to 63 characters"));
    }
    let ok = s
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-');
    if !ok {
        return Err(format!("{s:?} must be lower-case alphanumerics or '-', starting and ending with an alphanumeric"));
    }
    Ok(())
}

/// RFC 1123 subdomain (most object names).
pub fn dns_subdomain(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 253 {
        return Err(format!("{s:?} must be 1 to 253 characters"));
    }
    for label in s.split('.') {
        dns_label(label).map_err(|_| {
            format!("{s:?} must be lower-case alphanumerics, '-' or '.', each part starting and ending with an alphanumeric")
        })?;
    }
    Ok(())
}

/// IANA_SVC_NAME: ≤15 characters, lower-case alphanumerics and '-', at least one letter,
/// no leading, trailing or double '-'.
pub fn port_name(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 15
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && s.bytes().any(|b| b.is_ascii_lowercase())
        && !s.starts_with('-')
        && !s.ends_with('-')
        && !s.contains("--");
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{s:?} is not a valid port name (1-15 lower-case alphanumerics or '-', with a letter, no leading, trailing or double '-')"
        ))
    }
}
