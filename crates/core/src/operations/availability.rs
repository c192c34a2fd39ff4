//! Availability against its objective: the share of public requests answered
//! without a 5xx, per UTC day and over the objective's window, the error
//! budget that leaves, and whether the budget is burning fast.
//!
//! The fast-burn rule is the multi-window, multi-burn-rate alert of Google's
//! SRE workbook ("Alerting on SLOs", <https://sre.google/workbook/alerting-on-slos/>):
//! page when 2 % of a 30-day budget goes in one hour (burn rate 14.4, over the
//! last hour *and* the last 5 minutes) or 5 % in six hours (burn rate 6, over
//! the last 6 hours *and* the last 30 minutes). The short window makes the
//! alert resolve soon after the errors stop; the long one keeps a short spike
//! from paging.
//!
//! Pure: given request counts, never reads the metrics itself.

use serde::Serialize;

/// The objective's window.
pub const OBJECTIVE_WINDOW_DAYS: u32 = 30;

/// Requests and how many of them were answered with a 5xx.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct RequestCount {
    /// Public requests.
    pub requests: u64,
    /// Of them, answered 5xx.
    pub errors: u64,
}

impl RequestCount {
    /// Share answered without a 5xx; `None` without requests.
    #[must_use]
    pub fn availability(self) -> Option<f64> {
        (self.requests > 0).then(|| 1.0 - self.error_ratio())
    }

    fn error_ratio(self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            self.errors.min(self.requests) as f64 / self.requests as f64
        }
    }
}

impl std::ops::Add for RequestCount {
    type Output = Self;
    fn add(self, other: Self) -> Self {
        Self {
            requests: self.requests + other.requests,
            errors: self.errors + other.errors,
        }
    }
}

/// An availability objective, e.g. 99.9 %, kept as good requests per million
/// (so settings holding it compare exactly).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Objective {
    good_per_million: u32,
}

impl Default for Objective {
    fn default() -> Self {
        Self {
            good_per_million: 999_000,
        }
    }
}

impl Objective {
    /// An objective of `percent` (to 4 decimals), which must be above 0 and
    /// below 100 (100 % leaves no budget to burn).
    #[must_use]
    pub fn new(percent: f64) -> Option<Self> {
        let ppm = (percent * 10_000.0).round();
        (percent.is_finite() && (1.0..1_000_000.0).contains(&ppm)).then_some(Self {
            good_per_million: ppm as u32,
        })
    }

    /// The objective in percent.
    #[must_use]
    pub fn percent(self) -> f64 {
        f64::from(self.good_per_million) / 10_000.0
    }

    /// The share of requests allowed to fail.
    #[must_use]
    pub fn error_budget(self) -> f64 {
        f64::from(1_000_000 - self.good_per_million) / 1_000_000.0
    }

    /// How many times faster than the budget allows `count` spends it (1:
    /// exactly the budget over the objective's window); `None` without requests.
    #[must_use]
    pub fn burn_rate(self, count: RequestCount) -> Option<f64> {
        (count.requests > 0).then(|| count.error_ratio() / self.error_budget())
    }
}

/// One UTC day's requests.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DayAvailability {
    /// `YYYY-MM-DD`.
    pub day: String,
    /// Public requests that day.
    pub requests: u64,
    /// Of them, answered 5xx.
    pub errors: u64,
    /// Share answered without a 5xx (`None`: no requests).
    pub availability: Option<f64>,
    /// Whether the day alone met the objective (`None`: no requests).
    pub met: Option<bool>,
}

/// Availability over the objective's window and per day.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AvailabilityReport {
    /// The objective, in percent.
    pub objective_percent: f64,
    /// The window's length.
    pub window_days: u32,
    /// Public requests in the window.
    pub requests: u64,
    /// Of them, answered 5xx.
    pub errors: u64,
    /// Share answered without a 5xx over the window (`None`: no requests).
    pub availability: Option<f64>,
    /// 5xx answers the objective allows for the window's requests so far.
    pub budget_errors: f64,
    /// Share of that budget still unspent: 1 untouched, 0 spent, below 0
    /// overspent (the objective is missed).
    pub budget_left: f64,
    /// The window's days, newest first; days without requests have zeros.
    pub per_day: Vec<DayAvailability>,
}

const DAY_MS: u64 = 24 * 60 * 60 * 1_000;

fn day_of(ms: u64) -> String {
    crate::shared::calendar::utc_day(i64::try_from(ms).unwrap_or(i64::MAX))
}

/// The first UTC day (`YYYY-MM-DD`) of the objective's window ending on the
/// day of `now_ms`: the days to read.
#[must_use]
pub fn window_start(now_ms: u64) -> String {
    day_of(now_ms.saturating_sub(u64::from(OBJECTIVE_WINDOW_DAYS - 1) * DAY_MS))
}

/// The report over the objective's window ending on the day of `now_ms`,
/// from the counted `days` (`YYYY-MM-DD`, any order; days outside the window
/// are ignored, days of the window without a count have no requests).
#[must_use]
pub fn report(
    objective: Objective,
    now_ms: u64,
    days: &[(String, RequestCount)],
) -> AvailabilityReport {
    let per_day: Vec<DayAvailability> = (0..OBJECTIVE_WINDOW_DAYS)
        .map(|back| {
            let day = day_of(now_ms.saturating_sub(u64::from(back) * DAY_MS));
            let count = days
                .iter()
                .filter(|(d, _)| *d == day)
                .fold(RequestCount::default(), |sum, (_, c)| sum + *c);
            let availability = count.availability();
            DayAvailability {
                day,
                requests: count.requests,
                errors: count.errors,
                availability,
                met: availability.map(|a| a * 100.0 >= objective.percent()),
            }
        })
        .collect();
    let total = per_day.iter().fold(RequestCount::default(), |sum, d| {
        sum + RequestCount {
            requests: d.requests,
            errors: d.errors,
        }
    });
    let budget_errors = total.requests as f64 * objective.error_budget();
    let budget_left = if total.requests == 0 {
        1.0
    } else {
        1.0 - total.errors.min(total.requests) as f64 / budget_errors
    };
    AvailabilityReport {
        objective_percent: objective.percent(),
        window_days: OBJECTIVE_WINDOW_DAYS,
        requests: total.requests,
        errors: total.errors,
        availability: total.availability(),
        budget_errors,
        budget_left,
        per_day,
    }
}

/// A pair of windows and the burn rate both must reach.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct BurnRule {
    /// The long window (ms).
    pub long_ms: u64,
    /// The short window (ms), ending at the same moment.
    pub short_ms: u64,
    /// The burn rate both windows must reach.
    pub rate: f64,
}

const MINUTE_MS: u64 = 60_000;

/// The fast-burn rules (see the module header): 2 % of the budget in 1 h,
/// 5 % in 6 h.
pub const FAST_BURN: [BurnRule; 2] = [
    BurnRule {
        long_ms: 60 * MINUTE_MS,
        short_ms: 5 * MINUTE_MS,
        rate: 14.4,
    },
    BurnRule {
        long_ms: 6 * 60 * MINUTE_MS,
        short_ms: 30 * MINUTE_MS,
        rate: 6.0,
    },
];

/// The requests of one rule's two windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BurnWindows {
    /// Over the rule's long window.
    pub long: RequestCount,
    /// Over the rule's short window.
    pub short: RequestCount,
}

/// A rule that holds, with the rates that made it hold.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct FastBurn {
    /// The rule.
    pub rule: BurnRule,
    /// Burn rate over its long window.
    pub long_rate: f64,
    /// Burn rate over its short window.
    pub short_rate: f64,
    /// Requests in the long window.
    pub requests: u64,
}

/// The first of [`FAST_BURN`] that holds, given each rule's windows (in the
/// same order). A long window with fewer than `min_requests` requests says
/// nothing (one error among three requests is not an outage).
#[must_use]
pub fn fast_burn(
    objective: Objective,
    windows: &[BurnWindows; 2],
    min_requests: u64,
) -> Option<FastBurn> {
    FAST_BURN
        .iter()
        .zip(windows)
        .find_map(|(rule, counts)| holds(objective, *rule, *counts, min_requests))
}

/// `rule` over its `counts`, when it holds.
fn holds(
    objective: Objective,
    rule: BurnRule,
    counts: BurnWindows,
    min_requests: u64,
) -> Option<FastBurn> {
    if counts.long.requests < min_requests.max(1) {
        return None;
    }
    let long_rate = objective.burn_rate(counts.long)?;
    let short_rate = objective.burn_rate(counts.short)?;
    (long_rate >= rule.rate && short_rate >= rule.rate).then_some(FastBurn {
        rule,
        long_rate,
        short_rate,
        requests: counts.long.requests,
    })
}

/// One fast-burn rule as it stands now, for the operator.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct BurnStatus {
    /// The long window (ms).
    pub long_ms: u64,
    /// The short window (ms).
    pub short_ms: u64,
    /// The rate both windows must reach for the rule to hold.
    pub rate: f64,
    /// Burn rate over the long window (`None`: no requests).
    pub long_rate: Option<f64>,
    /// Burn rate over the short window (`None`: no requests).
    pub short_rate: Option<f64>,
    /// Whether the rule holds (`availability_burn` fires while any does).
    pub holds: bool,
}

/// Each of [`FAST_BURN`] over `windows` (same order).
#[must_use]
pub fn burn_status(
    objective: Objective,
    windows: &[BurnWindows; 2],
    min_requests: u64,
) -> [BurnStatus; 2] {
    let status = |rule: BurnRule, counts: BurnWindows| BurnStatus {
        long_ms: rule.long_ms,
        short_ms: rule.short_ms,
        rate: rule.rate,
        long_rate: objective.burn_rate(counts.long),
        short_rate: objective.burn_rate(counts.short),
        holds: holds(objective, rule, counts, min_requests).is_some(),
    };
    [
        status(FAST_BURN[0], windows[0]),
        status(FAST_BURN[1], windows[1]),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(requests: u64, errors: u64) -> RequestCount {
        RequestCount { requests, errors }
    }

    #[test]
    fn objective_refuses_what_leaves_no_budget_or_is_not_a_share() {
        assert!(Objective::new(100.0).is_none());
        assert!(Objective::new(0.0).is_none());
        assert!(Objective::new(f64::NAN).is_none());
        assert!(Objective::new(99.99999).is_none(), "rounds to 100 %");
        let o = Objective::new(99.9).unwrap();
        assert_eq!(o, Objective::default());
        assert!((o.error_budget() - 0.001).abs() < 1e-12);
        assert!((Objective::new(99.95).unwrap().percent() - 99.95).abs() < 1e-12);
    }

    #[test]
    fn burn_rate_is_the_error_ratio_over_the_budget() {
        let o = Objective::default();
        assert_eq!(o.burn_rate(count(0, 0)), None);
        assert!((o.burn_rate(count(1000, 1)).unwrap() - 1.0).abs() < 1e-9);
        assert!((o.burn_rate(count(1000, 20)).unwrap() - 20.0).abs() < 1e-9);
        // More errors than requests (a miscount) is every request failing.
        assert!((o.burn_rate(count(10, 50)).unwrap() - 1000.0).abs() < 1e-6);
    }

    /// 2026-12-07T12:00:00Z.
    const NOW: u64 = 1_796_644_800_000;

    #[test]
    fn report_covers_the_window_newest_day_first_and_says_how_much_budget_is_left() {
        assert_eq!(window_start(NOW), "2026-11-08");
        let days = vec![
            ("2026-12-05".to_owned(), count(10_000, 5)),
            ("2026-12-06".to_owned(), count(10_000, 15)),
            // Outside the window: not counted.
            ("2026-11-07".to_owned(), count(50, 50)),
        ];
        let r = report(Objective::default(), NOW, &days);
        assert_eq!(r.per_day.len(), 30);
        assert_eq!(r.per_day[0].day, "2026-12-07");
        assert_eq!(r.per_day[29].day, "2026-11-08");
        assert_eq!((r.requests, r.errors), (20_000, 20));
        assert!((r.budget_errors - 20.0).abs() < 1e-9);
        assert!(
            r.budget_left.abs() < 1e-9,
            "exactly spent: {}",
            r.budget_left
        );
        assert!((r.availability.unwrap() - 0.999).abs() < 1e-12);
        assert_eq!(r.per_day[0].availability, None, "no requests today");
        assert_eq!(r.per_day[0].met, None);
        assert_eq!(r.per_day[1].met, Some(false), "15 of 10,000 misses 99.9 %");
        assert_eq!(r.per_day[2].met, Some(true));
    }

    #[test]
    fn overspent_budget_goes_below_zero_and_no_traffic_leaves_it_whole() {
        let r = report(
            Objective::default(),
            NOW,
            &[("2026-12-07".to_owned(), count(1_000, 3))],
        );
        assert!((r.budget_left - -2.0).abs() < 1e-9, "{}", r.budget_left);
        let idle = report(Objective::default(), NOW, &[]);
        assert_eq!(idle.budget_left, 1.0);
        assert_eq!(idle.availability, None);
    }

    #[test]
    fn fast_burn_needs_both_windows_of_a_rule() {
        let o = Objective::default();
        // 2 % errors: burn rate 20 in the last hour...
        let hour = count(1_000, 20);
        // ...but the last 5 minutes are clean: the outage is over, no page.
        let recovered = [
            BurnWindows {
                long: hour,
                short: count(100, 0),
            },
            BurnWindows::default(),
        ];
        assert_eq!(fast_burn(o, &recovered, 20), None);
        // Still failing in the last 5 minutes: page on the 1 h rule.
        let burning = [
            BurnWindows {
                long: hour,
                short: count(100, 2),
            },
            BurnWindows::default(),
        ];
        let fired = fast_burn(o, &burning, 20).expect("fires");
        assert_eq!(fired.rule, FAST_BURN[0]);
        assert!((fired.long_rate - 20.0).abs() < 1e-9);
        assert!((fired.short_rate - 20.0).abs() < 1e-9);
    }

    #[test]
    fn slower_burn_pages_on_the_six_hour_rule_only() {
        let o = Objective::default();
        // 0.8 % errors: burn rate 8 — under 14.4, over 6.
        let windows = [
            BurnWindows {
                long: count(1_000, 8),
                short: count(100, 1),
            },
            BurnWindows {
                long: count(6_000, 48),
                short: count(500, 4),
            },
        ];
        let fired = fast_burn(o, &windows, 20).expect("fires");
        assert_eq!(fired.rule, FAST_BURN[1]);
        // Just under the budget's pace never pages.
        let calm = [
            BurnWindows {
                long: count(1_000, 1),
                short: count(100, 0),
            },
            BurnWindows {
                long: count(6_000, 5),
                short: count(500, 0),
            },
        ];
        assert_eq!(fast_burn(o, &calm, 20), None);
    }

    #[test]
    fn too_few_requests_say_nothing() {
        let o = Objective::default();
        let few = [
            BurnWindows {
                long: count(5, 5),
                short: count(5, 5),
            },
            BurnWindows {
                long: count(5, 5),
                short: count(5, 5),
            },
        ];
        assert_eq!(fast_burn(o, &few, 20), None);
        assert!(fast_burn(o, &few, 5).is_some());
        let status = burn_status(o, &few, 20);
        assert!(status.iter().all(|s| !s.holds));
        assert_eq!(status[0].long_rate, Some(1000.0));
        // Each rule is judged on its own windows: both hold here.
        let status = burn_status(o, &few, 5);
        assert!(status[0].holds && status[1].holds);
        let slow_burn = [
            BurnWindows {
                long: count(1_000, 2),
                short: count(100, 0),
            },
            BurnWindows {
                long: count(6_000, 60),
                short: count(500, 5),
            },
        ];
        let status = burn_status(o, &slow_burn, 20);
        assert!(!status[0].holds && status[1].holds);
        assert_eq!(
            fast_burn(o, &slow_burn, 20).map(|b| b.rule),
            Some(FAST_BURN[1])
        );
        assert_eq!(
            burn_status(o, &[BurnWindows::default(); 2], 5)[1].short_rate,
            None
        );
    }
}
