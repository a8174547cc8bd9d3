//! The release model's state machine: which promotions are valid, and which are gated by the
//! judge. Pure: no state, no clock.
//!
//! ```text
//!                ramp up (gated) / ramp down
//!                   +------+
//!                   v      |
//!  Production --> Canary{p} --(gated)--> Staging --(gated)--> Production
//!   ^  (new rollout)   |                                          ^
//!   |                  +---------(gated, warns: skips Staging)----+
//!   +-- rollback (manual or automatic) from Canary or Staging
//! ```
//!
//! Ramping down (or to 0 %) is never gated: it only sends fewer users to the new version.

use crate::config::Environment;
use crate::error::PromotionError;

/// The kind of a valid promotion.
///
/// # Example
/// ```
/// use promotion_gates::{plan_promotion, Environment, PromotionKind};
///
/// let step = plan_promotion(Environment::Production, Environment::Canary { traffic_percent: 1.0 })?;
/// assert_eq!(step.kind, PromotionKind::NewRollout);
/// assert!(!step.gated);
/// # Ok::<(), promotion_gates::PromotionError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PromotionKind {
    /// Production -> Canary: a new release starts.
    NewRollout,
    /// Canary{p} -> Canary{q} with q > p.
    RampUp,
    /// Canary{p} -> Canary{q} with q < p.
    RampDown,
    /// Canary -> Staging.
    ToStaging,
    /// Staging -> Production: the new version becomes the stable one.
    ToProduction,
    /// Canary -> Production, skipping Staging (allowed, with a warning).
    CanaryToProduction,
}

/// A valid promotion and whether the judge must approve it first.
///
/// # Example
/// ```
/// use promotion_gates::{plan_promotion, Environment};
/// let step = plan_promotion(Environment::Staging, Environment::Production)?;
/// assert!(step.gated);
/// # Ok::<(), promotion_gates::PromotionError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Promotion {
    /// What kind of move it is.
    pub kind: PromotionKind,
    /// Whether the judge must find the new version compliant before the move.
    pub gated: bool,
}

/// Plans the move from `from` to `to`, or says why it is not a valid promotion.
///
/// Both environments are assumed valid (see [`Environment::validate`]).
///
/// # Errors
/// [`PromotionError::AlreadyThere`] when `to == from`, [`PromotionError::InvalidPath`] when the
/// state machine has no such edge.
///
/// # Example
/// ```
/// use promotion_gates::{plan_promotion, Environment};
/// assert!(plan_promotion(Environment::Production, Environment::Staging).is_err());
/// ```
pub fn plan_promotion(from: Environment, to: Environment) -> Result<Promotion, PromotionError> {
    use Environment::{Canary, Production, Staging};
    let (kind, gated) = match (from, to) {
        (Canary { traffic_percent: p }, Canary { traffic_percent: q }) => {
            if q > p {
                (PromotionKind::RampUp, true)
            } else if q < p {
                (PromotionKind::RampDown, false)
            } else {
                return Err(PromotionError::AlreadyThere(from.to_string()));
            }
        }
        (Canary { .. }, Staging) => (PromotionKind::ToStaging, true),
        (Canary { .. }, Production) => (PromotionKind::CanaryToProduction, true),
        (Staging, Production) => (PromotionKind::ToProduction, true),
        (Production, Canary { .. }) => (PromotionKind::NewRollout, false),
        (Staging, Staging) | (Production, Production) => {
            return Err(PromotionError::AlreadyThere(from.to_string()));
        }
        (Staging, Canary { .. }) => {
            return Err(invalid(
                from,
                to,
                "from staging the only promotion is to production; use rollback to leave",
            ));
        }
        (Production, Staging) => {
            return Err(invalid(
                from,
                to,
                "a release starts as a canary: promote to Canary{percent} first",
            ));
        }
    };
    Ok(Promotion { kind, gated })
}

fn invalid(from: Environment, to: Environment, hint: &'static str) -> PromotionError {
    PromotionError::InvalidPath {
        from: from.name().to_string(),
        to: to.name().to_string(),
        hint,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Environment::{Production, Staging};

    fn canary(p: f64) -> Environment {
        Environment::Canary { traffic_percent: p }
    }

    #[test]
    fn the_whole_table() {
        let ok = |from, to, kind, gated| {
            assert_eq!(
                plan_promotion(from, to),
                Ok(Promotion { kind, gated }),
                "{from} -> {to}"
            );
        };
        ok(Production, canary(1.0), PromotionKind::NewRollout, false);
        ok(Production, canary(0.0), PromotionKind::NewRollout, false);
        ok(canary(1.0), canary(5.0), PromotionKind::RampUp, true);
        ok(canary(5.0), canary(1.0), PromotionKind::RampDown, false);
        ok(canary(5.0), Staging, PromotionKind::ToStaging, true);
        ok(
            canary(5.0),
            Production,
            PromotionKind::CanaryToProduction,
            true,
        );
        ok(Staging, Production, PromotionKind::ToProduction, true);

        for (from, to) in [(Production, Staging), (Staging, canary(10.0))] {
            assert!(matches!(
                plan_promotion(from, to),
                Err(PromotionError::InvalidPath { .. })
            ));
        }
        for env in [Production, Staging, canary(3.0)] {
            assert!(matches!(
                plan_promotion(env, env),
                Err(PromotionError::AlreadyThere(_))
            ));
        }
    }
}
