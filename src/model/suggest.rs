//! "Did you mean …?": the known name closest to a misspelled one.

/// The candidate closest to `name` by edit distance (ignoring case), if it
/// is close enough to be a typo: at most a third of its length, and never
/// more than 3, edits away.
pub fn closest<'a>(name: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let lower = name.to_ascii_lowercase();
    candidates
        .iter()
        .filter(|c| **c != name)
        .map(|c| (distance(&lower, &c.to_ascii_lowercase()), *c))
        .filter(|(d, c)| *d <= (c.chars().count() / 3).clamp(1, 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Levenshtein distance, in characters.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

/// ` (did you mean `x`?)`, or nothing.
pub fn hint(name: &str, candidates: &[&str]) -> String {
    closest(name, candidates)
        .map(|c| format!(" (did you mean `{c}`?)"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_typo_finds_the_field_it_misspells() {
        let fields = ["permissionId", "slugs", "roles", "id", "app"];
        assert_eq!(closest("permisionId", &fields), Some("permissionId"));
        assert_eq!(closest("PermissionID", &fields), Some("permissionId"));
        assert_eq!(closest("rolez", &fields), Some("roles"));
        assert_eq!(closest("colour", &fields), None, "nothing close");
        assert_eq!(closest("roles", &fields), None, "not a typo");
    }
}
