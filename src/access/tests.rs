use std::collections::BTreeSet;
use std::sync::Arc;

use proptest::prelude::*;

use super::*;
use crate::model::{Enrollment, Member, Object, Organization, Permit};

fn permit(app: &str, id: &str, permission: &str, slugs: &[&str], roles: &[&str]) -> Object {
    Object::Permit(Permit {
        id: id.into(),
        app: app.into(),
        permission_id: permission.into(),
        slugs: slugs.iter().map(|s| (*s).into()).collect(),
        roles: roles.iter().map(|s| (*s).into()).collect(),
    })
}

fn enroll_user(app: &str, id: &str, role: &str, user: &str) -> Object {
    Object::Enrollment(Enrollment {
        id: id.into(),
        app: app.into(),
        role: role.into(),
        user_id: Some(user.into()),
        contact_id: None,
    })
}

fn enroll_contact(app: &str, id: &str, role: &str, contact: &str) -> Object {
    Object::Enrollment(Enrollment {
        id: id.into(),
        app: app.into(),
        role: role.into(),
        user_id: None,
        contact_id: Some(contact.into()),
    })
}

fn org(app: &str, slug: &str, members: &[(Option<&str>, Option<&str>, &str)]) -> Object {
    Object::Organization(Organization {
        slug: slug.into(),
        app: app.into(),
        name: None,
        budget: None,
        allowed_models: vec![],
        members: members
            .iter()
            .map(|(user, contact, role)| Member {
                user_id: user.map(str::to_owned),
                contact_id: contact.map(str::to_owned),
                role: role.to_string(),
                token_limit: None,
            })
            .collect(),
    })
}

fn index(objects: Vec<Object>) -> Access {
    Access::build(objects.into_iter().map(|o| {
        let key = o.key();
        (Arc::new(o), Place::Row(key))
    }))
}

fn subject(parts: &[&str]) -> Subject {
    Subject::parse(parts.iter().copied()).expect("a subject")
}

#[test]
fn a_role_pattern_segment_matches_exactly_one_segment() {
    assert!(role_matches(
        "user-svc:org:*:admin",
        "user-svc:org:acme:admin"
    ));
    assert!(!role_matches(
        "user-svc:org:*:admin",
        "user-svc:org:acme:user"
    ));
    assert!(!role_matches(
        "user-svc:org:*:admin",
        "user-svc:org:a:b:admin"
    ));
    assert!(!role_matches("user-svc:*", "user-svc:org:acme:admin"));
    assert!(role_matches("*:*", "payment-svc:processor"));
    assert!(role_matches(
        "payment-svc:processor",
        "payment-svc:processor"
    ));
    assert!(!role_matches(
        "payment-svc:processor",
        "payment-svc:processors"
    ));
}

#[test]
fn a_user_holds_a_permission_through_an_enrollment_and_a_slug_directly() {
    let access = index(vec![
        permit(
            "a",
            "p1",
            "pay:process",
            &["billing-svc"],
            &["pay:processor"],
        ),
        enroll_user("a", "e1", "pay:processor", "alice"),
    ]);
    let yes = access.can(&subject(&["user:alice"]), "pay:process", None);
    assert!(yes.allowed);
    assert_eq!(yes.paths.len(), 1);
    let path = &yes.paths[0];
    assert_eq!(path.role(), Some("pay:processor"));
    assert_eq!(path.grant.as_ref().unwrap().id, "e1");
    assert!(
        access
            .can(&subject(&["slug:billing-svc"]), "pay:process", None)
            .allowed
    );
    let no = access.can(&subject(&["user:bob"]), "pay:process", None);
    assert!(!no.allowed);
    assert_eq!(
        no.permits.len(),
        1,
        "a denial names the permits that grant it"
    );
    assert!(
        !access
            .can(&subject(&["user:alice"]), "pay:refund", None)
            .allowed
    );
}

#[test]
fn contact_wildcards_match_every_contact_or_a_domain_in_any_case() {
    let access = index(vec![
        permit("a", "p1", "docs:read", &[], &["docs:reader"]),
        permit("a", "p2", "docs:write", &[], &["docs:writer"]),
        enroll_contact("a", "e1", "docs:reader", "*"),
        enroll_contact("a", "e2", "docs:writer", "*@Acme.Example.com"),
    ]);
    let carol = subject(&["contact:carol@ACME.example.COM"]);
    assert!(access.can(&carol, "docs:read", None).allowed);
    assert!(access.can(&carol, "docs:write", None).allowed);
    let dave = subject(&["contact:dave@other.example"]);
    assert!(access.can(&dave, "docs:read", None).allowed);
    assert!(!access.can(&dave, "docs:write", None).allowed);
    // A user with no contact is no contact: `*` covers contacts only.
    assert!(
        !access
            .can(&subject(&["user:u1"]), "docs:read", None)
            .allowed
    );
    let holders = access.holders("docs:write", None);
    assert_eq!(
        holders["a"],
        BTreeSet::from([Holder::Domain("acme.example.com".into())])
    );
}

#[test]
fn an_exact_contact_matches_with_its_domain_in_any_case() {
    let access = index(vec![
        permit("a", "p1", "x:y", &[], &["x:r"]),
        enroll_contact("a", "e1", "x:r", "Eve@Example.COM"),
    ]);
    assert!(
        access
            .can(&subject(&["contact:Eve@example.com"]), "x:y", None)
            .allowed
    );
    assert!(
        !access
            .can(&subject(&["contact:eve@example.com"]), "x:y", None)
            .allowed,
        "the local part keeps its case"
    );
}

#[test]
fn organization_members_hold_org_roles_that_patterns_match() {
    let access = index(vec![
        permit("a", "p1", "org:delete", &[], &["user-svc:org:*:admin"]),
        org(
            "a",
            "acme",
            &[
                (Some("u1"), None, "admin"),
                (None, Some("m@acme.com"), "user"),
            ],
        ),
    ]);
    let yes = access.can(&subject(&["user:u1"]), "org:delete", None);
    assert!(yes.allowed);
    let grant = yes.paths[0].grant.as_ref().unwrap();
    assert_eq!(grant.kind, "membership");
    assert_eq!(grant.role, "user-svc:org:acme:admin");
    assert_eq!(grant.member_role.as_deref(), Some("admin"));
    assert!(
        !access
            .can(&subject(&["contact:m@acme.com"]), "org:delete", None)
            .allowed
    );
}

#[test]
fn a_user_and_a_contact_together_are_one_person() {
    let access = index(vec![
        permit("a", "p1", "x:both", &[], &["x:u"]),
        permit("a", "p2", "x:c", &[], &["x:c"]),
        enroll_user("a", "e1", "x:u", "u1"),
        enroll_contact("a", "e2", "x:c", "p@d.com"),
    ]);
    let person = subject(&["user:u1", "contact:p@d.com"]);
    let held: Vec<_> = access
        .access(&person, None)
        .into_iter()
        .map(|p| p.permission_id)
        .collect();
    assert_eq!(held, ["x:both", "x:c"]);
}

#[test]
fn nothing_crosses_apps_but_an_enrollment_of_every_app() {
    let access = index(vec![
        permit("a", "p1", "x:y", &[], &["x:r"]),
        permit("b", "p1", "x:y", &[], &["x:r"]),
        enroll_user("a", "e1", "x:r", "u1"),
        enroll_user("*", "e2", "x:r", "root"),
    ]);
    let u1 = subject(&["user:u1"]);
    assert!(access.can(&u1, "x:y", Some("a")).allowed);
    assert!(!access.can(&u1, "x:y", Some("b")).allowed);
    let root = subject(&["user:root"]);
    assert!(access.can(&root, "x:y", Some("a")).allowed);
    assert!(access.can(&root, "x:y", Some("b")).allowed);
    let holders = access.holders("x:y", None);
    assert_eq!(holders["b"], BTreeSet::from([Holder::User("root".into())]));
    assert_eq!(
        access.apps().collect::<Vec<_>>(),
        ["a", "b"],
        "`*` is no app of its own"
    );
}

#[test]
fn a_suspended_organization_still_grants_its_members_roles() {
    // Suspension (`gitops: false`) stops reconciliation, not the rows.
    let access = index(vec![
        permit("a", "p1", "x:y", &[], &["user-svc:org:frozen:user"]),
        org("a", "frozen", &[(Some("u1"), None, "user")]),
    ]);
    assert!(access.can(&subject(&["user:u1"]), "x:y", None).allowed);
}

#[test]
fn subjects_parse_and_refuse_what_is_not_one_person() {
    assert_eq!(
        subject(&["user:u", "contact:c@d"]).to_string(),
        "user:u + contact:c@d"
    );
    for bad in [
        &["bob"][..],
        &["user:"],
        &["user:a", "user:b"],
        &["contact:*@d"],
        &[],
    ] {
        assert!(Subject::parse(bad.iter().copied()).is_err(), "{bad:?}");
    }
    assert_eq!(
        Holder::parse("contact:*@D.com"),
        Some(Holder::Domain("d.com".into()))
    );
    assert_eq!(Holder::parse("contact:*"), Some(Holder::EveryContact));
    // The separate fields of a form or query string, checked the same way.
    assert_eq!(
        Subject::of(Some("u"), Some("c@d"), None),
        Ok(subject(&["user:u", "contact:c@d"]))
    );
    assert_eq!(Subject::of(None, None, None), Err(SubjectError::None));
    assert!(matches!(
        Subject::of(None, Some("*@d"), None),
        Err(SubjectError::Pattern(_))
    ));
    assert_eq!(Holder::parse("group:x"), None);
}

// ---- the indexed evaluator against the definition, on random small states ----

/// The model read literally from DESIGN.md, with no index.
fn brute_can(objects: &[Object], who: &Subject, permission: &str, app: &str) -> bool {
    let domain = who.domain();
    let contact = who.contact_key();
    let names = |user: Option<&str>, c: Option<&str>| -> bool {
        if user.is_some() {
            return user == who.user.as_deref();
        }
        match c {
            Some("*") => who.contact.is_some(),
            Some(c) if c.starts_with("*@") => {
                domain.as_deref() == Some(c[2..].to_ascii_lowercase().as_str())
            }
            Some(c) => contact.as_deref() == Some(subject::normal_contact(c).as_str()),
            None => false,
        }
    };
    let mut roles = Vec::new();
    for object in objects {
        match object {
            Object::Enrollment(e)
                if (e.app == app || e.app == EVERY_APP)
                    && names(e.user_id.as_deref(), e.contact_id.as_deref()) =>
            {
                roles.push(e.role.to_string())
            }
            Object::Organization(o) if o.app == app => {
                for m in &o.members {
                    if names(m.user_id.as_deref(), m.contact_id.as_deref()) {
                        roles.push(member_role(&o.slug, &m.role));
                    }
                }
            }
            _ => {}
        }
    }
    objects.iter().any(|object| match object {
        Object::Permit(p) if p.app == app && p.permission_id == permission => {
            who.slug
                .as_deref()
                .is_some_and(|s| p.slugs.iter().any(|own| own == s))
                || p.roles
                    .iter()
                    .any(|pattern| roles.iter().any(|r| role_matches(pattern, r)))
        }
        _ => false,
    })
}

fn small_state() -> impl Strategy<Value = Vec<Object>> {
    prop::collection::vec(object(), 0..12)
}

/// One random object over a few apps, roles, patterns and holders (the
/// impact's property test draws its states from it too).
pub(super) fn object() -> impl Strategy<Value = Object> {
    let app = prop::sample::select(vec!["a", "b"]);
    let enrollment_app = prop::sample::select(vec!["a", "b", "*"]);
    let role = prop::sample::select(vec!["s:r1", "s:r2", "t:r1", "user-svc:org:o1:admin"]);
    let pattern = prop::sample::select(vec![
        "s:r1",
        "s:r2",
        "s:*",
        "*:r1",
        "user-svc:org:*:admin",
        "user-svc:org:o1:*",
    ]);
    let who = prop::sample::select(vec![
        (Some("u1"), None),
        (Some("u2"), None),
        (None, Some("c1@x.com")),
        (None, Some("c2@X.com")),
        (None, Some("*")),
        (None, Some("*@x.COM")),
        (None, Some("*@y.com")),
    ]);
    let permission = prop::sample::select(vec!["p:one", "p:two"]);
    let slug = prop::sample::select(vec!["svc1", "svc2"]);
    let member_role = prop::sample::select(vec!["admin", "user"]);
    prop_oneof![
        (
            app.clone(),
            permission,
            prop::collection::vec(slug, 0..2),
            prop::collection::vec(pattern, 0..3)
        )
            .prop_map(|(app, perm, slugs, roles)| permit(app, "p", perm, &slugs, &roles)),
        (enrollment_app, role, who.clone()).prop_map(|(app, role, (user, contact))| {
            Object::Enrollment(Enrollment {
                id: "e".into(),
                app: app.into(),
                role: role.into(),
                user_id: user.map(Into::into),
                contact_id: contact.map(Into::into),
            })
        }),
        (app, prop::collection::vec((who, member_role), 0..3)).prop_map(|(app, members)| {
            let members: Vec<_> = members
                .into_iter()
                .map(|((user, contact), role)| (user, contact, role))
                .collect();
            org(app, "o1", &members)
        }),
    ]
}

proptest! {
    #[test]
    fn the_index_answers_as_the_definition_does(objects in small_state()) {
        let access = index(objects.clone());
        let subjects = [
            subject(&["user:u1"]),
            subject(&["user:u2", "contact:c2@x.com"]),
            subject(&["contact:c1@X.com"]),
            subject(&["contact:z@y.com"]),
            subject(&["slug:svc1"]),
            subject(&["slug:svc2", "user:u2"]),
        ];
        for who in &subjects {
            for permission in ["p:one", "p:two"] {
                for app in ["a", "b"] {
                    let expected = brute_can(&objects, who, permission, app);
                    let decision = access.can(who, permission, Some(app));
                    prop_assert_eq!(decision.allowed, expected, "can {} {} in {}", who, permission, app);
                    // who-can agrees: some holder covers the subject exactly when it can.
                    let covered = access
                        .who_can(permission, Some(app))
                        .iter()
                        .any(|h| h.holder.covers(who));
                    prop_assert_eq!(covered, expected, "who-can {} in {} covers {}", permission, app, who);
                    // holders is who-can's set of holders.
                    let holders: BTreeSet<Holder> = access
                        .who_can(permission, Some(app))
                        .into_iter()
                        .map(|h| h.holder)
                        .collect();
                    let listed = access.holders(permission, Some(app)).remove(app).unwrap_or_default();
                    prop_assert_eq!(listed, holders, "holders of {} in {}", permission, app);
                    // access lists the permission exactly when it can.
                    let listed = access
                        .access(who, Some(app))
                        .iter()
                        .any(|p| p.permission_id == permission);
                    prop_assert_eq!(listed, expected, "access of {} in {}", who, app);
                }
            }
        }
    }
}
