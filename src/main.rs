fn main() -> std::process::ExitCode {
    tune_allocator();
    tune_threads();
    dlm_tui::cli::main()
}

/// candle runs element-wise ops on its own spinning thread pool and matmuls on rayon's. Inference
/// runs each forward pass inside rayon's pool (model::in_pool), where a second spinning pool only
/// competes with the matmul threads for the cores: with one candle thread the embedded model's
/// forward pass at 128 tokens took 26.7 ms instead of 30.6 ms (median of 30, 2 cores; see
/// BENCHMARKS.md). Training does not run inside the pool and keeps candle's default. An explicit
/// CANDLE_NUM_THREADS wins.
fn tune_threads() {
    let training = std::env::args().nth(1).is_some_and(|a| a == "train");
    if !training && std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        // No other thread exists yet, so changing the environment is sound.
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
}

/// candle allocates a fresh buffer for every tensor. With glibc's defaults the large ones
/// (logits, activations: tens of MiB) are mmap'ed and unmapped on every step, and the page
/// faults cost about a third of a training step's CPU time (measured: 30.7 s of 54 s spent in
/// the kernel for 8 steps, 5.2 s once large blocks stay in the heap). Keep them in the heap.
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tunables; it is called before any other thread
    // exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
        libc::mallopt(libc::M_TOP_PAD, 256 << 20);
    }
}
