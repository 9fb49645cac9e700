//! `CollectOrderItem`: one dish, its quantity and modifications, and whether more follow.

use std::sync::Arc;

use super::check_menu::CheckMenu;
use super::order::OrderItem;
use super::order_flow::OrderFlow;
use super::prompts::{fill, mentions_any};
use super::shared_tools::with_call_tools;
use crate::agent::{
    AgentTask, OnEnter, StallAction, TaskResults, ToolContext, ToolError, ToolResult, tools,
};
use crate::llm::{ChatContext, ChatRole};

/// Caller turns without a tool before a task asks its question again from code.
pub(crate) const STALL_TURNS: usize = 3;

/// The tool that cancels the item (also what an item the caller took off the order runs
/// as it comes back).
const CANCEL_ITEM: &str = "cancel_item";

/// The code-only tool an item brought back runs first with a small model.
const RECONSIDER_ITEM: &str = "reconsider_item";

/// The task's result: the item, or `None` when the caller changed their mind.
pub type ItemResult = Option<OrderItem>;

/// Builds the task for item `number`, given the results so far.
pub fn collect_order_item(
    flow: Arc<OrderFlow>,
    number: usize,
    results: &TaskResults,
) -> AgentTask<ItemResult> {
    let restaurant = flow.restaurant();
    let others: Vec<String> = flow
        .items_in(results)
        .filter(|(other, _)| *other != number)
        .map(|(_, item)| item.describe())
        .collect();
    let has_other_items = !others.is_empty();
    let order_so_far = if others.is_empty() {
        "nothing yet".to_string()
    } else {
        others.join("; ")
    };
    let number_text = number.to_string();
    let max_quantity = restaurant.limits.max_quantity.to_string();
    let categories = restaurant.category_list();
    let menu = restaurant.menu_list();
    let values = [
        ("menu", menu.as_str()),
        ("item_number", number_text.as_str()),
        ("order_so_far", order_so_far.as_str()),
        ("categories", categories.as_str()),
        ("max_quantity", max_quantity.as_str()),
    ];
    let instructions = fill(&restaurant.prompts.collect_order_item, &values);
    let enter = fill(&restaurant.prompts.collect_order_item_enter, &values);

    let say = match flow.dish_of(number) {
        Some(earlier) => fill(
            &restaurant.prompts.item_change_say,
            &[("item", earlier.as_str())],
        ),
        None if has_other_items => restaurant.prompts.item_next_say.clone(),
        None => restaurant.prompts.item_say.clone(),
    };
    let opening = if flow.removal_requested(number) {
        OnEnter::CallTool(CANCEL_ITEM.into())
    } else if restaurant.small_model && flow.dish_of(number).is_some() {
        OnEnter::CallTool(RECONSIDER_ITEM.into())
    } else {
        restaurant.opening(say.clone(), enter)
    };
    let task = AgentTask::new("CollectOrderItem", instructions)
        .on_enter(opening)
        .fills("confirm_item")
        .on_stall(
            STALL_TURNS,
            StallAction::Say(restaurant.prompts.item_stall.clone()),
        );
    with_call_tools(task, restaurant, flow.caller())
        .with_tools(CheckMenu(flow.restaurant_arc()))
        .with_tools(CollectOrderItem {
            flow: flow.clone(),
            number,
            has_other_items,
            change_question: say,
        })
}

/// The caller's last few turns, where the dish a small model fills in must have been
/// named.
fn recent_caller_words(chat: &ChatContext) -> String {
    let turns: Vec<&str> = chat
        .messages_from(ChatRole::User)
        .take(CALLER_TURNS_NAMING_A_DISH)
        .collect();
    turns.join(" ")
}

/// How many of the caller's last turns may name what is being confirmed (the dish, then
/// answers about quantity or more items).
const CALLER_TURNS_NAMING_A_DISH: usize = 3;

/// Item `number`'s step: what its tools need.
struct CollectOrderItem {
    flow: Arc<OrderFlow>,
    number: usize,
    has_other_items: bool,
    /// What the caller is asked when the item comes back to be changed.
    change_question: String,
}

#[tools(result = ItemResult)]
impl CollectOrderItem {
    /// Confirm this item once the caller has given the dish, quantity, modifications (or
    /// none) and whether they want more items.
    ///
    /// The price is not an argument: it comes from the menu.
    ///
    /// - `name`: the dish as named on the menu
    /// - `quantity`: how many portions
    /// - `modifications`: changes the caller asked for, such as "no garlic"; an empty list if none
    /// - `more_items`: whether the caller wants to order another item after this one
    #[tool(hidden_on_enter)]
    fn confirm_item(
        &self,
        ctx: &mut ToolContext<'_, ItemResult>,
        name: String,
        quantity: i64,
        modifications: Vec<String>,
        more_items: bool,
    ) -> ToolResult {
        let item = self.valid_item(&name, quantity, &modifications, ctx.chat_context())?;
        let more_items = more_items || self.caller_said_more_is_coming(ctx.chat_context());
        let summary = format!("{} at {} each", item.describe(), item.unit_price);
        if !ctx.complete(Some(item.clone())) {
            return Err(ToolError::Rejected(
                "this item is already confirmed; confirm one item at a time".into(),
            ));
        }
        self.flow
            .item_confirmed(self.number, &item, more_items)
            .map_err(|e| ToolError::Failed(e.to_string()))?;
        Ok(format!("Confirmed: {summary}."))
    }

    /// Cancel this item if the caller changed their mind about it.
    #[tool]
    fn cancel_item(&self, ctx: &mut ToolContext<'_, ItemResult>) -> ToolResult {
        if !ctx.complete(None) {
            return Err(ToolError::Rejected("this item is already settled".into()));
        }
        self.flow
            .item_cancelled(self.number, self.has_other_items)
            .map_err(|e| ToolError::Failed(e.to_string()))?;
        Ok("Item cancelled.".to_string())
    }

    /// Decide what an item brought back does first, from the caller's last words.
    ///
    /// Code runs it (small models only): a caller who asked to cancel this dish ("cancel
    /// the cheesecake") has it cancelled, even though the model went back to the item
    /// instead of calling `remove_item`; anyone else is asked what they want instead.
    #[tool(code_only)]
    fn reconsider_item(&self, ctx: &mut ToolContext<'_, ItemResult>) -> ToolResult {
        if self.caller_cancels_this_dish(ctx.chat_context()) {
            return self.cancel_item(ctx);
        }
        Err(ToolError::AskCaller {
            reason: "the caller wants to change this item; ask what they want instead".into(),
            question: self.change_question.clone(),
        })
    }
}

impl CollectOrderItem {
    /// Whether, with a small model, the caller's last turn says more items are coming
    /// (`prompts/more_items_words.md`).
    fn caller_said_more_is_coming(&self, chat: &ChatContext) -> bool {
        let restaurant = self.flow.restaurant();
        if !restaurant.small_model {
            return false;
        }
        chat.messages_from(ChatRole::User)
            .next()
            .is_some_and(|turn| mentions_any(turn, &restaurant.prompts.more_items_words))
    }

    /// Whether the caller's last turn asks to take this item's dish off the order
    /// (`prompts/cancel_words.md` and the dish's name).
    fn caller_cancels_this_dish(&self, chat: &ChatContext) -> bool {
        let restaurant = self.flow.restaurant();
        let Some(dish) = self.flow.dish_of(self.number) else {
            return false;
        };
        let Ok(item) = restaurant.menu.find_item(&dish) else {
            return false;
        };
        chat.messages_from(ChatRole::User)
            .next()
            .is_some_and(|turn| {
                item.is_named_in(turn) && mentions_any(turn, &restaurant.prompts.cancel_words)
            })
    }

    /// The item, checked against the menu and the limits; only a valid item completes the
    /// task.
    fn valid_item(
        &self,
        name: &str,
        quantity: i64,
        modifications: &[String],
        chat: &ChatContext,
    ) -> Result<OrderItem, ToolError> {
        let restaurant = self.flow.restaurant();
        let number = self.number;
        let dish = restaurant
            .menu
            .find_item(name)
            .map_err(|unknown| ToolError::Rejected(unknown.to_string()))?;
        if restaurant.small_model && !dish.is_named_in(&recent_caller_words(chat)) {
            return Err(ToolError::Rejected(format!(
                "the caller has not named {} for item {number}: ask them which dish they \
                 would like",
                dish.name()
            )));
        }
        if let Some(other) = self.flow.item_named(dish.name(), number) {
            return Err(ToolError::Rejected(format!(
                "{} is already item {other} of the order. Ask the caller which other dish \
                 they want as item {number}; to change how many {} they want, call \
                 out_of_scope for item {other}.",
                dish.name(),
                dish.name()
            )));
        }
        let quantity = u32::try_from(quantity).unwrap_or(0);
        let modifications: Vec<String> = modifications
            .iter()
            .map(|m| m.trim().to_string())
            .filter(|m| !m.is_empty() && !m.eq_ignore_ascii_case("none"))
            .collect();
        restaurant
            .limits
            .validate_item(quantity, &modifications)
            .map_err(|rule| ToolError::InvalidArguments(rule.to_string()))?;
        Ok(OrderItem {
            name: dish.name().to_string(),
            quantity,
            modifications,
            unit_price: dish.price(),
        })
    }
}
