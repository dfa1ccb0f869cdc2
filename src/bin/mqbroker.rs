//! `mqbroker`: the ferrocket broker, with the Java broker's command line.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Parser;
use ferrocket::{apply_config, disk_path, home_dir, init_logging, read_properties_file};
use ferrocket_engine::broker::config::BrokerConfig;
use ferrocket_engine::broker::controller::BrokerController;
use ferrocket_engine::config::render_properties;
use ferrocket_engine::remoting::transport::NettyServerConfig;
use ferrocket_engine::store::config::MessageStoreConfig;

/// Requests and answers allocate many small, short-lived buffers: mimalloc serves them from
/// per-thread free lists, cheaper than the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The ferrocket broker (RocketMQ 4.x compatible).
#[derive(Debug, Parser)]
#[command(name = "mqbroker", version)]
struct Args {
    /// Broker config file (Java properties: brokerName, listenPort, storePathRootDir, ...).
    #[arg(short = 'c', long = "configFile")]
    config_file: Option<PathBuf>,
    /// Name-server addresses, `host:port;host:port` (overrides the config file).
    #[arg(short = 'n', long = "namesrvAddr")]
    namesrv_addr: Option<String>,
    /// Print every config item and exit.
    #[arg(short = 'p', long = "printConfigItem")]
    print_config_item: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    init_logging();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("mqbroker: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// The three config objects one `broker.conf` feeds.
struct Configs {
    broker: BrokerConfig,
    server: NettyServerConfig,
    store: MessageStoreConfig,
}

fn configure(args: &Args) -> Result<Configs> {
    let mut broker = BrokerConfig {
        rocketmq_home: std::env::var("ROCKETMQ_HOME").unwrap_or_default(),
        namesrv_addr: std::env::var("NAMESRV_ADDR").ok(),
        ..BrokerConfig::default()
    };
    let mut server = NettyServerConfig {
        listen_port: 10911,
        ..NettyServerConfig::default()
    };
    let mut store = MessageStoreConfig {
        store_path_root_dir: home_dir().join("store").to_string_lossy().into_owned(),
        ..MessageStoreConfig::default()
    };
    if let Some(path) = &args.config_file {
        let properties = read_properties_file(path)?;
        apply_config(
            &mut [&mut broker, &mut server, &mut store],
            &properties,
            &path.display().to_string(),
        )?;
    }
    if let Some(addr) = &args.namesrv_addr {
        broker.namesrv_addr = Some(addr.clone());
    }
    for addr in broker.namesrv_addrs() {
        if addr
            .rsplit_once(':')
            .and_then(|(_, port)| port.parse::<u16>().ok())
            .is_none()
        {
            bail!("invalid `namesrvAddr` entry {addr:?}: expected host:port");
        }
    }
    if broker.broker_id < 0 {
        bail!(
            "invalid `brokerId` {}: must be 0 (master) or positive (slave)",
            broker.broker_id
        );
    }
    server.bind_socket_addr().context("invalid `bindAddress`")?;
    Ok(Configs {
        broker,
        server,
        store,
    })
}

fn run(args: Args) -> Result<()> {
    let Configs {
        broker,
        server,
        mut store,
    } = configure(&args)?;
    if args.print_config_item {
        print!("{}", render_properties(&[&broker, &server, &store]));
        return Ok(());
    }
    store.store_path_root_dir = disk_path(&store.store_path_root_dir)?;
    let runtime = tokio::runtime::Runtime::new().context("cannot start the runtime")?;
    runtime.block_on(async move {
        let env = ferrocket::production_env()?;
        let controller =
            BrokerController::start(env, broker, store, server, ferrocket::total_memory())
                .await
                .context("the broker failed to start")?;
        let context = controller.context();
        println!(
            "The broker[{}, {}] boot success. serializeType=JSON and name server is {}",
            context.config.broker_name,
            context.broker_addr,
            context.config.namesrv_addr.as_deref().unwrap_or("(none)")
        );
        ferrocket::shutdown_signal().await;
        tracing::info!("shutting down");
        controller
            .shutdown()
            .await
            .context("clean shutdown failed")?;
        Ok(())
    })
}
