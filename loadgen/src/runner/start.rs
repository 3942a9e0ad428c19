//! `--shard I/N` and `--start-at` before a run: whether a shard can run at all, its share of
//! the users, and the start instant.

use super::*;

/// `--shard` / `--start-at`: checks a shard can run (URL targets, one phase), gives the shard its
/// share of the users, and settles the start instant (printed when it was not given).
pub(super) fn plan_start(
    opts: &RunOptions,
    scenario: &mut Scenario,
    variants: &[VariantSpec],
) -> Result<Option<SystemTime>, RunError> {
    if let Some(slice) = opts.shard {
        let kinds: Vec<(String, &'static str)> = variants
            .iter()
            .map(|v| (v.name.clone(), v.target.kind()))
            .collect();
        shard::check_shardable(
            slice,
            &kinds,
            opts.repeat.max(1),
            scenario.find_max.is_some(),
        )
        .map_err(RunError::BadInput)?;
        let share = |total: usize| slice_share(total, slice);
        if scenario.load.model == LoadModel::Closed && share(scenario.load.users) == 0 {
            return Err(RunError::BadInput(format!(
                "--shard {slice}: the closed model's {} users cannot be split over {} shards \
                 (at least one user each)",
                scenario.load.users, slice.count
            )));
        }
        scenario.load.users = share(scenario.load.users).max(1);
        scenario.load.max_users = share(scenario.load.max_users).max(scenario.load.users);
    }
    let start_at = match (opts.start_at, opts.shard) {
        (Some(at), _) => Some(at),
        (None, Some(slice)) => {
            let at = shard::default_start_at(SystemTime::now());
            output::warn(&format!(
                "shard {slice}: no --start-at given; the schedule starts at {} — give every \
                 shard this same --start-at",
                shard::rfc3339(at)
            ));
            Some(at)
        }
        (None, None) => None,
    };
    if let Some(at) = start_at {
        shard::check_start_at(at, SystemTime::now()).map_err(RunError::BadInput)?;
    }
    Ok(start_at)
}

/// Items `0..total` dealt round-robin over the shards: how many are this shard's.
fn slice_share(total: usize, slice: ShardSlice) -> usize {
    usize::try_from(slice.share_of(total as u64)).unwrap_or(total)
}

/// The engine's figures a run saved in `DIR/recording.json`, if it did.
pub(super) fn read_engine_figures(dir: &Path) -> Option<EngineFigures> {
    let text = std::fs::read_to_string(dir.join("recording.json")).ok()?;
    serde_json::from_str::<RecordingState>(&text)
        .ok()
        .map(|s| s.engine)
}
