//! The CRDs: the committed files are what `accord crds` prints, and the
//! schema's patterns accept exactly what the parser accepts.

use std::process::Command;

use accord::model::validate::{self, patterns};
use regex::Regex;

#[test]
fn committed_crds_match_the_generated_ones() {
    let output = Command::new(env!("CARGO_BIN_EXE_accord"))
        .arg("crds")
        .output()
        .expect("accord runs");
    assert!(output.status.success());
    let generated = String::from_utf8(output.stdout).expect("utf-8");
    let committed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/crds/accord.dev.yaml"))
            .expect("crds/accord.dev.yaml exists");
    assert!(
        generated == committed,
        "crds/accord.dev.yaml is stale: run `cargo run -- crds > crds/accord.dev.yaml` \
         (and copy it to charts/accord/crds/)"
    );
    for kind in ["Organization", "Permit", "Enrollment"] {
        assert!(
            generated.contains(&format!("kind: {kind}\n")),
            "{kind} missing"
        );
    }
    assert_eq!(generated.matches("subresources:\n").count(), 3);
    assert!(
        generated.contains("oneOf:\n"),
        "userId/contactId oneOf missing"
    );
}

/// Each rule with values it must accept and values it must refuse; the
/// regular expression in the CRD and the parser's function must agree on all.
#[test]
fn schema_patterns_agree_with_the_parser_rules() {
    type Rule = fn(&str) -> Result<(), String>;
    let cases: &[(&str, &str, Rule, &[&str])] = &[
        (
            "id",
            patterns::ID,
            validate::id,
            &[
                "a",
                "A.b_c-d",
                "9",
                "-a",
                ".a",
                "",
                "a b",
                "a/b",
                &"x".repeat(128),
                &"x".repeat(129),
            ],
        ),
        (
            "app",
            patterns::APP,
            validate::app,
            &[
                "unnamed",
                "prod.example.com",
                "host:8080",
                "-x",
                "",
                "a b",
                "a/b",
            ],
        ),
        (
            "enrollment app",
            patterns::ENROLLMENT_APP,
            validate::enrollment_app,
            &[
                "*",
                "unnamed",
                "prod.example.com",
                "**",
                "*.example.com",
                "-x",
                "",
            ],
        ),
        (
            "permission",
            patterns::PERMISSION,
            validate::permission,
            &[
                "svc:act",
                "svc:ent:act",
                "svc:*",
                "svc:ent:*",
                "svc",
                "a:b:c:d",
                "*:act",
                "svc:*:act",
                "svc:",
                ":act",
                "svc:-x",
                "s_v.c-1:a",
            ],
        ),
        (
            "permit role",
            patterns::PERMIT_ROLE,
            validate::permit_role,
            &[
                "a:b",
                "user-svc:org:*:admin",
                "*:*",
                "a",
                "a::b",
                "a:b c",
                "a@b:c.d",
                ":a",
            ],
        ),
        (
            "enrollment role",
            patterns::ENROLLMENT_ROLE,
            validate::enrollment_role,
            &["a:b", "user-svc:org:acme:admin", "a:*", "a", "a::b", "-a:b"],
        ),
        (
            "userId",
            patterns::USER_ID,
            validate::user_id,
            &["u1", "user:42", "a@b", "-u", "", "a b"],
        ),
        (
            "contactId",
            patterns::CONTACT_ID,
            validate::contact_id,
            &[
                "*",
                "*@example.com",
                "a@example.com",
                "a.b+c@ex-ample.co",
                "a@b",
                "@b",
                "a@",
                "a@.b",
                "a@b.",
                "a*@b",
                "a@b@c",
                "a b@c",
                "*@",
                "**",
                "a@b_c",
                "x!#$%&'@y",
            ],
        ),
        (
            "organization slug",
            patterns::ORG_SLUG,
            validate::org_slug,
            &[
                "acme",
                "a-1",
                "a",
                "-a",
                "a-",
                "A",
                &"a".repeat(63),
                &"a".repeat(64),
            ],
        ),
        (
            "member role",
            patterns::MEMBER_ROLE,
            validate::member_role,
            &["admin", "user", "a.b_c-d", "-a", "a:b", &"a".repeat(65)],
        ),
        (
            "model name",
            patterns::MODEL_NAME,
            validate::model_name,
            &["gpt-4o", "meta/llama:3", "-x", "a b"],
        ),
    ];
    for (name, pattern, rule, values) in cases {
        let re = Regex::new(pattern).expect("pattern compiles");
        for value in *values {
            assert_eq!(
                re.is_match(value),
                rule(value).is_ok(),
                "{name}: the CRD pattern and the parser disagree on {value:?}"
            );
        }
    }
}
