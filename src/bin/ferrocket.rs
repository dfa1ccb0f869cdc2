//! `ferrocket`: a name server and a broker in one process, on embedded defaults — the
//! quickest way to a RocketMQ endpoint any 4.x client can use.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;
use ferrocket::{disk_path, init_logging};
use ferrocket_engine::broker::config::BrokerConfig;
use ferrocket_engine::broker::controller::BrokerController;
use ferrocket_engine::namesrv::{NamesrvConfig, NamesrvController};
use ferrocket_engine::remoting::transport::NettyServerConfig;
use ferrocket_engine::store::config::{FlushDiskType, MessageStoreConfig};

/// Requests and answers allocate many small, short-lived buffers: mimalloc serves them from
/// per-thread free lists, cheaper than the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A local RocketMQ-compatible name server and broker.
#[derive(Debug, Parser)]
#[command(name = "ferrocket", version)]
struct Args {
    /// Directory for the broker's store and the name server's settings.
    #[arg(long, default_value = "data")]
    data_dir: PathBuf,
    /// Address both servers listen on and advertise.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Name server port.
    #[arg(long, default_value_t = 9876)]
    namesrv_port: u16,
    /// Broker port.
    #[arg(long, default_value_t = 10911)]
    broker_port: u16,
    /// Acknowledge sends only once synced to disk (SYNC_FLUSH) instead of ASYNC_FLUSH.
    #[arg(long)]
    sync_flush: bool,
    /// Async runtime worker threads (default: one per core); 1 runs every task on one
    /// thread, the most efficient setting on a machine of one or two cores shared with
    /// clients.
    #[arg(long)]
    worker_threads: Option<usize>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    init_logging();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("ferrocket: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<()> {
    let data_dir = args.data_dir.to_string_lossy().into_owned();
    let namesrv_addr = format!("{}:{}", args.host, args.namesrv_port);
    let namesrv_config = NamesrvConfig {
        kv_config_path: disk_path(&format!("{data_dir}/namesrv/kvConfig.json"))?,
        config_store_path: disk_path(&format!("{data_dir}/namesrv/namesrv.properties"))?,
        ..NamesrvConfig::default()
    };
    let namesrv_server = NettyServerConfig {
        listen_port: args.namesrv_port,
        bind_address: args.host.clone(),
        ..NettyServerConfig::default()
    };
    let broker_config = BrokerConfig {
        namesrv_addr: Some(namesrv_addr.clone()),
        broker_ip1: args.host.clone(),
        broker_ip2: args.host.clone(),
        ..BrokerConfig::default()
    };
    let broker_server = NettyServerConfig {
        listen_port: args.broker_port,
        bind_address: args.host.clone(),
        ..NettyServerConfig::default()
    };
    let store_config = MessageStoreConfig {
        store_path_root_dir: disk_path(&format!("{data_dir}/store"))?,
        flush_disk_type: if args.sync_flush {
            FlushDiskType::SyncFlush
        } else {
            FlushDiskType::AsyncFlush
        },
        ..MessageStoreConfig::default()
    };
    let runtime = ferrocket::runtime(args.worker_threads)?;
    runtime.block_on(async move {
        let env = ferrocket::production_env()?;
        let namesrv = NamesrvController::start(env.clone(), namesrv_config, namesrv_server)
            .await
            .context("the name server failed to start")?;
        let broker = BrokerController::start(
            env,
            broker_config,
            store_config,
            broker_server,
            ferrocket::total_memory(),
        )
        .await
        .context("the broker failed to start")?;
        println!("ferrocket is running");
        println!("  name server  {namesrv_addr}");
        println!(
            "  broker       {} at {} (store in {}/store)",
            broker.context().config.broker_name,
            broker.context().broker_addr,
            data_dir
        );
        println!("Point any RocketMQ 4.x client at the name server, e.g.");
        println!("  Java:   producer.setNamesrvAddr(\"{namesrv_addr}\")");
        println!("  Python: Producer('pg').set_namesrv_addr('{namesrv_addr}')");
        println!("  Node:   new Producer({{ nameSrv: '{namesrv_addr}', ... }})");
        println!("Stop with Ctrl-C.");
        ferrocket::shutdown_signal().await;
        broker.shutdown().await.context("broker shutdown failed")?;
        namesrv.shutdown();
        Ok(())
    })
}
