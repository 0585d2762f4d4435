//! Words for an unknown key: the accepted keys, or the close one that was meant.

pub(super) fn quoted(names: &[&str]) -> String {
    let q: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
    q.join(", ")
}

pub(super) fn unknown_key(key: &str, fields: &[&str]) -> String {
    let close = fields
        .iter()
        .find(|f| edit_distance(key, f) <= if f.len() <= 4 { 1 } else { 2 });
    match close {
        Some(f) => format!("unknown key `{key}`: did you mean `{f}`?"),
        None => format!("unknown key `{key}`: expected one of {}", quoted(fields)),
    }
}

/// Levenshtein distance, for "did you mean" on short keys.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            let next = (diagonal + cost).min(row[j + 1] + 1).min(row[j] + 1);
            diagonal = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::edit_distance;

    #[test]
    fn edit_distance_counts_single_edits() {
        assert_eq!(edit_distance("weigth", "weight"), 2);
        assert_eq!(edit_distance("name", "name"), 0);
        assert_eq!(edit_distance("nam", "name"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
    }
}
