//! An object's canonical bytes: every field in a fixed order, each text
//! length-prefixed, each list counted. The content hash is taken over them,
//! and the store keeps each live row as them (one allocation per row instead
//! of one per field), so reading 100k rows builds no objects until a plan
//! needs one for a change.

use super::{Budget, Enrollment, Member, Object, Organization, Permit};

const PERMIT: &[u8] = b"accord/permit/1";
const ENROLLMENT: &[u8] = b"accord/enrollment/1";
const ORGANIZATION: &[u8] = b"accord/organization/1";

thread_local! {
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Canonical bytes, only ever written by the encoders below, so they always
/// decode back into the object they came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Canonical(Box<[u8]>);

impl Canonical {
    pub fn of(object: &Object) -> Canonical {
        Canonical::written(|buf| encode(object, buf))
    }

    /// Bytes written into a buffer each thread keeps, then copied once into
    /// an allocation of their exact size: one allocation per row, where a
    /// fresh vector took an allocation and a shrinking reallocation.
    fn written(write: impl FnOnce(&mut Vec<u8>)) -> Canonical {
        SCRATCH.with_borrow_mut(|buf| {
            buf.clear();
            write(buf);
            Canonical(Box::from(buf.as_slice()))
        })
    }

    /// Whether `object` has exactly these bytes, i.e. the same content:
    /// encoded into a buffer each thread keeps, so comparing 100k declared
    /// objects with their rows neither allocates nor hashes.
    pub fn matches(&self, object: &Object) -> bool {
        SCRATCH.with_borrow_mut(|buf| {
            buf.clear();
            encode(object, buf);
            **buf == *self.0
        })
    }

    /// The content hash (`digest`) of `object`'s bytes, encoded into the
    /// buffer `matches` uses: nothing is allocated.
    pub fn digest_of(object: &Object) -> [u8; 16] {
        SCRATCH.with_borrow_mut(|buf| {
            buf.clear();
            encode(object, buf);
            digest(buf)
        })
    }

    /// A permit's bytes from its fields; `slugs` and `roles` sorted and
    /// without duplicates, as `Object::normalize` leaves them.
    pub fn permit<S: AsRef<str>>(
        id: &str,
        app: &str,
        permission_id: &str,
        slugs: &[S],
        roles: &[S],
    ) -> Canonical {
        Canonical::written(|buf| write_permit(buf, id, app, permission_id, slugs, roles))
    }

    pub fn enrollment(
        id: &str,
        app: &str,
        role: &str,
        user_id: Option<&str>,
        contact_id: Option<&str>,
    ) -> Canonical {
        Canonical::written(|buf| write_enrollment(buf, id, app, role, user_id, contact_id))
    }

    /// The first 16 bytes of the BLAKE3 hash of the bytes.
    pub fn digest(&self) -> [u8; 16] {
        digest(&self.0)
    }

    pub fn object(&self) -> Object {
        Reader(&self.0)
            .object()
            .expect("canonical bytes are only written by the encoder")
    }
}

fn digest(bytes: &[u8]) -> [u8; 16] {
    let mut digest = [0u8; 16];
    digest.copy_from_slice(&blake3::hash(bytes).as_bytes()[..16]);
    digest
}

fn encode(object: &Object, buf: &mut Vec<u8>) {
    match object {
        Object::Permit(p) => write_permit(buf, &p.id, &p.app, &p.permission_id, &p.slugs, &p.roles),
        Object::Enrollment(e) => write_enrollment(
            buf,
            &e.id,
            &e.app,
            &e.role,
            e.user_id.as_deref(),
            e.contact_id.as_deref(),
        ),
        Object::Organization(o) => {
            let mut w = Writer::new(buf, ORGANIZATION);
            w.text(&o.slug);
            w.text(&o.app);
            w.optional(o.name.as_deref());
            w.number(o.budget.as_ref().map(|b| b.monthly_tokens));
            w.list(&o.allowed_models);
            w.count(o.members.len());
            for m in &o.members {
                w.optional(m.contact_id.as_deref());
                w.optional(m.user_id.as_deref());
                w.text(&m.role);
                w.number(m.token_limit);
            }
        }
    }
}

fn write_permit<S: AsRef<str>>(
    buf: &mut Vec<u8>,
    id: &str,
    app: &str,
    permission_id: &str,
    slugs: &[S],
    roles: &[S],
) {
    let mut w = Writer::new(buf, PERMIT);
    w.text(id);
    w.text(app);
    w.text(permission_id);
    w.list(slugs);
    w.list(roles);
}

fn write_enrollment(
    buf: &mut Vec<u8>,
    id: &str,
    app: &str,
    role: &str,
    user_id: Option<&str>,
    contact_id: Option<&str>,
) {
    let mut w = Writer::new(buf, ENROLLMENT);
    w.text(id);
    w.text(app);
    w.text(role);
    w.optional(user_id);
    w.optional(contact_id);
}

struct Writer<'a>(&'a mut Vec<u8>);

impl Writer<'_> {
    fn new<'a>(buf: &'a mut Vec<u8>, tag: &[u8]) -> Writer<'a> {
        buf.extend_from_slice(tag);
        Writer(buf)
    }

    fn count(&mut self, n: usize) {
        self.0.extend_from_slice(&(n as u64).to_le_bytes());
    }

    fn text(&mut self, value: &str) {
        self.count(value.len());
        self.0.extend_from_slice(value.as_bytes());
    }

    fn optional(&mut self, value: Option<&str>) {
        match value {
            None => self.0.push(0),
            Some(v) => {
                self.0.push(1);
                self.text(v);
            }
        }
    }

    fn list<S: AsRef<str>>(&mut self, values: &[S]) {
        self.count(values.len());
        for v in values {
            self.text(v.as_ref());
        }
    }

    fn number(&mut self, value: Option<u64>) {
        match value {
            None => self.0.push(0),
            Some(n) => {
                self.0.push(1);
                self.0.extend_from_slice(&n.to_le_bytes());
            }
        }
    }
}

/// Reads what `Writer` wrote; `None` on anything else.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn object(mut self) -> Option<Object> {
        let object = if self.tag(PERMIT) {
            Object::Permit(Permit {
                id: self.text()?,
                app: self.text()?,
                permission_id: self.text()?,
                slugs: self.list()?,
                roles: self.list()?,
            })
        } else if self.tag(ENROLLMENT) {
            Object::Enrollment(Enrollment {
                id: self.text()?,
                app: self.text()?,
                role: self.text()?,
                user_id: self.optional()?,
                contact_id: self.optional()?,
            })
        } else if self.tag(ORGANIZATION) {
            let slug = self.text()?;
            let app = self.text()?;
            let name = self.optional()?;
            let budget = self
                .number()?
                .map(|monthly_tokens| Budget { monthly_tokens });
            let allowed_models = self.list()?;
            let count = self.count()?;
            let mut members = Vec::with_capacity(count.min(self.0.len()));
            for _ in 0..count {
                members.push(Member {
                    contact_id: self.optional()?,
                    user_id: self.optional()?,
                    role: self.text()?,
                    token_limit: self.number()?,
                });
            }
            Object::Organization(Organization {
                slug,
                app,
                name,
                budget,
                allowed_models,
                members,
            })
        } else {
            return None;
        };
        self.0.is_empty().then_some(object)
    }

    fn tag(&mut self, tag: &[u8]) -> bool {
        match self.0.strip_prefix(tag) {
            Some(rest) => {
                self.0 = rest;
                true
            }
            None => false,
        }
    }

    fn take(&mut self, n: usize) -> Option<&[u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }

    fn count(&mut self) -> Option<usize> {
        usize::try_from(self.u64()?).ok()
    }

    fn text<T: for<'t> From<&'t str>>(&mut self) -> Option<T> {
        let n = self.count()?;
        std::str::from_utf8(self.take(n)?).ok().map(T::from)
    }

    fn flag(&mut self) -> Option<bool> {
        match self.take(1)? {
            [0] => Some(false),
            [1] => Some(true),
            _ => None,
        }
    }

    fn optional<T: for<'t> From<&'t str>>(&mut self) -> Option<Option<T>> {
        if self.flag()? {
            self.text().map(Some)
        } else {
            Some(None)
        }
    }

    fn number(&mut self) -> Option<Option<u64>> {
        if self.flag()? {
            self.u64().map(Some)
        } else {
            Some(None)
        }
    }

    fn list<T: for<'t> From<&'t str>>(&mut self) -> Option<Vec<T>> {
        let count = self.count()?;
        let mut list = Vec::with_capacity(count.min(self.0.len()));
        for _ in 0..count {
            list.push(self.text()?);
        }
        Some(list)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn objects() -> Vec<Object> {
        vec![
            Object::Permit(Permit {
                id: "pay".into(),
                app: "shop".into(),
                permission_id: "payments:write".into(),
                slugs: vec!["billing".into(), "orders".into()],
                roles: vec![],
            }),
            Object::Permit(Permit {
                id: Default::default(),
                app: "ünïcode\t\"app\"".into(),
                permission_id: "\\N".into(),
                slugs: vec![Default::default()],
                roles: vec!["a".into(), "b".into(), "c".into()],
            }),
            Object::Enrollment(Enrollment {
                id: "ann".into(),
                app: "unnamed".into(),
                role: "admin".into(),
                user_id: Some("u-1".into()),
                contact_id: None,
            }),
            Object::Enrollment(Enrollment {
                id: "everyone".into(),
                app: "unnamed".into(),
                role: "reader".into(),
                user_id: None,
                contact_id: Some("*".into()),
            }),
            Object::Organization(Organization {
                slug: "acme".into(),
                app: "unnamed".into(),
                name: Some("Acme".into()),
                budget: Some(Budget {
                    monthly_tokens: u64::MAX,
                }),
                allowed_models: vec!["gpt-4o".into(), "o3".into()],
                members: vec![
                    Member {
                        contact_id: Some("ann@acme.com".into()),
                        user_id: None,
                        role: "admin".into(),
                        token_limit: Some(0),
                    },
                    Member {
                        contact_id: None,
                        user_id: Some("u-2".into()),
                        role: "user".into(),
                        token_limit: None,
                    },
                ],
            }),
            Object::Organization(Organization {
                slug: "empty".into(),
                app: "unnamed".into(),
                name: None,
                budget: None,
                allowed_models: vec![],
                members: vec![],
            }),
        ]
    }

    #[test]
    fn every_object_decodes_back_from_its_bytes() {
        for object in objects() {
            assert_eq!(Canonical::of(&object).object(), object);
        }
    }

    #[test]
    fn an_object_matches_its_own_bytes_only() {
        let all = objects();
        for (i, object) in all.iter().enumerate() {
            let bytes = Canonical::of(object);
            for (j, other) in all.iter().enumerate() {
                assert_eq!(bytes.matches(other), i == j, "{object:?} against {other:?}");
            }
        }
    }

    #[test]
    fn objects_that_differ_in_any_field_have_different_bytes() {
        let all: Vec<Canonical> = objects().iter().map(Canonical::of).collect();
        for (i, a) in all.iter().enumerate() {
            for b in &all[i + 1..] {
                assert_ne!(a, b);
            }
        }
        // The length prefixes keep a boundary from moving between fields.
        let split = |id: &str, app: &str| Canonical::enrollment(id, app, "r", None, None);
        assert_ne!(split("ab", "c"), split("a", "bc"));
    }

    #[test]
    fn the_encoders_for_fields_write_what_the_object_encoder_writes() {
        let slugs = ["billing", "orders"];
        let from_fields = Canonical::permit("pay", "shop", "payments:write", &slugs, &[]);
        assert_eq!(from_fields, Canonical::of(&objects()[0]));
        let from_fields = Canonical::enrollment("ann", "unnamed", "admin", Some("u-1"), None);
        assert_eq!(from_fields, Canonical::of(&objects()[2]));
    }

    #[test]
    fn bytes_cut_short_or_with_more_after_them_do_not_decode() {
        for object in objects() {
            let bytes = Canonical::of(&object).0;
            for end in 0..bytes.len() {
                assert_eq!(
                    Reader(&bytes[..end]).object(),
                    None,
                    "{object:?} cut at {end}"
                );
            }
            let mut longer = bytes.to_vec();
            longer.push(0);
            assert_eq!(Reader(&longer).object(), None);
        }
    }
}
