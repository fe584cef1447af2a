//! `mercato`: the e-commerce backend in one binary.

use clap::{Args, Parser, Subcommand};
use mercato::{Application, Settings};
use mercato_identity::service::Registration;
use mercato_kernel::auth::Role;
use mercato_kernel::telemetry::{init_logs, LogFormat};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "mercato",
    version,
    about = "Mercato: an e-commerce backend platform"
)]
struct Cli {
    /// A TOML configuration file (default: ./mercato.toml when it exists).
    #[arg(long, global = true, env = "MERCATO_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run every context in one process (embedded mode), or one context or
    /// the gateway with --service (distributed mode).
    Serve(ServeArgs),
    /// The built-in test card network on its own, for the payments
    /// replicas of a cluster without a real provider to share
    /// (`payments.provider_url`); a payments service without one starts
    /// its own, which only that replica knows.
    TestProvider {
        /// Address to listen on.
        #[arg(long, env = "MERCATO_ADDR", default_value = "127.0.0.1:8090")]
        addr: SocketAddr,
    },
    /// Administrative tasks on the data dir.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
}

#[derive(Args)]
struct ServeArgs {
    /// Address to listen on [env: MERCATO_ADDR] [default: 127.0.0.1:8080]
    #[arg(long)]
    addr: Option<SocketAddr>,
    /// Where data is kept [env: MERCATO_DATA_DIR] [default: ./data]
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Load demo data and print its credentials.
    #[arg(long)]
    demo: bool,
    /// Run one context, or the gateway, as its own service (distributed
    /// mode) instead of every context in this process.
    #[arg(long, env = "MERCATO_SERVICE", value_parser = mercato::distributed::SERVICES)]
    service: Option<String>,
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Create a user of any role, such as the first admin.
    CreateUser {
        #[arg(long)]
        email: String,
        /// The password; read from MERCATO_ADMIN_PASSWORD when omitted.
        #[arg(long, env = "MERCATO_ADMIN_PASSWORD", hide_env_values = true)]
        password: String,
        #[arg(long, default_value = "Administrator")]
        name: String,
        #[arg(long, default_value = "admin", value_parser = ["customer", "seller", "admin"])]
        role: String,
        /// Data dir to write to [env: MERCATO_DATA_DIR] [default: ./data]
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Delete every JetStream stream of a subject prefix (a throw-away cluster's).
    DeleteStreams {
        #[arg(long, env = "MERCATO_BUS__NATS_URL")]
        nats_url: String,
        #[arg(long, env = "MERCATO_BUS__PREFIX")]
        prefix: String,
    },
}

/// glibc's allocator gives a thread that finds the heap busy an arena of its
/// own, up to eight per core, and memory freed in one arena serves only that
/// arena. With a thread per SQLite connection, a burst of checkouts left the
/// process at 325 MiB (peak RSS) where 2 arenas keep it at 143 MiB, and
/// just as fast (docs/benchmarks.md). `MALLOC_ARENA_MAX`, when set, wins.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn limit_malloc_arenas() {
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: runs first in `main`, before any other thread exists;
        // mallopt only sets a parameter of the C allocator.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn limit_malloc_arenas() {}

fn main() -> std::process::ExitCode {
    limit_malloc_arenas();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mercato: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "mercato failed");
            eprintln!("mercato: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let mut settings = Settings::load(cli.config.as_deref())?;
    let format = if settings.log_format == "pretty" {
        LogFormat::Pretty
    } else {
        LogFormat::Json
    };
    match cli.command {
        Command::Serve(args) => {
            // PostgreSQL's notices are not ours to act on; the one seen in
            // practice is "there is no transaction in progress", when a
            // cancelled request's transaction is rolled back after its COMMIT
            // had already gone through.
            init_logs(format, "info,sqlx=warn,sqlx::postgres::notice=error");
            if let Some(addr) = args.addr {
                settings.addr = addr;
            }
            if let Some(dir) = args.data_dir {
                settings.data_dir = dir;
            }
            if let Some(service) = args.service {
                anyhow::ensure!(
                    !args.demo,
                    "--demo loads data in embedded mode only, not with --service"
                );
                let service = mercato::distributed::Service::build(settings, &service).await?;
                return service.run(mercato::app::shutdown_signal()).await;
            }
            let app = Application::build(settings).await?;
            if args.demo {
                let credentials = mercato::demo::load(&app.contexts).await?;
                println!("{credentials}");
            }
            app.run(mercato::app::shutdown_signal()).await
        }
        Command::TestProvider { addr } => {
            init_logs(format, "info");
            let stop = tokio_util::sync::CancellationToken::new();
            let provider = mercato_payments::testprovider::TestProvider::default();
            let (bound, task) = provider.serve(addr, stop.clone()).await?;
            tracing::info!(addr = %bound, "test payment provider listening");
            mercato::app::shutdown_signal().await;
            stop.cancel();
            let _ = task.await;
            Ok(())
        }
        Command::Admin { command } => {
            init_logs(format, "warn");
            match command {
                AdminCommand::DeleteStreams { nats_url, prefix } => {
                    let mut config = mercato_kernel::bus::jetstream::JetStreamConfig::new(nats_url);
                    config.prefix = prefix;
                    let bus = mercato_kernel::bus::jetstream::JetStreamBus::connect(config).await?;
                    let n = bus.delete_streams().await?;
                    println!("deleted {n} streams");
                    Ok(())
                }
                AdminCommand::CreateUser {
                    email,
                    password,
                    name,
                    role,
                    data_dir,
                } => {
                    if let Some(dir) = data_dir {
                        settings.data_dir = dir;
                    }
                    let role = Role::parse(&role).ok_or_else(|| {
                        anyhow::anyhow!("unknown role {role:?}: use customer, seller or admin")
                    })?;
                    let user = mercato::app::create_user(
                        &settings,
                        Registration {
                            email,
                            password,
                            name,
                            role,
                        },
                    )
                    .await?;
                    println!("created {} {} ({})", role.as_str(), user.email, user.id);
                    Ok(())
                }
            }
        }
    }
}
