use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use super::*;

const SHIPPED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/config/tim-gateway.toml");

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn no_env() -> HashMap<String, String> {
    HashMap::new()
}

#[test]
fn shipped_config_file_equals_built_in_defaults() {
    let text = std::fs::read_to_string(SHIPPED).unwrap();
    let raw: RawConfig = toml::from_str(&text).unwrap();
    assert_eq!(raw, RawConfig::default());
    let config = Config::load(Path::new(SHIPPED), false, &no_env()).unwrap();
    assert_eq!(config, Config::default());
    assert_eq!(config.server.listen, "127.0.0.1:8080".parse().unwrap());
    assert_eq!(
        config.upstream.base_url.as_str(),
        "https://console.tim.qq.com/"
    );
    assert_eq!(config.limits.batch_window, Duration::from_millis(2));
    assert_eq!(config.cache.missing_tag_ttl, Duration::from_secs(60));
    assert_eq!(config.cache.answer_cache_bytes, 64 * 1024 * 1024);
    assert_eq!(config.log.format, LogFormat::Text);
}

#[test]
fn missing_file_at_default_path_uses_defaults_but_explicit_path_is_an_error() {
    let path = Path::new("/nonexistent/tim-gateway.toml");
    let vars = env(&[("TIM_GATEWAY__LOG__FORMAT", "json")]);
    let config = Config::load(path, true, &vars).unwrap();
    assert_eq!(config.log.format, LogFormat::Json);
    let err = Config::load(path, false, &no_env()).unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }), "{err}");
}

#[test]
fn unknown_toml_key_is_rejected_and_named() {
    let err = Config::from_toml_str("[server]\nlistn = \"0.0.0.0:80\"\n", &no_env()).unwrap_err();
    assert!(matches!(err, ConfigError::Parse { .. }), "{err}");
    assert!(err.to_string().contains("listn"), "{err}");
    assert!(err.to_string().contains("line 2"), "{err}");
    let err = Config::from_toml_str("[servr]\n", &no_env()).unwrap_err();
    assert!(err.to_string().contains("servr"), "{err}");
}

#[test]
fn unknown_env_var_is_rejected() {
    let vars = env(&[("TIM_GATEWAY__LIMITS__REQUESTS_PER_SECONDS", "5")]);
    let err = Config::from_toml_str("", &vars).unwrap_err();
    let ConfigError::Env { var, reason } = &err else {
        panic!("{err}")
    };
    assert_eq!(var, "TIM_GATEWAY__LIMITS__REQUESTS_PER_SECONDS");
    assert!(reason.contains("requests_per_second,"), "{err}");
    for bad in [
        "TIM_GATEWAY__LIMIT__BATCH_WINDOW_MS",
        "TIM_GATEWAY__LIMITS",
        "TIM_GATEWAY__A__B__C",
    ] {
        let err = Config::from_toml_str("", &env(&[(bad, "1")])).unwrap_err();
        assert!(
            matches!(&err, ConfigError::Env { var, .. } if var == bad),
            "{err}"
        );
    }
}

#[test]
fn unrelated_env_vars_are_ignored() {
    let vars = env(&[
        ("TIM_GATEWAY_LOG", "x"),
        ("PATH", "/bin"),
        ("RUST_LOG", "debug"),
    ]);
    assert_eq!(Config::from_toml_str("", &vars).unwrap(), Config::default());
}

#[test]
fn env_overrides_beat_the_file() {
    let file = "[server]\nlisten = \"127.0.0.1:1\"\n[upstream]\nsecret_key = \"from-file\"\n\
                [limits]\nrequests_per_second = 7\n[auth]\nadmins = [\"x\"]\n";
    let vars = env(&[
        ("TIM_GATEWAY__SERVER__LISTEN", "0.0.0.0:9000"),
        ("TIM_GATEWAY__UPSTREAM__SECRET_KEY", "from-env"),
        ("TIM_GATEWAY__LIMITS__REQUESTS_PER_SECOND", "5"),
        ("TIM_GATEWAY__auth__Admins", "a, b"),
    ]);
    let config = Config::from_toml_str(file, &vars).unwrap();
    assert_eq!(config.server.listen, "0.0.0.0:9000".parse().unwrap());
    assert_eq!(config.upstream.secret_key.expose(), "from-env");
    assert_eq!(config.limits.requests_per_second.get(), 5);
    assert_eq!(config.auth.admins, ["a", "b"]);
    // The file still beats the defaults where env is silent.
    let config = Config::from_toml_str(file, &no_env()).unwrap();
    assert_eq!(config.limits.requests_per_second.get(), 7);
    assert_eq!(config.upstream.secret_key.expose(), "from-file");
}

#[test]
fn digit_only_secret_key_from_env_stays_a_string() {
    let vars = env(&[(ENV_SECRET_KEY, "0012345")]);
    let config = Config::from_toml_str("", &vars).unwrap();
    assert_eq!(config.upstream.secret_key.expose(), "0012345");
}

#[test]
fn bad_integer_in_env_is_an_env_error() {
    for (var, value) in [
        ("TIM_GATEWAY__CACHE__TTL_SECONDS", "5m"),
        ("TIM_GATEWAY__LIMITS__REQUESTS_PER_SECOND", "99999999999"),
        ("TIM_GATEWAY__CACHE__MAX_ENTRIES", "-1"),
        ("TIM_GATEWAY__LOG__FORMAT", "yaml"),
    ] {
        let err = Config::from_toml_str("", &env(&[(var, value)])).unwrap_err();
        assert!(
            matches!(&err, ConfigError::Env { var: v, .. } if v == var),
            "{err}"
        );
    }
}

#[test]
fn empty_admins_env_means_the_upstream_identifier() {
    let vars = env(&[
        ("TIM_GATEWAY__AUTH__ADMINS", ""),
        ("TIM_GATEWAY__UPSTREAM__IDENTIFIER", "ops"),
    ]);
    let config = Config::from_toml_str("[auth]\nadmins = [\"x\"]\n", &vars).unwrap();
    assert_eq!(config.auth.admins, ["ops"]);
}

#[test]
fn admins_default_to_the_upstream_identifier() {
    assert_eq!(Config::default().auth.admins, ["administrator"]);
    let config = Config::from_toml_str("[upstream]\nidentifier = \"boss\"\n", &no_env()).unwrap();
    assert_eq!(config.auth.admins, ["boss"]);
}

#[test]
fn max_accounts_per_batch_outside_1_to_100_is_rejected() {
    for n in [0, 101] {
        let mut raw = RawConfig::default();
        raw.limits.max_accounts_per_batch = n;
        let err = Config::from_raw(raw).unwrap_err();
        assert!(
            matches!(
                err,
                ConfigError::Invalid {
                    key: "limits.max_accounts_per_batch",
                    ..
                }
            ),
            "{err}"
        );
    }
    let err =
        Config::from_toml_str("[limits]\nmax_accounts_per_batch = 101\n", &no_env()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid config: limits.max_accounts_per_batch = 101: must be between 1 and 100"
    );
}

#[test]
fn bad_base_url_is_rejected() {
    for url in [
        "ftp://example.com",
        "http://",
        "https://",
        "not a url",
        "https://h/?a=1",
        "https://u:p@h/",
    ] {
        let mut raw = RawConfig::default();
        raw.upstream.base_url = url.to_owned();
        let err = Config::from_raw(raw).unwrap_err();
        assert!(
            matches!(
                err,
                ConfigError::Invalid {
                    key: "upstream.base_url",
                    ..
                }
            ),
            "{url}: {err}"
        );
    }
    let mut raw = RawConfig::default();
    raw.upstream.base_url = "http://127.0.0.1:9000/prefix".to_owned();
    assert_eq!(
        Config::from_raw(raw).unwrap().upstream.base_url.path(),
        "/prefix"
    );
}

#[test]
fn other_out_of_range_values_are_rejected() {
    type Breaker = fn(&mut RawConfig);
    let cases: [(&str, Breaker); 16] = [
        ("server.listen", |r| r.server.listen = "localhost:80".into()),
        ("server.max_body_bytes", |r| r.server.max_body_bytes = 1023),
        ("server.max_connections", |r| r.server.max_connections = 0),
        ("upstream.sdkappid", |r| r.upstream.sdkappid = 0),
        ("upstream.identifier", |r| {
            r.upstream.identifier = String::new()
        }),
        ("upstream.timeout_ms", |r| r.upstream.timeout_ms = 0),
        ("upstream.usersig_ttl_seconds", |r| {
            r.upstream.usersig_ttl_seconds = 299
        }),
        ("limits.requests_per_second", |r| {
            r.limits.requests_per_second = 0
        }),
        ("limits.set_requests_per_second", |r| {
            r.limits.set_requests_per_second = 100_001
        }),
        ("cache.ttl_seconds", |r| r.cache.ttl_seconds = 0),
        ("server.header_read_timeout_ms", |r| {
            r.server.header_read_timeout_ms = 0
        }),
        ("server.body_read_timeout_ms", |r| {
            r.server.body_read_timeout_ms = 0
        }),
        ("server.idle_timeout_ms", |r| r.server.idle_timeout_ms = 0),
        ("server.http2_keep_alive_timeout_ms", |r| {
            r.server.http2_keep_alive_timeout_ms = 0
        }),
        ("server.http2_max_concurrent_streams", |r| {
            r.server.http2_max_concurrent_streams = 0
        }),
        ("upstream.max_response_bytes", |r| {
            r.upstream.max_response_bytes = 1023
        }),
    ];
    for (key, break_it) in cases {
        let mut raw = RawConfig::default();
        break_it(&mut raw);
        let err = Config::from_raw(raw).unwrap_err();
        assert!(
            matches!(&err, ConfigError::Invalid { key: k, .. } if *k == key),
            "{key}: {err}"
        );
    }
    let mut raw = RawConfig::default();
    raw.cache.max_entries = 0;
    assert!(Config::from_raw(raw).is_err());
}

#[test]
fn empty_secret_key_loads_but_is_required_for_run() {
    let config = Config::default();
    assert!(config.upstream.secret_key.is_empty());
    let err = config.require_secret_key().unwrap_err();
    assert!(err.to_string().contains(ENV_SECRET_KEY), "{err}");
    let config = Config::from_toml_str("", &env(&[(ENV_SECRET_KEY, "k")])).unwrap();
    assert!(config.require_secret_key().is_ok());
}

#[test]
fn debug_never_shows_the_secret_key() {
    let secret = "s3cr3t-Key-Value";
    let config = Config::from_toml_str("", &env(&[(ENV_SECRET_KEY, secret)])).unwrap();
    let debug = format!("{config:?} {config:#?}");
    assert!(!debug.contains(secret), "{debug}");
    assert!(debug.contains("SecretKey(<redacted>)"), "{debug}");
    assert_eq!(
        format!("{:?}", SecretKey::new(String::new())),
        "SecretKey(<empty>)"
    );
    let raw: RawConfig =
        toml::from_str(&format!("[upstream]\nsecret_key = \"{secret}\"\n")).unwrap();
    assert!(!format!("{raw:?}").contains(secret));
}

#[test]
fn parse_errors_never_echo_the_offending_line() {
    let err = Config::from_toml_str("[upstream]\nsecret_key = \"s3cr3t\n", &no_env()).unwrap_err();
    assert!(!err.to_string().contains("s3cr3t"), "{err}");
}

#[test]
fn every_error_display_is_one_line() {
    let missing = Config::load(Path::new("/nonexistent/x.toml"), false, &no_env()).unwrap_err();
    let errors = [
        missing,
        Config::from_toml_str("[server]\nlistn = 1\n", &no_env()).unwrap_err(),
        Config::from_toml_str("[server\n", &no_env()).unwrap_err(),
        Config::from_toml_str("[cache]\nttl_seconds = \"x\"\n", &no_env()).unwrap_err(),
        Config::from_toml_str("", &env(&[("TIM_GATEWAY__LOG__FORMAT", "yaml")])).unwrap_err(),
        Config::from_toml_str("", &env(&[("TIM_GATEWAY__CACHE__TTL_SECONDS", "x")])).unwrap_err(),
        Config::from_toml_str("[limits]\nmax_accounts_per_batch = 0\n", &no_env()).unwrap_err(),
        Config::default().require_secret_key().unwrap_err(),
    ];
    for err in errors {
        let text = err.to_string();
        assert!(!text.contains('\n') && !text.is_empty(), "{text:?}");
    }
}

#[test]
fn env_vars_differing_only_in_case_are_rejected() {
    let vars = env(&[
        ("TIM_GATEWAY__SERVER__LISTEN", "0.0.0.0:1"),
        ("TIM_GATEWAY__server__listen", "0.0.0.0:2"),
    ]);
    let err = Config::from_toml_str("", &vars).unwrap_err();
    assert!(matches!(err, ConfigError::Env { .. }), "{err}");
}

#[test]
fn fleet_is_off_by_default_and_set_from_the_environment() {
    let config = Config::default();
    assert_eq!(config.fleet.redis, None);
    assert_eq!(config.fleet.key_prefix, "tim-gateway");
    assert_eq!(config.fleet.redis_timeout, Duration::from_millis(250));
    assert_eq!(config.fleet.heartbeat, Duration::from_millis(400));
    assert_eq!(config.fleet.lease, Duration::from_secs(4));
    assert_eq!(config.fleet.after_lease, AfterLease::Stop);
    assert_eq!(config.fleet.fallback_instances.get(), 4);
    let vars = env(&[
        (
            "TIM_GATEWAY__FLEET__REDIS_URL",
            "redis://:hunter2@127.0.0.1:6390/0",
        ),
        ("TIM_GATEWAY__FLEET__FALLBACK_INSTANCES", "3"),
        ("TIM_GATEWAY__FLEET__AFTER_LEASE", "spend_share"),
    ]);
    let config = Config::from_toml_str("", &vars).unwrap();
    let Some(RedisShape::Single(url)) = &config.fleet.redis else {
        panic!("one primary: {:?}", config.fleet.redis);
    };
    assert_eq!(url.expose(), "redis://:hunter2@127.0.0.1:6390/0");
    assert_eq!(config.fleet.fallback_instances.get(), 3);
    assert_eq!(config.fleet.after_lease, AfterLease::SpendShare);
    let shown = format!("{config:?}");
    assert!(
        !shown.contains("hunter2"),
        "Debug leaks the Redis password: {shown}"
    );
    assert!(shown.contains("127.0.0.1:6390"), "{shown}");
}

#[test]
fn sentinel_and_cluster_shapes_come_from_the_file_or_comma_separated_env() {
    let toml =
        "[fleet]\nredis_sentinel_nodes = [\"127.0.0.1:26379\", \"rediss://:pw@127.0.0.1:26380\"]\n\
                redis_sentinel_master = \"mymaster\"\n";
    let config = Config::from_toml_str(toml, &no_env()).unwrap();
    let Some(RedisShape::Sentinel { nodes, master }) = &config.fleet.redis else {
        panic!("sentinel: {:?}", config.fleet.redis);
    };
    assert_eq!(master, "mymaster");
    assert_eq!(nodes[0].expose(), "redis://127.0.0.1:26379");
    assert!(nodes[1].is_tls());
    let vars = env(&[(
        "TIM_GATEWAY__FLEET__REDIS_CLUSTER_NODES",
        "127.0.0.1:7000,127.0.0.1:7001",
    )]);
    let config = Config::from_toml_str("", &vars).unwrap();
    let Some(shape @ RedisShape::Cluster { nodes }) = &config.fleet.redis else {
        panic!("cluster: {:?}", config.fleet.redis);
    };
    assert_eq!(nodes.len(), 2);
    assert_eq!(
        shape.describe(),
        "cluster via 127.0.0.1:7000,127.0.0.1:7001"
    );
    assert!(!format!("{config:?}").contains("pw@"));
}

#[test]
fn two_shapes_of_redis_at_once_are_one_error_naming_both() {
    for (toml, first, second) in [
        (
            "[fleet]\nredis_url = \"redis://:pw@h:1/0\"\nredis_cluster_nodes = [\"h:2\"]\n",
            "fleet.redis_url",
            "fleet.redis_cluster_nodes",
        ),
        (
            "[fleet]\nredis_sentinel_nodes = [\"h:3\"]\nredis_sentinel_master = \"m\"\n\
             redis_cluster_nodes = [\"h:2\"]\n",
            "fleet.redis_sentinel_nodes",
            "fleet.redis_cluster_nodes",
        ),
    ] {
        let text = Config::from_toml_str(toml, &no_env())
            .unwrap_err()
            .to_string();
        assert!(text.contains(first) && text.contains(second), "{text}");
        assert!(!text.contains('\n') && !text.contains("pw"), "{text}");
    }
}

#[test]
fn bad_fleet_settings_are_rejected_without_echoing_the_url() {
    for (toml, key) in [
        (
            "[fleet]\nredis_url = \"http://:pw@host\"\n",
            "fleet.redis_url",
        ),
        ("[fleet]\nredis_url = \"redis://\"\n", "fleet.redis_url"),
        (
            "[fleet]\nredis_url = \"redis://:pw@h/db-x\"\n",
            "fleet.redis_url",
        ),
        ("[fleet]\nkey_prefix = \"\"\n", "fleet.key_prefix"),
        ("[fleet]\nkey_prefix = \"a b\"\n", "fleet.key_prefix"),
        ("[fleet]\nkey_prefix = \"a{b}\"\n", "fleet.key_prefix"),
        (
            "[fleet]\nredis_sentinel_nodes = [\"h:1\"]\n",
            "fleet.redis_sentinel_master",
        ),
        (
            "[fleet]\nredis_cluster_nodes = [\"http://:pw@h:1\"]\n",
            "fleet.redis_cluster_nodes",
        ),
        (
            "[fleet]\nredis_ca_file = \"/nonexistent.pem\"\n",
            "fleet.redis_ca_file",
        ),
        ("[fleet]\nredis_timeout_ms = 0\n", "fleet.redis_timeout_ms"),
        (
            "[fleet]\nheartbeat_ms = 1000\nlease_ms = 3000\n",
            "fleet.lease_ms",
        ),
        ("[fleet]\nlease_ms = 120000\n", "fleet.lease_ms"),
        (
            "[fleet]\nfallback_instances = 0\n",
            "fleet.fallback_instances",
        ),
    ] {
        let err = Config::from_toml_str(toml, &no_env()).unwrap_err();
        let text = err.to_string();
        assert!(text.contains(key), "{toml}: {text}");
        assert!(!text.contains("pw@"), "{toml}: {text}");
    }
}

#[test]
fn bounds_have_production_defaults_and_env_overrides() {
    let config = Config::default();
    assert_eq!(config.server.header_read_timeout, Duration::from_secs(5));
    assert_eq!(config.server.body_read_timeout, Duration::from_secs(10));
    assert_eq!(config.server.idle_timeout, Duration::from_secs(60));
    assert_eq!(config.server.http2_max_concurrent_streams, 256);
    assert_eq!(config.upstream.max_response_bytes, 8 * 1024 * 1024);
    assert_eq!(config.auth.verdict_cache_bytes, 8 * 1024 * 1024);
    let vars = env(&[
        ("TIM_GATEWAY__SERVER__IDLE_TIMEOUT_MS", "1500"),
        ("TIM_GATEWAY__UPSTREAM__MAX_RESPONSE_BYTES", "65536"),
        ("TIM_GATEWAY__AUTH__VERDICT_CACHE_BYTES", "4096"),
    ]);
    let config = Config::from_toml_str("[server]\nheader_read_timeout_ms = 250\n", &vars).unwrap();
    assert_eq!(
        config.server.header_read_timeout,
        Duration::from_millis(250)
    );
    assert_eq!(config.server.idle_timeout, Duration::from_millis(1500));
    assert_eq!(config.upstream.max_response_bytes, 65536);
    assert_eq!(config.auth.verdict_cache_bytes, 4096);
}

#[test]
fn resilience_defaults_and_regions() {
    let config = Config::default();
    assert_eq!(config.upstream.max_retries, 2);
    assert_eq!(config.upstream.retry_budget_percent, 10);
    assert_eq!(config.upstream.retry_budget_min_per_second, 1);
    assert_eq!(config.upstream.ca_file, None);
    assert_eq!(config.cache.stale_if_error, Duration::from_secs(3600));
    assert_eq!(config.cache.stale_while_revalidate, Duration::from_secs(30));
    assert_eq!(config.cache.failure_ttl, Duration::from_secs(5));
    assert_eq!(config.breaker.failure_threshold, 5);
    assert_eq!(config.breaker.open, Duration::from_secs(2));
    assert_eq!(config.server.drain_announce, Duration::from_secs(5));
    let singapore =
        Config::from_toml_str("[upstream]\nregion = \"singapore\"\n", &no_env()).unwrap();
    assert_eq!(
        singapore.upstream.base_url.as_str(),
        "https://adminapisgp.im.qcloud.com/"
    );
    let vars = env(&[("TIM_GATEWAY__UPSTREAM__REGION", "silicon_valley")]);
    let valley = Config::from_toml_str("", &vars).unwrap();
    assert_eq!(
        valley.upstream.base_url.host_str(),
        Some("adminapiusa.im.qcloud.com")
    );
    for (toml, key) in [
        ("[upstream]\nregion = \"mars\"\n", "upstream.region"),
        (
            "[upstream]\nregion = \"seoul\"\nbase_url = \"https://example.test\"\n",
            "upstream.base_url",
        ),
        ("[upstream]\nmax_retries = 11\n", "upstream.max_retries"),
        (
            "[upstream]\nretry_budget_percent = 101\n",
            "upstream.retry_budget_percent",
        ),
        (
            "[upstream]\nretry_budget_min_per_second = 101\n",
            "upstream.retry_budget_min_per_second",
        ),
        (
            "[breaker]\nfailure_threshold = 0\n",
            "breaker.failure_threshold",
        ),
        ("[breaker]\nopen_ms = 0\n", "breaker.open_ms"),
    ] {
        let err = Config::from_toml_str(toml, &no_env()).unwrap_err();
        assert!(err.to_string().contains(key), "{toml}: {err}");
    }
}
