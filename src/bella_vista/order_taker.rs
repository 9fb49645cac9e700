//! The order taker: the agent that answers the call and runs `take_order`.

use std::convert::Infallible;
use std::sync::Arc;

use super::check_menu::CheckMenu;
use super::collect_order_item::STALL_TURNS;
use super::order_flow::OrderFlow;
use super::prompts::fill;
use super::restaurant::Restaurant;
use super::shared_tools::with_call_tools;
use super::store::StoredOrder;
use crate::agent::{
    Agent, CallerInfo, StallAction, TaskGroupError, ToolContext, ToolError, ToolResult, tools,
};

/// The tool that starts an order (also what a stalled conversation falls back to).
const TAKE_ORDER: &str = "take_order";

/// The Bella Vista agent: greets, answers menu questions, and takes orders.
pub fn order_taker(restaurant: Arc<Restaurant>) -> Agent {
    order_taker_for(restaurant, Arc::new(CallerInfo::default()))
}

/// The order taker for a caller the transport knows something about (a phone number).
pub fn order_taker_for(restaurant: Arc<Restaurant>, caller: Arc<CallerInfo>) -> Agent {
    let categories = restaurant.category_list();
    let menu = restaurant.menu_list();
    let instructions = fill(
        &restaurant.prompts.order_taker,
        &[("categories", categories.as_str()), ("menu", menu.as_str())],
    );
    let agent = Agent::new("OrderTaker", instructions)
        .on_enter(restaurant.opening(
            restaurant.prompts.greeting_say.clone(),
            restaurant.prompts.greeting.clone(),
        ))
        .fills(TAKE_ORDER)
        .on_stall(STALL_TURNS, StallAction::CallTool(TAKE_ORDER.into()))
        .with_tools(CheckMenu(restaurant.clone()));
    with_call_tools(agent, &restaurant, &caller).with_tools(TakeOrder { restaurant, caller })
}

/// The order taker's own tool: what it needs to start an order.
struct TakeOrder {
    restaurant: Arc<Restaurant>,
    caller: Arc<CallerInfo>,
}

#[tools(result = Infallible)]
impl TakeOrder {
    /// Start taking the caller's order: the items, then payment, then the read-back.
    ///
    /// Runs the order's task group and reports how it ended.
    #[tool]
    async fn take_order(&self, ctx: &mut ToolContext<'_, Infallible>) -> ToolResult {
        let (group, flow) = OrderFlow::start(self.restaurant.clone(), self.caller.clone());
        match ctx.run_group(group).await {
            Ok(results) => Ok(report(flow.stored_in(&results))),
            Err(TaskGroupError::Summary { results, error }) => {
                tracing::warn!(%error, "order summary failed; the order itself is kept");
                Ok(report(flow.stored_in(&results)))
            }
            Err(TaskGroupError::SessionClosed) => {
                Err(ToolError::Failed("the call ended during the order".into()))
            }
            Err(error @ TaskGroupError::TaskFailed { .. }) => {
                Err(ToolError::Failed(error.to_string()))
            }
        }
    }
}

/// What the order taker hears when the order's group ended.
fn report(stored: Option<&StoredOrder>) -> String {
    match stored {
        Some(stored) => format!(
            "The order is confirmed and saved as order number {}. Total {}, paid by {}. \
             Tell the caller their order number.",
            stored.id(),
            stored.total(),
            stored.order().payment.method
        ),
        None => "No order was placed: the caller cancelled every item.".into(),
    }
}
