//! `CollectPayment`: the payment method and the tip, for the current subtotal.

use std::sync::Arc;

use super::collect_order_item::STALL_TURNS;
use super::money::Cents;
use super::order::{OrderItem, OrderLimits, Payment, PaymentMethod};
use super::order_flow::OrderFlow;
use super::prompts::fill;
use super::shared_tools::{AddItem, RemoveItem, with_call_tools};
use crate::agent::{AgentTask, StallAction, ToolContext, ToolError, ToolResult, tools};
use crate::llm::ChatRole;

/// Builds the payment task for these items.
pub fn collect_payment(flow: Arc<OrderFlow>, items: &[OrderItem]) -> AgentTask<Payment> {
    let restaurant = flow.restaurant();
    let subtotal: Cents = items.iter().map(OrderItem::line_total).sum();
    let described: Vec<String> = items.iter().map(OrderItem::describe).collect();
    let order_so_far = described.join("; ");
    let subtotal_text = subtotal.to_string();
    let values = [
        ("order_so_far", order_so_far.as_str()),
        ("subtotal", subtotal_text.as_str()),
    ];
    let instructions = fill(&restaurant.prompts.collect_payment, &values);
    let enter = fill(&restaurant.prompts.collect_payment_enter, &values);
    let say = fill(&restaurant.prompts.payment_say, &values);
    let task = AgentTask::new("CollectPayment", instructions)
        .on_enter(restaurant.opening(say, enter))
        .fills("confirm_payment")
        .on_stall(
            STALL_TURNS,
            StallAction::Say(restaurant.prompts.payment_stall.clone()),
        );
    with_call_tools(task, restaurant, flow.caller())
        .with_tools(CollectPayment {
            subtotal,
            limits: restaurant.limits,
            small_model: restaurant.small_model,
            ask_method: restaurant.prompts.payment_stall.clone(),
        })
        .with_tools(AddItem(flow.clone()))
        .with_tools(RemoveItem(flow))
}

/// The payment step's state: what its tools need.
struct CollectPayment {
    subtotal: Cents,
    limits: OrderLimits,
    /// Whether what the model fills in is checked against the caller's words.
    small_model: bool,
    /// What the caller is asked, from code, when the model filled in a payment method
    /// they never named.
    ask_method: String,
}

#[tools(result = Payment)]
impl CollectPayment {
    /// Confirm how the caller pays and the tip, once they said both.
    ///
    /// - `method`: how the caller pays: card, cash or mobile
    /// - `tip_percentage`: tip in percent of the subtotal (for example 15, 18 or 20); 0 for no tip
    #[tool(hidden_on_enter)]
    fn confirm_payment(
        &self,
        ctx: &mut ToolContext<'_, Payment>,
        method: PaymentMethod,
        tip_percentage: f64,
    ) -> ToolResult {
        // Callers often say how they pay in their first sentence: the whole call counts.
        if self.small_model {
            let said: Vec<&str> = ctx.chat_context().messages_from(ChatRole::User).collect();
            if !method.is_named_in(&said.join(" ")) {
                return Err(ToolError::AskCaller {
                    reason: "the caller has not said how they pay".into(),
                    question: self.ask_method.clone(),
                });
            }
        }
        let tip_percent = whole_percent(tip_percentage, self.limits.max_tip_percent)?;
        self.limits
            .validate_tip(tip_percent)
            .map_err(|e| ToolError::InvalidArguments(e.to_string()))?;
        let tip = self.subtotal.percent_of(tip_percent);
        ctx.complete(Payment {
            method,
            tip_percent,
        });
        let total = self.subtotal.saturating_add(tip);
        Ok(format!(
            "Payment confirmed: {method}, tip {tip_percent}% ({tip}), total {total}."
        ))
    }
}

/// The tip as a whole percentage within `0..=max`.
fn whole_percent(value: f64, max: u32) -> Result<u32, ToolError> {
    let out_of_range = || {
        ToolError::InvalidArguments(format!(
            "tip must be between 0 and {max} percent, got {value}"
        ))
    };
    if !value.is_finite() || value < 0.0 || value > f64::from(max) {
        return Err(out_of_range());
    }
    if value.fract() != 0.0 {
        return Err(ToolError::InvalidArguments(format!(
            "tip must be a whole percentage, got {value}"
        )));
    }
    // In range and whole, so the conversion is exact.
    Ok(value as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tips_must_be_whole_and_in_range() {
        assert_eq!(whole_percent(18.0, 50), Ok(18));
        assert!(whole_percent(-5.0, 50).is_err());
        assert!(whole_percent(17.5, 50).is_err());
        assert!(whole_percent(51.0, 50).is_err());
        assert!(whole_percent(f64::NAN, 50).is_err());
    }
}
