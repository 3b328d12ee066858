//! Which accepted job starts next: per-plugin queues, each plugin limited
//! to its `max_concurrent` running jobs, plugins served in turn so one
//! plugin's backlog never starves another's. Pure bookkeeping: no I/O.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

/// A queued item and the concurrency its plugin allowed when it was queued.
struct Queued<T> {
    item: T,
    max_concurrent: usize,
}

/// Pending items per plugin, and how many of each plugin's are running.
pub(super) struct Scheduler<T> {
    pending: HashMap<Arc<str>, VecDeque<Queued<T>>>,
    /// Plugins with pending items, in the order they are served.
    order: VecDeque<Arc<str>>,
    running: HashMap<Arc<str>, usize>,
}

impl<T> Default for Scheduler<T> {
    fn default() -> Self {
        Self {
            pending: HashMap::new(),
            order: VecDeque::new(),
            running: HashMap::new(),
        }
    }
}

impl<T> Scheduler<T> {
    /// Queues `item` for `plugin`, which may run `max_concurrent` at once
    /// (at least one).
    pub fn push(&mut self, plugin: &Arc<str>, item: T, max_concurrent: usize) {
        let queue = self.pending.entry(plugin.clone()).or_default();
        if queue.is_empty() {
            self.order.push_back(plugin.clone());
        }
        queue.push_back(Queued {
            item,
            max_concurrent: max_concurrent.max(1),
        });
    }

    /// Every item that may start now, plugins in turn; each is counted as
    /// running until [`Scheduler::finished`].
    pub fn startable(&mut self) -> Vec<(Arc<str>, T)> {
        let mut out = Vec::new();
        for _ in 0..self.order.len() {
            let Some(plugin) = self.order.pop_front() else {
                break;
            };
            let queue = self.pending.entry(plugin.clone()).or_default();
            let running = self.running.entry(plugin.clone()).or_default();
            while let Some(front) = queue.front() {
                if *running >= front.max_concurrent {
                    break;
                }
                let queued = queue.pop_front().expect("front exists");
                *running += 1;
                out.push((plugin.clone(), queued.item));
            }
            if queue.is_empty() {
                self.pending.remove(&plugin);
            } else {
                self.order.push_back(plugin);
            }
        }
        out
    }

    /// One of `plugin`'s running items ended.
    pub fn finished(&mut self, plugin: &Arc<str>) {
        if let Some(n) = self.running.get_mut(plugin) {
            *n = n.saturating_sub(1);
        }
    }

    /// Takes the first pending item for which `matches` holds.
    pub fn remove_pending(&mut self, mut matches: impl FnMut(&T) -> bool) -> Option<T> {
        for queue in self.pending.values_mut() {
            if let Some(i) = queue.iter().position(|q| matches(&q.item)) {
                return queue.remove(i).map(|q| q.item);
            }
        }
        None
    }

    /// Takes every pending item.
    pub fn drain_pending(&mut self) -> Vec<T> {
        self.order.clear();
        self.pending
            .drain()
            .flat_map(|(_, queue)| queue.into_iter().map(|q| q.item))
            .collect()
    }

    /// True when nothing is pending.
    pub fn is_idle(&self) -> bool {
        self.pending.values().all(VecDeque::is_empty)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plugin(name: &str) -> Arc<str> {
        Arc::from(name)
    }

    #[test]
    fn each_plugin_runs_at_most_its_limit_and_waits_for_a_finish() {
        let (a, b) = (plugin("a"), plugin("b"));
        let mut s = Scheduler::default();
        for i in 0..3 {
            s.push(&a, format!("a{i}"), 2);
        }
        s.push(&b, "b0".to_string(), 1);
        let started: Vec<String> = s.startable().into_iter().map(|(_, j)| j).collect();
        assert_eq!(started, ["a0", "a1", "b0"]);
        assert!(s.startable().is_empty(), "a is at its limit");
        s.finished(&a);
        let started: Vec<String> = s.startable().into_iter().map(|(_, j)| j).collect();
        assert_eq!(started, ["a2"]);
        assert!(s.is_idle());
    }

    #[test]
    fn zero_concurrency_still_runs_one_and_pending_items_can_be_taken() {
        let a = plugin("a");
        let mut s = Scheduler::default();
        s.push(&a, 1, 0);
        s.push(&a, 2, 0);
        s.push(&a, 3, 0);
        assert_eq!(s.startable().len(), 1);
        assert_eq!(s.remove_pending(|j| *j == 3), Some(3));
        assert_eq!(s.remove_pending(|j| *j == 3), None);
        assert_eq!(s.drain_pending(), vec![2]);
        assert!(s.is_idle());
    }

    #[test]
    fn a_busy_plugin_does_not_starve_another() {
        let (a, b) = (plugin("a"), plugin("b"));
        let mut s = Scheduler::default();
        for i in 0..100 {
            s.push(&a, i, 100);
        }
        s.push(&b, 1000, 1);
        let started = s.startable();
        assert!(started.iter().any(|(p, _)| *p == b));
    }
}
