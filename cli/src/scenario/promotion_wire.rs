//! How a scenario's `promotion` table is read: each key it leaves out takes the `good`
//! scenario's value, as when the whole table is left out. The library's own reader gives a
//! missing key the library's default, and `good`'s gate differs from it in `gate` (`checkout`,
//! not `default`: the gate's name is its salt, so other users went to the canary) and
//! `feature_flags` (`["checkout_v2"]`, not none): `{"promotion": {"slo_threshold": 0.9}}` ran
//! another gate than `{}`.

use promotion_gates::{Environment, Overrides, PromotionConfig, StoreConfig};
use serde::{Deserialize, Deserializer};

/// A `promotion` table as written: each field `None` when its key is left out. Its fields are
/// the library's [`PromotionConfig`]'s, in its order and read by the same types, so that an
/// unknown key or a bad value is refused as the library refuses it; `null` is read by the
/// field's own type (refused for a `gate`, `None` for a `salt`), not taken for a missing key.
#[derive(Deserialize)]
#[serde(rename = "PromotionConfig", deny_unknown_fields)]
struct Written {
    #[serde(default, deserialize_with = "given")]
    environment: Option<Environment>,
    #[serde(default, deserialize_with = "given")]
    feature_flags: Option<Vec<String>>,
    #[serde(default, deserialize_with = "given")]
    auto_rollback_enabled: Option<bool>,
    #[serde(default, deserialize_with = "given")]
    slo_threshold: Option<f64>,
    #[serde(default, deserialize_with = "given")]
    rollback_window_seconds: Option<u64>,
    #[serde(default, deserialize_with = "given")]
    gate: Option<String>,
    #[serde(default, deserialize_with = "given")]
    salt: Option<Option<String>>,
    #[serde(default, deserialize_with = "given")]
    graduated_flags: Option<Vec<String>>,
    #[serde(default, deserialize_with = "given")]
    max_rollback_history: Option<usize>,
    #[serde(default, deserialize_with = "given")]
    store: Option<Option<StoreConfig>>,
    #[serde(default, deserialize_with = "given")]
    overrides: Option<Option<Overrides>>,
}

/// A key that is there: its value, read as its type reads it.
fn given<'de, D: Deserializer<'de>, T: Deserialize<'de>>(reader: D) -> Result<Option<T>, D::Error> {
    T::deserialize(reader).map(Some)
}

/// The `promotion` table `reader` holds, each key left out taken from `good`'s
/// (`Scenario::default().promotion`).
pub(super) fn over_good<'de, D: Deserializer<'de>>(reader: D) -> Result<PromotionConfig, D::Error> {
    let written = Written::deserialize(reader)?;
    // Every field named: a field the library adds is a compile error here, not a key read as
    // the library's default.
    let PromotionConfig {
        environment,
        feature_flags,
        auto_rollback_enabled,
        slo_threshold,
        rollback_window_seconds,
        gate,
        salt,
        graduated_flags,
        max_rollback_history,
        store,
        overrides,
    } = super::Scenario::default().promotion;
    Ok(PromotionConfig {
        environment: written.environment.unwrap_or(environment),
        feature_flags: written.feature_flags.unwrap_or(feature_flags),
        auto_rollback_enabled: written
            .auto_rollback_enabled
            .unwrap_or(auto_rollback_enabled),
        slo_threshold: written.slo_threshold.unwrap_or(slo_threshold),
        rollback_window_seconds: written
            .rollback_window_seconds
            .unwrap_or(rollback_window_seconds),
        gate: written.gate.unwrap_or(gate),
        salt: written.salt.unwrap_or(salt),
        graduated_flags: written.graduated_flags.unwrap_or(graduated_flags),
        max_rollback_history: written.max_rollback_history.unwrap_or(max_rollback_history),
        store: written.store.unwrap_or(store),
        overrides: written.overrides.unwrap_or(overrides),
    })
}
