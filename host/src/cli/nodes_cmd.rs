//! `pinwarden nodes`: what the node-health ledger of the data directory says of each node.

use super::context::{CliError, CliResult, Context, exit};
use super::output::{out, outln};
use crate::health::{NodeStatus, Thresholds, statuses};
use crate::trace::format_ms;
use clap::Args;

#[derive(Args)]
pub struct NodesArgs {
    /// One JSON array on stdout.
    #[arg(long)]
    pub json: bool,
}

const AFTER_HELP: &str = "\
Every action on a node (pin, verify, check-retrievable, connect) updates its health in the
data directory's node-health.json: the daemon every few seconds, `pinwarden pin` when it ends.
The breaker column applies the configured policy's breaker_failures and breaker_cooldown_ms:
closed (normal), open (skipped after that many failures in a row), half-open (cooled down: the
next job probes it). QUIET: how long the node's running pins have shown no progress (Kubo reports
its block count every 500 ms; tank-mode hedges a primary quiet for hedge_quiet_ms); '-' when no
such pin runs. A running daemon's live view, in flight counts and quiet times included:
GET /v1/nodes.";

pub fn run(cx: &Context, args: &NodesArgs) -> CliResult {
    let app = cx.app(&[])?;
    let thresholds = Thresholds::of(&app.policy);
    let nodes = statuses(&app.topology.roles(), app.topology.ledger(), thresholds);
    if args.json {
        outln!(
            "{}",
            serde_json::to_string(&nodes).map_err(CliError::failed)?
        );
    } else {
        let kind = |name: &str| {
            app.topology
                .client(name)
                .map_or("kubo", |c| c.capabilities().kind.as_str())
        };
        out!("{}", table(&nodes, kind));
    }
    Ok(exit::OK)
}

pub fn after_help() -> &'static str {
    AFTER_HELP
}

/// `kind` names each node's backend (kubo, cluster, psa).
fn table(nodes: &[NodeStatus], kind: impl Fn(&str) -> &'static str) -> String {
    let ago = |ms: Option<u64>| ms.map_or("-".to_string(), |ms| format!("{} ago", format_ms(ms)));
    let mut out = format!(
        "{:<14} {:<8} {:<8} {:<10} {:>6} {:>16} {:>16} {:>8} {:>10} {:>9} {:>10}\n",
        "NODE",
        "ROLE",
        "KIND",
        "BREAKER",
        "FAILS",
        "LAST OK",
        "LAST FAILURE",
        "OK/LAST",
        "PIN P50",
        "IN FLIGHT",
        "QUIET"
    );
    for n in nodes {
        out.push_str(&format!(
            "{:<14} {:<8} {:<8} {:<10} {:>6} {:>16} {:>16} {:>8} {:>10} {:>9} {:>10}\n",
            n.name,
            n.role,
            kind(&n.name),
            n.breaker,
            n.consecutive_failures,
            ago(n.since_last_ok_ms),
            ago(n.since_last_failure_ms),
            format!("{}/{}", n.recent_ok, n.recent_total),
            n.pin_latency_ms.map_or("-".to_string(), format_ms),
            n.in_flight,
            n.since_last_progress_ms.map_or("-".to_string(), format_ms)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_names_every_column_and_node() {
        let node = NodeStatus {
            name: "primary".into(),
            role: "primary".into(),
            breaker: "open".into(),
            consecutive_failures: 4,
            since_last_ok_ms: None,
            since_last_failure_ms: Some(1_500),
            recent_ok: 0,
            recent_total: 4,
            pin_latency_ms: None,
            in_flight: 2,
            since_last_progress_ms: Some(2_500),
        };
        let text = table(&[node], |_| "cluster");
        assert!(text.starts_with("NODE"), "{text}");
        assert!(
            text.lines().next().unwrap_or_default().contains("KIND"),
            "{text}"
        );
        let row = text.lines().nth(1).unwrap_or_default();
        assert!(
            text.lines().next().unwrap_or_default().ends_with("QUIET"),
            "{text}"
        );
        for cell in [
            "primary",
            "cluster",
            "open",
            "4",
            "1.500s ago",
            "0/4",
            "2.500s",
        ] {
            assert!(row.contains(cell), "{cell} missing: {row}");
        }
    }
}
