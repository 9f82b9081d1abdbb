//! Subjects: who a query asks about (`Subject`), and who a grant names
//! (`Holder`, which may be a pattern of contacts).

use std::fmt;

use serde::Serialize;

/// Who a query asks about: a user, a contact, a service slug, or one person
/// who is a user and a contact at once.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Subject {
    pub user: Option<String>,
    /// Kept as written; matched with its domain in lower case.
    pub contact: Option<String>,
    pub slug: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SubjectError {
    #[error("`{0}` is not a subject: write user:ID, contact:EMAIL or slug:NAME")]
    Unknown(String),
    #[error("`{0}` names an empty {1}")]
    Empty(String, &'static str),
    #[error("two {0}s given (`{1}` and `{2}`); a subject is one person: at most one user, one contact and one slug")]
    Twice(&'static str, String, String),
    #[error(
        "`{0}` is a pattern of contacts, not one contact; ask who-can to see who a pattern covers"
    )]
    Pattern(String),
    #[error("no subject given")]
    None,
}

impl Subject {
    /// One subject from `user:ID`, `contact:EMAIL` and `slug:NAME` parts
    /// (a user and a contact together are one person with both).
    pub fn parse<'a>(parts: impl IntoIterator<Item = &'a str>) -> Result<Subject, SubjectError> {
        let mut subject = Subject::default();
        let mut any = false;
        for part in parts {
            let (what, field) = match part.split_once(':') {
                Some(("user", value)) => (value, ("user", &mut subject.user)),
                Some(("contact", value)) => (value, ("contact", &mut subject.contact)),
                Some(("slug", value)) => (value, ("slug", &mut subject.slug)),
                _ => return Err(SubjectError::Unknown(part.to_owned())),
            };
            let (name, slot) = field;
            if what.is_empty() {
                return Err(SubjectError::Empty(part.to_owned(), name));
            }
            if name == "contact" && what.starts_with('*') {
                return Err(SubjectError::Pattern(what.to_owned()));
            }
            if let Some(first) = slot {
                return Err(SubjectError::Twice(name, first.clone(), what.to_owned()));
            }
            *slot = Some(what.to_owned());
            any = true;
        }
        if any {
            Ok(subject)
        } else {
            Err(SubjectError::None)
        }
    }

    /// One subject from the parts a form or a query string gives separately;
    /// each is checked as `parse` checks `user:ID`, `contact:EMAIL`, `slug:NAME`.
    pub fn of(
        user: Option<&str>,
        contact: Option<&str>,
        slug: Option<&str>,
    ) -> Result<Subject, SubjectError> {
        let parts: Vec<String> = [("user", user), ("contact", contact), ("slug", slug)]
            .into_iter()
            .filter_map(|(name, value)| value.map(|v| format!("{name}:{v}")))
            .collect();
        Subject::parse(parts.iter().map(String::as_str))
    }

    /// The contact with its domain in lower case, as grants are matched.
    pub fn contact_key(&self) -> Option<String> {
        self.contact.as_deref().map(normal_contact)
    }

    /// The contact's domain, lower case.
    pub fn domain(&self) -> Option<String> {
        self.contact
            .as_deref()
            .and_then(|c| c.rsplit_once('@'))
            .map(|(_, domain)| domain.to_ascii_lowercase())
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(user) = &self.user {
            parts.push(format!("user:{user}"));
        }
        if let Some(contact) = &self.contact {
            parts.push(format!("contact:{contact}"));
        }
        if let Some(slug) = &self.slug {
            parts.push(format!("slug:{slug}"));
        }
        f.write_str(&parts.join(" + "))
    }
}

/// A contact with its domain lower-cased: domains are case-insensitive.
pub(super) fn normal_contact(contact: &str) -> String {
    match contact.rsplit_once('@') {
        Some((local, domain)) => format!("{local}@{}", domain.to_ascii_lowercase()),
        None => contact.to_owned(),
    }
}

/// Who a grant names: one user, contact or slug, or a pattern of contacts.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Holder {
    User(String),
    /// One contact, domain in lower case.
    Contact(String),
    /// `*`: every contact.
    EveryContact,
    /// `*@domain`: every contact at the domain (lower case).
    Domain(String),
    Slug(String),
}

impl Holder {
    /// The holder an enrollment's or member's `userId` / `contactId` names.
    pub fn of(user: Option<&str>, contact: Option<&str>) -> Option<Holder> {
        match (user, contact) {
            (Some(user), _) => Some(Holder::User(user.to_owned())),
            (None, Some("*")) => Some(Holder::EveryContact),
            (None, Some(contact)) => match contact.strip_prefix("*@") {
                Some(domain) => Some(Holder::Domain(domain.to_ascii_lowercase())),
                None => Some(Holder::Contact(normal_contact(contact))),
            },
            (None, None) => None,
        }
    }

    /// Parses the form `Display` writes (`user:u`, `contact:*@d`, `slug:s`).
    pub fn parse(text: &str) -> Option<Holder> {
        let (what, value) = text.split_once(':')?;
        if value.is_empty() {
            return None;
        }
        match what {
            "user" => Some(Holder::User(value.to_owned())),
            "contact" => Holder::of(None, Some(value)),
            "slug" => Some(Holder::Slug(value.to_owned())),
            _ => None,
        }
    }

    /// Whether this holder covers the subject (a pattern covers every
    /// contact it matches).
    pub fn covers(&self, subject: &Subject) -> bool {
        match self {
            Holder::User(user) => subject.user.as_deref() == Some(user),
            Holder::Contact(contact) => subject.contact_key().as_deref() == Some(contact),
            Holder::EveryContact => subject.contact.is_some(),
            Holder::Domain(domain) => subject.domain().as_deref() == Some(domain),
            Holder::Slug(slug) => subject.slug.as_deref() == Some(slug),
        }
    }

    /// Whether the holder is a pattern of many contacts.
    pub fn is_pattern(&self) -> bool {
        matches!(self, Holder::EveryContact | Holder::Domain(_))
    }
}

impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Holder::User(user) => write!(f, "user:{user}"),
            Holder::Contact(contact) => write!(f, "contact:{contact}"),
            Holder::EveryContact => f.write_str("contact:*"),
            Holder::Domain(domain) => write!(f, "contact:*@{domain}"),
            Holder::Slug(slug) => write!(f, "slug:{slug}"),
        }
    }
}

impl Serialize for Holder {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}
