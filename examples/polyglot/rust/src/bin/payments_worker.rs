//! The Payments team's Rust worker, for the exec bridge:
//!   pnpm exec-worker --namespace payments -- sdks/rust/target/debug/payments-worker
fn main() -> std::io::Result<()> {
    refunds_handlers::payments::worker().run()
}
