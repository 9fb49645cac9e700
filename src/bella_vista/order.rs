//! The order being taken: items with quantities and modifications, payment, and the rules
//! that bound them. Totals are computed here, in cents, never by the LLM.

use std::fmt::{self, Write as _};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::bella_vista::money::Cents;

/// One line of an order. `unit_price` comes from the menu.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderItem {
    /// The menu name of the dish.
    pub name: String,
    /// How many portions.
    pub quantity: u32,
    /// Free-text changes such as "no onions", in the order given.
    pub modifications: Vec<String>,
    /// The menu price of one portion (`unit_price_cents` in JSON).
    #[serde(rename = "unit_price_cents")]
    pub unit_price: Cents,
}

/// How the caller pays. Read case-insensitively (`"Card"` is card); its schema is the
/// closed set `card`, `cash`, `mobile`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", try_from = "String")]
pub enum PaymentMethod {
    /// A credit or debit card.
    Card,
    /// Cash on pickup or delivery.
    Cash,
    /// A phone wallet.
    Mobile,
}

/// The payment choice: method and tip percentage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payment {
    /// How the caller pays.
    pub method: PaymentMethod,
    /// Tip as a whole percentage of the subtotal.
    pub tip_percent: u32,
}

/// A complete order: the items and how they are paid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    /// The order lines, in the order taken.
    pub items: Vec<OrderItem>,
    /// Payment method and tip.
    pub payment: Payment,
}

/// Bounds on what an order may contain; the defaults suit a phone order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OrderLimits {
    /// Largest quantity of one item (the smallest is 1). Default 20.
    pub max_quantity: u32,
    /// Most modifications on one item. Default 5.
    pub max_modifications: usize,
    /// Longest modification, in characters. Default 80.
    pub max_modification_chars: usize,
    /// Largest tip percentage (the smallest is 0). Default 50.
    pub max_tip_percent: u32,
}

/// An order that breaks a rule; the message is meant to be read by the LLM and the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrderRuleError {
    /// The quantity is 0 or above the limit.
    #[error("quantity must be between 1 and {max}, got {got}")]
    Quantity {
        /// The configured maximum.
        max: u32,
        /// The quantity asked for.
        got: u32,
    },
    /// Too many modifications on one item.
    #[error("at most {max} modifications per item, got {got}")]
    TooManyModifications {
        /// The configured maximum.
        max: usize,
        /// How many were given.
        got: usize,
    },
    /// A modification is blank.
    #[error("a modification must not be empty")]
    EmptyModification,
    /// A modification is too long.
    #[error("a modification may have at most {max} characters, got {got}: {modification:?}")]
    ModificationTooLong {
        /// The configured maximum.
        max: usize,
        /// Its length in characters.
        got: usize,
        /// The modification as given.
        modification: String,
    },
    /// The tip percentage is above the limit.
    #[error("tip must be between 0% and {max}%, got {got}%")]
    Tip {
        /// The configured maximum.
        max: u32,
        /// The percentage asked for.
        got: u32,
    },
    /// Not one of the accepted payment methods.
    #[error("{given:?} is not a payment method; choose card, cash or mobile")]
    UnknownPaymentMethod {
        /// The method as given.
        given: String,
    },
}

impl OrderItem {
    /// `unit_price * quantity` (saturating; limits keep it far from overflow).
    pub fn line_total(&self) -> Cents {
        self.unit_price.saturating_mul(self.quantity)
    }

    /// `2 x Bruschetta (no garlic)`: the item as instructions and summaries name it.
    pub fn describe(&self) -> String {
        if self.modifications.is_empty() {
            format!("{} x {}", self.quantity, self.name)
        } else {
            format!(
                "{} x {} ({})",
                self.quantity,
                self.name,
                self.modifications.join(", ")
            )
        }
    }
}

impl PaymentMethod {
    /// Every method, in the order offered to callers.
    pub const ALL: [PaymentMethod; 3] = [
        PaymentMethod::Card,
        PaymentMethod::Cash,
        PaymentMethod::Mobile,
    ];

    /// The lowercase name: `card`, `cash` or `mobile`.
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentMethod::Card => "card",
            PaymentMethod::Cash => "cash",
            PaymentMethod::Mobile => "mobile",
        }
    }

    /// Words a caller uses for this method.
    fn spoken_words(self) -> &'static [&'static str] {
        match self {
            PaymentMethod::Card => &["card", "credit", "debit", "visa", "mastercard", "amex"],
            PaymentMethod::Cash => &["cash"],
            PaymentMethod::Mobile => &["mobile", "phone", "apple", "google", "wallet"],
        }
    }

    /// Whether `text` (what a caller said) names this method. What a small model fills in
    /// for the method is checked against it, so a method nobody chose is not guessed.
    pub fn is_named_in(self, text: &str) -> bool {
        let text = text.to_lowercase();
        text.split(|c: char| !c.is_alphanumeric())
            .any(|word| self.spoken_words().contains(&word))
    }
}

impl fmt::Display for PaymentMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TryFrom<String> for PaymentMethod {
    type Error = OrderRuleError;

    fn try_from(text: String) -> Result<PaymentMethod, OrderRuleError> {
        text.parse()
    }
}

impl schemars::JsonSchema for PaymentMethod {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "PaymentMethod".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "enum": PaymentMethod::ALL.map(PaymentMethod::as_str),
        })
    }
}

impl FromStr for PaymentMethod {
    type Err = OrderRuleError;

    /// Case-insensitive, surrounding spaces ignored: `" Card "` is [`PaymentMethod::Card`].
    fn from_str(text: &str) -> Result<PaymentMethod, OrderRuleError> {
        let wanted = text.trim();
        PaymentMethod::ALL
            .into_iter()
            .find(|m| m.as_str().eq_ignore_ascii_case(wanted))
            .ok_or_else(|| OrderRuleError::UnknownPaymentMethod {
                given: wanted.to_owned(),
            })
    }
}

impl Order {
    /// The sum of the line totals.
    pub fn subtotal(&self) -> Cents {
        self.items.iter().map(OrderItem::line_total).sum()
    }

    /// The tip: `tip_percent` of the subtotal, rounded half up to the cent.
    pub fn tip(&self) -> Cents {
        self.subtotal().percent_of(self.payment.tip_percent)
    }

    /// Subtotal plus tip.
    pub fn total(&self) -> Cents {
        self.subtotal().saturating_add(self.tip())
    }

    /// The order as one spoken sentence: "2 Tiramisu; 1 Grilled Salmon, sauce on the side.
    /// The total is $61.36 with an 18% tip, paid by card."
    pub fn spoken(&self) -> String {
        let items: Vec<String> = self
            .items
            .iter()
            .map(|item| {
                let mut line = format!("{} {}", item.quantity, item.name);
                if !item.modifications.is_empty() {
                    let _ = write!(line, ", {}", item.modifications.join(", "));
                }
                line
            })
            .collect();
        let tip = match self.payment.tip_percent {
            0 => String::new(),
            percent => format!(" with a {percent}% tip"),
        };
        format!(
            "{}. The total is {}{tip}, paid by {}.",
            items.join("; "),
            self.total(),
            self.payment.method
        )
    }

    /// A plain-text summary, one fact per line, for the agent to read back before confirming.
    ///
    /// ```text
    /// 2 x Grilled Salmon ($28.00 each), no lemon: $56.00
    /// 1 x Tiramisu: $10.00
    /// Subtotal: $66.00
    /// Tip (18%): $11.88
    /// Total: $77.88
    /// Payment: card
    /// ```
    pub fn read_back(&self) -> String {
        let mut text = String::new();
        if self.items.is_empty() {
            text.push_str("No items yet.\n");
        }
        for item in &self.items {
            let _ = write!(text, "{} x {}", item.quantity, item.name);
            if item.quantity != 1 {
                let _ = write!(text, " ({} each)", item.unit_price);
            }
            if !item.modifications.is_empty() {
                let _ = write!(text, ", {}", item.modifications.join(", "));
            }
            let _ = writeln!(text, ": {}", item.line_total());
        }
        let _ = writeln!(text, "Subtotal: {}", self.subtotal());
        let _ = writeln!(text, "Tip ({}%): {}", self.payment.tip_percent, self.tip());
        let _ = writeln!(text, "Total: {}", self.total());
        let _ = write!(text, "Payment: {}", self.payment.method);
        text
    }
}

impl Default for OrderLimits {
    fn default() -> OrderLimits {
        OrderLimits {
            max_quantity: 20,
            max_modifications: 5,
            max_modification_chars: 80,
            max_tip_percent: 50,
        }
    }
}

impl OrderLimits {
    /// Checks one item's quantity (1..=max) and modifications (count, non-blank, length).
    pub fn validate_item(
        &self,
        quantity: u32,
        modifications: &[String],
    ) -> Result<(), OrderRuleError> {
        if quantity == 0 || quantity > self.max_quantity {
            return Err(OrderRuleError::Quantity {
                max: self.max_quantity,
                got: quantity,
            });
        }
        if modifications.len() > self.max_modifications {
            return Err(OrderRuleError::TooManyModifications {
                max: self.max_modifications,
                got: modifications.len(),
            });
        }
        for modification in modifications {
            if modification.trim().is_empty() {
                return Err(OrderRuleError::EmptyModification);
            }
            let chars = modification.chars().count();
            if chars > self.max_modification_chars {
                return Err(OrderRuleError::ModificationTooLong {
                    max: self.max_modification_chars,
                    got: chars,
                    modification: modification.clone(),
                });
            }
        }
        Ok(())
    }

    /// Checks a tip percentage (0..=max).
    pub fn validate_tip(&self, percent: u32) -> Result<(), OrderRuleError> {
        if percent > self.max_tip_percent {
            return Err(OrderRuleError::Tip {
                max: self.max_tip_percent,
                got: percent,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(name: &str, quantity: u32, modifications: &[&str], cents: u64) -> OrderItem {
        OrderItem {
            name: name.to_owned(),
            quantity,
            modifications: modifications.iter().map(|m| (*m).to_owned()).collect(),
            unit_price: Cents(cents),
        }
    }

    fn sample() -> Order {
        Order {
            items: vec![
                item(
                    "Grilled Salmon",
                    2,
                    &["no lemon", "sauce on the side"],
                    2800,
                ),
                item("Tiramisu", 1, &[], 1000),
            ],
            payment: Payment {
                method: PaymentMethod::Card,
                tip_percent: 18,
            },
        }
    }

    #[test]
    fn totals_are_computed_in_cents() {
        let order = sample();
        assert_eq!(order.items[0].line_total(), Cents(5600));
        assert_eq!(order.subtotal(), Cents(6600));
        assert_eq!(order.tip(), Cents(1188));
        assert_eq!(order.total(), Cents(7788));
    }

    #[test]
    fn tip_rounds_half_up() {
        let order = Order {
            items: vec![item("Bruschetta", 1, &[], 4700)],
            payment: Payment {
                method: PaymentMethod::Cash,
                tip_percent: 18,
            },
        };
        assert_eq!(order.tip(), Cents(846));
        assert_eq!(order.total(), Cents(5546));
    }

    #[test]
    fn reads_back_every_line() {
        assert_eq!(
            sample().read_back(),
            "2 x Grilled Salmon ($28.00 each), no lemon, sauce on the side: $56.00\n\
             1 x Tiramisu: $10.00\n\
             Subtotal: $66.00\n\
             Tip (18%): $11.88\n\
             Total: $77.88\n\
             Payment: card"
        );
    }

    #[test]
    fn item_json_uses_unit_price_cents() {
        let json = serde_json::to_value(item("Tiramisu", 1, &["extra cocoa"], 1000));
        assert_eq!(
            json.ok(),
            Some(serde_json::json!({
                "name": "Tiramisu",
                "quantity": 1,
                "modifications": ["extra cocoa"],
                "unit_price_cents": 1000
            }))
        );
    }

    #[test]
    fn a_payment_method_is_named_by_the_words_callers_use() {
        assert!(PaymentMethod::Card.is_named_in("By card, with an 18% tip."));
        assert!(PaymentMethod::Card.is_named_in("Visa please"));
        assert!(PaymentMethod::Cash.is_named_in("Cash, no tip."));
        assert!(PaymentMethod::Mobile.is_named_in("I'll pay with my phone"));
        assert!(!PaymentMethod::Cash.is_named_in("No tip, thanks."));
        assert!(!PaymentMethod::Card.is_named_in("An eighteen percent tip, please."));
        assert!(
            !PaymentMethod::Card.is_named_in("discard that"),
            "whole words only"
        );
    }

    #[test]
    fn payment_method_parses_case_insensitively() {
        assert_eq!("CARD".parse(), Ok(PaymentMethod::Card));
        assert_eq!(" cash ".parse(), Ok(PaymentMethod::Cash));
        assert_eq!("Mobile".parse(), Ok(PaymentMethod::Mobile));
        let e = "bitcoin"
            .parse::<PaymentMethod>()
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some("\"bitcoin\" is not a payment method; choose card, cash or mobile")
        );
        assert_eq!(PaymentMethod::Mobile.to_string(), "mobile");
        assert_eq!(
            serde_json::to_string(&PaymentMethod::Card).ok().as_deref(),
            Some("\"card\"")
        );
    }

    #[test]
    fn limits_bound_items() {
        let limits = OrderLimits::default();
        let mods = |v: &[&str]| v.iter().map(|m| (*m).to_owned()).collect::<Vec<_>>();
        assert_eq!(limits.validate_item(1, &[]), Ok(()));
        assert_eq!(limits.validate_item(20, &mods(&["no onions"])), Ok(()));
        assert_eq!(
            limits.validate_item(0, &[]).map_err(|e| e.to_string()),
            Err("quantity must be between 1 and 20, got 0".to_owned())
        );
        assert!(matches!(
            limits.validate_item(21, &[]),
            Err(OrderRuleError::Quantity { max: 20, got: 21 })
        ));
        assert!(matches!(
            limits.validate_item(1, &mods(&["a", "b", "c", "d", "e", "f"])),
            Err(OrderRuleError::TooManyModifications { max: 5, got: 6 })
        ));
        assert_eq!(
            limits.validate_item(1, &mods(&["  "])),
            Err(OrderRuleError::EmptyModification)
        );
        let long = "é".repeat(81);
        assert!(matches!(
            limits.validate_item(1, &[long]),
            Err(OrderRuleError::ModificationTooLong {
                max: 80,
                got: 81,
                ..
            })
        ));
        assert_eq!(limits.validate_item(1, &["é".repeat(80)]), Ok(()));
    }

    #[test]
    fn limits_bound_the_tip() {
        let limits = OrderLimits::default();
        assert_eq!(limits.validate_tip(0), Ok(()));
        assert_eq!(limits.validate_tip(50), Ok(()));
        assert_eq!(
            limits.validate_tip(51).map_err(|e| e.to_string()),
            Err("tip must be between 0% and 50%, got 51%".to_owned())
        );
    }

    #[test]
    fn limits_deserialize_with_defaults() {
        let limits: Result<OrderLimits, _> = toml::from_str("max_quantity = 10");
        assert_eq!(
            limits.ok(),
            Some(OrderLimits {
                max_quantity: 10,
                ..OrderLimits::default()
            })
        );
    }
}
