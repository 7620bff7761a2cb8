//! Verifying AWS Signature Version 4 as Amazon OpenSearch Service does for IAM
//! authentication (`--aws-sigv4 ACCESS_KEY_ID:SECRET`): the request's `Authorization`
//! header names a credential scope and the headers it signed; the stand-in recomputes
//! the signature from the request it received with the secret it knows (the canonical
//! request and string to sign are `aws-sigv4`'s, checked against AWS's published test
//! vector below) and refuses a mismatch, an unknown key or a stale date with 403.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    PayloadChecksumKind, SignableBody, SignableRequest, SigningSettings, sign,
};

/// The key requests must be signed with.
#[derive(Clone, PartialEq, Eq)]
pub struct SigV4Key {
    /// The access key id.
    pub access_key_id: String,
    /// The secret access key.
    pub secret_access_key: String,
    /// The service name in the credential scope (`es`).
    pub service: String,
}

impl std::fmt::Debug for SigV4Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigV4Key")
            .field("access_key_id", &self.access_key_id)
            .field("service", &self.service)
            .finish_non_exhaustive()
    }
}

/// The request as received.
pub struct Received<'a> {
    /// `GET`, `POST`, …
    pub method: &'a str,
    /// `http://host[:port]/path?query`, the host from the `Host` header.
    pub url: &'a str,
    /// Every header, lower-case names.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: &'a [u8],
}

/// The message AWS answers a signature mismatch with.
pub const MISMATCH: &str = "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.";

struct Authorization<'a> {
    access_key_id: &'a str,
    date: &'a str,
    region: &'a str,
    service: &'a str,
    signed_headers: Vec<&'a str>,
    signature: &'a str,
}

fn parse_authorization(value: &str) -> Result<Authorization<'_>, String> {
    let rest = value
        .strip_prefix("AWS4-HMAC-SHA256 ")
        .ok_or_else(|| "Authorization header requires the AWS4-HMAC-SHA256 scheme".to_owned())?;
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',') {
        match part.trim().split_once('=') {
            Some(("Credential", v)) => credential = Some(v),
            Some(("SignedHeaders", v)) => signed = Some(v),
            Some(("Signature", v)) => signature = Some(v),
            _ => {}
        }
    }
    let credential = credential.ok_or("Authorization header requires 'Credential' parameter")?;
    let scope: Vec<&str> = credential.split('/').collect();
    let [access_key_id, date, region, service, "aws4_request"] = scope[..] else {
        return Err(format!(
            "Credential should be scoped correctly: {credential}"
        ));
    };
    Ok(Authorization {
        access_key_id,
        date,
        region,
        service,
        signed_headers: signed
            .ok_or("Authorization header requires 'SignedHeaders' parameter")?
            .split(';')
            .collect(),
        signature: signature.ok_or("Authorization header requires 'Signature' parameter")?,
    })
}

/// `YYYYMMDDTHHMMSSZ` as a time.
fn parse_amz_date(text: &str) -> Option<SystemTime> {
    let b = text.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| text.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (hh, mm, ss) = (num(9..11)?, num(11..13)?, num(13..15)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = u64::try_from(days * 86_400 + hh * 3600 + mm * 60 + ss).ok()?;
    Some(UNIX_EPOCH + Duration::from_secs(secs))
}

/// Checks `request`'s signature with `key`; `now` (when given) must be within 15
/// minutes of the request's `x-amz-date`, as AWS requires.
///
/// # Errors
/// Why the request is refused, in AWS's words where AWS has them.
pub fn verify(
    request: &Received<'_>,
    key: &SigV4Key,
    now: Option<SystemTime>,
) -> Result<(), String> {
    let header = |name: &str| {
        request
            .headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let authorization = header("authorization")
        .ok_or_else(|| "Missing Authentication Token (no SigV4 Authorization header)".to_owned())?;
    let auth = parse_authorization(authorization)?;
    if auth.access_key_id != key.access_key_id {
        return Err("The security token included in the request is invalid.".to_owned());
    }
    if auth.service != key.service {
        return Err(format!(
            "Credential should be scoped to correct service: '{}'.",
            key.service
        ));
    }
    let amz_date = header("x-amz-date").ok_or("Authorization requires the x-amz-date header")?;
    let time = parse_amz_date(amz_date)
        .ok_or_else(|| format!("x-amz-date `{amz_date}` is not YYYYMMDDTHHMMSSZ"))?;
    if !amz_date.starts_with(auth.date) {
        return Err("Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP".to_owned());
    }
    if let Some(now) = now {
        let skew = now.duration_since(time).unwrap_or_else(|e| e.duration());
        if skew > Duration::from_secs(15 * 60) {
            return Err(format!(
                "Signature expired: {amz_date} is more than 15 minutes from now"
            ));
        }
    }
    // Re-sign what was received with the headers it says it signed; the signer adds
    // host (from the URL), x-amz-date, x-amz-content-sha256 and the token itself.
    let own = [
        "host",
        "x-amz-date",
        "x-amz-content-sha256",
        "x-amz-security-token",
    ];
    let mut signed_headers = Vec::new();
    for name in &auth.signed_headers {
        if own.contains(name) {
            continue;
        }
        let value = header(name).ok_or_else(|| format!("signed header {name} is missing"))?;
        signed_headers.push((*name, value));
    }
    let mut settings = SigningSettings::default();
    if auth.signed_headers.contains(&"x-amz-content-sha256") {
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    }
    let credentials = Credentials::new(
        &key.access_key_id,
        &key.secret_access_key,
        header("x-amz-security-token").map(str::to_owned),
        None,
        "chief-es-standin",
    );
    let identity = credentials.into();
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region(auth.region)
        .name(auth.service)
        .time(time)
        .settings(settings)
        .build()
        .map_err(|e| e.to_string())?
        .into();
    let signable = SignableRequest::new(
        request.method,
        request.url,
        signed_headers.into_iter(),
        SignableBody::Bytes(request.body),
    )
    .map_err(|e| format!("cannot canonicalize the request: {e}"))?;
    let (instructions, signature) = sign(signable, &params)
        .map_err(|e| format!("cannot sign the request: {e}"))?
        .into_parts();
    let expected_headers = instructions
        .headers()
        .find(|(k, _)| k.eq_ignore_ascii_case("authorization"))
        .and_then(|(_, v)| v.split("SignedHeaders=").nth(1))
        .and_then(|v| v.split(',').next())
        .unwrap_or_default()
        .to_owned();
    if expected_headers != auth.signed_headers.join(";") || signature != auth.signature {
        return Err(MISMATCH.to_owned());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// AWS's SigV4 test suite, `get-vanilla`: GET / on example.amazonaws.com, signed with
    /// the suite's example key for `service` in us-east-1 at 20150830T123600Z.
    fn vanilla(signature: &str) -> Received<'static> {
        Received {
            method: "GET",
            url: "https://example.amazonaws.com/",
            headers: vec![
                ("host".into(), "example.amazonaws.com".into()),
                ("x-amz-date".into(), "20150830T123600Z".into()),
                (
                    "authorization".into(),
                    format!(
                        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature={signature}"
                    ),
                ),
            ],
            body: b"",
        }
    }

    fn example_key() -> SigV4Key {
        SigV4Key {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
            service: "service".into(),
        }
    }

    #[test]
    fn the_published_test_vector_verifies_and_a_changed_signature_does_not() {
        let good = "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31";
        assert_eq!(verify(&vanilla(good), &example_key(), None), Ok(()));
        let bad = "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf32";
        assert_eq!(
            verify(&vanilla(bad), &example_key(), None),
            Err(MISMATCH.to_owned())
        );
        let wrong_secret = SigV4Key {
            secret_access_key: "not-the-secret".into(),
            ..example_key()
        };
        assert_eq!(
            verify(&vanilla(good), &wrong_secret, None),
            Err(MISMATCH.to_owned())
        );
        // Fifteen minutes is the limit.
        let later = parse_amz_date("20150830T125200Z");
        assert!(verify(&vanilla(good), &example_key(), later).is_err());
        assert!(
            verify(
                &vanilla(good),
                &example_key(),
                parse_amz_date("20150830T124000Z")
            )
            .is_ok()
        );
    }

    #[test]
    fn amz_dates_are_read_as_utc() {
        assert_eq!(
            parse_amz_date("19700101T000001Z"),
            Some(UNIX_EPOCH + Duration::from_secs(1))
        );
        assert_eq!(
            parse_amz_date("20150830T123600Z"),
            Some(UNIX_EPOCH + Duration::from_secs(1_440_938_160))
        );
        assert_eq!(parse_amz_date("2015-08-30T12:36:00Z"), None);
    }
}
