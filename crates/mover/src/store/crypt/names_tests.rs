//! Golden names printed by rclone 1.60.1 (`rclone cryptdecode --reverse`) for
//! password `potato` (and password2 `sausage` where said).

use super::*;

const NAMES: [&str; 7] = [
    "a",
    "hello.txt",
    "dir/sub/file name.txt",
    "0123456789abcdefXYZ",
    "Ünïcødé-ファイル!名.txt",
    "ab!c",
    "£¥§ÿ",
];

fn cipher(password2: &str, mode: NameMode, enc: NameEncoding, dirs: bool) -> NameCipher {
    NameCipher::new(&Keys::derive("potato", password2), mode, enc, dirs)
}

fn check(c: &NameCipher, want: [&str; 7]) {
    for (plain, want) in NAMES.iter().zip(want) {
        assert_eq!(c.encrypt_file(plain).unwrap(), want, "encrypting {plain:?}");
        assert_eq!(c.decrypt_file(want).unwrap(), *plain, "decrypting {want:?}");
    }
}

#[test]
fn standard_base32_matches_rclone() {
    check(
        &cipher("", NameMode::Standard, NameEncoding::Base32, true),
        [
            "s83tjtk0e6aogosoteqti6f544",
            "oqt3pleorvo0jmt050a7sstgpo",
            "5o7oa7mpg298hp1opgjknlqag0/iad1nh9qjer6mqhhhtlcf27m18/dcnf48vcidci7gkljealkha5a0",
            "0t6bm4niack3lmvcknn3fnjduggfopt1jv7flhbv4lblvsvrdr8g",
            "lqecuje6ih2dcdooeq03jnf6cb2lq03fvrkfl9kn1lv9pbj89nkcclpbcm03tsm9dcp5e1ci3htbq",
            "2n6ijoiq7ek0683ug8a6uec5ck",
            "ld0kglsc7iui13bbvh6p5evl0k",
        ],
    );
}

#[test]
fn password2_is_the_salt() {
    check(
        &cipher("sausage", NameMode::Standard, NameEncoding::Base32, true),
        [
            "0pafnuo05kiri5rkftm2fsb7b4",
            "dvhjn229ej4s3k94n1mf5une30",
            "fiooieinr1qr8o3th3fofaipek/sodtmigcit30440p0snsrujo5o/62roo3s9peb383g9gnm6cp95cg",
            "6ktfe8jil66o27kv09avs2kv9rpe983j6oq4ktgc8fdnsobd4l7g",
            "69jorfjlrbbld1un513jnt6d65k6bsflfd104cpchoascsck2vuunmaah55ebej9rm648fvv76er4",
            "b7mn3gmrd59q8mra3tkg8rpeeg",
            "40dc1s5ifc0i4fb32834km3htc",
        ],
    );
}

#[test]
fn standard_base64_matches_rclone() {
    check(
        &cipher("", NameMode::Standard, NameEncoding::Base64, true),
        [
            "4gfZ9oBxlYhjmOu12RnlIQ",
            "xro81djf8AnboCgUfnOwzg",
            "Lg-FHtmAkojkOMwnS9dKgA/kpobxTqbtmtqMY9qx4j2Cg/ay7yI-yTWSPClZuVWkVFUA",
            "B0y7EvJTKDrb7KXuN95t9CD8Z6GfzvrFfyVXX_P7btE",
            "rpzPTcaURNY3GHaAOd3mYsVdAG_-6Pqmlw1-nK5oTejGVytlgD7yyWsyVwWSHHq9",
            "Fc0p4lo7qAMgfoIUbzmFZQ",
            "q0FIV4w8vSCNa_xNkrv1BQ",
        ],
    );
}

#[test]
fn obfuscate_matches_rclone() {
    check(
        &cipher("", NameMode::Obfuscate, NameEncoding::Base32, true),
        [
            "97.u",
            "162.rovvy.DHD",
            "63.otC/74.OQx/239.ruxq zmyq.FJF",
            "109.8901234567hijklmefg",
            "207.ësþh§iø-ヸツデ『!!吰.yCy",
            "71.tu!!v",
            "238.ÑÓÕÍ",
        ],
    );
}

#[test]
fn directory_names_can_stay_plain() {
    let c = cipher("", NameMode::Standard, NameEncoding::Base32, false);
    assert_eq!(
        c.encrypt_file("dir/sub/file name.txt").unwrap(),
        "dir/sub/dcnf48vcidci7gkljealkha5a0"
    );
    assert_eq!(c.encrypt_dir("dir/sub").unwrap(), "dir/sub");
    assert_eq!(
        c.decrypt_file("dir/sub/dcnf48vcidci7gkljealkha5a0")
            .unwrap(),
        "dir/sub/file name.txt"
    );
}

#[test]
fn off_appends_bin_to_files_only() {
    let c = cipher("", NameMode::Off, NameEncoding::Base32, true);
    assert_eq!(c.encrypt_file("dir/a b.txt").unwrap(), "dir/a b.txt.bin");
    assert_eq!(c.encrypt_dir("dir/sub").unwrap(), "dir/sub");
    assert_eq!(c.decrypt_file("dir/a b.txt.bin").unwrap(), "dir/a b.txt");
    assert!(c.decrypt_file("dir/a b.txt").is_err());
    assert!(c.decrypt_file(".bin").is_err());
}

#[test]
fn directories_encrypt_segment_by_segment() {
    let c = cipher("", NameMode::Standard, NameEncoding::Base32, true);
    assert_eq!(
        c.encrypt_dir("dir/sub").unwrap(),
        "5o7oa7mpg298hp1opgjknlqag0/iad1nh9qjer6mqhhhtlcf27m18"
    );
    assert_eq!(
        c.decrypt_dir("5o7oa7mpg298hp1opgjknlqag0/iad1nh9qjer6mqhhhtlcf27m18")
            .unwrap(),
        "dir/sub"
    );
}

#[test]
fn foreign_names_do_not_decrypt() {
    let c = cipher("", NameMode::Standard, NameEncoding::Base32, true);
    for bad in [
        "hello.txt",
        "abc",
        "s83tjtk0e6aogosoteqti6f54",
        "s83tjtk0e6aogosoteqti6f5w4",
    ] {
        assert!(c.decrypt_file(bad).is_err(), "{bad}");
    }
    let other = NameCipher::new(
        &Keys::derive("wrong", ""),
        NameMode::Standard,
        NameEncoding::Base32,
        true,
    );
    // Another password's name almost never unpads cleanly.
    assert!(other.decrypt_file("oqt3pleorvo0jmt050a7sstgpo").is_err());
    let obf = cipher("", NameMode::Obfuscate, NameEncoding::Base32, true);
    assert!(obf.decrypt_file("no-number-here").is_err());
    assert_eq!(obf.decrypt_file("!.raw").unwrap(), "raw");
}

#[test]
fn base32hex_round_trips_every_length() {
    for n in 0..40usize {
        let data: Vec<u8> = (0..n).map(|i| (i * 37 + 5) as u8).collect();
        let s = base32hex_encode(&data);
        assert_eq!(base32hex_decode(&s).unwrap(), data, "{n}");
        assert_eq!(base32hex_decode(&s.to_uppercase()).unwrap(), data, "{n}");
    }
}

#[test]
fn version_suffixes_stay_outside_the_encrypted_name_like_rclone() {
    let std = cipher("", NameMode::Standard, NameEncoding::Base32, true);
    let obf = cipher("", NameMode::Obfuscate, NameEncoding::Base32, true);
    let nodir = cipher("", NameMode::Standard, NameEncoding::Base32, false);
    let cases = [
        (
            &std,
            "d-v2020-01-02-030405-000/file-v2020-01-02-030405-000.txt",
            "rpsavuotevggkbbp3giubket8cclvt3v4a0portcm5mchmu04oq0/dliujkifo15pa0t31sl422pt6k-v2020-01-02-030405-000",
        ),
        (
            &std,
            "a.b-v2024-02-29-235959-999",
            "s45r9ojcc6ku8cq5op3ries04oo48bojk8qs6od9ucdam7nc7u9g",
        ),
        // Not a date (2023 is no leap year): encrypted whole.
        (
            &std,
            "bad-v2023-02-29-000000-000.txt",
            "jqdmev387b06po5etr8mj3virbu5hp0lhsv6je53kod6fpct7ek0",
        ),
        (
            &std,
            "x-v2020-01-02-030405-000.tar.gz",
            "fg38c8moo67r37tfgl6kjjriknp7f5t0jof29ihb9air9m9ids4g",
        ),
        (
            &obf,
            "d-v2020-01-02-030405-000/file-v2020-01-02-030405-000.txt",
            "254.f-x1919-90-91-929394-999/46.yBEx-v2020-01-02-030405-000.MQM",
        ),
        (
            &nodir,
            "d-v2020-01-02-030405-000/file-v2020-01-02-030405-000.txt",
            "d-v2020-01-02-030405-000/dliujkifo15pa0t31sl422pt6k-v2020-01-02-030405-000",
        ),
    ];
    for (c, plain, stored) in cases {
        assert_eq!(c.encrypt_file(plain).unwrap(), stored, "{plain}");
        assert_eq!(c.decrypt_file(stored).unwrap(), plain, "{stored}");
    }
}
