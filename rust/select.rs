//! Top-k selection with a total order: larger value first, ties to the lower
//! index, NaN after every number.

use std::cmp::Ordering;

/// Order of two `(value, index)` pairs when ranking by descending value.
#[inline]
pub fn rank_desc(a: (f64, usize), b: (f64, usize)) -> Ordering {
    match (a.0.is_nan(), b.0.is_nan()) {
        (true, true) => a.1.cmp(&b.1),
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        _ => {
            b.0.partial_cmp(&a.0)
                .unwrap_or(Ordering::Equal)
                .then(a.1.cmp(&b.1))
        }
    }
}

/// Order when ranking by ascending value (nearest first); NaN last.
#[inline]
pub fn rank_asc(a: (f64, usize), b: (f64, usize)) -> Ordering {
    match (a.0.is_nan(), b.0.is_nan()) {
        (true, true) => a.1.cmp(&b.1),
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        _ => {
            a.0.partial_cmp(&b.0)
                .unwrap_or(Ordering::Equal)
                .then(a.1.cmp(&b.1))
        }
    }
}

/// The `k` best of `items` under `order`, sorted best first.
pub fn best_k(
    mut items: Vec<(f64, usize)>,
    k: usize,
    order: fn((f64, usize), (f64, usize)) -> Ordering,
) -> Vec<(f64, usize)> {
    if k == 0 {
        return Vec::new();
    }
    if items.len() > k {
        items.select_nth_unstable_by(k - 1, |a, b| order(*a, *b));
        items.truncate(k);
    }
    items.sort_unstable_by(|a, b| order(*a, *b));
    items
}

/// The `k` largest of `values` (index `offset + j` for `values[j]`), best first.
///
/// Small `k` keeps a sorted run of the best seen so far; a value replaces the
/// worst only when strictly better, so with values scanned in index order a tie
/// goes to the lower index.
pub fn top_k_desc<T: crate::real::Real>(
    values: &[T],
    offset: usize,
    k: usize,
) -> Vec<(f64, usize)> {
    let k = k.min(values.len());
    if k == 0 {
        return Vec::new();
    }
    if k > 32 {
        let items = values
            .iter()
            .enumerate()
            .map(|(j, v)| (v.to_f64(), offset + j))
            .collect();
        return best_k(items, k, rank_desc);
    }
    let mut best: Vec<(f64, usize)> = Vec::with_capacity(k + 1);
    for (j, v) in values.iter().enumerate() {
        let item = (v.to_f64(), offset + j);
        if best.len() == k {
            // Most values fall below the k-th kept one: one comparison settles
            // them (false for NaN and ties, which take the full ranking).
            if item.0 < best[k - 1].0 || rank_desc(item, best[k - 1]) != Ordering::Less {
                continue;
            }
            best.pop();
        }
        let pos = best.partition_point(|b| rank_desc(*b, item) == Ordering::Less);
        best.insert(pos, item);
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ties_go_to_the_lower_index() {
        let v = [1.0f32, 3.0, 3.0, 2.0, 3.0];
        assert_eq!(top_k_desc(&v, 10, 2), vec![(3.0, 11), (3.0, 12)]);
        let many: Vec<f32> = (0..100).map(|i| (i % 3) as f32).collect();
        let small = top_k_desc(&many, 0, 5);
        let large = top_k_desc(&many, 0, 40);
        assert_eq!(small, large[..5].to_vec());
        assert_eq!(
            small.iter().map(|p| p.1).collect::<Vec<_>>(),
            vec![2, 5, 8, 11, 14]
        );
    }

    #[test]
    fn nan_ranks_last() {
        let v = [f64::NAN, 1.0, f64::NAN, 0.5];
        assert_eq!(
            top_k_desc(&v, 0, 3).iter().map(|p| p.1).collect::<Vec<_>>(),
            vec![1, 3, 0]
        );
    }
}
