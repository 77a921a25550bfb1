//! stigmer's helper inside a sandbox container: the container's init (PID 1, reaping every
//! orphan) and the one place that starts and stops commands there, driven over stdin/stdout
//! by the engine (see the library for the wire). Built static, so an image needs nothing but
//! the kernel: no shell, no `kill`, no `setsid`, no writable `/run`.

#[cfg(target_os = "linux")]
mod serve;

fn main() {
    let arg = std::env::args().nth(1);
    match arg.as_deref() {
        Some("--version") => println!(
            "stigmer-sandbox-helper {} {}",
            stigmer_sandbox_helper::VERSION,
            std::env::consts::ARCH
        ),
        #[cfg(target_os = "linux")]
        Some("serve") => {
            // `serve --proxy ADDR SOCKET`: the allowlist's proxy offered at ADDR.
            let args: Vec<String> = std::env::args().skip(2).collect();
            match args.as_slice() {
                [] => {}
                [flag, listen, door] if flag == "--proxy" => {
                    if let Err(e) = stigmer_sandbox_helper::proxy::offer(listen, door.into()) {
                        eprintln!(
                            "stigmer-sandbox-helper: cannot offer the proxy on {listen}: {e}"
                        );
                        std::process::exit(1);
                    }
                }
                _ => {
                    eprintln!("usage: stigmer-sandbox-helper serve [--proxy ADDR SOCKET]");
                    std::process::exit(2);
                }
            }
            serve::serve()
        }
        _ => {
            eprintln!("usage: stigmer-sandbox-helper serve|--version (stigmer starts it in its sandbox containers)");
            std::process::exit(2);
        }
    }
}
