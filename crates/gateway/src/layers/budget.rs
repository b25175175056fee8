//! Budgets: USD limits per key, per model group and for the whole proxy, and
//! the `x-liter-llm-cost` header.
//!
//! Budgets reserve rather than count after the fact. At admission the layer
//! reserves the most the request can cost: `estimated_prompt_tokens` at the
//! group's dearest input price plus `max_tokens` (or
//! [`DEFAULT_MAX_OUTPUT_TOKENS`] when the request sets none) at its dearest
//! output price. It admits the request only if `spent + reserved + estimate <=
//! limit` for every budget that applies, and check-and-reserve is atomic per
//! budget, so concurrent requests cannot overshoot a limit together. When the
//! request settles (at once for a JSON answer, at the end of a stream) the
//! reservation is replaced by the real cost: `outcome.cost_usd`, or 0 for an
//! answer from the proxy's cache. A request dropped without settling releases
//! its reservation.
//!
//! * key: `[[keys]].budget_limit`, resetting per `budget_period`;
//! * model group: `[budget].model_limits`, resetting per `[budget].period`;
//! * global: `[budget].global_limit`, one budget for the whole proxy, resetting
//!   per `[budget].period`.
//!
//! Periods follow UTC calendar boundaries: a day starts at 00:00 UTC, a week on
//! Monday, a month on the 1st. Without a period a budget never resets. Spend is
//! charged to the period in which the request finishes.
//!
//! `[budget].enforcement = "hard"` (the default) answers 402 `budget_exceeded`
//! naming the budget and its limit; `"soft"` lets the request through, logs a
//! warning and marks the response `x-liter-llm-budget-exceeded: key,model,global`
//! (the budgets that were exceeded).
//!
//! State lives behind [`BudgetStore`]; [`MemoryBudgetStore`] keeps it in
//! process, one small mutex per budget, never held across an `.await`.

use crate::pipeline::{ChatRequest, ChatResponse, GatewayBody, Outcome};
use crate::pricing::Prices;
use crate::spend::SpendLog;
use http::HeaderValue;
use liter_llm_config::{BudgetPeriod, Config, Enforcement};
use liter_llm_protocol::{ApiError, ErrorKind};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};
use std::time::{SystemTime, UNIX_EPOCH};
use tower::{Layer, Service};

/// Output tokens assumed for a request that sets no `max_tokens`.
pub const DEFAULT_MAX_OUTPUT_TOKENS: u64 = 4096;

/// Set on soft-enforced responses that went over a budget.
pub const BUDGET_EXCEEDED_HEADER: &str = "x-liter-llm-budget-exceeded";
/// The cost of a JSON answer, USD.
pub const COST_HEADER: &str = "x-liter-llm-cost";

/// Group name → the dearest prices among its deployments (`None`: unknown).
pub type WorstPrices = Arc<dyn Fn(&str) -> Option<Prices> + Send + Sync>;
/// Current time, Unix seconds (UTC). Injectable for tests.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// The system clock, Unix seconds.
pub fn system_clock() -> Clock {
    Arc::new(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
    })
}

// ---------------------------------------------------------------------------
// Periods

const DAY: i64 = 86_400;

/// The period a timestamp falls in, as a number that changes exactly at the
/// UTC boundary: days since the epoch, weeks (Monday-based), or months.
pub fn window(period: Option<BudgetPeriod>, unix: i64) -> i64 {
    let days = unix.div_euclid(DAY);
    match period {
        None => 0,
        Some(BudgetPeriod::Daily) => days,
        // 1970-01-01 was a Thursday; +3 puts the boundary on Monday.
        Some(BudgetPeriod::Weekly) => (days + 3).div_euclid(7),
        Some(BudgetPeriod::Monthly) => {
            let (y, m, _) = civil_from_days(days);
            y * 12 + i64::from(m) - 1
        }
    }
}

/// When the period containing `unix` ends (Unix seconds), `None` for no period.
pub fn window_end(period: Option<BudgetPeriod>, unix: i64) -> Option<i64> {
    let days = unix.div_euclid(DAY);
    Some(match period? {
        BudgetPeriod::Daily => (days + 1) * DAY,
        BudgetPeriod::Weekly => ((days + 3).div_euclid(7) * 7 + 7 - 3) * DAY,
        BudgetPeriod::Monthly => {
            let (y, m, _) = civil_from_days(days);
            let (y, m) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
            days_from_civil(y, m, 1) * DAY
        }
    })
}

/// Howard Hinnant's `civil_from_days`: days since 1970-01-01 → (year, month, day).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn fmt_utc(unix: i64) -> String {
    let (y, m, d) = civil_from_days(unix.div_euclid(DAY));
    format!("{y:04}-{m:02}-{d:02} 00:00 UTC")
}

fn usd(x: f64) -> String {
    if x >= 0.01 || x == 0.0 {
        format!("${x:.2}")
    } else {
        format!("${x:.6}")
    }
}

// ---------------------------------------------------------------------------
// The store

/// Budgets a request can be checked against: its key's, its model's, the global one.
pub const MAX_BUDGETS: usize = 3;

/// Which budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BudgetScope {
    Key,
    Model,
    Global,
}

impl BudgetScope {
    pub fn as_str(self) -> &'static str {
        match self {
            BudgetScope::Key => "key",
            BudgetScope::Model => "model",
            BudgetScope::Global => "global",
        }
    }
}

/// One budget a request is checked against.
#[derive(Debug, Clone, Copy)]
pub struct BudgetRef<'a> {
    pub scope: BudgetScope,
    /// The key id, the model group, or `""` for the global budget.
    pub name: &'a str,
    pub limit: f64,
    pub period: Option<BudgetPeriod>,
}

/// A budget's state in its current period.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct BudgetState {
    pub spent: f64,
    /// Held by requests in flight.
    pub reserved: f64,
}

/// A budget that would be exceeded: its index in the slice given to
/// [`BudgetStore::reserve`] and its state when checked.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Over {
    pub index: usize,
    pub state: BudgetState,
}

/// A successful reservation.
#[derive(Debug)]
pub struct Admission<T> {
    pub ticket: T,
    /// Soft mode: bit `i` set when budget `i` is exceeded (reserved anyway).
    pub over: u8,
}

/// Shared budget state. In-memory now; a networked store (Redis, PostgreSQL)
/// implements the same contract with an atomic script or transaction.
pub trait BudgetStore: Send + Sync + 'static {
    /// What [`BudgetStore::settle`] needs to find the reservation again.
    type Ticket: Send + 'static;

    /// Reserve `amount` USD in every budget of `budgets` (given in scope order:
    /// key, model, global; at most [`MAX_BUDGETS`], one per scope). Per budget, atomically: start a new
    /// period if its UTC boundary has passed, then check `spent + reserved +
    /// amount <= limit` and reserve. `hard`: if any budget would be exceeded,
    /// reserve nothing and return the first. Soft: reserve in all and report
    /// the exceeded ones in [`Admission::over`].
    fn reserve(
        &self,
        budgets: &[BudgetRef<'_>],
        amount: f64,
        now: i64,
        hard: bool,
    ) -> impl Future<Output = Result<Admission<Self::Ticket>, Over>> + Send;

    /// Replace the reservation with the actual cost (charged to the period at
    /// `now`). Called exactly once per ticket, from a settlement hook: must not
    /// block for long (a networked store queues the update).
    fn settle(&self, ticket: Self::Ticket, actual: f64, now: i64);

    /// A budget's current state (`None` if it has never been used).
    fn state(
        &self,
        budget: &BudgetRef<'_>,
        now: i64,
    ) -> impl Future<Output = Option<BudgetState>> + Send;
}

#[derive(Debug)]
struct CellState {
    window: i64,
    spent: f64,
    reserved: f64,
    inflight: u64,
}

#[derive(Debug)]
struct Cell {
    period: Option<BudgetPeriod>,
    state: Mutex<CellState>,
}

impl Cell {
    fn new(period: Option<BudgetPeriod>, now: i64) -> Cell {
        Cell {
            period,
            state: Mutex::new(CellState {
                window: window(period, now),
                spent: 0.0,
                reserved: 0.0,
                inflight: 0,
            }),
        }
    }

    /// Lock and roll over to the period containing `now`.
    fn lock(&self, now: i64) -> std::sync::MutexGuard<'_, CellState> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let w = window(self.period, now);
        if w != s.window {
            // Reservations of requests still in flight stay held; spend restarts.
            s.window = w;
            s.spent = 0.0;
        }
        s
    }
}

/// The in-process store: one mutex per budget.
#[derive(Debug, Default)]
pub struct MemoryBudgetStore {
    global: RwLock<Option<Arc<Cell>>>,
    models: RwLock<HashMap<Box<str>, Arc<Cell>>>,
    keys: RwLock<HashMap<Box<str>, Arc<Cell>>>,
}

/// A reservation in the [`MemoryBudgetStore`].
#[derive(Debug)]
pub struct MemoryTicket {
    cells: [Option<Arc<Cell>>; MAX_BUDGETS],
    amount: f64,
}

/// Relative slack on the limit check, so float rounding of sums like
/// `0.1 + 0.2` never refuses a request that fits exactly.
const SLACK: f64 = 1e-9;

fn over_limit(s: &CellState, amount: f64, limit: f64) -> bool {
    let used = s.spent + s.reserved;
    // A spent budget refuses even requests whose price is unknown (estimate 0).
    used + amount > limit * (1.0 + SLACK) || used >= limit
}

impl MemoryBudgetStore {
    pub fn new() -> MemoryBudgetStore {
        MemoryBudgetStore::default()
    }

    fn cell(&self, b: &BudgetRef<'_>, now: i64, create: bool) -> Option<Arc<Cell>> {
        let rw = |l| match l {
            BudgetScope::Key => &self.keys,
            _ => &self.models,
        };
        if b.scope == BudgetScope::Global {
            if let Some(c) = self
                .global
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .as_ref()
            {
                return Some(c.clone());
            }
            if !create {
                return None;
            }
            let mut g = self.global.write().unwrap_or_else(|p| p.into_inner());
            return Some(
                g.get_or_insert_with(|| Arc::new(Cell::new(b.period, now)))
                    .clone(),
            );
        }
        let map = rw(b.scope);
        if let Some(c) = map.read().unwrap_or_else(|p| p.into_inner()).get(b.name) {
            return Some(c.clone());
        }
        if !create {
            return None;
        }
        let mut w = map.write().unwrap_or_else(|p| p.into_inner());
        Some(
            w.entry(b.name.into())
                .or_insert_with(|| Arc::new(Cell::new(b.period, now)))
                .clone(),
        )
    }
}

impl BudgetStore for MemoryBudgetStore {
    type Ticket = MemoryTicket;

    fn reserve(
        &self,
        budgets: &[BudgetRef<'_>],
        amount: f64,
        now: i64,
        hard: bool,
    ) -> impl Future<Output = Result<Admission<MemoryTicket>, Over>> + Send {
        std::future::ready(self.reserve_now(budgets, amount, now, hard))
    }

    fn settle(&self, ticket: MemoryTicket, actual: f64, now: i64) {
        let actual = if actual.is_finite() && actual > 0.0 {
            actual
        } else {
            0.0
        };
        for cell in ticket.cells.iter().flatten() {
            let mut s = cell.lock(now);
            s.inflight = s.inflight.saturating_sub(1);
            s.reserved = if s.inflight == 0 {
                0.0
            } else {
                (s.reserved - ticket.amount).max(0.0)
            };
            s.spent += actual;
        }
    }

    fn state(
        &self,
        budget: &BudgetRef<'_>,
        now: i64,
    ) -> impl Future<Output = Option<BudgetState>> + Send {
        let state = self.cell(budget, now, false).map(|c| {
            let s = c.lock(now);
            BudgetState {
                spent: s.spent,
                reserved: s.reserved,
            }
        });
        std::future::ready(state)
    }
}

impl MemoryBudgetStore {
    fn reserve_now(
        &self,
        budgets: &[BudgetRef<'_>],
        amount: f64,
        now: i64,
        hard: bool,
    ) -> Result<Admission<MemoryTicket>, Over> {
        debug_assert!(budgets.windows(2).all(|w| w[0].scope < w[1].scope));
        let mut cells: [Option<Arc<Cell>>; MAX_BUDGETS] = Default::default();
        for (slot, b) in cells.iter_mut().zip(budgets) {
            *slot = self.cell(b, now, true);
        }
        let over = {
            // Lock every budget of the request at once, always in scope order
            // (key, model, global) so two requests cannot deadlock; then check
            // and reserve, with no moment in which another request sees half a
            // reservation.
            let mut guards: [Option<std::sync::MutexGuard<'_, CellState>>; MAX_BUDGETS] =
                Default::default();
            for (g, c) in guards.iter_mut().zip(&cells) {
                *g = c.as_ref().map(|c| c.lock(now));
            }
            let mut over = 0u8;
            for (i, (g, b)) in guards.iter().zip(budgets).enumerate() {
                let Some(g) = g else { continue };
                if over_limit(g, amount, b.limit) {
                    if hard {
                        return Err(Over {
                            index: i,
                            state: BudgetState {
                                spent: g.spent,
                                reserved: g.reserved,
                            },
                        });
                    }
                    over |= 1 << i;
                }
            }
            for g in guards.iter_mut().flatten() {
                g.reserved += amount;
                g.inflight += 1;
            }
            over
        };
        Ok(Admission {
            ticket: MemoryTicket { cells, amount },
            over,
        })
    }
}

// ---------------------------------------------------------------------------
// The layer

struct Shared<St> {
    store: St,
    hard: bool,
    global: Option<f64>,
    models: HashMap<String, f64>,
    period: Option<BudgetPeriod>,
    worst_prices: WorstPrices,
    clock: Clock,
}

/// Enforces the configured budgets. Cheap to clone.
pub struct BudgetLayer<St: BudgetStore = MemoryBudgetStore> {
    shared: Arc<Shared<St>>,
}

impl<St: BudgetStore> Clone for BudgetLayer<St> {
    fn clone(&self) -> Self {
        BudgetLayer {
            shared: self.shared.clone(),
        }
    }
}

impl<St: BudgetStore> std::fmt::Debug for BudgetLayer<St> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BudgetLayer")
            .field("hard", &self.shared.hard)
            .field("global", &self.shared.global)
            .field("models", &self.shared.models)
            .finish_non_exhaustive()
    }
}

fn check_limit(field: &str, v: f64) -> Result<(), String> {
    if v.is_finite() && v > 0.0 {
        Ok(())
    } else {
        Err(format!(
            "`{field}` must be a finite amount of USD above 0, not {v}"
        ))
    }
}

impl BudgetLayer<MemoryBudgetStore> {
    /// `Ok(None)` when no budget is configured (no global or model limit and no
    /// key `budget_limit`). `worst_prices` gives a group's dearest prices,
    /// `known_models` says whether a `model_limits` name is a configured model.
    pub fn from_config(
        config: &Config,
        worst_prices: WorstPrices,
        known_models: &dyn Fn(&str) -> bool,
    ) -> Result<Option<BudgetLayer>, String> {
        Self::from_config_with(
            config,
            worst_prices,
            known_models,
            MemoryBudgetStore::new(),
            system_clock(),
        )
    }
}

impl<St: BudgetStore> BudgetLayer<St> {
    /// [`BudgetLayer::from_config`] with another store and clock.
    pub fn from_config_with(
        config: &Config,
        worst_prices: WorstPrices,
        known_models: &dyn Fn(&str) -> bool,
        store: St,
        clock: Clock,
    ) -> Result<Option<BudgetLayer<St>>, String> {
        let mut any_key = false;
        for (i, k) in config.keys.iter().enumerate() {
            match (k.budget_limit, k.budget_period) {
                (Some(v), _) => {
                    check_limit(&format!("keys[{i}].budget_limit"), v)?;
                    any_key = true;
                }
                (None, Some(_)) => {
                    return Err(format!(
                        "`keys[{i}].budget_period` has no effect without `keys[{i}].budget_limit`"
                    ))
                }
                (None, None) => {}
            }
        }
        let section = config.budget.clone().unwrap_or_default();
        if let Some(v) = section.global_limit {
            check_limit("budget.global_limit", v)?;
        }
        for (name, &v) in &section.model_limits {
            check_limit(&format!("budget.model_limits.\"{name}\""), v)?;
            if !known_models(name) {
                return Err(format!(
                    "`budget.model_limits` names `{name}`, which is not a configured model"
                ));
            }
        }
        let section_limits = section.global_limit.is_some() || !section.model_limits.is_empty();
        if config.budget.is_some() && !section_limits && !any_key {
            return Err("`[budget]` sets no limit: set `global_limit`, `model_limits` or a key's `budget_limit`, or remove the section".into());
        }
        if section.period.is_some() && !section_limits {
            return Err("`budget.period` has no effect without `budget.global_limit` or `budget.model_limits`".into());
        }
        if !section_limits && !any_key {
            return Ok(None);
        }
        Ok(Some(BudgetLayer {
            shared: Arc::new(Shared {
                store,
                hard: section.enforcement == Enforcement::Hard,
                global: section.global_limit,
                models: section.model_limits.into_iter().collect(),
                period: section.period,
                worst_prices,
                clock,
            }),
        }))
    }

    /// The current state of one budget: `Key` with a key id, `Model` with a
    /// group name, `Global` with any name. `None` if not configured or unused.
    pub async fn state(&self, scope: BudgetScope, name: &str) -> Option<BudgetState> {
        let s = &self.shared;
        let (limit, period) = match scope {
            BudgetScope::Global => (s.global?, s.period),
            BudgetScope::Model => (*s.models.get(name)?, s.period),
            // The key's period only matters when the cell is created.
            BudgetScope::Key => (f64::INFINITY, None),
        };
        let now = (s.clock)();
        s.store
            .state(
                &BudgetRef {
                    scope,
                    name,
                    limit,
                    period,
                },
                now,
            )
            .await
    }
}

impl<S, St: BudgetStore> Layer<S> for BudgetLayer<St> {
    type Service = BudgetService<S, St>;

    fn layer(&self, inner: S) -> Self::Service {
        BudgetService {
            inner,
            shared: self.shared.clone(),
        }
    }
}

pub struct BudgetService<S, St: BudgetStore = MemoryBudgetStore> {
    inner: S,
    shared: Arc<Shared<St>>,
}

impl<S: Clone, St: BudgetStore> Clone for BudgetService<S, St> {
    fn clone(&self) -> Self {
        BudgetService {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

/// Holds a reservation until settlement; releases it if dropped unsettled.
struct Hold<St: BudgetStore> {
    shared: Arc<Shared<St>>,
    ticket: Option<St::Ticket>,
}

impl<St: BudgetStore> Hold<St> {
    fn finish(&mut self, actual: f64) {
        if let Some(t) = self.ticket.take() {
            let now = (self.shared.clock)();
            self.shared.store.settle(t, actual, now);
        }
    }
}

impl<St: BudgetStore> Drop for Hold<St> {
    fn drop(&mut self) {
        self.finish(0.0);
    }
}

/// What a finished request is charged: nothing for a cached answer.
fn charge(o: &Outcome) -> f64 {
    if o.cached || !o.cost_usd.is_finite() || o.cost_usd < 0.0 {
        0.0
    } else {
        o.cost_usd
    }
}

impl<St: BudgetStore> Shared<St> {
    /// The most `req` can cost at its group's dearest prices.
    fn estimate(&self, req: &ChatRequest) -> f64 {
        (self.worst_prices)(&req.model).map_or(0.0, |p| {
            req.estimated_prompt_tokens as f64 * p.input
                + req.max_tokens.unwrap_or(DEFAULT_MAX_OUTPUT_TOKENS) as f64 * p.output
        })
    }

    fn rejection(&self, b: &BudgetRef<'_>, state: BudgetState, amount: f64, now: i64) -> ApiError {
        let which = match b.scope {
            BudgetScope::Key => "this API key's budget".to_string(),
            BudgetScope::Model => format!("the budget for model `{}`", b.name),
            BudgetScope::Global => "the proxy's global budget".to_string(),
        };
        let per = match b.period {
            None => "",
            Some(BudgetPeriod::Daily) => " per day",
            Some(BudgetPeriod::Weekly) => " per week",
            Some(BudgetPeriod::Monthly) => " per month",
        };
        let mut msg = format!(
            "Budget exceeded: {which} of {}{per} would be exceeded ({} spent, {} reserved by requests in flight, this request may cost up to {}).",
            usd(b.limit),
            usd(state.spent),
            usd(state.reserved),
            usd(amount),
        );
        if let Some(end) = window_end(b.period, now) {
            msg.push_str(&format!(" It resets at {}.", fmt_utc(end)));
        }
        if !req_could_fit(b.limit, amount) {
            msg.push_str(" Lower `max_tokens` to reserve less.");
        }
        ApiError::new(ErrorKind::BudgetExceeded, msg).with_code("budget_exceeded")
    }
}

fn req_could_fit(limit: f64, amount: f64) -> bool {
    amount <= limit * (1.0 + SLACK)
}

/// Header value naming the exceeded budgets (bits of [`Admission::over`]).
fn exceeded_header(over: u8, scopes: &[BudgetScope]) -> HeaderValue {
    let names: Vec<&str> = scopes
        .iter()
        .enumerate()
        .filter(|(i, _)| over & (1 << i) != 0)
        .map(|(_, s)| s.as_str())
        .collect();
    HeaderValue::from_str(&names.join(",")).unwrap_or(HeaderValue::from_static("budget"))
}

impl<S, St> Service<ChatRequest> for BudgetService<S, St>
where
    S: Service<ChatRequest, Response = ChatResponse, Error = ApiError> + Clone + Send + 'static,
    S::Future: Send + 'static,
    St: BudgetStore,
{
    type Response = ChatResponse;
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<ChatResponse, ApiError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ApiError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: ChatRequest) -> Self::Future {
        let inner = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, inner);
        let shared = self.shared.clone();
        Box::pin(async move {
            let s = &*shared;
            let key = req
                .caller
                .limits
                .as_ref()
                .and_then(|l| Some((l.budget_limit?, l.budget_period)));
            let model = s.models.get(req.model.as_str()).copied();
            if key.is_none() && model.is_none() && s.global.is_none() {
                return inner.call(req).await;
            }
            let mut refs: [BudgetRef<'_>; 3] = [BudgetRef {
                scope: BudgetScope::Global,
                name: "",
                limit: 0.0,
                period: None,
            }; 3];
            let mut n = 0;
            if let Some((limit, period)) = key {
                refs[n] = BudgetRef {
                    scope: BudgetScope::Key,
                    name: &req.caller.key_id,
                    limit,
                    period,
                };
                n += 1;
            }
            if let Some(limit) = model {
                refs[n] = BudgetRef {
                    scope: BudgetScope::Model,
                    name: &req.model,
                    limit,
                    period: s.period,
                };
                n += 1;
            }
            if let Some(limit) = s.global {
                refs[n] = BudgetRef {
                    scope: BudgetScope::Global,
                    name: "",
                    limit,
                    period: s.period,
                };
                n += 1;
            }
            let amount = s.estimate(&req);
            let now = (s.clock)();
            let admission = match s.store.reserve(&refs[..n], amount, now, s.hard).await {
                Ok(a) => a,
                Err(over) => return Err(s.rejection(&refs[over.index], over.state, amount, now)),
            };
            let mut scopes = [BudgetScope::Global; 3];
            for (i, r) in refs[..n].iter().enumerate() {
                scopes[i] = r.scope;
            }
            let over = admission.over;
            let mut hold = Hold {
                shared: shared.clone(),
                ticket: Some(admission.ticket),
            };
            req.settlement.on_settle(move |o| hold.finish(charge(o)));
            let header = (over != 0).then(|| exceeded_header(over, &scopes[..n]));
            if let Some(h) = &header {
                tracing::warn!(
                    request_id = %req.request_id,
                    model = %req.model,
                    budgets = h.to_str().unwrap_or_default(),
                    "budget exceeded; letting the request through (soft enforcement)"
                );
            }
            let mut resp = inner.call(req).await?;
            if let Some(h) = header {
                resp.headers_mut().insert(BUDGET_EXCEEDED_HEADER, h);
            }
            Ok(resp)
        })
    }
}

// ---------------------------------------------------------------------------
// Cost header and spend records

/// Adds `x-liter-llm-cost: <usd>` to JSON answers (the settlement has run by
/// the time the inner service returns one) and, with a [`SpendLog`], records
/// every request's spend when it settles, streams included. Stack it outside
/// the cache so cache hits are recorded (with cost 0).
#[derive(Clone, Debug, Default)]
pub struct CostLayer {
    spend: Option<Arc<SpendLog>>,
}

impl CostLayer {
    pub fn new(spend: Option<Arc<SpendLog>>) -> CostLayer {
        CostLayer { spend }
    }
}

impl<S> Layer<S> for CostLayer {
    type Service = CostService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CostService {
            inner,
            spend: self.spend.clone(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct CostService<S> {
    inner: S,
    spend: Option<Arc<SpendLog>>,
}

impl<S> Service<ChatRequest> for CostService<S>
where
    S: Service<ChatRequest, Response = ChatResponse, Error = ApiError> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = ChatResponse;
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<ChatResponse, ApiError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ApiError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: ChatRequest) -> Self::Future {
        let inner = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, inner);
        if let Some(log) = &self.spend {
            log.track(&req);
        }
        let settlement = req.settlement.clone();
        Box::pin(async move {
            let mut resp = inner.call(req).await?;
            if matches!(resp.body(), GatewayBody::Full(_)) && settlement.is_settled() {
                let mut cost = 0.0;
                settlement.update(|o| cost = charge(o));
                // Rounded to a billionth of a dollar: float noise such as
                // 0.00009750000000000001 helps nobody reading a header.
                let text = format!("{cost:.9}");
                let text = text.trim_end_matches('0').trim_end_matches('.');
                let text = if text.is_empty() { "0" } else { text };
                if let Ok(v) = HeaderValue::from_str(text) {
                    resp.headers_mut().insert(COST_HEADER, v);
                }
            }
            Ok(resp)
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::pipeline::{Caller, KeyLimits, Settlement, Usage};
    use bytes::Bytes;
    use serde_json::json;
    use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
    use std::time::Duration;
    use tower::{service_fn, ServiceExt};

    // 2026-11-27 12:00:00 UTC, a Friday.
    const NOON: i64 = 1_795_780_800;

    /// Two models, `gpt-4o` and `mini`, and `extra` merged in (JSON shaped like the TOML).
    fn config(extra: serde_json::Value) -> Config {
        let mut v = serde_json::json!({
            "general": {"master_key": "sk-m"},
            "models": [
                {"name": "gpt-4o", "provider_model": "openai/gpt-4o"},
                {"name": "mini", "provider_model": "openai/gpt-4o-mini"},
            ],
        });
        if let serde_json::Value::Object(extra) = extra {
            for (k, x) in extra {
                v[k] = x;
            }
        }
        serde_json::from_value(v).unwrap()
    }

    fn global(limit: f64) -> serde_json::Value {
        json!({"budget": {"global_limit": limit}})
    }

    fn key_budget(limit: f64) -> serde_json::Value {
        json!({"keys": [{"key": "sk-a", "budget_limit": limit}]})
    }

    /// Input $0.01/token, output $0.1/token for every group.
    fn prices() -> WorstPrices {
        Arc::new(|_| {
            Some(Prices {
                input: 0.01,
                output: 0.1,
                cache_read: None,
                cache_write: None,
            })
        })
    }

    fn known(name: &str) -> bool {
        name == "gpt-4o" || name == "mini"
    }

    struct Clk(Arc<AtomicI64>);

    impl Clk {
        fn new(t: i64) -> Clk {
            Clk(Arc::new(AtomicI64::new(t)))
        }
        fn clock(&self) -> Clock {
            let c = self.0.clone();
            Arc::new(move || c.load(Ordering::SeqCst))
        }
        fn set(&self, t: i64) {
            self.0.store(t, Ordering::SeqCst);
        }
    }

    fn layer(extra: serde_json::Value, clk: &Clk) -> BudgetLayer {
        layer_with(extra, prices(), clk)
    }

    fn layer_with(extra: serde_json::Value, prices: WorstPrices, clk: &Clk) -> BudgetLayer {
        BudgetLayer::from_config_with(
            &config(extra),
            prices,
            &known,
            MemoryBudgetStore::new(),
            clk.clock(),
        )
        .unwrap()
        .unwrap()
    }

    fn request(
        model: &str,
        key: &str,
        budget: Option<(f64, Option<BudgetPeriod>)>,
        max_tokens: u64,
    ) -> ChatRequest {
        ChatRequest {
            endpoint: crate::pipeline::Endpoint::ChatCompletions,
            body_format: Default::default(),
            expects_json: true,
            body: Bytes::from_static(b"{}"),
            model: model.to_string(),
            model_span: (0, 0),
            stream: false,
            include_usage: false,
            max_tokens: Some(max_tokens),
            caller: Caller {
                key_id: Arc::from(key),
                limits: budget.map(|(b, p)| {
                    Arc::new(KeyLimits {
                        budget_limit: Some(b),
                        budget_period: p,
                        ..KeyLimits::default()
                    })
                }),
            },
            request_id: "req-1".to_string(),
            deadline: tokio::time::Instant::now() + Duration::from_secs(60),
            cache: Default::default(),
            // 100 tokens at $0.01 = $1.
            estimated_prompt_tokens: 100,
            settlement: Settlement::new(),
        }
    }

    /// An inner service that settles at once (JSON answer) with `cost`.
    fn answering(
        cost: f64,
    ) -> impl Service<ChatRequest, Response = ChatResponse, Error = ApiError, Future = impl Send>
           + Clone
           + Send
           + 'static {
        service_fn(move |req: ChatRequest| async move {
            req.settlement.update(|o| {
                o.status = 200;
                o.cost_usd = cost;
                o.completed = true;
                o.usage = Some(Usage {
                    prompt_tokens: 1,
                    completion_tokens: 1,
                    ..Usage::default()
                });
            });
            req.settlement.settle();
            Ok::<_, ApiError>(http::Response::new(GatewayBody::full("{}")))
        })
    }

    async fn state(l: &BudgetLayer, scope: BudgetScope, name: &str) -> BudgetState {
        l.state(scope, name).await.unwrap_or_default()
    }

    #[test]
    fn from_config_is_none_without_budgets_and_validates_fields() {
        assert!(
            BudgetLayer::from_config(&config(json!({})), prices(), &known)
                .unwrap()
                .is_none()
        );
        let some = |v: serde_json::Value| BudgetLayer::from_config(&config(v), prices(), &known);
        assert!(some(global(5.0)).unwrap().is_some());
        assert!(some(json!({"budget": {"model_limits": {"gpt-4o": 5.0}}}))
            .unwrap()
            .is_some());
        assert!(some(key_budget(1.0)).unwrap().is_some());
        for (v, want) in [
            (global(0.0), "`budget.global_limit` must be"),
            (global(-1.0), "`budget.global_limit` must be"),
            (
                json!({"budget": {"model_limits": {"gpt-4o": 0.0}}}),
                "budget.model_limits.\"gpt-4o\"",
            ),
            (
                json!({"budget": {"model_limits": {"nope": 1.0}}}),
                "`budget.model_limits` names `nope`",
            ),
            (key_budget(0.0), "`keys[0].budget_limit` must be"),
            (
                json!({"keys": [{"key": "sk-a", "budget_period": "daily"}]}),
                "`keys[0].budget_period` has no effect",
            ),
            (
                json!({"budget": {"enforcement": "soft"}}),
                "`[budget]` sets no limit",
            ),
            (
                json!({"budget": {"period": "daily"}, "keys": [{"key": "sk-a", "budget_limit": 1.0}]}),
                "`budget.period` has no effect",
            ),
        ] {
            let err = some(v.clone()).unwrap_err();
            assert!(err.contains(want), "{v}: {err}");
        }
        // Not representable in JSON: set directly.
        for bad in [f64::NAN, f64::INFINITY] {
            let mut c = config(global(1.0));
            c.budget.as_mut().unwrap().global_limit = Some(bad);
            let err = BudgetLayer::from_config(&c, prices(), &known).unwrap_err();
            assert!(err.contains("`budget.global_limit` must be"), "{err}");
            let mut c = config(key_budget(1.0));
            c.keys[0].budget_limit = Some(bad);
            let err = BudgetLayer::from_config(&c, prices(), &known).unwrap_err();
            assert!(err.contains("`keys[0].budget_limit` must be"), "{err}");
        }
    }

    #[tokio::test]
    async fn reserves_the_worst_case_and_trues_up_at_settlement() {
        let clk = Clk::new(NOON);
        let l = layer(global(100.0), &clk);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let rx = Arc::new(tokio::sync::Mutex::new(Some(rx)));
        let inner = service_fn(move |req: ChatRequest| {
            let rx = rx.clone();
            async move {
                let rx = rx.lock().await.take().unwrap();
                rx.await.unwrap();
                req.settlement.update(|o| o.cost_usd = 0.75);
                req.settlement.settle();
                Ok::<_, ApiError>(http::Response::new(GatewayBody::full("{}")))
            }
        });
        let svc = l.layer(inner);
        // 100 prompt tokens * $0.01 + 20 max_tokens * $0.1 = $3.
        let call = tokio::spawn(svc.oneshot(request("gpt-4o", "k", None, 20)));
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(
            state(&l, BudgetScope::Global, "").await,
            BudgetState {
                spent: 0.0,
                reserved: 3.0
            }
        );
        tx.send(()).unwrap();
        call.await.unwrap().unwrap();
        assert_eq!(
            state(&l, BudgetScope::Global, "").await,
            BudgetState {
                spent: 0.75,
                reserved: 0.0
            }
        );
    }

    #[tokio::test]
    async fn a_request_without_max_tokens_reserves_the_default_maximum() {
        let clk = Clk::new(NOON);
        // 100 * 0.01 + 4096 * 0.1 = $410.60 > $400.
        let l = layer(global(400.0), &clk);
        let mut req = request("gpt-4o", "k", None, 0);
        req.max_tokens = None;
        let err = l.layer(answering(0.0)).oneshot(req).await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::BudgetExceeded);
        assert!(err.message.contains("$410.60"), "{}", err.message);
        assert!(
            err.message.contains("Lower `max_tokens`"),
            "{}",
            err.message
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn fifty_concurrent_requests_against_a_budget_for_ten_admit_ten() {
        let clk = Clk::new(NOON);
        // Each request reserves 100 * 0.01 + 10 * 0.1 = $2; $20 holds ten.
        let l = layer(key_budget(20.0), &clk);
        let release = Arc::new(tokio::sync::Notify::new());
        let entered = Arc::new(AtomicUsize::new(0));
        let (r, e) = (release.clone(), entered.clone());
        let inner = service_fn(move |req: ChatRequest| {
            let (r, e) = (r.clone(), e.clone());
            async move {
                e.fetch_add(1, Ordering::SeqCst);
                r.notified().await;
                req.settlement.update(|o| o.cost_usd = 0.5);
                req.settlement.settle();
                Ok::<_, ApiError>(http::Response::new(GatewayBody::full("{}")))
            }
        });
        let svc = l.layer(inner);
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let svc = svc.clone();
            tasks.push(tokio::spawn(svc.oneshot(request(
                "gpt-4o",
                "key-a",
                Some((20.0, None)),
                10,
            ))));
        }
        // Wait until every request was either admitted (and is waiting) or rejected.
        let mut rejected = 0;
        let mut pending = Vec::new();
        for t in tasks {
            if t.is_finished() {
                let r = t.await.unwrap();
                let e = r.unwrap_err();
                assert_eq!(e.kind, ErrorKind::BudgetExceeded);
                rejected += 1;
            } else {
                pending.push(t);
            }
        }
        for _ in 0..200 {
            if entered.load(Ordering::SeqCst) + rejected >= 50 {
                break;
            }
            let mut still = Vec::new();
            for t in pending {
                if t.is_finished() {
                    t.await.unwrap().unwrap_err();
                    rejected += 1;
                } else {
                    still.push(t);
                }
            }
            pending = still;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(entered.load(Ordering::SeqCst), 10, "admitted");
        assert_eq!(rejected, 40);
        assert_eq!(state(&l, BudgetScope::Key, "key-a").await.reserved, 20.0);
        release.notify_waiters();
        for t in pending {
            t.await.unwrap().unwrap();
        }
        // True-up: 10 * $0.50 spent, nothing reserved; $15 left = 7 more.
        assert_eq!(
            state(&l, BudgetScope::Key, "key-a").await,
            BudgetState {
                spent: 5.0,
                reserved: 0.0
            }
        );
        let svc = l.layer(answering(2.0));
        let mut ok = 0;
        for _ in 0..10 {
            if svc
                .clone()
                .oneshot(request("gpt-4o", "key-a", Some((20.0, None)), 10))
                .await
                .is_ok()
            {
                ok += 1;
            }
        }
        assert_eq!(ok, 7, "$15 left at $2 a request");
    }

    #[tokio::test]
    async fn hard_rejection_is_402_naming_the_budget_and_limit_but_not_the_key() {
        let clk = Clk::new(NOON);
        let l = layer(
            json!({"budget": {"global_limit": 1000.0, "model_limits": {"gpt-4o": 2.5}, "period": "monthly"}}),
            &clk,
        );
        let svc = l.layer(answering(1.0));
        // $2 reservation, $1 actual → then $1 + $2 > $2.5.
        svc.clone()
            .oneshot(request("gpt-4o", "sk-secret-id", None, 10))
            .await
            .unwrap();
        let e = svc
            .clone()
            .oneshot(request("gpt-4o", "sk-secret-id", None, 10))
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::BudgetExceeded);
        assert_eq!(e.kind.status().as_u16(), 402);
        assert_eq!(e.code.as_deref(), Some("budget_exceeded"));
        assert!(e.message.contains("model `gpt-4o`"), "{}", e.message);
        assert!(e.message.contains("$2.50 per month"), "{}", e.message);
        assert!(e.message.contains("$1.00 spent"), "{}", e.message);
        assert!(e.message.contains("2026-12-01 00:00 UTC"), "{}", e.message);
        assert!(!e.message.contains("sk-secret-id"), "{}", e.message);
        // Another model is not limited by gpt-4o's budget.
        svc.clone()
            .oneshot(request("mini", "sk-secret-id", None, 10))
            .await
            .unwrap();

        let l = layer(key_budget(1.0), &clk);
        let e = l
            .layer(answering(0.0))
            .oneshot(request("gpt-4o", "sk-secret-id", Some((1.0, None)), 10))
            .await
            .unwrap_err();
        assert!(
            e.message.contains("this API key's budget of $1.00"),
            "{}",
            e.message
        );
        assert!(!e.message.contains("sk-secret-id"), "{}", e.message);
    }

    #[tokio::test]
    async fn the_global_budget_is_shared_across_keys_and_models() {
        let clk = Clk::new(NOON);
        let l = layer(global(5.0), &clk);
        let svc = l.layer(answering(2.0));
        svc.clone()
            .oneshot(request("gpt-4o", "a", None, 10))
            .await
            .unwrap();
        svc.clone()
            .oneshot(request("mini", "b", None, 10))
            .await
            .unwrap();
        // $4 spent; $4 + $2 > $5.
        let e = svc
            .clone()
            .oneshot(request("other", "c", None, 10))
            .await
            .unwrap_err();
        assert!(
            e.message.contains("global budget of $5.00"),
            "{}",
            e.message
        );
        assert_eq!(state(&l, BudgetScope::Global, "").await.spent, 4.0);
    }

    #[tokio::test]
    async fn soft_mode_lets_the_request_through_with_a_header() {
        let clk = Clk::new(NOON);
        let l = layer(
            json!({"budget": {"global_limit": 1.0, "enforcement": "soft", "model_limits": {"gpt-4o": 100.0}}}),
            &clk,
        );
        // Within every budget: no header. ($1 reserved: 100 prompt tokens, max_tokens 0.)
        let resp = l
            .layer(answering(0.0))
            .oneshot(request("gpt-4o", "k2", None, 0))
            .await
            .unwrap();
        assert_eq!(resp.headers().get(BUDGET_EXCEEDED_HEADER), None);
        // Over the key's and the global budget ($2 reserved): through, with the header.
        let resp = l
            .layer(answering(3.0))
            .oneshot(request("gpt-4o", "k", Some((1.0, None)), 10))
            .await
            .unwrap();
        assert_eq!(resp.headers()[BUDGET_EXCEEDED_HEADER], "key,global");
        // Still counted.
        assert_eq!(state(&l, BudgetScope::Global, "").await.spent, 3.0);
        assert_eq!(state(&l, BudgetScope::Key, "k").await.spent, 3.0);
        assert_eq!(state(&l, BudgetScope::Model, "gpt-4o").await.spent, 3.0);
    }

    #[tokio::test]
    async fn a_stream_holds_its_reservation_until_it_settles() {
        let clk = Clk::new(NOON);
        let l = layer(global(10.0), &clk);
        let settlements = Arc::new(Mutex::new(Vec::<Settlement>::new()));
        let s2 = settlements.clone();
        let inner = service_fn(move |req: ChatRequest| {
            // A stream: the answer returns now, the settlement comes at its end.
            s2.lock().unwrap().push(req.settlement.clone());
            async move { Ok::<_, ApiError>(http::Response::new(GatewayBody::full("stream"))) }
        });
        let svc = l.layer(inner);
        let mut req = request("gpt-4o", "k", None, 10);
        req.stream = true;
        svc.clone().oneshot(req).await.unwrap();
        assert_eq!(state(&l, BudgetScope::Global, "").await.reserved, 2.0);
        let s = settlements.lock().unwrap().pop().unwrap();
        s.update(|o| {
            o.cost_usd = 1.25;
            o.usage = Some(Usage {
                prompt_tokens: 5,
                completion_tokens: 10,
                ..Usage::default()
            });
        });
        s.settle();
        assert_eq!(
            state(&l, BudgetScope::Global, "").await,
            BudgetState {
                spent: 1.25,
                reserved: 0.0
            }
        );
    }

    #[tokio::test]
    async fn failed_cached_and_abandoned_requests_release_their_reservations() {
        let clk = Clk::new(NOON);
        let l = layer(global(10.0), &clk);
        // The inner service fails without settling and drops the request.
        let failing = service_fn(|_req: ChatRequest| async {
            Err::<ChatResponse, _>(ApiError::new(ErrorKind::BadGateway, "upstream down"))
        });
        l.layer(failing)
            .oneshot(request("gpt-4o", "k", None, 10))
            .await
            .unwrap_err();
        assert_eq!(
            state(&l, BudgetScope::Global, "").await,
            BudgetState::default()
        );
        // A cache hit charges nothing even if a cost was filled in.
        let cached = service_fn(|req: ChatRequest| async move {
            req.settlement.update(|o| {
                o.cached = true;
                o.cost_usd = 5.0;
            });
            req.settlement.settle();
            Ok::<_, ApiError>(http::Response::new(GatewayBody::full("{}")))
        });
        l.layer(cached)
            .oneshot(request("gpt-4o", "k", None, 10))
            .await
            .unwrap();
        assert_eq!(
            state(&l, BudgetScope::Global, "").await,
            BudgetState::default()
        );
        // The client leaves before the answer: the future is dropped.
        let never = service_fn(|_req: ChatRequest| {
            std::future::pending::<Result<ChatResponse, ApiError>>()
        });
        let fut = l.layer(never).oneshot(request("gpt-4o", "k", None, 10));
        let _ = tokio::time::timeout(Duration::from_millis(10), fut).await;
        assert_eq!(
            state(&l, BudgetScope::Global, "").await,
            BudgetState::default()
        );
    }

    #[tokio::test]
    async fn daily_budgets_roll_over_at_midnight_utc() {
        let clk = Clk::new(NOON);
        let l = layer(key_budget(3.0), &clk);
        let svc = l.layer(answering(2.0));
        let daily = Some((3.0, Some(BudgetPeriod::Daily)));
        svc.clone()
            .oneshot(request("gpt-4o", "k", daily, 10))
            .await
            .unwrap();
        assert!(svc
            .clone()
            .oneshot(request("gpt-4o", "k", daily, 10))
            .await
            .is_err());
        clk.set(NOON + 12 * 3600 - 1); // 23:59:59
        let e = svc
            .clone()
            .oneshot(request("gpt-4o", "k", daily, 10))
            .await
            .unwrap_err();
        assert!(e.message.contains("$3.00 per day"), "{}", e.message);
        assert!(
            e.message.contains("resets at 2026-11-28 00:00 UTC"),
            "{}",
            e.message
        );
        clk.set(NOON + 12 * 3600); // 00:00:00 the next day
        svc.clone()
            .oneshot(request("gpt-4o", "k", daily, 10))
            .await
            .unwrap();
        assert_eq!(state(&l, BudgetScope::Key, "k").await.spent, 2.0);
    }

    #[tokio::test]
    async fn weekly_and_monthly_budgets_roll_over_at_their_utc_boundaries() {
        let clk = Clk::new(NOON);
        for (period, last, first) in [
            // Sunday 2026-11-29 23:59:59 → Monday 2026-11-30 00:00.
            ("weekly", 1_795_996_799, 1_795_996_800),
            // 2026-11-30 23:59:59 → 2026-12-01 00:00.
            ("monthly", 1_796_083_199, 1_796_083_200),
        ] {
            clk.set(NOON);
            let l = layer(
                json!({"budget": {"global_limit": 3.0, "period": period}}),
                &clk,
            );
            let svc = l.layer(answering(2.0));
            svc.clone()
                .oneshot(request("gpt-4o", "k", None, 10))
                .await
                .unwrap();
            clk.set(last);
            assert!(
                svc.clone()
                    .oneshot(request("gpt-4o", "k", None, 10))
                    .await
                    .is_err(),
                "{period}"
            );
            clk.set(first);
            svc.clone()
                .oneshot(request("gpt-4o", "k", None, 10))
                .await
                .unwrap();
        }
        // Without a period the budget never resets.
        clk.set(NOON);
        let l = layer(global(3.0), &clk);
        let svc = l.layer(answering(2.0));
        svc.clone()
            .oneshot(request("gpt-4o", "k", None, 10))
            .await
            .unwrap();
        clk.set(NOON + 400 * DAY);
        assert!(svc
            .clone()
            .oneshot(request("gpt-4o", "k", None, 10))
            .await
            .is_err());
    }

    #[test]
    fn calendar_math_matches_known_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(NOON.div_euclid(DAY)), (2026, 11, 27));
        assert_eq!(days_from_civil(2026, 11, 27), NOON.div_euclid(DAY));
        assert_eq!(
            days_from_civil(2024, 2, 29) + 1,
            days_from_civil(2024, 3, 1)
        );
        assert_eq!(
            window_end(Some(BudgetPeriod::Monthly), NOON),
            Some(1_796_083_200)
        );
        assert_eq!(
            window_end(Some(BudgetPeriod::Weekly), NOON),
            Some(1_795_996_800)
        );
        assert_eq!(
            window_end(Some(BudgetPeriod::Daily), NOON),
            Some(NOON + 12 * 3600)
        );
        assert_eq!(window_end(None, NOON), None);
        // December rolls into January.
        let dec = days_from_civil(2026, 12, 15) * DAY;
        assert_eq!(
            window_end(Some(BudgetPeriod::Monthly), dec),
            Some(days_from_civil(2027, 1, 1) * DAY)
        );
        assert_ne!(
            window(Some(BudgetPeriod::Monthly), dec),
            window(
                Some(BudgetPeriod::Monthly),
                days_from_civil(2027, 1, 1) * DAY
            )
        );
    }

    #[tokio::test]
    async fn a_reservation_across_a_period_boundary_is_charged_to_the_new_period() {
        let clk = Clk::new(NOON + 12 * 3600 - 1);
        let l = layer(
            json!({"budget": {"global_limit": 10.0, "period": "daily"}}),
            &clk,
        );
        let held = Arc::new(Mutex::new(None::<Settlement>));
        let h2 = held.clone();
        let inner = service_fn(move |req: ChatRequest| {
            *h2.lock().unwrap() = Some(req.settlement.clone());
            async move { Ok::<_, ApiError>(http::Response::new(GatewayBody::full("s"))) }
        });
        l.layer(inner)
            .oneshot(request("gpt-4o", "k", None, 10))
            .await
            .unwrap();
        clk.set(NOON + 12 * 3600 + 5);
        // The in-flight reservation still holds in the new day.
        assert_eq!(state(&l, BudgetScope::Global, "").await.reserved, 2.0);
        let s = held.lock().unwrap().take().unwrap();
        s.update(|o| o.cost_usd = 1.5);
        s.settle();
        assert_eq!(
            state(&l, BudgetScope::Global, "").await,
            BudgetState {
                spent: 1.5,
                reserved: 0.0
            }
        );
    }

    #[tokio::test]
    async fn sums_that_fit_exactly_are_admitted_despite_float_rounding() {
        let clk = Clk::new(NOON);
        let l = layer_with(
            global(0.3),
            Arc::new(|_| {
                Some(Prices {
                    input: 0.0,
                    output: 0.1,
                    cache_read: None,
                    cache_write: None,
                })
            }),
            &clk,
        );
        let svc = l.layer(answering(0.1));
        for _ in 0..3 {
            svc.clone()
                .oneshot(request("gpt-4o", "k", None, 1))
                .await
                .unwrap();
        }
        assert!(svc
            .clone()
            .oneshot(request("gpt-4o", "k", None, 1))
            .await
            .is_err());
    }

    #[tokio::test]
    async fn unknown_prices_reserve_nothing_but_spent_budgets_still_reject() {
        let clk = Clk::new(NOON);
        let l = layer_with(global(1.0), Arc::new(|_| None), &clk);
        let svc = l.layer(answering(1.0));
        svc.clone()
            .oneshot(request("gpt-4o", "k", None, 10))
            .await
            .unwrap();
        let e = svc
            .clone()
            .oneshot(request("gpt-4o", "k", None, 10))
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::BudgetExceeded);
    }

    #[tokio::test]
    async fn cost_header_on_json_answers_only_and_spend_is_recorded_for_streams() {
        let log = SpendLog::start(Default::default(), Vec::new());
        let cost = CostLayer::new(Some(log.clone()));
        let resp = cost
            .layer(answering(0.000125))
            .oneshot(request("gpt-4o", "k", None, 1))
            .await
            .unwrap();
        assert_eq!(resp.headers()[COST_HEADER], "0.000125");

        // A stream (simulated): the response comes back before the settlement,
        // so there is no header; the spend record comes when it settles.
        let held = Arc::new(Mutex::new(None::<Settlement>));
        let h2 = held.clone();
        let streaming = service_fn(move |req: ChatRequest| {
            *h2.lock().unwrap() = Some(req.settlement.clone());
            async move { Ok::<_, ApiError>(http::Response::new(GatewayBody::full("data: ..."))) }
        });
        let mut req = request("gpt-4o", "k2", None, 1);
        req.stream = true;
        let resp = cost.layer(streaming).oneshot(req).await.unwrap();
        assert_eq!(resp.headers().get(COST_HEADER), None);
        log.flush().await;
        assert_eq!(
            log.recent(10).len(),
            1,
            "the stream is not recorded before it ends"
        );
        let s = held.lock().unwrap().take().unwrap();
        s.update(|o| {
            o.cost_usd = 0.5;
            o.usage = Some(Usage {
                prompt_tokens: 3,
                completion_tokens: 7,
                ..Usage::default()
            });
        });
        s.settle();
        log.flush().await;
        let r = log.recent(10);
        assert_eq!(r.len(), 2);
        assert_eq!(
            (r[0].key_id.as_ref(), r[0].cost_usd, r[0].completion_tokens),
            ("k2", 0.5, 7)
        );
        assert_eq!(r[1].cost_usd, 0.000125);
        assert_eq!(r[0].model_group, "gpt-4o");
    }
}
