//! What a Git remote proves before accord fetches from it. With `caFile`, an
//! https server's certificate must chain to a certificate in that file
//! (instead of the system's CA store); with `knownHostsFile`, an ssh
//! server's host key must be listed there (instead of `~/.ssh/known_hosts`).
//! Without them libgit2's own checks apply, which refuse an unknown CA or
//! host key just the same. Either way a refusal says what to add.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use base64::Engine;
use git2::cert::{Cert, CertHostkey};
use git2::{CertificateCheckStatus, ErrorClass};
use rustls::client::danger::ServerCertVerifier;
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, RootCertStore};

use super::GitConfig;
use crate::source::SourceError;

/// The checks for one fetch, and what they found.
pub struct RemoteTrust {
    ca: Option<CaFile>,
    known_hosts: Option<KnownHosts>,
    /// The port of an ssh URL: known_hosts names a host on another port
    /// than 22 as `[host]:port`.
    ssh_port: u16,
    /// Why a certificate or host key was refused, or what to add should
    /// libgit2's own check refuse it. Kept here because libgit2 replaces an
    /// ssh refusal's message with "invalid or unknown remote ssh hostkey".
    finding: Mutex<Option<Finding>>,
}

enum Finding {
    Refused(String),
    /// Passed to libgit2's own check, with what to say if it refuses.
    Deferred(String),
}

struct CaFile {
    path: PathBuf,
    verifier: Arc<WebPkiServerVerifier>,
}

impl RemoteTrust {
    /// Reads `caFile` and `knownHostsFile` as they are now, so a rotated CA
    /// or host key takes effect at the next fetch.
    pub fn load(config: &GitConfig) -> Result<RemoteTrust, SourceError> {
        let ca = config.ca_file.as_deref().map(CaFile::load).transpose()?;
        let known_hosts = config
            .known_hosts_file
            .as_deref()
            .map(KnownHosts::load)
            .transpose()?;
        Ok(RemoteTrust {
            ca,
            known_hosts,
            ssh_port: ssh_port(&config.url),
            finding: Mutex::new(None),
        })
    }

    /// libgit2's `certificate_check`: accepts, refuses, or leaves the
    /// verdict to libgit2 when no file of ours applies.
    pub fn check(
        &self,
        cert: &Cert<'_>,
        host: &str,
    ) -> Result<CertificateCheckStatus, git2::Error> {
        if let Some(x509) = cert.as_x509() {
            let Some(ca) = &self.ca else {
                self.note(Finding::Deferred(format!(
                    "the certificate of {host} was checked against the system's CA store; if a private CA signs it, set git.caFile to that CA's PEM file"
                )));
                return Ok(CertificateCheckStatus::CertificatePassthrough);
            };
            return match ca.verify(x509.data(), host) {
                Ok(()) => Ok(CertificateCheckStatus::CertificateOk),
                Err(why) => Err(self.refuse(why)),
            };
        }
        if let Some(hostkey) = cert.as_hostkey() {
            let Some(offered) = Offered::of(hostkey, host, self.ssh_port) else {
                // No raw key to compare: only libgit2's own check can judge.
                return Ok(CertificateCheckStatus::CertificatePassthrough);
            };
            let Some(known) = &self.known_hosts else {
                self.note(Finding::Deferred(format!(
                    "the ssh host key of {name} is not in ~/.ssh/known_hosts (or is listed there with another key); it offered {fingerprint}; once that fingerprint is confirmed with the server's operator, set git.knownHostsFile to a file holding the line: {line}",
                    name = offered.name,
                    fingerprint = offered.fingerprint(),
                    line = offered.line(),
                )));
                return Ok(CertificateCheckStatus::CertificatePassthrough);
            };
            return match known.verdict(&offered) {
                Verdict::Trusted => Ok(CertificateCheckStatus::CertificateOk),
                verdict => Err(self.refuse(known.refusal(&offered, verdict))),
            };
        }
        Ok(CertificateCheckStatus::CertificatePassthrough)
    }

    /// What to say about a failed fetch, when a check of ours or libgit2's
    /// explains it.
    pub fn explain(&self, error: &git2::Error) -> Option<String> {
        let finding = self.finding.lock().unwrap_or_else(|e| e.into_inner());
        match finding.as_ref()? {
            Finding::Refused(why) => Some(why.clone()),
            Finding::Deferred(hint) => {
                let refused_by_libgit2 = match error.class() {
                    ErrorClass::Ssl => error.message().contains("certificate"),
                    ErrorClass::Ssh => error.code() == git2::ErrorCode::Certificate,
                    _ => false,
                };
                refused_by_libgit2.then(|| format!("{}: {hint}", error.message()))
            }
        }
    }

    fn note(&self, finding: Finding) {
        *self.finding.lock().unwrap_or_else(|e| e.into_inner()) = Some(finding);
    }

    fn refuse(&self, why: String) -> git2::Error {
        let error = git2::Error::new(git2::ErrorCode::Certificate, ErrorClass::Callback, &why);
        self.note(Finding::Refused(why));
        error
    }
}

impl CaFile {
    fn load(path: &Path) -> Result<CaFile, SourceError> {
        let bytes = std::fs::read(path).map_err(|source| SourceError::Io {
            path: path.to_owned(),
            source,
        })?;
        let invalid = |reason: String| SourceError::CaFile {
            path: path.to_owned(),
            reason,
        };
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&bytes) {
            let cert = cert.map_err(|e| invalid(format!("not a PEM certificate bundle: {e}")))?;
            roots
                .add(cert)
                .map_err(|e| invalid(format!("a certificate cannot be trusted: {e}")))?;
        }
        if roots.is_empty() {
            return Err(invalid("holds no PEM certificate".into()));
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| invalid(e.to_string()))?;
        Ok(CaFile {
            path: path.to_owned(),
            verifier,
        })
    }

    /// Whether `der` (the server's own certificate: libgit2 hands over no
    /// intermediates) chains to this file and names `host`.
    fn verify(&self, der: &[u8], host: &str) -> Result<(), String> {
        let name = ServerName::try_from(host)
            .map_err(|_| format!("`{host}` is not a host name a certificate can name"))?;
        let cert = CertificateDer::from(der);
        self.verifier
            .verify_server_cert(&cert, &[], &name, &[], UnixTime::now())
            .map(|_| ())
            .map_err(|error| {
                let why = match error {
                    rustls::Error::InvalidCertificate(e) => match e {
                        CertificateError::UnknownIssuer => {
                            format!(
                                "it is not signed by a certificate in caFile {}",
                                self.path.display()
                            )
                        }
                        CertificateError::NotValidForName
                        | CertificateError::NotValidForNameContext { .. } => {
                            format!("it is not issued for {host}")
                        }
                        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                            "it has expired".into()
                        }
                        CertificateError::NotValidYet
                        | CertificateError::NotValidYetContext { .. } => {
                            "it is not valid yet".into()
                        }
                        other => format!("{other:?}"),
                    },
                    other => other.to_string(),
                };
                format!("the certificate of {host} is refused: {why}")
            })
    }
}

/// The host key an ssh server offered, and the name known_hosts gives it.
struct Offered {
    /// `host`, or `[host]:port` off port 22.
    name: String,
    key_type: &'static str,
    key: Vec<u8>,
}

impl Offered {
    fn of(hostkey: &CertHostkey<'_>, host: &str, port: u16) -> Option<Offered> {
        Some(Offered {
            name: if port == 22 {
                host.to_owned()
            } else {
                format!("[{host}]:{port}")
            },
            key_type: hostkey.hostkey_type()?.name(),
            key: hostkey.hostkey()?.to_vec(),
        })
    }

    fn fingerprint(&self) -> String {
        fingerprint(self.key_type, &self.key)
    }

    /// The known_hosts line that would trust this key.
    fn line(&self) -> String {
        format!(
            "{} {} {}",
            self.name,
            self.key_type,
            STANDARD.encode(&self.key)
        )
    }
}

/// `ssh-ed25519 SHA256:…`, as `ssh-keygen -l` prints it.
fn fingerprint(key_type: &str, key: &[u8]) -> String {
    use sha2::Digest;
    format!(
        "{key_type} SHA256:{}",
        STANDARD_NO_PAD.encode(sha2::Sha256::digest(key))
    )
}

/// An OpenSSH known_hosts file: plain, wildcard, negated and hashed
/// (`|1|salt|hash`) host names, and `@revoked` keys. `@cert-authority`
/// lines are skipped: libssh2 does not check host certificates.
struct KnownHosts {
    path: PathBuf,
    entries: Vec<Entry>,
}

struct Entry {
    revoked: bool,
    hosts: String,
    key_type: String,
    key: Vec<u8>,
}

#[derive(Debug, PartialEq)]
enum Verdict {
    Trusted,
    /// Listed under `@revoked`.
    Revoked,
    /// The host is listed with other keys of this type: the server's key
    /// was replaced, or someone is in the middle.
    Changed(Vec<String>),
    /// The host has no key of this type in the file.
    Unlisted,
}

impl KnownHosts {
    fn load(path: &Path) -> Result<KnownHosts, SourceError> {
        let text = std::fs::read_to_string(path).map_err(|source| SourceError::Io {
            path: path.to_owned(),
            source,
        })?;
        Ok(KnownHosts::parse(path, &text))
    }

    fn parse(path: &Path, text: &str) -> KnownHosts {
        // As OpenSSH does, a line that cannot be read is skipped.
        let entries = text
            .lines()
            .filter_map(|line| {
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    return None;
                }
                let mut fields = line.split_whitespace();
                let mut first = fields.next()?;
                let mut revoked = false;
                if let Some(marker) = first.strip_prefix('@') {
                    if marker != "revoked" {
                        return None;
                    }
                    revoked = true;
                    first = fields.next()?;
                }
                Some(Entry {
                    revoked,
                    hosts: first.to_owned(),
                    key_type: fields.next()?.to_owned(),
                    key: STANDARD.decode(fields.next()?).ok()?,
                })
            })
            .collect();
        KnownHosts {
            path: path.to_owned(),
            entries,
        }
    }

    fn verdict(&self, offered: &Offered) -> Verdict {
        // A revoked key is refused whatever host it is listed for.
        if self
            .entries
            .iter()
            .any(|e| e.revoked && e.key == offered.key)
        {
            return Verdict::Revoked;
        }
        let mut others = Vec::new();
        for entry in &self.entries {
            if entry.revoked || entry.key_type != offered.key_type {
                continue;
            }
            if !host_matches(&entry.hosts, &offered.name) {
                continue;
            }
            if entry.key == offered.key {
                return Verdict::Trusted;
            }
            others.push(fingerprint(&entry.key_type, &entry.key));
        }
        if others.is_empty() {
            Verdict::Unlisted
        } else {
            Verdict::Changed(others)
        }
    }

    fn refusal(&self, offered: &Offered, verdict: Verdict) -> String {
        let (name, file, fingerprint) = (&offered.name, self.path.display(), offered.fingerprint());
        match verdict {
            Verdict::Trusted => String::new(),
            Verdict::Revoked => format!(
                "the ssh host key of {name} ({fingerprint}) is marked @revoked in knownHostsFile {file}"
            ),
            Verdict::Changed(listed) => format!(
                "the ssh host key of {name} does not match knownHostsFile {file}: it offered {fingerprint}, the file lists {}; the server's key was replaced, or someone is intercepting the connection",
                listed.join(", ")
            ),
            Verdict::Unlisted => format!(
                "the ssh host key of {name} is not in knownHostsFile {file}; it offered {fingerprint}; once that fingerprint is confirmed with the server's operator, add the line: {}",
                offered.line()
            ),
        }
    }
}

/// Whether a known_hosts host field (`a,b,!c`, `*.example.com`,
/// `[host]:2222`, `|1|salt|hash`) names `name`.
fn host_matches(field: &str, name: &str) -> bool {
    if let Some(hashed) = field.strip_prefix("|1|") {
        let Some((salt, hash)) = hashed.split_once('|') else {
            return false;
        };
        let (Ok(salt), Ok(hash)) = (STANDARD.decode(salt), STANDARD.decode(hash)) else {
            return false;
        };
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &salt);
        return ring::hmac::verify(&key, name.as_bytes(), &hash).is_ok();
    }
    let name = name.to_ascii_lowercase();
    let mut matched = false;
    for pattern in field.split(',') {
        match pattern.strip_prefix('!') {
            Some(negated) if glob(&negated.to_ascii_lowercase(), &name) => return false,
            Some(_) => {}
            None => matched |= glob(&pattern.to_ascii_lowercase(), &name),
        }
    }
    matched
}

/// `*` and `?` wildcards, as in OpenSSH host patterns.
fn glob(pattern: &str, text: &str) -> bool {
    let (pattern, text) = (pattern.as_bytes(), text.as_bytes());
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == b'?' || pattern[p] == text[t]) {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// The port of `ssh://[user@]host[:port]/path`; 22 for scp-like
/// `user@host:path` and for any URL without one.
fn ssh_port(url: &str) -> u16 {
    let Some((_, rest)) = url.split_once("://") else {
        return 22;
    };
    let authority = rest.split('/').next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let port = match host_port.rfind(']') {
        Some(end) => host_port[end + 1..].strip_prefix(':'),
        None => host_port.rsplit_once(':').map(|(_, p)| p),
    };
    port.and_then(|p| p.parse().ok()).unwrap_or(22)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offered(name: &str, key: &[u8]) -> Offered {
        Offered {
            name: name.into(),
            key_type: "ssh-ed25519",
            key: key.to_vec(),
        }
    }

    fn known(text: &str) -> KnownHosts {
        KnownHosts::parse(Path::new("known_hosts"), text)
    }

    #[test]
    fn a_listed_key_is_trusted_and_the_port_is_part_of_the_name() {
        let key = STANDARD.encode(b"key-one");
        let file = known(&format!(
            "# comment\n[git.example.com]:2222 ssh-ed25519 {key}\n"
        ));
        assert_eq!(
            file.verdict(&offered("[git.example.com]:2222", b"key-one")),
            Verdict::Trusted
        );
        assert_eq!(
            file.verdict(&offered("git.example.com", b"key-one")),
            Verdict::Unlisted
        );
    }

    #[test]
    fn another_key_for_a_listed_host_is_a_change_not_a_new_host() {
        let file = known(&format!(
            "git.example.com ssh-ed25519 {}\n",
            STANDARD.encode(b"key-one")
        ));
        let verdict = file.verdict(&offered("git.example.com", b"key-two"));
        assert!(
            matches!(verdict, Verdict::Changed(ref listed) if listed.len() == 1),
            "{verdict:?}"
        );
        let message = file.refusal(&offered("git.example.com", b"key-two"), verdict);
        assert!(
            message.contains("does not match knownHostsFile"),
            "{message}"
        );
    }

    #[test]
    fn wildcards_negations_and_hashed_names_match_as_in_openssh() {
        let key = STANDARD.encode(b"k");
        let file = known(&format!(
            "*.example.com,!evil.example.com ssh-ed25519 {key}\n"
        ));
        assert_eq!(
            file.verdict(&offered("git.example.com", b"k")),
            Verdict::Trusted
        );
        assert_eq!(
            file.verdict(&offered("evil.example.com", b"k")),
            Verdict::Unlisted
        );

        // `ssh-keygen -H` form: |1|base64(salt)|base64(HMAC-SHA1(salt, name)).
        let salt = b"0123456789abcdefghij";
        let mac = ring::hmac::sign(
            &ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, salt),
            b"[10.0.0.1]:2222",
        );
        let hashed = format!(
            "|1|{}|{}",
            STANDARD.encode(salt),
            STANDARD.encode(mac.as_ref())
        );
        let file = known(&format!("{hashed} ssh-ed25519 {key}\n"));
        assert_eq!(
            file.verdict(&offered("[10.0.0.1]:2222", b"k")),
            Verdict::Trusted
        );
        assert_eq!(
            file.verdict(&offered("[10.0.0.2]:2222", b"k")),
            Verdict::Unlisted
        );
    }

    #[test]
    fn a_revoked_key_is_refused_even_where_it_is_also_listed() {
        let key = STANDARD.encode(b"k");
        let file = known(&format!(
            "@revoked * ssh-ed25519 {key}\ngit.example.com ssh-ed25519 {key}\n@cert-authority * ssh-ed25519 {key}\nbroken line\n"
        ));
        assert_eq!(
            file.verdict(&offered("git.example.com", b"k")),
            Verdict::Revoked
        );
    }

    #[test]
    fn the_ssh_port_comes_from_the_url() {
        assert_eq!(ssh_port("ssh://git@127.0.0.1:2222/srv/r.git"), 2222);
        assert_eq!(ssh_port("ssh://git@[::1]:2200/r.git"), 2200);
        assert_eq!(ssh_port("ssh://git@host/r.git"), 22);
        assert_eq!(ssh_port("git@github.com:org/r.git"), 22);
    }
}
