//! `mercato-soak`: a soak and chaos run against a running Mercato server,
//! through its public HTTP API. See `crates/bench/src/soak/mod.rs` and
//! `docs/soak.md`; `scripts/soak` starts a server or a cluster around it.

use clap::Parser;
use mercato_bench::soak::{self, Config};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "mercato-soak",
    version,
    about = "Soak a running Mercato server with mixed traffic, hang-ups, slow clients and CPU contention, then audit it",
    after_help = "Exit status: 0 when no 5xx was answered and every audit check passed, 1 otherwise, 2 when the soak could not set itself up."
)]
struct Cli {
    /// The server to soak (its root, without /api/v1).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    base_url: String,
    /// Seconds of traffic.
    #[arg(long, default_value_t = 60)]
    duration: u64,
    /// An admin's e-mail (with --admin-password): the audit lists every order and payment.
    #[arg(long, env = "MERCATO_SOAK_ADMIN_EMAIL")]
    admin_email: Option<String>,
    #[arg(long, env = "MERCATO_SOAK_ADMIN_PASSWORD", hide_env_values = true)]
    admin_password: Option<String>,
    /// An admin's access token, instead of an e-mail and password.
    #[arg(long, env = "MERCATO_SOAK_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// A Prometheus endpoint to scrape (repeatable); default <base-url>/metrics.
    #[arg(long = "metrics", value_name = "URL")]
    metrics: Vec<String>,
    /// Threads that spin on the cores for the whole run.
    #[arg(long, default_value_t = 1)]
    cpu_hog: usize,
    /// Print a JSON summary on stdout; the readable lines go to stderr.
    #[arg(long)]
    json: bool,
    /// Seconds between two report lines.
    #[arg(long, default_value_t = 10)]
    report_every: u64,
    /// Wait up to this many seconds for /readyz before starting.
    #[arg(long, default_value_t = 30)]
    wait_ready: u64,
    /// Sellers creating products and setting their stock, one request at a time each.
    #[arg(long, default_value_t = 8)]
    sellers: usize,
    /// Customers filling carts and checking out.
    #[arg(long, default_value_t = 8)]
    customers: usize,
    /// Clients reading products, lists, stock and search.
    #[arg(long, default_value_t = 4)]
    readers: usize,
    /// Clients sending `POST /products` and hanging up 0–6 ms later.
    #[arg(long, default_value_t = 2)]
    hangup_products: usize,
    /// Clients sending `POST /checkout` and hanging up 0–6 ms later.
    #[arg(long, default_value_t = 2)]
    hangup_checkouts: usize,
    /// Clients holding a connection open by trickling their request head.
    #[arg(long, default_value_t = 8)]
    slow_clients: usize,
    /// SKUs customers buy.
    #[arg(long, default_value_t = 16)]
    sale_skus: usize,
    /// Units of each SKU on sale at the start (restocked when low).
    #[arg(long, default_value_t = 200)]
    sale_stock: i64,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = Config {
        base_url: cli.base_url,
        duration: Duration::from_secs(cli.duration),
        admin_email: cli.admin_email,
        admin_password: cli.admin_password,
        admin_token: cli.admin_token,
        metrics: cli.metrics,
        cpu_hogs: cli.cpu_hog,
        json: cli.json,
        report_every: Duration::from_secs(cli.report_every),
        wait_ready: Duration::from_secs(cli.wait_ready),
        sellers: cli.sellers,
        customers: cli.customers,
        readers: cli.readers,
        hang_up_products: cli.hangup_products,
        hang_up_checkouts: cli.hangup_checkouts,
        slow_clients: cli.slow_clients,
        sale_skus: cli.sale_skus,
        sale_stock: cli.sale_stock,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mercato-soak: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(soak::run(config)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("mercato-soak: {e:#}");
            ExitCode::from(2)
        }
    }
}
