//! Access tests: files of assertions about who can do what (`can`,
//! `cannot`, and exact holder sets), kept in Git beside the objects they
//! check. Parsed with the located YAML reader, so every mistake in a test
//! file is a `file:line:column` error, and answered from one `Access` index.
//! Pure: bytes in, assertions out; assertions and an index in, outcomes out.

use std::collections::{BTreeSet, HashSet};
use std::fmt;
use std::sync::{Arc, OnceLock};

use serde::de::{self, Deserializer, IgnoredAny, SeqAccess, Visitor};
use serde::Deserialize;

use super::index::{Access, Decision, Holding};
use super::subject::{Holder, Subject, SubjectError};
use crate::model::de::from_node;
use crate::model::yaml::{self, Limits, Mark, Node};
use crate::model::{suggest, validate, Diagnostic, Origin};

/// One assertion of a test file, with the place it was written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assertion {
    /// The `can:`, `cannot:` or `holders:` key.
    pub place: Origin,
    pub name: Option<String>,
    /// The app asked about; `None`: any app.
    pub app: Option<String>,
    pub expect: Expect,
}

/// What an assertion expects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expect {
    /// The subject holds the permission (in some app asked about).
    Can {
        subject: Subject,
        permission: String,
    },
    /// The subject holds the permission in none of the apps asked about.
    Cannot {
        subject: Subject,
        permission: String,
    },
    /// The holders of the permission are exactly `holders` (`exactly`), or
    /// include them (`include`). Holders compare as written: a pattern
    /// (`contact:*@acme.example.com`) is one holder, and does not stand for
    /// the contacts it covers, so a new grant to one of them is a new holder.
    Holders {
        permission: String,
        holders: BTreeSet<Holder>,
        exactly: bool,
    },
}

impl Assertion {
    /// `can`, `cannot` or `holders`.
    pub fn kind(&self) -> &'static str {
        match self.expect {
            Expect::Can { .. } => "can",
            Expect::Cannot { .. } => "cannot",
            Expect::Holders { .. } => "holders",
        }
    }

    pub fn permission(&self) -> &str {
        match &self.expect {
            Expect::Can { permission, .. }
            | Expect::Cannot { permission, .. }
            | Expect::Holders { permission, .. } => permission,
        }
    }

    pub fn subject(&self) -> Option<&Subject> {
        match &self.expect {
            Expect::Can { subject, .. } | Expect::Cannot { subject, .. } => Some(subject),
            Expect::Holders { .. } => None,
        }
    }

    /// ` in app A`, or ` in any app`.
    fn scope(&self) -> String {
        match &self.app {
            Some(app) => format!(" in app {app}"),
            None => " in any app".to_owned(),
        }
    }

    /// What the assertion claims, in a sentence.
    pub fn describe(&self) -> String {
        let scope = self.scope();
        match &self.expect {
            Expect::Can {
                subject,
                permission,
            } => format!("{subject} can {permission}{scope}"),
            Expect::Cannot {
                subject,
                permission,
            } => format!("{subject} cannot {permission}{scope}"),
            Expect::Holders {
                permission,
                holders,
                exactly,
            } => format!(
                "the holders of {permission}{scope} {} [{}]",
                if *exactly { "are exactly" } else { "include" },
                join(holders)
            ),
        }
    }

    /// Why the assertion failed, in one line (the explanation follows it).
    pub fn failure(&self, outcome: &Outcome) -> String {
        let scope = self.scope();
        let what = match (&self.expect, &outcome.finding) {
            (Expect::Can { subject, .. }, _) => {
                format!(
                    "{subject} cannot {}{scope}, but the test says it can",
                    self.permission()
                )
            }
            (Expect::Cannot { subject, .. }, _) => {
                format!(
                    "{subject} can {}{scope}, but the test says it cannot",
                    self.permission()
                )
            }
            (Expect::Holders { .. }, Finding::Holders { extra, missing }) => {
                let extra: BTreeSet<&Holder> = extra.iter().map(|h| &h.holder).collect();
                let mut parts = Vec::new();
                if !extra.is_empty() {
                    parts.push(format!(
                        "{} not listed ({})",
                        extra.len(),
                        some(extra.iter())
                    ));
                }
                if !missing.is_empty() {
                    parts.push(format!(
                        "{} listed but not holding it ({})",
                        missing.len(),
                        some(missing.iter())
                    ));
                }
                let claim = match self.expect {
                    Expect::Holders { exactly: true, .. } => "are not exactly those listed",
                    _ => "do not include those listed",
                };
                format!(
                    "the holders of {}{scope} {claim}: {}",
                    self.permission(),
                    parts.join("; ")
                )
            }
            (Expect::Holders { .. }, Finding::Decision(_)) => self.describe(),
        };
        match &self.name {
            Some(name) => format!("{name}: {what}"),
            None => what,
        }
    }
}

/// The first few holders, for a one-line message (the explanation lists
/// them all).
fn some<T: fmt::Display>(holders: impl ExactSizeIterator<Item = T>) -> String {
    const SHOWN: usize = 5;
    let more = holders.len().saturating_sub(SHOWN);
    let mut text = holders
        .take(SHOWN)
        .map(|holder| holder.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    if more > 0 {
        text.push_str(&format!(" and {more} more"));
    }
    text
}

fn join(holders: &BTreeSet<Holder>) -> String {
    holders
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// What checking an assertion found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub passed: bool,
    pub finding: Finding,
    /// Things worth knowing that do not fail the assertion: an app no
    /// object is in, a permission no permit grants (a typo makes a
    /// `cannot` pass for nothing).
    pub notes: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Finding {
    /// For `can` and `cannot`: every path that grants it, or the permits
    /// that grant it to others.
    Decision(Decision),
    /// For `holders`: each way an unlisted holder holds it (only for
    /// `exactly`), and the listed holders that do not hold it.
    Holders {
        extra: Vec<Holding>,
        missing: Vec<Holder>,
    },
}

// ---- the file's shape --------------------------------------------------------

/// Fields of a test file, for the did-you-mean of a misspelled one.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSpec {
    /// `app` and each test are checked on their own below, so that one
    /// mistake does not hide the others.
    #[serde(default, rename = "app")]
    _app: Option<IgnoredAny>,
    #[serde(rename = "tests")]
    _tests: Vec<IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TestSpec {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    can: Option<CanSpec>,
    #[serde(default)]
    cannot: Option<CanSpec>,
    #[serde(default)]
    holders: Option<HoldersSpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CanSpec {
    subject: Words,
    permission: String,
    #[serde(default)]
    app: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HoldersSpec {
    permission: String,
    #[serde(default)]
    app: Option<String>,
    #[serde(default)]
    exactly: Option<Vec<String>>,
    #[serde(default)]
    include: Option<Vec<String>>,
}

/// `subject: user:u1`, or a list for one person with several identities:
/// `subject: [user:u1, contact:u1@example.com]`.
struct Words(Vec<String>);

impl<'de> Deserialize<'de> for Words {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Words, D::Error> {
        struct WordsVisitor;
        impl<'de> Visitor<'de> for WordsVisitor {
            type Value = Words;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a subject (`user:ID`, `contact:EMAIL` or `slug:NAME`) or a list of them",
                )
            }
            fn visit_str<E: de::Error>(self, word: &str) -> Result<Words, E> {
                Ok(Words(vec![word.to_owned()]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Words, A::Error> {
                let mut words = Vec::new();
                while let Some(word) = seq.next_element::<String>()? {
                    words.push(word);
                }
                Ok(Words(words))
            }
        }
        deserializer.deserialize_any(WordsVisitor)
    }
}

const ASSERTIONS: [&str; 3] = ["can", "cannot", "holders"];

/// Parses one test file: its assertions in order, and every error in it,
/// located. A file with any error should not be run.
pub fn parse(file: &Arc<str>, bytes: &[u8]) -> (Vec<Assertion>, Vec<Diagnostic>) {
    let mut reader = Reader {
        file: file.clone(),
        assertions: Vec::new(),
        errors: Vec::new(),
    };
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => {
            reader.error(utf8_error_mark(bytes, e), "file is not valid UTF-8");
            return (reader.assertions, reader.errors);
        }
    };
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    match yaml::load(text, Limits::default()) {
        Ok(documents) => {
            let roots: Vec<&Node> = documents
                .iter()
                .filter_map(|d| d.root.as_ref())
                .filter(|root| !root.is_null())
                .collect();
            if roots.is_empty() {
                reader.error(
                    Mark::START,
                    "the file holds no tests: expected a mapping with `tests:`, a list of assertions",
                );
            }
            for root in roots {
                reader.document(root);
            }
        }
        Err(e) => reader.error(e.mark, e.message),
    }
    (reader.assertions, reader.errors)
}

/// The line and column of the first byte that is not UTF-8.
fn utf8_error_mark(bytes: &[u8], error: std::str::Utf8Error) -> Mark {
    let valid = &bytes[..error.valid_up_to()];
    let line = valid.iter().filter(|&&b| b == b'\n').count() + 1;
    let start = valid.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
    let col = String::from_utf8_lossy(&valid[start..]).chars().count() + 1;
    Mark {
        line: u32::try_from(line).unwrap_or(u32::MAX),
        col: u32::try_from(col).unwrap_or(u32::MAX),
    }
}

struct Reader {
    file: Arc<str>,
    assertions: Vec<Assertion>,
    errors: Vec<Diagnostic>,
}

impl Reader {
    fn error(&mut self, mark: Mark, message: impl Into<String>) {
        self.errors.push(Diagnostic::new(&self.file, mark, message));
    }

    fn document(&mut self, root: &Node) {
        if let Err(e) = from_node::<FileSpec>(root) {
            let message = if root.as_map().is_none() {
                format!(
                    "expected a mapping with `tests:` (and an optional `app:`), found {}",
                    root.describe()
                )
            } else {
                e.message
            };
            return self.error(e.mark.unwrap_or(root.mark), message);
        }
        let app = match root.get("app").map(from_node::<Option<String>>) {
            None | Some(Ok(None)) => None,
            Some(Ok(app)) => self.app(root, app),
            Some(Err(e)) => {
                self.error(e.mark.unwrap_or(root.mark), e.message);
                None
            }
        };
        for item in root.get("tests").and_then(Node::as_seq).unwrap_or_default() {
            self.test(item, app.as_deref());
        }
    }

    /// The `app` of `node`, checked.
    fn app(&mut self, node: &Node, app: Option<String>) -> Option<String> {
        let app = app?;
        if let Err(message) = validate::app(&app) {
            self.error(at(node, "app"), message);
        }
        Some(app)
    }

    fn test(&mut self, node: &Node, default_app: Option<&str>) {
        let spec: TestSpec = match from_node(node) {
            Ok(spec) => spec,
            Err(e) => return self.error(e.mark.unwrap_or(node.mark), e.message),
        };
        let given = ASSERTIONS
            .iter()
            .filter(|k| node.get(k).is_some_and(|v| !v.is_null()))
            .count();
        if given != 1 {
            return self.error(
                node.mark,
                "a test needs exactly one of `can`, `cannot`, `holders`",
            );
        }
        let (key, body) = ASSERTIONS
            .iter()
            .find_map(|k| node.entry(k).filter(|(_, v)| !v.is_null()))
            .unwrap_or((node, node));
        let place = Origin {
            file: self.file.clone(),
            mark: key.mark,
        };
        let errors = self.errors.len();
        let (app, expect) = match (spec.can, spec.cannot, spec.holders) {
            (Some(can), ..) => {
                let subject = self.subject(body, &can.subject.0);
                let app = self.app(body, can.app);
                self.permission(body, &can.permission);
                (
                    app,
                    subject.map(|subject| Expect::Can {
                        subject,
                        permission: can.permission,
                    }),
                )
            }
            (None, Some(cannot), _) => {
                let subject = self.subject(body, &cannot.subject.0);
                let app = self.app(body, cannot.app);
                self.permission(body, &cannot.permission);
                (
                    app,
                    subject.map(|subject| Expect::Cannot {
                        subject,
                        permission: cannot.permission,
                    }),
                )
            }
            (None, None, Some(holders)) => {
                let app = self.app(body, holders.app);
                self.permission(body, &holders.permission);
                let (field, listed, exactly) = match (holders.exactly, holders.include) {
                    (Some(listed), None) => ("exactly", listed, true),
                    (None, Some(listed)) => ("include", listed, false),
                    _ => {
                        return self.error(
                            body.mark,
                            "holders: give exactly one of `exactly` (the whole set) or `include` (some of it)",
                        );
                    }
                };
                let nodes = body.get(field).and_then(Node::as_seq).unwrap_or_default();
                let mut set = BTreeSet::new();
                for (text, item) in listed.iter().zip(nodes) {
                    match holder(text) {
                        Ok(holder) => {
                            set.insert(holder);
                        }
                        Err(message) => self.error(item.mark, message),
                    }
                }
                (
                    app,
                    Some(Expect::Holders {
                        permission: holders.permission,
                        holders: set,
                        exactly,
                    }),
                )
            }
            (None, None, None) => return,
        };
        let Some(expect) = expect else { return };
        if self.errors.len() == errors {
            self.assertions.push(Assertion {
                place,
                name: spec.name,
                app: app.or_else(|| default_app.map(str::to_owned)),
                expect,
            });
        }
    }

    fn subject(&mut self, body: &Node, words: &[String]) -> Option<Subject> {
        match Subject::parse(words.iter().map(String::as_str)) {
            Ok(subject) => Some(subject),
            Err(e) => {
                let message = match e {
                    SubjectError::Pattern(pattern) => format!(
                        "`{pattern}` is a pattern of contacts, not one subject; list it under `holders` instead"
                    ),
                    e => e.to_string(),
                };
                self.error(at(body, "subject"), message);
                None
            }
        }
    }

    fn permission(&mut self, body: &Node, permission: &str) {
        if let Err(message) = validate::permission(permission) {
            self.error(at(body, "permission"), message);
        }
    }
}

/// Where `field` of a mapping is, or the mapping when it is absent.
fn at(node: &Node, field: &str) -> Mark {
    node.get(field).map_or(node.mark, |n| n.mark)
}

/// A holder as `who-can` prints one: `user:ID`, `contact:EMAIL`,
/// `contact:*`, `contact:*@DOMAIN` or `slug:NAME`.
fn holder(text: &str) -> Result<Holder, String> {
    let wrong = || {
        format!(
            "`{text}` is not a holder: write user:ID, contact:EMAIL, contact:*@DOMAIN, contact:* or slug:NAME"
        )
    };
    let (what, value) = text.split_once(':').ok_or_else(wrong)?;
    match what {
        "user" => validate::user_id(value)?,
        "contact" => validate::contact_id(value)?,
        "slug" => validate::slug(value)?,
        _ => return Err(wrong()),
    }
    Holder::parse(text).ok_or_else(wrong)
}

// ---- checking ----------------------------------------------------------------

/// Answers assertions from one index.
pub struct Checker<'a> {
    access: &'a Access,
    apps: HashSet<&'a str>,
    /// Every permission some permit grants, for a did-you-mean; built the
    /// first time one is needed.
    permissions: OnceLock<Vec<String>>,
}

impl<'a> Checker<'a> {
    pub fn new(access: &'a Access) -> Checker<'a> {
        Checker {
            access,
            apps: access.apps().collect(),
            permissions: OnceLock::new(),
        }
    }

    pub fn check(&self, assertion: &Assertion) -> Outcome {
        let app = assertion.app.as_deref();
        let mut notes = Vec::new();
        if let Some(app) = app.filter(|a| !self.apps.contains(a)) {
            let apps: Vec<&str> = self.apps.iter().copied().collect();
            notes.push(format!(
                "no object of the state is in app `{app}`{}",
                suggest::hint(app, &apps)
            ));
        }
        let permission = assertion.permission();
        let (passed, finding) = match &assertion.expect {
            Expect::Can { subject, .. } | Expect::Cannot { subject, .. } => {
                let decision = self.access.can(subject, permission, app);
                if decision.permits.is_empty() {
                    notes.extend(self.ungranted(permission, app));
                }
                let want = matches!(assertion.expect, Expect::Can { .. });
                (decision.allowed == want, Finding::Decision(decision))
            }
            Expect::Holders {
                holders, exactly, ..
            } => {
                let held: BTreeSet<Holder> = self
                    .access
                    .holders(permission, app)
                    .into_values()
                    .flatten()
                    .collect();
                // Nobody holding it is worth a note only when no permit
                // grants it: a permit whose roles nobody has is no typo.
                if held.is_empty()
                    && self
                        .access
                        .can(&Subject::default(), permission, app)
                        .permits
                        .is_empty()
                {
                    notes.extend(self.ungranted(permission, app));
                }
                let missing: Vec<Holder> = holders.difference(&held).cloned().collect();
                // The paths only for a failure: building them for every
                // holder of every passing set would cost most of a run.
                let extra: Vec<Holding> = if *exactly && !held.is_subset(holders) {
                    self.access
                        .who_can(permission, app)
                        .into_iter()
                        .filter(|h| !holders.contains(&h.holder))
                        .collect()
                } else {
                    Vec::new()
                };
                (
                    extra.is_empty() && missing.is_empty(),
                    Finding::Holders { extra, missing },
                )
            }
        };
        Outcome {
            passed,
            finding,
            notes,
        }
    }

    /// A note when no permit grants `permission` in the apps asked about,
    /// naming where it is granted, or the permission it may misspell.
    fn ungranted(&self, permission: &str, app: Option<&str>) -> Option<String> {
        let scope = app.map_or(String::new(), |a| format!(" in app `{a}`"));
        if app.is_some() {
            let elsewhere = self.access.can(&Subject::default(), permission, None);
            if !elsewhere.permits.is_empty() {
                let apps: BTreeSet<&str> =
                    elsewhere.permits.iter().map(|p| p.app.as_str()).collect();
                let apps: Vec<&str> = apps.into_iter().collect();
                return Some(format!(
                    "no permit grants `{permission}`{scope}; it is granted in app {}",
                    apps.join(", ")
                ));
            }
        }
        let names = self.permissions.get_or_init(|| {
            let distinct: BTreeSet<String> = self
                .access
                .permissions()
                .into_iter()
                .map(|(_, permission)| permission)
                .collect();
            distinct.into_iter().collect()
        });
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        Some(format!(
            "no permit grants `{permission}`{scope}{}",
            suggest::hint(permission, &names)
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::Place;
    use crate::model::{Enrollment, Object, Permit};

    fn parse_text(text: &str) -> (Vec<Assertion>, Vec<String>) {
        let (assertions, errors) = parse(&Arc::from("t.yaml"), text.as_bytes());
        (assertions, errors.iter().map(ToString::to_string).collect())
    }

    fn assertions(text: &str) -> Vec<Assertion> {
        let (assertions, errors) = parse_text(text);
        assert!(errors.is_empty(), "{errors:?}");
        assertions
    }

    fn errors(text: &str) -> Vec<String> {
        let (_, errors) = parse_text(text);
        assert!(!errors.is_empty(), "expected errors");
        errors
    }

    fn access() -> Access {
        let objects = [
            Object::Permit(Permit {
                id: "refunds".into(),
                app: "unnamed".into(),
                permission_id: "pay:refund".into(),
                slugs: vec!["refund-worker".into()],
                roles: vec!["pay:admin".into()],
            }),
            Object::Permit(Permit {
                id: "audits".into(),
                app: "unnamed".into(),
                permission_id: "pay:audit".into(),
                slugs: vec![],
                roles: vec!["pay:auditor".into()],
            }),
            Object::Enrollment(Enrollment {
                id: "ops".into(),
                app: "unnamed".into(),
                role: "pay:admin".into(),
                user_id: Some("u1".into()),
                contact_id: None,
            }),
        ];
        Access::build(objects.into_iter().map(|o| {
            let key = o.key();
            (Arc::new(o), Place::Row(key))
        }))
    }

    fn check(text: &str) -> Vec<Outcome> {
        let access = access();
        let checker = Checker::new(&access);
        assertions(text).iter().map(|a| checker.check(a)).collect()
    }

    #[test]
    fn each_assertion_is_placed_at_its_key_and_inherits_the_file_app() {
        let parsed = assertions(
            "app: unnamed\ntests:\n  - name: u1 refunds\n    can: {subject: user:u1, permission: pay:refund}\n  - cannot: {subject: [user:u2, contact:u2@x.com], permission: pay:refund, app: other}\n  - holders: {permission: pay:refund, exactly: [slug:refund-worker, user:u1]}\n",
        );
        assert_eq!(parsed.len(), 3);
        assert_eq!(parsed[0].place.to_string(), "t.yaml:4:5");
        assert_eq!(parsed[0].name.as_deref(), Some("u1 refunds"));
        assert_eq!(parsed[0].app.as_deref(), Some("unnamed"));
        assert_eq!(parsed[1].place.to_string(), "t.yaml:5:5");
        assert_eq!(parsed[1].app.as_deref(), Some("other"));
        assert_eq!(
            parsed[1].subject().map(ToString::to_string).as_deref(),
            Some("user:u2 + contact:u2@x.com")
        );
        assert_eq!(parsed[2].kind(), "holders");
    }

    #[test]
    fn a_misspelled_field_is_located_with_a_suggestion() {
        let errors = errors(
            "tests:\n  - can: {subject: user:u1, permision: pay:refund}\n  - holders: {permission: pay:refund, exactl: []}\n",
        );
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            errors[0]
                .starts_with("t.yaml:2:29: unknown field `permision` (did you mean `permission`?)"),
            "{errors:?}"
        );
        assert!(
            errors[1].starts_with("t.yaml:3:39: unknown field `exactl` (did you mean `exactly`?)"),
            "{errors:?}"
        );
    }

    #[test]
    fn wrong_types_and_bad_values_are_located() {
        let errors = errors(
            "app: [x]\ntests:\n  - can: {subject: 12, permission: pay:refund}\n  - cannot: {subject: user:u1, permission: refund}\n  - holders: {permission: pay:refund, exactly: [team:x]}\n  - can: {subject: contact:*@x.com, permission: pay:refund}\n  - name: nothing\n",
        );
        let joined = errors.join("\n");
        assert!(
            joined.contains("t.yaml:1:6: wrong type: found a list, expected a string"),
            "{joined}"
        );
        assert!(
            joined.contains("t.yaml:3:20: wrong type: found integer `12`, expected a subject"),
            "{joined}"
        );
        assert!(
            joined.contains("t.yaml:4:44: invalid permissionId `refund`"),
            "{joined}"
        );
        assert!(
            joined.contains("t.yaml:5:49: `team:x` is not a holder"),
            "{joined}"
        );
        assert!(
            joined.contains("t.yaml:6:20: `*@x.com` is a pattern of contacts"),
            "{joined}"
        );
        assert!(
            joined.contains("t.yaml:7:5: a test needs exactly one of `can`, `cannot`, `holders`"),
            "{joined}"
        );
    }

    #[test]
    fn an_empty_file_or_a_file_without_tests_is_an_error() {
        assert!(errors("")[0].contains("holds no tests"));
        assert!(errors("app: x\n")[0].contains("missing field `tests`"));
    }

    #[test]
    fn can_and_cannot_hold_or_fail_with_the_decision() {
        let outcomes = check(
            "tests:\n  - can: {subject: user:u1, permission: pay:refund}\n  - cannot: {subject: user:u1, permission: pay:refund}\n  - can: {subject: slug:refund-worker, permission: pay:refund, app: unnamed}\n  - cannot: {subject: user:u2, permission: pay:refund}\n",
        );
        let passed: Vec<bool> = outcomes.iter().map(|o| o.passed).collect();
        assert_eq!(passed, [true, false, true, true]);
        let Finding::Decision(decision) = &outcomes[1].finding else {
            panic!("a decision")
        };
        assert_eq!(
            decision.paths[0].grant.as_ref().map(|g| g.id.as_str()),
            Some("ops")
        );
    }

    #[test]
    fn an_exact_holder_set_names_extra_and_missing_holders() {
        let outcomes = check(
            "tests:\n  - holders: {permission: pay:refund, exactly: [slug:refund-worker, user:u1]}\n  - holders: {permission: pay:refund, exactly: [slug:refund-worker, user:u9]}\n  - holders: {permission: pay:refund, include: [user:u1]}\n",
        );
        assert!(outcomes[0].passed);
        assert!(!outcomes[1].passed);
        let Finding::Holders { extra, missing } = &outcomes[1].finding else {
            panic!("holders")
        };
        assert_eq!(extra.len(), 1);
        assert_eq!(extra[0].holder, Holder::User("u1".into()));
        assert_eq!(missing, &[Holder::User("u9".into())]);
        assert!(outcomes[2].passed);
    }

    #[test]
    fn a_permission_no_permit_grants_is_noted_with_a_suggestion() {
        let outcomes = check(
            "tests:\n  - cannot: {subject: user:u2, permission: pay:refnd}\n  - holders: {permission: pay:refund, app: unamed, exactly: []}\n  - holders: {permission: pay:audit, exactly: []}\n",
        );
        assert!(outcomes[0].passed, "true, but for nothing");
        assert_eq!(
            outcomes[0].notes,
            ["no permit grants `pay:refnd` (did you mean `pay:refund`?)"]
        );
        assert_eq!(
            outcomes[1].notes,
            [
                "no object of the state is in app `unamed` (did you mean `unnamed`?)",
                "no permit grants `pay:refund` in app `unamed`; it is granted in app unnamed"
            ]
        );
        assert!(outcomes[2].passed);
        assert_eq!(
            outcomes[2].notes,
            Vec::<String>::new(),
            "granted, to nobody: no typo"
        );
    }

    #[test]
    fn a_failure_says_what_was_expected_and_what_is() {
        let access = access();
        let checker = Checker::new(&access);
        let parsed = assertions(
            "tests:\n  - name: only the worker refunds\n    holders: {permission: pay:refund, app: unnamed, exactly: [slug:refund-worker]}\n  - cannot: {subject: user:u1, permission: pay:refund}\n",
        );
        let failures: Vec<String> = parsed
            .iter()
            .map(|a| a.failure(&checker.check(a)))
            .collect();
        assert_eq!(
            failures,
            [
                "only the worker refunds: the holders of pay:refund in app unnamed are not exactly those listed: 1 not listed (user:u1)",
                "user:u1 can pay:refund in any app, but the test says it cannot",
            ]
        );
    }
}
