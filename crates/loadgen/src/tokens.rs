//! Tenants: who the requests claim to be, and in what mix.
//!
//! Tokens are fetched once, before the run starts (a token command such as `llamagate token --tier
//! premium` can take a while, and must not be timed). Each request then picks a tenant by weight
//! with [`TenantMix::pick`], and its results are reported under the tenant's tier name.
//!
//! The token file format is one tenant per line, fields separated by tabs or spaces:
//! `tier weight [token]` — a line without a token sends no `Authorization` header; `#` starts a
//! comment. Access tokens (JWTs, opaque tokens) never contain whitespace, so no quoting is needed.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use reqwest::header::HeaderValue;

use crate::scenario::{Disconnect, TenantSpec};

/// A tenant with its token fetched.
#[derive(Debug, Clone)]
pub struct Tenant {
    /// The name its results are reported under.
    pub tier: String,
    /// Relative share of the requests.
    pub weight: f64,
    /// `Bearer <token>`, marked sensitive; `None` sends no `Authorization` header.
    pub authorization: Option<HeaderValue>,
    /// Pad its request bodies to at least this many bytes.
    pub body_bytes: Option<usize>,
    /// When its client hangs up on purpose.
    pub disconnect: Option<Disconnect>,
}

impl Tenant {
    /// A tenant with an optional bearer token.
    pub fn new(tier: &str, weight: f64, token: Option<&str>) -> anyhow::Result<Self> {
        if !(weight.is_finite() && weight > 0.0) {
            bail!("tenant {tier:?}: weight must be a positive number");
        }
        let authorization = token
            .map(|token| {
                let mut value = HeaderValue::from_str(&format!("Bearer {}", token.trim()))
                    .with_context(|| format!("tenant {tier:?}: the token is not a valid header value"))?;
                value.set_sensitive(true);
                anyhow::Ok(value)
            })
            .transpose()?;
        Ok(Self { tier: tier.to_string(), weight, authorization, body_bytes: None, disconnect: None })
    }
}

/// `token` with one character in the middle of its signature (the third dot-separated part)
/// changed: still well-formed, but signed by no one. The middle character is never the last one of
/// the base64url text, whose low bits may be padding that decodes to the same bytes.
pub fn forge_signature(token: &str) -> anyhow::Result<String> {
    let parts: Vec<&str> = token.split('.').collect();
    let [header, claims, signature] = parts.as_slice() else {
        bail!("forge: the token is not a JWT (three dot-separated parts)");
    };
    if signature.len() < 2 || !signature.is_ascii() {
        bail!("forge: the token's signature is too short to alter");
    }
    let middle = signature.len() / 2;
    let replacement = if signature.as_bytes()[middle] == b'A' { "B" } else { "A" };
    let forged = format!("{}{replacement}{}", &signature[..middle], &signature[middle + 1..]);
    Ok(format!("{header}.{claims}.{forged}"))
}

/// Parses a token file (see the module docs).
pub fn parse_token_file(text: &str) -> anyhow::Result<Vec<TenantSpec>> {
    let mut specs = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (tier, weight, token) = match fields.as_slice() {
            [tier, weight] => (*tier, *weight, None),
            [tier, weight, token] => (*tier, *weight, Some(token.to_string())),
            _ => bail!("line {}: expected `tier weight [token]`", index + 1),
        };
        let weight =
            weight.parse().with_context(|| format!("line {}: weight {weight:?} is not a number", index + 1))?;
        specs.push(TenantSpec { token, ..TenantSpec::named(tier, weight) });
    }
    if specs.is_empty() {
        bail!("no tenants");
    }
    Ok(specs)
}

/// Reads a token file.
pub fn read_token_file(path: &Path) -> anyhow::Result<Vec<TenantSpec>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading token file {}", path.display()))?;
    parse_token_file(&text).with_context(|| format!("in token file {}", path.display()))
}

/// Parses `--tokens-cmd TIER:WEIGHT:COMMAND` (the command may contain `:`).
pub fn parse_tokens_cmd(arg: &str) -> Result<TenantSpec, String> {
    let mut parts = arg.splitn(3, ':');
    let (Some(tier), Some(weight), Some(command)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(format!("{arg:?}: expected TIER:WEIGHT:COMMAND"));
    };
    let weight = weight.trim().parse().map_err(|_| format!("{arg:?}: weight {weight:?} is not a number"))?;
    if tier.trim().is_empty() || command.trim().is_empty() {
        return Err(format!("{arg:?}: expected TIER:WEIGHT:COMMAND"));
    }
    Ok(TenantSpec { token_cmd: Some(command.to_string()), ..TenantSpec::named(tier.trim(), weight) })
}

/// Fetches every tenant's token: reads the variable, or runs the command with `sh -c` and takes its
/// trimmed standard output; then forges it when the tenant asks for that.
pub fn resolve(specs: &[TenantSpec]) -> anyhow::Result<Vec<Tenant>> {
    specs
        .iter()
        .map(|spec| {
            let sources = [&spec.token, &spec.token_env, &spec.token_cmd].iter().filter(|s| s.is_some()).count();
            if sources > 1 {
                bail!("tenant {:?}: give at most one of token, token_env, token_cmd", spec.tier);
            }
            let token = if let Some(token) = &spec.token {
                Some(token.clone())
            } else if let Some(var) = &spec.token_env {
                Some(std::env::var(var).with_context(|| format!("tenant {:?}: ${var} is not set", spec.tier))?)
            } else if let Some(command) = &spec.token_cmd {
                Some(run_token_command(&spec.tier, command)?)
            } else {
                None
            };
            let token = match token {
                Some(token) if spec.forge => {
                    Some(forge_signature(token.trim()).with_context(|| format!("tenant {:?}", spec.tier))?)
                }
                None if spec.forge => bail!("tenant {:?}: forge needs a token", spec.tier),
                token => token,
            };
            let mut tenant = Tenant::new(&spec.tier, spec.weight, token.as_deref())?;
            tenant.body_bytes = spec.body_bytes;
            tenant.disconnect = spec.disconnect_after;
            Ok(tenant)
        })
        .collect()
}

fn run_token_command(tier: &str, command: &str) -> anyhow::Result<String> {
    let output = Command::new("sh")
        .arg("-c")
        .arg(command)
        .output()
        .with_context(|| format!("tenant {tier:?}: running {command:?}"))?;
    if !output.status.success() {
        bail!(
            "tenant {tier:?}: {command:?} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let token = String::from_utf8(output.stdout).context("the token command printed non-UTF-8")?;
    let token = token.trim();
    if token.is_empty() || token.contains(char::is_whitespace) {
        bail!("tenant {tier:?}: {command:?} must print exactly one token");
    }
    Ok(token.to_string())
}

/// Picks tenants in proportion to their weights.
#[derive(Debug, Clone)]
pub struct TenantMix {
    tenants: Vec<Tenant>,
    /// Running sums of the weights, for a binary search.
    cumulative: Vec<f64>,
}

impl TenantMix {
    /// A mix of these tenants; with none, one anonymous `default` tenant.
    pub fn new(mut tenants: Vec<Tenant>) -> Self {
        if tenants.is_empty() {
            tenants.push(Tenant {
                tier: "default".into(),
                weight: 1.0,
                authorization: None,
                body_bytes: None,
                disconnect: None,
            });
        }
        let cumulative = tenants
            .iter()
            .scan(0.0, |sum, t| {
                *sum += t.weight;
                Some(*sum)
            })
            .collect();
        Self { tenants, cumulative }
    }

    /// The tenants, in order; results are indexed the same way.
    pub fn tenants(&self) -> &[Tenant] {
        &self.tenants
    }

    /// The index of a tenant drawn by weight.
    pub fn pick(&self, rng: &mut ChaCha8Rng) -> usize {
        if self.tenants.len() == 1 {
            return 0;
        }
        let total = self.cumulative.last().copied().unwrap_or(1.0);
        let x = rng.random::<f64>() * total;
        self.cumulative.partition_point(|&c| c <= x).min(self.tenants.len() - 1)
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn token_file_lines() {
        let specs =
            parse_token_file("# tier weight token\npremium\t3\tabc.def.ghi\nfree 1 xyz # note\nanon 0.5\n").unwrap();
        assert_eq!(specs.len(), 3);
        assert_eq!(
            (specs[0].tier.as_str(), specs[0].weight, specs[0].token.as_deref()),
            ("premium", 3.0, Some("abc.def.ghi"))
        );
        assert_eq!(specs[1].token.as_deref(), Some("xyz"));
        assert_eq!(specs[2].token, None);
        assert!(parse_token_file("premium\n").is_err());
        assert!(parse_token_file("premium x tok\n").is_err());
    }

    #[test]
    fn tokens_cmd_argument() {
        let spec = parse_tokens_cmd("premium:3:llamagate token --tier premium --issuer http://h:1").unwrap();
        assert_eq!(spec.tier, "premium");
        assert_eq!(spec.weight, 3.0);
        assert_eq!(spec.token_cmd.as_deref(), Some("llamagate token --tier premium --issuer http://h:1"));
        assert!(parse_tokens_cmd("premium:3").is_err());
    }

    #[test]
    fn commands_and_sources() {
        let specs = [
            TenantSpec { token_cmd: Some("echo tok-a".into()), ..TenantSpec::named("a", 1.0) },
            TenantSpec::named("b", 1.0),
        ];
        let tenants = resolve(&specs).unwrap();
        assert_eq!(tenants[0].authorization.as_ref().unwrap().to_str().unwrap(), "Bearer tok-a");
        assert!(tenants[0].authorization.as_ref().unwrap().is_sensitive());
        assert!(tenants[1].authorization.is_none());
        let failing = [TenantSpec { token_cmd: Some("exit 3".into()), ..specs[1].clone() }];
        assert!(resolve(&failing).is_err());
        let both = [TenantSpec { token: Some("x".into()), token_cmd: Some("echo y".into()), ..specs[1].clone() }];
        assert!(resolve(&both).is_err());
    }

    #[test]
    fn forged_tokens_differ_in_one_signature_character() {
        let token = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhIn0.MEUCIQDabcdefghAjklmnop";
        let forged = forge_signature(token).unwrap();
        let (a, b): (Vec<&str>, Vec<&str>) = (token.split('.').collect(), forged.split('.').collect());
        assert_eq!((a[0], a[1]), (b[0], b[1]), "header and claims stay as they were");
        let changed: Vec<usize> = (0..a[2].len()).filter(|&i| a[2].as_bytes()[i] != b[2].as_bytes()[i]).collect();
        assert_eq!(changed, vec![a[2].len() / 2]);
        assert_eq!(b[2].len(), a[2].len());
        // An `A` becomes a `B`, anything else an `A`: the character always changes.
        assert_eq!(forge_signature("h.c.xAy").unwrap(), "h.c.xBy");
        assert!(forge_signature("opaque-token").is_err());
        assert!(forge_signature("h.c.").is_err());
        let spec = TenantSpec { token: Some(token.into()), forge: true, ..TenantSpec::named("f", 1.0) };
        let tenant = &resolve(&[spec]).unwrap()[0];
        assert_eq!(tenant.authorization.as_ref().unwrap().to_str().unwrap(), format!("Bearer {forged}"));
        assert!(resolve(&[TenantSpec { forge: true, ..TenantSpec::named("f", 1.0) }]).is_err());
    }

    #[test]
    fn picks_follow_weights() {
        let mix = TenantMix::new(vec![Tenant::new("a", 3.0, None).unwrap(), Tenant::new("b", 1.0, None).unwrap()]);
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut counts = [0u32; 2];
        for _ in 0..40_000 {
            counts[mix.pick(&mut rng)] += 1;
        }
        // Expected 30,000 / 10,000; the binomial standard deviation is about 87.
        assert!((29_500..=30_500).contains(&counts[0]), "{counts:?}");
    }
}
