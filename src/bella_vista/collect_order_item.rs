//! `CollectOrderItem`: one dish, its quantity and modifications, and whether more follow.

use std::sync::Arc;

use schemars::JsonSchema;
use serde::Deserialize;

use super::call_tools::with_call_tools;
use super::check_menu::check_menu;
use super::order::OrderItem;
use super::order_flow::{OrderFlow, describe_item, item_id};
use super::prompts::fill;
use crate::agent::{AgentTask, NoArgs, StallAction, TaskResults, ToolContext, ToolError, tool_fn};

/// Caller turns without a tool before a task asks its question again from code.
pub(crate) const STALL_TURNS: usize = 3;

/// The task's result: the item, or `None` when the caller changed their mind.
pub type ItemResult = Option<OrderItem>;

/// Arguments of `confirm_item`. The price is not an argument: it comes from the menu.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct ConfirmItemArgs {
    /// The dish as named on the menu.
    pub name: String,
    /// How many portions.
    pub quantity: i64,
    /// Changes the caller asked for, such as "no garlic"; an empty list if none.
    pub modifications: Vec<String>,
    /// Whether the caller wants to order another item after this one.
    pub more_items: bool,
}

/// Builds the task for item `number`, given the results so far.
pub fn collect_order_item(
    flow: Arc<OrderFlow>,
    number: usize,
    results: &TaskResults,
) -> AgentTask<ItemResult> {
    let restaurant = flow.restaurant();
    let own_id = item_id(number);
    let others: Vec<String> = results
        .values::<ItemResult>()
        .filter(|(id, _)| *id != own_id)
        .filter_map(|(_, item)| item.as_ref().map(describe_item))
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

    let confirm_flow = flow.clone();
    let cancel_flow = flow.clone();
    let say = if has_other_items {
        &restaurant.prompts.item_next_say
    } else {
        &restaurant.prompts.item_say
    };
    let opening = restaurant.opening(say.clone(), enter);
    let task = AgentTask::new("CollectOrderItem", instructions)
        .on_enter(opening)
        .fills("confirm_item")
        .on_stall(
            STALL_TURNS,
            StallAction::Say(restaurant.prompts.item_stall.clone()),
        );
    with_call_tools(task, restaurant, flow.caller())
        .with_tool(check_menu(restaurant_arc(&flow)))
        .with_tool(
            tool_fn(
                "confirm_item",
                "Confirm this item once the caller has given the dish, quantity, \
                 modifications (or none) and whether they want more items.",
                move |ctx: &mut ToolContext<'_, ItemResult>, args: ConfirmItemArgs| {
                    confirm_item(&confirm_flow, number, ctx, args)
                },
            )
            .hidden_on_enter(),
        )
        .with_tool(tool_fn(
            "cancel_item",
            "Cancel this item if the caller changed their mind about it.",
            move |ctx: &mut ToolContext<'_, ItemResult>, _: NoArgs| {
                if !ctx.complete(None) {
                    return Err(ToolError::Rejected("this item is already settled".into()));
                }
                cancel_flow
                    .item_cancelled(number, has_other_items)
                    .map_err(|e| ToolError::Failed(e.to_string()))?;
                Ok("Item cancelled.".to_string())
            },
        ))
}

fn restaurant_arc(flow: &Arc<OrderFlow>) -> Arc<super::order_flow::Restaurant> {
    flow.restaurant_arc()
}

/// Validates against the menu and the limits; only a valid item completes the task.
fn confirm_item(
    flow: &Arc<OrderFlow>,
    number: usize,
    ctx: &mut ToolContext<'_, ItemResult>,
    args: ConfirmItemArgs,
) -> Result<String, ToolError> {
    let restaurant = flow.restaurant();
    let dish = restaurant
        .menu
        .find_item(&args.name)
        .map_err(|unknown| ToolError::Rejected(unknown.to_string()))?;
    if let Some(other) = flow.item_named(dish.name(), number) {
        return Err(ToolError::Rejected(format!(
            "{} is already item {other} of the order. Ask the caller which other dish they \
             want as item {number}; to change how many {} they want, call out_of_scope for \
             item {other}.",
            dish.name(),
            dish.name()
        )));
    }
    let limits = &restaurant.limits;
    let quantity = u32::try_from(args.quantity).unwrap_or(0);
    let modifications: Vec<String> = args
        .modifications
        .iter()
        .map(|m| m.trim().to_string())
        .filter(|m| !m.is_empty() && !m.eq_ignore_ascii_case("none"))
        .collect();
    limits
        .validate_item(quantity, &modifications)
        .map_err(|rule| ToolError::InvalidArguments(rule.to_string()))?;
    let item = OrderItem {
        name: dish.name().to_string(),
        quantity,
        modifications,
        unit_price: dish.price(),
    };
    let summary = format!("{} at {} each", describe_item(&item), item.unit_price);
    if !ctx.complete(Some(item.clone())) {
        return Err(ToolError::Rejected(
            "this item is already confirmed; confirm one item at a time".into(),
        ));
    }
    flow.item_confirmed(number, &item, args.more_items)
        .map_err(|e| ToolError::Failed(e.to_string()))?;
    Ok(format!("Confirmed: {summary}."))
}
