//! Caller authentication cost: a full UserSig check (base64, inflate, JSON, HMAC-SHA256) with
//! `usersig::decode_and_check` and `usersig::verify`, against `Authenticator::check` on the
//! same query string every time, which answers from its verdict cache after the first call.

use criterion::{black_box, Criterion, Throughput};
use tim_gateway::bench::Authenticator;
use tim_gateway::config::{AuthConfig, AuthMode, SecretKey};
use tim_gateway::usersig;

const KEY: &str = "bench-not-a-secret";
const SDKAPPID: u64 = 1_400_000_000;
const ADMIN: &str = "administrator";

pub fn bench(c: &mut Criterion) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    let sig = usersig::sign(SDKAPPID, KEY, ADMIN, now, 86_400);
    let query = format!(
        "sdkappid={SDKAPPID}&identifier={ADMIN}&usersig={sig}&random=12345678&contenttype=json"
    );
    let auth = Authenticator::new(
        &AuthConfig {
            mode: AuthMode::UserSig,
            admins: vec![ADMIN.to_owned()],
            verdict_cache_bytes: 8 * 1024 * 1024,
        },
        SDKAPPID,
        SecretKey::new(KEY.to_owned()),
    );
    auth.check(Some(&query)).expect("a valid admin usersig");

    let mut group = c.benchmark_group("usersig");
    group.throughput(Throughput::Elements(1));
    group.bench_function("decode_and_check", |b| {
        b.iter(|| usersig::decode_and_check(black_box(&sig), KEY).map(|v| v.expire))
    });
    group.bench_function("verify", |b| {
        b.iter(|| usersig::verify(black_box(&sig), KEY, SDKAPPID, ADMIN, now).map(|v| v.expire))
    });
    group.bench_function("authenticator_cached", |b| {
        b.iter(|| auth.check(Some(black_box(&query))).is_ok())
    });
    group.finish();
}
