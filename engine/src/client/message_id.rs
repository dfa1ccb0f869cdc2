//! The client-side unique message id, property `UNIQ_KEY` (`MessageClientIDSetter`,
//! wire-protocol.md §8.5, clients.md C18).
//!
//! Where it sits: the producer's kernel send stamps every message that is not a batch with a
//! fresh id if it has none (batch members get theirs when the batch is built); the id comes
//! back as `SendResult.msgId`, and consumers read it as the message id.
//!
//! Layout, as uppercase hex: `ip (4 | 16 bytes) + pid (i16) + class-loader hash (i32) +
//! (now - start of the current month) ms (i32) + counter (i16)`, so 32 characters for an
//! IPv4 client and 56 for IPv6. The first three parts are fixed per process; the engine
//! has no ambient process id, address or clock, so the caller supplies them, and the wall
//! time of each id is passed in.
//!
//! Java takes "start of the month" in the JVM's default time zone; here it is UTC unless a
//! fixed offset is given ([`MessageClientIdSetter::with_utc_offset_secs`]), so ids decode
//! back exactly with the same offset. Ids are unique per generator while fewer than 65 536
//! are made in one millisecond; use one generator per process (Java's is static).

use std::net::IpAddr;
use std::sync::Mutex;

use crate::store::message::push_hex_upper;

/// Length of the id of an IPv4 client.
pub const UNIQ_ID_IPV4_CHAR_COUNT: usize = 32;
/// Length of the id of an IPv6 client.
pub const UNIQ_ID_IPV6_CHAR_COUNT: usize = 56;

const DAY_MS: i64 = 86_400_000;

/// Java zeroes a slightly negative month offset ("may be caused by NTP"): a wall clock that
/// stepped back over the month boundary by less than this many milliseconds.
const NTP_STEP_BACK_TOLERANCE_MS: i32 = 1_000_000;

/// Why a `UNIQ_KEY` could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UniqIdError {
    /// The id is not a sequence of hex digit pairs. It was not made by a Java-layout client
    /// (C++ and other clients use their own layouts): treat it as an opaque string.
    #[error("UNIQ_KEY {id:?} is not a string of hex digit pairs")]
    NotHex {
        /// The id.
        id: String,
    },
    /// The id is too short to hold the month offset. Treat it as an opaque string.
    #[error("UNIQ_KEY {id:?} is too short to hold a timestamp")]
    TooShort {
        /// The id.
        id: String,
    },
}

/// Makes `UNIQ_KEY` values (`MessageClientIDSetter.createUniqID`).
#[derive(Debug)]
pub struct MessageClientIdSetter {
    /// Hex of `ip + pid + class-loader hash` (Java's `FIX_STRING`).
    fix_string: String,
    utc_offset_ms: i64,
    state: Mutex<IdState>,
}

#[derive(Debug, Default)]
struct IdState {
    /// `(startTime, nextStartTime)`: the current month's first and the next month's first
    /// millisecond; set on first use (Java sets it at class load).
    month: Option<(i64, i64)>,
    /// Java's `COUNTER`, of which the id keeps the low 16 bits.
    counter: u16,
}

impl MessageClientIdSetter {
    /// A generator for a process at `ip` whose id is `pid` (Java keeps its low 16 bits) and
    /// whose class-loader hash stand-in is `class_loader_hash`; months start at UTC midnight.
    pub fn new(ip: IpAddr, pid: u32, class_loader_hash: i32) -> Self {
        let mut fixed = match ip {
            IpAddr::V4(v4) => v4.octets().to_vec(),
            IpAddr::V6(v6) => v6.octets().to_vec(),
        };
        fixed.extend_from_slice(&(pid as u16).to_be_bytes());
        fixed.extend_from_slice(&class_loader_hash.to_be_bytes());
        Self {
            fix_string: hex_upper(&fixed),
            utc_offset_ms: 0,
            state: Mutex::new(IdState::default()),
        }
    }

    /// The same generator with months starting at midnight of a zone `utc_offset_secs` east
    /// of UTC (e.g. `8 * 3600` for a JVM in China Standard Time).
    pub fn with_utc_offset_secs(mut self, utc_offset_secs: i32) -> Self {
        self.utc_offset_ms = i64::from(utc_offset_secs) * 1000;
        self
    }

    /// A fresh id for a message sent at `wall_ms` (milliseconds since the Unix epoch).
    pub fn create_uniq_id(&self, wall_ms: i64) -> String {
        let (diff, counter) = {
            let mut state = self.lock();
            let (start, _) = match state.month {
                Some(month) if wall_ms < month.1 => month,
                _ => {
                    let month = month_bounds(wall_ms, self.utc_offset_ms);
                    state.month = Some(month);
                    month
                }
            };
            // Java: `(int) (current - startTime)`, truncated to 32 bits.
            let mut diff = wall_ms.wrapping_sub(start) as i32;
            if diff < 0 && diff > -NTP_STEP_BACK_TOLERANCE_MS {
                diff = 0;
            }
            let counter = state.counter;
            state.counter = counter.wrapping_add(1);
            (diff, counter)
        };
        let mut id = String::with_capacity(self.fix_string.len() + 12);
        id.push_str(&self.fix_string);
        // Java's `{:08X}{:04X}` of the time offset and the counter.
        push_hex_upper(&mut id, &diff.to_be_bytes());
        push_hex_upper(&mut id, &counter.to_be_bytes());
        id
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, IdState> {
        // The state is two plain values updated together under the lock, so a poisoned lock
        // is recovered rather than propagated.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The wall time (ms since the epoch) an id was made at, as Java's `getNearlyTimeFromID`
/// reads it at `now_wall_ms`, months starting at UTC midnight.
pub fn uniq_id_time(id: &str, now_wall_ms: i64) -> Result<i64, UniqIdError> {
    uniq_id_time_with_utc_offset_secs(id, now_wall_ms, 0)
}

/// [`uniq_id_time`] for ids whose months start at midnight `utc_offset_secs` east of UTC.
///
/// The id only holds the offset into its month, so the month is guessed as Java does: the
/// current one, unless that puts the id at or after `now_wall_ms`, then the one before. An id
/// is read as IPv6 when it is 28 bytes long, otherwise as IPv4.
pub fn uniq_id_time_with_utc_offset_secs(
    id: &str,
    now_wall_ms: i64,
    utc_offset_secs: i32,
) -> Result<i64, UniqIdError> {
    let bytes = hex_decode(id).ok_or_else(|| UniqIdError::NotHex { id: id.to_string() })?;
    let ip_size = if bytes.len() == 28 { 16 } else { 4 };
    let at = ip_size + 2 + 4;
    let span = bytes
        .get(at..at + 4)
        .and_then(|span| <[u8; 4]>::try_from(span).ok())
        .ok_or_else(|| UniqIdError::TooShort { id: id.to_string() })?;
    // Java reads the four bytes as an unsigned value.
    let span_ms = i64::from(u32::from_be_bytes(span));
    let offset_ms = i64::from(utc_offset_secs) * 1000;
    let (mut month_start, _) = month_bounds(now_wall_ms, offset_ms);
    if month_start.saturating_add(span_ms) >= now_wall_ms {
        month_start = previous_month_start(month_start, offset_ms);
    }
    Ok(month_start.saturating_add(span_ms))
}

/// Uppercase hex (`UtilAll.bytes2string`).
fn hex_upper(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len() * 2);
    push_hex_upper(&mut text, bytes);
    text
}

/// Bytes of a hex string of either case; `None` if it is not whole hex pairs.
fn hex_decode(text: &str) -> Option<Vec<u8>> {
    let digits = text.as_bytes();
    if !digits.len().is_multiple_of(2) {
        return None;
    }
    digits
        .chunks_exact(2)
        .map(|pair| {
            let high = char::from(pair[0]).to_digit(16)?;
            let low = char::from(pair[1]).to_digit(16)?;
            u8::try_from((high << 4) | low).ok()
        })
        .collect()
}

/// The first millisecond of the month holding `wall_ms` and of the month after, in a zone
/// `offset_ms` east of UTC (Java's `setStartTime`).
fn month_bounds(wall_ms: i64, offset_ms: i64) -> (i64, i64) {
    let local_day = wall_ms.saturating_add(offset_ms).div_euclid(DAY_MS);
    let (year, month, _) = civil_from_days(local_day);
    let (next_year, next_month) = if month == 12 {
        (year + 1, 1)
    } else {
        (year, month + 1)
    };
    (
        month_start_ms(year, month, offset_ms),
        month_start_ms(next_year, next_month, offset_ms),
    )
}

/// The first millisecond of the month before the one starting at `month_start`.
fn previous_month_start(month_start: i64, offset_ms: i64) -> i64 {
    let local_day = month_start.saturating_add(offset_ms).div_euclid(DAY_MS);
    let (year, month, _) = civil_from_days(local_day);
    let (year, month) = if month == 1 {
        (year - 1, 12)
    } else {
        (year, month - 1)
    };
    month_start_ms(year, month, offset_ms)
}

fn month_start_ms(year: i64, month: i64, offset_ms: i64) -> i64 {
    days_from_civil(year, month, 1)
        .saturating_mul(DAY_MS)
        .saturating_sub(offset_ms)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The proleptic Gregorian `(year, month, day)` of a day count since 1970-01-01
/// (H. Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400;
    (if month <= 2 { year + 1 } else { year }, month, day)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::net::{Ipv4Addr, Ipv6Addr};

    use proptest::prelude::*;

    use super::*;

    /// 2024-03-01T00:00:00Z.
    const MARCH_2024_MS: i64 = 1_709_251_200_000;
    /// 2024-02-01T00:00:00Z.
    const FEBRUARY_2024_MS: i64 = 1_706_745_600_000;

    fn setter() -> MessageClientIdSetter {
        MessageClientIdSetter::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)), 0x1234, 0x0A0B_0C0D)
    }

    #[test]
    fn civil_dates_match_known_epochs() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2024, 3, 1) * DAY_MS, MARCH_2024_MS);
        assert_eq!(civil_from_days(MARCH_2024_MS / DAY_MS - 1), (2024, 2, 29));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(
            month_bounds(MARCH_2024_MS - 1, 0),
            (FEBRUARY_2024_MS, MARCH_2024_MS)
        );
    }

    #[test]
    fn uniq_id_has_javas_layout() {
        let id = setter().create_uniq_id(MARCH_2024_MS + 1_000);
        assert_eq!(id, "7F0000011234_0A0B0C0D_000003E8_0000".replace('_', ""));
        assert_eq!(id.len(), UNIQ_ID_IPV4_CHAR_COUNT);
    }

    #[test]
    fn uniq_id_is_56_hex_chars_for_ipv6() {
        let setter = MessageClientIdSetter::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 70_000, -1);
        let id = setter.create_uniq_id(MARCH_2024_MS);
        assert_eq!(id.len(), UNIQ_ID_IPV6_CHAR_COUNT);
        // pid 70 000 keeps its low 16 bits, 0x1170; hash -1 is FFFFFFFF.
        assert_eq!(&id[32..44], "1170FFFFFFFF");
        assert_eq!(uniq_id_time(&id, MARCH_2024_MS + 10), Ok(MARCH_2024_MS));
    }

    #[test]
    fn uniq_ids_are_unique_across_ten_thousand_consecutive_ids() {
        let setter = setter();
        let ids: BTreeSet<String> = (0..10_000)
            .map(|i| setter.create_uniq_id(MARCH_2024_MS + i / 100))
            .collect();
        assert_eq!(ids.len(), 10_000);
        assert!(ids.iter().all(|id| {
            id.len() == UNIQ_ID_IPV4_CHAR_COUNT
                && id
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
        }));
    }

    #[test]
    fn counter_wraps_at_sixteen_bits() {
        let setter = setter();
        let ids: Vec<String> = (0..65_537)
            .map(|_| setter.create_uniq_id(MARCH_2024_MS))
            .collect();
        assert!(ids[65_535].ends_with("FFFF"));
        assert_eq!(
            ids[65_536], ids[0],
            "Java's counter repeats after 65 536 ids in one ms"
        );
    }

    #[test]
    fn uniq_id_time_decodes_across_a_month_boundary() {
        let setter = setter();
        let made = MARCH_2024_MS - 1_000; // 2024-02-29T23:59:59Z
        let id = setter.create_uniq_id(made);
        assert_eq!(uniq_id_time(&id, made + 5_000), Ok(made));
        assert_eq!(uniq_id_time(&id, made + 1), Ok(made));
        // The next id is in March: the window moves on.
        let id = setter.create_uniq_id(MARCH_2024_MS + 7);
        assert_eq!(&id[20..28], "00000007");
        assert_eq!(
            uniq_id_time(&id, MARCH_2024_MS + 60_000),
            Ok(MARCH_2024_MS + 7)
        );
    }

    #[test]
    fn uniq_id_time_at_the_same_millisecond_guesses_the_month_before_as_java() {
        let id = setter().create_uniq_id(MARCH_2024_MS + 500);
        assert_eq!(
            uniq_id_time(&id, MARCH_2024_MS + 500),
            Ok(FEBRUARY_2024_MS + 500)
        );
    }

    #[test]
    fn clock_stepping_back_over_the_month_start_zeroes_the_offset() {
        let setter = setter();
        setter.create_uniq_id(MARCH_2024_MS + 500);
        let id = setter.create_uniq_id(MARCH_2024_MS - 600);
        assert_eq!(&id[20..28], "00000000");
    }

    #[test]
    fn utc_offset_moves_the_month_start() {
        let cst = setter().with_utc_offset_secs(8 * 3600);
        // 2024-02-29T16:00:00Z is 2024-03-01T00:00:00+08:00.
        let local_march = MARCH_2024_MS - 8 * 3_600_000;
        let id = cst.create_uniq_id(local_march + 42);
        assert_eq!(&id[20..28], "0000002A");
        assert_eq!(
            uniq_id_time_with_utc_offset_secs(&id, local_march + 1_000, 8 * 3600),
            Ok(local_march + 42)
        );
    }

    #[test]
    fn malformed_ids_are_reported() {
        assert_eq!(
            uniq_id_time("XYZ0", 0),
            Err(UniqIdError::NotHex { id: "XYZ0".into() })
        );
        assert_eq!(
            uniq_id_time("ABC", 0),
            Err(UniqIdError::NotHex { id: "ABC".into() })
        );
        assert_eq!(
            uniq_id_time("7F000001", 0),
            Err(UniqIdError::TooShort {
                id: "7F000001".into()
            })
        );
        // Lower case is accepted, as Java upper-cases before decoding.
        let id = setter().create_uniq_id(MARCH_2024_MS + 3).to_lowercase();
        assert_eq!(uniq_id_time(&id, MARCH_2024_MS + 10), Ok(MARCH_2024_MS + 3));
    }

    #[test]
    fn extreme_wall_times_do_not_panic() {
        let setter = setter();
        for wall in [i64::MIN, i64::MIN + 1, -1, 0, i64::MAX - 1, i64::MAX] {
            let id = setter.create_uniq_id(wall);
            assert_eq!(id.len(), UNIQ_ID_IPV4_CHAR_COUNT);
            let _ = uniq_id_time(&id, wall);
        }
    }

    proptest! {
        /// An id decodes to the time it was made at, read any time within the next month
        /// (less a day, so the guessed month is the right one).
        #[test]
        fn uniq_id_time_decodes_the_creation_time(
            made in 0i64..4_102_444_800_000, // 1970..2100
            later in 1i64..27 * DAY_MS,
            offset_hours in -12i32..=14,
        ) {
            let setter = setter().with_utc_offset_secs(offset_hours * 3600);
            let id = setter.create_uniq_id(made);
            prop_assert_eq!(id.len(), UNIQ_ID_IPV4_CHAR_COUNT);
            prop_assert_eq!(
                uniq_id_time_with_utc_offset_secs(&id, made + later, offset_hours * 3600),
                Ok(made)
            );
        }

        /// Civil-date conversion round-trips for any day.
        #[test]
        fn civil_dates_round_trip(days in -10_000_000i64..10_000_000) {
            let (year, month, day) = civil_from_days(days);
            prop_assert!((1..=12).contains(&month) && (1..=31).contains(&day));
            prop_assert_eq!(days_from_civil(year, month, day), days);
        }
    }
}
