//! Tools more than one step offers.
//!
//! - `end_call()` and `transfer_to_staff()` act on the call itself, offered by the order
//!   taker and by every order task (so "that's all, bye" or "can I talk to a person?" works
//!   at any point). Both are withheld while a task enters, and both say their sentence from
//!   code, so the caller hears exactly what happens.
//! - `add_item()` and `remove_item(name)`, offered by payment and the read-back, take one
//!   more item or take a dish off the order.

use std::sync::Arc;

use super::order_flow::OrderFlow;
use super::restaurant::Restaurant;
use crate::agent::{
    AgentTask, CallerInfo, ToolContext, ToolError, ToolResult, TransferError, tools,
};
use crate::llm::ChatRole;

/// Adds `end_call` and `transfer_to_staff` to `task`.
pub fn with_call_tools<T: Send + 'static>(
    task: AgentTask<T>,
    restaurant: &Restaurant,
    caller: &Arc<CallerInfo>,
) -> AgentTask<T> {
    task.with_tools(CallTools {
        caller: caller.clone(),
        transfer_to: restaurant.transfer_to.clone(),
        goodbye: restaurant.prompts.goodbye.clone(),
        transferring: restaurant.prompts.transferring.clone(),
        transfer_failed: restaurant.prompts.transfer_failed.clone(),
    })
}

/// What the call tools need: who is calling, where staff are, and what to say.
struct CallTools {
    caller: Arc<CallerInfo>,
    transfer_to: Option<String>,
    goodbye: String,
    transferring: String,
    transfer_failed: String,
}

#[tools]
impl CallTools {
    /// End the phone call, when the caller has nothing more to order or ask and says goodbye,
    /// or asks to hang up. The goodbye is said for you. An order that was not confirmed yet is
    /// not placed.
    ///
    /// The caller hears the goodbye; the call ends once it has played out.
    #[tool(hidden_on_enter)]
    fn end_call<T: Send + 'static>(&self, ctx: &mut ToolContext<'_, T>) -> ToolResult {
        ctx.say(self.goodbye.clone());
        ctx.hang_up();
        Ok("The call is ending.".to_string())
    }

    /// Transfer the caller to a member of the restaurant's staff, when they ask for a person or
    /// you cannot help them. What to say is said for you.
    ///
    /// The caller hears that they are being transferred; if it fails they hear so and the
    /// call goes on.
    #[tool(hidden_on_enter)]
    async fn transfer_to_staff<T: Send + 'static>(
        &self,
        ctx: &mut ToolContext<'_, T>,
    ) -> ToolResult {
        if !self.caller.is_phone() {
            return Err(ToolError::Rejected(
                "this caller is not on the telephone, so they cannot be transferred. Tell \
                 them you cannot put them through and offer to help them yourself."
                    .into(),
            ));
        }
        let Some(to) = &self.transfer_to else {
            return Err(ToolError::Rejected(
                "no staff number is set up for transfers. Tell the caller nobody can take \
                 the call right now and offer to help them yourself."
                    .into(),
            ));
        };
        ctx.say(self.transferring.clone());
        match ctx.transfer(to).await {
            Ok(()) => Ok("The caller was transferred to staff.".into()),
            Err(TransferError::SessionClosed) => Err(ToolError::Failed(
                "the call ended during the transfer".into(),
            )),
            Err(TransferError::Failed(reason)) => {
                tracing::warn!(%reason, to, "transfer to staff failed");
                ctx.say(self.transfer_failed.clone());
                Err(ToolError::Rejected(
                    "the transfer did not work, and the caller has just been told so. Do not \
                     say it again: go on helping them."
                        .into(),
                ))
            }
        }
    }
}

/// `add_item()`, offered by payment and the read-back: go back and take one more item.
pub(crate) struct AddItem(pub(crate) Arc<OrderFlow>);

#[tools]
impl AddItem {
    /// The caller wants to add another item to the order.
    #[tool]
    fn add_item<T: Send + 'static>(&self, ctx: &mut ToolContext<'_, T>) -> ToolResult {
        self.0
            .add_item()
            .map_err(|e| ToolError::Failed(e.to_string()))?;
        ctx.interrupt();
        Ok("Taking one more item.".to_string())
    }
}

/// `remove_item(name)`, offered by payment and the read-back: take a dish off the order.
pub(crate) struct RemoveItem(pub(crate) Arc<OrderFlow>);

#[tools]
impl RemoveItem {
    /// The caller wants a dish taken off the order (cancelled), not changed: to change a
    /// dish, its quantity or modifications, call out_of_scope instead.
    ///
    /// Its item comes back and cancels itself; payment then re-enters with the new total.
    ///
    /// - `name`: the dish to take off, as named in the order
    #[tool]
    fn remove_item<T: Send + 'static>(
        &self,
        ctx: &mut ToolContext<'_, T>,
        name: String,
    ) -> ToolResult {
        let flow = &self.0;
        let restaurant = flow.restaurant();
        let dishes = flow.dishes();
        let in_order = || {
            let names: Vec<&str> = dishes.iter().map(|(_, dish)| dish.as_str()).collect();
            names.join(", ")
        };
        let dish = restaurant.menu.find_item(&name).map_err(|_| {
            ToolError::Rejected(format!(
                "{name:?} is not in the order; it has: {}",
                in_order()
            ))
        })?;
        let Some(&(number, _)) = dishes.iter().find(|(_, ordered)| ordered == dish.name()) else {
            return Err(ToolError::Rejected(format!(
                "{} is not in the order; it has: {}",
                dish.name(),
                in_order()
            )));
        };
        if restaurant.small_model {
            let said = ctx
                .chat_context()
                .messages_from(ChatRole::User)
                .next()
                .unwrap_or_default();
            if !dish.is_named_in(said) {
                return Err(ToolError::Rejected(format!(
                    "the caller did not name {} in their last words: ask them which dish \
                     to take off",
                    dish.name()
                )));
            }
        }
        if dishes.len() == 1 {
            return Err(ToolError::Rejected(format!(
                "{} is the only item: an order needs at least one. Ask the caller whether they \
                 want something else instead (out_of_scope) or no order at all (end_call)",
                dish.name()
            )));
        }
        flow.remove_item(number)
            .map_err(|e| ToolError::Failed(e.to_string()))?;
        ctx.interrupt();
        Ok(format!("Taking the {} off the order.", dish.name()))
    }
}
