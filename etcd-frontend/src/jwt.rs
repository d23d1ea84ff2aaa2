//! etcd's signed tokens (`--auth-token jwt,pub-key=...,priv-key=...,
//! sign-method=RS256,ttl=5m`, `auth/jwt.go`): a JWT with the claims
//! `username`, `revision` (the auth revision it was issued at) and `exp`.
//! Any member holding the public key verifies it without shared state; a
//! token from before an auth change is refused by the revision check
//! (`revision of auth store is old`), an expired one is invalid.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use janus_core::auth::{AuthError, Caller};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// etcd's `DefaultTTL` of JWTs.
const DEFAULT_TTL: Duration = Duration::from_secs(300);

/// A JWT token provider.
pub struct Jwt {
    alg: Algorithm,
    /// `None`: verify only (no `priv-key`), Authenticate fails.
    sign: Option<EncodingKey>,
    verify: DecodingKey,
    ttl: Duration,
}

impl std::fmt::Debug for Jwt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jwt")
            .field("alg", &self.alg)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize, Deserialize)]
struct Claims {
    username: String,
    revision: u64,
    exp: u64,
}

/// `5m`, `30s`, `1h`, `100ms` (the Go durations etcd's `ttl` takes).
fn parse_duration(s: &str) -> Option<Duration> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit())?);
    let n: u64 = num.parse().ok()?;
    Some(match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        _ => return None,
    })
}

impl Jwt {
    /// Builds the provider from etcd's `k=v` options after `jwt,`.
    pub fn from_options(opts: &str) -> Result<Jwt, String> {
        let mut pub_key = None;
        let mut priv_key = None;
        let mut method = None;
        let mut ttl = DEFAULT_TTL;
        for kv in opts.split(',').filter(|s| !s.is_empty()) {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| format!("invalid auth options: {kv:?}"))?;
            match k {
                "pub-key" => pub_key = Some(v.to_string()),
                "priv-key" => priv_key = Some(v.to_string()),
                "sign-method" => method = Some(v.to_string()),
                "ttl" => ttl = parse_duration(v).ok_or_else(|| format!("bad ttl {v:?}"))?,
                other => return Err(format!("unknown jwt option {other:?}")),
            }
        }
        let method = method.ok_or("jwt needs sign-method")?;
        let alg: Algorithm = method
            .parse()
            .map_err(|_| format!("invalid auth signature method {method:?}"))?;
        let read = |p: &str| std::fs::read(p).map_err(|e| format!("{p}: {e}"));
        let pem_err = |p: &str, e: jsonwebtoken::errors::Error| format!("{p}: {e}");
        let (sign, verify) = match alg {
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512 => {
                let p = pub_key.as_deref().ok_or("jwt needs pub-key")?;
                let verify = DecodingKey::from_rsa_pem(&read(p)?).map_err(|e| pem_err(p, e))?;
                let sign = match priv_key.as_deref() {
                    Some(k) => {
                        Some(EncodingKey::from_rsa_pem(&read(k)?).map_err(|e| pem_err(k, e))?)
                    }
                    None => None,
                };
                (sign, verify)
            }
            Algorithm::ES256 | Algorithm::ES384 => {
                let p = pub_key.as_deref().ok_or("jwt needs pub-key")?;
                let verify = DecodingKey::from_ec_pem(&read(p)?).map_err(|e| pem_err(p, e))?;
                let sign = match priv_key.as_deref() {
                    Some(k) => {
                        Some(EncodingKey::from_ec_pem(&read(k)?).map_err(|e| pem_err(k, e))?)
                    }
                    None => None,
                };
                (sign, verify)
            }
            other => return Err(format!("sign-method {other:?} is not supported")),
        };
        Ok(Jwt {
            alg,
            sign,
            verify,
            ttl,
        })
    }

    /// A token for `user` at auth revision `revision`.
    pub fn sign(&self, user: &str, revision: u64) -> Result<String, AuthError> {
        let key = self.sign.as_ref().ok_or(AuthError::AuthFailed)?;
        let exp = SystemTime::now()
            .checked_add(self.ttl)
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs());
        let claims = Claims {
            username: user.to_string(),
            revision,
            exp,
        };
        jsonwebtoken::encode(&Header::new(self.alg), &claims, key)
            .map_err(|_| AuthError::AuthFailed)
    }

    /// The caller a token stands for: signature, method and expiry checked.
    pub fn verify(&self, token: &str) -> Result<Caller, AuthError> {
        let mut v = Validation::new(self.alg);
        v.leeway = 0;
        v.set_required_spec_claims(&["exp"]);
        let data = jsonwebtoken::decode::<Claims>(token, &self.verify, &v)
            .map_err(|_| AuthError::InvalidAuthToken)?;
        Ok(Caller {
            user: data.claims.username,
            revision: data.claims.revision,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn go_durations() {
        assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("100ms"), Some(Duration::from_millis(100)));
        assert_eq!(parse_duration("2x"), None);
        assert_eq!(parse_duration("s"), None);
    }
}
