//! `config`: `config.toml` parsing and validation (`Config::parse` then
//! `Config::settings`, what `fraudmesh run` and `fraudmesh config check` call).
//!
//! Properties: a config that parses survives a round trip through TOML unchanged (what
//! `fraudmesh init` writes reads back as written), its validation gives the same verdict
//! after the round trip, and nothing panics.
#![no_main]

use fraudmesh_node::daemon::config::{placeholder_key, Config};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(config) = Config::parse(text) else {
        return;
    };
    let settings = config.settings(placeholder_key());
    #[allow(clippy::eq_op)]
    if config != config {
        // A NaN somewhere (TOML has `nan`): equal to nothing, so nothing to compare.
        return;
    }
    let Ok(written) = toml::to_string(&config) else {
        // Not every value TOML reads can be written back (e.g. a NaN weight); then there
        // is nothing to compare.
        return;
    };
    let again = Config::parse(&written).unwrap_or_else(|e| panic!("written config does not parse: {e}\n{written}"));
    assert_eq!(again, config, "round trip changed the config:\n{written}");
    assert_eq!(
        again.settings(placeholder_key()).is_ok(),
        settings.is_ok(),
        "validation changed after a round trip:\n{written}"
    );
});
