//! The `apibench` binary: parse the command line, own Ctrl-C, logging and exit codes; everything
//! else is the `loadgen` library.

use anyhow::Context as _;
use clap::Parser as _;
use loadgen::calibrate::{self, hello};
use loadgen::cli::{CalibrateArgs, HelloServerArgs};
use loadgen::import::Format;
use loadgen::runner::{EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_OK, EXIT_RUN_FAILED};
use loadgen::{Cli, Command, RunOptions};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::watch;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The hidden server is a process of its own: no Ctrl-C handler (SIGINT ends it), no
    // multi-threaded runtime competing for its CPU.
    if let Command::HelloServer(args) = &cli.command {
        return ExitCode::from(hello_server(args));
    }
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,goose=error")),
        )
        .init();
    match real_main(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("apibench: {e:#}");
            ExitCode::from(EXIT_RUN_FAILED)
        }
    }
}

fn real_main(cli: Cli) -> anyhow::Result<u8> {
    let (cancel_tx, cancel_rx) = watch::channel(false);
    // Installed before goose's own handler, which then fails to register (harmlessly): the
    // first Ctrl-C stops the load and lets partial results be written; the second kills the
    // targets' process groups and exits at once.
    let already = AtomicBool::new(false);
    ctrlc::set_handler(move || {
        if already.swap(true, Ordering::SeqCst) {
            eprintln!("apibench: interrupted again, killing targets and exiting");
            loadgen::target::kill_all_now();
            std::process::exit(i32::from(EXIT_INTERRUPTED));
        }
        eprintln!("apibench: interrupted (Ctrl-C or SIGTERM), stopping the load and writing partial results…");
        let _ = cancel_tx.send(true);
    })
    .context("installing the Ctrl-C handler")?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    match cli.command {
        Command::Run(args) => {
            let options = RunOptions {
                scenario: args.scenario,
                out: args.out,
                database_url: args.database_url,
                repeat: args.repeat,
                variants: args.variants,
                api_bin: args.api_bin,
                quiet: args.quiet,
                timer: args.timer,
                generator_threads: args.generator_threads,
                generator_cpus: args.generator_cpus,
                duration: args.duration,
                target_url: args.target_url,
                shard: args.shard,
                start_at: args.start_at,
                serve: args.serve,
                ignore_calibration: false,
                command_line: std::env::args().collect(),
            };
            match runtime.block_on(loadgen::run(options, cancel_rx)) {
                Ok(report) => {
                    print!("{}", loadgen::output::summary_table(&report.summary));
                    println!("results: {}", report.out_dir.display());
                    let index = report.out_dir.join("index.html");
                    if index.is_file() {
                        println!("report: {}", index.display());
                    }
                    Ok(if report.interrupted {
                        EXIT_INTERRUPTED
                    } else {
                        EXIT_OK
                    })
                }
                Err(e) => {
                    eprintln!("apibench: {e}");
                    Ok(e.exit_code())
                }
            }
        }
        Command::Report(args) => Ok(emit(loadgen::report::command(&args))),
        Command::Compare(args) => Ok(emit(loadgen::compare::command(&args))),
        Command::Gate(args) => {
            let step_summary =
                std::env::var_os("GITHUB_STEP_SUMMARY").map(std::path::PathBuf::from);
            Ok(emit(loadgen::gate::command(&args, step_summary.as_deref())))
        }
        Command::Merge(args) => Ok(emit(loadgen::merge::command(&args))),
        Command::ImportHar(args) => Ok(emit(loadgen::import::command(Format::Har, &args))),
        Command::ImportLog(args) => Ok(emit(loadgen::import::command(Format::AccessLog, &args))),
        Command::Serve(args) => match runtime.block_on(loadgen::serve::serve(&args, cancel_rx)) {
            Ok(()) => Ok(EXIT_OK),
            Err(e) => {
                eprintln!("apibench: {e}");
                Ok(e.exit_code())
            }
        },
        Command::Calibrate(args) => calibrate(&runtime, args, cancel_rx),
        Command::HelloServer(args) => Ok(hello_server(&args)),
    }
}

fn calibrate(
    runtime: &tokio::runtime::Runtime,
    args: CalibrateArgs,
    cancel_rx: watch::Receiver<bool>,
) -> anyhow::Result<u8> {
    let Some(out) = args.out.or_else(calibrate::default_path) else {
        eprintln!(
            "apibench: no place for calibration.json: set --out, APIBENCH_CALIBRATION or HOME"
        );
        return Ok(EXIT_BAD_INPUT);
    };
    if args.if_missing {
        match calibrate::load(&out) {
            Ok(existing) if existing.machine.same_as(&calibrate::Machine::current()) => {
                if !args.quiet {
                    eprintln!(
                        "calibrate: {} already holds this machine's calibration ({}, {:.0}/s per core); skipped (--if-missing)",
                        out.display(),
                        existing.created_at,
                        existing.ceiling_per_core_rps
                    );
                }
                return Ok(EXIT_OK);
            }
            _ => {}
        }
    }
    let server_program =
        std::env::current_exe().context("finding the apibench executable to start its server")?;
    let progress = (!args.quiet)
        .then(|| calibrate::Progress(std::sync::Arc::new(|line: &str| eprintln!("{line}"))));
    let options = calibrate::CalibrateOptions {
        server_program,
        server_cpu: args.server_cpu,
        generator_cpus: args.generator_cpus,
        quick: args.quick,
        start_rate_per_sec: args.start_rate,
        max_rate_per_sec: args.max_rate,
        out: out.clone(),
        keep_runs: args.keep_runs,
        progress,
    };
    match runtime.block_on(calibrate::calibrate(options, cancel_rx)) {
        Ok(calibration) => {
            print!("{}", calibrate::summary_text(&calibration, &out));
            Ok(EXIT_OK)
        }
        Err(e) => {
            eprintln!("apibench: {e}");
            Ok(e.exit_code())
        }
    }
}

/// `apibench hello-server`: serves until killed (or, with --exit-with-stdin, until stdin closes).
fn hello_server(args: &HelloServerArgs) -> u8 {
    let stdin_closed = if args.exit_with_stdin {
        let (closed_tx, closed_rx) = tokio::sync::oneshot::channel::<()>();
        // Reads (and ignores) stdin until EOF: the parent's end closed, however it ended.
        let spawned = std::thread::Builder::new()
            .name("stdin-watch".into())
            .spawn(move || {
                let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
                let _ = closed_tx.send(());
            });
        if let Err(e) = spawned {
            eprintln!("apibench hello-server: cannot watch stdin: {e}");
            return EXIT_RUN_FAILED;
        }
        Some(closed_rx)
    } else {
        None
    };
    let served = hello::run_blocking(
        &args.listen,
        args.cpu,
        |addr| eprintln!("listening on http://{addr}"),
        async move {
            match stdin_closed {
                Some(closed) => {
                    let _ = closed.await;
                }
                None => std::future::pending().await,
            }
        },
    );
    match served {
        Ok(()) => EXIT_OK,
        Err(e) => {
            eprintln!("apibench hello-server: {e}");
            EXIT_RUN_FAILED
        }
    }
}

/// Writes a verb's output (stdout, then diagnostics to stderr) and returns its exit code.
fn emit(outcome: loadgen::saved::CommandOutcome) -> u8 {
    print!("{}", outcome.stdout);
    eprint!("{}", outcome.stderr);
    outcome.exit_code
}
