//! `[[faults]]` of a scenario: each fault's action, time and duration checked against the load
//! it runs in (file:line:col errors like the rest of the parser).

use super::*;

/// `[[faults]]`: known actions, a `duration` for pauses only, each fault's window inside the
/// measured load (with time left after it to see a recovery), no two overlapping, and no
/// variant that apibench did not start (a `url` target has no process or database of its own).
pub(super) fn parse_faults(
    cx: &Cx,
    raw: &[Spanned<RawFault>],
    load: &LoadSpec,
    variants: &[VariantSpec],
) -> Result<Vec<FaultSpec>, ScenarioError> {
    let mut faults: Vec<(FaultSpec, &RawFault)> = Vec::new();
    for raw_fault in raw {
        let f = raw_fault.get_ref();
        let name = f.action.get_ref().trim();
        let Some(action) = FaultAction::from_name(name) else {
            let known: Vec<&str> = FaultAction::ALL.iter().map(|a| a.name()).collect();
            return Err(cx.err(
                &f.action.span(),
                "faults.action",
                &format!("`{name}` is not a fault; use one of {}", known.join(", ")),
            ));
        };
        let at = duration_field(cx, &f.at, "faults.at")?;
        let duration = match (&f.duration, action.takes_duration()) {
            (Some(d), true) => {
                let parsed = duration_field(cx, d, "faults.duration")?;
                if parsed.is_zero() {
                    return Err(cx.err(&d.span(), "faults.duration", "must be > 0"));
                }
                Some(parsed)
            }
            (None, true) => {
                return Err(cx.err(
                    &raw_fault.span(),
                    "faults.duration",
                    &format!(
                        "`{action}` needs duration = \"3s\": how long the processes stay stopped"
                    ),
                ));
            }
            (Some(d), false) => {
                return Err(cx.err(
                    &d.span(),
                    "faults.duration",
                    &format!(
                        "`{action}` is a single step; duration is for pg_pause and target_pause"
                    ),
                ));
            }
            (None, false) => None,
        };
        let (line, column) = line_col(cx.text, f.action.span().start);
        let spec = FaultSpec {
            action,
            at,
            duration,
            source: SourceSpot {
                file: cx.file.clone(),
                line,
                column,
            },
        };
        if spec.planned_end() >= load.duration {
            let ms = |d: Duration| d.as_millis();
            return Err(cx.err(
                &f.at.span(),
                "faults.at",
                &format!(
                    "the fault {} at {} ms from the end of the warm-up, but the measured load lasts \
                     {} ms: it must end before the load does",
                    if duration.is_some() { "ends" } else { "is" },
                    ms(spec.planned_end()),
                    ms(load.duration)
                ),
            ));
        }
        if let Some(variant) = variants.iter().find(|v| !v.target.needs_database()) {
            return Err(cx.err(
                &f.action.span(),
                "faults.action",
                &format!(
                    "`{action}` is not possible with variant `{}` (kind = \"url\"): apibench did \
                     not start that server and has no database of its own for it",
                    variant.name
                ),
            ));
        }
        faults.push((spec, f));
    }
    faults.sort_by_key(|(spec, _)| spec.at);
    for pair in faults.windows(2) {
        let [(earlier, _), (later, raw_later)] = pair else {
            continue;
        };
        if later.at <= earlier.planned_end() {
            return Err(cx.err(
                &raw_later.at.span(),
                "faults.at",
                &format!(
                    "overlaps the `{}` at line {} (until {} ms): faults run one after another",
                    earlier.action,
                    earlier.source.line,
                    earlier.planned_end().as_millis()
                ),
            ));
        }
    }
    Ok(faults.into_iter().map(|(spec, _)| spec).collect())
}
