//! `ReviewOrder`: the read-back, and `confirm_order`, which stores the order exactly once.

use std::sync::Arc;

use super::collect_order_item::STALL_TURNS;
use super::order::Order;
use super::order_flow::OrderFlow;
use super::prompts::fill;
use super::shared_tools::{AddItem, RemoveItem, with_call_tools};
use super::store::StoredOrder;
use crate::agent::{AgentTask, KeyAction, StallAction, ToolContext, ToolError, ToolResult, tools};

/// The name of the tool that places the order (also what key 1 does on a phone).
const CONFIRM_ORDER: &str = "confirm_order";

/// Builds the read-back task for `order` (None if payment is somehow missing).
pub fn review_order(flow: Arc<OrderFlow>, order: Option<Order>) -> AgentTask<StoredOrder> {
    let restaurant = flow.restaurant();
    let read_back = order
        .as_ref()
        .map(Order::read_back)
        .unwrap_or_else(|| "The payment details are missing.".into());
    let phone_note = flow
        .caller_phone()
        .map(|phone| {
            let digits: String = phone.chars().filter(char::is_ascii_digit).collect();
            let last = &digits[digits.len().saturating_sub(2)..];
            format!(
                "The caller is phoning from a number ending in {last}; confirm it is the \
                 number for this order when you read it back. Tell them they can also \
                 press 1 to confirm, or 2 to change something."
            )
        })
        .unwrap_or_default();
    let values = [
        ("read_back", read_back.as_str()),
        ("phone_note", phone_note.as_str()),
    ];
    let instructions = fill(&restaurant.prompts.review_order, &values);
    let enter = fill(&restaurant.prompts.review_order_enter, &values);
    let change = restaurant.prompts.review_key_change.clone();
    let spoken = order.as_ref().map(Order::spoken).unwrap_or_default();
    let say = fill(
        &restaurant.prompts.review_say,
        &[("spoken_order", spoken.as_str())],
    );
    let task = AgentTask::new("ReviewOrder", instructions)
        .on_enter(restaurant.opening(say, enter))
        .on_key('1', KeyAction::CallTool(CONFIRM_ORDER.into()))
        .on_key('2', KeyAction::Tell(change))
        .fills(CONFIRM_ORDER)
        .on_stall(
            STALL_TURNS,
            StallAction::Say(restaurant.prompts.review_stall.clone()),
        );
    with_call_tools(task, restaurant, flow.caller())
        .with_tools(ReviewOrder {
            flow: flow.clone(),
            order,
        })
        .with_tools(AddItem(flow.clone()))
        .with_tools(RemoveItem(flow))
}

/// The read-back's state: the order to place.
struct ReviewOrder {
    flow: Arc<OrderFlow>,
    order: Option<Order>,
}

#[tools(result = StoredOrder)]
impl ReviewOrder {
    /// Place the order, only after the caller clearly confirmed the read-back.
    ///
    /// Writes the order (durably) before the model hears its number; a repeated call
    /// returns the same order, never a second row.
    #[tool(hidden_on_enter)]
    async fn confirm_order(&self, ctx: &mut ToolContext<'_, StoredOrder>) -> ToolResult {
        let order = self
            .order
            .clone()
            .ok_or_else(|| ToolError::Rejected("the order has no payment details yet".into()))?;
        let restaurant = self.flow.restaurant();
        let telemetry = crate::telemetry::global();
        let origin = self.flow.origin();
        let key = self.flow.idempotency_key();
        let now = restaurant.clock.now();
        match restaurant.store.confirm_at(key, &order, &origin, now).await {
            Ok(stored) => {
                telemetry.order_confirmed("stored");
                let id = stored.id();
                ctx.complete(stored);
                Ok(format!("Order number {id} is confirmed and saved."))
            }
            Err(error) => {
                telemetry.order_confirmed("failed");
                ctx.say(self.flow.restaurant().prompts.order_not_placed.clone());
                Err(ToolError::Failed(format!(
                    "the order could NOT be placed ({error}); nothing is stored. The caller \
                     was told and asked whether to try again: do not repeat it"
                )))
            }
        }
    }
}
