//! `signal()`: resolves when the process is asked to stop (SIGTERM from Kubernetes, SIGINT
//! from a terminal). `run` takes any future as its shutdown trigger, so tests use their own.

/// Resolves on SIGTERM or SIGINT (Ctrl-C elsewhere than Unix).
pub async fn signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
