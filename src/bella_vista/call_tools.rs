//! Tools that act on the call itself, offered by the order taker and by every order task
//! (so "that's all, bye" or "can I talk to a person?" works at any point):
//! `end_call()` and `transfer_to_staff()`. Both are withheld while a task enters, and both
//! say their sentence from code, so the caller hears exactly what happens.

use std::future::Future;
use std::sync::Arc;

use super::order_flow::Restaurant;
use crate::agent::{AgentTask, CallerInfo, NoArgs, Tool, ToolContext, ToolError, TransferError};

/// Adds `end_call` and `transfer_to_staff` to `task`.
pub fn with_call_tools<T: Send + 'static>(
    task: AgentTask<T>,
    restaurant: &Restaurant,
    caller: &Arc<CallerInfo>,
) -> AgentTask<T> {
    task.with_tool(EndCall {
        goodbye: restaurant.prompts.goodbye.clone(),
    })
    .with_tool(TransferToStaff {
        caller: caller.clone(),
        to: restaurant.transfer_to.clone(),
        transferring: restaurant.prompts.transferring.clone(),
        failed: restaurant.prompts.transfer_failed.clone(),
    })
}

/// `end_call()`: says goodbye and hangs up once the goodbye has played. An order not yet
/// confirmed is not placed.
struct EndCall {
    goodbye: String,
}

impl<T: Send + 'static> Tool<T> for EndCall {
    type Args = NoArgs;

    fn name(&self) -> &str {
        "end_call"
    }

    fn description(&self) -> String {
        "End the phone call, when the caller has nothing more to order or ask and says \
         goodbye, or asks to hang up. The goodbye is said for you. An order that was not \
         confirmed yet is not placed."
            .into()
    }

    fn hidden_on_enter(&self) -> bool {
        true
    }

    fn call(
        &self,
        ctx: &mut ToolContext<'_, T>,
        _: NoArgs,
    ) -> impl Future<Output = Result<String, ToolError>> + Send {
        ctx.say(self.goodbye.clone());
        ctx.hang_up();
        std::future::ready(Ok("The call is ending.".to_string()))
    }
}

/// `transfer_to_staff()`: hands a phone caller to the restaurant's staff number. The caller
/// hears that they are being transferred; if it fails they hear so and the call goes on.
struct TransferToStaff {
    caller: Arc<CallerInfo>,
    to: Option<String>,
    transferring: String,
    failed: String,
}

impl<T: Send + 'static> Tool<T> for TransferToStaff {
    type Args = NoArgs;

    fn name(&self) -> &str {
        "transfer_to_staff"
    }

    fn description(&self) -> String {
        "Transfer the caller to a member of the restaurant's staff, when they ask for a \
         person or you cannot help them. What to say is said for you."
            .into()
    }

    fn hidden_on_enter(&self) -> bool {
        true
    }

    fn call(
        &self,
        ctx: &mut ToolContext<'_, T>,
        _: NoArgs,
    ) -> impl Future<Output = Result<String, ToolError>> + Send {
        let target = if !self.caller.is_phone() {
            Err(ToolError::Rejected(
                "this caller is not on the telephone, so they cannot be transferred. Tell \
                 them you cannot put them through and offer to help them yourself."
                    .into(),
            ))
        } else {
            self.to.clone().ok_or_else(|| {
                ToolError::Rejected(
                    "no staff number is set up for transfers. Tell the caller nobody can \
                     take the call right now and offer to help them yourself."
                        .into(),
                )
            })
        };
        let transferring = self.transferring.clone();
        let failed = self.failed.clone();
        async move {
            let to = target?;
            ctx.say(transferring);
            match ctx.transfer(&to).await {
                Ok(()) => Ok("The caller was transferred to staff.".into()),
                Err(TransferError::SessionClosed) => Err(ToolError::Failed(
                    "the call ended during the transfer".into(),
                )),
                Err(TransferError::Failed(reason)) => {
                    tracing::warn!(%reason, to, "transfer to staff failed");
                    ctx.say(failed);
                    Err(ToolError::Rejected(
                        "the transfer did not work, and the caller has just been told so. \
                         Do not say it again: go on helping them."
                            .into(),
                    ))
                }
            }
        }
    }
}
