fn main() -> std::process::ExitCode {
    pinwarden::cli::main()
}
