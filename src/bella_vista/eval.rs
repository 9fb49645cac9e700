//! Eval scenarios for Bella Vista: a scripted caller (see [`crate::agent::eval`]) and the
//! order that must come out of the call, read from the files in `eval/`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::order::PaymentMethod;
use super::store::StoredOrder;
use crate::agent::eval::CallerScript;

/// Why the scenarios could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// A file or the directory could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file is not a valid scenario.
    #[error("invalid scenario {path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
}

/// One eval scenario: a caller and the order expected from the call.
#[derive(Debug, Clone, Deserialize)]
pub struct Scenario {
    /// What the report calls it.
    pub name: String,
    /// How the caller behaves.
    #[serde(flatten)]
    pub caller: CallerScript,
    /// The order that must be stored.
    pub expect: ExpectedOrder,
}

/// The order a scenario must end with.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectedOrder {
    /// Whether an order must be stored at all.
    #[serde(default = "stored_by_default")]
    pub stored: bool,
    /// How it is paid.
    #[serde(default)]
    pub payment_method: Option<PaymentMethod>,
    /// The tip.
    #[serde(default)]
    pub tip_percent: Option<u32>,
    /// The items, in order.
    #[serde(default)]
    pub items: Vec<ExpectedItem>,
}

fn stored_by_default() -> bool {
    true
}

/// One expected order line.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectedItem {
    /// The menu name.
    pub name: String,
    /// How many.
    pub quantity: u32,
    /// Changes asked for (compared without case, punctuation or order).
    #[serde(default)]
    pub modifications: Vec<String>,
}

/// Reads every `*.toml` scenario in `dir`, sorted by file name.
pub fn load_scenarios(dir: &Path) -> Result<Vec<(PathBuf, Scenario)>, ScenarioError> {
    let read_error = |path: &Path, source| ScenarioError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| read_error(dir, e))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).map_err(|e| read_error(&path, e))?;
            let scenario = toml::from_str(&text).map_err(|e| ScenarioError::Invalid {
                path: path.clone(),
                message: e.to_string(),
            })?;
            Ok((path, scenario))
        })
        .collect()
}

impl ExpectedOrder {
    /// How `stored` (the orders the call left) differs from this expectation, if it does.
    pub fn mismatch(&self, stored: &[StoredOrder]) -> Option<String> {
        match (self.stored, stored) {
            (false, []) => None,
            (false, orders) => Some(format!("{} order(s) stored, none expected", orders.len())),
            (true, []) => Some("no order was stored".into()),
            (true, [order]) => self.compare(order),
            (true, orders) => Some(format!("{} orders stored, one expected", orders.len())),
        }
    }

    fn compare(&self, stored: &StoredOrder) -> Option<String> {
        let order = stored.order();
        let mut differences = Vec::new();
        if let Some(method) = self.payment_method
            && method != order.payment.method
        {
            differences.push(format!(
                "paid by {}, expected {method}",
                order.payment.method
            ));
        }
        if let Some(tip) = self.tip_percent
            && tip != order.payment.tip_percent
        {
            differences.push(format!(
                "tip {}%, expected {tip}%",
                order.payment.tip_percent
            ));
        }
        let got: Vec<(String, u32, Vec<String>)> = order
            .items
            .iter()
            .map(|i| (i.name.clone(), i.quantity, normalized(&i.modifications)))
            .collect();
        let want: Vec<(String, u32, Vec<String>)> = self
            .items
            .iter()
            .map(|i| (i.name.clone(), i.quantity, normalized(&i.modifications)))
            .collect();
        if got != want {
            differences.push(format!("items {got:?}, expected {want:?}"));
        }
        (!differences.is_empty()).then(|| differences.join("; "))
    }
}

/// Modifications without case, punctuation or order.
fn normalized(modifications: &[String]) -> Vec<String> {
    let mut out: Vec<String> = modifications
        .iter()
        .map(|m| {
            m.chars()
                .filter(|c| c.is_alphanumeric() || c.is_whitespace())
                .collect::<String>()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
                .to_lowercase()
        })
        .filter(|m| !m.is_empty())
        .collect();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_scenarios_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("eval");
        let scenarios = load_scenarios(&dir).unwrap();
        assert_eq!(scenarios.len(), 6);
        for (path, scenario) in &scenarios {
            assert!(!scenario.caller.answers.is_empty(), "{}", path.display());
            assert!(!scenario.expect.items.is_empty(), "{}", path.display());
        }
    }

    #[test]
    fn modifications_compare_without_case_punctuation_or_order() {
        assert_eq!(
            normalized(&["Sauce on the side.".into(), " NO garlic".into()]),
            normalized(&["no garlic".into(), "sauce on the side".into()])
        );
    }
}
