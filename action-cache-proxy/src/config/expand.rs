//! `${VAR}` references in configuration values, resolved from the environment.

/// Replaces each `${VAR}` in `text` with `lookup(VAR)`; `$$` is a literal `$`.
///
/// # Errors
///
/// A message naming an unset variable, or a malformed reference.
pub(crate) fn expand(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(tail) = after.strip_prefix('{') {
            let Some(end) = tail.find('}') else {
                return Err(format!("`${{` without a closing `}}` in `{text}`"));
            };
            let name = &tail[..end];
            if !is_var_name(name) {
                return Err(format!("`${{{name}}}` is not an environment variable name"));
            }
            match lookup(name) {
                Some(value) => out.push_str(&value),
                None => return Err(format!("environment variable {name} is not set")),
            }
            rest = &tail[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Whether `text` is exactly one `${VAR}` reference (how a secret must be written in the file).
pub(crate) fn is_single_reference(text: &str) -> bool {
    text.strip_prefix("${")
        .and_then(|t| t.strip_suffix('}'))
        .is_some_and(is_var_name)
}

/// Whether `name` is a usable environment variable name.
pub(crate) fn is_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_replaced_and_unset_ones_named() {
        let env = |name: &str| (name == "HOST").then(|| "crm.internal".to_owned());
        assert_eq!(
            expand("https://${HOST}/api?p=$$1", &env).unwrap(),
            "https://crm.internal/api?p=$1"
        );
        assert_eq!(expand("no refs", &env).unwrap(), "no refs");
        assert!(expand("${MISSING}", &env).unwrap_err().contains("MISSING"));
        assert!(expand("${HOST", &env).is_err());
        assert!(is_single_reference("${A_B}"));
        assert!(!is_single_reference("x${A_B}"));
    }
}
