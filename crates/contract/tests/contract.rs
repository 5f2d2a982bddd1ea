//! Pins every name and code of the mover contract: a failing assertion here means the
//! controller and movers already deployed would disagree — change it only deliberately.

use scribe_contract::{
    Direction, Exit, MAX_SUMMARY_JSON_BYTES, Outcome, SUMMARY_PREFIX, Summary, SummaryReport, env,
    paths, strip_summary_prefix,
};

#[test]
fn environment_variable_names_are_pinned() {
    let pinned = [
        (env::DIRECTION, "DIRECTION"),
        (env::RCLONE_CONFIG, "RCLONE_CONFIG"),
        (env::RCLONE_CONFIG_SECTION, "RCLONE_CONFIG_SECTION"),
        (env::RCLONE_DEST_PATH, "RCLONE_DEST_PATH"),
        (env::MOUNT_PATH, "MOUNT_PATH"),
        (env::CUSTOM_CA, "CUSTOM_CA"),
        (env::TERMINATION_LOG, "TERMINATION_LOG"),
        (env::SCRIBE_TRANSFERS, "SCRIBE_TRANSFERS"),
        (env::SCRIBE_CHECKSUM, "SCRIBE_CHECKSUM"),
        (env::SCRIBE_DRY_RUN, "SCRIBE_DRY_RUN"),
        (env::SCRIBE_ALLOW_EMPTY_SOURCE, "SCRIBE_ALLOW_EMPTY_SOURCE"),
        (env::SCRIBE_LOG_FORMAT, "SCRIBE_LOG_FORMAT"),
        (env::SCRIBE_LOG_LEVEL, "SCRIBE_LOG_LEVEL"),
        (env::SCRIBE_PREFIX, "SCRIBE_"),
        (env::RCLONE_PREFIX, "RCLONE_"),
    ];
    for (actual, expected) in pinned {
        assert_eq!(actual, expected);
    }
}

#[test]
fn mount_paths_are_pinned() {
    assert_eq!(paths::DATA, "/data");
    assert_eq!(paths::RCLONE_CONFIG_DIR, "/rclone-config");
    assert_eq!(paths::CUSTOM_CA_DIR, "/custom-ca");
    assert_eq!(paths::TERMINATION_LOG, "/dev/termination-log");
}

#[test]
fn exit_codes_are_pinned_and_round_trip() {
    let pinned = [
        (Exit::Ok, 0u8),
        (Exit::Internal, 1),
        (Exit::Transient, 75),
        (Exit::Config, 78),
    ];
    assert_eq!(Exit::ALL.len(), pinned.len());
    for (exit, code) in pinned {
        assert_eq!(exit.code(), code);
        assert_eq!(exit.code_i32(), i32::from(code));
        assert_eq!(Exit::from_code(i32::from(code)), Some(exit));
    }
    for other in [-1, 2, 74, 77, 137, 143, 256 + 78] {
        assert_eq!(Exit::from_code(other), None, "{other}");
    }
}

#[test]
fn directions_are_pinned() {
    for (d, s) in [
        (Direction::Source, "source"),
        (Direction::Destination, "destination"),
    ] {
        assert_eq!(d.as_str(), s);
        assert_eq!(d.to_string(), s);
        assert_eq!(s.parse::<Direction>(), Ok(d));
        assert_eq!(serde_json::to_string(&d).unwrap(), format!("\"{s}\""));
    }
    assert!("Source".parse::<Direction>().is_err());
    assert!("".parse::<Direction>().is_err());
}

#[test]
fn summary_names_are_pinned() {
    assert_eq!(SUMMARY_PREFIX, "SCRIBE_SUMMARY");
    assert_eq!(MAX_SUMMARY_JSON_BYTES, 3584);
    for (o, s) in [
        (Outcome::Successful, "\"Successful\""),
        (Outcome::Failed, "\"Failed\""),
        (Outcome::Interrupted, "\"Interrupted\""),
    ] {
        assert_eq!(serde_json::to_string(&o).unwrap(), s);
    }
    let s = Summary {
        files_checked: 1,
        bytes_checked: 2,
        files_transferred: 3,
        bytes_transferred: 4,
        files_deleted: 5,
        files_skipped_changing: 6,
        duration_seconds: 7.5,
        error: Some("e".into()),
        ..Summary::new(Direction::Destination)
    };
    assert_eq!(
        serde_json::to_string(&s).unwrap(),
        "{\"result\":\"Successful\",\"direction\":\"destination\",\"filesChecked\":1,\"bytesChecked\":2,\
         \"filesTransferred\":3,\"bytesTransferred\":4,\"filesDeleted\":5,\"filesSkippedChanging\":6,\
         \"durationSeconds\":7.5,\"error\":\"e\"}"
    );
    let ok = serde_json::to_string(&Summary::new(Direction::Source)).unwrap();
    assert!(!ok.contains("error"), "no error key on success: {ok}");
}

#[test]
fn summary_line_round_trips() {
    let s = Summary {
        result: Outcome::Interrupted,
        files_checked: 10,
        bytes_checked: 2048,
        files_transferred: 3,
        bytes_transferred: 1024,
        files_deleted: 1,
        files_skipped_changing: 2,
        duration_seconds: 6.5,
        error: Some("sync interrupted".into()),
        ..Summary::new(Direction::Source)
    };
    let line = format!("{SUMMARY_PREFIX} {}", serde_json::to_string(&s).unwrap());
    let json = strip_summary_prefix(&line).expect("prefixed");
    let back: Summary = serde_json::from_str(json).unwrap();
    assert_eq!(back, s);
    let report: SummaryReport = serde_json::from_str(json).unwrap();
    assert_eq!(report, SummaryReport::from(s));

    assert_eq!(strip_summary_prefix("  SCRIBE_SUMMARY {}  "), Some("{}"));
    assert_eq!(strip_summary_prefix("SCRIBE_SUMMARYX {}"), None);
    assert_eq!(strip_summary_prefix("progress 10%"), None);
}

#[test]
fn report_reads_partial_summaries() {
    let r: SummaryReport =
        serde_json::from_str(r#"{"result":"Failed","filesTransferred":2,"error":"boom"}"#).unwrap();
    assert_eq!(r.result, Some(Outcome::Failed));
    assert_eq!(r.direction, None);
    assert_eq!(r.files_transferred, 2);
    assert_eq!(r.error.as_deref(), Some("boom"));
    let empty: SummaryReport = serde_json::from_str("{}").unwrap();
    assert_eq!(empty, SummaryReport::default());
}
