//! Tests of the rclone.conf grammar (reference/rclone.md, "rclone.conf as rclone parses it").

use super::*;

fn parse(text: &str) -> ConfigFile {
    ConfigFile::parse(text, "test.conf").expect("parses")
}

fn parse_err(text: &str) -> (usize, String) {
    match ConfigFile::parse(text, "test.conf").expect_err("must fail") {
        ConfigError::Parse {
            line,
            message,
            origin,
        } => {
            assert_eq!(origin, "test.conf");
            (line, message)
        }
        other => panic!("unexpected error {other:?}"),
    }
}

#[test]
fn basic_section_and_keys() {
    let f = parse("[s3]\ntype = s3\nregion = eu-west-1\n");
    assert_eq!(f.get("s3", "type").as_deref(), Some("s3"));
    assert_eq!(f.get("s3", "region").as_deref(), Some("eu-west-1"));
    assert_eq!(f.section_names(), ["s3"]);
}

#[test]
fn bom_crlf_indentation_and_blank_lines_are_tolerated() {
    let f = parse("\u{feff}[a]\r\n\r\n   type = s3  \r\n\tregion=x\r\n");
    assert_eq!(f.get("a", "type").as_deref(), Some("s3"));
    assert_eq!(f.get("a", "region").as_deref(), Some("x"));
}

#[test]
fn comment_lines_are_skipped_but_inline_comments_are_part_of_the_value() {
    let f = parse(
        "# top\n; also\n[a]\n  # indented comment\nk = v  # not a comment\nj = v ; nor this\n",
    );
    assert_eq!(f.get("a", "k").as_deref(), Some("v  # not a comment"));
    assert_eq!(f.get("a", "j").as_deref(), Some("v ; nor this"));
    assert_eq!(f.keys("a").collect::<Vec<_>>(), ["j", "k"]);
}

#[test]
fn section_names_are_trimmed() {
    let f = parse("[  my remote  ]\ntype = local\n");
    assert!(f.has_section("my remote"));
    assert_eq!(f.get("my remote", "type").as_deref(), Some("local"));
}

#[test]
fn section_header_with_trailing_comment_is_an_error_naming_the_line() {
    let (line, message) = parse_err("[a]\ntype = s3\n[y] # c\n");
    assert_eq!(line, 3);
    assert!(message.contains("[y] # c"), "{message}");
}

#[test]
fn empty_section_name_is_an_error() {
    let (line, message) = parse_err("\n[ ]\n");
    assert_eq!(line, 2);
    assert!(message.contains("empty section name"), "{message}");
    assert_eq!(parse_err("[]").0, 1);
}

#[test]
fn keys_before_any_section_go_to_default_without_inheritance() {
    let f = parse("region = us-west-2\n[a]\ntype = s3\n");
    assert_eq!(
        f.get(DEFAULT_SECTION, "region").as_deref(),
        Some("us-west-2")
    );
    assert_eq!(f.get("a", "region"), None);
    assert_eq!(
        f.section_names(),
        ["a"],
        "DEFAULT is not listed as a remote"
    );
}

#[test]
fn split_at_first_equals_or_colon() {
    let f = parse("[a]\nendpoint: http://h:9000\nurl = a=b:c\nk:v=w\n");
    assert_eq!(f.get("a", "endpoint").as_deref(), Some("http://h:9000"));
    assert_eq!(f.get("a", "url").as_deref(), Some("a=b:c"));
    assert_eq!(f.get("a", "k").as_deref(), Some("v=w"));
}

#[test]
fn line_without_separator_or_with_separator_first_is_an_error() {
    let (line, message) = parse_err("[a]\ntype = s3\njust words\n");
    assert_eq!(line, 3);
    assert!(message.contains("just words"), "{message}");
    let (line, message) = parse_err("[a]\n= value\n");
    assert_eq!(line, 2);
    assert!(message.contains("missing key"), "{message}");
    assert_eq!(parse_err("[a]\n: value\n").0, 2);
}

#[test]
fn values_are_unwrapped_only_from_backticks_and_triple_quotes() {
    let f = parse(concat!(
        "[a]\n",
        "b = `  spaced # value  `\n",
        "t = \"\"\"quoted \"inner\" \"\"\"\n",
        "d = \"double\"\n",
        "s = 'single'\n",
        "lone = `\n",
        "empty = ``\n",
        "three = \"\"\"\n",
        "five = \"\"\"\"\"\n",
    ));
    assert_eq!(f.get("a", "b").as_deref(), Some("  spaced # value  "));
    assert_eq!(f.get("a", "t").as_deref(), Some("quoted \"inner\" "));
    assert_eq!(f.get("a", "d").as_deref(), Some("\"double\""));
    assert_eq!(f.get("a", "s").as_deref(), Some("'single'"));
    assert_eq!(f.get("a", "lone").as_deref(), Some("`"));
    assert_eq!(f.get("a", "empty"), None);
    assert_eq!(f.get("a", "three").as_deref(), Some("\"\"\""));
    assert_eq!(f.get("a", "five").as_deref(), Some("\"\"\"\"\""));
}

#[test]
fn quoted_values_end_at_the_last_closing_quote_and_drop_the_rest() {
    let f = parse("[a]\nx = `a`b\ny = `a` tail\nz = `x`y`\nw = \"\"\"a\"\"\"b\n");
    assert_eq!(f.get("a", "x").as_deref(), Some("a"));
    assert_eq!(f.get("a", "y").as_deref(), Some("a"));
    assert_eq!(f.get("a", "z").as_deref(), Some("x`y"));
    assert_eq!(f.get("a", "w").as_deref(), Some("a"));
}

#[test]
fn unterminated_quoted_value_is_an_error() {
    let (line, message) = parse_err("[a]\nok = 1\nk = `open\n");
    assert_eq!(line, 3);
    assert!(message.contains("never closes"), "{message}");
    assert_eq!(parse_err("[a]\nk = \"\"\"abc\n").0, 2);
}

#[test]
fn no_escape_sequences() {
    let f = parse("[a]\nk = a\\nb\\\\\n");
    assert_eq!(f.get("a", "k").as_deref(), Some("a\\nb\\\\"));
}

#[test]
fn keys_and_sections_are_case_sensitive() {
    let f = parse("[A]\nKey = 1\n[a]\nkey = 2\n");
    assert_eq!(f.get("A", "Key").as_deref(), Some("1"));
    assert_eq!(f.get("A", "key"), None);
    assert_eq!(f.get("a", "key").as_deref(), Some("2"));
    assert_eq!(f.section_names(), ["A", "a"]);
}

#[test]
fn duplicate_key_last_wins_and_repeated_sections_merge() {
    let f = parse("[a]\nk = 1\nx = keep\n[b]\ntype = s3\n[a]\nk = 2\n");
    assert_eq!(f.get("a", "k").as_deref(), Some("2"));
    assert_eq!(f.get("a", "x").as_deref(), Some("keep"));
    assert_eq!(f.section_names(), ["a", "b"]);
}

#[test]
fn empty_value_counts_as_unset() {
    let f = parse("[a]\nregion =\nquoted = ``\n");
    assert_eq!(f.get("a", "region"), None);
    assert_eq!(f.get("a", "quoted"), None);
    assert_eq!(f.keys("a").count(), 2, "the keys are still present");
}

#[test]
fn empty_section_still_exists() {
    let f = parse("[empty]\n[other]\ntype = s3\n");
    assert!(f.has_section("empty"));
    assert_eq!(f.section_names(), ["empty", "other"]);
}

#[test]
fn interpolation_from_default_then_same_section() {
    let f = parse(concat!(
        "host = example.com\n",
        "url = https://%(host)s\n",
        "[a]\n",
        "bucket = data\n",
        "endpoint = %(url)s/%(bucket)s/%(missing)s\n",
        "twice = %(host)s,%(host)s\n",
        "[b]\n",
        "host = local\n",
        "e = %(host)s\n",
    ));
    assert_eq!(
        f.get("a", "endpoint").as_deref(),
        Some("https://example.com/data/")
    );
    assert_eq!(
        f.get("a", "twice").as_deref(),
        Some("example.com,example.com")
    );
    assert_eq!(
        f.get("b", "e").as_deref(),
        Some("example.com"),
        "DEFAULT wins over the same section"
    );
}

#[test]
fn self_referencing_interpolation_terminates() {
    let f = parse("a = x%(a)s\n[s]\nb = %(b)s\nc = %(a)s\n");
    assert!(f.get("s", "c").is_some());
    // rclone substitutes the reference with itself until its round limit runs out.
    assert_eq!(f.get("s", "b").as_deref(), Some("%(b)s"));
}

#[test]
fn percent_without_reference_is_literal() {
    let f = parse("[a]\nk = 100% (not %(a reference)\n");
    assert_eq!(f.get("a", "k").as_deref(), Some("100% (not %(a reference)"));
}

#[test]
fn dotted_sections_fall_back_to_their_parent() {
    let f = parse(
        "[a]\ntype = s3\nregion = r1\n[a.b]\nregion = r2\n[a.b.c]\nendpoint = e\n[x.y]\nk = v\n",
    );
    assert_eq!(f.get("a.b", "type").as_deref(), Some("s3"));
    assert_eq!(f.get("a.b", "region").as_deref(), Some("r2"));
    assert_eq!(f.get("a.b.c", "region").as_deref(), Some("r2"));
    assert_eq!(f.get("a.b.c", "type").as_deref(), Some("s3"));
    assert_eq!(
        f.get("x.y", "type"),
        None,
        "missing parent section means no value"
    );
}

#[test]
fn unknown_section_has_no_values() {
    let f = parse("[a]\nk = v\n");
    assert!(!f.has_section("b"));
    assert_eq!(f.get("b", "k"), None);
}
