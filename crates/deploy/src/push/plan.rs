//! The transfer plan: what every target lacks, in reference order.
//!
//! [`Plan::new`] takes the union closure of all targets' roots, already
//! sorted references-first (as `query_closure` returns it). Paths are then
//! named by their index in that order, so any ascending list of indexes is
//! itself in reference order: a target's missing list, which is its wanted
//! closure minus what its daemon reported valid, needs no further sorting.
//! [`Plan::feed`] inverts the per-target lists into "path → targets lacking
//! it", which is what the single NAR producer walks.

use std::collections::{BTreeMap, BTreeSet};

use ndeploy_store::path_info::PathInfo;
use ndeploy_store::store_path::StorePath;

use super::PushError;

/// The closure, in reference order, and a lookup by path.
#[derive(Debug, Clone)]
pub struct Plan {
    order: Vec<PathInfo>,
    index: BTreeMap<StorePath, usize>,
}

/// What one target lacks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TargetPlan {
    /// Size of the target's wanted closure.
    pub wanted: usize,
    /// Paths of it the target already has.
    pub already_valid: usize,
    /// Indexes (into [`Plan::order`]) of the paths to send, ascending.
    pub missing: Vec<usize>,
    /// Sum of their NAR sizes.
    pub nar_bytes: u64,
}

impl Plan {
    /// `order` must list references before referrers (duplicates are dropped).
    pub fn new(order: Vec<PathInfo>) -> Plan {
        let mut index = BTreeMap::new();
        let mut kept = Vec::with_capacity(order.len());
        for info in order {
            if !index.contains_key(&info.path) {
                index.insert(info.path.clone(), kept.len());
                kept.push(info);
            }
        }
        Plan { order: kept, index }
    }

    pub fn order(&self) -> &[PathInfo] {
        &self.order
    }

    pub fn get(&self, i: usize) -> Option<&PathInfo> {
        self.order.get(i)
    }

    /// The closure of `roots` within the plan, as ascending indexes.
    /// Iterative; a root outside the plan is an error, references outside
    /// it are ignored (they cannot be, if the plan is a closure).
    pub fn wanted(&self, roots: &[StorePath]) -> Result<Vec<usize>, PushError> {
        let mut seen = BTreeSet::new();
        let mut stack = Vec::new();
        for r in roots {
            let &i = self.index.get(r).ok_or_else(|| PushError::NotInClosure { path: r.to_string() })?;
            if seen.insert(i) {
                stack.push(i);
            }
        }
        while let Some(i) = stack.pop() {
            let Some(info) = self.order.get(i) else { continue };
            for r in &info.references {
                if let Some(&j) = self.index.get(r)
                    && seen.insert(j)
                {
                    stack.push(j);
                }
            }
        }
        Ok(seen.into_iter().collect())
    }

    /// The paths of `wanted` to send to a target that has `valid`.
    pub fn target(&self, wanted: &[usize], valid: &BTreeSet<StorePath>) -> TargetPlan {
        let missing: Vec<usize> =
            wanted.iter().copied().filter(|&i| self.order.get(i).is_some_and(|p| !valid.contains(&p.path))).collect();
        let nar_bytes = missing.iter().filter_map(|&i| self.order.get(i)).map(|p| p.nar_size).sum();
        TargetPlan { wanted: wanted.len(), already_valid: wanted.len() - missing.len(), missing, nar_bytes }
    }

    /// For each path some target lacks, in reference order: the positions
    /// (in `targets`) of the targets lacking it. `None` entries (failed
    /// targets) lack nothing.
    pub fn feed(&self, targets: &[Option<&TargetPlan>]) -> Vec<(usize, Vec<usize>)> {
        let mut by_path: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for (t, plan) in targets.iter().enumerate() {
            for &i in plan.map(|p| p.missing.as_slice()).unwrap_or_default() {
                by_path.entry(i).or_default().push(t);
            }
        }
        by_path.into_iter().collect()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use ndeploy_store::daemon::sort_references_first;
    use ndeploy_store::hash::{Hash, HashAlgo};
    use ndeploy_store::store_path::StoreDir;

    use super::*;

    pub(crate) fn info(name: &str, refs: &[&PathInfo], size: u64) -> PathInfo {
        let dir = StoreDir::default();
        let path = dir.make_text_path(name, &Hash::digest(HashAlgo::Sha256, name), []).unwrap();
        let mut i = PathInfo::new(path, Hash::digest(HashAlgo::Sha256, b""), size);
        i.references = refs.iter().map(|r| r.path.clone()).collect();
        i
    }

    fn names(plan: &Plan, idx: &[usize]) -> Vec<String> {
        idx.iter().map(|&i| plan.get(i).unwrap().path.name().to_owned()).collect()
    }

    #[test]
    fn per_target_missing_in_reference_order() {
        let lib = info("lib", &[], 10);
        let a = info("a", &[&lib], 20);
        let b = info("b", &[&lib], 30);
        let top1 = info("top1", &[&a], 1);
        let top2 = info("top2", &[&a, &b], 2);
        let order = sort_references_first(vec![top2.clone(), top1.clone(), b.clone(), a.clone(), lib.clone()]).unwrap();
        let plan = Plan::new(order);
        let w1 = plan.wanted(std::slice::from_ref(&top1.path)).unwrap();
        let w2 = plan.wanted(std::slice::from_ref(&top2.path)).unwrap();
        assert_eq!(names(&plan, &w1), ["lib", "a", "top1"]);
        assert_eq!(w2.len(), 4);
        let t1 = plan.target(&w1, &BTreeSet::new());
        assert_eq!((t1.wanted, t1.already_valid, t1.nar_bytes), (3, 0, 31));
        let t2 = plan.target(&w2, &[lib.path.clone(), a.path.clone()].into_iter().collect());
        assert_eq!(names(&plan, &t2.missing), ["b", "top2"]);
        assert_eq!((t2.already_valid, t2.nar_bytes), (2, 32));
        let feed = plan.feed(&[Some(&t1), None, Some(&t2)]);
        let rendered: Vec<(String, Vec<usize>)> =
            feed.iter().map(|(i, ts)| (plan.get(*i).unwrap().path.name().to_owned(), ts.clone())).collect();
        let pos = |n: &str| rendered.iter().position(|(m, _)| m == n).unwrap();
        assert!(pos("lib") < pos("a") && pos("a") < pos("top1") && pos("b") < pos("top2"));
        assert_eq!(rendered[pos("b")].1, [2]);
        assert_eq!(rendered[pos("lib")].1, [0]);
    }

    #[test]
    fn unknown_root_is_an_error() {
        let plan = Plan::new(vec![info("x", &[], 1)]);
        let e = plan.wanted(&[info("y", &[], 1).path]).unwrap_err();
        assert!(e.to_string().contains("not in the local closure"), "{e}");
    }

    #[test]
    fn deep_chain_does_not_recurse() {
        let mut chain = vec![info("p0", &[], 1)];
        for n in 1..20_000 {
            let prev = chain.last().unwrap().clone();
            chain.push(info(&format!("p{n}"), &[&prev], 1));
        }
        let top = chain.last().unwrap().path.clone();
        let plan = Plan::new(chain);
        assert_eq!(plan.wanted(&[top]).unwrap().len(), 20_000);
    }
}
