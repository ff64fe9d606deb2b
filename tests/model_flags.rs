//! Message flags and the header byte: every byte round-trips, each flag is
//! its own bit, only the low nibble is the packet type's, and the named
//! flag sets have the documented bits.

use imcore::Flags;

#[test]
fn every_header_byte_round_trips_and_each_bit_is_its_field() {
    for b in 0..=255u8 {
        let (packet_type, flags) = Flags::from_header_byte(b);
        assert_eq!(packet_type, b / 16, "packet type of {b:#04x}");
        // WuKongIM: dup = bit 3, sync_once = bit 2, red_dot = bit 1,
        // no_persist = bit 0.
        assert_eq!(flags.dup, (b >> 3) & 1 == 1, "dup of {b:#04x}");
        assert_eq!(flags.sync_once, (b >> 2) & 1 == 1, "sync_once of {b:#04x}");
        assert_eq!(flags.red_dot, (b >> 1) & 1 == 1, "red_dot of {b:#04x}");
        assert_eq!(flags.no_persist, b & 1 == 1, "no_persist of {b:#04x}");
        assert_eq!(flags.header_byte(packet_type), b, "round trip of {b:#04x}");
        assert_eq!(flags.bits(), b % 16, "bits of {b:#04x}");
        // from_bits ignores the high nibble.
        assert_eq!(Flags::from_bits(b), flags);
        assert_eq!(Flags::from_bits(b % 16), flags);
    }
}

#[test]
fn single_flags_set_exactly_their_own_bit() {
    let none = Flags::default();
    assert_eq!(none.bits(), 0);
    let cases = [
        (Flags { dup: true, ..none }, 0b1000),
        (
            Flags {
                sync_once: true,
                ..none
            },
            0b0100,
        ),
        (
            Flags {
                red_dot: true,
                ..none
            },
            0b0010,
        ),
        (
            Flags {
                no_persist: true,
                ..none
            },
            0b0001,
        ),
    ];
    for (flags, bit) in cases {
        assert_eq!(flags.bits(), bit, "{flags:?}");
        // SEND is packet type 3.
        assert_eq!(flags.header_byte(3), 0x30 | bit, "{flags:?}");
    }
}

#[test]
fn header_byte_uses_only_the_low_nibble_of_the_packet_type() {
    for packet_type in 0..=255u8 {
        let byte = Flags::normal().header_byte(packet_type);
        assert_eq!(byte >> 4, packet_type & 0x0f, "packet type {packet_type}");
        assert_eq!(byte & 0x0f, 0b0010);
    }
}

#[test]
fn named_flag_sets_have_the_documented_bits() {
    // normal: history with a red dot.
    assert_eq!(
        Flags::normal(),
        Flags {
            dup: false,
            sync_once: false,
            red_dot: true,
            no_persist: false
        }
    );
    assert_eq!(Flags::normal().header_byte(3), 0x32);
    // command: sync_once, no red dot.
    assert_eq!(
        Flags::command(),
        Flags {
            dup: false,
            sync_once: true,
            red_dot: false,
            no_persist: false
        }
    );
    assert_eq!(Flags::command().header_byte(3), 0x34);
    // transient: no_persist only.
    assert_eq!(
        Flags::transient(),
        Flags {
            dup: false,
            sync_once: false,
            red_dot: false,
            no_persist: true
        }
    );
    assert_eq!(Flags::transient().header_byte(3), 0x31);
}
