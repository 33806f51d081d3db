use clap::Parser;

#[actix_web::main]
async fn main() {
    countersign::telemetry::init();
    let cli = countersign::cli::Cli::parse();
    match countersign::cli::run(cli).await {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(1);
        }
    }
}
