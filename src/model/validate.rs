//! The patterns of DESIGN.md as plain functions: each returns `Err` with the
//! sentence a user needs to fix the value.

/// The same rules as regular expressions, for the CRDs' OpenAPI schema, so the
/// API server rejects a bad object before accord sees it. The functions below
/// stay the authority (they also give the messages); a test checks the two agree.
pub mod patterns {
    pub const ID: &str = r"^[a-zA-Z0-9][a-zA-Z0-9._-]{0,127}$";
    pub const SLUG: &str = ID;
    pub const APP: &str = r"^[a-zA-Z0-9][a-zA-Z0-9._:-]{0,252}$";
    pub const ENROLLMENT_APP: &str = r"^(\*|[a-zA-Z0-9][a-zA-Z0-9._:-]{0,252})$";
    pub const PERMISSION: &str = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}(:[A-Za-z0-9][A-Za-z0-9_.-]{0,127})?:([A-Za-z0-9][A-Za-z0-9_.-]{0,127}|\*)$";
    pub const PERMIT_ROLE: &str = r"^([A-Za-z0-9_.@-]{1,128}|\*)(:([A-Za-z0-9_.@-]{1,128}|\*))+$";
    pub const ENROLLMENT_ROLE: &str = r"^[A-Za-z0-9_.@-]{1,128}(:[A-Za-z0-9_.@-]{1,128})+$";
    pub const USER_ID: &str = r"^[a-zA-Z0-9][a-zA-Z0-9._:@-]{0,127}$";
    /// `*`, `*@domain` or `local@domain`; the local part is printable ASCII
    /// without `@` and `*`, the domain does not start or end with a dot.
    pub const CONTACT_ID: &str = r"^(\*|\*@[A-Za-z0-9-]([A-Za-z0-9.-]*[A-Za-z0-9-])?|[!-)+-?A-~]+@[A-Za-z0-9-]([A-Za-z0-9.-]*[A-Za-z0-9-])?)$";
    pub const ORG_SLUG: &str = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$";
    pub const MEMBER_ROLE: &str = r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,63}$";
    pub const MODEL_NAME: &str = r"^[a-zA-Z0-9][a-zA-Z0-9._:/-]{0,127}$";
}

fn is_alnum(b: u8) -> bool {
    b.is_ascii_alphanumeric()
}

fn chars_ok(s: &str, max: usize, first: fn(u8) -> bool, rest: fn(u8) -> bool) -> bool {
    let bytes = s.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= max
        && first(bytes[0])
        && bytes[1..].iter().all(|&b| rest(b))
}

/// Object ids: `^[a-zA-Z0-9][a-zA-Z0-9._-]{0,127}$`.
pub fn id(value: &str) -> Result<(), String> {
    if chars_ok(value, 128, is_alnum, |b| is_alnum(b) || b"._-".contains(&b)) {
        Ok(())
    } else {
        Err(format!(
            "invalid id `{value}`: use 1 to 128 letters, digits, `.`, `_` or `-`, starting with a letter or digit"
        ))
    }
}

/// Apps (tenants): a host-like name such as `production.mycompany.com`.
pub fn app(value: &str) -> Result<(), String> {
    if chars_ok(value, 253, is_alnum, |b| {
        is_alnum(b) || b"._:-".contains(&b)
    }) {
        Ok(())
    } else {
        Err(format!(
            "invalid app `{value}`: use a host-like name of letters, digits, `.`, `_`, `:` or `-` (only an enrollment may name `*`, every app)"
        ))
    }
}

/// An enrollment's app: an app, or `*` (the 1Backend server's
/// `appHost: "*"`), which makes the role hold in every app.
pub fn enrollment_app(value: &str) -> Result<(), String> {
    if value == "*" {
        return Ok(());
    }
    app(value)
}

/// `service:action` or `service:entity:action`; the last segment may be `*`.
pub fn permission(value: &str) -> Result<(), String> {
    let segments: Vec<&str> = value.split(':').collect();
    let segment_ok = |s: &str| chars_ok(s, 128, is_alnum, |b| is_alnum(b) || b"_.-".contains(&b));
    let n = segments.len();
    let ok = (2..=3).contains(&n)
        && segments[..n - 1].iter().all(|s| segment_ok(s))
        && (segments[n - 1] == "*" || segment_ok(segments[n - 1]));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid permissionId `{value}`: expected `service:action` or `service:entity:action`"
        ))
    }
}

fn role_segments_ok(value: &str, allow_wildcard: bool) -> bool {
    let segments: Vec<&str> = value.split(':').collect();
    segments.len() >= 2
        && segments.iter().all(|s| {
            (allow_wildcard && *s == "*")
                || chars_ok(
                    s,
                    128,
                    |b| is_alnum(b) || b"_.@-".contains(&b),
                    |b| is_alnum(b) || b"_.@-".contains(&b),
                )
        })
        && value.len() <= 512
}

/// A role granted by a permit: two or more `:`-separated segments, any of which may be `*`.
pub fn permit_role(value: &str) -> Result<(), String> {
    if role_segments_ok(value, true) {
        Ok(())
    } else {
        Err(format!(
            "invalid role `{value}`: expected two or more `:`-separated segments of letters, digits, `_`, `.`, `@`, `-` (or `*`), e.g. `user-svc:org:*:admin`"
        ))
    }
}

/// A role assigned by an enrollment: `service:role` or `user-svc:org:<org>:<role>`.
pub fn enrollment_role(value: &str) -> Result<(), String> {
    if role_segments_ok(value, false) {
        Ok(())
    } else {
        Err(format!(
            "invalid role `{value}`: expected `service:role` or `user-svc:org:<org>:<role>`"
        ))
    }
}

/// A caller slug (user or service account) in a permit.
pub fn slug(value: &str) -> Result<(), String> {
    if chars_ok(value, 128, is_alnum, |b| is_alnum(b) || b"._-".contains(&b)) {
        Ok(())
    } else {
        Err(format!(
            "invalid slug `{value}`: use letters, digits, `.`, `_` or `-`, starting with a letter or digit"
        ))
    }
}

pub fn user_id(value: &str) -> Result<(), String> {
    if chars_ok(value, 128, is_alnum, |b| {
        is_alnum(b) || b"._:@-".contains(&b)
    }) {
        Ok(())
    } else {
        Err(format!(
            "invalid userId `{value}`: use letters, digits, `.`, `_`, `:`, `@` or `-`"
        ))
    }
}

/// An e-mail-like contact, or the wildcards `*` and `*@domain`.
pub fn contact_id(value: &str) -> Result<(), String> {
    let well_formed = |local: &str, domain: &str, wildcard: bool| {
        (wildcard || !local.is_empty())
            && !domain.is_empty()
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && domain.bytes().all(|b| is_alnum(b) || b".-".contains(&b))
            && local
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b'@' && b != b'*')
    };
    let ok = value == "*"
        || match value.split_once('@') {
            Some(("*", domain)) => well_formed("", domain, true),
            Some((local, domain)) => well_formed(local, domain, false),
            None => false,
        };
    if ok && value.len() <= 320 {
        Ok(())
    } else {
        Err(format!(
            "invalid contactId `{value}`: expected an e-mail-like contact, `*` (everyone) or `*@domain`"
        ))
    }
}

/// Organization slugs are DNS labels.
pub fn org_slug(value: &str) -> Result<(), String> {
    fn lower(b: u8) -> bool {
        b.is_ascii_lowercase() || b.is_ascii_digit()
    }
    let ok = chars_ok(value, 63, lower, |b| lower(b) || b == b'-') && !value.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid slug `{value}`: an organization slug is a DNS label (lowercase letters, digits and `-`, at most 63)"
        ))
    }
}

/// A member's role inside an organization: `admin`, `user` or another role name.
pub fn member_role(value: &str) -> Result<(), String> {
    if chars_ok(value, 64, is_alnum, |b| is_alnum(b) || b"_.-".contains(&b)) {
        Ok(())
    } else {
        Err(format!(
            "invalid member role `{value}`: use a name like `admin` or `user`"
        ))
    }
}

/// An organization's display name: free text, but no control characters
/// (a NUL byte cannot be stored in PostgreSQL; a newline or an escape
/// sequence would forge lines in messages and terminals), at most 256
/// characters.
pub fn display_name(value: &str) -> Result<(), String> {
    if let Some(c) = value.chars().find(|c| c.is_control()) {
        return Err(format!(
            "invalid name `{}`: it holds the control character {}; a name is one line of printable text",
            escape_controls(value),
            c.escape_default()
        ));
    }
    if value.chars().count() > 256 {
        return Err("invalid name: at most 256 characters".into());
    }
    Ok(())
}

/// `text` with every control character written as an escape (`\n`,
/// `\u{1b}`), so a value quoted in a message cannot start a line of its
/// own, forge a `FILE:LINE:COL:` error or drive a terminal.
pub fn escape_controls(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

pub fn model_name(value: &str) -> Result<(), String> {
    if chars_ok(value, 128, is_alnum, |b| {
        is_alnum(b) || b"._:/-".contains(&b)
    }) {
        Ok(())
    } else {
        Err(format!("invalid model name `{value}`"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_follow_the_documented_pattern() {
        assert!(id("payment-api.access_1").is_ok());
        assert!(id(&"a".repeat(128)).is_ok());
        assert!(id(&"a".repeat(129)).is_err());
        assert!(id("-leading").is_err());
        assert!(id("with space").is_err());
        assert!(id("").is_err());
    }

    #[test]
    fn permissions_have_two_or_three_segments_and_may_end_in_a_wildcard() {
        assert!(permission("payment-svc:process").is_ok());
        assert!(permission("user-svc:org:*").is_ok());
        assert!(permission("payment-svc").is_err());
        assert!(permission("a:b:c:d").is_err());
        assert!(permission("*:read").is_err());
        assert!(permission("svc::read").is_err());
    }

    #[test]
    fn permit_roles_accept_wildcard_segments_enrollment_roles_do_not() {
        assert!(permit_role("user-svc:org:*:admin").is_ok());
        assert!(permit_role("admin").is_err());
        assert!(enrollment_role("user-svc:org:acme:admin").is_ok());
        assert!(enrollment_role("user-svc:org:*:admin").is_err());
    }

    #[test]
    fn contacts_are_email_like_or_wildcards() {
        for ok in [
            "*",
            "*@acme.com",
            "jane@acme.com",
            "jane.doe+x@mail.acme.com",
        ] {
            assert!(contact_id(ok).is_ok(), "{ok}");
        }
        for bad in [
            "jane",
            "@acme.com",
            "jane@",
            "j*@acme.com",
            "*@",
            "a@b@c",
            "a b@c.com",
        ] {
            assert!(contact_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn display_names_are_one_line_of_printable_text() {
        assert!(display_name("Acme Corp — Zürich").is_ok());
        for bad in [
            "nul\0byte",
            "two\nlines",
            "bell\u{7}",
            "esc\u{1b}[31m",
            "c1\u{85}",
        ] {
            let error = display_name(bad).unwrap_err();
            assert!(!error.chars().any(char::is_control), "{error:?}");
        }
        assert!(display_name(&"x".repeat(257)).is_err());
    }

    #[test]
    fn control_characters_are_escaped_and_nothing_else() {
        assert_eq!(escape_controls("plain é"), "plain é");
        assert_eq!(
            escape_controls("a\nb.yaml:1:1: forged\u{1b}[2J\0"),
            "a\\nb.yaml:1:1: forged\\u{1b}[2J\\u{0}"
        );
    }

    #[test]
    fn org_slugs_are_dns_labels() {
        assert!(org_slug("acme-corp").is_ok());
        assert!(org_slug("Acme").is_err());
        assert!(org_slug("acme-").is_err());
        assert!(org_slug(&"a".repeat(64)).is_err());
    }
}
