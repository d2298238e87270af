//! Deterministic shards, cut the same way on every runner.
//!
//! CI runs each shard on a runner of its own, with a cache of its own, one
//! shard after another or all at once; so the cut depends on nothing but the
//! selected targets' names and the shard count. (A cost one runner knows and
//! another does not, such as a compile count from its cache, leaves targets
//! in no shard or in two.) Targets are ordered by a hash of their name, so
//! each shard is an even sample of the matrix (AVR and ARM boards, small and
//! large, in the proportions of the whole: shards cost alike in
//! expectation), and each shard is a run of that order with equal counts
//! (±1): a target added or removed moves at most one target across each
//! boundary, so a shard's cache from the night before still holds nearly
//! all of its work.

/// `--shard I/N`, 1-based as CI matrices count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Shard {
    pub fn parse(s: &str) -> Result<Shard, String> {
        let (i, n) = s
            .split_once('/')
            .ok_or_else(|| format!("--shard {s}: expected I/N, e.g. 1/4"))?;
        let index: usize = i
            .trim()
            .parse()
            .map_err(|_| format!("--shard {s}: {i:?} is not a number"))?;
        let count: usize = n
            .trim()
            .parse()
            .map_err(|_| format!("--shard {s}: {n:?} is not a number"))?;
        if count == 0 || index == 0 || index > count {
            return Err(format!("--shard {s}: expected 1 <= I <= N"));
        }
        Ok(Shard { index, count })
    }
}

/// For each of `names`, the shard (0-based) it belongs to.
pub fn assign(names: &[String], shards: usize) -> Vec<usize> {
    let shards = shards.max(1);
    let mut order: Vec<usize> = (0..names.len()).collect();
    order.sort_by_cached_key(|&i| (keyfab_cas::Digest::of(names[i].as_bytes()), &names[i]));
    let mut out = vec![0; names.len()];
    for (position, i) in order.into_iter().enumerate() {
        out[i] = position * shards / names.len();
    }
    out
}

/// The indices of the targets in `shard`, in the order of `names`.
pub fn select(names: &[String], shard: Shard) -> Vec<usize> {
    assign(names, shard.count)
        .into_iter()
        .enumerate()
        .filter(|&(_, s)| s == shard.index - 1)
        .map(|(i, _)| i)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n)
            .map(|i| format!("vendor{}/kb{i:03}:default", i % 7))
            .collect()
    }

    #[test]
    fn shards_partition_with_equal_counts() {
        let names = names(203);
        for count in [1, 2, 4, 7, 40, 203, 250] {
            let mut seen = vec![0; names.len()];
            let mut sizes = Vec::new();
            for index in 1..=count {
                let picked = select(&names, Shard { index, count });
                assert!(picked.windows(2).all(|w| w[0] < w[1]), "in name order");
                sizes.push(picked.len());
                for j in picked {
                    seen[j] += 1;
                }
            }
            assert!(seen.iter().all(|&n| n == 1), "{count} shards");
            let (min, max) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
            assert!(max - min <= 1, "{count} shards: {sizes:?}");
        }
    }

    #[test]
    fn the_cut_depends_on_the_names_alone() {
        let names = names(120);
        let mut shuffled = names.clone();
        shuffled.reverse();
        let by_name = |names: &[String]| -> Vec<(String, usize)> {
            let mut v: Vec<_> = names.iter().cloned().zip(assign(names, 5)).collect();
            v.sort();
            v
        };
        assert_eq!(by_name(&names), by_name(&shuffled));
        // Not runs of the name order: a vendor's boards spread over shards.
        let first = assign(&names, 5);
        let vendor0: std::collections::BTreeSet<_> = (0..names.len())
            .filter(|i| i % 7 == 0)
            .map(|i| first[i])
            .collect();
        assert_eq!(vendor0.len(), 5, "{vendor0:?}");
    }

    #[test]
    fn a_new_target_moves_few_others() {
        let names = names(400);
        let before = assign(&names, 10);
        for added in ["aaa/new:default", "mmm/new:default", "zzz/new:default"] {
            let mut more = names.clone();
            more.push(added.to_string());
            let after = assign(&more, 10);
            let moved = (0..names.len()).filter(|&i| before[i] != after[i]).count();
            assert!(moved <= 10, "{added}: {moved} of 400 moved");
        }
    }

    #[test]
    fn parse() {
        assert_eq!(Shard::parse("2/5"), Ok(Shard { index: 2, count: 5 }));
        for bad in ["0/3", "4/3", "1", "a/b", "1/0"] {
            assert!(Shard::parse(bad).is_err(), "{bad}");
        }
    }
}
