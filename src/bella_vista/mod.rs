//! Bella Vista: the restaurant application built on the framework: the menu, orders in
//! integer cents, the order-taking tasks, and the order store.
//!
//! [`order_taker()`] is the entry point: an [`Agent`](crate::agent::Agent) whose
//! `take_order` tool runs the order as a task group (see [`order_flow`]).

mod check_menu;
pub mod collect_order_item;
pub mod collect_payment;
pub mod delivery;
pub mod eval;
pub mod menu;
pub mod money;
pub mod order;
pub mod order_flow;
pub mod order_taker;
pub mod prompts;
pub mod reply_guard;
pub mod restaurant;
pub mod review_order;
mod shared_tools;
pub mod store;

pub use order_taker::{order_taker, order_taker_for};
pub use restaurant::{Restaurant, WallClock};
