//! The Customer Success team's Rust worker, for the exec bridge:
//!   pnpm exec-worker --namespace customer_success -- sdks/rust/target/debug/customer-success-worker
fn main() -> std::io::Result<()> {
    refunds_handlers::customer_success::worker().run()
}
