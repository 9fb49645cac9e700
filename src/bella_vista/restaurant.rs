//! [`Restaurant`]: what every order at Bella Vista needs (the menu, the rules, the prompts,
//! the store), shared by every call a worker serves.

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use super::menu::Menu;
use super::order::OrderLimits;
use super::prompts::Prompts;
use super::store::OrderStore;
use crate::agent::OnEnter;

/// What every order needs: the menu, the rules, the prompts and the store.
pub struct Restaurant {
    /// The menu; prices come only from here.
    pub menu: Menu,
    /// Limits on quantities, modifications and tips.
    pub limits: OrderLimits,
    /// The instructions.
    pub prompts: Prompts,
    /// Where confirmed orders go.
    pub store: OrderStore,
    /// Where `transfer_to_staff` hands a phone caller (`tel:` or `sip:`); `None`: nowhere.
    pub transfer_to: Option<String>,
    /// Whether a small (local) model answers: each step then opens with a sentence said
    /// from code (`*_say.md`) instead of one the model writes, so its first words are
    /// always right and a model that repeats itself cannot derail the step.
    pub small_model: bool,
    /// The wall clock orders are stamped with (and their idempotency keys made from).
    pub clock: WallClock,
}

/// A wall clock: the system's, or one a test sets, so what an order is stamped with can be
/// pinned.
#[derive(Clone)]
pub struct WallClock(Arc<dyn Fn() -> SystemTime + Send + Sync>);

impl WallClock {
    /// The system clock.
    pub fn system() -> Self {
        WallClock(Arc::new(SystemTime::now))
    }

    /// A clock that reads `now`.
    pub fn from_fn(now: impl Fn() -> SystemTime + Send + Sync + 'static) -> Self {
        WallClock(Arc::new(now))
    }

    /// The time now.
    pub fn now(&self) -> SystemTime {
        (self.0)()
    }
}

impl Default for WallClock {
    fn default() -> Self {
        WallClock::system()
    }
}

impl fmt::Debug for WallClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WallClock")
    }
}

impl Restaurant {
    /// How a task opens: with `say` from code for a small model, else with a reply the
    /// model writes following `instructions`.
    pub fn opening(&self, say: String, instructions: String) -> OnEnter {
        if self.small_model {
            OnEnter::Say(say)
        } else {
            OnEnter::Reply(instructions)
        }
    }

    /// The menu's category names, for instructions.
    pub fn category_list(&self) -> String {
        let names: Vec<&str> = self.menu.categories().map(|c| c.name()).collect();
        names.join(", ")
    }

    /// The whole menu with prices, one category per line, for instructions where the
    /// model needs the exact dish names and prices at hand (a small model does not look
    /// them up).
    pub fn menu_list(&self) -> String {
        self.menu
            .categories()
            .map(|category| {
                let dishes: Vec<String> = category
                    .items()
                    .iter()
                    .map(|item| format!("{} {}", item.name(), item.price()))
                    .collect();
                format!("{}: {}", category.name(), dishes.join(", "))
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}
