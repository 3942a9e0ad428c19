//! The report's "Shards" section, for a run merged from `apibench run --shard I/N` directories
//! (`apibench merge`): one row per shard — its host, what it sent, its own send lag and CPU, how
//! late its first send left, its clock against the target's and the start skew that implies,
//! its verdict — and, for a single shard's own run, a line saying it is one share of a larger
//! load. The merged figures above are the shards' histograms added, not averaged.

use super::html::esc;
use crate::output::format_us;
use crate::saved::SavedRun;
use std::fmt::Write as _;

/// The section, or nothing for a run that is neither merged nor a shard.
pub fn section(run: &SavedRun) -> String {
    if let Some(shard) = run.info.as_ref().and_then(|i| i.shard.as_ref()) {
        return format!(
            "<section id=\"shards\">\n<h2>Shard {}/{}</h2>\n<p class=\"note\">This run sent one \
             share of the load: slot s of the schedule when s mod {} = {} (closed model: every \
             {}th user), from {} on this host's clock. Merge every shard's directory with \
             <code>apibench merge OUT DIR...</code> for the whole load's figures.</p>\n</section>\n",
            shard.index,
            shard.count,
            shard.count,
            shard.index,
            shard.count,
            esc(&shard.start_at)
        );
    }
    let shards = &run.summary.shards;
    if shards.is_empty() {
        return String::new();
    }
    let mut rows = String::new();
    for s in shards {
        let skew = match (s.start_skew_ms, s.start_skew_resolution_ms) {
            (Some(k), Some(r)) => format!("{k:.1} ms <small>± {r:.1}</small>"),
            (Some(k), None) => format!("{k:.1} ms"),
            _ => "unknown".into(),
        };
        let _ = writeln!(
            rows,
            "<tr><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{:.1}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td>{}{}</td></tr>",
            s.index,
            esc(&s.host),
            s.requests,
            s.achieved_send_rate_per_sec,
            esc(&format_us(s.send_lag_p99_us)),
            s.generator_cpu_mean_percent
                .map_or_else(|| "–".into(), |c| format!("{c:.0} %")),
            s.first_send_late_us
                .map_or_else(|| "–".into(), |us| esc(&format_us(us))),
            skew,
            esc(&s.verdict),
            s.invalid_reason
                .as_deref()
                .map_or_else(String::new, |r| format!(" <small>{}</small>", esc(r)))
        );
    }
    let total: u64 = shards.iter().map(|s| s.requests).sum();
    format!(
        "<section id=\"shards\">\n<h2>Shards</h2>\n<p class=\"note\">Merged from {} shards \
         ({} requests in all). Every figure above comes from the shards' HDR histograms added \
         bucket by bucket — the percentiles of every request any shard sent, not an average of \
         the shards' percentiles. Any invalid shard makes the merged run invalid. Start skew: \
         each shard's start relative to the earliest, on the target's clock (each shard measured \
         its clock against the target's <code>Date</code> header turning a second; ± adds both \
         shards' measurement resolutions).</p>\n<div class=\"scroll\"><table>\n<tr><th>shard</th><th>host</th>\
         <th>requests</th><th>sent/s</th><th>send lag p99</th><th>generator CPU</th>\
         <th>first send late</th><th>start skew</th><th>verdict</th></tr>\n{rows}</table></div>\n\
         </section>\n",
        shards.len(),
        total
    )
}
