//! The format against bincode 2 (fixed-int, little-endian), which it reproduces byte for byte,
//! and the one-copy paths against the value-by-value ones.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::*;

fn bincode_bytes<T: Serialize>(value: &T) -> Vec<u8> {
    bincode::serde::encode_to_vec(value, bincode::config::standard().with_fixed_int_encoding())
        .unwrap()
}

fn ours<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    let mut buf = Vec::new();
    encode(value, &mut buf, &mut Vec::new()).unwrap();
    buf
}

/// Same bytes as bincode, and back to the same value.
fn same<T>(value: T)
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let bytes = ours(&value);
    assert_eq!(bytes, bincode_bytes(&value), "{value:?}");
    let back: T = decode(&bytes, Vec::new()).unwrap();
    assert_eq!(back, value);
}

#[derive(Serialize, Deserialize, PartialEq, Debug)]
struct Record {
    id: u32,
    name: String,
    payload: Vec<u8>,
    samples: Box<[f64]>,
    tag: Option<Vec<u16>>,
    kind: Kind,
}

#[derive(Serialize, Deserialize, PartialEq, Debug)]
enum Kind {
    Unit,
    Bytes(Vec<u8>),
    Pair(i8, char),
    Named { at: u64, flags: Vec<bool> },
}

#[test]
fn the_format_is_bincodes() {
    same(true);
    same((
        -5i8,
        300u16,
        -7i32,
        u64::MAX,
        i128::MIN,
        u128::MAX,
        1.5f32,
        -2.25f64,
    ));
    same(('a', 'é', '€', '😀'));
    same("héllo wörld — ✓".to_string());
    same(Some(3u8));
    same(None::<String>);
    same(());
    same(vec![String::new(), "x".into()]);
    same(BTreeMap::from([(1u8, vec![2u8]), (3, vec![])]));
    same(serde_bytes::ByteBuf::from(vec![0u8, 255]));
    same(vec![(1u8, 2u64)]);
    for kind in [
        Kind::Unit,
        Kind::Bytes((0..=255).collect()),
        Kind::Pair(-1, 'ß'),
        Kind::Named {
            at: 9,
            flags: vec![true, false],
        },
    ] {
        same(Record {
            id: 7,
            name: "ünïcödé".into(),
            payload: (0..100_000).map(|i| (i * 7) as u8).collect(),
            samples: vec![0.5, -1.0].into_boxed_slice(),
            tag: Some(vec![1, u16::MAX]),
            kind,
        });
    }
}

#[test]
fn vectors_of_every_number_type_and_empty_ones() {
    same(Vec::<u8>::new());
    same(Vec::<f64>::new());
    same(vec![Vec::<u8>::new(), vec![1]]);
    same(vec![1u16, 2]);
    same(vec![1u32, 2]);
    same(vec![1u64, 2]);
    same(vec![1u128, 2]);
    same(vec![1usize, 2]);
    same(vec![-1i8, 2]);
    same(vec![-1i16, 2]);
    same(vec![-1i32, 2]);
    same(vec![-1i64, 2]);
    same(vec![-1i128, 2]);
    same(vec![-1isize, 2]);
    same(vec![1.5f32, f32::NAN.copysign(1.0).min(0.0)]);
    same(vec![f64::MAX, -0.0]);
    same(Box::<[u8]>::from(&b"boxed"[..]));
    same(Some(vec![7u8; 10]));
}

#[test]
fn bad_input_is_a_decode_error() {
    for bytes in [&[2u8][..], &[0xff], &[0xc3], &[5, 0, 0, 0, 0, 0, 0, 0, 1]] {
        assert!(matches!(
            decode::<(bool, char, String)>(bytes, Vec::new()),
            Err(Error::Decode(_))
        ));
    }
    // Invalid UTF-8 in a string.
    let mut bytes = ours(&vec![0xffu8, 0xfe]);
    assert!(matches!(
        decode::<String>(&bytes, Vec::new()),
        Err(Error::Decode(_))
    ));
    bytes.truncate(9);
    assert!(matches!(
        decode::<Vec<u8>>(&bytes, Vec::new()),
        Err(Error::Decode(_))
    ));
    assert!(matches!(
        decode::<Option<u8>>(&[2, 0], Vec::new()),
        Err(Error::Decode(_))
    ));
}

#[test]
fn values_of_zero_size_cannot_make_a_short_message_loop() {
    // A 9-byte message announcing 2^62 units: refused, not counted through (with the value by
    // value decoder, the loop never ended).
    let mut buf = vec![];
    buf.extend_from_slice(&(1u64 << 62).to_le_bytes());
    assert!(matches!(
        decode::<Vec<()>>(&buf, Vec::new()),
        Err(Error::Decode(_))
    ));
    // Many legitimate ones still decode.
    same(vec![(); 100_000]);
}

#[test]
fn limits_apply_to_one_copy_vectors() {
    let big = vec![1u8; 1000];
    let e = encode_within(&big, &mut Vec::new(), &mut Vec::new(), 500);
    assert!(
        matches!(e, Err(Error::TooLarge { limit: 500, .. })),
        "{e:?}"
    );
    let mut lying = ours(&vec![1u32, 2]);
    lying[..8].copy_from_slice(&(u64::MAX / 2).to_le_bytes());
    assert!(matches!(
        decode::<Vec<u32>>(&lying, Vec::new()),
        Err(Error::Decode(_))
    ));
}

#[test]
fn vectors_of_numbers_are_recognised_on_both_sides() {
    // Fourteen number types (`usize`/`isize` where they are 64 bits wide).
    assert_eq!(de::number_visitors().len(), 14);
    assert!(ser::numbers(&vec![1u8]).is_some());
    assert!(ser::numbers(&vec![1u8].into_boxed_slice()).is_some());
    assert!(ser::numbers(&vec![1.0f32]).is_some());
    assert!(ser::numbers(&vec![true]).is_none());
    assert!(ser::numbers(&"abc".to_string()).is_none());
}
