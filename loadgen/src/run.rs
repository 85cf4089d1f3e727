//! One load run end to end: fix the run's clock, start the churn driver on its own thread
//! aligned with the measured window (and the loop-lag scraper, with `--loop-stats`), run the
//! workers, attach the churn log and the loop lag to the summary, and
//! write the requested outputs (terminal table, `--json`, `--report`).
//!
//! Shared by the main command and `demo`, which differ only in where the fleet control lives
//! (HTTP for the main command, in-process for the demo).

use crate::churn::{self, FleetControl};
use crate::cli::Config;
use crate::report::{Summary, DEFAULT_CHURN_WINDOW};
use crate::workers::{self, Times};

/// Run `cfg` (with its churn, if any). `fleet` replaces the HTTP fleet control.
pub fn execute(cfg: &Config, fleet: Option<Box<dyn FleetControl>>) -> Result<Summary, String> {
    let times = Times::plan(cfg);
    let driver = match &cfg.churn {
        Some(spec) => {
            let plan = spec.plan(fleet);
            let (origin, end) = (times.measure_from, times.end);
            Some(
                std::thread::Builder::new()
                    .name("churn".into())
                    .spawn(move || churn::drive(plan, origin, end))
                    .map_err(|e| format!("cannot spawn churn thread: {e}"))?,
            )
        }
        None => None,
    };
    let scraper = match &cfg.loop_stats {
        Some(admin) => Some(crate::loop_lag::Scraper::start(
            admin.clone(),
            times.measure_from,
            times.end,
            crate::timeline::width_for(cfg.duration).max(std::time::Duration::from_secs(1)),
        )?),
        None => None,
    };
    let summary = workers::run_at(cfg, times);
    let loop_lag = scraper.map(crate::loop_lag::Scraper::finish);
    let events = match driver {
        Some(h) => h
            .join()
            .map_err(|_| "the churn thread panicked".to_string())?,
        None => Vec::new(),
    };
    let mut summary = summary?;
    summary.churn = events;
    summary.loop_lag = loop_lag;
    summary.churn_window = cfg
        .churn
        .as_ref()
        .map_or(DEFAULT_CHURN_WINDOW, |c| c.window);
    Ok(summary)
}

/// Print the table and write `--json` / `--report` files.
pub fn output(
    summary: &Summary,
    json: Option<&std::path::Path>,
    report: Option<&std::path::Path>,
) -> Result<(), String> {
    print!("{}", summary.to_text());
    if let Some(path) = json {
        let text = serde_json::to_string_pretty(&summary.to_json())
            .map_err(|e| format!("cannot encode JSON: {e}"))?;
        std::fs::write(path, text + "\n")
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    if let Some(path) = report {
        summary.write_report(path)?;
    }
    Ok(())
}
