//! Tests of `[[failover]]`: each mode with every key, the defaults, every class of mistake with
//! its exact `FILE:LINE:COL: KEY: MESSAGE`, and the example files.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::config::{parse, Config, FailoverSettings};
use crate::failover::peer::{Mode, Role};

/// Eleven lines: `[server]` (10.0.0.1 on eth0) and the scopes "lan" (10.0.0.0/24) and "voice"
/// (10.0.1.0/24). What follows starts at line 12.
const BASE: &str = "\
[server]
server_id = \"10.0.0.1\"
interfaces = [\"eth0\"]
[[scope]]
name = \"lan\"
subnet = \"10.0.0.0/24\"
ranges = [\"10.0.0.100-10.0.0.200\"]
[[scope]]
name = \"voice\"
subnet = \"10.0.1.0/24\"
ranges = [\"10.0.1.100-10.0.1.200\"]
";

/// `BASE` followed by `rest` (from line 12).
fn doc(rest: &str) -> String {
    format!("{BASE}{rest}")
}

/// Lines 12-16: a minimal relationship "a" (primary, partner 10.0.0.2, scope "lan"), then
/// `extra` from line 17.
fn rel(extra: &str) -> String {
    doc(&format!(
        "[[failover]]\nname = \"a\"\nrole = \"primary\"\npartner = \"10.0.0.2\"\n\
         scopes = [\"lan\"]\n{extra}"
    ))
}

fn ok(text: &str) -> Config {
    match parse(text, "t.toml") {
        Ok(c) => c,
        Err(e) => panic!("expected success, got:\n{e}"),
    }
}

/// Every error as the operator sees it.
fn rendered(text: &str) -> Vec<String> {
    match parse(text, "t.toml") {
        Ok(_) => panic!("expected errors, the configuration parsed"),
        Err(e) => e.0.iter().map(ToString::to_string).collect(),
    }
}

/// The only error, rendered.
fn only(text: &str) -> String {
    let e = rendered(text);
    assert_eq!(e.len(), 1, "expected exactly one error, got {e:#?}");
    e.into_iter().next().unwrap()
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// A secret file in `dir` with `content` and permissions `mode`.
fn secret_file(dir: &Path, name: &str, content: &[u8], mode: u32) -> String {
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path.display().to_string()
}

#[test]
fn load_balance_relationship_with_every_key() {
    let dir = tempfile::tempdir().unwrap();
    let secret = secret_file(dir.path(), "s", b"s3cr3t\r\n", 0o600);
    let c = ok(&doc(&format!(
        "\
[[failover]]
name = \"dc-pair.1\"
role = \"secondary\"
partner = \"10.0.0.2\"
partner_port = 8647
listen = \"10.0.0.1\"
listen_port = 9647
mode = \"load-balance\"
load_balance_percent = 30
mclt = \"30m\"
state_switchover_interval = \"2h\"
shared_secret_file = \"{secret}\"
scopes = [\"voice\", \"lan\"]
max_clock_skew = \"30s\"
max_response_delay = \"90s\"
startup_wait = \"1m\"
max_unacked_updates = 10
partner_admin = \"10.0.0.2:9000\"
comm_interrupted_alarm = \"2m\"
pool_low_water_percent = 20
"
    )));
    assert_eq!(c.failover.len(), 1);
    let f = &c.failover[0];
    assert_eq!(
        *f,
        FailoverSettings {
            name: "dc-pair.1".into(),
            role: Role::Secondary,
            // This server (the secondary) serves 30%: the primary 70%.
            mode: Mode::LoadBalance {
                primary_percent: 70
            },
            partner: addr("10.0.0.2:8647"),
            listen: addr("10.0.0.1:9647"),
            mclt_secs: 1800,
            switchover_secs: Some(7200),
            secret: Some(b"s3cr3t".to_vec()),
            tls: None,
            partner_admin_tls: None,
            scopes: vec![1, 0],
            scope_names: vec!["voice".into(), "lan".into()],
            max_clock_skew_secs: 30,
            max_response_delay_secs: 90,
            startup_secs: 60,
            max_unacked_updates: 10,
            partner_admin: addr("10.0.0.2:9000"),
            comm_alarm_secs: 120,
            pool_low_percent: 20,
        }
    );
    assert_eq!(c.settings.scopes[f.scopes[0]].name, "voice");

    let p = f.peer_config();
    assert_eq!(p.name, b"dc-pair.1");
    assert_eq!(p.role, Role::Secondary);
    assert_eq!(
        p.mode,
        Mode::LoadBalance {
            primary_percent: 70
        }
    );
    assert_eq!(
        (
            p.mclt_secs,
            p.switchover_secs,
            p.max_skew_secs,
            p.receive_timer_secs,
            p.startup_secs,
            p.max_unacked
        ),
        (1800, Some(7200), 30, 90, 60, 10)
    );
    assert_eq!(p.validate(), Ok(()));

    let l = f.link_config();
    assert_eq!(l.listen, Some(addr("10.0.0.1:9647")));
    assert_eq!(l.partner, Some(addr("10.0.0.2:8647")));
    assert_eq!(l.secret.as_deref(), Some(&b"s3cr3t"[..]));
    let base = crate::failover::link::LinkConfig::new();
    assert_eq!(
        (l.backoff_initial, l.backoff_max, l.connect_timeout),
        (base.backoff_initial, base.backoff_max, base.connect_timeout)
    );

    // The primary's share is its own percentage.
    let c = ok(&rel("load_balance_percent = 30\n"));
    assert_eq!(
        c.failover[0].mode,
        Mode::LoadBalance {
            primary_percent: 30
        }
    );
}

#[test]
fn hot_standby_relationship_with_every_key() {
    let c = ok(&doc("\
[[failover]]
name = \"hub\"
role = \"primary\"
partner = \"192.0.2.7\"
partner_port = 647
listen = \"10.0.0.1\"
listen_port = 647
mode = \"hot-standby\"
hot_standby_role = \"standby\"
reserve_percent = 10
mclt = \"2h\"
state_switchover_interval = \"1d\"
shared_secret = \"inline secret\"
scopes = [\"lan\"]
max_clock_skew = 5
max_response_delay = 3
startup_wait = 1
max_unacked_updates = 1024
"));
    assert_eq!(
        c.failover,
        vec![FailoverSettings {
            name: "hub".into(),
            role: Role::Primary,
            // This server is the standby, so the active server is the secondary.
            mode: Mode::HotStandby {
                active: Role::Secondary,
                reserve_percent: 10
            },
            partner: addr("192.0.2.7:647"),
            listen: addr("10.0.0.1:647"),
            mclt_secs: 7200,
            switchover_secs: Some(86_400),
            secret: Some(b"inline secret".to_vec()),
            tls: None,
            partner_admin_tls: None,
            scopes: vec![0],
            scope_names: vec!["lan".into()],
            max_clock_skew_secs: 5,
            max_response_delay_secs: 3,
            startup_secs: 1,
            max_unacked_updates: 1024,
            partner_admin: addr("192.0.2.7:9167"),
            comm_alarm_secs: 300,
            pool_low_percent: 10,
        }]
    );
    assert_eq!(c.failover[0].peer_config().validate(), Ok(()));

    // Which role is active, for each role and hot_standby_role.
    for (role, hs, active) in [
        ("primary", "active", Role::Primary),
        ("primary", "standby", Role::Secondary),
        ("secondary", "active", Role::Secondary),
        ("secondary", "standby", Role::Primary),
    ] {
        let text = rel(&format!(
            "mode = \"hot-standby\"\nhot_standby_role = \"{hs}\"\n"
        ))
        .replace("role = \"primary\"", &format!("role = \"{role}\""));
        let c = ok(&text);
        assert_eq!(
            c.failover[0].mode,
            Mode::HotStandby {
                active,
                reserve_percent: 5
            },
            "{role} {hs}"
        );
        assert_eq!(c.failover[0].peer_config().mode, c.failover[0].mode);
    }
}

#[test]
fn omitted_keys_take_the_defaults() {
    assert!(
        ok(BASE).failover.is_empty(),
        "no [[failover]]: no relationship"
    );

    let c = ok(&rel(""));
    assert_eq!(
        c.failover,
        vec![FailoverSettings {
            name: "a".into(),
            role: Role::Primary,
            mode: Mode::LoadBalance {
                primary_percent: 50
            },
            partner: addr("10.0.0.2:647"),
            listen: addr("0.0.0.0:647"),
            mclt_secs: 3600,
            switchover_secs: None,
            secret: None,
            tls: None,
            partner_admin_tls: None,
            scopes: vec![0],
            scope_names: vec!["lan".into()],
            max_clock_skew_secs: 60,
            max_response_delay_secs: 60,
            startup_secs: 10,
            max_unacked_updates: 64,
            partner_admin: addr("10.0.0.2:9167"),
            comm_alarm_secs: 300,
            pool_low_percent: 10,
        }]
    );
    let p = c.failover[0].peer_config();
    assert_eq!(p.validate(), Ok(()));
    assert_eq!(p.receive_timer_secs, 60);
    let l = c.failover[0].link_config();
    assert_eq!(
        (l.listen, l.secret),
        (Some(addr("0.0.0.0:647")), None::<Vec<u8>>)
    );

    let c = ok(&rel("").replace("role = \"primary\"", "role = \"secondary\""));
    assert_eq!(
        c.failover[0].mode,
        Mode::LoadBalance {
            primary_percent: 50
        },
        "50/50 from either side"
    );
}

#[test]
fn two_relationships_share_a_listener_and_split_the_scopes() {
    let c = ok(&doc("\
[[failover]]
name = \"one\"
role = \"secondary\"
partner = \"10.9.0.1\"
scopes = [\"voice\"]
[[failover]]
name = \"two\"
role = \"secondary\"
partner = \"10.9.0.2\"
scopes = [\"lan\"]
"));
    let names: Vec<&str> = c.failover.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["one", "two"]);
    assert_eq!(
        (c.failover[0].scopes.clone(), c.failover[1].scopes.clone()),
        (vec![1], vec![0])
    );
    assert_eq!(c.failover[0].listen, c.failover[1].listen);
}

#[test]
fn the_secret_file_is_read_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let with = |line: String| rel(&line);

    // Only the trailing line break goes; other bytes (even non-UTF-8) stay.
    let path = secret_file(d, "ok", b" a\xffb \n\n", 0o400);
    let c = ok(&with(format!("shared_secret_file = \"{path}\"\n")));
    assert_eq!(c.failover[0].secret.as_deref(), Some(&b" a\xffb "[..]));

    let path = secret_file(d, "open", b"secret\n", 0o640);
    assert_eq!(
        only(&with(format!("shared_secret_file = \"{path}\"\n"))),
        format!(
            "t.toml:17:22: failover.\"a\".shared_secret_file: {path} has mode 0640, so users \
             other than its owner can access the secret; run `chmod 600 {path}`"
        )
    );

    let path = secret_file(d, "empty", b"\r\n", 0o600);
    assert_eq!(
        only(&with(format!("shared_secret_file = \"{path}\"\n"))),
        format!(
            "t.toml:17:22: failover.\"a\".shared_secret_file: {path} is empty (a trailing line \
             break does not count); write the secret into it"
        )
    );

    let path = secret_file(d, "big", &[b'x'; 5000], 0o600);
    assert_eq!(
        only(&with(format!("shared_secret_file = \"{path}\"\n"))),
        format!(
            "t.toml:17:22: failover.\"a\".shared_secret_file: {path} is 5000 bytes; a \
             shared-secret file holds one secret (at most 4096 bytes)"
        )
    );

    let missing = d.join("missing").display().to_string();
    assert_eq!(
        only(&with(format!("shared_secret_file = \"{missing}\"\n"))),
        format!(
            "t.toml:17:22: failover.\"a\".shared_secret_file: cannot read {missing}: No such \
             file or directory (os error 2)"
        )
    );

    let dir_path = d.display().to_string();
    assert_eq!(
        only(&with(format!("shared_secret_file = \"{dir_path}\"\n"))),
        format!(
            "t.toml:17:22: failover.\"a\".shared_secret_file: {dir_path} is not a regular file"
        )
    );

    assert_eq!(
        only(&with("shared_secret_file = \"etc/secret\"\n".into())),
        "t.toml:17:22: failover.\"a\".shared_secret_file: `etc/secret` is not an absolute path \
         (like /etc/tandem/failover.secret)"
    );

    let path = secret_file(d, "both", b"x", 0o600);
    assert_eq!(
        only(&with(format!(
            "shared_secret_file = \"{path}\"\nshared_secret = \"y\"\n"
        ))),
        "t.toml:18:17: failover.\"a\".shared_secret: give either `shared_secret_file` or \
         `shared_secret`, not both"
    );
    assert_eq!(
        only(&with("shared_secret = \"\"\n".into())),
        "t.toml:17:17: failover.\"a\".shared_secret: the shared secret cannot be empty; leave \
         the key out to send unsigned messages"
    );
}

#[test]
fn the_secret_is_not_shown_in_debug_output() {
    let c = ok(&rel("shared_secret = \"hunter2-hunter2\"\n"));
    let shown = format!("{:?}", c.failover[0]);
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(
        shown.contains("secret: Some(\"<15 bytes, not shown>\")"),
        "{shown}"
    );
    assert!(shown.contains("name: \"a\""), "{shown}");
    assert!(!format!("{c:?}").contains("hunter2"));
}

#[test]
fn relationship_names_are_checked() {
    assert_eq!(
        only(&rel("").replace("name = \"a\"", "name = \"a/b\"")),
        "t.toml:13:8: failover[0].name: \"a/b\" contains \"/\"; a relationship name uses only \
         letters, digits, `.`, `_` and `-` (it names the relationship's state file)"
    );
    assert_eq!(
        only(&rel("").replace("name = \"a\"", "name = \"\"")),
        "t.toml:13:8: failover[0].name: a relationship name cannot be empty"
    );
    let long = "x".repeat(65);
    assert_eq!(
        only(&rel("").replace("name = \"a\"", &format!("name = \"{long}\""))),
        format!(
            "t.toml:13:8: failover[0].name: `{long}` is 65 characters long; a relationship \
             name has at most 64"
        )
    );
    let c = ok(&rel("").replace("name = \"a\"", &format!("name = \"{}\"", "x".repeat(64))));
    assert_eq!(c.failover[0].name.len(), 64);
    assert_eq!(
        only(&rel("").replace("name = \"a\"", "name = \"a\u{e9}\"")),
        "t.toml:13:8: failover[0].name: \"a\u{e9}\" contains \"\u{e9}\"; a relationship name \
         uses only letters, digits, `.`, `_` and `-` (it names the relationship's state file)"
    );

    // Unique across relationships.
    let text = doc("\
[[failover]]
name = \"a\"
role = \"primary\"
partner = \"10.0.0.2\"
scopes = [\"lan\"]
[[failover]]
name = \"a\"
role = \"primary\"
partner = \"10.0.0.3\"
scopes = [\"voice\"]
");
    assert_eq!(
        only(&text),
        "t.toml:18:8: failover.\"a\".name: failover relationship name \"a\" is already used \
         (line 13)"
    );
}

#[test]
fn missing_required_keys_point_at_the_header() {
    assert_eq!(
        rendered(&doc("[[failover]]\nmode = \"hot-standby\"\n")),
        vec![
            "t.toml:12:1: failover[0].name: missing required key `name` (the relationship's \
             name, the same on both servers)",
            "t.toml:12:1: failover[0].role: missing required key `role` (\"primary\" or \
             \"secondary\"; the partner has the other)",
            "t.toml:12:1: failover[0].partner: missing required key `partner` (the partner \
             server's IPv4 address)",
            "t.toml:12:1: failover[0].hot_standby_role: missing required key \
             `hot_standby_role` (with mode = \"hot-standby\": \"active\" or \"standby\", this \
             server's part)",
            "t.toml:12:1: failover[0].scopes: missing required key `scopes` (the names of the \
             scopes this relationship shares, like [\"lan\"])",
        ]
    );
    assert_eq!(
        only(&doc("[failover]\nname = \"a\"\n")),
        "t.toml:12:1: failover: expected an array of tables (write `[[failover]]`), found a table"
    );
}

#[test]
fn keys_of_the_other_mode_are_errors() {
    assert_eq!(
        rendered(&rel("hot_standby_role = \"active\"\nreserve_percent = 5\n")),
        vec![
            "t.toml:17:20: failover.\"a\".hot_standby_role: `hot_standby_role` applies only \
             with mode = \"hot-standby\"; this relationship's mode is \"load-balance\" (the \
             default)",
            "t.toml:18:19: failover.\"a\".reserve_percent: `reserve_percent` applies only with \
             mode = \"hot-standby\"; this relationship's mode is \"load-balance\" (the default)",
        ]
    );
    assert_eq!(
        only(&rel("mode = \"load-balance\"\nreserve_percent = 5\n")),
        "t.toml:18:19: failover.\"a\".reserve_percent: `reserve_percent` applies only with \
         mode = \"hot-standby\"; this relationship's mode is \"load-balance\""
    );
    assert_eq!(
        only(&rel(
            "mode = \"hot-standby\"\nhot_standby_role = \"active\"\nload_balance_percent = 60\n"
        )),
        "t.toml:19:24: failover.\"a\".load_balance_percent: `load_balance_percent` applies only \
         with mode = \"load-balance\"; this relationship's mode is \"hot-standby\""
    );
}

#[test]
fn bad_values_are_reported_by_key() {
    let cases: &[(&str, &str)] = &[
        (
            "mode = \"hot_standby\"\n",
            "t.toml:17:8: failover.\"a\".mode: `hot_standby` is not one of: load-balance, \
             hot-standby; did you mean `hot-standby`?",
        ),
        (
            "load_balance_percent = 101\n",
            "t.toml:17:24: failover.\"a\".load_balance_percent: 101 is out of range 0..=100",
        ),
        (
            "mode = \"hot-standby\"\nhot_standby_role = \"passive\"\n",
            "t.toml:18:20: failover.\"a\".hot_standby_role: `passive` is not one of: active, \
             standby",
        ),
        (
            "mode = \"hot-standby\"\nhot_standby_role = \"active\"\nreserve_percent = -1\n",
            "t.toml:19:19: failover.\"a\".reserve_percent: -1 is out of range 0..=100",
        ),
        (
            "partner_port = 0\n",
            "t.toml:17:16: failover.\"a\".partner_port: 0 is out of range 1..=65535",
        ),
        (
            "listen_port = 70000\n",
            "t.toml:17:15: failover.\"a\".listen_port: 70000 is out of range 1..=65535",
        ),
        (
            "listen = \"10.0.0.300\"\n",
            "t.toml:17:10: failover.\"a\".listen: `10.0.0.300` is not an IPv4 address (expected \
             a.b.c.d)",
        ),
        (
            "listen = \"224.0.0.1\"\n",
            "t.toml:17:10: failover.\"a\".listen: 224.0.0.1 is not an address to listen on: use \
             one of this server's addresses, or 0.0.0.0 for all",
        ),
        (
            "mclt = 0\n",
            "t.toml:17:8: failover.\"a\".mclt: must be longer than 0 seconds",
        ),
        (
            "mclt = \"31d\"\n",
            "t.toml:17:8: failover.\"a\".mclt: 2678400 seconds is longer than the maximum \
             2592000 (4w2d)",
        ),
        (
            "max_response_delay = \"2s\"\n",
            "t.toml:17:22: failover.\"a\".max_response_delay: must be at least 3s",
        ),
        (
            "max_clock_skew = \"2h\"\n",
            "t.toml:17:18: failover.\"a\".max_clock_skew: 7200 seconds is longer than the \
             maximum 3600 (1h)",
        ),
        (
            "startup_wait = \"soon\"\n",
            "t.toml:17:16: failover.\"a\".startup_wait: `soon` is not a duration: expected \
             seconds, or numbers with units s, m, h, d, w like \"45s\", \"30m\", \"8h\", \
             \"1d12h\"",
        ),
        (
            "max_unacked_updates = 0\n",
            "t.toml:17:23: failover.\"a\".max_unacked_updates: 0 is out of range 1..=1024",
        ),
        (
            "state_switchover_interval = true\n",
            "t.toml:17:29: failover.\"a\".state_switchover_interval: expected a duration \
             (seconds, or a string like \"8h\"), found a boolean",
        ),
        (
            "peer_port = 647\n",
            "t.toml:17:1: failover.\"a\".peer_port: unknown key `peer_port`; did you mean \
             `partner_port` (the partner's port) or `listen_port` (ours)?",
        ),
        (
            "max_unacked = 10\n",
            "t.toml:17:1: failover.\"a\".max_unacked: unknown key `max_unacked`; did you mean \
             `max_unacked_updates`?",
        ),
        (
            "ranges = []\n",
            "t.toml:17:1: failover.\"a\".ranges: unknown key `ranges`; `ranges` belongs in a \
             [[scope]]; a relationship lists its scopes by name in `scopes`",
        ),
    ];
    for (extra, want) in cases {
        assert_eq!(only(&rel(extra)), *want, "with {extra:?}");
    }
    assert_eq!(
        only(&rel("").replace("role = \"primary\"", "role = \"master\"")),
        "t.toml:14:8: failover.\"a\".role: `master` is not one of: primary, secondary"
    );
    assert_eq!(
        only(&rel("").replace("\"10.0.0.2\"", "\"255.255.255.255\"")),
        "t.toml:15:11: failover.\"a\".partner: 255.255.255.255 cannot be a partner's address: \
         use the partner server's unicast address"
    );
    assert_eq!(
        only(&format!("partner = \"10.0.0.2\"\n{BASE}")),
        "t.toml:1:1: partner: unknown key `partner`; `partner` belongs in a [[failover]]"
    );
}

#[test]
fn scopes_must_exist_and_belong_to_one_relationship() {
    assert_eq!(
        only(&rel("").replace("[\"lan\"]", "[\"lan\", \"wan\"]")),
        "t.toml:16:18: failover.\"a\".scopes[1]: no scope named \"wan\"; scopes are: \"lan\", \
         \"voice\""
    );
    assert_eq!(
        only(&rel("").replace("[\"lan\"]", "[]")),
        "t.toml:16:10: failover.\"a\".scopes: needs at least one scope: the scopes this \
         relationship shares with the partner"
    );
    assert_eq!(
        only(&rel("").replace("[\"lan\"]", "[\"lan\", \"lan\"]")),
        "t.toml:16:18: failover.\"a\".scopes[1]: scope \"lan\" is already listed (line 16)"
    );
    assert_eq!(
        only(&rel("").replace("[\"lan\"]", "[\"lan\", 3]")),
        "t.toml:16:18: failover.\"a\".scopes[1]: expected a string, found an integer"
    );
    let text = doc("\
[[failover]]
name = \"a\"
role = \"primary\"
partner = \"10.0.0.2\"
scopes = [\"lan\", \"voice\"]
[[failover]]
name = \"b\"
role = \"primary\"
partner = \"10.0.0.3\"
scopes = [\"voice\"]
");
    assert_eq!(
        only(&text),
        "t.toml:21:11: failover.\"b\".scopes[0]: scope \"voice\" is in failover relationship \
         \"a\" (line 16) and in failover relationship \"b\"; a scope belongs to at most one \
         relationship"
    );
}

#[test]
fn partners_are_unique_and_never_this_server() {
    let text = doc("\
[[failover]]
name = \"a\"
role = \"primary\"
partner = \"10.0.0.2\"
scopes = [\"lan\"]
[[failover]]
name = \"b\"
role = \"primary\"
partner = \"10.0.0.2\"
partner_port = 1647
scopes = [\"voice\"]
");
    assert_eq!(
        only(&text),
        "t.toml:20:11: failover.\"b\".partner: partner 10.0.0.2 is already the partner of \
         failover relationship \"a\" (line 15); relationships sharing a listener are told apart \
         by the partner's address, so each needs its own partner"
    );

    let own = rel("").replace("\"10.0.0.2\"", "\"10.0.0.1\"");
    assert_eq!(
        only(&own),
        "t.toml:15:11: failover.\"a\".partner: partner 10.0.0.1:647 is this server itself \
         (server.server_id with listen_port 647); give the other server's address"
    );
    // The server's own address on another port is a partner on the same host (a lab setup).
    let c = ok(&own.replace(
        "partner = \"10.0.0.1\"\n",
        "partner = \"10.0.0.1\"\npartner_port = 648\n",
    ));
    assert_eq!(c.failover[0].partner, addr("10.0.0.1:648"));
    assert_eq!(
        only(&rel("").replace("\"10.0.0.2\"", "\"127.0.0.1\"")),
        "t.toml:15:11: failover.\"a\".partner: partner 127.0.0.1:647 is this server itself \
         (this relationship's own listen 0.0.0.0:647); give the other server's address"
    );
    assert_eq!(
        only(&rel("listen = \"10.0.0.7\"\n").replace("\"10.0.0.2\"", "\"10.0.0.7\"")),
        "t.toml:15:11: failover.\"a\".partner: partner 10.0.0.7:647 is this server itself \
         (this relationship's own listen 10.0.0.7:647); give the other server's address"
    );
}

#[test]
fn listeners_on_one_port_share_an_address() {
    let text = doc("\
[[failover]]
name = \"a\"
role = \"primary\"
partner = \"10.0.0.2\"
scopes = [\"lan\"]
[[failover]]
name = \"b\"
role = \"primary\"
partner = \"10.0.0.3\"
listen = \"10.0.0.1\"
scopes = [\"voice\"]
");
    assert_eq!(
        only(&text),
        "t.toml:21:10: failover.\"b\".listen: listen 10.0.0.1:647 conflicts with listen \
         0.0.0.0:647 (the default) of failover relationship \"a\" (line 12); relationships on \
         one port share its listener, so give them the same listen address"
    );
    // Another port, or the same address: no conflict.
    ok(&text.replace(
        "listen = \"10.0.0.1\"\n",
        "listen = \"10.0.0.1\"\nlisten_port = 648\n",
    ));
    ok(&text.replace("listen = \"10.0.0.1\"\n", "listen = \"0.0.0.0\"\n"));

    assert_eq!(
        only(&rel("listen_port = 9167\n")),
        "t.toml:17:15: failover.\"a\".listen_port: listen 0.0.0.0:9167 (the default) takes the \
         port of server.admin_listen 127.0.0.1:9167; use another listen_port (the failover \
         port is 647)"
    );
    ok(&rel("listen = \"10.0.0.1\"\nlisten_port = 9167\n"));
}

#[test]
fn switchover_shorter_than_the_fence_needs_is_refused() {
    // 60 s + 2 x (60 s + 1 s) = 182 s.
    assert_eq!(
        only(&rel("state_switchover_interval = \"3m\"\n")),
        "t.toml:17:29: failover.\"a\".state_switchover_interval: 3m is too short: it must be \
         at least 3m2s (max_response_delay 1m + 2 x (max_clock_skew 1m + 1s)), or the \
         split-brain fence could act while the link is still up"
    );
    let c = ok(&rel("state_switchover_interval = 182\n"));
    assert_eq!(c.failover[0].switchover_secs, Some(182));
    // 10 s + 2 x (5 s + 1 s) = 22 s.
    assert_eq!(
        only(&rel(
            "max_response_delay = 10\nmax_clock_skew = 5\nstate_switchover_interval = 21\n"
        )),
        "t.toml:19:29: failover.\"a\".state_switchover_interval: 21s is too short: it must be \
         at least 22s (max_response_delay 10s + 2 x (max_clock_skew 5s + 1s)), or the \
         split-brain fence could act while the link is still up"
    );
    ok(&rel(
        "max_response_delay = 10\nmax_clock_skew = 5\nstate_switchover_interval = 22\n",
    ));
}

#[test]
fn example_load_balance_pair_parses() {
    let a = ok(include_str!("../../../../deploy/examples/pair-lb-a.toml"));
    let b = ok(include_str!("../../../../deploy/examples/pair-lb-b.toml"));
    assert_eq!((a.failover.len(), b.failover.len()), (1, 1));
    let (fa, fb) = (&a.failover[0], &b.failover[0]);
    assert_eq!(fa.name, fb.name);
    assert_eq!((fa.role, fb.role), (Role::Primary, Role::Secondary));
    assert_eq!(fa.mode, fb.mode, "both sides agree on the split");
    assert_eq!(
        fa.mode,
        Mode::LoadBalance {
            primary_percent: 50
        }
    );
    assert_eq!(fa.partner.ip(), b.settings.server_id);
    assert_eq!(fb.partner.ip(), a.settings.server_id);
    assert_eq!(fa.listen.ip(), a.settings.server_id);
    assert_eq!(fa.switchover_secs, fb.switchover_secs);
    assert_eq!(fa.mclt_secs, fb.mclt_secs);
    assert_eq!(fa.scope_names, ["office", "branch"]);
    assert_eq!(
        a.settings.scopes, b.settings.scopes,
        "the same scopes on both"
    );
    assert_eq!(fa.peer_config().validate(), Ok(()));
    assert_eq!(fb.peer_config().validate(), Ok(()));
}

#[test]
fn example_hot_standby_hub_and_spokes_parse() {
    let hub = ok(include_str!("../../../../deploy/examples/hub-standby.toml"));
    let spokes = [
        ok(include_str!("../../../../deploy/examples/spoke-1.toml")),
        ok(include_str!("../../../../deploy/examples/spoke-2.toml")),
    ];
    assert_eq!(hub.failover.len(), 2);
    assert_eq!(
        hub.failover[0].listen, hub.failover[1].listen,
        "one listener"
    );
    for (h, spoke) in hub.failover.iter().zip(&spokes) {
        assert_eq!(spoke.failover.len(), 1);
        let s = &spoke.failover[0];
        assert_eq!(h.name, s.name);
        assert_eq!((h.role, s.role), (Role::Secondary, Role::Primary));
        // The spoke (primary) is active and the hub the standby, from both sides.
        let mode = Mode::HotStandby {
            active: Role::Primary,
            reserve_percent: 5,
        };
        assert_eq!((h.mode, s.mode), (mode, mode));
        assert_eq!(h.partner.ip(), spoke.settings.server_id);
        assert_eq!(s.partner.ip(), hub.settings.server_id);
        assert_eq!(h.scope_names, s.scope_names);
        // The hub's copy of each shared scope equals the spoke's.
        for (&hi, &si) in h.scopes.iter().zip(&s.scopes) {
            assert_eq!(hub.settings.scopes[hi], spoke.settings.scopes[si]);
        }
        assert_eq!(h.peer_config().validate(), Ok(()));
        assert_eq!(s.peer_config().validate(), Ok(()));
    }
    assert_eq!(hub.failover[0].scope_names, ["site1-lan", "site1-voice"]);
    assert_eq!(hub.failover[1].scope_names, ["site2-lan"]);
}

/// `openssl ARGS` in `dir`; panics on failure.
fn openssl(dir: &Path, args: &[&str]) {
    let out = std::process::Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run openssl (Debian package openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn tls_keys_are_checked_and_the_files_read() {
    // Off (the default): no TLS, and TLS keys without `tls = "required"` are a mistake.
    let c = ok(&rel(""));
    assert_eq!(c.failover[0].tls, None);
    assert_eq!(
        only(&rel("tls_cert_file = \"/etc/tandem/a.pem\"\n")),
        "t.toml:17:17: failover.\"a\".tls_cert_file: `tls_cert_file` applies only with tls = \
         \"required\"; this relationship's link is plain TCP (tls = \"off\", the default)"
    );
    assert!(only(&rel("tls = \"maybe\"\n")).contains("failover.\"a\".tls"));
    // Required: every file and the name must be given.
    let errs = rendered(&rel("tls = \"required\"\n"));
    for k in [
        "tls_ca_file",
        "tls_cert_file",
        "tls_key_file",
        "tls_partner_name",
    ] {
        assert!(
            errs.iter().any(|e| e.contains(k)),
            "no error names the missing {k}: {errs:?}"
        );
    }

    // Real files: a CA and a certificate it issued.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    test_pki(d);
    let key = d.join("a.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let p = |f: &str| d.join(f).display().to_string();
    let keys = |cert: &str, key: &str| {
        format!(
            "tls = \"required\"\ntls_ca_file = \"{}\"\ntls_cert_file = \"{}\"\n\
             tls_key_file = \"{}\"\ntls_partner_name = \"b.test\"\n",
            p("ca.pem"),
            p(cert),
            p(key)
        )
    };
    let c = ok(&rel(&keys("a.pem", "a.key")));
    let tls = c.failover[0].tls.clone().expect("TLS settings");
    assert_eq!(tls.partner_name, "b.test");
    assert_eq!(tls.cert_file, d.join("a.pem"));
    assert_eq!(c.failover[0].link_config().tls, Some(tls));

    // A key others can read, a certificate file without a certificate, a key that is not the
    // certificate's: each a precise error at the `tls` key.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let e = only(&rel(&keys("a.pem", "a.key")));
    assert!(
        e.contains("has mode 0644") && e.contains("chmod 600"),
        "{e}"
    );
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let e = only(&rel(&keys("a.key", "a.key")));
    assert!(e.contains("holds no certificate"), "{e}");
    std::fs::copy(d.join("ca.key"), d.join("other.key")).unwrap();
    std::fs::set_permissions(d.join("other.key"), std::fs::Permissions::from_mode(0o600)).unwrap();
    let e = only(&rel(&keys("a.pem", "other.key")));
    assert!(
        e.contains("tls_cert_file") && e.contains("tls_key_file"),
        "{e}"
    );
    let e = only(&rel(&keys("a.pem", "missing.key")));
    assert!(e.contains("cannot read tls_key_file"), "{e}");
    // Not an absolute path.
    let e = only(&rel(
        "tls = \"required\"\ntls_ca_file = \"ca.pem\"\ntls_cert_file = \"/a\"\n\
         tls_key_file = \"/b\"\ntls_partner_name = \"b.test\"\n",
    ));
    assert!(e.contains("not an absolute path"), "{e}");
}

/// In `d`: a CA (`ca.pem`, `ca.key`) and a certificate it issued to `a.test` for server and
/// client authentication (`a.pem`, `a.key` mode 600).
fn test_pki(d: &Path) {
    openssl(
        d,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=t",
        ],
    );
    std::fs::write(
        d.join("ext"),
        "subjectAltName=DNS:a.test\nextendedKeyUsage=serverAuth,clientAuth\n",
    )
    .unwrap();
    openssl(
        d,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "a.key",
            "-out",
            "a.csr",
            "-subj",
            "/CN=a.test",
        ],
    );
    openssl(
        d,
        &[
            "x509",
            "-req",
            "-in",
            "a.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "a.pem",
            "-days",
            "2",
            "-extfile",
            "ext",
        ],
    );
    std::fs::set_permissions(d.join("a.key"), std::fs::Permissions::from_mode(0o600)).unwrap();
}

#[test]
fn partner_admin_tls_keys_are_checked_and_the_files_read() {
    // Off (the default): plain HTTP, and the keys without HTTPS are a mistake.
    let c = ok(&rel(""));
    assert_eq!(c.failover[0].partner_admin_tls, None);
    assert_eq!(
        only(&rel("partner_admin_ca_file = \"/etc/tandem/ca.pem\"\n")),
        "t.toml:17:25: failover.\"a\".partner_admin_ca_file: `partner_admin_ca_file` applies \
         only with partner_admin_tls = \"required\"; requests to the partner's admin endpoint go \
         over plain HTTP (partner_admin_tls = \"off\", the default)"
    );
    assert_eq!(
        only(&rel(
            "partner_admin_tls = \"off\"\npartner_admin_name = \"b.test\"\n"
        )),
        "t.toml:18:22: failover.\"a\".partner_admin_name: `partner_admin_name` applies only \
         with partner_admin_tls = \"required\"; requests to the partner's admin endpoint go over \
         plain HTTP"
    );
    let e = only(&rel("partner_admin_tls = \"yes\"\n"));
    assert!(
        e.starts_with("t.toml:17:21: failover.\"a\".partner_admin_tls: `yes` is not one of"),
        "{e}"
    );
    // Required without link TLS: the CA must be given.
    assert_eq!(
        only(&rel("partner_admin_tls = \"required\"\n")),
        "t.toml:12:1: failover.\"a\".partner_admin_ca_file: missing required key \
         `partner_admin_ca_file` (with partner_admin_tls = \"required\" and no tls_ca_file: the \
         PEM file of the CA that signed the partner's admin endpoint certificate)"
    );

    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    test_pki(d);
    let p = |f: &str| d.join(f).display().to_string();

    // The CA alone: no client certificate, the partner admin endpoint's IP address as the name.
    let c = ok(&rel(&format!(
        "partner_admin_tls = \"required\"\npartner_admin_ca_file = \"{}\"\n",
        p("ca.pem")
    )));
    let t = c.failover[0].partner_admin_tls.clone().expect("HTTPS");
    assert_eq!(t.ca_file, d.join("ca.pem"));
    assert_eq!(t.name, "10.0.0.2");
    assert_eq!(t.client, None);
    assert_eq!(
        (t.keys.ca, t.keys.name),
        ("partner_admin_ca_file", "partner_admin")
    );
    // `https://` in partner_admin asks for HTTPS by itself; its address is that of the name.
    let c = ok(&rel(&format!(
        "partner_admin = \"https://10.0.0.9:9443/\"\npartner_admin_ca_file = \"{}\"\n",
        p("ca.pem")
    )));
    assert_eq!(c.failover[0].partner_admin, addr("10.0.0.9:9443"));
    let t = c.failover[0].partner_admin_tls.clone().expect("HTTPS");
    assert_eq!(t.name, "10.0.0.9");
    let c = ok(&rel("partner_admin = \"http://10.0.0.9\"\n"));
    assert_eq!(c.failover[0].partner_admin, addr("10.0.0.9:9167"));
    assert_eq!(c.failover[0].partner_admin_tls, None);
    // ... and must agree with partner_admin_tls.
    assert_eq!(
        only(&rel(&format!(
            "partner_admin = \"https://10.0.0.9\"\npartner_admin_tls = \"off\"\n\
             partner_admin_ca_file = \"{}\"\n",
            p("ca.pem")
        ))),
        "t.toml:18:21: failover.\"a\".partner_admin_tls: partner_admin_tls = \"off\" contradicts \
         partner_admin, which begins with https://; give the address without a scheme, or make \
         the two agree"
    );
    let e = only(&rel(
        "partner_admin = \"http://10.0.0.9\"\npartner_admin_tls = \"required\"\n",
    ));
    assert!(
        e.starts_with("t.toml:18:21:") && e.contains("http://"),
        "{e}"
    );
    let e = only(&rel("partner_admin = \"https://dhcp2:9167\"\n"));
    assert!(
        e.starts_with(
            "t.toml:17:17: failover.\"a\".partner_admin: \"https://dhcp2:9167\" is not an address"
        ),
        "{e}"
    );

    // With link TLS, everything defaults to the link's keys.
    let link = format!(
        "tls = \"required\"\ntls_ca_file = \"{}\"\ntls_cert_file = \"{}\"\n\
         tls_key_file = \"{}\"\ntls_partner_name = \"b.test\"\n",
        p("ca.pem"),
        p("a.pem"),
        p("a.key")
    );
    let c = ok(&rel(&format!("{link}partner_admin_tls = \"required\"\n")));
    let t = c.failover[0].partner_admin_tls.clone().expect("HTTPS");
    assert_eq!(t.ca_file, d.join("ca.pem"));
    assert_eq!(t.name, "b.test");
    assert_eq!(t.client, Some((d.join("a.pem"), d.join("a.key"))));
    assert_eq!(
        (t.keys.ca, t.keys.cert, t.keys.key, t.keys.name),
        (
            "tls_ca_file",
            "tls_cert_file",
            "tls_key_file",
            "tls_partner_name"
        )
    );
    // Broken link TLS: its own errors only, none about the partner's admin endpoint.
    let errs = rendered(&rel(
        "tls = \"required\"\npartner_admin_tls = \"required\"\n",
    ));
    assert!(
        errs.iter().all(|e| !e.contains("partner_admin")),
        "{errs:#?}"
    );

    // Explicit keys override the link's.
    std::fs::copy(d.join("a.pem"), d.join("admin.pem")).unwrap();
    std::fs::copy(d.join("a.key"), d.join("admin.key")).unwrap();
    let explicit = |cert: &str, key: &str| {
        format!(
            "partner_admin_tls = \"required\"\npartner_admin_name = \"admin.b.test\"\n\
             partner_admin_cert_file = \"{}\"\npartner_admin_key_file = \"{}\"\n",
            p(cert),
            p(key)
        )
    };
    let c = ok(&rel(&format!(
        "{link}{}",
        explicit("admin.pem", "admin.key")
    )));
    let t = c.failover[0].partner_admin_tls.clone().expect("HTTPS");
    assert_eq!(t.name, "admin.b.test");
    assert_eq!(t.client, Some((d.join("admin.pem"), d.join("admin.key"))));
    assert_eq!(
        (t.keys.ca, t.keys.cert, t.keys.key, t.keys.name),
        (
            "tls_ca_file",
            "partner_admin_cert_file",
            "partner_admin_key_file",
            "partner_admin_name"
        )
    );

    // Each file mistake is an error at its own key (the relationship starts at line 12, the
    // link keys take lines 17-21, `partner_admin_tls` 22, the name 23, the certificate 24 and the
    // key 25).
    let with_ca = format!(
        "partner_admin_tls = \"required\"\npartner_admin_ca_file = \"{}\"\n",
        p("ca.pem")
    );
    let e = only(&rel(&format!(
        "{with_ca}partner_admin_cert_file = \"{}\"\n",
        p("admin.pem")
    )));
    assert_eq!(
        e,
        format!(
            "t.toml:19:27: failover.\"a\".partner_admin_cert_file: `partner_admin_cert_file` \
             needs `partner_admin_key_file` beside it: the client certificate and its private key \
             go together"
        )
    );
    let e = only(&rel(&format!(
        "{with_ca}partner_admin_key_file = \"{}\"\n",
        p("admin.key")
    )));
    assert!(
        e.starts_with("t.toml:19:26: failover.\"a\".partner_admin_key_file: `partner_admin_key_file` needs `partner_admin_cert_file`"),
        "{e}"
    );
    std::fs::set_permissions(d.join("admin.key"), std::fs::Permissions::from_mode(0o640)).unwrap();
    let e = only(&rel(&format!(
        "{link}{}",
        explicit("admin.pem", "admin.key")
    )));
    assert_eq!(
        e,
        format!(
            "t.toml:25:26: failover.\"a\".partner_admin_key_file: partner_admin_key_file {k}: \
             mode 0640 lets users other than its owner access the private key; run `chmod 600 {k}`",
            k = p("admin.key")
        )
    );
    std::fs::set_permissions(d.join("admin.key"), std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::copy(d.join("ca.key"), d.join("other.key")).unwrap();
    std::fs::set_permissions(d.join("other.key"), std::fs::Permissions::from_mode(0o600)).unwrap();
    let e = only(&rel(&format!(
        "{link}{}",
        explicit("admin.pem", "other.key")
    )));
    assert_eq!(
        e,
        format!(
            "t.toml:25:26: failover.\"a\".partner_admin_key_file: partner_admin_key_file {} is \
             not the private key of the certificate in partner_admin_cert_file {}",
            p("other.key"),
            p("admin.pem")
        )
    );
    let e = only(&rel(&format!(
        "{link}{}",
        explicit("admin.key", "admin.key")
    )));
    assert!(
        e.starts_with("t.toml:24:27: failover.\"a\".partner_admin_cert_file:")
            && e.contains("holds no certificate"),
        "{e}"
    );
    let e = only(&rel(&format!(
        "partner_admin_tls = \"required\"\npartner_admin_ca_file = \"{}\"\n",
        p("missing.pem")
    )));
    assert!(
        e.starts_with("t.toml:18:25: failover.\"a\".partner_admin_ca_file: partner_admin_ca_file")
            && e.contains("cannot read"),
        "{e}"
    );
    let e = only(&rel(&format!(
        "partner_admin_tls = \"required\"\npartner_admin_ca_file = \"{}\"\n",
        p("a.key")
    )));
    assert!(e.contains("holds no certificate"), "{e}");
    let e = only(&rel(
        "partner_admin_tls = \"required\"\npartner_admin_ca_file = \"ca.pem\"\n",
    ));
    assert!(
        e.starts_with(
            "t.toml:18:25: failover.\"a\".partner_admin_ca_file: `ca.pem` is not an absolute path"
        ),
        "{e}"
    );
    let e = only(&rel(&format!(
        "{with_ca}partner_admin_name = \"not a name!\"\n"
    )));
    assert_eq!(
        e,
        "t.toml:19:22: failover.\"a\".partner_admin_name: partner_admin_name \"not a name!\" is \
         not a DNS name or IP address"
    );
}
