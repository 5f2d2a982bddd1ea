//! rclone.conf compatibility with real rclone (Debian's 1.60): the parser agrees
//! with `rclone config dump` on tricky files, rejects what rclone rejects, and
//! encrypted configs work in both directions.

use std::collections::BTreeSet;

use crate::support::rclone::config_dump;
use scribe_mover::config::{ConfigFile, Env, encrypt, parse_text};

const TRICKY: &[&str] = &[
    "host = example.com\n; comment\n# another\n[a]\ntype = s3\nk = v  # not a comment\nb = `  spaced  `\nt = \"\"\"trip\"\"\"\n\
     d = \"double\"\ns = 'single'\ne = %(host)s/x/%(missing)s\nself = %(k)s!\ncolon: value:with=stuff\nempty =\n\
     [a.b]\nregion = r2\n[a]\nk2 = merged\nk = last wins\n",
    "\u{feff}[ spaced name ]\r\n  type = local\r\n\tKey = Upper\r\nkey = lower\r\n\r\n[other]\r\nurl=http://h:9000/p?q=1\r\n",
    "[x]\nlone = `\nq = \"\"\"\"\"\nnested = `a`b`\ntail = `a` rest\ntq = \"\"\"a\"\"\"b\nback = a\\nb\n[empty]\n",
];

fn compare_with_rclone(text: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rclone.conf");
    std::fs::write(&path, text).unwrap();
    let dump = config_dump(&path, &[]).unwrap_or_else(|e| panic!("rclone rejected {text:?}: {e}"));
    let ours = ConfigFile::parse(text, "t").unwrap();
    let dump = dump.as_object().unwrap();
    let mut their_sections: BTreeSet<&str> = dump.keys().map(String::as_str).collect();
    their_sections.remove("DEFAULT");
    let our_sections: BTreeSet<&str> = ours.section_names().iter().map(String::as_str).collect();
    assert_eq!(our_sections, their_sections, "sections of {text:?}");
    for (section, entries) in dump {
        let entries = entries.as_object().unwrap();
        let our_keys: BTreeSet<&str> = ours.keys(section).collect();
        let their_keys: BTreeSet<&str> = entries.keys().map(String::as_str).collect();
        assert_eq!(our_keys, their_keys, "keys of [{section}] in {text:?}");
        for (key, value) in entries {
            let ours = ours.get(section, key).unwrap_or_default();
            assert_eq!(
                ours,
                value.as_str().unwrap(),
                "[{section}] {key} in {text:?}"
            );
        }
    }
}

#[test]
fn parser_agrees_with_rclone_config_dump() {
    for text in TRICKY {
        compare_with_rclone(text);
    }
}

#[test]
fn parser_rejects_what_rclone_rejects() {
    for text in [
        "[a]\ntype = s3\n[y] # c\n",
        "[]\nk = v\n",
        "[a]\njust words\n",
        "[a]\n= v\n",
        "[a]\n: v\n",
        "[a]\nk = `open\n",
        "[a]\nk = \"\"\"abc\n",
    ] {
        assert!(ConfigFile::parse(text, "t").is_err(), "we accept {text:?}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rclone.conf");
        std::fs::write(&path, text).unwrap();
        assert!(config_dump(&path, &[]).is_err(), "rclone accepts {text:?}");
    }
}

#[test]
fn decrypts_a_config_encrypted_by_rclone_1_60() {
    // Made with `rclone config` → "s) Set configuration password", password "hunter2".
    let text = include_str!("support/fixtures/rclone-1.60-encrypted.conf");
    let f = parse_text(
        text,
        "fixture",
        &Env::from_pairs([("RCLONE_CONFIG_PASS", "hunter2")]),
    )
    .unwrap();
    assert_eq!(f.get("a", "type").as_deref(), Some("s3"));
    assert_eq!(f.get("a", "colon").as_deref(), Some("value:with=stuff"));
    assert_eq!(f.get("a", "e").as_deref(), Some("example.com/x/"));
    assert_eq!(f.get("a.b", "region").as_deref(), Some("r2"));
    let wrong = parse_text(
        text,
        "fixture",
        &Env::from_pairs([("RCLONE_CONFIG_PASS", "hunter3")]),
    )
    .unwrap_err();
    assert!(
        wrong.to_string().contains("RCLONE_CONFIG_PASS is wrong"),
        "{wrong}"
    );
}

#[test]
fn rclone_decrypts_a_config_we_encrypt() {
    let plain = "[enc]\ntype = s3\nregion = eu-west-3\nendpoint = http://127.0.0.1:9\n";
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rclone.conf");
    std::fs::write(&path, encrypt(plain, "pässwörd ﬁ", [42; 24]).unwrap()).unwrap();
    let dump = config_dump(&path, &[("RCLONE_CONFIG_PASS", "pässwörd ﬁ")]).unwrap();
    assert_eq!(dump["enc"]["region"], "eu-west-3");
    assert_eq!(dump["enc"]["type"], "s3");
    assert!(config_dump(&path, &[("RCLONE_CONFIG_PASS", "nope")]).is_err());
}
