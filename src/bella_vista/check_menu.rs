//! The `check_menu(category)` tool, offered by the order taker and by each item task.

use std::sync::Arc;

use super::restaurant::Restaurant;
use crate::agent::{ToolError, ToolResult, tools};

/// `check_menu`: lists a category's dishes with their prices, from the menu.
pub struct CheckMenu(pub Arc<Restaurant>);

#[tools]
impl CheckMenu {
    /// Check the dishes and prices in a menu category.
    ///
    /// - `category`: the menu category: appetizers, mains or desserts
    #[tool]
    fn check_menu(&self, category: String) -> ToolResult {
        let menu = &self.0.menu;
        match menu.category(&category) {
            Ok(category) => Ok(menu.describe_category(category)),
            Err(unknown) => Err(ToolError::Rejected(unknown.to_string())),
        }
    }
}
