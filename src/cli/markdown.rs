//! A change preview as a pull-request comment (`accord diff` and
//! `accord plan --output markdown`), and the sentences both it and the text
//! output use for access gained and lost. Pure: strings in, a string out.
//!
//! Everything a file or a database supplies (ids, names, paths, contacts)
//! is escaped for Markdown and HTML and shown inside `<code>`, where
//! GitHub neither links mentions nor renders emoji. The comment stays under
//! GitHub's size limit: lists are capped with a count of what was left out,
//! and each section stops where its share of the budget ends.

use std::fmt::Write as _;

use crate::access::impact::{Direction, Impact, RoleImpact, Warning};
use crate::access::{GrantRef, Holder, Path, Place, EVERY_APP};
use crate::model::validate::escape_controls;

/// GitHub refuses a comment longer than this many characters.
pub const GITHUB_LIMIT: usize = 65_536;
/// What a report may use, in bytes (never fewer than characters): room
/// under the limit for what closes it.
const BUDGET: usize = GITHUB_LIMIT - 5_536;
/// Kept free for each section still to come, so every section at least
/// says what it holds.
const SECTION_RESERVE: usize = 600;

const WARNINGS_SHOWN: usize = 10;
const PERMISSIONS_SHOWN: usize = 60;
const HOLDERS_SHOWN: usize = 10;
const ROLES_SHOWN: usize = 40;
/// How many entries of a section are shown at most.
pub const ENTRIES_SHOWN: usize = 150;
/// How many entries of a section show their diff (callers make no more).
pub const DIFFS_SHOWN: usize = 40;
const DIFF_LINES_SHOWN: usize = 40;

/// `text` safe anywhere in Markdown or HTML: HTML's special characters as
/// entities, and the characters Markdown gives a meaning (emphasis, code,
/// links, tables, strike-through, math, escapes) as numeric references,
/// which Markdown shows as the characters themselves. Control characters
/// are written as escapes, so a value stays on its line.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for c in escape_controls(text).chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\\' | '`' | '*' | '_' | '[' | ']' | '|' | '~' | '$' | '#' | '!' => {
                let _ = write!(out, "&#{};", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// A value as inline code.
pub fn code(text: &str) -> String {
    format!("<code>{}</code>", escape(text))
}

/// A count with thousands separated: `1,234`.
pub fn count(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// `n` and the noun, singular or plural.
pub fn counted(n: usize, one: &str, many: &str) -> String {
    format!("{} {}", count(n), if n == 1 { one } else { many })
}

/// A fenced code block that nothing inside can close: the fence is longer
/// than any run of backticks in `body`.
pub fn fenced(body: &str, info: &str) -> String {
    let mut longest = 0;
    let mut run = 0;
    for c in body.chars() {
        run = if c == '`' { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    let fence = "`".repeat((longest + 1).max(3));
    let mut out = format!("{fence}{info}\n{body}");
    if !body.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(&fence);
    out.push('\n');
    out
}

/// How values are quoted in a sentence: as inline code in Markdown, in
/// backticks in a terminal.
#[derive(Clone, Copy)]
pub struct Words {
    quote: fn(&str) -> String,
}

fn backticks(text: &str) -> String {
    format!("`{}`", escape_controls(text))
}

/// Sentences for a terminal.
pub const TEXT: Words = Words { quote: backticks };
/// Sentences for Markdown.
pub const MARKDOWN: Words = Words { quote: code };

impl Words {
    pub fn quote(&self, text: &str) -> String {
        (self.quote)(text)
    }

    /// `contact `*@acme.example.com` (every contact at acme.example.com)`.
    pub fn holder(&self, holder: &Holder) -> String {
        let q = |text: &str| self.quote(text);
        match holder {
            Holder::User(user) => format!("user {}", q(user)),
            Holder::Contact(contact) => format!("contact {}", q(contact)),
            Holder::EveryContact => format!("contact {} (every contact)", q("*")),
            Holder::Domain(domain) => format!(
                "contact {} (every contact at {})",
                q(&format!("*@{domain}")),
                q(domain)
            ),
            Holder::Slug(slug) => format!("slug {}", q(slug)),
        }
    }

    pub fn place(&self, place: &Place) -> String {
        match place {
            Place::Declared(origin) => self.quote(&origin.to_string()),
            Place::Row(key) => format!(
                "database row {}",
                self.quote(&format!("{} {}/{}", key.kind, key.app, key.id))
            ),
        }
    }

    /// What grants a role: `enrollment `e1`, `file:3:1``.
    pub fn grant(&self, grant: &GrantRef) -> String {
        let what = match &grant.member_role {
            Some(role) => format!(
                "member of organization {} as {}",
                self.quote(&grant.id),
                self.quote(role)
            ),
            None => format!("enrollment {}", self.quote(&grant.id)),
        };
        let everywhere = if grant.app == EVERY_APP {
            " in every app"
        } else {
            ""
        };
        format!("{what}{everywhere}, {}", self.place(&grant.place))
    }

    /// How a permission is held: through a role (and what grants it), or
    /// as a slug, and the permit.
    pub fn how(&self, path: &Path) -> String {
        let permit = format!(
            "permit {}, {}",
            self.quote(&path.permit.id),
            self.place(&path.permit.place)
        );
        match (&path.grant, &path.slug) {
            (Some(grant), _) => {
                let pattern = match &path.pattern {
                    Some(pattern) if pattern != &grant.role => {
                        format!(" matching {}", self.quote(pattern))
                    }
                    _ => String::new(),
                };
                format!(
                    "through role {}{pattern} ({}; {permit})",
                    self.quote(&grant.role),
                    self.grant(grant)
                )
            }
            (None, Some(_)) => format!("as a slug named by {permit}"),
            (None, None) => format!("through {permit}"),
        }
    }

    fn ways(&self, paths: &[Path]) -> String {
        let Some(first) = paths.first() else {
            return String::new();
        };
        let more = paths.len() - 1;
        let also = if more > 0 {
            format!(" (and {})", counted(more, "other way", "other ways"))
        } else {
            String::new()
        };
        format!(" {}{also}", self.how(first))
    }

    /// `contact `*@acme.example.com` … gains `payment-svc:refund` in app
    /// `unnamed` through role `payment-svc:processor` (…)`.
    pub fn holder_change(
        &self,
        app: &str,
        permission: &str,
        holder: &Holder,
        paths: &[Path],
        direction: Direction,
    ) -> String {
        let verb = match direction {
            Direction::Gained => "gains",
            Direction::Lost => "loses",
        };
        let held = match direction {
            Direction::Gained => "",
            Direction::Lost => ", held",
        };
        format!(
            "{} {verb} {} in app {}{held}{}",
            self.holder(holder),
            self.quote(permission),
            self.quote(app),
            self.ways(paths)
        )
    }

    pub fn role_change(&self, role: &RoleImpact) -> String {
        let verb = match role.change {
            Direction::Gained => "gains",
            Direction::Lost => "loses",
        };
        format!(
            "{} {verb} role {} {} ({})",
            self.holder(&role.holder),
            self.quote(&role.role),
            self.app(&role.app),
            self.grant(&role.grant)
        )
    }

    fn app(&self, app: &str) -> String {
        if app == EVERY_APP {
            "in every app".to_owned()
        } else {
            format!("in app {}", self.quote(app))
        }
    }

    pub fn warning(&self, warning: &Warning) -> String {
        match warning {
            Warning::Permission {
                holder,
                app,
                permission_id,
                role,
            } => {
                let how = role
                    .as_ref()
                    .map(|role| format!(" through role {}", self.quote(role)))
                    .unwrap_or_default();
                format!(
                    "{} gains {} in app {}{how}",
                    self.holder(holder),
                    self.quote(permission_id),
                    self.quote(app)
                )
            }
            Warning::Role { holder, app, role } => format!(
                "{} gains the admin-like role {} {}",
                self.holder(holder),
                self.quote(role),
                self.app(app)
            ),
        }
    }

    /// The warnings, a line each, with the permissions one pattern gains in
    /// one app on one line: a thousand permits granted to `*@domain` are
    /// one thing to review.
    pub fn warnings(&self, warnings: &[Warning]) -> Vec<String> {
        const NAMED: usize = 3;
        let mut groups: Vec<(&Warning, Vec<&str>)> = Vec::new();
        for warning in warnings {
            let same = |w: &Warning| match (w, warning) {
                (
                    Warning::Permission { holder, app, .. },
                    Warning::Permission {
                        holder: h, app: a, ..
                    },
                ) => holder == h && app == a,
                _ => false,
            };
            match (groups.iter_mut().find(|(w, _)| same(w)), warning) {
                (Some((_, permissions)), Warning::Permission { permission_id, .. }) => {
                    permissions.push(permission_id)
                }
                (_, Warning::Permission { permission_id, .. }) => {
                    groups.push((warning, vec![permission_id]))
                }
                _ => groups.push((warning, Vec::new())),
            }
        }
        groups
            .into_iter()
            .map(|(warning, permissions)| match warning {
                Warning::Permission { holder, app, .. } if permissions.len() > 1 => {
                    let named: Vec<String> = permissions
                        .iter()
                        .take(NAMED)
                        .map(|p| self.quote(p))
                        .collect();
                    let more = if permissions.len() > NAMED {
                        format!(" and {} more", count(permissions.len() - NAMED))
                    } else {
                        String::new()
                    };
                    format!(
                        "{} gains {} in app {}: {}{more}",
                        self.holder(holder),
                        counted(permissions.len(), "permission", "permissions"),
                        self.quote(app),
                        named.join(", ")
                    )
                }
                warning => self.warning(warning),
            })
            .collect()
    }
}

/// One object of a preview: what happens to it, where it is declared, and
/// its diff.
#[derive(Clone, Debug)]
pub struct Entry {
    /// `create`, `update`, `delete`, `drift`, `conflict`, `suspended`.
    pub action: &'static str,
    pub kind: &'static str,
    pub app: String,
    pub id: String,
    /// `file:line:col`, or a database row.
    pub place: Option<Place>,
    pub note: String,
    pub fields: Vec<String>,
    /// A unified diff, before → after; empty for none.
    pub diff: String,
}

/// A titled group of entries, collapsed.
pub struct Section {
    pub title: &'static str,
    pub entries: Vec<Entry>,
}

/// A preview to render.
pub struct Report<'a> {
    /// The heading, Markdown (values in it already escaped).
    pub title: String,
    /// Lines under the heading, Markdown.
    pub lines: Vec<String>,
    /// The counts of the summary, in order: `(n, "to create")`.
    pub counts: Vec<(usize, &'static str)>,
    /// The access impact; `None` when it was not computed.
    pub impact: Option<&'a Impact>,
    /// Said with the access impact (what it assumes or leaves out).
    pub impact_notes: Vec<String>,
    pub sections: Vec<Section>,
}

/// The actions in the order a summary names them.
const ACTIONS: [&str; 6] = [
    "create",
    "update",
    "delete",
    "drift",
    "conflict",
    "suspended",
];

fn symbol(action: &str) -> &'static str {
    match action {
        "create" => "➕",
        "update" => "✏️",
        "delete" => "➖",
        "drift" => "⚠️",
        "conflict" => "⛔",
        _ => "⏸️",
    }
}

/// The comment: the summary first (counts, then any warning), then the
/// access impact and each section of entries, collapsed.
pub fn render(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "### {}\n", report.title);
    for line in &report.lines {
        let _ = writeln!(out, "{line}");
    }
    if !report.lines.is_empty() {
        out.push('\n');
    }
    let objects: Vec<String> = report
        .counts
        .iter()
        .map(|(n, what)| format!("**{}** {what}", count(*n)))
        .collect();
    let _ = writeln!(out, "- **Objects:** {}", objects.join(" · "));
    if let Some(impact) = report.impact {
        let _ = writeln!(out, "- **Access:** {}", access_summary(impact));
        let warnings = MARKDOWN.warnings(&impact.warnings());
        if !warnings.is_empty() {
            let _ = writeln!(
                out,
                "\n> [!WARNING]\n> ⚠️ **Patterns of contacts gain access:** review who that lets in."
            );
            for warning in warnings.iter().take(WARNINGS_SHOWN) {
                let _ = writeln!(out, "> - ⚠️ {warning}");
            }
            if warnings.len() > WARNINGS_SHOWN {
                let _ = writeln!(
                    out,
                    "> - … and {} more",
                    count(warnings.len() - WARNINGS_SHOWN)
                );
            }
        }
    } else {
        let _ = writeln!(out, "- **Access:** not computed");
    }
    out.push('\n');

    let mut to_come = report
        .sections
        .iter()
        .filter(|s| !s.entries.is_empty())
        .count();
    if let Some(impact) = report.impact {
        if !impact.is_empty() {
            let end = share(out.len(), to_come);
            impact_section(&mut out, impact, &report.impact_notes, end);
        }
    }
    for section in report.sections.iter().filter(|s| !s.entries.is_empty()) {
        to_come -= 1;
        let end = share(out.len(), to_come);
        entries_section(&mut out, section, end);
    }
    out
}

/// Where a section must end, written from `at` with `after` sections to
/// come: the access impact first, and no section takes more than two
/// thirds of what is left while others wait, so each shows something.
fn share(at: usize, after: usize) -> usize {
    let end = BUDGET.saturating_sub(after * SECTION_RESERVE);
    if after == 0 {
        end
    } else {
        end.min(at + BUDGET.saturating_sub(at) * 2 / 3)
    }
}

fn access_summary(impact: &Impact) -> String {
    if impact.is_empty() {
        return "no permission or role changes hands".to_owned();
    }
    let mut parts = vec![
        format!(
            "**{}** gaining holders",
            counted(impact.gaining(), "permission", "permissions")
        ),
        format!(
            "**{}** losing holders",
            counted(impact.losing(), "permission", "permissions")
        ),
    ];
    if !impact.roles.is_empty() {
        parts.push(format!(
            "**{}** gained or lost",
            counted(impact.roles.len(), "role grant", "role grants")
        ));
    }
    parts.join(" · ")
}

/// Appends `item` when it fits before `end`; false when it does not.
fn push_within(out: &mut String, item: &str, end: usize) -> bool {
    if out.len() + item.len() > end {
        return false;
    }
    out.push_str(item);
    true
}

fn more_line(out: &mut String, left: usize, prefix: &str) {
    if left > 0 {
        let _ = writeln!(out, "{prefix}… and {} more", count(left));
    }
}

fn impact_section(out: &mut String, impact: &Impact, notes: &[String], end: usize) {
    let _ = writeln!(
        out,
        "<details><summary><b>Access impact</b>: {}, {}</summary>\n",
        counted(impact.permissions.len(), "permission", "permissions"),
        counted(impact.roles.len(), "role grant", "role grants")
    );
    for note in notes {
        let _ = writeln!(out, "{note}\n");
    }
    // The closing tag and a last "and more" line are kept room for, and
    // the role grants (few, and the cause of most of the rest) a quarter.
    let end = end.saturating_sub(200);
    let roles = roles_block(impact, end.saturating_sub(out.len()) / 4);
    let end = end.saturating_sub(roles.len());
    let mut shown = 0;
    for permission in &impact.permissions {
        if shown == PERMISSIONS_SHOWN {
            break;
        }
        let mut item = format!(
            "**{}** in app {}\n\n",
            code(&permission.permission_id),
            code(&permission.app)
        );
        for (holders, direction, mark) in [
            (&permission.gained, Direction::Gained, "➕"),
            (&permission.lost, Direction::Lost, "➖"),
        ] {
            let shown = &holders[..holders.len().min(HOLDERS_SHOWN)];
            let ways = impact.ways(permission, direction, shown);
            for holder in shown {
                let sentence = MARKDOWN.holder_change(
                    &permission.app,
                    &permission.permission_id,
                    holder,
                    ways.get(holder).map_or(&[][..], Vec::as_slice),
                    direction,
                );
                let _ = writeln!(item, "- {mark} {sentence}");
            }
            let changes = holders;
            more_line(&mut item, changes.len().saturating_sub(HOLDERS_SHOWN), "- ");
        }
        item.push('\n');
        if !push_within(out, &item, end) {
            break;
        }
        shown += 1;
    }
    more_line(out, impact.permissions.len() - shown, "");
    if shown < impact.permissions.len() {
        out.push('\n');
    }
    out.push_str(&roles);
    out.push_str("</details>\n\n");
}

/// The role grants gained and lost, as long as `len` allows.
fn roles_block(impact: &Impact, len: usize) -> String {
    let mut out = String::new();
    if impact.roles.is_empty() {
        return out;
    }
    out.push_str("**Role grants**\n\n");
    let mut shown = 0;
    for role in impact.roles.iter().take(ROLES_SHOWN) {
        let mark = match role.change {
            Direction::Gained => "➕",
            Direction::Lost => "➖",
        };
        let line = format!("- {mark} {}\n", MARKDOWN.role_change(role));
        if !push_within(&mut out, &line, len) {
            break;
        }
        shown += 1;
    }
    more_line(&mut out, impact.roles.len() - shown, "- ");
    out.push('\n');
    out
}

fn entries_section(out: &mut String, section: &Section, end: usize) {
    let entries = &section.entries;
    let mut actions: Vec<(&str, usize)> = Vec::new();
    for entry in entries {
        match actions.iter_mut().find(|(a, _)| *a == entry.action) {
            Some((_, n)) => *n += 1,
            None => actions.push((entry.action, 1)),
        }
    }
    actions.sort_by_key(|(action, _)| ACTIONS.iter().position(|a| a == action));
    let by_action: Vec<String> = actions
        .iter()
        .map(|(action, n)| format!("{} {action}", count(*n)))
        .collect();
    let _ = writeln!(
        out,
        "<details><summary><b>{}</b>: {}</summary>\n",
        section.title,
        by_action.join(", ")
    );
    let end = end.saturating_sub(200);
    let mut shown = 0;
    for (n, entry) in entries.iter().enumerate().take(ENTRIES_SHOWN) {
        let item = entry_markdown(entry, n < DIFFS_SHOWN);
        if !push_within(out, &item, end) {
            // A headline alone may still fit where its diff did not.
            let short = entry_markdown(entry, false);
            if !push_within(out, &short, end) {
                break;
            }
        }
        shown += 1;
    }
    more_line(out, entries.len() - shown, "");
    if shown < entries.len() {
        out.push('\n');
    }
    out.push_str("</details>\n\n");
}

fn entry_markdown(entry: &Entry, with_diff: bool) -> String {
    let mut out = format!(
        "{} **{}** {} {} / {}",
        symbol(entry.action),
        entry.action,
        entry.kind,
        code(&entry.app),
        code(&entry.id)
    );
    if let Some(place) = &entry.place {
        let _ = write!(out, " · {}", MARKDOWN.place(place));
    }
    if !entry.note.is_empty() {
        let _ = write!(out, " · {}", escape(&entry.note));
    }
    if !entry.fields.is_empty() && entry.action != "create" {
        let fields: Vec<String> = entry.fields.iter().map(|f| code(f)).collect();
        let _ = write!(out, " · fields: {}", fields.join(", "));
    }
    out.push_str("\n\n");
    if with_diff && !entry.diff.is_empty() {
        let lines: Vec<&str> = entry.diff.lines().collect();
        let shown = lines.len().min(DIFF_LINES_SHOWN);
        let mut body = lines[..shown].join("\n");
        body.push('\n');
        out.push_str(&fenced(&body, "diff"));
        if lines.len() > shown {
            let _ = writeln!(
                out,
                "… and {} more",
                counted(lines.len() - shown, "line", "lines")
            );
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_text_is_shown_as_itself() {
        let hostile = "a|b<script>alert(1)</script>`x`*y*_z_[l](u)~~s~~$m$\\#!";
        let escaped = escape(hostile);
        let bare = escaped.replace("&#", "");
        for forbidden in [
            '<', '>', '|', '`', '*', '_', '[', ']', '~', '$', '\\', '#', '!',
        ] {
            assert!(!bare.contains(forbidden), "{forbidden} in {escaped}");
        }
        assert!(escaped.contains("&lt;script&gt;"), "{escaped}");
        assert_eq!(
            code("a\nb"),
            "<code>a&#92;nb</code>",
            "one line, shown as `a\\nb`"
        );
    }

    #[test]
    fn counts_have_thousands_separated() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1_234), "1,234");
        assert_eq!(count(1_234_567), "1,234,567");
    }

    #[test]
    fn a_fence_outlasts_the_backticks_inside() {
        let block = fenced("+name: \"````\"\n", "diff");
        assert!(block.starts_with("`````diff\n"), "{block}");
        assert!(block.ends_with("\n`````\n"), "{block}");
    }

    fn entry(n: usize) -> Entry {
        Entry {
            action: "create",
            kind: "Permit",
            app: "unnamed".into(),
            id: format!("permit-{n}"),
            place: None,
            note: String::new(),
            fields: vec![],
            diff: format!(
                "--- before\n+++ after\n@@ -0,0 +1,2 @@\n+id: permit-{n}\n+permissionId: s:x\n"
            ),
        }
    }

    #[test]
    fn a_big_report_stays_under_the_limit_and_counts_what_it_leaves_out() {
        let report = Report {
            title: "accord diff".into(),
            lines: vec![],
            counts: vec![(5_000, "to create")],
            impact: None,
            impact_notes: vec![],
            sections: vec![Section {
                title: "Object changes",
                entries: (0..5_000).map(entry).collect(),
            }],
        };
        let text = render(&report);
        assert!(text.chars().count() < GITHUB_LIMIT, "{}", text.len());
        assert!(text.contains("… and 4,850 more"), "{text}");
        assert!(text.trim_end().ends_with("</details>"));
        let summary = text.find("**Objects:**").expect("summary");
        assert!(summary < text.find("<details>").expect("details"));
    }
}
