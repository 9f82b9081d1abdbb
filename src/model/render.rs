//! Renders objects as YAML (for diffs, plans and `accord export`) and the
//! unified diff between two versions of an object.

use serde_json::Value;
use similar::TextDiff;

use super::Object;

/// A block-style YAML rendering of a JSON value, keys in their given order.
pub fn to_yaml(value: &Value) -> String {
    let mut out = String::new();
    write_value(&mut out, value, 0, false);
    out
}

/// The YAML of an optional object ("" for none), as diffs show it.
pub fn object_yaml(object: Option<&Object>) -> String {
    object.map(|o| to_yaml(&o.to_json())).unwrap_or_default()
}

/// A unified diff of two renderings, with `before`/`after` headers.
pub fn unified_diff(before: &str, after: &str) -> String {
    TextDiff::from_lines(before, after)
        .unified_diff()
        .context_radius(3)
        .header("before", "after")
        .to_string()
}

pub fn object_diff(before: Option<&Object>, after: Option<&Object>) -> String {
    match (before, after) {
        // Creates and deletes are every line added or removed; written
        // directly, since a first sync renders one for every object.
        (None, Some(object)) => whole_diff(&object_yaml(Some(object)), '+'),
        (Some(object), None) => whole_diff(&object_yaml(Some(object)), '-'),
        _ => unified_diff(&object_yaml(before), &object_yaml(after)),
    }
}

/// `object_diff` of objects as their JSON: the audit log keeps no diff for
/// a create or a delete (every line of the one object), and it is made
/// again from the object when the row is read.
pub fn value_diff(before: Option<&Value>, after: Option<&Value>) -> String {
    match (before, after) {
        (None, Some(object)) => whole_diff(&to_yaml(object), '+'),
        (Some(object), None) => whole_diff(&to_yaml(object), '-'),
        (None, None) => String::new(),
        (Some(before), Some(after)) => unified_diff(&to_yaml(before), &to_yaml(after)),
    }
}

/// The unified diff of an empty text against `text` (`+`) or back (`-`).
fn whole_diff(text: &str, sign: char) -> String {
    let lines = text.lines().count();
    // The unified format omits a range's length when it is 1.
    let range = if lines == 1 {
        "1".to_owned()
    } else {
        format!("1,{lines}")
    };
    let hunk = if sign == '+' {
        format!("@@ -0,0 +{range} @@")
    } else {
        format!("@@ -{range} +0,0 @@")
    };
    let mut out = String::with_capacity(text.len() + lines + 40);
    out.push_str("--- before\n+++ after\n");
    out.push_str(&hunk);
    out.push('\n');
    for line in text.lines() {
        out.push(sign);
        out.push_str(line);
        out.push('\n');
    }
    out
}

fn write_value(out: &mut String, value: &Value, indent: usize, in_list: bool) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (i, (key, item)) in map.iter().enumerate() {
                if !(in_list && i == 0) {
                    push_indent(out, indent);
                }
                out.push_str(&scalar(key));
                out.push(':');
                write_nested(out, item, indent);
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for item in items {
                push_indent(out, indent);
                out.push_str("- ");
                if is_block(item) {
                    write_value(out, item, indent + 2, true);
                } else {
                    out.push_str(&inline(item));
                    out.push('\n');
                }
            }
        }
        other => {
            out.push_str(&inline(other));
            out.push('\n');
        }
    }
}

fn write_nested(out: &mut String, value: &Value, indent: usize) {
    if is_block(value) {
        out.push('\n');
        let child = if value.is_array() { indent } else { indent + 2 };
        write_value(out, value, child, false);
    } else {
        out.push(' ');
        out.push_str(&inline(value));
        out.push('\n');
    }
}

fn is_block(value: &Value) -> bool {
    match value {
        Value::Object(map) => !map.is_empty(),
        Value::Array(items) => !items.is_empty(),
        _ => false,
    }
}

fn push_indent(out: &mut String, indent: usize) {
    out.extend(std::iter::repeat_n(' ', indent));
}

fn inline(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => scalar(s),
        Value::Array(_) => "[]".into(),
        Value::Object(_) => "{}".into(),
    }
}

/// A string as a plain scalar when that reads back as the same string, else
/// double-quoted (a JSON string is a valid YAML scalar).
fn scalar(s: &str) -> String {
    let plain_ok = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-/@:".contains(&b))
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && !s.ends_with(':')
        && matches!(super::yaml::resolve_plain(s), super::yaml::Resolved::Str(_));
    if plain_ok {
        s.to_owned()
    } else {
        serde_json::to_string(s).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nested_values_render_as_block_yaml() {
        let value = json!({
            "slug": "acme",
            "budget": {"monthlyTokens": 10},
            "members": [{"contactId": "a@b.com", "role": "admin"}],
            "roles": ["a:b", "*"],
            "empty": [],
            "flag": "true",
        });
        assert_eq!(
            to_yaml(&value),
            "slug: acme\nbudget:\n  monthlyTokens: 10\nmembers:\n- contactId: a@b.com\n  role: admin\nroles:\n- a:b\n- \"*\"\nempty: []\nflag: \"true\"\n"
        );
    }

    #[test]
    fn rendering_reads_back_as_the_same_value() {
        let value = json!({"a": ["x: y", "#c", "12", "null", "ok-1.2"], "n": 3});
        let text = to_yaml(&value);
        let docs = super::super::yaml::load(&text, Default::default()).expect("valid");
        let root = docs[0].root.as_ref().expect("root");
        let list: Vec<&str> = root
            .get("a")
            .and_then(|n| n.as_seq())
            .expect("list")
            .iter()
            .filter_map(|n| n.as_str())
            .collect();
        assert_eq!(list, ["x: y", "#c", "12", "null", "ok-1.2"]);
    }

    #[test]
    fn a_diff_made_again_from_stored_json_is_the_diff_of_the_object() {
        let object = Object::Permit(super::super::Permit {
            id: "p1".into(),
            app: "unnamed".into(),
            permission_id: "svc:act".into(),
            slugs: vec!["a".into()],
            roles: vec!["r:x".into(), "r:y".into()],
        });
        // As the audit log stores it, and as it reads it back.
        let stored = serde_json::to_string(&object).expect("json");
        let read: Value = serde_json::from_str(&stored).expect("json");
        assert_eq!(
            value_diff(None, Some(&read)),
            object_diff(None, Some(&object))
        );
        assert_eq!(
            value_diff(Some(&read), None),
            object_diff(Some(&object), None)
        );
    }

    #[test]
    fn whole_object_diffs_match_the_general_diff() {
        for text in ["a: 1\nb:\n- x\n", "one: line\n"] {
            assert_eq!(whole_diff(text, '+'), unified_diff("", text));
            assert_eq!(whole_diff(text, '-'), unified_diff(text, ""));
        }
    }

    #[test]
    fn diff_shows_changed_lines() {
        let diff = unified_diff("a: 1\nb: 2\n", "a: 1\nb: 3\n");
        assert!(diff.contains("-b: 2\n+b: 3"), "{diff}");
        assert!(diff.starts_with("--- before\n+++ after\n"), "{diff}");
    }
}
