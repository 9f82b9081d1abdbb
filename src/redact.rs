//! Secrets out of everything accord shows: URLs (of databases, of Git
//! remotes) lose their credentials before they reach a status, a page, a
//! log line, an error or a metric, and text that may quote a URL (an error
//! from libgit2 or a database driver) is scrubbed of the secrets it held.

/// What replaces a secret.
pub const MASK: &str = "***";

/// User names that authenticate nothing by themselves (SSH's conventional
/// `git` user), shown as they are.
const PUBLIC_USERS: [&str; 1] = ["git"];

/// Schemes whose user name alone names a role or an SSH account (scp-like
/// `user@host:path` has no scheme), not a token.
const NAMED_USERS: [&str; 6] = ["postgres", "postgresql", "ssh", "git+ssh", "ssh+git", ""];

/// Query parameters whose values are secrets, matched without case and as
/// parts of longer names (`access_token`, `sslpassword`, `X-Amz-Signature`).
const SECRET_PARAMETERS: [&str; 6] = ["password", "token", "secret", "key", "signature", "sig"];

/// `url` without its credentials: a password in the userinfo
/// (`user:***@`); a user name alone too (`https://***@host`: Git hosts take
/// a token there), except where it names a role or an SSH account
/// (PostgreSQL, SSH); and the values of query parameters that carry
/// secrets (`?password=***`). Anything that is not a URL is returned as it
/// is.
pub fn url(url: &str) -> String {
    let parts = Parts::of(url);
    let mut out = String::with_capacity(url.len());
    out.push_str(&url[..parts.authority.0]);
    let authority = &url[parts.authority.0..parts.authority.1];
    match parts.userinfo_secret {
        Some((start, end)) => {
            out.push_str(&authority[..start]);
            out.push_str(MASK);
            out.push_str(&authority[end..]);
        }
        None => out.push_str(authority),
    }
    let rest = &url[parts.authority.1..];
    match rest.split_once('?') {
        Some((path, query)) => {
            out.push_str(path);
            out.push('?');
            let (query, fragment) = query
                .split_once('#')
                .map_or((query, None), |(q, f)| (q, Some(f)));
            let pairs: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((name, value)) if is_secret_parameter(name) && !value.is_empty() => {
                        format!("{name}={MASK}")
                    }
                    _ => pair.to_owned(),
                })
                .collect();
            out.push_str(&pairs.join("&"));
            if let Some(fragment) = fragment {
                out.push('#');
                out.push_str(fragment);
            }
        }
        None => out.push_str(rest),
    }
    out
}

/// `text` with every secret of `url` in it replaced: for messages that may
/// quote the URL in any form (an error from a library, say).
pub fn scrub(text: &str, url: &str) -> String {
    let mut out = text.to_owned();
    for secret in secrets(url) {
        out = out.replace(&secret, MASK);
        // Libraries often quote URLs percent-decoded.
        if let Some(decoded) = percent_decoded(&secret) {
            out = out.replace(&decoded, MASK);
        }
    }
    out
}

/// Where a URL's parts are.
struct Parts {
    /// Byte range of the authority (`userinfo@host:port`) in the URL.
    authority: (usize, usize),
    /// Byte range, within the authority, of the userinfo's secret part.
    userinfo_secret: Option<(usize, usize)>,
}

impl Parts {
    fn of(url: &str) -> Parts {
        let (scheme, start) = match url.find("://") {
            Some(at) => (url[..at].to_ascii_lowercase(), at + 3),
            None => (String::new(), 0),
        };
        let end = url[start..]
            .find(['/', '?', '#'])
            .map_or(url.len(), |i| start + i);
        let authority = &url[start..end];
        let userinfo_secret = authority.rfind('@').and_then(|at| {
            let userinfo = &authority[..at];
            match userinfo.find(':') {
                Some(colon) if colon + 1 < at => Some((colon + 1, at)),
                Some(_) => None,
                None if !userinfo.is_empty()
                    && !NAMED_USERS.contains(&scheme.as_str())
                    && !PUBLIC_USERS.contains(&userinfo) =>
                {
                    Some((0, at))
                }
                None => None,
            }
        });
        Parts {
            authority: (start, end),
            userinfo_secret,
        }
    }
}

fn is_secret_parameter(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SECRET_PARAMETERS.iter().any(|s| name.contains(s))
}

/// The secrets a URL holds, longest first (so a password is replaced
/// before a shorter token that happens to be part of it).
fn secrets(url: &str) -> Vec<String> {
    let parts = Parts::of(url);
    let mut found = Vec::new();
    if let Some((start, end)) = parts.userinfo_secret {
        let authority = &url[parts.authority.0..parts.authority.1];
        found.push(authority[start..end].to_owned());
    }
    if let Some((_, query)) = url[parts.authority.1..].split_once('?') {
        let query = query.split('#').next().unwrap_or_default();
        for pair in query.split('&') {
            if let Some((name, value)) = pair.split_once('=') {
                if is_secret_parameter(name) && !value.is_empty() {
                    found.push(value.to_owned());
                }
            }
        }
    }
    found.retain(|s| s != MASK);
    found.sort_by_key(|s| std::cmp::Reverse(s.len()));
    found.dedup();
    found
}

fn percent_decoded(text: &str) -> Option<String> {
    if !text.contains('%') {
        return None;
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            if let Some(Ok(byte)) = text.get(i + 1..i + 3).map(|h| u8::from_str_radix(h, 16)) {
                out.push(byte);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).ok().filter(|d| d != text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_is_masked_and_the_user_kept() {
        assert_eq!(
            url("postgres://accord:s3cret@db:5432/accord"),
            "postgres://accord:***@db:5432/accord"
        );
        assert_eq!(
            url("https://x-access-token:ghp_abc@git.example.com/r.git"),
            "https://x-access-token:***@git.example.com/r.git"
        );
    }

    #[test]
    fn a_token_alone_in_the_userinfo_is_masked() {
        assert_eq!(
            url("https://ghp_T0KEN@git.example.com/platform/access.git"),
            "https://***@git.example.com/platform/access.git"
        );
        assert_eq!(
            url("http://T0KEN@127.0.0.1:9/r.git"),
            "http://***@127.0.0.1:9/r.git"
        );
    }

    #[test]
    fn a_user_name_alone_is_kept_where_it_names_a_role() {
        assert_eq!(
            url("postgres://accord@db/accord"),
            "postgres://accord@db/accord"
        );
        assert_eq!(
            url("ssh://deploy@git.example.com/r.git"),
            "ssh://deploy@git.example.com/r.git"
        );
    }

    #[test]
    fn the_ssh_git_user_is_not_a_secret() {
        assert_eq!(
            url("git@github.com:org/repo.git"),
            "git@github.com:org/repo.git"
        );
        assert_eq!(
            url("ssh://git@git.example.com/r.git"),
            "ssh://git@git.example.com/r.git"
        );
    }

    #[test]
    fn secret_query_parameters_are_masked() {
        assert_eq!(
            url("postgres://db/accord?user=a&password=s3cret&sslmode=require"),
            "postgres://db/accord?user=a&password=***&sslmode=require"
        );
        assert_eq!(
            url("https://host/r.git?access_token=abc123"),
            "https://host/r.git?access_token=***"
        );
    }

    #[test]
    fn urls_without_credentials_are_unchanged() {
        for plain in [
            "sqlite://accord.db",
            "file:///srv/git/repo.git",
            "https://git.example.com/r.git",
            "a/path/with@sign/inside",
        ] {
            assert_eq!(url(plain), plain);
        }
    }

    #[test]
    fn messages_quoting_a_url_are_scrubbed_in_any_form() {
        let remote = "https://user:p%40ss@host/r.git";
        let message =
            "failed to connect to user:p@ss@host: refused (https://user:p%40ss@host/r.git)";
        let scrubbed = scrub(message, remote);
        assert!(!scrubbed.contains("p@ss"), "{scrubbed}");
        assert!(!scrubbed.contains("p%40ss"), "{scrubbed}");
    }
}
