//! `action-cache-proxy`: the caching proxy between Genesys Cloud Data Actions and a CRM.
//!
//! ```text
//! action-cache-proxy check --config proxy.toml
//! action-cache-proxy serve --config proxy.toml
//! action-cache-proxy genesys-actions --config proxy.toml --public-url https://proxy.example.com
//! ```

use action_cache_proxy::access_log::AccessLog;
use action_cache_proxy::{genesys, Config, Proxy};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// mimalloc rather than the system allocator: glibc's malloc and free were 14 % of the hit
/// path's profile.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "action-cache-proxy",
    version,
    about = "A Redis caching proxy between Genesys Cloud Data Actions and a CRM, configured by a TOML file.",
    after_help = "Secrets come from the environment (`*_env` keys or \"${VAR}\" values). \
RUST_LOG filters the JSON logs (default info)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the configured routes.
    Serve {
        /// The configuration file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validate the configuration and print its routes; one line per mistake otherwise.
    Check {
        /// The configuration file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Write a Genesys Cloud Data Action definition (`<route>.custom.json`) per route.
    GenesysActions {
        /// The configuration file.
        #[arg(long, short)]
        config: PathBuf,
        /// The URL Genesys Cloud reaches the proxy at (https).
        #[arg(long)]
        public_url: String,
        /// Directory to write the definitions to.
        #[arg(long, default_value = "genesys-actions")]
        out_dir: PathBuf,
    },
}

fn load(path: &std::path::Path) -> Result<Config, ExitCode> {
    Config::load(path).map_err(|e| {
        for p in &e.problems {
            eprintln!("error: {p}");
        }
        ExitCode::FAILURE
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config } => match load(&config) {
            Ok(c) => {
                for r in &c.routes {
                    println!(
                        "ok: route {} GET {} -> {} {} (fresh {}, stale {}{})",
                        r.name,
                        r.path,
                        r.upstream,
                        r.upstream_path,
                        humantime::format_duration(r.fresh),
                        humantime::format_duration(r.stale),
                        r.negative.as_ref().map_or(String::new(), |n| format!(
                            ", negative {:?} for {}",
                            n.statuses,
                            humantime::format_duration(n.ttl)
                        )),
                    );
                }
                if let Some(w) = &c.webhook {
                    println!("ok: webhook POST {} ({:?} signatures)", w.path, w.scheme);
                }
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Command::GenesysActions {
            config,
            public_url,
            out_dir,
        } => {
            let c = match load(&config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let actions = match genesys::actions(&c, &public_url) {
                Ok(a) => a,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::FAILURE;
                }
            };
            if let Err(e) = std::fs::create_dir_all(&out_dir) {
                eprintln!("error: cannot create {}: {e}", out_dir.display());
                return ExitCode::FAILURE;
            }
            for (file, action) in actions {
                let path = out_dir.join(file);
                let text = serde_json::to_string_pretty(&action).expect("JSON values serialize");
                if let Err(e) = std::fs::write(&path, text + "\n") {
                    eprintln!("error: cannot write {}: {e}", path.display());
                    return ExitCode::FAILURE;
                }
                println!("wrote {}", path.display());
            }
            ExitCode::SUCCESS
        }
        Command::Serve { config } => {
            let c = match load(&config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            init_logs();
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("error: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(serve(c)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn init_logs() {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
}

async fn serve(config: Config) -> Result<(), String> {
    Proxy::builder(config)
        .access_log(AccessLog::Stdout)
        .build()
        .map_err(|e| e.to_string())?
        .run()
        .await
}
