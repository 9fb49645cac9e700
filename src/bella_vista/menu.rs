//! The restaurant's menu, loaded from `config/menu.toml`: categories of dishes with exact prices.
//!
//! Prices come from here and never from the LLM. Lookups are forgiving about case, spacing
//! and a trailing plural "s"; an unknown dish gets an error listing the closest menu names.

use std::collections::HashSet;
use std::fmt;
use std::path::Path;

use serde::Deserialize;

use crate::bella_vista::money::Cents;

/// Names scoring below this similarity (0..=1) are never suggested.
const SIMILAR: f64 = 0.45;
/// Names scoring this much below the best one are left out as distractions.
const MARGIN: f64 = 0.15;
/// The similarity of a word found inside another, such as "cake" in "cheesecake".
const CONTAINED: f64 = 0.75;
/// At most this many suggestions.
const MAX_SUGGESTIONS: usize = 3;

/// The whole menu: categories in the order the file lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Menu {
    categories: Vec<Category>,
}

/// A named group of dishes, such as "mains".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Category {
    name: String,
    items: Vec<MenuItem>,
}

/// One dish with its price.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MenuItem {
    name: String,
    price: Cents,
    description: Option<String>,
}

/// Why a menu could not be loaded. `origin` is the file path, or `<inline>` for text.
#[derive(Debug, thiserror::Error)]
pub enum MenuError {
    /// The file could not be read.
    #[error("cannot read menu file {}: {source}", path.display())]
    Read {
        /// The menu file.
        path: std::path::PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// The text is not valid TOML or does not have the menu's shape.
    #[error("menu {origin} is not a valid menu: {source}")]
    Syntax {
        /// Where the menu came from.
        origin: String,
        /// The parser's complaint, with line and column.
        source: toml::de::Error,
    },
    /// A dish's price is not an exact dollar amount.
    #[error("menu {origin}: dish {item:?} has a bad price {price}: {reason}")]
    BadPrice {
        /// Where the menu came from.
        origin: String,
        /// The dish.
        item: String,
        /// The price as written.
        price: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Two dishes have the same name (ignoring case and spacing).
    #[error("menu {origin}: dish {name:?} is listed more than once")]
    DuplicateItem {
        /// Where the menu came from.
        origin: String,
        /// The repeated name.
        name: String,
    },
    /// Two categories have the same name (ignoring case and spacing).
    #[error("menu {origin}: category {name:?} is listed more than once")]
    DuplicateCategory {
        /// Where the menu came from.
        origin: String,
        /// The repeated name.
        name: String,
    },
    /// A category or dish has a blank name.
    #[error("menu {origin}: {what} has an empty name")]
    EmptyName {
        /// Where the menu came from.
        origin: String,
        /// Which entry, e.g. `a dish in "mains"`.
        what: String,
    },
    /// The menu has no dishes at all.
    #[error("menu {origin} has no dishes")]
    NoItems {
        /// Where the menu came from.
        origin: String,
    },
}

/// A category name that is not on the menu.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("there is no {requested:?} category; the categories are {}", available.join(", "))]
pub struct UnknownCategory {
    /// The name asked for.
    pub requested: String,
    /// The menu's categories, in menu order.
    pub available: Vec<String>,
}

/// A dish that is not on the menu, with the closest menu names (best first, at most three).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownItem {
    /// The name asked for, trimmed.
    pub requested: String,
    /// Close menu names, best first; empty when nothing is similar.
    pub suggestions: Vec<String>,
}

impl fmt::Display for UnknownItem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} is not on the menu", self.requested)?;
        if !self.suggestions.is_empty() {
            write!(f, "; closest: {}", self.suggestions.join(", "))?;
        }
        Ok(())
    }
}

impl std::error::Error for UnknownItem {}

impl Menu {
    /// Parses a menu from TOML text (the layout of `config/menu.toml`).
    pub fn from_toml_str(text: &str) -> Result<Menu, MenuError> {
        Menu::parse(text, "<inline>")
    }

    /// Reads and parses a menu file; errors name the file.
    pub fn load(path: &Path) -> Result<Menu, MenuError> {
        let text = std::fs::read_to_string(path).map_err(|source| MenuError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Menu::parse(&text, &path.display().to_string())
    }

    fn parse(text: &str, origin: &str) -> Result<Menu, MenuError> {
        let raw: RawMenu = toml::from_str(text).map_err(|source| MenuError::Syntax {
            origin: origin.to_owned(),
            source,
        })?;
        let mut category_names = HashSet::new();
        let mut item_names = HashSet::new();
        let mut categories = Vec::with_capacity(raw.category.len());
        for raw_category in raw.category {
            let name = raw_category.name.trim().to_owned();
            if name.is_empty() {
                return Err(MenuError::EmptyName {
                    origin: origin.to_owned(),
                    what: "a category".to_owned(),
                });
            }
            if !category_names.insert(normalize(&name)) {
                return Err(MenuError::DuplicateCategory {
                    origin: origin.to_owned(),
                    name,
                });
            }
            let mut items = Vec::with_capacity(raw_category.item.len());
            for raw_item in raw_category.item {
                let item = raw_item.into_item(origin, &name)?;
                if !item_names.insert(normalize(&item.name)) {
                    return Err(MenuError::DuplicateItem {
                        origin: origin.to_owned(),
                        name: item.name,
                    });
                }
                items.push(item);
            }
            categories.push(Category { name, items });
        }
        if item_names.is_empty() {
            return Err(MenuError::NoItems {
                origin: origin.to_owned(),
            });
        }
        Ok(Menu { categories })
    }

    /// The categories in menu order.
    pub fn categories(&self) -> impl Iterator<Item = &Category> {
        self.categories.iter()
    }

    /// Every dish, category by category.
    pub fn items(&self) -> impl Iterator<Item = &MenuItem> {
        self.categories.iter().flat_map(|c| c.items.iter())
    }

    /// Finds a category ignoring case and a plural "s": "Main" finds "mains".
    pub fn category(&self, name: &str) -> Result<&Category, UnknownCategory> {
        let wanted = normalize(name);
        self.categories
            .iter()
            .find(|c| normalize(&c.name) == wanted)
            .or_else(|| {
                self.categories
                    .iter()
                    .find(|c| singular(&normalize(&c.name)) == singular(&wanted))
            })
            .ok_or_else(|| UnknownCategory {
                requested: name.trim().to_owned(),
                available: self.categories.iter().map(|c| c.name.clone()).collect(),
            })
    }

    /// Finds a dish by name, ignoring case, extra spaces and a plural "s"
    /// ("bruschettas" finds Bruschetta). Otherwise the error suggests close names.
    pub fn find_item(&self, name: &str) -> Result<&MenuItem, UnknownItem> {
        let wanted = normalize(name);
        self.items()
            .find(|i| normalize(&i.name) == wanted)
            .or_else(|| {
                self.items()
                    .find(|i| singular(&normalize(&i.name)) == singular(&wanted))
            })
            .ok_or_else(|| UnknownItem {
                requested: name.trim().to_owned(),
                suggestions: self.suggestions(&wanted),
            })
    }

    /// All dish names in menu order (vocabulary hints for speech recognition).
    pub fn item_names(&self) -> Vec<&str> {
        self.items().map(|i| i.name.as_str()).collect()
    }

    /// One line per dish, `Bruschetta: $12.00 - toasted bread ...`, for the LLM to read.
    pub fn describe_category(&self, category: &Category) -> String {
        category
            .items
            .iter()
            .map(|item| match &item.description {
                Some(description) => format!("{}: {} - {description}", item.name, item.price),
                None => format!("{}: {}", item.name, item.price),
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Up to three menu names similar to `wanted` (already normalized), best first: the best
    /// one if it is at all similar, and others only if nearly as good.
    fn suggestions(&self, wanted: &str) -> Vec<String> {
        if wanted.is_empty() {
            return Vec::new();
        }
        let mut scored: Vec<(f64, &str)> = self
            .items()
            .map(|i| (similarity(wanted, &normalize(&i.name)), i.name.as_str()))
            .collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0));
        let Some(&(best, _)) = scored.first() else {
            return Vec::new();
        };
        scored
            .into_iter()
            .take_while(|(score, _)| *score >= SIMILAR && *score >= best - MARGIN)
            .take(MAX_SUGGESTIONS)
            .map(|(_, name)| name.to_owned())
            .collect()
    }
}

impl Category {
    /// The category's name as written in the menu, e.g. "mains".
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The dishes in menu order.
    pub fn items(&self) -> &[MenuItem] {
        &self.items
    }
}

impl MenuItem {
    /// The dish's name as written in the menu, e.g. "Grilled Salmon".
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether `text` (what a caller said) names this dish: one of the longer words of its
    /// name, or a near miss of one (a transcript's spelling, a plural), is in it. What a
    /// small model fills in for a dish is checked against it, so a dish the caller never
    /// named is not ordered.
    pub fn is_named_in(&self, text: &str) -> bool {
        let said = normalize(&text.replace(|c: char| !c.is_alphanumeric(), " "));
        let said: Vec<&str> = said.split(' ').map(singular).collect();
        let name = normalize(&self.name);
        name.split(' ')
            .map(singular)
            .filter(|word| word.chars().count() >= 4)
            .any(|word| {
                said.iter()
                    .any(|s| strsim::normalized_damerau_levenshtein(word, s) >= 0.8)
            })
    }

    /// The price of one portion.
    pub fn price(&self) -> Cents {
        self.price
    }

    /// A short description, if the menu gives one.
    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }
}

/// Lowercase, trimmed, inner runs of whitespace collapsed to one space.
fn normalize(name: &str) -> String {
    name.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// Drops one trailing "s" (a crude singular, enough for menu names).
fn singular(name: &str) -> &str {
    match name.strip_suffix('s') {
        Some(stem) if !stem.is_empty() => stem,
        _ => name,
    }
}

/// How alike a request and a menu name are, 0..=1 (both normalized).
///
/// The better of the whole-string similarity and a word-by-word one, where each requested
/// word is matched with its closest word in the name and longer words weigh more, so
/// "salmon" is close to "grilled salmon".
fn similarity(wanted: &str, name: &str) -> f64 {
    let whole = strsim::normalized_damerau_levenshtein(wanted, name);
    let name_words: Vec<&str> = name.split(' ').map(singular).collect();
    let mut weighted = 0.0;
    let mut total_weight = 0.0;
    for word in wanted.split(' ').map(singular) {
        let best = name_words
            .iter()
            .map(|n| word_similarity(word, n))
            .fold(0.0, f64::max);
        let weight = word.chars().count() as f64;
        weighted += best * weight;
        total_weight += weight;
    }
    let by_words = if total_weight > 0.0 {
        weighted / total_weight
    } else {
        0.0
    };
    whole.max(by_words)
}

/// How alike two words are, 0..=1; a word of three letters or more found inside the other
/// ("cake" in "cheesecake") counts as fairly close.
fn word_similarity(a: &str, b: &str) -> f64 {
    let edit = strsim::normalized_damerau_levenshtein(a, b);
    let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    if short.chars().count() >= 3 && long.contains(short) {
        edit.max(CONTAINED)
    } else {
        edit
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMenu {
    #[serde(default)]
    category: Vec<RawCategory>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCategory {
    name: String,
    #[serde(default)]
    item: Vec<RawItem>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawItem {
    name: String,
    price: RawPrice,
    #[serde(default)]
    description: Option<String>,
}

/// A price as written: quoted text is expected; anything else gets a helpful error.
#[derive(Deserialize)]
#[serde(untagged)]
enum RawPrice {
    Text(String),
    Other(toml::Value),
}

impl RawItem {
    fn into_item(self, origin: &str, category: &str) -> Result<MenuItem, MenuError> {
        let name = self.name.trim().to_owned();
        if name.is_empty() {
            return Err(MenuError::EmptyName {
                origin: origin.to_owned(),
                what: format!("a dish in {category:?}"),
            });
        }
        let bad_price = |price: String, reason: String| MenuError::BadPrice {
            origin: origin.to_owned(),
            item: name.clone(),
            price,
            reason,
        };
        let price = match self.price {
            RawPrice::Text(text) => text
                .parse::<Cents>()
                .map_err(|e| bad_price(format!("{text:?}"), e.to_string()))?,
            RawPrice::Other(value) => {
                return Err(bad_price(
                    value.to_string(),
                    "write prices as quoted text, like \"12.00\"".to_owned(),
                ));
            }
        };
        let description = self
            .description
            .map(|d| d.trim().to_owned())
            .filter(|d| !d.is_empty());
        Ok(MenuItem {
            name,
            price,
            description,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dish_is_named_by_one_of_its_words_or_a_near_miss() {
        let dish = |name: &str| MenuItem {
            name: name.into(),
            price: Cents(1000),
            description: None,
        };
        let calamari = dish("Calamari Fritti");
        assert!(calamari.is_named_in("Two calamari fritti, please."));
        assert!(calamari.is_named_in("two calamaris"));
        assert!(
            calamari.is_named_in("the calamary"),
            "a transcript's spelling"
        );
        assert!(!calamari.is_named_in("Hello, I'd like to place an order."));
        assert!(dish("Margherita Pizza").is_named_in("Three margheritas, extra basil"));
        assert!(!dish("Bruschetta").is_named_in("I want to order dinner."));
        assert!(!dish("Tiramisu").is_named_in(""));
    }

    const SHIPPED_MENU: &str = include_str!("../../config/menu.toml");

    fn menu() -> Menu {
        match Menu::from_toml_str(SHIPPED_MENU) {
            Ok(menu) => menu,
            Err(e) => panic!("shipped menu does not parse: {e}"),
        }
    }

    fn unknown(menu: &Menu, name: &str) -> UnknownItem {
        match menu.find_item(name) {
            Ok(item) => panic!("{name:?} unexpectedly found {}", item.name()),
            Err(e) => e,
        }
    }

    #[test]
    fn shipped_menu_has_the_expected_dishes_and_prices() {
        let menu = menu();
        let names: Vec<&str> = menu.categories().map(Category::name).collect();
        assert_eq!(names, ["appetizers", "mains", "desserts"]);
        let expected = [
            ("Bruschetta", 1200),
            ("Caesar Salad", 1000),
            ("Calamari Fritti", 1400),
            ("Grilled Salmon", 2800),
            ("Ribeye Steak", 3500),
            ("Pasta Primavera", 1800),
            ("Margherita Pizza", 1600),
            ("Tiramisu", 1000),
            ("Cheesecake", 900),
            ("Panna Cotta", 850),
        ];
        let actual: Vec<(&str, u64)> = menu.items().map(|i| (i.name(), i.price().0)).collect();
        assert_eq!(actual, expected);
        assert_eq!(menu.item_names().len(), 10);
    }

    #[test]
    fn finds_items_forgivingly() {
        let menu = menu();
        let found = |name: &str| menu.find_item(name).map(|i| i.name().to_owned());
        assert_eq!(found("tiramisu"), Ok("Tiramisu".to_owned()));
        assert_eq!(
            found("  GRILLED   salmon "),
            Ok("Grilled Salmon".to_owned())
        );
        assert_eq!(found("bruschettas"), Ok("Bruschetta".to_owned()));
        assert_eq!(
            found("Margherita Pizzas"),
            Ok("Margherita Pizza".to_owned())
        );
    }

    #[test]
    fn unknown_items_suggest_close_names() {
        let menu = menu();
        assert_eq!(unknown(&menu, "salmon").suggestions, ["Grilled Salmon"]);
        assert_eq!(unknown(&menu, "Tirammisu").suggestions[0], "Tiramisu");
        assert_eq!(unknown(&menu, "pizza").suggestions[0], "Margherita Pizza");
        assert_eq!(unknown(&menu, "cheese cake").suggestions[0], "Cheesecake");
        assert_eq!(unknown(&menu, "calamari").suggestions[0], "Calamari Fritti");
        assert!(unknown(&menu, "coke").suggestions.is_empty());
        assert_eq!(unknown(&menu, "cake").suggestions, ["Cheesecake"]);
        let e = unknown(&menu, "salmon steak");
        assert_eq!(e.suggestions, ["Grilled Salmon", "Ribeye Steak"]);
        assert_eq!(
            e.to_string(),
            "\"salmon steak\" is not on the menu; closest: Grilled Salmon, Ribeye Steak"
        );
    }

    #[test]
    fn suggestions_are_few_and_only_when_similar() {
        let menu = menu();
        assert!(unknown(&menu, "salad bar").suggestions.len() <= MAX_SUGGESTIONS);
        let e = unknown(&menu, "xylophone quartz");
        assert!(e.suggestions.is_empty(), "{:?}", e.suggestions);
        assert_eq!(e.to_string(), "\"xylophone quartz\" is not on the menu");
        assert!(unknown(&menu, "   ").suggestions.is_empty());
    }

    #[test]
    fn categories_tolerate_case_and_plural() {
        let menu = menu();
        let found = |name: &str| menu.category(name).map(|c| c.name().to_owned());
        assert_eq!(found("Mains"), Ok("mains".to_owned()));
        assert_eq!(found("main"), Ok("mains".to_owned()));
        assert_eq!(found("dessert"), Ok("desserts".to_owned()));
        assert_eq!(found(" APPETIZER "), Ok("appetizers".to_owned()));
        let e = menu.category("drinks").err();
        assert_eq!(
            e.map(|e| e.to_string()).as_deref(),
            Some("there is no \"drinks\" category; the categories are appetizers, mains, desserts")
        );
    }

    #[test]
    fn describes_a_category_line_by_line() {
        let menu = Menu::from_toml_str(
            r#"
            [[category]]
            name = "desserts"
            [[category.item]]
            name = "Tiramisu"
            price = "10"
            description = "coffee and mascarpone"
            [[category.item]]
            name = "Panna Cotta"
            price = "8.5"
            "#,
        );
        let menu = menu.expect("valid menu");
        let desserts = menu.category("desserts").expect("category exists");
        assert_eq!(
            menu.describe_category(desserts),
            "Tiramisu: $10.00 - coffee and mascarpone\nPanna Cotta: $8.50"
        );
    }

    fn parse_error(text: &str) -> MenuError {
        match Menu::from_toml_str(text) {
            Ok(_) => panic!("menu should be rejected:\n{text}"),
            Err(e) => e,
        }
    }

    #[test]
    fn rejects_bad_menus() {
        let dish = |name: &str, price: &str| {
            format!("[[category.item]]\nname = \"{name}\"\nprice = {price}\n")
        };
        let duplicate = format!(
            "[[category]]\nname = \"a\"\n{}[[category]]\nname = \"b\"\n{}",
            dish("Tiramisu", "\"1\""),
            dish("tiramisu ", "\"2\"")
        );
        assert!(matches!(
            parse_error(&duplicate),
            MenuError::DuplicateItem { .. }
        ));

        let bad = format!("[[category]]\nname = \"a\"\n{}", dish("X", "\"12.345\""));
        let e = parse_error(&bad);
        assert!(matches!(e, MenuError::BadPrice { .. }));
        assert!(e.to_string().contains("<inline>"), "{e}");
        assert!(e.to_string().contains("\"X\""), "{e}");

        let float = format!("[[category]]\nname = \"a\"\n{}", dish("X", "12.5"));
        let e = parse_error(&float);
        assert!(e.to_string().contains("quoted"), "{e}");

        let categories = "[[category]]\nname = \"a\"\n[[category]]\nname = \"A\"\n";
        assert!(matches!(
            parse_error(categories),
            MenuError::DuplicateCategory { .. }
        ));
        assert!(matches!(parse_error(""), MenuError::NoItems { .. }));
        assert!(matches!(
            parse_error("[[category]]\nnam = \"a\""),
            MenuError::Syntax { .. }
        ));
        let blank = format!("[[category]]\nname = \"a\"\n{}", dish(" ", "\"1\""));
        assert!(matches!(parse_error(&blank), MenuError::EmptyName { .. }));
    }

    #[test]
    fn load_names_the_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let missing = dir.path().join("nope.toml");
        let e = Menu::load(&missing)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("nope.toml"), "{e}");

        let broken = dir.path().join("menu.toml");
        std::fs::write(&broken, "[[category]]\nname = 3\n").expect("write");
        let e = Menu::load(&broken)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains(&broken.display().to_string()), "{e}");

        let good = dir.path().join("good.toml");
        std::fs::write(&good, SHIPPED_MENU).expect("write");
        assert_eq!(Menu::load(&good).ok(), Some(menu()));
    }
}
