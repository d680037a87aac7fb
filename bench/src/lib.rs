//! synack-bench: the programs people run (load generator, responder, the one-command benchmark) and the
//! criterion benches.
