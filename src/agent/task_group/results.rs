//! The results of a task group: by id, in registration order, read through typed keys.

use std::any::{Any, type_name};
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

/// A task's id together with the type of its result: what [`TaskResults::get`] takes, so
/// reading a result needs no string and no downcast at the call site. Get one from the
/// entry ([`TaskEntry::key`](super::TaskEntry::key)) or from the handle that added it.
pub struct TaskKey<T> {
    id: Arc<str>,
    result: PhantomData<fn() -> T>,
}

impl<T> TaskKey<T> {
    /// The key of task `id` whose result is a `T` (for ids made at run time; a key from
    /// the entry is always right).
    pub fn new(id: impl Into<Arc<str>>) -> Self {
        TaskKey {
            id: id.into(),
            result: PhantomData,
        }
    }

    /// The task's id.
    pub fn id(&self) -> &str {
        &self.id
    }
}

impl<T> Clone for TaskKey<T> {
    fn clone(&self) -> Self {
        TaskKey::new(self.id.clone())
    }
}

impl<T> PartialEq for TaskKey<T> {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}

impl<T> Eq for TaskKey<T> {}

impl<T> fmt::Debug for TaskKey<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TaskKey<{}>({:?})", type_name::<T>(), self.id)
    }
}

/// One task's result: its value, or the failure recorded with `return_exceptions`.
#[derive(Clone)]
pub enum TaskResult {
    /// The value the task completed with.
    Value(Arc<dyn Any + Send + Sync>),
    /// The task failed with this message.
    Failed(String),
}

impl std::fmt::Debug for TaskResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TaskResult::Value(_) => f.write_str("Value(..)"),
            TaskResult::Failed(message) => f.debug_tuple("Failed").field(message).finish(),
        }
    }
}

/// Why a typed result could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResultError {
    /// No result for this id (never ran, or ran again and was interrupted).
    #[error("no result for task {0:?}")]
    Missing(String),
    /// The result has another type.
    #[error("the result of task {id:?} is not a {expected}")]
    WrongType {
        /// The task id.
        id: String,
        /// The type asked for.
        expected: &'static str,
    },
    /// The task failed (recorded with `return_exceptions`).
    #[error("task {id:?} failed: {message}")]
    Failed {
        /// The task id.
        id: String,
        /// The failure.
        message: String,
    },
}

/// Results by task id, in the order the tasks were registered. Each id appears once: a
/// task that ran again replaced its earlier result.
#[derive(Debug, Clone, Default)]
pub struct TaskResults {
    entries: Vec<(String, TaskResult)>,
}

impl TaskResults {
    pub(crate) fn from_entries(entries: Vec<(String, TaskResult)>) -> Self {
        TaskResults { entries }
    }

    /// The result of the task `key` names.
    pub fn get<T: Any>(&self, key: &TaskKey<T>) -> Result<&T, ResultError> {
        let id = key.id();
        match self.raw(id) {
            None => Err(ResultError::Missing(id.to_string())),
            Some(TaskResult::Failed(message)) => Err(ResultError::Failed {
                id: id.to_string(),
                message: message.clone(),
            }),
            Some(TaskResult::Value(value)) => {
                value
                    .downcast_ref::<T>()
                    .ok_or_else(|| ResultError::WrongType {
                        id: id.to_string(),
                        expected: type_name::<T>(),
                    })
            }
        }
    }

    /// The raw result of task `id`.
    pub fn raw(&self, id: &str) -> Option<&TaskResult> {
        self.entries
            .iter()
            .find(|(entry_id, _)| entry_id == id)
            .map(|(_, result)| result)
    }

    /// Every value of type `T`, with its task id, in registration order.
    pub fn values<T: Any>(&self) -> impl Iterator<Item = (&str, &T)> {
        self.entries.iter().filter_map(|(id, result)| match result {
            TaskResult::Value(value) => value.downcast_ref::<T>().map(|v| (id.as_str(), v)),
            TaskResult::Failed(_) => None,
        })
    }

    /// Task ids with a result, in registration order.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(id, _)| id.as_str())
    }

    /// Number of results.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no results.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_access_by_id_and_by_type() {
        let results = TaskResults::from_entries(vec![
            ("a".into(), TaskResult::Value(Arc::new(1u32))),
            ("b".into(), TaskResult::Value(Arc::new("x".to_string()))),
            ("c".into(), TaskResult::Failed("boom".into())),
        ]);
        let key = TaskKey::<u32>::new;
        assert_eq!(results.get(&key("a")), Ok(&1));
        assert!(matches!(
            results.get(&key("b")),
            Err(ResultError::WrongType { .. })
        ));
        assert!(matches!(
            results.get(&key("c")),
            Err(ResultError::Failed { .. })
        ));
        assert_eq!(
            results.get(&key("z")),
            Err(ResultError::Missing("z".into()))
        );
        assert_eq!(format!("{:?}", key("a")), "TaskKey<u32>(\"a\")");
        let strings: Vec<_> = results.values::<String>().collect();
        assert_eq!(strings, vec![("b", &"x".to_string())]);
        assert_eq!(results.ids().collect::<Vec<_>>(), vec!["a", "b", "c"]);
    }
}
