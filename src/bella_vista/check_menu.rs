//! The `check_menu(category)` tool, offered by the order taker and by each item task.

use std::sync::Arc;

use schemars::JsonSchema;
use serde::Deserialize;

use super::order_flow::Restaurant;
use crate::agent::{FnTool, ToolContext, ToolError, tool_fn};

/// Arguments of `check_menu`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct CheckMenuArgs {
    /// The menu category: appetizers, mains or desserts.
    pub category: String,
}

/// The tool: lists a category's dishes with their prices.
pub fn check_menu<T: Send + 'static>(
    restaurant: Arc<Restaurant>,
) -> FnTool<
    CheckMenuArgs,
    impl Fn(&mut ToolContext<'_, T>, CheckMenuArgs) -> Result<String, ToolError> + Send + Sync + 'static,
> {
    tool_fn(
        "check_menu",
        "Check the dishes and prices in a menu category.",
        move |_ctx: &mut ToolContext<'_, T>, args: CheckMenuArgs| {
            let menu = &restaurant.menu;
            match menu.category(&args.category) {
                Ok(category) => Ok(menu.describe_category(category)),
                Err(unknown) => Err(ToolError::Rejected(unknown.to_string())),
            }
        },
    )
}
