//! `strftime_now(format)`, the one clock chat templates read: transformers' global
//! `datetime.now().strftime(format)`, the local time formatted by the C library's `strftime`
//! as CPython does (in the C locale, which neither CPython nor gen changes for LC_TIME), or
//! a fixed time so that tests can compare renderings that print a date.

use std::ffi::CString;

/// The time `strftime_now` formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Clock {
    /// The local time at each render, as transformers' `datetime.now()`.
    #[default]
    Local,
    /// This naive date and time, written as the seconds from 1970-01-01 00:00:00 to it
    /// (read as UTC, so no time zone shifts it); its microseconds are 0.
    Fixed(i64),
}

/// The most bytes one `strftime_now` result may have (a format that expands past this is
/// an error rather than an ever larger buffer).
const MAX_LEN: usize = 1 << 16;

impl Clock {
    /// `datetime.strftime(format)` for this clock's time: the C library's `strftime`, with
    /// Python's own `%f` (microseconds, six digits) and `%z` / `%Z` (empty: the time is naive).
    pub fn strftime(self, format: &str) -> Result<String, String> {
        let (secs, micros, local) = match self {
            Clock::Local => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_err(|e| format!("the system clock is before 1970: {e}"))?;
                let secs = i64::try_from(now.as_secs())
                    .map_err(|_| "the system clock is out of range".to_string())?;
                (secs, now.subsec_micros(), true)
            }
            Clock::Fixed(secs) => (secs, 0, false),
        };
        let tm = broken_down(secs, local)?;
        let format = python_directives(format, micros);
        if format.is_empty() {
            return Ok(String::new());
        }
        let c_format = CString::new(format)
            .map_err(|_| "strftime_now: the format contains a NUL character".to_string())?;
        let mut cap = 256;
        while cap <= MAX_LEN {
            let mut buf = vec![0u8; cap];
            // SAFETY: `buf` has `cap` writable bytes, `c_format` is NUL-terminated and `tm`
            // is a valid broken-down time; strftime writes at most `cap` bytes and returns
            // how many (0 when they did not fit).
            let n = unsafe {
                libc::strftime(
                    buf.as_mut_ptr().cast::<libc::c_char>(),
                    cap,
                    c_format.as_ptr(),
                    &tm,
                )
            };
            if n > 0 {
                buf.truncate(n);
                return String::from_utf8(buf)
                    .map_err(|_| "strftime_now produced invalid UTF-8".to_string());
            }
            cap *= 4;
        }
        // Nothing written even with room for 64 KiB: an expansion that is empty (`%p` in
        // some locales) or too long; Python would return the empty string for the former.
        Ok(String::new())
    }
}

/// `secs` as a broken-down time: local time, or UTC for a fixed (naive) time.
fn broken_down(secs: i64, local: bool) -> Result<libc::tm, String> {
    let t = libc::time_t::try_from(secs).map_err(|_| format!("time {secs} is out of range"))?;
    // SAFETY: `libc::tm` is plain data (integers and a pointer), for which all zeros is a
    // valid value; the calls below overwrite it.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are valid for the duration of the call; the `_r` variants are
    // thread-safe and write only into `tm`.
    let done = unsafe {
        if local {
            libc::localtime_r(&t, &mut tm)
        } else {
            libc::gmtime_r(&t, &mut tm)
        }
    };
    if done.is_null() {
        return Err(format!("time {secs} cannot be converted to a date"));
    }
    Ok(tm)
}

/// CPython's `datetime.strftime` replaces `%f`, `%z` and `%Z` itself before calling the C
/// library; `%%` is kept for the C library to turn into `%`.
fn python_directives(format: &str, micros: u32) -> String {
    let mut out = String::with_capacity(format.len());
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('f') => out.push_str(&format!("{micros:06}")),
            Some('z' | 'Z') => {}
            Some(d) => {
                out.push('%');
                out.push(d);
            }
            None => out.push('%'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2025-03-14 09:26:53, a Friday.
    const PI_DAY: Clock = Clock::Fixed(1_741_944_413);

    #[test]
    fn fixed_time_formats_as_python() {
        assert_eq!(PI_DAY.strftime("%d %b %Y").unwrap(), "14 Mar 2025");
        assert_eq!(PI_DAY.strftime("%Y-%m-%d").unwrap(), "2025-03-14");
        assert_eq!(
            PI_DAY.strftime("%A, %B %d, %Y %H:%M:%S").unwrap(),
            "Friday, March 14, 2025 09:26:53"
        );
        assert_eq!(PI_DAY.strftime("%f|%z|%Z|100%%").unwrap(), "000000|||100%");
        assert_eq!(PI_DAY.strftime("").unwrap(), "");
        assert!(PI_DAY.strftime("a\0b").is_err());
    }

    #[test]
    fn local_time_is_this_year() {
        let year: i32 = Clock::Local.strftime("%Y").unwrap().parse().unwrap();
        assert!(year >= 2025, "{year}");
    }
}
