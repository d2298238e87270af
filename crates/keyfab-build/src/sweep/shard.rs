//! Deterministic shards balanced by expected cost.
//!
//! Every shard runner computes the same assignment from the same target list
//! and costs: targets in decreasing cost (ties by name) go one by one to the
//! least loaded shard (ties to the lowest index) — the LPT heuristic, within
//! 4/3 of the optimum. Costs come from the cache (the compile count of the
//! target's last plan), else a constant.

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

/// The cost assumed for a target never planned before.
pub const DEFAULT_COST: u64 = 30;

/// For each of `costs` (one per target, in the order of `names`), the shard
/// (0-based) it belongs to.
pub fn assign(names: &[String], costs: &[u64], shards: usize) -> Vec<usize> {
    assert_eq!(names.len(), costs.len());
    let shards = shards.max(1);
    let mut order: Vec<usize> = (0..names.len()).collect();
    order.sort_by(|&a, &b| {
        costs[b]
            .cmp(&costs[a])
            .then_with(|| names[a].cmp(&names[b]))
    });
    let mut load = vec![0u64; shards];
    let mut out = vec![0; names.len()];
    for i in order {
        let (s, _) = load
            .iter()
            .enumerate()
            .min_by_key(|&(s, l)| (*l, s))
            .expect("at least one shard");
        out[i] = s;
        load[s] += costs[i].max(1);
    }
    out
}

/// The indices of the targets in `shard`.
pub fn select(names: &[String], costs: &[u64], shard: Shard) -> Vec<usize> {
    assign(names, costs, shard.count)
        .into_iter()
        .enumerate()
        .filter(|&(_, s)| s == shard.index - 1)
        .map(|(i, _)| i)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_partition_and_balance() {
        let names: Vec<String> = (0..50).map(|i| format!("kb{i:02}")).collect();
        let costs: Vec<u64> = (0..50).map(|i| (i * 7 % 13 + 1) as u64).collect();
        let mut seen = vec![0; names.len()];
        let mut loads = Vec::new();
        for i in 1..=4 {
            let picked = select(&names, &costs, Shard { index: i, count: 4 });
            loads.push(picked.iter().map(|&j| costs[j]).sum::<u64>());
            for j in picked {
                seen[j] += 1;
            }
        }
        assert!(seen.iter().all(|&n| n == 1));
        let (min, max) = (loads.iter().min().unwrap(), loads.iter().max().unwrap());
        assert!(max - min <= 13, "{loads:?}");
        // deterministic
        assert_eq!(assign(&names, &costs, 4), assign(&names, &costs, 4));
    }

    #[test]
    fn parse() {
        assert_eq!(Shard::parse("2/5"), Ok(Shard { index: 2, count: 5 }));
        for bad in ["0/3", "4/3", "1", "a/b", "1/0"] {
            assert!(Shard::parse(bad).is_err(), "{bad}");
        }
    }
}
