//! Text metrics of a generation, for `--compare`: distinct-n, the longest repeated n-gram, and
//! how many leading tokens several sequences share (where strategies diverge; beam search
//! streams that shared prefix).

use std::collections::HashMap;

/// Unique n-grams over all n-grams of `tokens` (1.0 for fewer than n tokens).
pub fn distinct(tokens: &[u32], n: usize) -> f64 {
    if tokens.len() < n || n == 0 {
        return 1.0;
    }
    let grams: Vec<&[u32]> = tokens.windows(n).collect();
    let unique: std::collections::HashSet<&[u32]> = grams.iter().copied().collect();
    unique.len() as f64 / grams.len() as f64
}

/// The longest token n-gram that occurs at least twice (possibly overlapping): its tokens.
pub fn longest_repeat(tokens: &[u32]) -> &[u32] {
    for n in (1..tokens.len()).rev() {
        let mut seen: HashMap<&[u32], usize> = HashMap::new();
        for w in tokens.windows(n) {
            let c = seen.entry(w).or_insert(0);
            *c += 1;
            if *c == 2 {
                return w;
            }
        }
    }
    &[]
}

/// The number of leading tokens every sequence shares.
pub fn common_prefix(seqs: &[&[u32]]) -> usize {
    let Some(first) = seqs.first() else {
        return 0;
    };
    (0..first.len())
        .find(|&i| seqs.iter().any(|s| s.get(i) != Some(&first[i])))
        .unwrap_or(first.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics() {
        assert_eq!(distinct(&[1, 2, 1, 2], 1), 0.5);
        assert!((distinct(&[1, 2, 1, 2], 2) - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(longest_repeat(&[5, 1, 2, 3, 9, 1, 2, 3]), &[1, 2, 3]);
        assert_eq!(longest_repeat(&[1, 2, 3]), &[] as &[u32]);
        assert_eq!(common_prefix(&[&[1, 2, 3], &[1, 2, 4], &[1, 2]]), 2);
        let a: &[u32] = &[1, 2, 3];
        assert_eq!(common_prefix(&[a, &[1, 2, 4]]), 2);
        assert_eq!(common_prefix(&[a]), 3);
        assert_eq!(common_prefix(&[a, &a[..1]]), 1);
    }
}
