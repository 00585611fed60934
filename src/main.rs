fn main() -> std::process::ExitCode {
    dlm_tui::cli::main()
}
