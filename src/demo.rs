//! `tim-gateway demo`: the gateway in front of the simulated Tencent upstream, on loopback.
//!
//! Starts the sim (sim.rs) on 127.0.0.1, points the gateway's upstream at it (signing with the
//! configured key, or the sim's demo key when none is set), turns on the coalesced list reads
//! the config leaves off (`[list_apis]`, online status kept 2 s), and prints a ready-to-paste
//! `curl` per API with a valid admin UserSig that returns real answers.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::apis::{ListSpec, LIST_TABLE};
use crate::config::{Config, ListApiConfig, SecretKey};
use crate::sim::{Sim, SimConfig, DEMO_SECRET_KEY};
use crate::usersig;

/// How long the UserSig in the printed curl stays valid.
const DEMO_USERSIG_TTL_SECONDS: u64 = 86_400;

/// Starts the sim and returns it with `config` rewired to use it as the upstream.
pub async fn start_sim(mut config: Config) -> std::io::Result<(Sim, Config)> {
    let sim = Sim::start(sim_config(&mut config)).await?;
    config.upstream.base_url = sim.base_url().parse().map_err(std::io::Error::other)?;
    // Nothing balances load onto a demo: Ctrl-C stops it without announcing the drain.
    config.server.drain_announce = std::time::Duration::ZERO;
    for spec in LIST_TABLE {
        let ttl = match spec.label {
            "openim/query_online_status" => std::time::Duration::from_secs(2),
            _ => std::time::Duration::ZERO,
        };
        let on = ListApiConfig { enabled: true, ttl };
        config.list_apis.by_label.entry(spec.label).or_insert(on);
    }
    Ok((sim, config))
}

/// The sim's setup for `config`'s app: its sdkappid and secret key (the demo key when none is
/// set, which is then written into `config`), and the upstream identifier and `auth.admins` as
/// app admins. `tim-gateway sim` uses the same, so a gateway with the same config talks to it.
pub fn sim_config(config: &mut Config) -> SimConfig {
    if config.upstream.secret_key.is_empty() {
        config.upstream.secret_key = SecretKey::new(DEMO_SECRET_KEY.to_string());
    }
    let mut admins = config.auth.admins.clone();
    if !admins.contains(&config.upstream.identifier) {
        admins.push(config.upstream.identifier.clone());
    }
    SimConfig {
        sdkappid: config.upstream.sdkappid,
        secret_key: config.upstream.secret_key.expose().to_string(),
        admins,
        ..SimConfig::default()
    }
}

/// A one-line curl that asks the gateway at `listen` for two accounts' profiles.
pub fn curl_command(config: &Config, listen: std::net::SocketAddr) -> String {
    let body = r#"{"To_Account":["user1","user2","user42"],"TagList":["Tag_Profile_IM_Nick","Tag_Profile_IM_Gender","Tag_Profile_IM_BirthDay","Tag_Profile_Custom_Test"]}"#;
    curl(config, listen, crate::apis::PORTRAIT_GET.path, body)
}

/// One curl per coalesced list read, each labelled by a comment line above it.
pub fn list_curl_commands(config: &Config, listen: std::net::SocketAddr) -> Vec<String> {
    LIST_TABLE
        .iter()
        .map(|spec| {
            let label = spec.label;
            let curl = curl(config, listen, spec.path, example_body(spec));
            format!("# {label}\n{curl}")
        })
        .collect()
}

/// A request of `spec` for a few of the sim's ids (one that does not exist).
fn example_body(spec: &ListSpec) -> &'static str {
    match spec.label {
        "openim/query_online_status" => {
            r#"{"To_Account":["user1","user2","user3","nobody"],"IsNeedDetail":1}"#
        }
        "im_open_login_svc/account_check" => {
            r#"{"CheckItem":[{"UserID":"user1"},{"UserID":"nobody"}]}"#
        }
        _ => "{}",
    }
}

/// A one-line curl POSTing `body` to `path` on the gateway at `listen`, signed as the admin.
fn curl(config: &Config, listen: std::net::SocketAddr, path: &str, body: &str) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let identifier = &config.upstream.identifier;
    let sig = usersig::sign(
        config.upstream.sdkappid,
        config.upstream.secret_key.expose(),
        identifier,
        now,
        DEMO_USERSIG_TTL_SECONDS,
    );
    let identifier: String = url::form_urlencoded::byte_serialize(identifier.as_bytes()).collect();
    format!(
        "curl -s 'http://{listen}{path}?sdkappid={}&identifier={identifier}&usersig={sig}&random={}&contenttype=json' -d '{body}'",
        config.upstream.sdkappid,
        rand::random::<u32>(),
    )
}
