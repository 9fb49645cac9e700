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

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use super::collect_order_item::{ItemResult, collect_order_item};
use super::collect_payment::collect_payment;
use super::order::{Order, OrderItem, Payment};
use super::restaurant::Restaurant;
use super::review_order::review_order;
use super::store::{OrderOrigin, StoredOrder};
use crate::agent::{
    CallerInfo, DependsOn, HandleError, TaskEntry, TaskGroup, TaskGroupHandle, TaskKey, TaskResults,
};

/// Id of the payment task.
pub const PAYMENT: &str = "payment";
/// Id of the read-back task.
pub const REVIEW: &str = "review";

/// One order in progress: the group it runs in and how to grow it.
pub struct OrderFlow {
    restaurant: Arc<Restaurant>,
    caller: Arc<CallerInfo>,
    group: TaskGroupHandle,
    idempotency_key: String,
    last_item: AtomicUsize,
    /// Every item task registered, by item number.
    items: Mutex<BTreeMap<usize, ItemSlot>>,
    /// Payment and the read-back, once the caller wants no more items.
    checkout: OnceLock<Checkout>,
}

/// The keys of the payment and read-back results.
struct Checkout {
    payment: TaskKey<Payment>,
    review: TaskKey<StoredOrder>,
}

/// One item task: the key of its result, its dish once confirmed, and whether the caller
/// asked to take it off the order.
struct ItemSlot {
    key: TaskKey<ItemResult>,
    dish: Option<String>,
    remove: bool,
}

impl OrderFlow {
    /// A new order's task group, starting with item 1.
    pub fn start(
        restaurant: Arc<Restaurant>,
        caller: Arc<CallerInfo>,
    ) -> (TaskGroup, Arc<OrderFlow>) {
        let group = TaskGroup::new().summary_instructions(restaurant.prompts.summary.clone());
        let idempotency_key = new_order_key(restaurant.clock.now());
        let flow = Arc::new(OrderFlow {
            restaurant,
            caller,
            group: group.handle(),
            idempotency_key,
            last_item: AtomicUsize::new(1),
            items: Mutex::default(),
            checkout: OnceLock::new(),
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

    /// The task for item `number` (named by its dish once confirmed); its key is kept.
    fn item_entry(
        self: &Arc<Self>,
        number: usize,
        item: Option<&OrderItem>,
    ) -> TaskEntry<ItemResult> {
        let description = match item {
            None => format!("Item {number} of the order"),
            Some(item) => format!("Item {number} of the order: {}", item.describe()),
        };
        let flow = self.clone();
        let entry = TaskEntry::new(item_id(number), description, move |results| {
            collect_order_item(flow.clone(), number, results)
        });
        let dish = item.map(|item| item.name.clone());
        let key = entry.key();
        self.items_mut().insert(
            number,
            ItemSlot {
                key,
                dish,
                remove: false,
            },
        );
        entry
    }

    /// The confirmed items of the order, in item order, with their numbers (cancelled
    /// ones leave no trace).
    pub fn items_in<'r>(
        &self,
        results: &'r TaskResults,
    ) -> impl Iterator<Item = (usize, &'r OrderItem)> {
        let keys: Vec<(usize, TaskKey<ItemResult>)> = self
            .items_mut()
            .iter()
            .map(|(number, slot)| (*number, slot.key.clone()))
            .collect();
        keys.into_iter().filter_map(|(number, key)| {
            let item = results.get(&key).ok()?.as_ref()?;
            Some((number, item))
        })
    }

    /// The whole order, once payment is known.
    pub fn order_in(&self, results: &TaskResults) -> Option<Order> {
        let payment = *results.get(&self.checkout.get()?.payment).ok()?;
        Some(Order {
            items: self
                .items_in(results)
                .map(|(_, item)| item.clone())
                .collect(),
            payment,
        })
    }

    /// The stored order, once the read-back placed it.
    pub fn stored_in<'r>(&self, results: &'r TaskResults) -> Option<&'r StoredOrder> {
        results.get(&self.checkout.get()?.review).ok()
    }

    /// After item `number` was confirmed: name it in its description (so the model can
    /// tell the items apart when the caller wants one changed) and grow the order.
    pub(crate) fn item_confirmed(
        self: &Arc<Self>,
        number: usize,
        item: &OrderItem,
        more_items: bool,
    ) -> Result<(), HandleError> {
        let _ = self.group.add(self.item_entry(number, Some(item)))?;
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
        if let Some(slot) = self.items_mut().get_mut(&number) {
            slot.dish = None;
            slot.remove = false;
        }
        let is_last = number == self.last_item.load(Ordering::SeqCst);
        if is_last && has_other_items {
            self.add_checkout()?;
        }
        Ok(())
    }

    /// The number of another confirmed item with the dish `name`, if any.
    pub(crate) fn item_named(&self, name: &str, except: usize) -> Option<usize> {
        self.items_mut()
            .iter()
            .find(|(number, slot)| **number != except && slot.dish.as_deref() == Some(name))
            .map(|(number, _)| *number)
    }

    /// Takes item `number` off the order: its task runs again and cancels itself from code
    /// (see [`OrderFlow::removal_requested`]), then payment re-enters with the new total.
    pub(crate) fn remove_item(&self, number: usize) -> Result<(), HandleError> {
        // The item's task is built again only after the running task ends, so marking it
        // after a successful regression is in time, and a refused one leaves no mark.
        self.group.regress_to(&[item_id(number).as_str()])?;
        if let Some(slot) = self.items_mut().get_mut(&number) {
            slot.remove = true;
        }
        Ok(())
    }

    /// Whether the caller asked to take item `number` off the order.
    pub(crate) fn removal_requested(&self, number: usize) -> bool {
        self.items_mut()
            .get(&number)
            .is_some_and(|slot| slot.remove)
    }

    /// The confirmed items' numbers and dishes, in item order.
    pub(crate) fn dishes(&self) -> Vec<(usize, String)> {
        self.items_mut()
            .iter()
            .filter_map(|(number, slot)| Some((*number, slot.dish.clone()?)))
            .collect()
    }

    /// The dish item `number` was confirmed with, if it was (the caller is changing it).
    pub(crate) fn dish_of(&self, number: usize) -> Option<String> {
        self.items_mut().get(&number)?.dish.clone()
    }

    fn items_mut(&self) -> MutexGuard<'_, BTreeMap<usize, ItemSlot>> {
        self.items.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds one more item task, before payment if payment is registered.
    pub(crate) fn add_item(self: &Arc<Self>) -> Result<(), HandleError> {
        let number = self.last_item.fetch_add(1, Ordering::SeqCst) + 1;
        let entry = self.item_entry(number, None);
        if self.checkout.get().is_some() {
            self.group.add_before(PAYMENT, entry)?;
        } else {
            self.group.add(entry)?;
        }
        Ok(())
    }

    /// Adds payment and the read-back after the items, once.
    fn add_checkout(self: &Arc<Self>) -> Result<(), HandleError> {
        if self.checkout.get().is_some() {
            return Ok(());
        }
        let flow = self.clone();
        let payment = self.group.add(
            TaskEntry::new(PAYMENT, "Payment method and tip", move |results| {
                let items: Vec<OrderItem> = flow
                    .items_in(results)
                    .map(|(_, item)| item.clone())
                    .collect();
                collect_payment(flow.clone(), &items)
            })
            .depends_on(DependsOn::AllBefore),
        )?;
        let flow = self.clone();
        let review = self.group.add(TaskEntry::new(
            REVIEW,
            "Final read-back and confirmation of the whole order",
            move |results| review_order(flow.clone(), flow.order_in(results)),
        ))?;
        let _ = self.checkout.set(Checkout { payment, review });
        Ok(())
    }
}

/// Group id of item `number`.
pub fn item_id(number: usize) -> String {
    format!("item_{number}")
}

/// A key unique to this order: the time it started, the process and a counter.
fn new_order_key(now: SystemTime) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{nanos:x}-{:x}-{count}", std::process::id())
}
