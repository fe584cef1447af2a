//! `mercato-bench`: measures a running Mercato server over its public HTTP
//! API. It sets up its own data (a seller, products with stock, customers),
//! then runs timed phases and prints throughput and latency percentiles, and,
//! given the server's pid, the server's peak memory. `scripts/bench` builds,
//! starts and stops a server around it; `docs/benchmarks.md` explains the
//! figures.

use anyhow::bail;
use clap::{Parser, ValueEnum};
use mercato_bench::memory::MemorySample;
use mercato_bench::{api, memory, phases};
use serde_json::{json, Map, Value};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[derive(Parser)]
#[command(
    name = "mercato-bench",
    version,
    about = "Benchmark a running Mercato server over HTTP"
)]
struct Cli {
    /// The server to measure.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    base_url: String,
    /// Which phase to run.
    #[arg(long, value_enum, default_value_t = Phase::All)]
    phase: Phase,
    /// Seconds each phase starts new requests for.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Concurrent connections (reads) and concurrent customers (checkout).
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Products created during setup, one variant and plenty of stock each.
    #[arg(long, default_value_t = 200)]
    products: usize,
    /// Products the search phase runs on, made (through the API) before it.
    #[arg(long, default_value_t = 100_000)]
    search_products: usize,
    /// Customers registered during setup (raised to --concurrency if lower).
    #[arg(long, default_value_t = 200)]
    customers: usize,
    /// How often a checkout's order is polled until it leaves `pending`; 0:
    /// no polling, the order is read with `?wait=5`, which the server
    /// answers once the order has settled.
    #[arg(long, default_value_t = 0)]
    poll_ms: u64,
    /// The server's process id: its VmHWM and VmRSS are sampled after each phase.
    #[arg(long, conflicts_with = "pid_file")]
    pid: Option<u32>,
    /// A file holding the server's process id (instead of --pid).
    #[arg(long)]
    pid_file: Option<PathBuf>,
    /// Wait up to this many seconds for /readyz before starting.
    #[arg(long, default_value_t = 0)]
    wait_ready: u64,
    /// Print a JSON summary on stdout; the readable lines go to stderr.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Phase {
    Reads,
    Storefront,
    Pages,
    Checkout,
    Search,
    All,
}

/// Readable lines go to stdout, or to stderr when stdout carries JSON.
struct Out {
    json: bool,
}

impl Out {
    fn line(&self, s: impl AsRef<str>) {
        if self.json {
            eprintln!("{}", s.as_ref());
        } else {
            println!("{}", s.as_ref());
        }
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mercato-bench: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mercato-bench: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    if cli.duration == 0 || cli.concurrency == 0 || cli.products == 0 {
        bail!("--duration, --concurrency and --products must be at least 1");
    }
    let out = Out { json: cli.json };
    let pid = match (&cli.pid, &cli.pid_file) {
        (Some(pid), _) => Some(*pid),
        (None, Some(path)) => Some(memory::read_pid_file(path)?),
        (None, None) => None,
    };
    let duration = Duration::from_secs(cli.duration);
    let poll = Duration::from_millis(cli.poll_ms);
    let run_checkout = matches!(cli.phase, Phase::Checkout | Phase::All);
    let customers = if run_checkout {
        cli.customers.max(cli.concurrency)
    } else if matches!(cli.phase, Phase::Pages) {
        // The pages of signed-in customers (cart, checkout, orders).
        cli.customers.clamp(1, 64)
    } else {
        0
    };
    let api = api::Api::new(&cli.base_url, cli.concurrency)?;
    api.wait_ready(Duration::from_secs(cli.wait_ready)).await?;

    let run_id = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| format!("{:x}", d.as_micros()))
        .unwrap_or_else(|_| std::process::id().to_string());
    out.line(format!(
        "mercato-bench {}: {} connections/customers, {} s per phase",
        cli.base_url, cli.concurrency, cli.duration
    ));

    let mut summary = Map::new();
    summary.insert(
        "config".into(),
        json!({
            "base_url": cli.base_url,
            "duration_secs": cli.duration,
            "concurrency": cli.concurrency,
            "products": cli.products,
            "search_products": cli.search_products,
            "customers": customers,
            "poll_interval_ms": poll.as_millis() as u64,
            "server_pid": pid,
        }),
    );
    let mut memory_samples = Vec::new();
    let mut sample_memory = |after: &str, out: &Out| -> anyhow::Result<()> {
        if let Some(pid) = pid {
            let m: MemorySample = memory::sample(pid)?;
            out.line(format!("memory after {after}: {}", m.describe()));
            let mut j = m.to_json();
            j["after"] = json!(after);
            memory_samples.push(j);
        }
        Ok(())
    };

    let started = Instant::now();
    let data = api::set_up(&api, &run_id, cli.products, customers).await?;
    let setup_secs = started.elapsed().as_secs_f64();
    out.line(format!(
        "setup: {} products ({} units of stock each), {} customers in {:.1} s",
        data.product_ids.len(),
        api::STOCK_PER_SKU,
        data.customer_tokens.len(),
        setup_secs
    ));
    summary.insert(
        "setup".into(),
        json!({"products": data.product_ids.len(), "customers": data.customer_tokens.len(), "elapsed_secs": setup_secs}),
    );
    sample_memory("setup", &out)?;

    if matches!(cli.phase, Phase::Reads | Phase::All) {
        let report = phases::reads(&api, &data, cli.concurrency, duration).await;
        out.line(report.describe());
        summary.insert("reads".into(), report.to_json());
        sample_memory("reads", &out)?;
    }
    if matches!(cli.phase, Phase::Storefront | Phase::All) {
        let report = phases::storefront(&api, &data, cli.concurrency, duration).await;
        out.line(report.describe());
        summary.insert("storefront".into(), report.to_json());
        sample_memory("storefront", &out)?;
    }
    if matches!(cli.phase, Phase::Pages | Phase::All) {
        let mut pages = Map::new();
        for report in phases::pages(&api, &data, cli.concurrency, duration).await {
            out.line(report.describe());
            let group = report.label.trim_start_matches("pages, ");
            pages.insert(group.to_owned(), report.to_json());
        }
        summary.insert("pages".into(), Value::Object(pages));
        sample_memory("pages", &out)?;
    }
    if run_checkout {
        let report = phases::checkout(&api, &data, &run_id, cli.concurrency, duration, poll).await;
        out.line(report.describe());
        summary.insert("checkout".into(), report.to_json());
        sample_memory("checkout", &out)?;
    }
    if matches!(cli.phase, Phase::Search | Phase::All) && cli.search_products > 0 {
        let started = Instant::now();
        api::seed_search_catalog(
            &api,
            &run_id,
            cli.search_products,
            Duration::from_secs(3600),
        )
        .await?;
        let seed_secs = started.elapsed().as_secs_f64();
        out.line(format!(
            "search catalog: {} products made and indexed in {:.1} s",
            cli.search_products, seed_secs
        ));
        summary.insert(
            "search_catalog".into(),
            json!({"products": cli.search_products, "elapsed_secs": seed_secs}),
        );
        sample_memory("search catalog", &out)?;
        let report = phases::search(&api, cli.concurrency, duration).await;
        out.line(report.describe());
        summary.insert("search".into(), report.to_json());
        sample_memory("search", &out)?;
    }
    summary.insert("memory".into(), Value::Array(memory_samples));
    if cli.json {
        println!("{}", serde_json::to_string_pretty(&Value::Object(summary))?);
    }
    Ok(())
}
