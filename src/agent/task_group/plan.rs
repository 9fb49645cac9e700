//! The task group's bookkeeping as a state machine without I/O: which task runs next,
//! what was visited, which results are stale. The async runner asks it and obeys.
//!
//! Rules:
//! - Regression targets run first, in the order asked.
//! - Otherwise the first registered task without a result runs (so tasks added while the
//!   group runs are picked up, and an interrupted task is re-entered after the targets).
//! - Starting a task clears its old result: every run starts fresh.
//! - When a task completes, every completed task that depends on it loses its result and
//!   so runs again; tasks that do not depend on it keep theirs.

use std::collections::VecDeque;

/// Which other tasks a task's result depends on. When one of them runs again, a completed
/// dependent runs again too (it may depend on the changed answer); others are not asked
/// again.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum DependsOn {
    /// Independent of the other tasks.
    #[default]
    Nothing,
    /// These task ids.
    Tasks(Vec<String>),
    /// Every task registered before it, including ones inserted later.
    AllBefore,
}

/// Why the plan refused a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// No task has this id.
    #[error("no task with id {0:?}")]
    UnknownTask(String),
    /// The task has not run yet, so there is nothing to go back to.
    #[error("task {0:?} has not been visited yet")]
    NotVisited(String),
    /// A regression must name at least one task.
    #[error("no task to go back to was given")]
    NoTargets,
    /// A task cannot regress to itself.
    #[error("task {0:?} is the one running now")]
    Running(String),
    /// Position out of range.
    #[error("no task at position {0}")]
    NoSuchIndex(usize),
}

#[derive(Debug)]
struct Entry<R> {
    id: String,
    description: String,
    depends_on: DependsOn,
    visited: bool,
    result: Option<R>,
}

/// The order of tasks, their results and what runs next.
#[derive(Debug)]
pub(crate) struct Plan<R> {
    entries: Vec<Entry<R>>,
    priority: VecDeque<String>,
    running: Option<String>,
}

impl<R> Default for Plan<R> {
    fn default() -> Self {
        Plan {
            entries: Vec::new(),
            priority: VecDeque::new(),
            running: None,
        }
    }
}

impl<R> Plan<R> {
    /// Registers a task at the end, or before `before`. Re-adding a known id replaces its
    /// description and dependencies in place and keeps its result.
    pub(crate) fn add(
        &mut self,
        id: &str,
        description: &str,
        depends_on: DependsOn,
        before: Option<&str>,
    ) -> Result<(), PlanError> {
        if let Some(entry) = self.entries.iter_mut().find(|entry| entry.id == id) {
            entry.description = description.to_string();
            entry.depends_on = depends_on;
            return Ok(());
        }
        let position = match before {
            None => self.entries.len(),
            Some(anchor) => self
                .position(anchor)
                .ok_or_else(|| PlanError::UnknownTask(anchor.to_string()))?,
        };
        self.entries.insert(
            position,
            Entry {
                id: id.to_string(),
                description: description.to_string(),
                depends_on,
                visited: false,
                result: None,
            },
        );
        Ok(())
    }

    /// Picks the next task, marks it running and visited, and clears its old result.
    pub(crate) fn start_next(&mut self) -> Option<String> {
        let id = loop {
            match self.priority.pop_front() {
                Some(id) if self.position(&id).is_some() => break Some(id),
                Some(_) => continue,
                None => {
                    break self
                        .entries
                        .iter()
                        .find(|entry| entry.result.is_none())
                        .map(|entry| entry.id.clone());
                }
            }
        }?;
        let entry = self.entry_mut(&id)?;
        entry.visited = true;
        entry.result = None;
        self.running = Some(id.clone());
        Some(id)
    }

    /// Records the running task's result; returns the completed dependents that must run
    /// again because of it.
    pub(crate) fn complete(&mut self, id: &str, result: R) -> Vec<String> {
        if let Some(entry) = self.entry_mut(id) {
            entry.result = Some(result);
        }
        self.running = None;
        let Some(position) = self.position(id) else {
            return Vec::new();
        };
        let mut invalidated = Vec::new();
        for (index, entry) in self.entries.iter_mut().enumerate() {
            let depends = match &entry.depends_on {
                DependsOn::Nothing => false,
                DependsOn::Tasks(ids) => ids.iter().any(|dep| dep == id),
                DependsOn::AllBefore => position < index,
            };
            if depends && entry.id != id && entry.result.take().is_some() {
                invalidated.push(entry.id.clone());
            }
        }
        invalidated
    }

    /// The running task ended without a result (it will be re-entered later).
    pub(crate) fn interrupted(&mut self) {
        self.running = None;
    }

    /// Queues `targets` to run next, in order. Every target must have been visited and
    /// must not be the running task.
    pub(crate) fn regress(&mut self, targets: &[String]) -> Result<(), PlanError> {
        if targets.is_empty() {
            return Err(PlanError::NoTargets);
        }
        for target in targets {
            let entry = self
                .entries
                .iter()
                .find(|entry| &entry.id == target)
                .ok_or_else(|| PlanError::UnknownTask(target.clone()))?;
            if !entry.visited {
                return Err(PlanError::NotVisited(target.clone()));
            }
            if self.running.as_ref() == Some(target) {
                return Err(PlanError::Running(target.clone()));
            }
        }
        let mut queued: Vec<String> = Vec::new();
        for target in targets {
            if !queued.contains(target) {
                queued.push(target.clone());
            }
        }
        self.priority.retain(|id| !queued.contains(id));
        for target in queued.into_iter().rev() {
            self.priority.push_front(target);
        }
        Ok(())
    }

    /// The regression targets still queued, in order.
    pub(crate) fn queued_targets(&self) -> Vec<String> {
        self.priority.iter().cloned().collect()
    }

    /// Visited tasks other than `current`, with descriptions, in registration order.
    pub(crate) fn regress_choices(&self, current: &str) -> Vec<(String, String)> {
        self.entries
            .iter()
            .filter(|entry| entry.visited && entry.id != current)
            .map(|entry| (entry.id.clone(), entry.description.clone()))
            .collect()
    }

    /// The id of the task registered at `index` (0-based).
    pub(crate) fn id_at(&self, index: usize) -> Result<String, PlanError> {
        self.entries
            .get(index)
            .map(|entry| entry.id.clone())
            .ok_or(PlanError::NoSuchIndex(index))
    }

    /// Results so far, in registration order.
    pub(crate) fn results(&self) -> impl Iterator<Item = (&str, &R)> {
        self.entries.iter().filter_map(|entry| {
            entry
                .result
                .as_ref()
                .map(|result| (entry.id.as_str(), result))
        })
    }

    fn position(&self, id: &str) -> Option<usize> {
        self.entries.iter().position(|entry| entry.id == id)
    }

    fn entry_mut(&mut self, id: &str) -> Option<&mut Entry<R>> {
        self.entries.iter_mut().find(|entry| entry.id == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(ids: &[&str]) -> Plan<u32> {
        let mut plan = Plan::default();
        for id in ids {
            plan.add(id, &format!("collect {id}"), DependsOn::Nothing, None)
                .unwrap();
        }
        plan
    }

    fn run(plan: &mut Plan<u32>, expected: &str, result: u32) -> Vec<String> {
        assert_eq!(plan.start_next().as_deref(), Some(expected));
        plan.complete(expected, result)
    }

    fn results(plan: &Plan<u32>) -> Vec<(String, u32)> {
        plan.results().map(|(id, r)| (id.to_string(), *r)).collect()
    }

    #[test]
    fn runs_in_order_and_picks_up_tasks_added_while_running() {
        let mut plan = plan(&["a"]);
        assert_eq!(plan.start_next().as_deref(), Some("a"));
        plan.add("b", "b", DependsOn::Nothing, None).unwrap();
        plan.complete("a", 1);
        run(&mut plan, "b", 2);
        assert_eq!(plan.start_next(), None);
        assert_eq!(results(&plan), vec![("a".into(), 1), ("b".into(), 2)]);
    }

    #[test]
    fn regression_runs_targets_in_order_asked_then_reenters_the_interrupted_task() {
        let mut plan = plan(&["a", "b", "c"]);
        run(&mut plan, "a", 1);
        run(&mut plan, "b", 2);
        assert_eq!(plan.start_next().as_deref(), Some("c"));
        plan.regress(&["b".into(), "a".into()]).unwrap();
        plan.interrupted();
        run(&mut plan, "b", 20);
        run(&mut plan, "a", 10);
        run(&mut plan, "c", 3);
        assert_eq!(plan.start_next(), None);
        assert_eq!(
            results(&plan),
            vec![("a".into(), 10), ("b".into(), 20), ("c".into(), 3)]
        );
    }

    #[test]
    fn only_visited_tasks_other_than_the_running_one_are_targets() {
        let mut plan = plan(&["a", "b", "c"]);
        assert_eq!(plan.start_next().as_deref(), Some("a"));
        assert!(plan.regress_choices("a").is_empty());
        assert_eq!(
            plan.regress(&["b".into()]),
            Err(PlanError::NotVisited("b".into()))
        );
        assert_eq!(
            plan.regress(&["a".into()]),
            Err(PlanError::Running("a".into()))
        );
        assert_eq!(
            plan.regress(&["zz".into()]),
            Err(PlanError::UnknownTask("zz".into()))
        );
        assert_eq!(plan.regress(&[]), Err(PlanError::NoTargets));
        plan.complete("a", 1);
        assert_eq!(plan.start_next().as_deref(), Some("b"));
        let choices = plan.regress_choices("b");
        assert_eq!(choices, vec![("a".to_string(), "collect a".to_string())]);
    }

    #[test]
    fn a_completed_dependent_reruns_after_its_dependency_and_others_do_not() {
        let mut plan: Plan<u32> = Plan::default();
        plan.add("item_1", "", DependsOn::Nothing, None).unwrap();
        plan.add("item_2", "", DependsOn::Nothing, None).unwrap();
        plan.add("payment", "", DependsOn::AllBefore, None).unwrap();
        plan.add("review", "", DependsOn::Tasks(vec!["payment".into()]), None)
            .unwrap();
        run(&mut plan, "item_1", 1);
        run(&mut plan, "item_2", 2);
        run(&mut plan, "payment", 3);
        assert_eq!(plan.start_next().as_deref(), Some("review"));
        plan.regress(&["item_1".into()]).unwrap();
        plan.interrupted();
        let invalidated = run(&mut plan, "item_1", 11);
        assert_eq!(invalidated, vec!["payment".to_string()]);
        run(&mut plan, "payment", 33);
        run(&mut plan, "review", 4);
        assert_eq!(plan.start_next(), None);
        assert_eq!(
            results(&plan),
            vec![
                ("item_1".into(), 11),
                ("item_2".into(), 2),
                ("payment".into(), 33),
                ("review".into(), 4)
            ]
        );
    }

    #[test]
    fn a_task_inserted_before_a_dependent_makes_it_rerun() {
        let mut plan: Plan<u32> = Plan::default();
        plan.add("item_1", "", DependsOn::Nothing, None).unwrap();
        plan.add("payment", "", DependsOn::AllBefore, None).unwrap();
        plan.add("review", "", DependsOn::Nothing, None).unwrap();
        run(&mut plan, "item_1", 1);
        run(&mut plan, "payment", 2);
        assert_eq!(plan.start_next().as_deref(), Some("review"));
        plan.add("item_2", "", DependsOn::Nothing, Some("payment"))
            .unwrap();
        plan.interrupted();
        let invalidated = run(&mut plan, "item_2", 5);
        assert_eq!(invalidated, vec!["payment".to_string()]);
        run(&mut plan, "payment", 7);
        run(&mut plan, "review", 9);
        assert_eq!(plan.id_at(1), Ok("item_2".to_string()));
    }

    #[test]
    fn re_adding_an_id_replaces_it_without_duplicating() {
        let mut plan = plan(&["a"]);
        run(&mut plan, "a", 1);
        plan.add("a", "new description", DependsOn::Nothing, None)
            .unwrap();
        assert_eq!(results(&plan), vec![("a".into(), 1)]);
        assert_eq!(plan.start_next(), None);
    }
}
