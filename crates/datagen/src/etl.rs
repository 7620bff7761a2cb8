//! Seed 004's data, in the shapes of its Java generator (`kinesis-streaming-joins`:
//! `Product`, `Order`, `OrderItem` as Jackson writes them): products for the reference
//! table, and orders each followed by two items whose `itemId` is a product's id (the seed:
//! "productId used as itemId in Items"), all with `orderDateTime` timestamps that a replay
//! paces by.
//!
//! Deterministic for a seed, the clock simulated from [`crate::DEFAULT_START`]. Where the
//! Java generator is loose, chief's is exact enough to check a join against: an order's
//! two items are two different products (the DynamoDB key is `orderId` + `itemId`), an
//! item's amount is its product's price × its quantity, and the order's amount is the sum
//! of its items'. An item's `orderDateTime` is its order's plus −200 to +800 ms, so that
//! a replay in timestamp order sometimes sends an item before its order, as a join must
//! expect.

use rand::rngs::ChaCha8Rng;
use rand::{RngExt as _, SeedableRng as _};
use serde::Serialize;

/// The first product id (the Java generator's `itemIdStart`).
pub const FIRST_PRODUCT_ID: u64 = 999_900_001;
/// The first order id (the Java generator's `orderStartId`).
pub const FIRST_ORDER_ID: u64 = 10_000_001;

/// A product of the reference table (`products.json`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Product {
    /// Its id; the items' `itemId`.
    pub product_id: u64,
    /// A name such as `Ergonomic Steel Chair`.
    pub product_name: String,
    /// Its price, two decimals.
    pub product_price: f64,
}

/// An order event.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OrderEvent {
    /// Its id.
    pub order_id: u64,
    /// The sum of its items' amounts.
    pub order_amount: f64,
    /// `New`.
    pub order_status: String,
    /// `yyyy-MM-dd'T'HH:mm:ss.SSS'Z'`.
    pub order_date_time: String,
    /// Who it ships to.
    pub ship_to_name: String,
    /// Number and street.
    pub ship_to_address: String,
    /// City.
    pub ship_to_city: String,
    /// State.
    pub ship_to_state: String,
    /// ZIP code.
    pub ship_to_zip: String,
    /// `Order`.
    pub record_type: String,
}

/// An item event of an order.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ItemEvent {
    /// Its order.
    pub order_id: u64,
    /// A product's id.
    pub item_id: u64,
    /// 1–3.
    pub item_quantity: u64,
    /// The product's price × the quantity.
    pub item_amount: f64,
    /// `Ready`.
    pub item_status: String,
    /// Its order's time −200 to +800 ms.
    pub order_date_time: String,
    /// `OrderItem`.
    pub record_type: String,
}

/// One line of `orders.json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum OrderOrItem {
    /// An order.
    Order(OrderEvent),
    /// One of its items.
    Item(ItemEvent),
}

/// `millis` since the epoch as the Java generator writes `orderDateTime`.
pub fn timestamp(millis: i64) -> String {
    let (y, mo, d, h, mi, s) = crate::lines::civil(millis);
    format!(
        "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{:03}Z",
        millis.rem_euclid(1_000)
    )
}

const ADJECTIVES: [&str; 12] = [
    "Small",
    "Ergonomic",
    "Rustic",
    "Intelligent",
    "Gorgeous",
    "Incredible",
    "Fantastic",
    "Practical",
    "Sleek",
    "Awesome",
    "Enormous",
    "Durable",
];
const MATERIALS: [&str; 10] = [
    "Steel", "Wooden", "Concrete", "Plastic", "Cotton", "Granite", "Rubber", "Leather", "Silk",
    "Copper",
];
const NOUNS: [&str; 14] = [
    "Chair", "Car", "Computer", "Keyboard", "Mouse", "Bike", "Ball", "Gloves", "Pants", "Shirt",
    "Table", "Shoes", "Hat", "Lamp",
];

fn cents(value: u64) -> f64 {
    value as f64 / 100.0
}

/// `count` products from `seed`, ids from [`FIRST_PRODUCT_ID`].
pub fn products(seed: u64, count: u64) -> Vec<Product> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..count)
        .map(|i| {
            let name = format!(
                "{} {} {}",
                ADJECTIVES[rng.random_range(0..ADJECTIVES.len())],
                MATERIALS[rng.random_range(0..MATERIALS.len())],
                NOUNS[rng.random_range(0..NOUNS.len())]
            );
            Product {
                product_id: FIRST_PRODUCT_ID + i,
                product_name: name,
                product_price: cents(rng.random_range(100..100_000)),
            }
        })
        .collect()
}

/// Orders, each followed by its two items: `orders.json` of the seed.
pub struct OrdersItems {
    rng: ChaCha8Rng,
    products: Vec<Product>,
    clock: i64,
    interval_ms: u64,
    next_order: u64,
    pending: Vec<OrderOrItem>,
}

impl OrdersItems {
    /// Orders from `seed` over `products` (those of [`products`]), one every
    /// `interval_ms` on average, the first at `start` (ms since the epoch).
    ///
    /// # Panics
    /// With fewer than two products (an order has two different ones).
    pub fn new(seed: u64, products: Vec<Product>, start: i64, interval_ms: u64) -> Self {
        assert!(products.len() >= 2, "an order needs two different products");
        Self {
            // Not the products' stream: the same seed for both gives unrelated draws.
            rng: ChaCha8Rng::seed_from_u64(seed ^ 0x0004_0004),
            products,
            clock: start,
            interval_ms,
            next_order: FIRST_ORDER_ID,
            pending: Vec::new(),
        }
    }
}

impl Iterator for OrdersItems {
    type Item = OrderOrItem;

    fn next(&mut self) -> Option<OrderOrItem> {
        if let Some(line) = self.pending.pop() {
            return Some(line);
        }
        let rng = &mut self.rng;
        self.clock += i64::try_from(rng.random_range(0..=2 * self.interval_ms)).unwrap_or(0);
        let order_id = self.next_order;
        self.next_order += 1;
        let first = rng.random_range(0..self.products.len());
        let second = (first + rng.random_range(1..self.products.len())) % self.products.len();
        let mut items = Vec::with_capacity(2);
        let mut total_cents = 0u64;
        for index in [first, second] {
            let product = &self.products[index];
            let quantity = rng.random_range(1..=3u64);
            let amount_cents = (product.product_price * 100.0).round() as u64 * quantity;
            total_cents += amount_cents;
            let jitter = rng.random_range(-200..=800);
            items.push(ItemEvent {
                order_id,
                item_id: product.product_id,
                item_quantity: quantity,
                item_amount: cents(amount_cents),
                item_status: "Ready".into(),
                order_date_time: timestamp(self.clock + jitter),
                record_type: "OrderItem".into(),
            });
        }
        use fake::Fake as _;
        use fake::faker::address::en::{BuildingNumber, CityName, StateName, StreetName, ZipCode};
        use fake::faker::name::en::Name;
        let order = OrderEvent {
            order_id,
            order_amount: cents(total_cents),
            order_status: "New".into(),
            order_date_time: timestamp(self.clock),
            ship_to_name: Name().fake_with_rng(rng),
            ship_to_address: format!(
                "{} {}",
                BuildingNumber().fake_with_rng::<String, _>(rng),
                StreetName().fake_with_rng::<String, _>(rng)
            ),
            ship_to_city: CityName().fake_with_rng(rng),
            ship_to_state: StateName().fake_with_rng(rng),
            ship_to_zip: ZipCode().fake_with_rng(rng),
            record_type: "Order".into(),
        };
        // Popped last first: the order, then its items in order.
        self.pending = items.into_iter().rev().map(OrderOrItem::Item).collect();
        Some(OrderOrItem::Order(order))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shapes_of_the_seeds_generator() {
        let p = &products(7, 3)[0];
        let v = serde_json::to_value(p).expect("JSON");
        let keys: Vec<&str> = v
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, ["productId", "productName", "productPrice"]);
        let mut lines = OrdersItems::new(7, products(7, 10), crate::DEFAULT_START, 10);
        let order = serde_json::to_value(lines.next().expect("order")).expect("JSON");
        for key in [
            "orderId",
            "orderAmount",
            "orderStatus",
            "orderDateTime",
            "shipToName",
            "shipToAddress",
            "shipToCity",
            "shipToState",
            "shipToZip",
            "recordType",
        ] {
            assert!(order.get(key).is_some(), "{key} in {order}");
        }
        assert_eq!(order["recordType"], "Order");
        let time = order["orderDateTime"].as_str().expect("time");
        assert!(
            time.starts_with("2024-01-01T00:00:") && time.ends_with('Z'),
            "{time}"
        );
        let item = serde_json::to_value(lines.next().expect("item")).expect("JSON");
        for key in [
            "orderId",
            "itemId",
            "itemQuantity",
            "itemAmount",
            "itemStatus",
            "orderDateTime",
            "recordType",
        ] {
            assert!(item.get(key).is_some(), "{key} in {item}");
        }
        assert_eq!(item["recordType"], "OrderItem");
    }

    #[test]
    fn two_different_products_per_order_and_amounts_that_add_up() {
        let catalogue = products(3, 1000);
        let prices: std::collections::HashMap<u64, f64> = catalogue
            .iter()
            .map(|p| (p.product_id, p.product_price))
            .collect();
        let lines: Vec<OrderOrItem> = OrdersItems::new(3, catalogue, crate::DEFAULT_START, 10)
            .take(3 * 500)
            .collect();
        for chunk in lines.chunks(3) {
            let [
                OrderOrItem::Order(o),
                OrderOrItem::Item(a),
                OrderOrItem::Item(b),
            ] = chunk
            else {
                panic!("an order then its two items: {chunk:?}");
            };
            assert_eq!((a.order_id, b.order_id), (o.order_id, o.order_id));
            assert_ne!(a.item_id, b.item_id, "two different products");
            for item in [a, b] {
                let price = prices[&item.item_id];
                let expected = (price * 100.0).round() * item.item_quantity as f64 / 100.0;
                assert!((item.item_amount - expected).abs() < 1e-9, "{item:?}");
            }
            assert!((o.order_amount - (a.item_amount + b.item_amount)).abs() < 1e-6);
        }
        // Deterministic.
        let again: Vec<OrderOrItem> =
            OrdersItems::new(3, products(3, 1000), crate::DEFAULT_START, 10)
                .take(3 * 500)
                .collect();
        assert_eq!(lines, again);
    }

    #[test]
    fn timestamps_as_java_formats_them() {
        assert_eq!(
            timestamp(crate::DEFAULT_START + 1_234),
            "2024-01-01T00:00:01.234Z"
        );
        assert_eq!(timestamp(0), "1970-01-01T00:00:00.000Z");
    }
}
