//! The plan: what happens to each order, decided from the seed before any
//! traffic flows, so two runs with the same seed tell the same story no
//! matter how the orders interleave.
//!
//! Each order draws from its own [`Rng`] stream (seed mixed with the order's
//! index), so concurrency never changes which order gets which surprise.
//! Business durations here are real-world logistics times; the driver
//! divides them by the demo's speed before sleeping.

use std::time::Duration;

const MINUTE: u64 = 60;
const HOUR: u64 = 60 * MINUTE;
const DAY: u64 = 24 * HOUR;

/// Share of orders with chilled lines as well as ambient ones; the WMS packs
/// each temperature zone into its own shipment, so these orders split.
const SPLIT_SHARE: f64 = 0.30;
/// Share of orders whose carrier booking is sent twice (a client timeout
/// followed by a blind retry).
const DUPLICATE_BOOKING_SHARE: f64 = 0.05;
/// Share of orders where the goods issue of one shipment never reaches the ERP.
const LOST_GOODS_ISSUE_SHARE: f64 = 0.05;
/// Share of orders whose first delivery webhook has a truncated JSON body.
const MALFORMED_WEBHOOK_SHARE: f64 = 0.04;
/// Orders whose first booking the WMS sends again with the same
/// Idempotency-Key after a client timeout: the sidecar's idempotency guard
/// answers the repeat, so the carrier sees one booking.
const TIMEOUT_RETRY_SHARE: f64 = 0.05;
/// Orders come in blocks of this many, and each block has exactly one order
/// meeting each [`Incident`] (which one, the seed decides): every kind is
/// seen in any run of this many orders, and at one order in a hundred per
/// kind the other figures stay those of a healthy operation.
pub const INCIDENT_BLOCK: usize = 100;
/// Orders are released to the warehouse across this part of a business day.
const RELEASE_WINDOW: u64 = 12 * HOUR;
/// How long the driver keeps an order whose label was bought but never
/// shipped before giving up on it: past the example config's 4 h
/// `label_created → shipped` expectation and 6 h `stuck_after`, so the
/// sidecar's deadlines pass before the demo ends.
pub const UNSHIPPED_PATIENCE: Duration = Duration::from_secs(8 * HOUR);
/// How long the driver waits for a freight invoice that never comes: past
/// the example config's 7 d `delivered → freight_invoiced` expectation.
pub const UNINVOICED_PATIENCE: Duration = Duration::from_secs(7 * DAY + 2 * HOUR);
/// Label purchases the WMS tries before handing the shipment to a person:
/// the example config's `carrier.buy_label` retry limit.
pub const LABEL_ATTEMPTS: u32 = 3;

// === impl Rng ===

/// A small deterministic PRNG (splitmix64): plenty for simulated variety,
/// and no dependency for it.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }

    /// A value in `0..n` (`0` when `n` is `0`).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }

    /// A float in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        // 53 random bits fill an f64 mantissa exactly.
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// A duration uniformly between `lo` and `hi` seconds.
    pub fn secs(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_secs(lo + self.below(hi.saturating_sub(lo) + 1))
    }

    /// One of `items` (which must not be empty to be useful; the first when it is).
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        let i = self.below(items.len() as u64) as usize;
        &items[i.min(items.len().saturating_sub(1))]
    }
}

/// The splitmix64 finaliser: scrambles 64 bits.
pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// FNV-1a of `text`, for decisions a simulated system makes from an ID.
pub fn hash_str(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01B3)
    })
}

// === impl OrderPlan ===

/// One order line as the ERP releases it to the WMS.
#[derive(Debug, Clone)]
pub struct Line {
    pub sku: &'static str,
    pub description: &'static str,
    pub qty: u32,
    /// `ambient` or `chilled`: the WMS packs each zone separately.
    pub zone: &'static str,
    pub unit_weight_kg: f64,
}

/// A gap between systems that one order runs into, for the sidecar to find.
/// Each hits the order's first shipment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Incident {
    /// The carrier's label service is down for the shipment through all of
    /// the WMS's [`LABEL_ATTEMPTS`]; a person buys the label hours later.
    LabelOutage,
    /// The goods issue reaches the ERP before the dock's ship confirm
    /// reaches the WMS (the handheld was offline).
    GoodsIssueFirst,
    /// The labels are bought but the parcels never leave: no ship
    /// confirm, no goods issue, no delivery, for every shipment of the
    /// order, so its transaction rests at `label_created`.
    NeverShipped,
    /// Delivered, but the carrier never bills it.
    NeverInvoiced,
    /// After the order's own invoice, the carrier bills a label bought by
    /// hand on its portal: a tracking number the integration never saw.
    StrayInvoice,
}

impl Incident {
    pub const ALL: [Incident; 5] = [
        Incident::LabelOutage,
        Incident::GoodsIssueFirst,
        Incident::NeverShipped,
        Incident::NeverInvoiced,
        Incident::StrayInvoice,
    ];
}

/// Everything decided up front about one order.
#[derive(Debug, Clone)]
pub struct OrderPlan {
    /// `SO-100001` …
    pub order_id: String,
    pub customer: &'static str,
    pub city: &'static str,
    pub lines: Vec<Line>,
    /// When the ERP releases the order, counted from the start of the demo.
    pub release_after: Duration,
    /// The carrier booking of the first shipment is sent twice.
    pub duplicate_booking: bool,
    /// The carrier booking of the first shipment is resent with the same
    /// idempotency key (a client timeout-retry).
    pub retry_booking: bool,
    /// The goods issue of the first shipment is never posted.
    pub lose_goods_issue: bool,
    /// The first delivery webhook of the first shipment has a truncated body.
    pub malformed_webhook: bool,
    /// The gap between systems this order runs into, if any.
    pub incident: Option<Incident>,
    /// The order's own stream for stage durations.
    pub rng: Rng,
}

const AMBIENT: &[(&str, &str, f64)] = &[
    ("SKU-10042", "Espresso beans 1 kg", 1.0),
    ("SKU-10077", "Oat drink 6x1 l", 6.2),
    ("SKU-20311", "Olive oil 750 ml", 0.9),
    ("SKU-20450", "Pasta variety box", 2.5),
    ("SKU-31002", "Paper towels 8 rolls", 1.4),
    ("SKU-31877", "Dish soap 3x500 ml", 1.6),
];
const CHILLED: &[(&str, &str, f64)] = &[
    ("SKU-90013", "Greek yoghurt 12x150 g", 2.0),
    ("SKU-90240", "Smoked salmon 200 g", 0.25),
    ("SKU-90518", "Aged cheddar 400 g", 0.45),
];
const CUSTOMERS: &[(&str, &str)] = &[
    ("Hofmann Feinkost GmbH", "Hamburg"),
    ("Northwind Traders", "Rotterdam"),
    ("Casa Verde S.L.", "Valencia"),
    ("Bäckerei Lindner", "München"),
    ("Fjord Market AS", "Bergen"),
    ("Le Petit Épicier", "Lyon"),
];

impl OrderPlan {
    /// The plan of the order at `index` (0-based) for `seed`.
    pub fn new(seed: u64, index: usize) -> Self {
        let mut rng = Rng::new(mix(seed ^ mix(index as u64 + 1)));
        let (customer, city) = *rng.pick(CUSTOMERS);
        let mut lines = Vec::new();
        for _ in 0..1 + rng.below(3) {
            lines.push(line(&mut rng, AMBIENT, "ambient"));
        }
        if rng.chance(SPLIT_SHARE) {
            for _ in 0..1 + rng.below(2) {
                lines.push(line(&mut rng, CHILLED, "chilled"));
            }
        }
        let mut plan = OrderPlan {
            order_id: format!("SO-{}", 100_001 + index),
            customer,
            city,
            lines,
            release_after: rng.secs(0, RELEASE_WINDOW),
            duplicate_booking: rng.chance(DUPLICATE_BOOKING_SHARE),
            lose_goods_issue: rng.chance(LOST_GOODS_ISSUE_SHARE),
            malformed_webhook: rng.chance(MALFORMED_WEBHOOK_SHARE),
            retry_booking: false,
            incident: None,
            rng,
        };
        // From a stream of its own, so it left every other choice of the
        // seed as it was.
        plan.retry_booking =
            Rng::new(mix(seed ^ mix(index as u64 + 1) ^ 0x7E7A_1D00)).chance(TIMEOUT_RETRY_SHARE);
        plan.incident = incident_of(seed, index);
        if plan.incident == Some(Incident::GoodsIssueFirst) {
            // The goods issue that comes early is not also lost.
            plan.lose_goods_issue = false;
        }
        plan
    }

    /// True when the order has lines in both zones (the WMS will split it).
    pub fn spans_zones(&self) -> bool {
        self.lines.iter().any(|l| l.zone != self.lines[0].zone)
    }
}

/// The incident of the order at `index`, if it has one. Incidents draw
/// from a stream of their own (per block), so adding them left every other
/// choice and duration of the seed as it was.
fn incident_of(seed: u64, index: usize) -> Option<Incident> {
    let block = (index / INCIDENT_BLOCK) as u64;
    let mut rng = Rng::new(mix(seed ^ mix(block + 1) ^ 0x1D5C_1DE7));
    let mut taken: Vec<usize> = Vec::with_capacity(Incident::ALL.len());
    for kind in Incident::ALL {
        // Distinct positions: there are far more orders in a block than kinds.
        let position = loop {
            let p = rng.below(INCIDENT_BLOCK as u64) as usize;
            if !taken.contains(&p) {
                break p;
            }
        };
        if position == index % INCIDENT_BLOCK {
            return Some(kind);
        }
        taken.push(position);
    }
    None
}

fn line(
    rng: &mut Rng,
    catalogue: &[(&'static str, &'static str, f64)],
    zone: &'static str,
) -> Line {
    let (sku, description, unit_weight_kg) = *rng.pick(catalogue);
    Line {
        sku,
        description,
        qty: 1 + rng.below(12) as u32,
        zone,
        unit_weight_kg,
    }
}

// === stage durations ===

/// Business durations between the steps of an order, drawn as the order
/// goes. Ranges are what a mid-sized warehouse and a parcel carrier show.
impl Rng {
    /// Release → allocation: the WMS wave planner runs every few minutes.
    pub fn allocate_delay(&mut self) -> Duration {
        self.secs(2 * MINUTE, 30 * MINUTE)
    }

    /// Allocation → picked; one order in ten waits for the next shift.
    pub fn pick_delay(&mut self) -> Duration {
        let work = self.secs(20 * MINUTE, 3 * HOUR);
        if self.chance(0.10) {
            work + self.secs(12 * HOUR, 20 * HOUR)
        } else {
            work
        }
    }

    /// Picked → packed.
    pub fn pack_delay(&mut self) -> Duration {
        self.secs(10 * MINUTE, 90 * MINUTE)
    }

    /// Packed → carrier booking.
    pub fn booking_delay(&mut self) -> Duration {
        self.secs(MINUTE, 5 * MINUTE)
    }

    /// Booking → label purchase.
    pub fn label_delay(&mut self) -> Duration {
        self.secs(5, 2 * MINUTE)
    }

    /// Back-off before retrying a label purchase the carrier refused with 503.
    pub fn retry_delay(&mut self) -> Duration {
        self.secs(30, 5 * MINUTE)
    }

    /// Label → ship confirmation (truck departure); some wait for the
    /// evening truck, still inside the 4 h the example config expects
    /// (a label left longer is an [`Incident::NeverShipped`]).
    pub fn ship_delay(&mut self) -> Duration {
        if self.chance(0.08) {
            self.secs(3 * HOUR, 3 * HOUR + 30 * MINUTE)
        } else {
            self.secs(30 * MINUTE, 3 * HOUR)
        }
    }

    /// Label purchase refused to the last retry → a person buys it by hand.
    pub fn manual_label_delay(&mut self) -> Duration {
        self.secs(HOUR, 2 * HOUR)
    }

    /// Goods issue posted → the late ship confirm of the same shipment.
    pub fn late_confirm_delay(&mut self) -> Duration {
        self.secs(5 * MINUTE, 40 * MINUTE)
    }

    /// Ship confirmation → goods issue posted in the ERP: an interface job
    /// that runs every few minutes, well inside the 15 minute expectation
    /// (at high speed, real latency adds a few business minutes).
    pub fn goods_issue_delay(&mut self) -> Duration {
        self.secs(MINUTE, 5 * MINUTE)
    }

    /// Shipped → delivered; one in twenty misses the 72 h promise.
    pub fn delivery_delay(&mut self) -> Duration {
        if self.chance(0.05) {
            self.secs(73 * HOUR, 4 * DAY)
        } else {
            self.secs(18 * HOUR, 70 * HOUR)
        }
    }

    /// Delivered → freight invoice posted.
    pub fn invoice_delay(&mut self) -> Duration {
        self.secs(DAY, 4 * DAY)
    }

    /// Before a webhook sender retries after a 4xx.
    pub fn redelivery_delay(&mut self) -> Duration {
        self.secs(MINUTE, 15 * MINUTE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_gives_the_same_plan() {
        let a = OrderPlan::new(7, 3);
        let b = OrderPlan::new(7, 3);
        assert_eq!(a.order_id, b.order_id);
        assert_eq!(a.lines.len(), b.lines.len());
        assert_eq!(a.release_after, b.release_after);
        assert_eq!(a.rng.clone().next_u64(), b.rng.clone().next_u64());
        assert_ne!(
            OrderPlan::new(8, 3).rng.clone().next_u64(),
            a.rng.clone().next_u64()
        );
    }

    #[test]
    fn about_a_third_of_orders_span_two_zones() {
        let split = (0..2000)
            .filter(|i| OrderPlan::new(1, *i).spans_zones())
            .count();
        assert!((500..700).contains(&split), "split {split}");
    }

    #[test]
    fn every_block_of_orders_meets_each_incident_exactly_once() {
        let plans: Vec<OrderPlan> = (0..4 * INCIDENT_BLOCK)
            .map(|i| OrderPlan::new(5, i))
            .collect();
        for block in plans.chunks(INCIDENT_BLOCK) {
            for kind in Incident::ALL {
                let hit = block.iter().filter(|p| p.incident == Some(kind)).count();
                assert_eq!(hit, 1, "{kind:?}");
            }
        }
        assert!(plans
            .iter()
            .all(|p| p.incident != Some(Incident::GoodsIssueFirst) || !p.lose_goods_issue));
        let other_seed: Vec<Option<Incident>> = (0..INCIDENT_BLOCK)
            .map(|i| OrderPlan::new(6, i).incident)
            .collect();
        let this_seed: Vec<Option<Incident>> =
            plans[..INCIDENT_BLOCK].iter().map(|p| p.incident).collect();
        assert_ne!(this_seed, other_seed, "the seed decides which orders");
    }

    #[test]
    fn rng_ranges_are_inclusive_and_bounded() {
        let mut rng = Rng::new(42);
        for _ in 0..1000 {
            let d = rng.secs(10, 20);
            assert!(d >= Duration::from_secs(10) && d <= Duration::from_secs(20));
            let u = rng.unit();
            assert!((0.0..1.0).contains(&u));
        }
        assert_eq!(rng.below(0), 0);
    }
}
