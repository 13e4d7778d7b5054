//! The gateway binary as its own process, configured as a deployment configures it (the
//! environment, and a config file when given), for what only a process shows: a signal
//! (SIGKILL, SIGHUP), or what the binary alone sets up (OTLP export). Killed when dropped.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tim_gateway::sim::{Sim, DEMO_SECRET_KEY};

use super::{eventually, Caller, ADMIN, SDKAPPID};

/// A running `tim-gateway` process; derefs to a [`Caller`] of it.
pub struct GatewayProcess {
    child: Option<Child>,
    caller: Caller,
}

impl std::ops::Deref for GatewayProcess {
    type Target = Caller;
    fn deref(&self) -> &Caller {
        &self.caller
    }
}

/// A loopback address nothing listens on right now.
pub fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
}

impl GatewayProcess {
    /// `tim-gateway ARGS` listening on `listen` (as its config says), with no inherited
    /// `TIM_GATEWAY__*`, `OTEL_*` or `RUST_LOG` and with `env`; returns once `/healthz` answers.
    pub async fn spawn(listen: SocketAddr, args: &[&str], env: &[(&str, &str)]) -> GatewayProcess {
        let mut command = Command::new(env!("CARGO_BIN_EXE_tim-gateway"));
        for (name, _) in std::env::vars() {
            if name.starts_with("TIM_GATEWAY__") || name.starts_with("OTEL_") || name == "RUST_LOG"
            {
                command.env_remove(name);
            }
        }
        let child = command
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn tim-gateway");
        let process = GatewayProcess {
            child: Some(child),
            caller: Caller::new(listen),
        };
        let up = eventually(Duration::from_secs(20), || async {
            let answered = process.caller.try_send_with("GET", "/healthz", &[], "");
            answered.await.is_ok()
        });
        assert!(up.await, "the gateway process did not start");
        process
    }

    /// A gateway in front of `sim` (its app's credentials, no caller auth), configured through
    /// the environment alone; `env` adds or overrides keys.
    pub async fn in_front_of(sim: &Sim, env: &[(&str, &str)]) -> GatewayProcess {
        GatewayProcess::in_front_of_with(sim, &[], env).await
    }

    /// As [`GatewayProcess::in_front_of`], with command-line `args` (`--config FILE`, say).
    pub async fn in_front_of_with(
        sim: &Sim,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> GatewayProcess {
        let listen = free_addr();
        let (listen_text, sdkappid, base_url) =
            (listen.to_string(), SDKAPPID.to_string(), sim.base_url());
        let mut all = vec![
            ("TIM_GATEWAY__SERVER__LISTEN", listen_text.as_str()),
            ("TIM_GATEWAY__UPSTREAM__BASE_URL", base_url.as_str()),
            ("TIM_GATEWAY__UPSTREAM__SDKAPPID", sdkappid.as_str()),
            ("TIM_GATEWAY__UPSTREAM__IDENTIFIER", ADMIN),
            ("TIM_GATEWAY__UPSTREAM__SECRET_KEY", DEMO_SECRET_KEY),
            ("TIM_GATEWAY__AUTH__MODE", "none"),
        ];
        all.extend_from_slice(env);
        GatewayProcess::spawn(listen, args, &all).await
    }

    /// Sends `signal` (`-HUP`, ...) to the process.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        let status = Command::new("kill")
            .args([signal, &pid])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill {signal} {pid}");
    }

    /// SIGKILL: no drain, no leave.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
