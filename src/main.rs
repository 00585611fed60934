#![deny(clippy::unwrap_used)]

fn main() -> std::process::ExitCode {
    tune_allocator();
    dlm_tui::model::tune_threads(std::env::args().nth(1).is_some_and(|a| a == "train"));
    dlm_tui::entry::main()
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
