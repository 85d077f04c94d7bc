//! Checkpoint 26: flag values that are not numbers, not finite, negative, zero where that
//! makes no sense, or so large they would overflow are refused by the parser with a message
//! and exit 2; the worker never starts with them and never panics.

use crate::support::tiny;
use crate::support::worker::binary;
use std::process::Command;

#[test]
fn bad_flag_values_exit_2_with_a_message() {
    let cases: [(&str, &str); 12] = [
        ("--inference-timeout-sec", "nan"),
        ("--inference-timeout-sec", "-5"),
        ("--inference-timeout-sec", "1e30"),
        ("--guest-call-timeout-sec", "inf"),
        ("--request-timeout-sec", "0"),
        ("--callback-timeout-sec", "-0.5"),
        ("--sse-keepalive-sec", "never"),
        ("--max-memory-mb", "18446744073709551615"),
        ("--max-memory-mb", "4097"),
        ("--max-queue", "18446744073709551615"),
        ("--max-body-bytes", "0"),
        ("--max-connections", "99999999"),
    ];
    for (flag, value) in cases {
        let output = Command::new(binary())
            .args(["--port", "0", "--model", tiny().to_str().unwrap(), &format!("{flag}={value}")])
            .output()
            .expect("the binary runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{flag} {value}: {stderr}");
        assert!(stderr.contains(&format!("invalid value '{value}' for '{flag}")), "{flag} {value}: {stderr}");
        assert!(!stderr.contains("panicked"), "{flag} {value}: {stderr}");
        assert!(output.stdout.is_empty(), "{flag} {value} started the worker");
    }
}
