//! Configuration limits, the first octet, and serde.

use quicmq_proto::quic_lb::{
    config_id_of, Algorithm, LbConfig, QuicLbError, ServerId, UNROUTABLE_CONFIG_ID,
};

#[test]
fn limits_of_the_draft() {
    for config_id in 0..=255u8 {
        for sid_len in 0..=21 {
            for nonce_len in 0..=21 {
                let valid = config_id <= 6
                    && (1..=15).contains(&sid_len)
                    && nonce_len >= 4
                    && sid_len + nonce_len <= 19;
                for key in [None, Some([0x5a; 16])] {
                    let result = LbConfig::new(config_id, sid_len, nonce_len, key);
                    assert_eq!(
                        result.is_ok(),
                        valid,
                        "{config_id} {sid_len} {nonce_len}: {result:?}"
                    );
                    if let Err(e) = result {
                        assert!(matches!(e, QuicLbError::BadConfig(_)), "{e:?}");
                    }
                }
            }
        }
    }
}

#[test]
fn config_id_0b111_is_rejected() {
    assert_eq!(
        LbConfig::new(UNROUTABLE_CONFIG_ID, 2, 6, None),
        Err(QuicLbError::BadConfig(
            "config ID must be 0 to 6 (0b111 is reserved for unroutable CIDs)"
        ))
    );
}

#[test]
fn first_octet_has_config_id_and_length() {
    for config_id in 0..=6 {
        for sid_len in 1..=15 {
            for nonce_len in 4..=19 - sid_len {
                let config = LbConfig::new(config_id, sid_len, nonce_len, None).unwrap();
                let first = config.first_octet();
                assert_eq!(config_id_of(first), Some(config_id));
                assert_eq!(usize::from(first & 0x1f) + 1, config.cid_len());
                assert_eq!(config.cid_len(), 1 + sid_len + nonce_len);
            }
        }
    }
}

#[test]
fn config_id_of_every_octet() {
    for octet in 0..=255u8 {
        let expected = if octet >= 0xe0 {
            None
        } else {
            Some(octet >> 5)
        };
        assert_eq!(config_id_of(octet), expected, "{octet:#04x}");
    }
}

#[test]
fn algorithm_follows_key_and_length() {
    for sid_len in 1..=15 {
        for nonce_len in 4..=19 - sid_len {
            let plain = LbConfig::new(0, sid_len, nonce_len, None).unwrap();
            assert_eq!(plain.algorithm(), Algorithm::Plaintext);
            let keyed = LbConfig::new(0, sid_len, nonce_len, Some([1; 16])).unwrap();
            let expected = if sid_len + nonce_len == 16 {
                Algorithm::SinglePass
            } else {
                Algorithm::FourPass
            };
            assert_eq!(keyed.algorithm(), expected, "{sid_len}+{nonce_len}");
        }
    }
}

#[test]
fn debug_does_not_show_the_key() {
    let config = LbConfig::new(0, 2, 6, Some([0xab; 16])).unwrap();
    let debug = format!("{config:?}");
    assert!(!debug.contains("171"), "{debug}");
    assert!(!debug.to_lowercase().contains("ab, "), "{debug}");
    assert!(debug.contains("redacted"), "{debug}");
}

#[test]
fn config_serde_round_trip_and_validation() {
    let config = LbConfig::new(5, 4, 8, Some([7; 16])).unwrap();
    let json = serde_json::to_string(&config).unwrap();
    assert_eq!(serde_json::from_str::<LbConfig>(&json).unwrap(), config);

    let plain = LbConfig::new(0, 1, 18, None).unwrap();
    let json = serde_json::to_string(&plain).unwrap();
    assert_eq!(serde_json::from_str::<LbConfig>(&json).unwrap(), plain);

    let bad = r#"{"config_id":7,"server_id_len":4,"nonce_len":8,"key":null}"#;
    assert!(serde_json::from_str::<LbConfig>(bad).is_err());
    let bad = r#"{"config_id":0,"server_id_len":12,"nonce_len":8,"key":null}"#;
    assert!(serde_json::from_str::<LbConfig>(bad).is_err());
}

#[test]
fn server_id_serde_round_trip_and_validation() {
    let sid = ServerId::new(&[0, 1, 0xff]).unwrap();
    let json = serde_json::to_string(&sid).unwrap();
    assert_eq!(json, "[0,1,255]");
    assert_eq!(serde_json::from_str::<ServerId>(&json).unwrap(), sid);
    assert!(serde_json::from_str::<ServerId>("[]").is_err());
    assert!(serde_json::from_str::<ServerId>(&format!("{:?}", [1u8; 16])).is_err());
}

#[test]
fn server_id_from_u64() {
    assert_eq!(ServerId::from_u64(0, 1).unwrap().as_bytes(), &[0]);
    assert_eq!(ServerId::from_u64(255, 1).unwrap().as_bytes(), &[255]);
    assert_eq!(ServerId::from_u64(256, 1), None);
    assert_eq!(ServerId::from_u64(256, 2).unwrap().as_bytes(), &[1, 0]);
    assert_eq!(
        ServerId::from_u64(u64::MAX, 8).unwrap().as_bytes(),
        &[0xff; 8]
    );
    assert_eq!(ServerId::from_u64(1, 0), None);
    assert_eq!(ServerId::from_u64(1, 9), None);
}
