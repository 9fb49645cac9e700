//! How one order runs as a task group: `item_1`, `item_2`, ... then `payment` then
//! `review`, and the rules that grow it as the caller decides.
//!
//! - `confirm_item(.., more_items)` on the last item adds the next item (before `payment`
//!   if the caller is already past it), or, when no more items are wanted, adds `payment`
//!   and `review`.
//! - `payment` depends on every task before it, so changing or adding an item after
//!   payment re-enters payment with the new total; items that did not change are not
//!   asked again.
//! - `review` reads the order back; `confirm_order` stores it exactly once.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use super::collect_order_item::collect_order_item;
use super::collect_payment::collect_payment;
use super::menu::Menu;
use super::order::{Order, OrderItem, OrderLimits, Payment};
use super::prompts::Prompts;
use super::review_order::review_order;
use super::store::{OrderOrigin, OrderStore};
use crate::agent::{
    CallerInfo, DependsOn, HandleError, OnEnter, TaskEntry, TaskGroup, TaskGroupHandle, TaskResults,
};

/// Id of the payment task.
pub const PAYMENT: &str = "payment";
/// Id of the read-back task.
pub const REVIEW: &str = "review";

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
}

impl Restaurant {
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

/// One order in progress: the group it runs in and how to grow it.
pub struct OrderFlow {
    restaurant: Arc<Restaurant>,
    caller: Arc<CallerInfo>,
    group: TaskGroupHandle,
    idempotency_key: String,
    last_item: AtomicUsize,
    /// The dish of each confirmed item, by item number.
    dishes: std::sync::Mutex<std::collections::BTreeMap<usize, String>>,
}

impl OrderFlow {
    /// A new order's task group, starting with item 1.
    pub fn start(
        restaurant: Arc<Restaurant>,
        caller: Arc<CallerInfo>,
    ) -> (TaskGroup, Arc<OrderFlow>) {
        let group = TaskGroup::new().summary_instructions(restaurant.prompts.summary.clone());
        let flow = Arc::new(OrderFlow {
            restaurant,
            caller,
            group: group.handle(),
            idempotency_key: new_order_key(),
            last_item: AtomicUsize::new(1),
            dishes: std::sync::Mutex::default(),
        });
        let group = group.add(flow.item_entry(1, None));
        (group, flow)
    }

    /// The restaurant this order is for.
    pub fn restaurant(&self) -> &Restaurant {
        &self.restaurant
    }

    /// The restaurant, shared.
    pub fn restaurant_arc(&self) -> Arc<Restaurant> {
        self.restaurant.clone()
    }

    /// The caller's phone number, when the call came by phone.
    pub fn caller_phone(&self) -> Option<&str> {
        self.caller.phone()
    }

    /// Where this order comes from, as stored with it.
    pub fn origin(&self) -> OrderOrigin {
        OrderOrigin {
            caller_phone: self.caller.phone().map(str::to_string),
            room: self.caller.room().map(str::to_string),
            agent_id: self.caller.agent_identity().map(str::to_string),
        }
    }

    /// Who is calling.
    pub fn caller(&self) -> &Arc<CallerInfo> {
        &self.caller
    }

    /// The key that makes storing this order idempotent.
    pub fn idempotency_key(&self) -> &str {
        &self.idempotency_key
    }

    fn item_entry(self: &Arc<Self>, number: usize, item: Option<&OrderItem>) -> TaskEntry {
        let description = match item {
            None => format!("Item {number} of the order"),
            Some(item) => format!("Item {number} of the order: {}", describe_item(item)),
        };
        let flow = self.clone();
        TaskEntry::new(item_id(number), description, move |results| {
            collect_order_item(flow.clone(), number, results)
        })
    }

    /// After item `number` was confirmed: name it in its description (so the model can
    /// tell the items apart when the caller wants one changed) and grow the order.
    pub(crate) fn item_confirmed(
        self: &Arc<Self>,
        number: usize,
        item: &OrderItem,
        more_items: bool,
    ) -> Result<(), HandleError> {
        self.dishes_mut().insert(number, item.name.clone());
        self.group.add(self.item_entry(number, Some(item)))?;
        let is_last = number == self.last_item.load(Ordering::SeqCst);
        match (more_items, is_last) {
            (true, true) => self.add_item(),
            (false, _) => self.add_checkout(),
            (true, false) => Ok(()),
        }
    }

    /// After item `number` was cancelled: if it was the last one, go on to payment when
    /// the order has other items; with no items at all the group simply ends.
    pub(crate) fn item_cancelled(
        self: &Arc<Self>,
        number: usize,
        has_other_items: bool,
    ) -> Result<(), HandleError> {
        self.dishes_mut().remove(&number);
        let is_last = number == self.last_item.load(Ordering::SeqCst);
        if is_last && has_other_items {
            self.add_checkout()?;
        }
        Ok(())
    }

    /// The number of another confirmed item with the dish `name`, if any.
    pub(crate) fn item_named(&self, name: &str, except: usize) -> Option<usize> {
        self.dishes_mut()
            .iter()
            .find(|(number, dish)| **number != except && dish.as_str() == name)
            .map(|(number, _)| *number)
    }

    fn dishes_mut(&self) -> std::sync::MutexGuard<'_, std::collections::BTreeMap<usize, String>> {
        self.dishes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Adds one more item task, before payment if payment is registered.
    pub(crate) fn add_item(self: &Arc<Self>) -> Result<(), HandleError> {
        let number = self.last_item.fetch_add(1, Ordering::SeqCst) + 1;
        let entry = self.item_entry(number, None);
        if self.group.contains(PAYMENT) {
            self.group.add_before(PAYMENT, entry)
        } else {
            self.group.add(entry)
        }
    }

    fn add_checkout(self: &Arc<Self>) -> Result<(), HandleError> {
        if self.group.contains(PAYMENT) {
            return Ok(());
        }
        let flow = self.clone();
        self.group.add(
            TaskEntry::new(PAYMENT, "Payment method and tip", move |results| {
                collect_payment(flow.clone(), &items_in(results))
            })
            .depends_on(DependsOn::AllBefore),
        )?;
        let flow = self.clone();
        self.group.add(TaskEntry::new(
            REVIEW,
            "Final read-back and confirmation of the whole order",
            move |results| review_order(flow.clone(), order_in(results)),
        ))
    }
}

/// Group id of item `number`.
pub fn item_id(number: usize) -> String {
    format!("item_{number}")
}

/// The items in the order so far (cancelled ones leave no trace), in order.
pub fn items_in(results: &TaskResults) -> Vec<OrderItem> {
    results
        .values::<Option<OrderItem>>()
        .filter_map(|(_, item)| item.clone())
        .collect()
}

/// The whole order, once payment is known.
pub fn order_in(results: &TaskResults) -> Option<Order> {
    let payment = *results.get::<Payment>(PAYMENT).ok()?;
    Some(Order {
        items: items_in(results),
        payment,
    })
}

/// `2 x Bruschetta (no garlic)`.
pub fn describe_item(item: &OrderItem) -> String {
    if item.modifications.is_empty() {
        format!("{} x {}", item.quantity, item.name)
    } else {
        format!(
            "{} x {} ({})",
            item.quantity,
            item.name,
            item.modifications.join(", ")
        )
    }
}

/// A key unique to this order: time, process and a counter.
fn new_order_key() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{nanos:x}-{:x}-{count}", std::process::id())
}
