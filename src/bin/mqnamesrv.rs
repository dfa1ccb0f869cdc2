//! `mqnamesrv`: the ferrocket name server, with the Java name server's command line.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;
use ferrocket::{apply_config, disk_path, home_dir, init_logging, read_properties_file};
use ferrocket_engine::config::render_properties;
use ferrocket_engine::namesrv::{NamesrvConfig, NamesrvController};
use ferrocket_engine::remoting::transport::NettyServerConfig;

/// The ferrocket name server (RocketMQ 4.x compatible).
#[derive(Debug, Parser)]
#[command(name = "mqnamesrv", version)]
struct Args {
    /// Name server config file (Java properties: listenPort, kvConfigPath, ...).
    #[arg(short = 'c', long = "configFile")]
    config_file: Option<PathBuf>,
    /// Print every config item and exit.
    #[arg(short = 'p', long = "printConfigItem")]
    print_config_item: bool,
    /// Port to listen on (overrides the config file).
    #[arg(long = "listenPort")]
    listen_port: Option<u16>,
    /// Address to bind (overrides the config file).
    #[arg(long = "bindAddress")]
    bind_address: Option<String>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    init_logging();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("mqnamesrv: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn configure(args: &Args) -> Result<(NamesrvConfig, NettyServerConfig)> {
    let mut config = NamesrvConfig {
        kv_config_path: home_dir()
            .join("namesrv/kvConfig.json")
            .to_string_lossy()
            .into_owned(),
        config_store_path: home_dir()
            .join("namesrv/namesrv.properties")
            .to_string_lossy()
            .into_owned(),
        rocketmq_home: std::env::var("ROCKETMQ_HOME").unwrap_or_default(),
        ..NamesrvConfig::default()
    };
    let mut server = NettyServerConfig::default();
    if let Some(path) = &args.config_file {
        let properties = read_properties_file(path)?;
        apply_config(
            &mut [&mut config, &mut server],
            &properties,
            &path.display().to_string(),
        )?;
        config.config_store_path = path.display().to_string();
    }
    if let Some(port) = args.listen_port {
        server.listen_port = port;
    }
    if let Some(addr) = &args.bind_address {
        server.bind_address = addr.clone();
    }
    server.bind_socket_addr().context("invalid `bindAddress`")?;
    Ok((config, server))
}

fn run(args: Args) -> Result<()> {
    let (mut config, server) = configure(&args)?;
    if args.print_config_item {
        print!("{}", render_properties(&[&config, &server]));
        return Ok(());
    }
    config.kv_config_path = disk_path(&config.kv_config_path)?;
    config.config_store_path = disk_path(&config.config_store_path)?;
    let runtime = tokio::runtime::Runtime::new().context("cannot start the runtime")?;
    runtime.block_on(async move {
        let env = ferrocket::production_env()?;
        let controller = NamesrvController::start(env, config, server)
            .await
            .context("the name server failed to start")?;
        let addr = controller.local_addr();
        tracing::info!(%addr, "the name server boot success");
        println!("The Name Server boot success. serializeType=JSON, listening on {addr}");
        ferrocket::shutdown_signal().await;
        tracing::info!("shutting down");
        controller.shutdown();
        Ok(())
    })
}
